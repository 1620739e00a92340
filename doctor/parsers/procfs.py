"""The kernel's text files: /proc/meminfo, sysfs sizes and bracketed choices."""

from __future__ import annotations

import re

KIB = 1024
MAX_NUMBER = 2**53
"""Larger than any byte count, page count or tunable a kernel file holds (8 PiB), and
still exact as a float: a bigger "number" is damage, and reads as unknown."""


def bounded_int(text: str | None, signed: bool = False) -> int | None:
    """A decimal a kernel file (or a command line) holds, or None: not a number, negative
    where ``signed`` is not given, or beyond MAX_NUMBER either way (a 5000-digit
    "MemTotal" must not reach int(), let alone arithmetic)."""
    text = (text or "").strip().replace("\x00", "")
    digits = text[1:] if signed and text.startswith("-") else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 16:
        return None
    value = int(text)
    return value if abs(value) <= MAX_NUMBER else None


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as numbers; kB values become bytes, counts stay counts.

    Pasted copies carry shell prompts and stray lines: those are skipped, and so is a
    value beyond MAX_NUMBER (``number``).
    """
    values: dict[str, int] = {}
    for line in text.splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_()]+):\s+(\d+)(?:\s+(kB))?\s*$", line)
        found = bounded_int(match.group(2)) if match else None
        if match and found is not None:
            found = found * KIB if match.group(3) else found
            if found <= MAX_NUMBER:
                values[match.group(1)] = found
    return values


def parse_thp(text: str | None) -> str | None:
    """The bracketed choice of ``always [madvise] never``."""
    match = re.search(r"\[(\w+)\]", text or "")
    return match.group(1) if match else None


def cache_size_bytes(text: str | None) -> int | None:
    """sysfs cache sizes: ``32768K`` (the kernel's form), ``32M``, ``32MB`` or plain bytes."""
    match = re.fullmatch(r"(\d{1,16})\s*([KMG]?)B?", (text or "").replace("\x00", "").strip())
    if not match:
        return None
    return int(match.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[match.group(2)]

"""The kernel's text files: /proc/meminfo, sysfs sizes and bracketed choices."""

from __future__ import annotations

import re

KIB = 1024


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as numbers; kB values become bytes, counts stay counts.

    Pasted copies carry shell prompts and stray lines: those are skipped.
    """
    values: dict[str, int] = {}
    for line in text.splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_()]+):\s+(\d+)(?:\s+(kB))?\s*$", line)
        if match:
            number = int(match.group(2))
            values[match.group(1)] = number * KIB if match.group(3) else number
    return values


def parse_thp(text: str | None) -> str | None:
    """The bracketed choice of ``always [madvise] never``."""
    match = re.search(r"\[(\w+)\]", text or "")
    return match.group(1) if match else None


def cache_size_bytes(text: str | None) -> int | None:
    """sysfs cache sizes: ``32768K`` (the kernel's form), ``32M``, ``32MB`` or plain bytes."""
    match = re.fullmatch(r"(\d+)\s*([KMG]?)B?", (text or "").replace("\x00", "").strip())
    if not match:
        return None
    return int(match.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[match.group(2)]

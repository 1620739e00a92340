"""Units for people: one way to print a size, shared by every layer."""

from __future__ import annotations

GIB = 1024**3


def gib(value: int | None) -> str:
    """Bytes for people: ``44.7 GiB``."""
    return "unknown" if value is None else f"{value / GIB:.1f} GiB"

"""Regular expressions compiled on first use instead of at import.

A run parses only some of the inputs the doctor knows (no dmidecode output without
root, no part numbers, no llama-server on a fresh machine), yet compiling every
pattern of every imported module up front took milliseconds of each run's start.
"""

from __future__ import annotations

import re
from typing import Any


class LazyPattern:
    """``re.compile(source, flags)``, compiled the first time one of its methods
    (``match``, ``search``, ``sub``...) is used; it answers as the compiled pattern."""

    __slots__ = ("_source", "_flags", "_compiled")

    def __init__(self, source: str | bytes, flags: int = 0) -> None:
        self._source = source
        self._flags = flags
        self._compiled: re.Pattern | None = None

    def compiled(self) -> re.Pattern:
        if self._compiled is None:
            self._compiled = re.compile(self._source, self._flags)
        return self._compiled

    def __getattr__(self, name: str) -> Any:
        return getattr(self.compiled(), name)

    def __repr__(self) -> str:
        return f"LazyPattern({self._source!r}, {self._flags!r})"

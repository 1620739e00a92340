"""What the terminal a report goes to can show: colour, and how wide a line may be.

Apart from the report's layout, as ``--help`` asks for the width too and should not import
the layout's JSON and quoting to get it.
"""

from __future__ import annotations

import os
from typing import TextIO

DEFAULT_WIDTH = 100  # a pipe or a log: wide enough for paths, narrow enough to read
MIN_WIDTH = 60


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never under NO_COLOR (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()


def columns_of(stream: TextIO) -> int | None:
    """COLUMNS where set, else the terminal's width; None for a pipe, or a terminal that
    reports no width (a serial console says 0)."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdecimal() and int(columns) > 0:
        return int(columns)
    if hasattr(stream, "isatty") and stream.isatty():
        # os, not shutil: the stream's own width, and shutil's import (bz2, lzma, zlib:
        # a few ms) is not paid by the preflight or --help.
        try:
            return os.get_terminal_size(stream.fileno()).columns or None
        except (AttributeError, OSError, ValueError):
            return None
    return None


def width_of(stream: TextIO) -> int:
    """The report's width: the terminal's (at least MIN_WIDTH), else 100 for a pipe."""
    columns = columns_of(stream)
    return DEFAULT_WIDTH if columns is None else max(MIN_WIDTH, columns)

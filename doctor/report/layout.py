"""Lines for a terminal: wrapped to its width with a hanging indent, each with a style.

Plain text needs no rich: piped output, NO_COLOR and CI logs get no escape codes, and
the preflight does not pay rich's import. Only a terminal gets colour, through rich.
"""

from __future__ import annotations

import textwrap
from typing import TextIO

from q3cn_doctor.report.output import printable, write_plain
from q3cn_doctor.report.terminal import use_colour

Line = tuple[str, "str | None"]  # text, rich style (None: plain)


def wrap(text: str, width: int, first: str = "", rest: str | None = None) -> list[str]:
    """``text`` after ``first``, continued under ``rest`` (default: as wide as ``first``);
    paths and flags are never split. The text is escaped first (``printable``), so a
    newline in a value shows as ``\\x0a`` and the width counts what is shown."""
    rest = " " * len(first) if rest is None else rest
    return textwrap.wrap(printable(text), width, initial_indent=first, subsequent_indent=rest,
                         break_long_words=False, break_on_hyphens=False) or [first.rstrip()]


def write_lines(lines: list[Line], stream: TextIO) -> None:
    """Each line escaped whole (``output.printable``): no value from the machine or a file
    can move the cursor, retitle the terminal or start a line of its own."""
    if not use_colour(stream):
        write_plain(stream, (text for text, _ in lines))
        return
    from rich.console import Console  # ~65 ms: only for a person at a terminal
    from rich.text import Text

    console = Console(file=stream, highlight=False, soft_wrap=True)
    for text, style in lines:
        console.print(Text(printable(text), style=style or ""))

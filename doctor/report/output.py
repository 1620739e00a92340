"""What reaches a terminal or a JSON reader, made safe to show.

Every value the report shows came from the machine or a file: a GPU name, a process's
command line, a governor, a GGUF's ``general.name``, a snapshot someone sent. Any of
them may hold terminal control sequences (a title-set, a clear-screen, a carriage
return that overwrites a ``[fail]`` line with ``[pass]``), a newline that forges a line,
bidirectional overrides that reorder what is read, or a lone surrogate that cannot be
encoded at all. ``printable`` is the one escaping function: every text line the report,
the fix plan, the launch and the hooks print goes through it. JSON keeps the real
values (``json.dumps`` escapes control characters itself) and is made strict:
``NaN`` and ``Infinity`` are not JSON, so a non-finite number is written as null.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Iterable
from typing import Any, TextIO

# C0 controls (newline and tab included: a value never holds layout), DEL and C1
# (0x9b is a one-byte CSI), the soft hyphen, Arabic letter mark, Mongolian vowel
# separator, zero-width and bidirectional marks, embeddings, overrides and isolates,
# line and paragraph separators, word joiners and invisible operators, the byte order
# mark, interlinear annotation controls, and lone surrogates (undecodable bytes).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e"
                     "\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of a file name (surrogateescape)
        code -= 0xDC00
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object) -> str:
    """``value`` as text a terminal shows as it is: every control, format and bidi
    character, newlines included, written as a visible escape (``\\x1b``, ``\\u202e``)."""
    text = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(_escape, text)


def write_plain(stream: TextIO, lines: Iterable[str]) -> None:
    """Write each line escaped, one per line: the layout's newlines are the only ones
    (``layout.write_lines`` does the same for styled lines)."""
    stream.write("".join(printable(line) + "\n" for line in lines))


def shell_line(words: Iterable[str]) -> str:
    """Words quoted for a POSIX shell and safe on a terminal: a word holding a control
    character is written in bash's ``$'...'`` form with the character escaped, so the
    line still runs as printed and never drives the terminal that shows it."""
    quoted = []
    for word in words:
        if _UNSAFE.search(word):
            inner = printable(word.replace("\\", "\\\\").replace("'", "\\'"))
            quoted.append(f"$'{inner}'")
        else:
            quoted.append(shlex.quote(word))
    return " ".join(quoted)


_SURROGATE = re.compile("[\ud800-\udfff]")


def strict(value: Any) -> Any:
    """A copy of ``value`` that strict JSON can hold: a NaN or an infinity becomes None,
    a lone surrogate (which no UTF-8 reader accepts) the replacement character."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {strict(key) if isinstance(key, str) else key: strict(item)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(item) for item in value]
    return value


def json_text(document: Any) -> str:
    """Strict JSON (RFC 8259): no NaN, no Infinity, no lone surrogate; indented."""
    return json.dumps(strict(document), indent=2, allow_nan=False)

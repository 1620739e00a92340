"""Records are msgspec Structs (see docs/architecture.md, "Records"); this is their
plain form, the one way a record becomes JSON-ready dicts, lists and scalars."""

from __future__ import annotations

from typing import Any

from msgspec import to_builtins

_SCALARS = (bool, int, float, str)


def plain(record: Any) -> Any:
    """``record`` as dicts, lists and scalars, recursively (what ``dataclasses.asdict``
    gave, ready for json). A value msgspec does not know (a plugin's numpy float, a str
    subclass) becomes its scalar base type, else its str(): a plugin's odd value never
    stops a report."""
    return to_builtins(record, enc_hook=_scalar)


def _scalar(value: Any) -> Any:
    for kind in _SCALARS:
        if isinstance(value, kind):
            return kind(value)
    return str(value)

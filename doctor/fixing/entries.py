"""What a journal entry may hold: only what this tool's own fixes could have written.

``--revert`` writes a journal's ``before`` states back as root, so a journal is checked
as a whole before anything is restored: every target on the planner's allow-list
(``Target.not_allowed``), every state of its target's shape (``Target.valid``), a file's
``before`` absent or ours (the engine only ever replaces those), every created folder
above its file (/etc or under it), and the texts printable. A journal that fails is refused
(journal.py), never half-reverted.
"""

from __future__ import annotations

from typing import Any

from q3cn_doctor.fixing.journal import JournalError
from q3cn_doctor.fixing.targets import ConfigFile, Target, is_ours, target_from_json

_SPEC_KEYS = {  # the fields each kind of target's to_json writes
    "sysctl": {"kind", "path", "choice", "key"}, "sysfs": {"kind", "path", "choice", "key"},
    "file": {"kind", "path", "mode"}, "affinity": {"kind", "path", "pid", "name"},
    "profile": {"kind", "path", "daemon"}, "module": {"kind", "path", "name"},
}
_TEXTS = {"fix": 100, "what": 500, "time": 64, "run": 64, "error": 1000, "note": 1000}


def _printable(text: Any, limit: int) -> bool:
    return (isinstance(text, str) and len(text) <= limit
            and not any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 for c in text))


def entry_problem(entry: dict[str, Any]) -> str | None:
    """Why ``entry`` is not one q3cn-doctor's fixes could have written; None where it is."""
    for name, limit in _TEXTS.items():
        if name in entry and not _printable(entry[name], limit):
            return f"its {name} is not a line of text"
    spec = entry["target"]
    try:
        target = target_from_json(spec)
    except JournalError as exc:
        return str(exc)
    if set(spec) - _SPEC_KEYS[spec["kind"]]:
        return "its target has fields no fix writes"
    if target.to_json() != spec or not _spec_fields_ok(spec):
        return "its target does not read back as written"
    refusal = target.not_allowed()
    if refusal:
        return refusal
    return _states_problem(entry, target) or _folders_problem(entry, target)


def _spec_fields_ok(spec: dict[str, Any]) -> bool:
    """The fields beside kind and path, of the types to_json writes."""
    if spec["kind"] == "file":
        mode = spec["mode"]
        return isinstance(mode, int) and not isinstance(mode, bool) and 0 <= mode <= 0o7777
    if spec["kind"] == "affinity":
        return _printable(spec["name"], 64)
    if spec["kind"] in ("sysctl", "sysfs"):
        return spec["key"] is None or _printable(spec["key"], 64)
    return True


def _states_problem(entry: dict[str, Any], target: Target) -> str | None:
    before, after = entry["before"], entry.get("after")
    if not target.valid(before):
        return f"its recorded state of {target.path} is not one this target can have"
    if after is not None and not target.valid(after):
        return f"its state after the change of {target.path} is not one this target can have"
    if isinstance(target, ConfigFile):
        if before.get("exists") and (before.get("type") != "file"
                                     or not is_ours(ConfigFile.data(before))):
            return f"it would restore {target.path} to a file q3cn-doctor did not write"
        if not entry.get("what", target.path).startswith(target.path):
            return f"it describes {target.path} as something else"
    return None


def _folders_problem(entry: dict[str, Any], target: Target) -> str | None:
    """Folders a change created lie above its file, /etc or below it, outermost first."""
    folders = entry.get("created_dirs", [])
    if not isinstance(folders, list) or (folders and not isinstance(target, ConfigFile)):
        return "its created folders are not a list of folders above its file"
    for folder in folders:
        if (not isinstance(folder, str) or not (folder + "/").startswith("/etc/")
                or not target.path.startswith(folder + "/")
                or any(part in ("", ".", "..") for part in folder[1:].split("/"))):
            return f"it names a created folder ({folder!r}) that is not above {target.path}"
    if folders != sorted(set(folders), key=len):
        return "its created folders are not the folders above its file, outermost first"
    return None

"""The fix engine's write-ahead journal: ``<state_dir>/journal.json`` (``/var/lib/q3cn-doctor``).

Every change the engine makes is recorded here, with the value or file bytes it
replaces, and the record is on disk (fsynced, renamed into place) before the
change is made. A change then moves through these states:

    pending   recorded; the change may or may not have happened (a crash here)
    applied   made and read back; ``after`` is what it read back
    failed    the write was refused; the target reads as before
    reverted  the recorded ``before`` is back (or was never changed)
    left      changed by someone else since q3cn-doctor wrote it: left alone

``--revert`` walks every pending, applied and failed entry newest first and
restores ``before`` wherever the target still holds ``before`` or ``after``.
Because a target can only be in one of those two states between any two steps,
a crash anywhere leaves something revert restores exactly.

The whole journal is rewritten atomically on each step (a few kB at most), so
it is always one consistent JSON document: the old one or the new one.

Beside the entries, ``measurements`` keeps what ``fix --apply --measure`` measured
before and after a run's changes (tokens/s), by run: ``fix --status`` shows the delta.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Iterator
from typing import Any, Callable

from q3cn_doctor.host.base import Host
from q3cn_doctor.version import __version__

JOURNAL_NAME = "journal.json"
LOCK_NAME = "lock"
FORMAT = 1

PENDING, APPLIED, FAILED, REVERTED, LEFT = "pending", "applied", "failed", "reverted", "left"
OPEN_STATES = (PENDING, APPLIED, FAILED)  # what --revert still has to look at
STATES = OPEN_STATES + (REVERTED, LEFT)
# The fields every entry has (``record`` writes them), by type: what revert and status read.
ENTRY_FIELDS = {"seq": int, "time": str, "state": str, "fix": str, "target": dict}


class JournalError(Exception):
    """The journal cannot be read or written: nothing may be changed without it."""


KEEP_LEFT = 50
"""Entries left to someone else that ``--status`` keeps listing, newest kept."""


def compacted(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The journal without finished cycles: reverted entries go (they are done), and only
    the newest KEEP_LEFT left-alone ones stay. Thousands of apply/revert cycles then
    leave a journal of one cycle, and each step rewrites a few kB, not megabytes."""
    left = [index for index, entry in enumerate(entries) if entry["state"] == LEFT]
    dropped = set(left[:-KEEP_LEFT]) if len(left) > KEEP_LEFT else set()
    return [entry for index, entry in enumerate(entries)
            if entry["state"] != REVERTED and index not in dropped]


def untrusted(host: Host, path: str, found: Any, kind: str) -> str | None:
    """Why the state folder or a file in it cannot be trusted: not a ``kind`` (a link),
    owned by another user than root or this one, or writable by group or others."""
    if found.kind != kind:
        return f"{path} is a {found.kind}, not a {'folder' if kind == 'dir' else 'file'}"
    owner = host.writer_uid()
    if owner is not None and found.uid is not None and found.uid not in (owner, 0):
        return f"{path} is owned by uid {found.uid}, not by root"
    if found.mode is not None and found.mode & 0o022:
        return f"{path} is writable by other users (mode {found.mode:04o})"
    return None


def _no_step(name: str) -> None:
    return None


def _well_formed(entry: Any) -> bool:
    """An entry revert and status can read: a damaged or hand-edited journal is refused
    as a whole (JournalError) rather than failing half-way through a revert."""
    if not isinstance(entry, dict) or "before" not in entry:
        return False
    if not all(isinstance(entry.get(name), kind) for name, kind in ENTRY_FIELDS.items()):
        return False
    target = entry["target"]
    return (entry["state"] in STATES and isinstance(target.get("kind"), str)
            and isinstance(target.get("path"), str))


class Journal:
    """The journal of one host; ``step`` is called after every durable step (tests crash there)."""

    def __init__(self, host: Host, step: Callable[[str], None] | None = None) -> None:
        self.host = host
        self.directory = host.state_dir
        self.path = f"{self.directory}/{JOURNAL_NAME}"
        self.step = step or _no_step
        self.measurements: list[dict[str, Any]] = []
        self.entries: list[dict[str, Any]] = self._load()

    # -- reading -----------------------------------------------------------------
    def _load(self) -> list[dict[str, Any]]:
        from q3cn_doctor.fixing.entries import entry_problem

        found = self.host.lstat(self.directory)
        if found is None:
            return []
        problem = untrusted(self.host, self.directory, found, "dir")
        if problem:
            raise JournalError(f"{problem}: q3cn-doctor will not keep or trust a journal there; "
                               "nothing was changed")
        file = self.host.lstat(self.path)
        problem = untrusted(self.host, self.path, file, "file") if file else None
        if problem:
            raise JournalError(f"{problem}: q3cn-doctor does not trust it; nothing was changed")
        try:
            raw = self.host.read_bytes(self.path)
        except FileNotFoundError:
            return []
        except PermissionError as exc:
            raise JournalError(f"cannot read {self.path}: only root may (run with sudo)"
                               ) from exc
        except OSError as exc:
            raise JournalError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        try:
            document = json.loads(raw)
            entries = document["entries"]
            if document.get("format") != FORMAT or not isinstance(entries, list):
                raise ValueError("unknown format")
        except (ValueError, KeyError, TypeError) as exc:
            raise JournalError(f"{self.path} is not a journal q3cn-doctor can read ({exc}); "
                               "move it aside to start a new one") from exc
        for number, entry in enumerate(entries, 1):
            problem = None if _well_formed(entry) else "fields missing or of the wrong type"
            problem = problem or entry_problem(entry)
            if problem:
                raise JournalError(f"{self.path}: entry {number} is not one q3cn-doctor wrote "
                                   f"({problem}); nothing was changed. Move the file aside to "
                                   "start a new journal")
        measurements = document.get("measurements") or []
        self.measurements = [m for m in measurements if isinstance(m, dict)] \
            if isinstance(measurements, list) else []
        return entries

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One run at a time changes the machine: two would each rewrite the journal and
        one's records could be lost. The entries are re-read once the lock is held."""
        try:
            self._ensure_directory()
            with self.host.locked(f"{self.directory}/{LOCK_NAME}"):
                self.entries = self._load()
                self._recover()
                yield
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise JournalError("another `q3cn-doctor fix` is changing this machine right "
                                   "now; try again when it has finished") from exc
            raise JournalError(f"cannot lock {self.directory}: {exc.strerror or exc}") from exc

    def _recover(self) -> None:
        """What a killed run left: its temporaries (in the state folder and beside every
        file the journal names), and closed cycles that would only grow the journal."""
        folders = {self.directory}
        for entry in self.entries:
            target = entry["target"]
            if target["kind"] in ("file", "sysctl", "sysfs"):
                folders.add(os.path.dirname(target["path"]))
            elif target["kind"] == "affinity":  # a --root tree's /proc status files
                threads = (entry["before"] or {}).get("threads") or {}
                folders.update([target["path"]] + [f"{target['path']}/task/{tid}"
                                                   for tid in threads])
            folders.update(entry.get("created_dirs") or [])
        for folder in sorted(folders):
            self.host.remove_temporaries(folder)
        self.entries = compacted(self.entries)

    def open_entries(self) -> list[dict[str, Any]]:
        """Entries --revert still has to look at, newest first."""
        return [entry for entry in reversed(self.entries) if entry["state"] in OPEN_STATES]

    # -- writing -----------------------------------------------------------------
    def _ensure_directory(self) -> None:
        """The state folder: parents 0755, the folder itself 0700 (root's, holding file copies)."""
        missing = []
        path = self.directory
        while path not in ("", "/"):
            found = self.host.lstat(path)
            if found is not None:
                if found.kind != "dir":
                    raise JournalError(f"{path} is a {found.kind}, not a folder")
                break
            missing.append(path)
            path = os.path.dirname(path)
        for folder in reversed(missing):
            self.host.make_dir(folder, 0o700 if folder == self.directory else 0o755)
        if missing:
            self.step("state-dir")

    def save(self) -> None:
        document = {"format": FORMAT, "tool": f"q3cn-doctor {__version__}",
                    "entries": self.entries}
        if self.measurements:
            document["measurements"] = self.measurements
        data = (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()
        try:
            self._ensure_directory()
            self.host.write_bytes(self.path, data, mode=0o600)
        except OSError as exc:
            raise JournalError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def record(self, **fields: Any) -> dict[str, Any]:
        """Write an entry ahead of its change; the change may be made once this returns."""
        entry = {"seq": (self.entries[-1]["seq"] + 1) if self.entries else 1,
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "state": PENDING}
        entry.update(fields)
        self._append(self.entries, entry)
        self.step(f"record {entry['seq']}")
        return entry

    def record_measurement(self, **fields: Any) -> dict[str, Any]:
        """Keep a run's before/after speed (fix --apply --measure) with its changes."""
        measurement = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields}
        self._append(self.measurements, measurement)
        return measurement

    def _append(self, items: list[dict[str, Any]], item: dict[str, Any]) -> None:
        """Add ``item`` and write the journal; on failure the journal is as it was."""
        items.append(item)
        try:
            self.save()
        except JournalError:
            items.pop()
            raise

    def mark(self, entry: dict[str, Any], state: str, **fields: Any) -> None:
        entry["state"] = state
        entry.update(fields)
        self.save()
        self.step(f"{state} {entry['seq']}")

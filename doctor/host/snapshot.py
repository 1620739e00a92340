"""Snapshots: a machine recorded as files, and replayed as a read-only host.

Layout (a contract every issue shares):
- ``snapshot.json``: format, tool version, time, euid, the judged user, rlimits, capabilities,
  allow-listed environment, processes, read errors, and what was not captured.
- ``fs/<absolute path>``: each file as read; symlinks stored as symlinks.
- ``cmd/<slug>.out|.err|.rc``: each command; ``.rc`` holds a number or
  not-installed / timed-out / permission-denied; an ``.out`` with no ``.rc`` exited 0.
- ``nvml.json``: NVML readings (layout in doctor/nvml.py).
Whatever a snapshot lacks reads as absent on that host.
"""

from __future__ import annotations

import bz2
import contextlib
import datetime
import errno
import gzip
import io
import json
import mmap
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from typing import Any

from q3cn_doctor.host import redact
from q3cn_doctor.host.base import (
    ABSENT,
    COMMAND_STATES,
    ENV_ALLOW,
    MIB,
    OUTPUT_CAP,
    RAN,
    CommandResult,
    Host,
    Process,
    command_slug,
    open_regular,
    read_regular,
    resolve_under,
)
from q3cn_doctor.host.live import LiveHost
from q3cn_doctor.host.nvml import conform
from q3cn_doctor.records import plain
from q3cn_doctor.version import __version__

FORMAT_VERSION = 1
_SNAPSHOT_PARTS = ("snapshot.json", "fs", "cmd", "nvml.json", "model.json", "server.json",
                   "elf.json", "load.json")
LEGACY_ELF_SUFFIX = ".elf.json"  # format 1 snapshots kept an ELF reading beside its file
NVML_ABSENT = {"init": "absent", "reason": "not in this snapshot"}
# The most bytes each part of a snapshot may hold (a real one is far below): larger
# parts read as absent, so a hostile snapshot cannot make a replay read gigabytes.
META_LIMIT = 64 * MIB  # snapshot.json: every process and listing of a large machine
RECORD_LIMIT = 64 * MIB  # nvml.json, model.json, server.json, elf.json
OUTPUT_LIMIT = OUTPUT_CAP  # a command's .out or .err: what a live run keeps of it
RC_LIMIT = 64


class SnapshotError(Exception):
    """A snapshot that cannot be opened: the CLI turns this into a clear message."""


class SnapshotHost(Host):
    """A recorded machine, read-only. It never runs anything live."""

    kind = "snapshot"

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = os.path.abspath(directory)
        # Every path inside the snapshot is resolved within it: a symlinked fs/, cmd/ or
        # snapshot.json (a crafted archive) must not turn a replay into a live read.
        try:
            self.fs = resolve_under(self.directory, "/fs")
            self.meta = _load_meta(self.directory)
        except OSError as exc:  # a link loop (ELOOP), a FIFO, a file too large
            raise SnapshotError(f"{self.directory} is not a readable snapshot: "
                                f"{exc.strerror or exc}") from exc
        # Validated at the door: the checks see these well typed, or not at all.
        self._errors = _recorded_errors(self.meta.get("errors"))
        self._listings = _recorded_listings(self.meta.get("listings"))
        self._records: dict[str, dict] = {}  # <kind>.json, read on first use

    def describe(self) -> str:
        return f"snapshot {self.directory}"

    def _recorded_error(self, path: str) -> None:
        code = self._errors.get(path)
        if code is not None:
            raise OSError(code, os.strerror(code), path)

    def _read_bytes(self, path: str) -> bytes:
        self._recorded_error(path)
        return read_regular(resolve_under(self.fs, path), path)

    def _listdir(self, path: str) -> list[str]:
        self._recorded_error(path)
        if path in self._listings:
            return list(self._listings[path])
        return os.listdir(resolve_under(self.fs, path))

    def _real_path(self, path: str) -> str:
        return resolve_under(self.fs, path)

    def _readlink(self, path: str) -> str:
        return os.readlink(resolve_under(self.fs, path, follow_last=False))

    def _exists(self, path: str) -> bool:
        return os.path.lexists(resolve_under(self.fs, path, follow_last=False))

    def _is_dir(self, path: str) -> bool:
        return os.path.isdir(resolve_under(self.fs, path))

    def _run(self, argv: tuple[str, ...], timeout: float) -> CommandResult:
        base = "/cmd/" + command_slug(argv)
        rc_text = _read_optional(self.directory, base + ".rc", RC_LIMIT)
        stdout = _read_optional(self.directory, base + ".out", OUTPUT_LIMIT)
        if stdout is None and _present(self.directory, base + ".out"):
            return CommandResult(argv, ABSENT, stderr=f"{base}.out is not a regular file of "
                                                      f"at most {OUTPUT_LIMIT // MIB} MiB")
        if rc_text is None and stdout is None:
            return CommandResult(argv, ABSENT, stderr="not in this snapshot")
        # An output pasted alone (a bug report's dmidecode) is a command that ran and
        # exited 0: only a recording writes the .rc beside it.
        rc_text = "0" if rc_text is None else rc_text.strip()
        stdout = stdout or ""
        stderr = _read_optional(self.directory, base + ".err", OUTPUT_LIMIT) or ""
        if rc_text in COMMAND_STATES:
            return CommandResult(argv, rc_text, None, stdout, stderr)
        try:
            return CommandResult(argv, RAN, int(rc_text), stdout, stderr)
        except ValueError:
            return CommandResult(argv, ABSENT, stderr=f"unreadable {base}.rc")

    def nvml(self) -> dict:
        text = _read_optional(self.directory, "/nvml.json")
        if text is None:
            return dict(NVML_ABSENT)
        try:
            readings = json.loads(text)
        except (ValueError, RecursionError):
            return {"init": "NVML_ERROR_UNKNOWN", "reason": "nvml.json is not valid JSON"}
        return conform(readings)

    # A value of the wrong shape (a hand-edited or damaged snapshot.json) reads as absent.
    def environ(self) -> dict[str, str]:
        environ = self.meta.get("environ")
        if not isinstance(environ, dict):
            return {}
        return {str(name): str(text) for name, text in environ.items()}

    def euid(self) -> int | None:
        return _whole(self.meta.get("euid"))

    def recorded_user(self) -> str | None:
        """The user the recording judged (``--user``), else the one behind sudo, else who
        recorded it: replaying as root must not judge root's limits instead of theirs."""
        user = self.meta.get("user")
        if isinstance(user, str) and user:
            return user
        environ = self.environ()
        return environ.get("SUDO_USER") or environ.get("USER") or None

    def rlimits(self) -> dict[str, tuple[int, int]]:
        limits = self.meta.get("rlimits")
        if not isinstance(limits, dict):
            return {}
        return {name: (pair[0], pair[1]) for name, pair in limits.items()
                if isinstance(pair, list) and len(pair) == 2 and all(
                    _whole(limit) is not None for limit in pair)}

    def capabilities(self) -> int | None:
        return _whole(self.meta.get("capabilities"))

    def _list_processes(self) -> list[Process]:
        entries = self.meta.get("processes")
        return [process for process in map(_process, entries if isinstance(entries, list)
                                           else []) if process is not None]

    def recorded(self, kind: str, key: str) -> Any:
        """The reading kept in ``<kind>.json`` under ``key`` (``model.json``: model path
        -> its GGUF facts). Snapshots before elf.json kept an ELF reading beside the
        file's placeholder, as ``fs/<path>.elf.json``: those replay too."""
        if kind not in self._records:
            record = _json_or_none(_read_optional(self.directory, f"/{kind}.json"))
            self._records[kind] = record if isinstance(record, dict) else {}
        found = self._records[kind].get(key)
        if found is None and kind == "elf":
            found = _json_or_none(_read_optional(self.fs, key + LEGACY_ELF_SUFFIX))
        return found


def _whole(value: object) -> int | None:
    """An integer from snapshot.json, or None (a bool is not one)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _process(entry: object) -> Process | None:
    """A recorded process, or None where the entry is not one."""
    if not isinstance(entry, dict) or _whole(entry.get("pid")) is None:
        return None
    cmdline, affinity = entry.get("cmdline"), entry.get("affinity")
    return Process(
        pid=entry["pid"],
        name=str(entry.get("name") or ""),
        cmdline=[str(arg) for arg in cmdline] if isinstance(cmdline, list) else [],
        affinity=[cpu for cpu in affinity if _whole(cpu) is not None]
        if isinstance(affinity, list) else None,
        threads=_whole(entry.get("threads")),
        uid=_whole(entry.get("uid")),
    )


def _read_optional(directory: str, path: str, limit: int = RECORD_LIMIT) -> str | None:
    """The text of ``path`` inside ``directory`` (links resolved within it), or None where
    it is absent, not a regular file or larger than ``limit``."""
    try:
        return read_regular(resolve_under(directory, path), path, limit).decode(
            "utf-8", errors="replace")
    except OSError:
        return None


def _present(directory: str, path: str) -> bool:
    try:
        return os.path.lexists(resolve_under(directory, path))
    except OSError:
        return False


def _json_or_none(text: str | None) -> Any:
    """A recorded JSON document, or None where there is none or it does not parse (a
    document nested thousands deep raises RecursionError in the parser)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _load_meta(directory: str) -> dict:
    """snapshot.json as an object (empty where there is none); SnapshotError where it is
    not JSON or not an object, OSError where it cannot be read."""
    meta_path = resolve_under(directory, "/snapshot.json")
    if not os.path.lexists(meta_path):
        return {}
    try:
        meta = json.loads(read_regular(meta_path, "/snapshot.json", META_LIMIT))
    except (ValueError, RecursionError) as exc:
        raise SnapshotError(f"{meta_path} is not a readable snapshot.json: {exc}") from exc
    if not isinstance(meta, dict):
        raise SnapshotError(f"{meta_path} is not a snapshot.json: it holds a "
                            f"{type(meta).__name__}, not an object")
    return meta


def _recorded_errors(errors: object) -> dict[str, int]:
    """``errors`` (path -> errno name) as path -> errno number; an entry that is not a
    path and a name is dropped, a name this system lacks reads as EIO."""
    if not isinstance(errors, dict):
        return {}
    found = {}
    for path, name in errors.items():
        if isinstance(path, str):
            known = isinstance(name, str) and name in errno.errorcode.values()
            found[path] = getattr(errno, name) if known else errno.EIO
    return found


def _recorded_listings(listings: object) -> dict[str, list[str]]:
    """``listings`` (folder -> names): only lists of names are kept."""
    if not isinstance(listings, dict):
        return {}
    return {path: list(names) for path, names in listings.items()
            if isinstance(path, str) and isinstance(names, list)
            and all(isinstance(name, str) and name and "/" not in name for name in names)}


class RecordingHost(LiveHost):
    """The live machine, writing everything read into a snapshot directory as it goes."""

    kind = "live"

    def __init__(self, directory: str, redacted: bool = True, user: str | None = None) -> None:
        super().__init__()
        self.directory = os.path.abspath(directory)
        self.fs = os.path.join(self.directory, "fs")
        self.redacted = redacted
        self.user = user  # the launching user the checks judged, replayed as the default
        self.errors: dict[str, str] = {}
        self.listings: dict[str, list[str]] = {}
        self.not_captured: list[dict[str, str]] = []
        self._nvml: dict | None = None
        self.records: dict[str, dict] = {}  # kind -> key -> reading: parsed, never the files
        os.makedirs(os.path.join(self.directory, "cmd"), exist_ok=True)
        os.makedirs(self.fs, exist_ok=True)

    # -- recording primitives -------------------------------------------------
    def _store_path(self, path: str, follow_last: bool = True) -> str:
        return resolve_under(self.fs, path, follow_last=follow_last)

    def _record_error(self, path: str, exc: OSError) -> None:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR) and exc.errno is not None:
            self.errors[path] = errno.errorcode.get(exc.errno, "EIO")

    def _mirror_link(self, path: str) -> bool:
        """Store a symlink as a symlink; True where ``path`` is one."""
        if not os.path.islink(path):
            return False
        target = os.readlink(path)
        stored = self._store_path(path, follow_last=False)
        if not os.path.lexists(stored):
            os.makedirs(os.path.dirname(stored), exist_ok=True)
            os.symlink(target, stored)
        return True

    def _mirror_parents(self, path: str) -> None:
        """Recreate the symlinks along a path so reads through them replay (sysfs)."""
        parts = [p for p in path.split("/") if p]
        for depth in range(1, len(parts)):
            self._mirror_link("/" + "/".join(parts[:depth]))

    def _read_bytes(self, path: str) -> bytes:
        try:
            data = super()._read_bytes(path)
        except OSError as exc:
            self._record_error(path, exc)
            raise
        self._mirror_parents(path)
        self._mirror_link(path)  # a file read through a link (/etc/os-release) keeps its link
        stored = self._store_path(path)
        os.makedirs(os.path.dirname(stored), exist_ok=True)
        with open(stored, "wb") as handle:
            handle.write(redact.redact_file(path, data) if self.redacted else data)
        return data

    @contextlib.contextmanager
    def mapped(self, path: str) -> Iterator[bytes | mmap.mmap]:
        """Large files (a model, a CUDA build of libggml at 500 MB) are never copied: an
        empty placeholder keeps the path, and the reader's ``record`` keeps what it read."""
        with super().mapped(path) as view:
            yield view
        self._mirror_parents(path)
        stored = self._store_path(path)
        os.makedirs(os.path.dirname(stored), exist_ok=True)
        open(stored, "ab").close()

    def record(self, kind: str, key: str, value: Any) -> None:
        """Keep a derived reading in ``<kind>.json`` under ``key``, for
        ``SnapshotHost.recorded``; written by ``finish``."""
        self.records.setdefault(kind, {})[key] = value

    def cache_dir(self) -> str | None:
        return None  # a recording must read (and so record) every source itself

    def _listdir(self, path: str) -> list[str]:
        try:
            names = super()._listdir(path)
        except OSError as exc:
            self._record_error(path, exc)
            raise
        self._mirror_parents(path)
        if not self._mirror_link(path):
            os.makedirs(self._store_path(path), exist_ok=True)
        self.listings[path] = sorted(names)
        for name in names:  # links and folders, so globbing and resolving replay
            child = path.rstrip("/") + "/" + name
            if not self._mirror_link(child) and os.path.isdir(child):
                os.makedirs(self._store_path(child), exist_ok=True)
        return names

    def _readlink(self, path: str) -> str:
        try:
            target = super()._readlink(path)
        except OSError as exc:
            self._record_error(path, exc)
            raise
        self._mirror_parents(path)
        self._mirror_link(path)
        return target

    def _exists(self, path: str) -> bool:
        found = super()._exists(path)
        if found:
            self._mirror_parents(path)
            if not self._mirror_link(path):
                if os.path.isdir(path):
                    os.makedirs(self._store_path(path), exist_ok=True)
                else:
                    stored = self._store_path(path)
                    os.makedirs(os.path.dirname(stored), exist_ok=True)
                    if not os.path.exists(stored):
                        open(stored, "wb").close()  # presence is what was asked
        return found

    def _is_dir(self, path: str) -> bool:
        found = super()._is_dir(path)
        if found:
            self._mirror_parents(path)
            if not self._mirror_link(path):
                os.makedirs(self._store_path(path), exist_ok=True)
        return found

    def _run(self, argv: tuple[str, ...], timeout: float) -> CommandResult:
        result = super()._run(argv, timeout)
        base = os.path.join(self.directory, "cmd", command_slug(argv))
        clean = redact.redact_text if self.redacted else (lambda text: text)
        _write_text(base + ".out", clean(result.stdout))
        _write_text(base + ".err", clean(result.stderr))
        _write_text(base + ".rc", f"{result.returncode}\n" if result.state == RAN else result.state)
        return result

    def nvml(self) -> dict:
        if self._nvml is None:
            self._nvml = super().nvml()
        return self._nvml

    # -- closing ----------------------------------------------------------------
    def finish(self) -> str:
        """Write snapshot.json and nvml.json; return the directory."""
        readings = self.nvml()
        if self.redacted:
            readings = redact.redact_nvml(readings)
        _write_text(os.path.join(self.directory, "nvml.json"), json.dumps(readings, indent=2))
        for kind, record in self.records.items():
            _write_text(os.path.join(self.directory, f"{kind}.json"),
                        json.dumps(record, indent=2))
        environ = self.environ()
        if self.redacted:
            environ = {k: v for k, v in environ.items() if k in ENV_ALLOW}
        processes = []
        for process in self.processes():
            entry = plain(process)
            if self.redacted:
                entry["cmdline"] = redact.redact_process_cmdline(entry["name"], entry["cmdline"])
            processes.append(entry)
        meta = {
            "format": FORMAT_VERSION,
            "tool_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "redacted": self.redacted,
            "euid": self.euid(),
            "user": self.user,
            "rlimits": {name: list(pair) for name, pair in self.rlimits().items()},
            "capabilities": self.capabilities(),
            "environ": environ,
            "processes": processes,
            "errors": dict(sorted(self.errors.items())),
            "listings": dict(sorted(self.listings.items())),
            "not_captured": self.not_captured,
        }
        _write_text(os.path.join(self.directory, "snapshot.json"), json.dumps(meta, indent=2))
        return self.directory


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(text)


def write_tar(directory: str, tar_path: str) -> None:
    """Pack a snapshot directory into one .tar.gz a user can attach to a report."""
    with tarfile.open(tar_path, "w:gz") as archive:
        for name in sorted(os.listdir(directory)):
            archive.add(os.path.join(directory, name), arcname=name)


class ExtractedSnapshot(SnapshotHost):
    """A snapshot read from a .tar.gz, unpacked into a private temporary folder."""

    def __init__(self, tar_path: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="q3cn-doctor-snapshot-")
        try:
            _safe_extract(tar_path, self._tmp.name)
        except (OSError, EOFError, zlib.error, tarfile.TarError) as exc:  # damaged, or a bomb
            self._tmp.cleanup()
            raise SnapshotError(f"cannot read snapshot archive {tar_path}: {exc}") from exc
        root = self._tmp.name
        entries = os.listdir(root)
        if len(entries) == 1 and entries[0] not in _SNAPSHOT_PARTS:
            inner = os.path.join(root, entries[0])  # an archive of the folder itself
            if os.path.isdir(inner) and not os.path.islink(inner):
                root = inner
        super().__init__(root)
        self.archive = os.path.abspath(tar_path)

    def describe(self) -> str:
        return f"snapshot {self.archive}"


ARCHIVE_BYTES = 64 * MIB
"""The most an archive may unpack to, headers included: a real snapshot is a few MiB."""
ARCHIVE_MEMBERS = 32768  # files, folders and links: sysfs of a 512-CPU machine is ~20000
ARCHIVE_DEPTH = 64  # folders from the top: sysfs's deepest path is about 20
ARCHIVE_NAME = 4096  # characters in one member's name (PATH_MAX)


class _Capped(io.RawIOBase):
    """A decompressed stream that stops (TarError) past ARCHIVE_BYTES: every byte the
    archive unpacks to passes here, member data and tar headers alike."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self.stream, self.count = stream, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.stream.read(min(len(buffer), ARCHIVE_BYTES + 1 - self.count))
        self.count += len(data)
        if self.count > ARCHIVE_BYTES:
            raise tarfile.TarError(f"it unpacks to more than {ARCHIVE_BYTES // MIB} MiB; "
                                   "a snapshot is a few MiB")
        buffer[:len(data)] = data
        return len(data)


def _decompressed(raw: Any) -> Any:
    """The tar stream inside ``raw``: gzip (what ``snapshot --tar`` writes), bzip2 or
    none. xz is refused: its header alone can make the decoder allocate 1.5 GiB."""
    magic = raw.read(6)
    raw.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(raw, mode="rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        raise tarfile.TarError("an xz archive: recompress it as .tar.gz (tar czf)")
    return raw


def _safe_extract(tar_path: str, destination: str) -> None:
    """Unpack without letting a member escape: no absolute or ``..`` names, no
    device files, and no file written through a link the archive itself made.
    Bounded: ARCHIVE_BYTES unpacked, ARCHIVE_MEMBERS members, ARCHIVE_DEPTH folders
    deep; sparse members (a GiB of holes in a few bytes), hard links and devices are
    skipped. Read as a stream, once: a bomb is stopped at the cap, never held."""
    links: set[str] = set()
    with os.fdopen(open_regular(tar_path, tar_path), "rb") as raw, \
            tarfile.open(fileobj=_Capped(_decompressed(raw)), mode="r|") as archive:
        for count, member in enumerate(archive, 1):
            if count > ARCHIVE_MEMBERS:
                raise tarfile.TarError(f"more than {ARCHIVE_MEMBERS} members")
            name = _member_name(member)
            # The member itself too: writing a file over a link member of the same name
            # would write wherever the link points.
            if any("/".join(name.split("/")[:i]) in links
                   for i in range(1, name.count("/") + 2)):
                raise tarfile.TarError(f"member {member.name!r} lies behind or over a link")
            target = os.path.join(destination, name)
            if member.issym():
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.symlink(member.linkname, target)
                links.add(name)
            elif member.isdir():
                os.makedirs(target, exist_ok=True)
            elif member.isfile() and not member.issparse():
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as out:
                    shutil.copyfileobj(archive.extractfile(member), out)
            # hard links, sparse files, devices and fifos have no place in a snapshot


def _member_name(member: tarfile.TarInfo) -> str:
    """A member's name, normalised; TarError where it is unsafe or absurd."""
    name = os.path.normpath(member.name)
    parts = name.split(os.sep)
    if name.startswith(("/", "..")) or ".." in parts:
        raise tarfile.TarError(f"unsafe member name {member.name[:200]!r}")
    if len(parts) > ARCHIVE_DEPTH:
        raise tarfile.TarError(f"a member nested {len(parts)} folders deep, deeper than "
                               f"{ARCHIVE_DEPTH}")
    if len(name) > ARCHIVE_NAME:
        raise tarfile.TarError(f"a member name of {len(name)} characters")
    return name


def open_snapshot(path: str) -> SnapshotHost:
    """A snapshot from a directory or a .tar.gz, or SnapshotError saying why not."""
    if os.path.isdir(path):
        return SnapshotHost(path)
    if os.path.isfile(path):
        return ExtractedSnapshot(path)
    raise SnapshotError(f"no snapshot at {path}: give a snapshot directory or a .tar.gz")

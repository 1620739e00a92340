"""What a change acts on: the kinds of thing on a machine the fix engine reads, writes and
restores, each with its own idea of "the same" and of "gone".

A ``Target`` is one such thing at one place: a kernel value (/proc/sys, sysfs), a
configuration file under /etc, the CPU affinity of a running process's threads, the
active profile of a tuning daemon. Its state is a JSON value (the journal keeps it, a
later run restores it). The engine (engine.py) treats every target alike:

    read(host)          the state now (None where it cannot be read)
    write(host, state)  make it so (an OSError where the machine refuses)
    same(a, b)          whether two states are the same for this kind of thing
    refusal(state)      why it must never be changed from this state (not ours, a link)
    gone(state, rec)    the thing itself no longer exists: nothing to restore

Files q3cn-doctor writes begin with ``header()``; ``is_ours`` tells them from anyone
else's, which are never modified.
"""

from __future__ import annotations

import base64
import errno
import os
import re
from typing import Any

from q3cn_doctor.fixing.journal import JournalError
from q3cn_doctor.host.base import Host, format_cpu_list, parse_cpu_list

HEADER_START = "# Written by q3cn-doctor"


def header(fix_id: str, comment: str = "#", *, made_by: str | None = None,
           removed_by: str = "q3cn-doctor fix --revert") -> str:
    """The first lines of every file q3cn-doctor writes; without them a file is not ours.

    ``made_by`` and ``removed_by`` name what wrote the file and the command that removes
    it, for files written outside the fix engine (the hooks of ``q3cn-doctor hook``)."""
    return (f"{HEADER_START.replace('#', comment, 1)} ({made_by or 'fix ' + fix_id}). "
            f"`{removed_by}` removes it.\n"
            f"{comment} q3cn-doctor only ever changes files that begin with this header; "
            "edit it and q3cn-doctor leaves it alone.\n")


def is_ours(data: bytes) -> bool:
    """Whether a file's bytes begin with our header (a byte-order mark aside)."""
    return data.lstrip(b"\xef\xbb\xbf").startswith(HEADER_START.encode())


class Target:
    """Something the engine can read, write and compare. States are JSON values, so the
    journal can hold them and a later run can restore them."""

    kind = "target"

    def __init__(self, path: str) -> None:
        self.path = path

    def read(self, host: Host) -> Any:
        raise NotImplementedError

    def write(self, host: Host, state: Any) -> None:
        raise NotImplementedError

    def same(self, a: Any, b: Any) -> bool:
        return a == b

    def show(self, state: Any) -> str:
        return "(unreadable)" if state is None else str(state)

    def refusal(self, state: Any) -> str | None:
        """Why this target must not be changed from ``state``, if it must not."""
        return None

    def gone(self, state: Any, recorded: Any = None) -> bool:
        """The thing itself no longer exists (a process that exited, or a pid now used by
        another process than the ``recorded`` one): nothing to restore."""
        return False

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path}


class KernelValue(Target):
    """A /proc/sys or sysfs file. ``choice`` files show every option with the chosen one
    in brackets (``always [madvise] never``); their state is the chosen word."""

    def __init__(self, path: str, kind: str = "sysfs", choice: bool = False,
                 key: str | None = None) -> None:
        super().__init__(path)
        self.kind = kind  # "sysctl" or "sysfs"
        self.choice = choice
        self.key = key

    def read(self, host: Host) -> str | None:
        try:
            text = host.read_text(self.path)
        except OSError:
            return None
        if self.choice:
            match = re.search(r"\[([^\]]+)\]", text)
            return match.group(1) if match else None
        return " ".join(text.split())

    def write(self, host: Host, state: Any) -> None:
        host.write_kernel_value(self.path, f"{state}\n")

    def refusal(self, state: Any) -> str | None:
        return f"{self.path} cannot be read" if state is None else None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "choice": self.choice, "key": self.key}


class ConfigFile(Target):
    """A configuration file under /etc. State: ``{"exists": false}`` or the file's bytes
    (base64) and mode; a link or folder there is recorded as such and never touched."""

    kind = "file"

    def __init__(self, path: str, mode: int = 0o644) -> None:
        super().__init__(path)
        self.mode = mode

    @staticmethod
    def wanted(data: bytes, mode: int = 0o644) -> dict[str, Any]:
        return {"exists": True, "type": "file", "data": base64.b64encode(data).decode(),
                "mode": mode}

    @staticmethod
    def data(state: dict[str, Any]) -> bytes:
        return base64.b64decode(state.get("data", ""))

    def read(self, host: Host) -> dict[str, Any] | None:
        try:
            found = host.lstat(self.path)
        except OSError:
            return None
        if found is None:
            return {"exists": False}
        if found.kind != "file":
            return {"exists": True, "type": found.kind}
        try:
            data = host.read_bytes(self.path)
        except OSError:
            return None
        state = self.wanted(data, found.mode if found.mode is not None else self.mode)
        return state

    def write(self, host: Host, state: Any) -> None:
        if state.get("exists"):
            mode = state.get("mode")  # 0 is a mode too: restored as recorded, not defaulted
            host.write_bytes(self.path, self.data(state), self.mode if mode is None else mode)
        else:
            host.remove(self.path)

    def same(self, a: Any, b: Any) -> bool:
        if a is None or b is None:
            return False
        if not a.get("exists") or not b.get("exists"):
            return a.get("exists") == b.get("exists")
        return (a.get("type") == b.get("type") == "file" and a.get("data") == b.get("data")
                and a.get("mode") == b.get("mode"))

    def show(self, state: Any) -> str:
        if state is None:
            return "(unreadable)"
        if not state.get("exists"):
            return "(absent)"
        if state.get("type") != "file":
            return f"({state.get('type')})"
        lines = [line.strip() for line in self.data(state).decode("utf-8", "replace")
                 .splitlines() if line.strip() and not line.lstrip().startswith(("#", ";"))]
        text = "; ".join(lines) or "(comments only)"
        return text if len(text) <= 60 else text[:57] + "..."

    def refusal(self, state: Any) -> str | None:
        if state is None:
            return f"{self.path} cannot be read"
        if not state.get("exists"):
            return None
        if state.get("type") == "link":
            return (f"{self.path} is a symbolic link: q3cn-doctor never writes through a "
                    "link (remove it if it is not meant to be there)")
        if state.get("type") != "file":
            return f"{self.path} is a {state.get('type')}, not a file"
        if not is_ours(self.data(state)):
            return (f"{self.path} exists and was not written by q3cn-doctor (no header): "
                    "it is never modified")
        return None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "mode": self.mode}


def process_start(host: Host, pid: int) -> int | None:
    """A process's start time in clock ticks (``/proc/PID/stat`` field 22): with the pid,
    it tells the same process from a later one that reused the number."""
    host.forget()
    text = host.cat(f"/proc/{pid}/stat")
    if not text or ")" not in text:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


class ThreadAffinity(Target):
    """Which CPUs each thread of one running process may use. State:
    ``{"start": <start time>, "threads": {"<tid>": "<cpu list>"}}``."""

    kind = "affinity"

    def __init__(self, pid: int, name: str = "") -> None:
        super().__init__(f"/proc/{pid}")
        self.pid = pid
        self.name = name

    def read(self, host: Host) -> dict[str, Any]:
        start = process_start(host, self.pid)
        threads: dict[str, str] = {}
        if start is not None:
            for tid in host.thread_ids(self.pid):
                try:
                    threads[str(tid)] = format_cpu_list(host.get_affinity(self.pid, tid))
                except OSError:
                    continue  # the thread ended while we looked
        return {"start": start, "threads": threads}

    def write(self, host: Host, state: Any) -> None:
        if process_start(host, self.pid) != state["start"]:
            raise ProcessLookupError(errno.ESRCH, f"process {self.pid} is not the one planned for")
        live = set(host.thread_ids(self.pid))
        for tid, cpus in sorted(state["threads"].items()):
            if int(tid) in live:
                host.set_affinity(self.pid, int(tid), parse_cpu_list(cpus))

    def same(self, a: Any, b: Any) -> bool:
        if a.get("start") is None or a.get("start") != b.get("start"):
            return False
        common = set(a["threads"]) & set(b["threads"])
        return all(a["threads"][t] == b["threads"][t] for t in common)

    def gone(self, state: Any, recorded: Any = None) -> bool:
        if state.get("start") is None:
            return True
        return recorded is not None and recorded.get("start") != state.get("start")

    def refusal(self, state: Any) -> str | None:
        return f"process {self.pid} is not running" if self.gone(state) else None

    def show(self, state: Any) -> str:
        if state is None or state.get("start") is None:
            return "(no such process)"
        lists = sorted(set(state["threads"].values()))
        return "CPUs " + " / ".join(lists) if lists else "(no threads)"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "pid": self.pid, "name": self.name}


LOADED, UNLOADED, BUILTIN = "loaded", "not loaded", "built in"
_MODULE_NAME = re.compile(r"^[a-z0-9_]{1,56}$")


class KernelModule(Target):
    """A loadable kernel module, loaded or not: ``/sys/module/NAME/initstate`` exists
    while it is loaded (a module built into the kernel has the folder, never that file,
    and is never touched). Loaded with modprobe, unloaded with modprobe -r."""

    kind = "module"

    def __init__(self, name: str) -> None:
        if not _MODULE_NAME.match(name):
            raise ValueError(f"{name!r} is not a kernel module name")
        super().__init__(f"/sys/module/{name}")
        self.name = name

    def read(self, host: Host) -> str:
        host.forget()
        if host.exists(f"{self.path}/initstate"):
            return LOADED
        return BUILTIN if host.is_dir(self.path) else UNLOADED

    def write(self, host: Host, state: Any) -> None:
        if state not in (LOADED, UNLOADED):
            raise OSError(errno.EINVAL, f"a module is {LOADED!r} or {UNLOADED!r}", self.path)
        host.set_module_loaded(self.name, state == LOADED)

    def refusal(self, state: Any) -> str | None:
        return f"{self.name} is built into the kernel" if state == BUILTIN else None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "name": self.name}


PROFILE_COMMANDS = {
    # daemon: (argv that prints the active profile, argv prefix that sets one)
    "tuned": (["tuned-adm", "active"], ["tuned-adm", "profile"]),
    "power-profiles-daemon": (["powerprofilesctl", "get"], ["powerprofilesctl", "set"]),
}


class DaemonProfile(Target):
    """The active profile of a tuning daemon (tuned, power-profiles-daemon), switched
    through its own command rather than fought over in sysfs."""

    kind = "profile"

    def __init__(self, daemon: str) -> None:
        super().__init__(daemon)
        self.daemon = daemon

    def read(self, host: Host) -> str | None:
        get, _ = PROFILE_COMMANDS[self.daemon]
        result = host.run(get)
        if not result.ok:
            return None
        text = result.stdout.strip()
        if self.daemon == "tuned":
            match = re.search(r"Current active profile:\s*(\S+)", text)
            return match.group(1) if match else None
        return text or None

    def write(self, host: Host, state: Any) -> None:
        _, put = PROFILE_COMMANDS[self.daemon]
        host.forget()
        result = host.run(put + [str(state)])
        if not result.ok:
            raise OSError(errno.EIO, result.reason(), self.daemon)

    def refusal(self, state: Any) -> str | None:
        if state is None:
            get, _ = PROFILE_COMMANDS[self.daemon]
            return f"the active {self.daemon} profile cannot be read (`{' '.join(get)}`)"
        return None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "daemon": self.daemon}


def target_from_json(spec: dict[str, Any]) -> Target:
    """Rebuild a journal entry's target (a later run reverts what an earlier one did).
    A target this version cannot rebuild is a JournalError: nothing is reverted blind."""
    kind = spec.get("kind")
    try:
        if kind in ("sysctl", "sysfs"):
            return KernelValue(spec["path"], kind, bool(spec.get("choice")), spec.get("key"))
        if kind == "file":
            return ConfigFile(spec["path"], int(spec.get("mode") or 0o644))
        if kind == "affinity":
            return ThreadAffinity(int(spec["pid"]), spec.get("name", ""))
        if kind == "profile" and spec.get("daemon") in PROFILE_COMMANDS:
            return DaemonProfile(spec["daemon"])
        if kind == "module":
            return KernelModule(spec["name"])
    except (KeyError, TypeError, ValueError) as exc:
        raise JournalError(f"a journal entry's {kind} target cannot be read ({exc})") from exc
    raise JournalError(f"a journal entry holds a change this version cannot undo ({kind!r}): "
                       "was it written by a newer q3cn-doctor?")


def missing_dirs(host: Host, path: str) -> list[str]:
    """Folders above ``path`` that do not exist yet, outermost first: what a write there
    creates, recorded so that revert and ``hook uninstall`` remove them again."""
    missing = []
    folder = os.path.dirname(path)
    while folder not in ("", "/") and host.lstat(folder) is None:
        missing.append(folder)
        folder = os.path.dirname(folder)
    return list(reversed(missing))

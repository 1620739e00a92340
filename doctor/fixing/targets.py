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

    def mixed(self, state: Any, before: Any, after: Any) -> bool:
        """Part ``before``, part ``after``: a change of several parts stopped half-way (a
        kill while re-pinning threads). Revert restores ``before`` over it."""
        return False

    def not_allowed(self) -> str | None:
        """Why no fix of q3cn-doctor may change this target (the planner's allow-list, and
        what a journal entry may name); None where one may."""
        return None

    def valid(self, state: Any) -> bool:
        """Whether ``state`` has this kind's shape (a journal's states are checked before
        revert writes one back)."""
        return False

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path}


def _plain(text: Any, limit: int = 4096) -> bool:
    """A string of printable characters, no line break: what a kernel value can be."""
    return (isinstance(text, str) and len(text) <= limit
            and not any(ord(c) < 0x20 or ord(c) == 0x7f for c in text))


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


# The paths fixes/ plans changes to: nothing else is ever written or restored.
_UNIT = r"[A-Za-z0-9:_.\\@-]{1,250}\.service"
ALLOWED_PATHS = {
    "sysctl": re.compile(r"/proc/sys/(?:vm/swappiness|vm/nr_hugepages|kernel/numa_balancing)\Z"),
    "sysfs": re.compile(
        r"/sys/(?:kernel/mm/(?:transparent_hugepage/enabled"
        r"|hugepages/hugepages-[0-9]{1,10}kB/nr_hugepages)"
        r"|devices/system/cpu/(?:intel_pstate/no_turbo|cpufreq/boost"
        r"|(?:cpufreq/policy[0-9]{1,5}|cpu[0-9]{1,5}/cpufreq)"
        r"/(?:scaling_governor|energy_performance_preference)))\Z"),
    "file": re.compile(
        r"/etc/(?:sysctl\.d|tmpfiles\.d|modules-load\.d|security/limits\.d|systemd/system/"
        + _UNIT + r"\.d)"
        r"/[A-Za-z0-9_.@$-]{0,100}q3cn-doctor[A-Za-z0-9_.@$-]{0,100}\.conf\Z"),
}


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

    def not_allowed(self) -> str | None:
        pattern = ALLOWED_PATHS.get(self.kind)
        if pattern is None or not pattern.match(self.path):
            return f"{self.path} is not a kernel value q3cn-doctor's fixes change"
        return None

    def valid(self, state: Any) -> bool:
        return _plain(state)

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
        if found.uid is not None and found.gid is not None:
            state.update(uid=found.uid, gid=found.gid)  # restored exactly by revert
        return state

    def write(self, host: Host, state: Any) -> None:
        if state.get("exists"):
            mode = state.get("mode")  # 0 is a mode too: restored as recorded, not defaulted
            owner = (state["uid"], state["gid"]) if "uid" in state and "gid" in state else None
            host.write_bytes(self.path, self.data(state), self.mode if mode is None else mode,
                             owner)
        else:
            host.remove(self.path)

    def same(self, a: Any, b: Any) -> bool:
        """Bytes and mode; the owner too where both states know it (a planned state does
        not: ours is root's)."""
        if a is None or b is None:
            return False
        if not a.get("exists") or not b.get("exists"):
            return a.get("exists") == b.get("exists")
        owners = all(key in a and key in b for key in ("uid", "gid"))
        return (a.get("type") == b.get("type") == "file" and a.get("data") == b.get("data")
                and a.get("mode") == b.get("mode")
                and (not owners or (a["uid"], a["gid"]) == (b["uid"], b["gid"])))

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

    def not_allowed(self) -> str | None:
        if not ALLOWED_PATHS["file"].match(self.path):
            return f"{self.path} is not a file q3cn-doctor's fixes write"
        return None

    def valid(self, state: Any) -> bool:
        """Absent, or a file (base64 bytes up to 1 MiB, a mode, optionally its owner), or
        something else recorded only by its type."""
        if not isinstance(state, dict) or not isinstance(state.get("exists"), bool):
            return False
        if not state["exists"]:
            return set(state) == {"exists"}
        if state.get("type") in ("link", "dir", "other"):
            return set(state) == {"exists", "type"}
        if state.get("type") != "file" or not _whole(state.get("mode"), 0, 0o7777):
            return False
        if not set(state) <= {"exists", "type", "data", "mode", "uid", "gid"}:
            return False
        if ("uid" in state) != ("gid" in state) or not all(
                _whole(state[key], 0, 2**32 - 2) for key in ("uid", "gid") if key in state):
            return False
        data = state.get("data")
        if not isinstance(data, str) or len(data) > 1_400_000:
            return False
        try:
            base64.b64decode(data, validate=True)
        except ValueError:
            return False
        return True

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

    def mixed(self, state: Any, before: Any, after: Any) -> bool:
        """Some threads re-pinned, the others not yet: each one the journal names reads
        as its recorded mask before or after the change."""
        if after is None or self.gone(state, before):
            return False
        threads = state["threads"]
        return all(threads[tid] in (mask, after["threads"].get(tid))
                   for tid, mask in before["threads"].items() if tid in threads)

    def not_allowed(self) -> str | None:
        return None if self.pid > 0 else f"{self.pid} is not a process id"

    def valid(self, state: Any) -> bool:
        if not isinstance(state, dict) or set(state) != {"start", "threads"}:
            return False
        if state["start"] is not None and not _whole(state["start"], 0, 2**64):
            return False
        threads = state["threads"]
        if not isinstance(threads, dict) or len(threads) > 65536:
            return False
        for tid, cpus in threads.items():
            if not (tid.isdecimal() and len(tid) <= 10 and _plain(cpus, 65536)):
                return False
            try:
                parse_cpu_list(cpus)
            except ValueError:
                return False
        return True

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
ALLOWED_MODULES = {"ee1004", "spd5118"}  # the read-only SPD EEPROM drivers (spd.driver)
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

    def not_allowed(self) -> str | None:
        if self.name not in ALLOWED_MODULES:
            return f"{self.name} is not a kernel module q3cn-doctor's fixes load"
        return None

    def valid(self, state: Any) -> bool:
        return state in (LOADED, UNLOADED, BUILTIN)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "name": self.name}


PROFILE_COMMANDS = {
    # daemon: (argv that prints the active profile, argv prefix that sets one)
    "tuned": (["tuned-adm", "active"], ["tuned-adm", "profile"]),
    "power-profiles-daemon": (["powerprofilesctl", "get"], ["powerprofilesctl", "set"]),
}


PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}\Z")


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

    def not_allowed(self) -> str | None:
        if self.daemon not in PROFILE_COMMANDS:
            return f"{self.daemon} is not a daemon whose profile q3cn-doctor switches"
        return None

    def valid(self, state: Any) -> bool:
        """A profile name: it becomes an argument of tuned-adm or powerprofilesctl."""
        return isinstance(state, str) and bool(PROFILE_NAME.match(state))

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

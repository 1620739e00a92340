"""The fix engine: which fixes the findings call for, what each would change, and one
code path that simulates, applies, verifies and reverts those changes.

A fix (one module in fixes/) says whether it can run here (``available``) and plans
a list of ``Change``s. A change is a ``Target`` (a kernel value under /proc/sys or
/sys, a file under /etc, the CPU affinity of a running process, a tuning daemon's
profile) plus the state wanted there. The engine then treats every change alike,
as tuned's plugins do with their ``sim`` flag and pyperf's operations with
show/write:

    read the target -> already as wanted?  -> nothing to do (a second apply is a no-op)
                    -> simulating?         -> "would change" (the dry-run plan)
                    -> journal the old state (fsynced) -> write -> read back -> verify

Safety rules, kept here rather than in each fix:

- nothing is written before its previous state is in the journal (doctor/journal.py);
- a file is only ever replaced if absent or carrying our header; a link, folder or a
  file without the header at a target is refused, and writes never follow links;
- a value is verified by reading it back: a kernel that refuses or clamps it makes the
  fix fail, never pass silently;
- revert restores the recorded state, never a default, and leaves alone (and reports)
  anything changed by someone else since q3cn-doctor wrote it.
"""

from __future__ import annotations

import base64
import errno
import importlib
import os
import pkgutil
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from q3cn_doctor.checking.findings import FAIL, PASS, SKIP, WARN, Finding
from q3cn_doctor.fixing.journal import (
    APPLIED,
    FAILED,
    LEFT,
    PENDING,
    REVERTED,
    Journal,
    JournalError,
)
from q3cn_doctor.host.base import Host, format_cpu_list, parse_cpu_list

HEADER_START = "# Written by q3cn-doctor"

# When a change takes effect.
NOW = "now"
RELOGIN = "after-relogin"
RESTART = "after-restart"
REBOOT = "after-reboot"
PERSISTENT = "persistent"
EFFECTS = {
    NOW: "now",
    RELOGIN: "after a re-login",
    RESTART: "after a service restart",
    REBOOT: "after a reboot",
    PERSISTENT: "at every boot (persistent)",
}

# Plan statuses of one change.
CHANGE, ALREADY, REFUSED = "change", "already", "refused"
# Outcomes of simulating, applying or reverting one change.
WOULD_CHANGE, DONE, FAILED_OUTCOME, UNCHANGED = "would-change", "applied", "failed", "unchanged"


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
    return data.lstrip(b"\xef\xbb\xbf").startswith(HEADER_START.encode())


# -- targets: what a change acts on ---------------------------------------------------------
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
    except (KeyError, TypeError, ValueError) as exc:
        raise JournalError(f"a journal entry's {kind} target cannot be read ({exc})") from exc
    raise JournalError(f"a journal entry holds a change this version cannot undo ({kind!r}): "
                       "was it written by a newer q3cn-doctor?")


# -- the plan -------------------------------------------------------------------------------
@dataclass
class Change:
    """One step of a fix: a target, its state now and the state wanted."""

    fix: str
    target: Target
    what: str  # what a person reads: "vm.swappiness", a path, "CPU 0-7 governor"
    current: Any
    new: Any
    effect: str = NOW
    needs_root: bool = True
    status: str = CHANGE
    reason: str = ""  # why refused

    def evaluate(self) -> None:
        if self.target.same(self.current, self.new):
            self.status, self.reason = ALREADY, ""
            return
        refusal = self.target.refusal(self.current)
        self.status, self.reason = (REFUSED, refusal) if refusal else (CHANGE, "")

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.target.kind, "target": self.target.path, "what": self.what,
            "current": self.target.show(self.current), "new": self.target.show(self.new),
            "effect": self.effect, "needs_root": self.needs_root, "status": self.status,
            "reason": self.reason,
        }


@dataclass
class FixOptions:
    """What the fix command was asked (beyond the shared Options)."""

    only: list[str] = field(default_factory=list)
    persist: bool = True
    service: str | None = None
    pid: int | None = None


@dataclass
class FixContext:
    """What a fix is handed when it plans: the host, facts, options and its findings."""

    host: Host
    facts: Any
    options: Any
    fix_options: FixOptions
    findings: list[Finding]
    plan: FixPlan

    @property
    def persist(self) -> bool:
        return self.fix_options.persist

    def kernel(self, path: str, new: str, what: str, *, kind: str = "sysfs",
               choice: bool = False, key: str | None = None, effect: str = NOW) -> Change:
        target = KernelValue(path, kind, choice, key)
        return self.add(Change(self.plan.fix_id, target, what, target.read(self.host), new,
                               effect))

    def file(self, path: str, text: str, what: str | None = None, *,
             effect: str = PERSISTENT, mode: int = 0o644) -> Change:
        target = ConfigFile(path, mode)
        return self.add(Change(self.plan.fix_id, target, what or path, target.read(self.host),
                               ConfigFile.wanted(text.encode(), mode), effect))

    def add(self, change: Change) -> Change:
        change.evaluate()
        self.plan.changes.append(change)
        return change

    def manual(self, step: str) -> None:
        self.plan.manual.append(step)

    def note(self, text: str) -> None:
        self.plan.notes.append(text)


class Fix:
    """Base of the fixes in fixes/. Subclasses set the class attributes and plan()."""

    id = ""
    title = ""
    checks: tuple[str, ...] = ()  # checks whose findings it cures (re-run after applying)

    def available(self, ctx: FixContext) -> str | None:
        """None where the fix can run here, else why it cannot."""
        return None

    def plan(self, ctx: FixContext) -> None:
        raise NotImplementedError


@dataclass
class FixPlan:
    fix_id: str
    title: str
    findings: list[Finding] = field(default_factory=list)
    requested: bool = False  # named with --only
    optional: bool = False  # only informational findings ask for it: needs --only
    available: bool = True
    reason: str = ""
    changes: list[Change] = field(default_factory=list)
    manual: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        if not self.available:
            return "unavailable"
        if self.optional:
            return "optional"
        if any(c.status == REFUSED for c in self.changes):
            return REFUSED
        if any(c.status == CHANGE for c in self.changes):
            return CHANGE
        return ALREADY

    @property
    def selected(self) -> bool:
        """Whether --apply acts on it: available, not optional, nothing refused."""
        return self.status == CHANGE

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.fix_id, "title": self.title, "status": self.status,
            "cures": [{"id": f.id, "status": f.status, "title": f.title} for f in self.findings],
            "requested": self.requested, "reason": self.reason,
            "changes": [c.to_json() for c in self.changes],
            "manual": list(self.manual), "notes": list(self.notes),
        }


@dataclass
class Plan:
    fixes: list[FixPlan]
    manual: list[tuple[str, str]]  # (finding id, step) software cannot take

    def pending_changes(self) -> list[Change]:
        return [c for plan in self.fixes if plan.selected for c in plan.changes
                if c.status == CHANGE]

    def to_json(self) -> dict[str, Any]:
        return {"fixes": [plan.to_json() for plan in self.fixes],
                "manual": [{"finding": fid, "step": step} for fid, step in self.manual]}


class UnknownFix(ValueError):
    """An --only name that is no fix id."""


def builtin_fixes() -> dict[str, Fix]:
    """Every fix in fixes/, by id: each module there exposes ``FIX``."""
    package = importlib.import_module("q3cn_doctor.fixes")
    found: dict[str, Fix] = {}
    for module in pkgutil.iter_modules(package.__path__):
        loaded = importlib.import_module(f"{package.__name__}.{module.name}")
        fix = getattr(loaded, "FIX", None)
        if isinstance(fix, Fix):
            found[fix.id] = fix
    return dict(sorted(found.items()))


ACTIVE = (FAIL, WARN)  # findings whose fixes the plan applies by default


def build_plan(facts: Any, findings: list[Finding], fix_options: FixOptions,
               fixes: dict[str, Fix] | None = None) -> Plan:
    """The plan for these findings: every fix a failing or warning finding offers (or
    those named with --only), and the manual steps of findings software cannot cure."""
    fixes = fixes if fixes is not None else builtin_fixes()
    only = [name.strip() for value in fix_options.only for name in value.split(",")
            if name.strip()]
    unknown = [name for name in only if name not in fixes]
    if unknown:
        raise UnknownFix(f"unknown fix: {', '.join(unknown)} (known: {', '.join(fixes)})")
    offered: dict[str, list[Finding]] = {}
    for finding in findings:
        if finding.status in (PASS, SKIP):
            continue
        for fix_id in finding.fixes:
            offered.setdefault(fix_id, []).append(finding)
    plans = []
    for fix_id, fix in fixes.items():
        cures = offered.get(fix_id, [])
        if only and fix_id not in only:
            continue
        if not only and not cures:
            continue
        plan = FixPlan(fix_id, fix.title, cures, requested=fix_id in only, checks=fix.checks)
        plan.optional = not only and not any(f.status in ACTIVE for f in cures)
        ctx = FixContext(facts.host, facts, facts.options, fix_options, cures, plan)
        try:
            reason = fix.available(ctx)
        except Exception as exc:  # a fix must never crash the plan
            reason = f"could not tell: {type(exc).__name__}: {exc}"
        if reason:
            plan.available, plan.reason = False, reason
        else:
            try:
                fix.plan(ctx)
            except Exception as exc:
                plan.available = False
                plan.reason = f"could not plan: {type(exc).__name__}: {exc}"
                plan.changes = []
        plans.append(plan)
    for fix_id in sorted(set(offered) - set(fixes)):
        if not only:  # a check offers a fix this version does not have
            plans.append(FixPlan(fix_id, fix_id, offered[fix_id], available=False,
                                 reason="no fix of that id in this version of q3cn-doctor; "
                                        "see the finding's advice"))
    # A finding's manual steps, unless a fix that runs here covers it (its steps are the
    # by-hand version of that fix).
    covered = {f.id for p in plans if p.status in (CHANGE, ALREADY) for f in p.findings}
    manual = [(f.id, step) for f in findings if f.status not in (PASS, SKIP)
              and f.id not in covered for step in f.manual]
    return Plan(plans, manual)


# -- doing it -------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What happened to one change (applying) or one journal entry (reverting)."""

    fix: str
    what: str
    result: str  # would-change, already, applied, failed, refused, reverted, left, unchanged
    detail: str = ""
    before: str = ""
    after: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"fix": self.fix, "what": self.what, "result": self.result,
                "detail": self.detail, "before": self.before, "after": self.after}


def needs_root(changes: list[Change], host: Host) -> list[Change]:
    """The changes this process may not make: it is not root (the host's euid decides)."""
    if host.euid() == 0:
        return []
    return [c for c in changes if c.needs_root]


def missing_dirs(host: Host, path: str) -> list[str]:
    """Folders above ``path`` that do not exist yet, outermost first: what a write there
    creates, recorded so that revert and ``hook uninstall`` remove them again."""
    missing = []
    folder = os.path.dirname(path)
    while folder not in ("", "/") and host.lstat(folder) is None:
        missing.append(folder)
        folder = os.path.dirname(folder)
    return list(reversed(missing))


def _errno_text(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


class Engine:
    """Applies, verifies, reverts and reports changes on one host through its journal."""

    def __init__(self, host: Host, step: Callable[[str], None] | None = None) -> None:
        self.host = host
        self.step = step
        self._journal: Journal | None = None
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            self._journal = Journal(self.host, self.step)
        return self._journal

    def journal_entries_of_this_run(self) -> int:
        if self._journal is None:
            return 0
        return sum(1 for e in self._journal.entries if e.get("run") == self.run_id)

    def execute(self, change: Change, simulate: bool) -> Outcome:
        """Simulate or apply one change: the one code path of dry run, apply and verify."""
        target, host = change.target, self.host
        host.forget()
        current = target.read(host)
        show = target.show
        if target.same(current, change.new):
            return Outcome(change.fix, change.what, ALREADY, "already as wanted",
                           show(current), show(change.new))
        refusal = target.refusal(current)
        if refusal:
            return Outcome(change.fix, change.what, REFUSED, refusal, show(current))
        if change.status == ALREADY or not target.same(current, change.current):
            # It changed between the plan and now: the plan no longer describes it.
            return Outcome(change.fix, change.what, REFUSED,
                           f"changed since the plan was made (now {show(current)})",
                           show(current))
        if simulate:
            return Outcome(change.fix, change.what, WOULD_CHANGE, "", show(current),
                           show(change.new))
        created = missing_dirs(host, target.path) if isinstance(target, ConfigFile) else []
        entry = self.journal.record(run=self.run_id, fix=change.fix, what=change.what,
                                    target=target.to_json(), before=current, after=change.new,
                                    created_dirs=created)
        try:
            for folder in created:
                host.make_dir(folder, 0o755)
            target.write(host, change.new)
        except OSError as exc:
            host.forget()
            now = target.read(host)
            unchanged = target.same(now, current)
            self.journal.mark(entry, FAILED if unchanged else APPLIED, after=now,
                              error=_errno_text(exc))
            return Outcome(change.fix, change.what, FAILED_OUTCOME,
                           f"the write was refused: {_errno_text(exc)}", show(current), show(now))
        self._step(f"change {entry['seq']}")
        host.forget()
        readback = target.read(host)
        if not target.same(readback, change.new):
            # Keep what it reads as: revert recognises it as ours and restores ``before``.
            self.journal.mark(entry, APPLIED, after=readback,
                              error=f"reads back {show(readback)}")
            return Outcome(change.fix, change.what, FAILED_OUTCOME,
                           f"wrote {show(change.new)} but it reads back {show(readback)}",
                           show(current), show(readback))
        self.journal.mark(entry, APPLIED)
        return Outcome(change.fix, change.what, DONE, "", show(current), show(readback))

    def _step(self, name: str) -> None:
        if self.step:
            self.step(name)

    def apply(self, plan: Plan, simulate: bool = False) -> list[Outcome]:
        """Every selected fix's changes, in plan order; refused fixes are reported only."""
        if simulate or not plan.pending_changes():
            return self._apply(plan, simulate)
        with self.journal.locked():
            return self._apply(plan, simulate)

    def _apply(self, plan: Plan, simulate: bool) -> list[Outcome]:
        outcomes = []
        for fix_plan in plan.fixes:
            if fix_plan.status == REFUSED:
                for change in fix_plan.changes:
                    if change.status == REFUSED:
                        outcomes.append(Outcome(fix_plan.fix_id, change.what, REFUSED,
                                                change.reason))
                continue
            if not fix_plan.selected:
                continue
            for change in fix_plan.changes:
                try:
                    outcomes.append(self.execute(change, simulate))
                except OSError as exc:  # reading the target's surroundings failed
                    outcomes.append(Outcome(change.fix, change.what, FAILED_OUTCOME,
                                            f"could not be read: {_errno_text(exc)}"))
        return outcomes

    # -- revert and status ------------------------------------------------------------
    def revert(self, simulate: bool = False) -> list[Outcome]:
        """Undo every open journal entry, newest first, to the exact recorded state."""
        if simulate or not self.journal.open_entries():
            return self._revert_all(simulate=True)
        with self.journal.locked():
            return self._revert_all(simulate=False)

    def _revert_all(self, simulate: bool) -> list[Outcome]:
        # Every target is rebuilt before any is restored: an entry this version cannot
        # read (JournalError) stops the revert before it has changed anything.
        work = [(entry, target_from_json(entry["target"]))
                for entry in self.journal.open_entries()]
        return [self._revert_one(entry, target, simulate) for entry, target in work]

    def _revert_one(self, entry: dict[str, Any], target: Target, simulate: bool) -> Outcome:
        host = self.host
        before, after = entry["before"], entry.get("after")
        fix, what, show = entry["fix"], entry.get("what", target.path), target.show
        host.forget()
        current = target.read(host)
        if target.gone(current, before):
            if not simulate:
                self.journal.mark(entry, REVERTED, note="gone: nothing to restore")
            return Outcome(fix, what, UNCHANGED, "no longer exists: nothing to restore")
        if target.same(current, before):
            if not simulate:
                self._remove_created(entry)
                self.journal.mark(entry, REVERTED)
            return Outcome(fix, what, UNCHANGED, "already as before", show(current), show(before))
        if after is None or not target.same(current, after):
            if not simulate:
                self.journal.mark(entry, LEFT, note=f"changed since q3cn-doctor wrote it "
                                                    f"(now {show(current)})")
            return Outcome(fix, what, LEFT, "changed since q3cn-doctor wrote it: left alone",
                           show(current), show(before))
        if simulate:
            return Outcome(fix, what, WOULD_CHANGE, "", show(current), show(before))
        try:
            target.write(host, before)
        except OSError as exc:
            return Outcome(fix, what, FAILED_OUTCOME, f"could not restore: {_errno_text(exc)}",
                           show(current), show(before))
        self._step(f"restore {entry['seq']}")
        host.forget()
        readback = target.read(host)
        if not target.same(readback, before):
            return Outcome(fix, what, FAILED_OUTCOME,
                           f"restored {show(before)} but it reads back {show(readback)}",
                           show(current), show(readback))
        self._remove_created(entry)
        self.journal.mark(entry, REVERTED)
        return Outcome(fix, what, REVERTED, "", show(current), show(readback))

    def _remove_created(self, entry: dict[str, Any]) -> None:
        """Folders the change created, innermost first, where still there and empty."""
        for folder in reversed(entry.get("created_dirs") or []):
            found = self.host.lstat(folder)
            if found is None or found.kind != "dir":
                continue
            try:
                if self.host.listdir(folder):
                    continue
                self.host.remove_dir(folder)
            except OSError:
                continue

    def revert_needs_root(self) -> list[str]:
        if self.host.euid() == 0:
            return []
        return [entry.get("what", entry["target"]["path"])
                for entry in self.journal.open_entries()
                if entry["target"]["kind"] != "affinity"]

    def status(self) -> list[dict[str, Any]]:
        """Every journal entry still in effect, with whether the target still holds it."""
        rows = []
        for entry in self.journal.open_entries():
            target = target_from_json(entry["target"])
            self.host.forget()
            current = target.read(self.host)
            after = entry.get("after")
            if entry["state"] == FAILED:
                holds = "failed: " + entry.get("error", "")
            elif target.gone(current, entry["before"]):
                holds = "gone"
            elif after is not None and target.same(current, after):
                holds = "in effect"
            elif target.same(current, entry["before"]):
                holds = "not in effect (reads as before)"
            else:
                holds = f"changed since (now {target.show(current)})"
            rows.append({"seq": entry["seq"], "time": entry["time"], "fix": entry["fix"],
                         "what": entry.get("what", target.path), "state": entry["state"],
                         "before": target.show(entry["before"]),
                         "after": target.show(after), "now": holds,
                         "pending": entry["state"] == PENDING})
        for entry in reversed(self.journal.entries):
            if entry["state"] == LEFT:
                target = target_from_json(entry["target"])
                rows.append({"seq": entry["seq"], "time": entry["time"], "fix": entry["fix"],
                             "what": entry.get("what", target.path), "state": LEFT,
                             "before": target.show(entry["before"]),
                             "after": target.show(entry.get("after")),
                             "now": entry.get("note", "left alone"), "pending": False})
        return rows


__all__ = [
    "ACTIVE", "ALREADY", "CHANGE", "EFFECTS", "NOW", "PERSISTENT", "REBOOT",
    "REFUSED", "RELOGIN", "RESTART", "Change", "ConfigFile", "DaemonProfile", "Engine",
    "Fix", "FixContext", "FixOptions", "FixPlan", "KernelValue", "Outcome", "Plan",
    "ThreadAffinity", "UnknownFix", "build_plan", "builtin_fixes", "header", "is_ours",
    "missing_dirs", "needs_root",
]

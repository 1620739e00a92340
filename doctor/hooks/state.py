"""``q3cn-doctor check --hook``: the re-check a package manager runs after an update.

A hook writes into a package manager's log, so it says little: nothing when nothing got
worse since the last run, else one line per finding that got worse and the command that
shows more. It must never break an upgrade: it always exits 0 (a crash becomes one
line), and it never runs long (the checks run in a thread given ``HOOK_BUDGET_S``; what
has not finished by then is reported as unfinished and left for the next run).

The last result is remembered in ``hook-last.json``: under ``/var/lib/q3cn-doctor``
(``Host.state_dir``) for root, as package managers run hooks, else in the user's state
folder (``$XDG_STATE_HOME/q3cn-doctor``, default ``~/.local/state/q3cn-doctor``); both
through the host, so ``--root PREFIX`` keeps it under PREFIX.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import threading
import time
from typing import Any, Callable

from msgspec import Struct, field
from q3cn_doctor.checking.findings import ERROR, FAIL, WARN, Finding
from q3cn_doctor.host.base import Host
from q3cn_doctor.options import Options
from q3cn_doctor.version import __version__

HOOK_BUDGET_S = 3.5
"""What the checks may take. Interpreter start-up, imports and writing the memory take
the rest of the 5 seconds a hook is allowed."""

MEMORY_NAME = "hook-last.json"
FORMAT = 1

# Checks that judge the moment rather than the installed system (what else is running,
# a port, a timing) or only say something with --measure: an update does not change
# them, and their ups and downs would be noise in a package manager's log.
VOLATILE = ("gpu.vram", "server.port", "server.running", "memory.bandwidth", "model.speed")

# How bad a status is when comparing two runs; info, skip and pass are all "fine".
_SEVERITY = {FAIL: 3, ERROR: 2, WARN: 1}


class HookStateError(Exception):
    """The memory of the last run cannot be read or written."""


def memory_dir(host: Host) -> str:
    """Where the last result is kept: root's state folder, else the user's."""
    if host.euid() == 0:
        return host.state_dir
    folder = host.user_state_dir()
    if folder is None:
        raise HookStateError("neither XDG_STATE_HOME nor HOME is set: no state folder")
    return folder


def memory_path(host: Host) -> str:
    return memory_dir(host) + "/" + MEMORY_NAME


def load_memory(host: Host, path: str) -> dict[str, Any] | None:
    """The last run's document, or None where there is none yet."""
    found = host.lstat(path)
    if found is None:
        return None
    if found.kind != "file":
        raise HookStateError(f"{path} is a {found.kind}, not a file")
    try:
        document = json.loads(host.read_bytes(path))
    except OSError as exc:
        raise HookStateError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError:
        return None  # a torn or foreign file: start over, it is only a memory
    if (not isinstance(document, dict) or document.get("format") != FORMAT
            or not isinstance(document.get("findings"), dict)):
        return None
    return document


def make_parents(host: Host, path: str, private: str) -> None:
    """The folders above ``path``: made where missing (``private`` 0700, others 0755),
    refused where something else is in the way."""
    from q3cn_doctor.fixing.targets import missing_dirs

    directory = os.path.dirname(path)
    found = host.lstat(directory)
    if found is not None and found.kind != "dir":
        raise NotADirectoryError(errno.ENOTDIR, f"{directory} is a {found.kind}, not a folder")
    for folder in missing_dirs(host, path):
        host.make_dir(folder, 0o700 if folder == private else 0o755)


def save_memory(host: Host, path: str, findings: dict[str, dict[str, str]]) -> None:
    """Write the memory atomically; missing folders are made (the state folder 0700)."""
    make_parents(host, path, os.path.dirname(path))
    document = {"format": FORMAT, "tool": f"q3cn-doctor {__version__}",
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": host.describe(),
                "findings": findings}
    host.write_bytes(path, (json.dumps(document, indent=1, sort_keys=True) + "\n").encode(),
                     mode=0o644)


def _entry(finding: Finding) -> dict[str, str]:
    return {"check": finding.check, "status": finding.status,
            "title": " ".join(finding.title.split())}


class Worse(Struct):
    """A finding that got worse since the last run."""

    id: str
    check: str
    before: str | None  # None: not there last time
    now: str
    title: str

    def line(self) -> str:
        change = f"{self.before} -> {self.now}" if self.before else f"{self.now} (new)"
        return f"q3cn-doctor: {self.id}: {change}: {self.title}"


def got_worse(previous: dict[str, Any] | None, findings: list[Finding]) -> list[Worse]:
    """The findings that got worse. Where there is nothing to compare with (a first run,
    or a check the last run did not have), only a failure is news."""
    before = (previous or {}).get("findings", {})
    known_checks = {entry.get("check") for entry in before.values() if isinstance(entry, dict)}
    worse = []
    for finding in findings:
        now = _SEVERITY.get(finding.status, 0)
        if finding.check not in known_checks:
            if finding.status == FAIL:
                worse.append(Worse(finding.id, finding.check, None, finding.status,
                                   _entry(finding)["title"]))
            continue
        old = before.get(finding.id)
        old_status = old.get("status") if isinstance(old, dict) else None
        if now > _SEVERITY.get(old_status, 0):
            worse.append(Worse(finding.id, finding.check, old_status, finding.status,
                               _entry(finding)["title"]))
    return worse


def merged_memory(previous: dict[str, Any] | None, findings: list[Finding],
                  ran: set[str]) -> dict[str, dict[str, str]]:
    """This run's findings, plus the last run's for checks that did not run this time."""
    kept = {fid: entry for fid, entry in ((previous or {}).get("findings") or {}).items()
            if isinstance(entry, dict) and entry.get("check") not in ran}
    kept.update({finding.id: _entry(finding) for finding in findings})
    return dict(sorted(kept.items()))


class _Progress(Struct):
    """What the worker thread has done so far (read by the waiting thread)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    options: Options | None = None
    selected: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    error: BaseException | None = None


def _work(progress: _Progress, make_options: Callable[[], Options],
          make_host: Callable[[Options], Host], plugins: bool) -> None:
    try:
        from q3cn_doctor.checking.context import Context
        from q3cn_doctor.checking.runner import available_checks, run_one, select, select_failures
        from q3cn_doctor.facts import Facts

        options = make_options()
        options.plugins = plugins
        options.measure = False  # a hook never times the RAM
        specs, failures = available_checks(plugins)
        selected = select(specs, options.only, options.skip)
        if not options.only:
            selected = [spec for spec in selected if spec.id not in VOLATILE]
        host = make_host(options)
        facts = Facts(host, options)
        with progress.lock:
            progress.options = options
            progress.selected = [spec.id for spec in selected]
            progress.findings.extend(select_failures(failures, options.only, options.skip))
        for spec in selected:
            found = run_one(Context(host, facts, options, spec))
            with progress.lock:
                progress.findings.extend(found)
                progress.ran.append(spec.id)
    except BaseException as exc:  # noqa: BLE001 - reported as one line, never raised
        progress.error = exc


class HookResult(Struct):
    """What a package-manager hook prints, and whether it gave up waiting on a check."""
    lines: list[str]
    timed_out: bool = False  # a check is still running: exit without waiting for it
    worse: list[Worse] = field(default_factory=list)
    memory: str | None = None  # where the result was remembered
    findings: list[Finding] = field(default_factory=list)


def _more(options: Options | None, ids: list[str]) -> str:
    command = "q3cn-doctor check"
    if options is not None and options.root:
        command += f" --root {options.root}"
    if ids:
        command += " --only " + ",".join(dict.fromkeys(ids))
    return f"q3cn-doctor: see more: {command}"


def _crash_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return f"q3cn-doctor: the post-update check could not run ({detail}); run `q3cn-doctor check`"


def hook_check(make_options: Callable[[], Options], make_host: Callable[[Options], Host],
               plugins: bool = True, budget: float = HOOK_BUDGET_S) -> HookResult:
    """Run the hook's checks within ``budget`` seconds, compare with the last run and
    remember this one. Never raises: whatever goes wrong is one line of the result."""
    try:
        return _hook_check(make_options, make_host, plugins, budget)
    except BaseException as exc:  # noqa: BLE001 - a hook must never break an upgrade
        return HookResult([_crash_line(exc)])


def _hook_check(make_options: Callable[[], Options], make_host: Callable[[Options], Host],
                plugins: bool, budget: float) -> HookResult:
    progress = _Progress()
    worker = threading.Thread(target=_work, args=(progress, make_options, make_host, plugins),
                              name="q3cn-doctor-hook", daemon=True)
    worker.start()
    worker.join(budget)
    timed_out = worker.is_alive()
    with progress.lock:
        options = progress.options
        selected = list(progress.selected)
        ran = set(progress.ran)
        findings = [f for f in progress.findings if f.check in ran or f.check not in selected]
    if progress.error is not None:
        return HookResult([_crash_line(progress.error)])
    if options is None:
        return HookResult([f"q3cn-doctor: the post-update check did not start within "
                           f"{budget:g} s; run `q3cn-doctor check`"], timed_out)
    lines: list[str] = []
    host = make_host(options)
    path = None
    previous = None
    try:
        path = memory_path(host)
        previous = load_memory(host, path)
    except (HookStateError, OSError) as exc:
        lines.append(f"q3cn-doctor: cannot read the last result: {_reason(exc)}")
        path = None  # not overwritten with this run alone: it may be readable again later
    worse = got_worse(previous, findings)
    lines.extend(w.line() for w in worse)
    if timed_out:
        unfinished = [check_id for check_id in selected if check_id not in ran]
        lines.append(f"q3cn-doctor: {len(unfinished)} check(s) did not finish within "
                     f"{budget:g} s ({', '.join(unfinished)}); run `q3cn-doctor check`")
    if path is not None:
        try:
            save_memory(host, path, merged_memory(previous, findings,
                                                  ran | {f.check for f in findings}))
        except (HookStateError, OSError) as exc:
            lines.append(f"q3cn-doctor: cannot remember this result in {path}: "
                         f"{_reason(exc)}")
            path = None
    if worse:
        lines.append(_more(options, [w.check for w in worse]))
    return HookResult(lines, timed_out, worse, path, findings)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return str(exc)


def print_hook_result(result: HookResult) -> None:
    """Print the lines for a package manager's log; a closed stdout is not an error."""
    if sys.stdout is None:  # started with stdout closed: nowhere to say it
        return
    from q3cn_doctor.report.output import write_plain

    try:
        write_plain(sys.stdout, result.lines)
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - a closed pipe, a full disk: never an exit status
        # Nowhere to write: keep the interpreter's flush at exit from failing too.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115

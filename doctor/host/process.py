"""One command run for the host: a time limit, a cap on what is kept, nothing left behind.

The command starts in a process group of its own (a new session). Its output is read as
it comes, up to OUTPUT_CAP per stream; it is waited on until it exits, then only for what
is already in the pipes (a child it left holding them is not waited for); and at the end
the whole group is killed, the command itself first reaped only after that, so no helper
it started outlives the run and the group id cannot have been reused. The exit is seen
through a pidfd where the kernel has them (Linux 5.3), else by polling.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time

from q3cn_doctor.host.base import (
    NOT_INSTALLED,
    OUTPUT_CAP,
    PERMISSION_DENIED,
    RAN,
    TIMED_OUT,
    TOO_MUCH_OUTPUT,
    CommandResult,
)

GRACE_S = 0.2
"""After the command exits: how long its pipes are still read (output already written)."""
POLL_S = 0.005  # how often the exit is looked for where there is no pidfd
_CHUNK = 65536


def run_command(argv: tuple[str, ...], timeout: float, env: dict[str, str],
                **identity: object) -> CommandResult:
    """Run ``argv`` (never through a shell) with stdin from /dev/null; ``identity`` is
    what Popen takes to run it as another user (executable, user, group, extra_groups)."""
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=env, start_new_session=True,
                                   **identity)  # type: ignore[call-overload]
    except FileNotFoundError:
        return CommandResult(argv, NOT_INSTALLED)
    except PermissionError:
        return CommandResult(argv, PERMISSION_DENIED)
    except OSError as exc:  # not executable (ENOEXEC), a path too long...
        return CommandResult(argv, PERMISSION_DENIED, stderr=str(exc))
    try:
        state, out, err = _collect(process, timeout)
    finally:
        with contextlib.suppress(OSError):  # ESRCH: the group is gone already
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        process.stdout.close()  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]
    if state != RAN:
        return CommandResult(argv, state)
    return CommandResult(argv, RAN, process.returncode, out.decode("utf-8", errors="replace"),
                         err.decode("utf-8", errors="replace"))


def _exit_watch(pid: int) -> int | None:
    """A descriptor that turns readable when ``pid`` exits (a pidfd), where there is one."""
    try:
        return os.pidfd_open(pid)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return None


def _exited(pid: int) -> bool:
    """Whether ``pid`` has exited, leaving it unreaped (its group id stays its own)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _collect(process: subprocess.Popen, timeout: float) -> tuple[str, bytes, bytes]:
    """Read stdout and stderr until the command exits and its pipes close (or GRACE_S
    after its exit), the time runs out (TIMED_OUT) or a stream passes OUTPUT_CAP."""
    deadline = time.monotonic() + timeout
    out_fd, err_fd = process.stdout.fileno(), process.stderr.fileno()  # type: ignore[union-attr]
    kept = {out_fd: bytearray(), err_fd: bytearray()}
    watch = _exit_watch(process.pid)
    exited_at: float | None = None
    with selectors.DefaultSelector() as selector:
        for fd in kept:
            selector.register(fd, selectors.EVENT_READ)
        if watch is not None:
            selector.register(watch, selectors.EVENT_READ)
        try:
            while True:
                now = time.monotonic()
                if exited_at is None and watch is None and _exited(process.pid):
                    exited_at = now
                if exited_at is not None and (len(selector.get_map()) == 0
                                              or now - exited_at >= GRACE_S):
                    return RAN, bytes(kept[out_fd]), bytes(kept[err_fd])
                if now >= deadline:
                    return TIMED_OUT, b"", b""
                wait = deadline - now
                if exited_at is not None:
                    wait = min(wait, exited_at + GRACE_S - now)
                elif watch is None:
                    wait = min(wait, POLL_S)
                for key, _ in selector.select(wait):
                    if key.fd == watch:
                        selector.unregister(watch)
                        exited_at = time.monotonic()
                        continue
                    chunk = os.read(key.fd, _CHUNK)
                    if not chunk:
                        selector.unregister(key.fd)
                        continue
                    kept[key.fd] += chunk
                    if len(kept[key.fd]) > OUTPUT_CAP:
                        return TOO_MUCH_OUTPUT, b"", b""
        finally:
            if watch is not None:
                os.close(watch)

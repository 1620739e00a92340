"""Runs of the command line forked from a process that imported the doctor once.

A test that runs ``q3cn-doctor`` used to start a fresh interpreter each time: about
150 ms of start and imports before the command did anything, over the ~470 runs of the
fast loop more than half its time. Here one server per test process imports every module
of the doctor, and gguf with numpy, once, then forks a child per run. The child is a
real process: its own pid, descriptors, environment, working folder, signals and exit
status; it may exec (launch) or change its user, and a timeout kills it. It runs the
same ``main()`` the console script runs; what differs from a fresh start is only what is
already imported. What that leaves untested, the console script's own start (which
modules load, how long it takes), tests/test_startup.py checks with the real executable
(and tests/test_server.py the gguf-free path to llama.cpp's architecture names), as do
the terminal tests and the slow end-to-end tests.

A run falls back to a real process where its environment changes what the interpreter
reads at start (PYTHON*, the locale), or where ``Q3CN_TEST_REAL_PROCESS=1``. What every
fork shares with its server, where fresh starts would differ: the hash seed, and the
umask, limits and CPU affinity the server started with.

Protocol: the test process and the server share a SOCK_SEQPACKET pair; a request is
one JSON message (arguments, environment, folder) carrying four descriptors: stdin,
stdout, stderr and a stream socket for the answer. The server forks a watcher per run
(so the server never waits, and never holds a thread when it forks), the watcher forks
the run itself, sends its pid, waits for it and sends its exit status as Popen gives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time

REAL_PROCESS_ENV = "Q3CN_TEST_REAL_PROCESS"
_AT_START = ("PYTHON", "LC_", "LANG")  # what the interpreter reads when it starts
_MESSAGE = 1 << 20


def _interpreter_of(script: str) -> str:
    """The interpreter the console script's #! line names (sys.executable is part of
    what the doctor keys its caches on), else this one: pip writes a /bin/sh trampoline
    instead where the path is long or has spaces."""
    with open(script, "rb") as handle:
        first = handle.readline()
    named = first[2:].strip().decode(errors="replace") if first.startswith(b"#!") else ""
    python = os.path.basename(named).startswith("python") and " " not in named
    return named if python and os.access(named, os.X_OK) else sys.executable


def _start_sensitive(env: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in env.items() if key.startswith(_AT_START)}


class ForkServer:
    """The server process of a test process: started in ``env`` (the session's, not
    whatever a test has changed), it serves the runs whose start that env matches."""

    def __init__(self, script: str, env: dict[str, str]) -> None:
        self.script = script
        self.env = dict(env)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control = ours
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 (kept open: where a failing server says why)
        self.process = subprocess.Popen(
            [_interpreter_of(script), os.path.abspath(__file__), str(theirs.fileno()), script],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self.errors, env=self.env)
        theirs.close()
        if self.control.recv(64) != b"ready":
            raise RuntimeError(f"the fork server did not start: {self._errors()}")

    def _errors(self) -> str:
        self.errors.seek(0)
        return self.errors.read().decode(errors="replace")

    def serves(self, env: dict[str, str]) -> bool:
        """Whether a child of this server starts as a fresh interpreter would in ``env``."""
        return (self.process.poll() is None and env.get(REAL_PROCESS_ENV) != "1"
                and _start_sensitive(env) == _start_sensitive(self.env))

    def run(self, args: list[str], env: dict[str, str],
            timeout: float | None) -> subprocess.CompletedProcess:
        """``q3cn-doctor ARGS`` in a forked child, in this folder, as subprocess.run(
        capture_output=True, text=True, stdin=DEVNULL) would run the console script."""
        argv = [self.script, *args]
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        stdin = os.open(os.devnull, os.O_RDONLY)
        answer, answer_theirs = socket.socketpair()
        request = json.dumps({"argv": argv, "env": env, "cwd": os.getcwd()}).encode()
        try:
            socket.send_fds(self.control, [request],
                            [stdin, out_write, err_write, answer_theirs.fileno()])
        except OSError:
            for fd in (out_read, err_read):
                os.close(fd)
            answer.close()
            raise
        finally:
            for fd in (stdin, out_write, err_write):
                os.close(fd)
            answer_theirs.close()
        deadline = None if timeout is None else time.monotonic() + timeout
        pid = 0
        with answer, answer.makefile("r") as lines:
            try:
                pid = int(_line(answer, lines, deadline) or 0)
                if not pid:
                    raise RuntimeError(f"the fork server is gone: {self._errors()}")
                stdout, stderr = _read_both(out_read, err_read, deadline)
                ended = _line(answer, lines, deadline) or '{"returncode": -9}'  # watcher killed
                status = json.loads(ended)["returncode"]
            except (subprocess.TimeoutExpired, TimeoutError):
                _kill(pid)
                with contextlib.suppress(OSError, ValueError):  # as Popen waits after kill
                    _line(answer, lines, time.monotonic() + 5)
                raise subprocess.TimeoutExpired(argv, timeout or 0) from None
            finally:
                for fd in (out_read, err_read):
                    with contextlib.suppress(OSError):
                        os.close(fd)
        return subprocess.CompletedProcess(argv, status, _text(stdout), _text(stderr))

    def close(self) -> None:
        self.control.close()  # the server ends when it reads the end of this socket
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.errors.close()


def _read_both(out_fd: int, err_fd: int, deadline: float | None) -> tuple[bytes, bytes]:
    """Both pipes to their end, as communicate() reads them."""
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    with selectors.DefaultSelector() as selector:
        for fd in chunks:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired("q3cn-doctor", 0)
            for key, _ in selector.select(left):
                data = os.read(key.fd, 65536)
                if data:
                    chunks[key.fd].append(data)
                else:
                    selector.unregister(key.fd)
    return b"".join(chunks[out_fd]), b"".join(chunks[err_fd])


def _line(sock: socket.socket, lines, deadline: float | None) -> str:
    """The watcher's next line, waited for no longer than the run's time limit (a run
    that closed its output may still be running)."""
    left = None if deadline is None else deadline - time.monotonic()
    if left is not None and left <= 0:
        raise TimeoutError
    sock.settimeout(left)
    return lines.readline()


def _kill(pid: int) -> None:
    """SIGKILL to the run, as Popen.kill: one that has ended already is no error."""
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _text(data: bytes) -> str:
    """As text=True decodes it: the locale's encoding, universal newlines."""
    import locale

    text = data.decode(locale.getpreferredencoding(False))
    return text.replace("\r\n", "\n").replace("\r", "\n")


# -- the server side --------------------------------------------------------------------


def _preload() -> None:
    """Every module of the doctor, as some run would import it: the command line, the
    check path, the checks, launch, fix, hooks and measure; and gguf, which every run
    that reads a model file imports (with numpy, ~0.2 s). Plugins are not: they are
    found per run, as their index is read per run."""
    import importlib
    import pkgutil

    # numpy's BLAS would start a pool of threads, which a forked child does not carry:
    # one thread, the server's own. A run's environment replaces the server's.
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    import gguf  # noqa: F401

    # checks and fixes by name too: an editable install maps them from folders of
    # their own, which walking q3cn_doctor's folder does not reach.
    for name in ("q3cn_doctor", "q3cn_doctor.checks", "q3cn_doctor.fixes"):
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, f"{name}."):
            if not module.name.endswith(".__main__"):  # importing it would run the doctor
                importlib.import_module(module.name)


def serve(control: socket.socket, script: str) -> None:
    _preload()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the watchers
    control.send(b"ready")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, _MESSAGE, 4)
        except (ConnectionError, OSError):
            return
        if not message:
            return  # the test process is gone
        if os.fork() == 0:
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _watch(json.loads(message), fds, script)  # never returns
        for fd in fds:
            os.close(fd)


def _watch(request: dict, fds: list[int], script: str) -> None:
    """The watcher: forks the run, says its pid, waits, says its exit status. Neither
    process ever returns into the server's loop, whatever goes wrong."""
    try:
        stdin, stdout, stderr, answer = fds
        pid = os.fork()
        if pid == 0:
            os.close(answer)
            _become_the_run(request, stdin, stdout, stderr, script)
        for fd in (stdin, stdout, stderr):
            os.close(fd)
        with socket.socket(fileno=answer) as sock:
            sock.sendall(f"{pid}\n".encode())
            _, status = os.waitpid(pid, 0)
            sock.sendall(json.dumps({"returncode": os.waitstatus_to_exitcode(status)})
                         .encode() + b"\n")
    finally:
        os._exit(0)


def _become_the_run(request: dict, stdin: int, stdout: int, stderr: int,
                    script: str) -> None:
    """In the child: the descriptors, folder, environment and argv of the run, then the
    console script's own body; the process then ends as a fresh interpreter's would."""
    code = 1
    try:
        for target, fd in ((0, stdin), (1, stdout), (2, stderr)):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        time.tzset()  # TZ, as a fresh start reads it
        sys.argv = list(request["argv"])
        sys.path[0] = os.path.dirname(script)  # as the console script's start sets it
        code = _main_as_the_console_script()
        _end_as_the_interpreter_does(code)
    finally:
        os._exit(code)


def _main_as_the_console_script() -> int:
    """main(), and the exit status a fresh interpreter would end with."""
    from q3cn_doctor.app.cli import main

    try:
        main()
        return 0
    except SystemExit as end:
        return _exit_status(end.code)
    except KeyboardInterrupt:  # the interpreter reports it, then dies of SIGINT
        sys.excepthook(*sys.exc_info())
        _end_as_the_interpreter_does(None)
    except BaseException:  # noqa: BLE001 (as the interpreter reports an uncaught one)
        sys.excepthook(*sys.exc_info())
    return 1


def _exit_status(code: object) -> int:
    """SystemExit's code as the interpreter turns it into an exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _end_as_the_interpreter_does(code: int | None) -> None:
    """What ending a process does that a run can see: the interpreter's own thread
    shutdown (non-daemon threads joined, executors' exit hooks), atexit handlers, the
    standard streams flushed (120 where that fails), then the status; None: death by
    SIGINT. Tearing down every module (~50 ms in a forked child, whose every object it
    touches is copied; nothing a run can observe) is skipped."""
    import atexit
    import threading

    threading._shutdown()  # what Py_FinalizeEx calls first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = 120 if code is not None else code
    if code is None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code or 0)


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])), sys.argv[2])

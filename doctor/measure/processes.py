"""The llama.cpp processes a measurement starts, and how they always stop.

Each runs in its own session (its own process group), as the user ``run_as`` names
(never root unless allowed), with the plan's CPU affinity and environment. Whatever
ends the measurement, finished, failed, timed out or interrupted (Ctrl-C, SIGTERM),
the process group is sent SIGTERM, then SIGKILL after a grace period, and reaped:
nothing is left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from msgspec import Struct, field
from q3cn_doctor.facts.model import without_args
from q3cn_doctor.launch.run_as import RunAs
from q3cn_doctor.parsers.llama_speed import CompletionTimings, SpeedOutputError, parse_completion

STOP_GRACE_S = 10.0
HEALTH_TIMEOUT_S = 300.0  # a large model loads for minutes from a slow disk
LOG_TAIL = 2000


class MeasureError(Exception):
    """A llama.cpp process would not start, failed, or gave no figures."""


class TimedOut(MeasureError):
    """A llama.cpp process ran past its time limit (and was stopped)."""


class Program(Struct):
    """How to start one llama.cpp program: argv, added environment, affinity, user."""

    argv: list[str]
    run_as: RunAs
    env: dict[str, str] = field(default_factory=dict)
    affinity: list[int] | None = None

    def with_argv(self, argv: list[str]) -> Program:
        """Another command run the same way (user, environment, affinity)."""
        return Program(argv, self.run_as, self.env, self.affinity)

    def popen(self, **kwargs: object) -> subprocess.Popen:
        affinity = self.affinity

        def before_exec() -> None:  # in the child, after the user switch
            if affinity:
                os.sched_setaffinity(0, affinity)

        env = self.run_as.environ({**os.environ, **self.env})
        try:
            return subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, env=env, cwd="/",
                                    start_new_session=True,
                                    preexec_fn=before_exec if affinity else None,
                                    **self.run_as.popen_kwargs(), **kwargs)
        except OSError as exc:
            raise MeasureError(f"cannot start {self.argv[0]}: {exc}") from exc


def stop(process: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM to the process group, SIGKILL after ``grace`` seconds; always reaped."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_program(program: Program, timeout: float) -> str:
    """Run to completion and return stdout; MeasureError with its stderr where it fails."""
    with tempfile.TemporaryFile() as errors:
        process = program.popen(stdout=subprocess.PIPE, stderr=errors)
        try:
            out, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise TimedOut(f"{os.path.basename(program.argv[0])} did not finish in "
                               f"{timeout:.0f} s") from exc
        finally:
            stop(process)
        if process.returncode != 0:
            errors.seek(0)
            tail = errors.read().decode(errors="replace")[-LOG_TAIL:].strip()
            raise MeasureError(f"{os.path.basename(program.argv[0])} exited "
                               f"{_exit_text(process.returncode)}: {tail}")
        return out.decode(errors="replace")


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"on {signal.Signals(-code).name}"
    return str(code)


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loopback_argv(argv: list[str], port: int) -> list[str]:
    """A llama-server command moved to 127.0.0.1:``port`` (measurements serve no one)."""
    return without_args(argv, ("--port", "--host")) + ["--host", "127.0.0.1", "--port",
                                                       str(port)]


class Server:
    """A llama-server for the length of a ``with`` block, on a loopback port."""

    def __init__(self, program: Program, port: int,
                 health_timeout: float = HEALTH_TIMEOUT_S) -> None:
        self.program = program
        self.port = port
        self.health_timeout = health_timeout
        self.process: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()

    def __enter__(self) -> Server:
        self.process = self.program.popen(stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_healthy()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.process is not None:
            stop(self.process)
        self._log.close()

    def log_tail(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-LOG_TAIL:].strip()

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.health_timeout
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MeasureError(f"llama-server exited {_exit_text(self.process.returncode)}"
                                   f" before it was ready: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self._url("/health"), timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise MeasureError(f"llama-server was not ready in {self.health_timeout:.0f} s: "
                           f"{self.log_tail()}")

    def complete(self, prompt: str, n_predict: int, timeout: float) -> CompletionTimings:
        """One /completion without the prompt cache, ``n_predict`` tokens whatever the
        model would end on: its timings."""
        body = json.dumps({"prompt": prompt, "n_predict": n_predict, "cache_prompt": False,
                           "ignore_eos": True, "temperature": 0}).encode()
        request = urllib.request.Request(self._url("/completion"), data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return parse_completion(answer.read())
        except TimeoutError as exc:
            raise TimedOut(f"/completion did not answer in {timeout:.0f} s") from exc
        except (urllib.error.URLError, OSError, SpeedOutputError) as exc:
            raise MeasureError(f"/completion failed: {exc}") from exc

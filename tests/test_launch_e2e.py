"""End to end with a real llama-server, where one is on PATH (skipped elsewhere, CI included;
llama.cpp is never built here): `q3cn-doctor launch` plans for a tiny llama model the test
writes (byte-level tokenizer, random weights), execs the real llama-server, and that server
answers /health. --force: a machine without an NVIDIA GPU fails gpu.present, and this test
is about the hand-off, not the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from conftest import doctor_command
from gguf_files import write_tiny_llama

SERVER = shutil.which("llama-server")
pytestmark = [pytest.mark.slow, pytest.mark.live,
              pytest.mark.skipif(SERVER is None, reason="no llama-server on PATH")]
HEALTH_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _health(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return answer.status
    except (urllib.error.URLError, OSError):
        return None


def test_launch_runs_a_real_llama_server(tmp_path):
    model = write_tiny_llama(tmp_path / "tiny-llama.gguf")
    port = _free_port()
    with open(tmp_path / "server.log", "wb") as log:
        process = subprocess.Popen(
            doctor_command() + ["launch", "--model", str(model), "--port", str(port),
                                "--ctx-size", "256", "--force"],
            env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"),
                     XDG_CONFIG_HOME=str(tmp_path / "config")),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            status = _health(port)
            if status == 200:
                break
            time.sleep(0.5)
        output = (tmp_path / "server.log").read_text(errors="replace")
        assert status == 200, output[-3000:]
        # the doctor became llama-server: same pid, llama-server's executable
        assert os.path.realpath(f"/proc/{process.pid}/exe") == os.path.realpath(SERVER)
        assert f"q3cn-doctor launch: {SERVER} --model {model} --port {port}" in output
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

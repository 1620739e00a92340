"""End to end with the real parts (scripts/real-parts: llama.cpp 0c1e570's CPU llama-server
and SmolLM2-135M-Instruct Q4_1, trained context 8192, no general.sampling.* keys):
`q3cn-doctor launch` plans for that model, execs the real llama-server (as nobody where the
tests run as root), which serves /health and /completion; a second request sharing a long
prefix is answered from the prompt cache (timings.cache_n), and server.prompt_cache reads
the same from the server's log. The guide's script, imported, starts the real build too.

--force: a machine without an NVIDIA GPU fails gpu.present, and these tests are about the
launch, not the machine.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import FIXTURES, doctor_command, run_cli
from launch_fixtures import world_dir

pytestmark = [pytest.mark.slow, pytest.mark.live]  # a real llama.cpp serving a real model
HEALTH_TIMEOUT_S = 180
REQUEST_TIMEOUT_S = 300
QWEN_SAMPLING = {"--temp", "--top-p", "--top-k", "--min-p"}
GUIDE_SCRIPT = FIXTURES / "llama-server" / "scripts" / "run-llama-cpp-qwen3-coder-next.sh"
# ~1,300 tokens of source-like text: long enough to be a turn server.prompt_cache judges
PREFIX = "You review code. Here is the file:\n" + "\n".join(
    f"def step_{i}(value):\n    return value * {i} + {i % 7}" for i in range(110))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str) -> tuple[int | None, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read()
    except (urllib.error.URLError, OSError):
        return None, b""


def complete(port: int, prompt: str) -> dict:
    body = json.dumps({"prompt": prompt, "n_predict": 4, "cache_prompt": True,
                       "temperature": 0}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/completion", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as answer:
        return json.loads(answer.read())


class Launched:
    """`q3cn-doctor launch ...` running (it became llama-server), its output in a file."""

    def __init__(self, args: list[str], env: dict, log: Path) -> None:
        self.log = log
        with open(log, "wb") as handle:
            self.process = subprocess.Popen(doctor_command() + ["launch", *args],
                                            env=dict(os.environ, **env), stdout=handle,
                                            stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)

    def healthy(self, port: int) -> bool:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while time.monotonic() < deadline and self.process.poll() is None:
            if get(port, "/health")[0] == 200:
                return True
            time.sleep(0.5)
        return False

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def scratch():
    folder = world_dir("q3cn-e2e-")
    yield folder
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def env_for(real_parts, tmp_path: Path) -> dict:
    env = real_parts.env(tmp_path)
    if os.geteuid() == 0:
        env["SUDO_USER"] = "nobody"  # as `sudo q3cn-doctor launch` from nobody's account
    return env


def status_ids(pid: int) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])


def test_smollm2_plan_serves_and_reuses_its_cache(real_parts, tmp_path, scratch):
    env = env_for(real_parts, tmp_path)
    port = free_port()
    base = ["--server", str(real_parts.server), "--model", str(real_parts.model), "--port",
            str(port)]
    planned = run_cli("launch", "--json", *base, env=env, timeout=120)
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    argv = plan["argv"]
    # its own context (the trained 8192, not 131072) and sampling (none in its GGUF: the
    # build's defaults, never Qwen's)
    assert argv[argv.index("--ctx-size") + 1] == "8192" and plan["model"]["trained_ctx"] == 8192
    assert not QWEN_SAMPLING & set(argv) and plan["model"]["sampling"] == {}
    assert argv[argv.index("--parallel") + 1] == "1"
    assert argv[argv.index("--cache-reuse") + 1] == "256" and "--cache-ram" in argv
    log_file = scratch / "out" / "server.log"
    server = Launched([*base, "--force", "--", "--log-file", str(log_file)], env,
                      tmp_path / "launch.out")
    try:
        assert server.healthy(port), server.output()[-3000:]
        pid = server.process.pid
        assert os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(real_parts.server)
        if os.geteuid() == 0:  # dropped to nobody before exec
            user = pwd.getpwnam("nobody")
            assert status_ids(pid) == (user.pw_uid, user.pw_gid)
        first = complete(port, PREFIX + "\nQuestion: what does step_3 return?\nAnswer:")
        second = complete(port, PREFIX + "\nQuestion: what does step_9 return?\nAnswer:")
        assert first["timings"]["prompt_n"] > 1000
        assert second["timings"]["cache_n"] > 1000, second["timings"]
        assert second["timings"]["prompt_n"] < 50
        print(f"\nSmolLM2 on {real_parts.server}: first turn {first['timings']}\n"
              f"second turn {second['timings']}")
        reused = run_cli("check", "--only", "server.prompt_cache", "--json", env=env,
                         timeout=120)
        finding = next(f for f in json.loads(reused.stdout)["findings"]
                       if f["id"] == f"server.prompt_cache:pid-{pid}")
        assert finding["status"] == "pass", finding
        # a turn that changes the prompt's start computes it all again: judged so
        complete(port, "Another reviewer's notes. " + PREFIX + "\nQuestion: step_5?\nAnswer:")
        again = run_cli("check", "--only", "server.prompt_cache", "--json", env=env,
                        timeout=120)
        finding = next(f for f in json.loads(again.stdout)["findings"]
                       if f["id"] == f"server.prompt_cache:pid-{pid}")
        assert finding["status"] == "warn" and "re-processes prompts" in finding["title"]
        print(f"server.prompt_cache: {finding['title']}")
    finally:
        server.stop()


def test_the_guide_script_starts_the_real_build(real_parts, tmp_path):
    """`launch --from` the guide's script on this machine's real 2026-10 build (SmolLM2 in
    place of its Qwen file, loopback instead of 0.0.0.0): every translated flag is one the
    build accepts, and it serves; the script's host/port/alias/seed/threads are kept."""
    env = env_for(real_parts, tmp_path)
    port = free_port()
    args = ["--from", str(GUIDE_SCRIPT), "--server", str(real_parts.server), "--model",
            str(real_parts.model)]
    printed = run_cli("launch", "--json", *args, env=env, timeout=120)
    assert printed.returncode == 0, printed.stderr
    argv = json.loads(printed.stdout)["argv"]
    for flag, value in (("--host", "0.0.0.0"), ("--port", "8001"), ("--seed", "3407"),
                        ("--alias", "unsloth/Qwen3-Coder-Next"), ("--threads", "10")):
        assert argv[argv.index(flag) + 1] == value
    assert "--load-mode" in argv and "--mlock" not in argv and "--no-mmap" not in argv
    assert "warning: The planned llama-server listens on 0.0.0.0" in printed.stderr
    # served on loopback, on a free port, at the model's own context: the guide's own
    # 131072 would only make this test slower
    server = Launched([*args, "--force", "--", "--host", "127.0.0.1", "--port", str(port),
                       "--ctx-size", "2048"], env, tmp_path / "launch.out")
    try:
        assert server.healthy(port), server.output()[-3000:]
        output = server.output()
        assert "invalid argument" not in output and "unknown value" not in output
        assert complete(port, "Hello")["timings"]["predicted_n"] >= 1
    finally:
        server.stop()

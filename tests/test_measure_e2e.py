"""End to end on the real parts: llama.cpp 0c1e570 built from the llama-cpp-python 0.3.36
sdist and SmolLM2-135M-Instruct Q4_1 (scripts/real-parts, conftest.real_parts), run as
an unprivileged user (``nobody`` when the tests run as root, as here and in CI).

`bench speed` with llama-bench and through llama-server's /completion, Ctrl-C leaving
nothing running, `tune` keeping a plan that `launch` uses and refuses elsewhere,
`check --measure`'s short form and `fix --apply --measure`'s before/after.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import alive, child_pids, doctor_command, run_cli
from test_fix_engine import full_root

pytestmark = [pytest.mark.slow, pytest.mark.live]  # a real llama.cpp serving a real model
SHORT = ["--repeats", "1"]


def doctor(parts, tmp_path: Path, *args: str, timeout: float = 600):
    result = run_cli(*args, env=parts.env(tmp_path), timeout=timeout)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def test_bench_speed_measures_pp_and_tg_beside_the_prediction(real_parts, tmp_path):
    result = doctor(real_parts, tmp_path, "bench", "speed", "--json", *SHORT,
                    *real_parts.args(), "--ctx-size", "2048")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    measured = document["measured"]
    assert document["method"] == "llama-bench" and measured["error"] is None
    assert measured["tg"]["mean"] > 1 and measured["pp"]["mean"] > 1
    assert document["run_as"] == (real_parts.user or document["run_as"])
    predicted = document["predicted"]
    assert predicted["tok_s"] > 0 and predicted["low"] < predicted["tok_s"] < predicted["high"]
    assert document["verdict"] and document["command"][0].endswith("llama-bench")
    assert "Measuring speed...\n" in result.stderr  # no terminal: plain progress lines
    last = json.loads((tmp_path / "cache" / "q3cn-doctor" / "measured-speed.json").read_text())
    assert last["tok_s"] == round(measured["tg"]["mean"], 1)  # the next report quotes it
    text = doctor(real_parts, tmp_path, "bench", "speed", *SHORT, *real_parts.args(),
                  "--ctx-size", "2048")
    assert "tg (generation, 64 tokens):" in text.stdout and "predicted tg: ~" in text.stdout
    ledger = doctor(real_parts, tmp_path, "check", "--only", "model.speed", "--measure",
                    *real_parts.args(), "--ctx-size", "2048")
    assert "[measured: " in ledger.stdout  # the report's ledger quotes the measurement


def test_bench_speed_through_llama_server(real_parts, tmp_path):
    result = doctor(real_parts, tmp_path, "bench", "speed", "--json", "--method", "server",
                    *SHORT, *real_parts.args(), "--ctx-size", "2048")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["method"] == "llama-server /completion"
    assert document["measured"]["tg"]["mean"] > 1 and document["measured"]["pp"]["mean"] > 1
    assert "--ctx-size" in document["command"] and "--host" not in document["command"]


def test_root_is_refused_without_a_user(real_parts, tmp_path):
    result = doctor(real_parts, tmp_path, "bench", "speed", "--server",
                    str(real_parts.server), "--model", str(real_parts.model), "--user", "root")
    assert result.returncode == 1
    assert "refusing to run llama.cpp as root" in result.stderr


def test_ctrl_c_stops_the_server_and_leaves_nothing_running(real_parts, tmp_path):
    process = subprocess.Popen(
        doctor_command() + ["bench", "speed", "--method", "server", "--repeats", "50",
                            *real_parts.args(), "--ctx-size", "2048"],
        env=dict(os.environ, **real_parts.env(tmp_path)), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        server = _wait_for_child(process.pid, str(real_parts.server), timeout=300)
        assert server is not None, "llama-server never started"
        assert 0 not in _uids(server), "llama-server runs as root"
        time.sleep(2)  # serving: loaded, or being timed
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert b"Interrupted: llama.cpp stopped, nothing left running." in err
    assert not alive(server), f"llama-server {server} is still running"


def test_tune_keeps_a_plan_launch_uses_and_refuses_elsewhere(real_parts, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("# the tester's own settings stay\n")
    result = doctor(real_parts, tmp_path, "tune", "--budget", "60s", "--json", *SHORT,
                    "--save", "--config", str(config), *real_parts.args(),
                    "--ctx-size", "2048")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["runs"] >= 1 and document["best"]["tg"]["mean"] > 1
    state = tmp_path / "state" / "q3cn-doctor" / "tune.json"
    assert document["saved"] == [str(state), str(config)]
    saved = json.loads(state.read_text())
    assert config.read_text().startswith("# the tester's own settings stay\n\n[tune]\n")
    assert saved["fingerprint"]["model"]["file"] == real_parts.model.name
    tuned = saved["server_args"]
    assert tuned[:2] == ["--threads", str(document["setting"]["threads"])]
    plan = doctor(real_parts, tmp_path, "launch", "--print", "--force", "--config",
                  str(config), *real_parts.args(), "--ctx-size", "2048")
    assert plan.returncode == 0, plan.stderr
    assert " ".join(tuned) in plan.stdout
    # the same tune, as if measured on another model: refused, saying what changed
    config.write_text(config.read_text().replace(
        f"bytes = {saved['fingerprint']['model']['bytes']}", "bytes = 63387346944"))
    refused = doctor(real_parts, tmp_path, "launch", "--print", "--force", "--config",
                     str(config), *real_parts.args(), "--ctx-size", "2048")
    assert refused.returncode == 1
    assert "measured on another model" in refused.stderr
    assert "bytes 63387346944 -> " in refused.stderr
    plain = doctor(real_parts, tmp_path, "launch", "--print", "--force", "--no-tune",
                   "--config", str(config), *real_parts.args(), "--ctx-size", "2048")
    assert plain.returncode == 0 and " ".join(tuned) not in plain.stdout


def test_check_measure_adds_the_short_form(real_parts, tmp_path):
    result = doctor(real_parts, tmp_path, "check", "--measure", "--only", "model.speed",
                    *real_parts.args(), "--ctx-size", "2048")
    assert "Measured speed (llama-bench): tg " in result.stdout, result.stdout + result.stderr
    assert "predicted ~" in result.stdout


def test_fix_apply_measure_under_root_records_before_and_after(real_parts, tmp_path):
    """The fix goes into the tree; the speed is this machine's, measured for real."""
    root = full_root(tmp_path / "root")
    env = {**real_parts.env(tmp_path), "Q3CN_DOCTOR_EUID": "0"}
    applied = run_cli("fix", "--root", str(root), "--apply", "--yes", "--only",
                      "sysctl.swappiness", "--measure", *real_parts.args(),
                      "--ctx-size", "2048", env=env, timeout=600)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Measured: sysctl.swappiness: tg " in applied.stdout
    journal = json.loads((root / "var/lib/q3cn-doctor/journal.json").read_text())
    [measured] = journal["measurements"]
    assert measured["before"]["tg"] > 1 and measured["after"]["tg"] > 1
    status = run_cli("fix", "--root", str(root), "--status", env=env)
    assert "sysctl.swappiness: tg " in status.stdout


# -- processes, by /proc ------------------------------------------------------------------

def _wait_for_child(parent: int, exe: str, timeout: float) -> int | None:
    """The child of ``parent`` serving with ``exe``, once it has started: not the doctor's
    own `--help` and `--version` runs of it, which run as root where only root controls
    the binary (host/trust.py; CI caught one once)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in child_pids(parent):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if os.readlink(f"/proc/{pid}/exe") == exe and not {
                        b"--help", b"--version"} & set(argv):
                    return pid
            except OSError:
                continue
        time.sleep(0.2)
    return None


def _uids(pid: int) -> list[int]:
    """Real, effective, saved and filesystem uids, from /proc/PID/status.

    Not the owner of /proc/PID: the kernel shows a process that is not dumpable as
    root's, and a process that dropped root is not dumpable until its exec finishes.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(uid) for uid in line.split()[1:]]
    raise AssertionError(f"/proc/{pid}/status has no Uid line")

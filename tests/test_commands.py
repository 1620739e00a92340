"""Commands the host runs (issue 18, items 8 and 9): each killed with its process group,
none left behind, output kept up to a cap, and one time budget for the whole run.

The tools are real processes (shell scripts in tmp_path, coreutils' yes and sleep): what
is tested is how they are waited on, read and killed, which only a real process shows."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest
from q3cn_doctor.host import base
from q3cn_doctor.host.base import OUTPUT_CAP, RAN, TIMED_OUT, TOO_MUCH_OUTPUT
from q3cn_doctor.host.live import LiveHost
from q3cn_doctor.host.process import GRACE_S


def tool(folder: Path, name: str, body: str) -> str:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def gone(pid: int, within: float = 2.0) -> bool:
    """Whether ``pid`` has ended (a zombie not yet reaped by init counts as ended)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def test_a_tool_that_leaves_a_child_holding_its_output_is_not_waited_on(tmp_path):
    pidfile = tmp_path / "child.pid"
    path = tool(tmp_path, "leaver", f"sleep 30 &\necho $! > {pidfile}\necho done\nexit 0\n")
    started = time.monotonic()
    result = LiveHost().run([path])
    assert time.monotonic() - started < 2
    assert (result.state, result.returncode, result.stdout) == (RAN, 0, "done\n")
    assert gone(int(pidfile.read_text()))


@pytest.mark.slow  # waits out a real time limit
def test_a_hung_tool_times_out_and_its_children_die_with_it(tmp_path):
    pidfile = tmp_path / "child.pid"
    path = tool(tmp_path, "hang", f"sleep 60 &\necho $! > {pidfile}\nsleep 60\n")
    started = time.monotonic()
    result = LiveHost().run([path], timeout=1)
    assert 1 <= time.monotonic() - started < 3
    assert result.state == TIMED_OUT
    assert gone(int(pidfile.read_text()))


def test_endless_output_is_stopped_at_the_cap(tmp_path):
    started = time.monotonic()
    result = LiveHost().run(["yes", "q3cn-doctor"])
    assert time.monotonic() - started < 5
    assert result.state == TOO_MUCH_OUTPUT
    assert f"more than {OUTPUT_CAP // 2**20} MiB" in result.reason()
    assert not result.ok


def test_stderr_endless_is_stopped_too(tmp_path):
    path = tool(tmp_path, "noisy", "yes error >&2\n")
    assert LiveHost().run([path]).state == TOO_MUCH_OUTPUT


def test_output_and_status_of_an_ordinary_tool(tmp_path):
    path = tool(tmp_path, "plain", "printf 'out'\nprintf 'err' >&2\nexit 3\n")
    result = LiveHost().run([path, "arg"])
    assert (result.state, result.returncode, result.stdout, result.stderr) == (
        RAN, 3, "out", "err")


def test_an_ordinary_tool_costs_no_polling_delay():
    """A tool that exits and closes its output is collected at once. Waiting out the
    grace period would add GRACE_S to every run; a busy machine slows only some, so
    the median is judged."""
    at_once = 0.1
    assert at_once < GRACE_S  # else the grace period could hide under the bound
    host = LiveHost()
    durations = []
    for number in range(10):
        started = time.monotonic()
        assert host.run(["true", str(number)]).ok
        durations.append(time.monotonic() - started)
    assert statistics.median(durations) < at_once


def test_a_tool_that_closes_its_output_and_keeps_running_is_timed(tmp_path):
    path = tool(tmp_path, "closer", "exec >/dev/null 2>&1\nsleep 60\n")
    started = time.monotonic()
    assert LiveHost().run([path], timeout=0.3).state == TIMED_OUT
    assert time.monotonic() - started < 2.3


def test_not_installed_and_not_executable(tmp_path):
    host = LiveHost()
    assert host.run([str(tmp_path / "missing")]).state == base.NOT_INSTALLED
    plain = tmp_path / "plain"
    plain.write_text("data")
    assert host.run([str(plain)]).state == base.PERMISSION_DENIED


def test_every_command_of_a_run_shares_one_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "RUN_BUDGET_S", 0.5)
    path = tool(tmp_path, "hang", "sleep 60\n")
    host = LiveHost()
    started = time.monotonic()
    results = [host.run([path, str(number)]) for number in range(6)]
    assert time.monotonic() - started < 2.5
    assert {r.state for r in results} == {TIMED_OUT}
    assert "time for commands" in results[-1].stderr


def test_a_measurement_the_user_asked_for_is_outside_the_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "RUN_BUDGET_S", 0.2)
    path = tool(tmp_path, "measure", "sleep 0.5\necho 8130.53 MiB/sec\n")
    host = LiveHost()
    assert host.run([path, "budgeted"], timeout=5).state == TIMED_OUT
    result = host.run([path], timeout=5, budgeted=False)
    assert (result.state, result.stdout) == (RAN, "8130.53 MiB/sec\n")


@pytest.mark.slow  # waits out the run's whole command budget
@pytest.mark.live
def test_check_with_every_tool_hung_ends_within_the_budget(tmp_path):
    """Every tool check runs is on PATH and hangs, children and all: the whole run ends
    in about RUN_BUDGET_S and leaves no process behind."""
    from test_cli import cli

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pids = tmp_path / "pids"
    for name in ("dmidecode", "udevadm", "systemd-detect-virt", "nvcc", "llama-server",
                 "nvidia-smi", "numactl"):
        tool(bin_dir, name, f"sleep 300 &\necho $! >> {pids}\nsleep 300\n")
    started = time.monotonic()
    done = cli("check", "--no-plugins", "--server", str(bin_dir / "llama-server"),
               env={"PATH": f"{bin_dir}:/usr/bin:/bin", "XDG_CACHE_HOME": str(tmp_path / "cache")},
               timeout=120)
    assert time.monotonic() - started < base.RUN_BUDGET_S + 15
    assert done.returncode in (0, 1, 3)
    assert all(gone(int(pid)) for pid in pids.read_text().split())
    assert os.path.exists(pids)

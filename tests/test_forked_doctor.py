"""The fork server the tests run the command line through (tests/forked_doctor.py)
answers as the real console script does: the same output, errors and exit status, a
timeout that stops the run, and a real process wherever the start would differ."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from conftest import _fork_server, doctor_command
from forked_doctor import REAL_PROCESS_ENV
from test_cli import NO_XDG, make_root


@pytest.fixture(scope="module")
def server():
    found = _fork_server()
    if found is None:
        pytest.skip("no console script beside this interpreter: runs are real processes")
    return found


def real(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(doctor_command() + args, capture_output=True, text=True, env=env,
                          timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args", [
    ["--version"],
    ["check", "--root", "{root}", "--json"],
    ["check", "--root", "{root}", "--only", "no.such.check"],  # a usage error: exit 2
    ["fix", "--root", "{root}", "--apply"],  # refused without --yes or a terminal
])
def test_a_forked_run_answers_as_the_console_script(server, tmp_path, args):
    root = make_root(tmp_path / "root")
    env = dict(os.environ, XDG_CONFIG_HOME=NO_XDG, NO_COLOR="1",
               XDG_CACHE_HOME=str(tmp_path / "cache"))
    argv = [arg.format(root=root) for arg in args]
    forked, started = server.run(argv, env, 60), real(argv, env)
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        started.returncode, started.stdout, started.stderr)


def test_a_forked_run_is_the_same_environment_to_the_doctor(server, tmp_path):
    """The plugin index is cached per interpreter and sys.path: a forked run and a real
    one of the same console script share one entry, so they are the same environment."""
    import json

    root = make_root(tmp_path / "root")
    env = dict(os.environ, XDG_CONFIG_HOME=NO_XDG, XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert server.run(["check", "--root", str(root)], env, 60).returncode in (0, 1)
    assert real(["check", "--root", str(root)], env).returncode in (0, 1)
    index = json.loads((tmp_path / "cache/q3cn-doctor/plugins.json").read_text())
    assert len(index["environments"]) == 1


def test_a_run_past_its_timeout_is_stopped(server, tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    hang = tools / "systemd-detect-virt"
    hang.write_text("#!/bin/sh\nexec sleep 5\n")  # past the 0.5 s limit; gone soon after
    hang.chmod(0o755)
    env = dict(os.environ, XDG_CONFIG_HOME=NO_XDG, PATH=f"{tools}:{os.environ['PATH']}")
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        server.run(["check", "--only", "system"], env, timeout=0.5)
    assert time.monotonic() - started < 5


def test_a_start_that_would_differ_is_left_to_a_real_process(server, tmp_path):
    session = {key: value for key, value in server.env.items() if key != REAL_PROCESS_ENV}
    assert server.serves(session)
    assert not server.serves(dict(session, PYTHONPATH=str(tmp_path)))  # plugins
    assert not server.serves(dict(session, LC_ALL="C"))  # the streams' encoding
    assert not server.serves(dict(session, **{REAL_PROCESS_ENV: "1"}))

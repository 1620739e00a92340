"""Shared test helpers: fixture hosts from real machines, and ways to run the doctor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
HOSTS = FIXTURES / "hosts"
REPO = Path(__file__).parent.parent


def host_fixture(name: str) -> str:
    """Path of a snapshot-layout fixture folder under tests/fixtures/hosts/."""
    path = HOSTS / name
    assert path.is_dir(), f"no fixture host {name}"
    return str(path)


def doctor_command() -> list[str]:
    """The installed console script beside this interpreter (the venv's)."""
    script = Path(sys.executable).parent / "q3cn-doctor"
    return [str(script)] if script.exists() else [sys.executable, "-m", "q3cn_doctor"]


def run_cli(*args: str, env: dict | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the installed q3cn-doctor in a subprocess, as a user would."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(doctor_command() + list(args), capture_output=True, text=True,
                          env=full_env, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def snapshot_host():
    """Open a fixture host by name as a read-only SnapshotHost."""
    from q3cn_doctor.snapshot import SnapshotHost

    return lambda name: SnapshotHost(host_fixture(name))

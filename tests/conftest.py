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


def snapshot_facts(name_or_dir: str | Path, **options):
    """Facts of a fixture host (by name) or of a snapshot folder (a Path or absolute path)."""
    from q3cn_doctor.facts import Facts
    from q3cn_doctor.options import Options
    from q3cn_doctor.snapshot import SnapshotHost

    name = str(name_or_dir)
    directory = name if os.path.isabs(name) else host_fixture(name)
    return Facts(SnapshotHost(directory), Options(snapshot=directory, **options))


def snapshot_findings(name_or_dir: str | Path, *ids: str, **options) -> dict:
    """The built-in checks' findings on a fixture host or snapshot folder, by finding id."""
    from q3cn_doctor.runner import available_checks, run_checks, select

    specs, _ = available_checks(plugins=False)
    found = run_checks(snapshot_facts(name_or_dir, **options), select(specs, list(ids), []))
    by_id = {finding.id: finding for finding in found}
    assert len(by_id) == len(found), "finding ids must be unique"
    return by_id


@pytest.fixture
def snapshot_host():
    """Open a fixture host by name as a read-only SnapshotHost."""
    from q3cn_doctor.snapshot import SnapshotHost

    return lambda name: SnapshotHost(host_fixture(name))

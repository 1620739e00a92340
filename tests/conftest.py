"""Shared test helpers: fixture hosts from real machines, and ways to run the doctor."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
HOSTS = FIXTURES / "hosts"
REPO = Path(__file__).parent.parent
_PYC_ENV = "PYTHONDONTWRITEBYTECODE"
_PYC_KEY = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """Where the environment forbids .pyc files (some CI images and containers set
    PYTHONDONTWRITEBYTECODE), every doctor the tests start would compile the project from
    source again, ~70 ms a run over hundreds of runs. Children of this session instead
    cache bytecode in a private temporary folder (never in the source tree), as
    bench/bench_startup.py does; what they run is the same code."""
    if os.environ.get(_PYC_ENV):
        config.stash[_PYC_KEY] = tempfile.mkdtemp(prefix="q3cn-test-pyc-")
        os.environ.pop(_PYC_ENV)
        os.environ["PYTHONPYCACHEPREFIX"] = config.stash[_PYC_KEY]


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_PYC_KEY, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


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


def run_on_terminal(args: list[str], env: dict, answer: bytes | None = None,
                    stdin_terminal: bool = False) -> tuple[int, bytes]:
    """Run the doctor with a pseudo-terminal as stdout and stderr (and stdin where asked
    or where ``answer`` is given: it answers the first ``[y/N]`` question)."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    stdin = slave if stdin_terminal or answer is not None else subprocess.DEVNULL
    process = subprocess.Popen(doctor_command() + args, stdin=stdin, stdout=slave, stderr=slave,
                               env=env, close_fds=True)
    os.close(slave)
    output, answered = b"", False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if answer is not None and not answered and b"[y/N]" in output:
                os.write(master, answer + b"\n")
                answered = True
    finally:
        os.close(master)
        code = process.wait(timeout=30)
    return code, output


def copy_fixture(name: str, tmp_path: Path) -> Path:
    """A writable copy of a fixture host (symlinks kept, as sysfs has them)."""
    import shutil

    target = tmp_path / name
    shutil.copytree(host_fixture(name), target, symlinks=True)
    return target


def write_fs(root: Path, path: str, text: str) -> None:
    """Write ``path`` (absolute, as on the machine) into a snapshot folder's fs/."""
    target = root / "fs" / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def snapshot_facts(name_or_dir: str | Path, **options):
    """Facts of a fixture host (by name) or of a snapshot folder (a Path or absolute path)."""
    from q3cn_doctor.facts import Facts
    from q3cn_doctor.host.snapshot import SnapshotHost
    from q3cn_doctor.options import Options

    name = str(name_or_dir)
    directory = name if os.path.isabs(name) else host_fixture(name)
    return Facts(SnapshotHost(directory), Options(snapshot=directory, **options))


def snapshot_findings(name_or_dir: str | Path, *ids: str, **options) -> dict:
    """The built-in checks' findings on a fixture host or snapshot folder, by finding id."""
    from q3cn_doctor.checking.runner import available_checks, run_checks, select

    specs, _ = available_checks(plugins=False)
    found = run_checks(snapshot_facts(name_or_dir, **options), select(specs, list(ids), []))
    by_id = {finding.id: finding for finding in found}
    assert len(by_id) == len(found), "finding ids must be unique"
    return by_id


@pytest.fixture
def snapshot_host():
    """Open a fixture host by name as a read-only SnapshotHost."""
    from q3cn_doctor.host.snapshot import SnapshotHost

    return lambda name: SnapshotHost(host_fixture(name))

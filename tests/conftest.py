"""Shared test helpers: fixture hosts from real machines, and ways to run the doctor."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
HOSTS = FIXTURES / "hosts"
REPO = Path(__file__).parent.parent
_PYC_ENV = "PYTHONDONTWRITEBYTECODE"
_PYC_KEY = pytest.StashKey[str]()
_SESSION_ENV: dict[str, str] = {}  # os.environ as the session set it up
_FORKS: list = []  # this test process's fork server, once started


def pytest_configure(config: pytest.Config) -> None:
    """Where the environment forbids .pyc files (some CI images and containers set
    PYTHONDONTWRITEBYTECODE), every doctor the tests start would compile the project from
    source again, ~70 ms a run over hundreds of runs. Children of this session instead
    cache bytecode in a private temporary folder (never in the source tree), as
    bench/bench_startup.py does; what they run is the same code."""
    # The reports are judged as a pipe gets them (100 columns): a COLUMNS the shell
    # exported, or pytest-xdist set for its workers, would narrow every one of them.
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)
    if os.environ.get(_PYC_ENV):
        config.stash[_PYC_KEY] = tempfile.mkdtemp(prefix="q3cn-test-pyc-")
        os.environ.pop(_PYC_ENV)
        os.environ["PYTHONPYCACHEPREFIX"] = config.stash[_PYC_KEY]
    _SESSION_ENV.update(os.environ)  # the fork server starts in it, whichever test starts it


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
    """Run the installed q3cn-doctor in a process of its own, as a user would: forked
    from a server that imported it once (tests/forked_doctor.py), or started afresh
    where the environment changes what an interpreter reads at start."""
    full_env = dict(os.environ, **(env or {}))
    server = _fork_server()
    if server is not None and server.serves(full_env):
        return server.run(list(args), full_env, timeout)
    return subprocess.run(doctor_command() + list(args), capture_output=True, text=True,
                          env=full_env, timeout=timeout, stdin=subprocess.DEVNULL)


def _fork_server():
    """The fork server, started on first use; None where there is no console script."""
    if not _FORKS:
        from forked_doctor import ForkServer

        script = doctor_command()
        _FORKS.append(ForkServer(script[0], _SESSION_ENV or dict(os.environ))
                      if len(script) == 1 else None)
    return _FORKS[0]


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _FORKS and _FORKS[0] is not None:
        _FORKS.pop().close()


def run_on_terminal(args: list[str], env: dict, answer: bytes | None = None,
                    stdin_terminal: bool = False,
                    command: list[str] | None = None) -> tuple[int, bytes]:
    """Run the doctor (or ``command``) with a pseudo-terminal as stdout and stderr (and
    stdin where asked or where ``answer`` is given: it answers the first ``[y/N]``
    question)."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    stdin = slave if stdin_terminal or answer is not None else subprocess.DEVNULL
    process = subprocess.Popen((command or doctor_command()) + args, stdin=stdin, stdout=slave,
                               stderr=slave, env=env, close_fds=True)
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


# -- the real parts: a real llama.cpp build and a real model ----------------------------------

PARTS_SCRIPT = REPO / "scripts" / "real-parts"
PARTS_TIME_LIMIT_S = 1500  # a first build is ~6 min on 2 cores; CI stays under 20 min
REQUIRE_PARTS = "Q3CN_REQUIRE_PARTS"
"""Set (CI's command sets it) to make parts that cannot be fetched a failure, not a skip."""
UNPRIVILEGED = "nobody"  # who llama.cpp runs as when the tests run as root


class RealParts:
    """scripts/real-parts' llama-server, llama-bench and SmolLM2, where the user llama.cpp
    runs as can read them, and the doctor options that run it that way."""

    def __init__(self, folder: Path, server: Path, bench: Path, model: Path) -> None:
        self.folder, self.server, self.bench, self.model = folder, server, bench, model
        self.user = UNPRIVILEGED if os.geteuid() == 0 else None

    def args(self) -> list[str]:
        """--server, --model and --user for a doctor command that runs llama.cpp."""
        user = ["--user", self.user] if self.user else []
        return ["--server", str(self.server), "--model", str(self.model), *user]

    def env(self, tmp_path: Path) -> dict[str, str]:
        """A private config, state and cache folder: the tests never touch the real ones."""
        return {"XDG_CONFIG_HOME": str(tmp_path / "config"),
                "XDG_STATE_HOME": str(tmp_path / "state"),
                "XDG_CACHE_HOME": str(tmp_path / "cache"), "SUDO_USER": ""}


@pytest.fixture(scope="session")
def real_parts() -> Iterator[RealParts]:
    """Fetch and build the real parts once a session (cached by version across sessions).
    Skipped only where they cannot be downloaded (no network) and Q3CN_REQUIRE_PARTS is
    unset; any other failure, or any failure under Q3CN_REQUIRE_PARTS, fails the tests
    that need them."""
    folder = Path(tempfile.mkdtemp(prefix="q3cn-parts-"))
    try:
        done = subprocess.run([sys.executable, str(PARTS_SCRIPT), "--time-limit",
                               str(PARTS_TIME_LIMIT_S), "--link-into", str(folder)],
                              capture_output=True, text=True,
                              timeout=PARTS_TIME_LIMIT_S + 60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/real-parts ran past {PARTS_TIME_LIMIT_S} s")
    message = f"scripts/real-parts exited {done.returncode}: {done.stderr.strip()[-3000:]}"
    if done.returncode == 3 and not os.environ.get(REQUIRE_PARTS):
        pytest.skip(f"the real llama.cpp build and model cannot be downloaded here: {message}")
    if done.returncode != 0:
        pytest.fail(message)
    paths = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    yield RealParts(folder, *(Path(paths[name])
                              for name in ("llama-server", "llama-bench", "model")))
    shutil.rmtree(folder, ignore_errors=True)


# -- processes, by /proc --------------------------------------------------------------------

def child_pids(parent: int) -> list[int]:
    """The processes whose parent is ``parent``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"

"""The apt hook on the real machine: the one test allowed to touch it, and only when asked.

    sudo Q3CN_DOCTOR_REAL_APT_TEST=1 .venv/bin/python -m pytest tests/test_hook_real_apt.py

On a Debian or Ubuntu machine, as root, it installs the apt hook into
/etc/apt/apt.conf.d, reinstalls one package that is already installed with
``apt-get install --reinstall`` and checks that apt ran ``q3cn-doctor check --hook``:
the hook's memory is rewritten, and a finding made to look newly worse is reported in
apt's output. Whatever happens, it uninstalls the hook and puts back the hook's state
files in /var/lib/q3cn-doctor as they were.

The package: ``Q3CN_DOCTOR_REAL_APT_PACKAGE`` names one; without it, the smallest
installed package whose exact .deb is in /var/cache/apt/archives and which has no
maintainer scripts is reinstalled from there (no download). .ci/run never sets the
opt-in variable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import doctor_command

OPT_IN = "Q3CN_DOCTOR_REAL_APT_TEST"
PACKAGE_ENV = "Q3CN_DOCTOR_REAL_APT_PACKAGE"
APT_CONF = Path("/etc/apt/apt.conf.d/99q3cn-doctor")
STATE = Path("/var/lib/q3cn-doctor")
STATE_FILES = ("hook-last.json", "hooks.json")
ARCHIVES = Path("/var/cache/apt/archives")
SCRIPTS = ("preinst", "postinst", "prerm", "postrm", "triggers", "config")

# slow: real apt transactions on this machine, only where asked for
pytestmark = [pytest.mark.slow, pytest.mark.live, pytest.mark.skipif(
    os.environ.get(OPT_IN) != "1",
    reason=f"touches this machine's apt configuration: set {OPT_IN}=1 (as root, on Debian "
           "or Ubuntu) to run it")]


def _field(deb: Path, name: str) -> str:
    done = subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True)
    return done.stdout.strip()


def _installed_version(package: str) -> str | None:
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Status}|${Version}", package],
                          capture_output=True, text=True)
    status, _, version = done.stdout.partition("|")
    return version if done.returncode == 0 and status == "install ok installed" else None


def _cached_package() -> str | None:
    """The smallest installed package whose installed version's .deb is cached and which
    runs no maintainer script: reinstalling it changes nothing and needs no network."""
    found = []
    for deb in ARCHIVES.glob("*.deb"):
        package = _field(deb, "Package")
        if not package or _installed_version(package) != _field(deb, "Version"):
            continue
        listing = subprocess.run(["dpkg-deb", "-I", str(deb)], capture_output=True,
                                 text=True).stdout
        if any(f" {script}" in line for line in listing.splitlines()
               if "bytes" in line for script in SCRIPTS):
            continue
        found.append((deb.stat().st_size, package))
    return min(found)[1] if found else None


def _doctor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(doctor_command() + list(args), capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def test_apt_reinstall_runs_the_hook():
    if os.geteuid() != 0:
        pytest.skip("needs root: apt-get install and /etc/apt/apt.conf.d")
    if shutil.which("apt-get") is None or shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian or Ubuntu machine (no apt-get)")
    if APT_CONF.exists() or APT_CONF.is_symlink():
        pytest.skip(f"{APT_CONF} is already there: not touching an installed hook")
    package = os.environ.get(PACKAGE_ENV) or _cached_package()
    if not package:
        pytest.skip(f"no cached .deb of an installed package: set {PACKAGE_ENV}=NAME (it is "
                    "downloaded and reinstalled)")
    if _installed_version(package) is None:
        pytest.skip(f"{package} is not installed")
    cached = not os.environ.get(PACKAGE_ENV)

    had_state = STATE.is_dir()
    saved = {name: (STATE / name).read_bytes() if (STATE / name).is_file() else None
             for name in STATE_FILES}
    try:
        installed = _doctor("hook", "install", "--apt")
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert APT_CONF.read_text().startswith("# Written by q3cn-doctor (hook apt).")
        memory_path = STATE / "hook-last.json"
        # Make whatever warns or fails now look as if it passed last time: the hook
        # apt runs must then report each as worse, in apt's own output.
        memory = json.loads(memory_path.read_text())
        seeded = {}
        for finding_id, entry in memory["findings"].items():
            if entry["status"] in ("fail", "warn"):
                seeded[finding_id] = entry["status"]
                entry["status"] = "pass"
        memory["time"] = "seeded by test_hook_real_apt"
        memory_path.write_text(json.dumps(memory))

        argv = ["apt-get", "install", "--reinstall", "-y", *(["--no-download"] if cached
                                                               else []), package]
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                              env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
                              stdin=subprocess.DEVNULL)
        print(f"$ {' '.join(argv)}  ({time.monotonic() - started:.1f} s)\n{done.stdout}"
              f"{done.stderr}")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "1 reinstalled" in done.stdout
        after = json.loads(memory_path.read_text())
        assert after["time"] != "seeded by test_hook_real_apt", "apt did not run the hook"
        for finding_id, status in seeded.items():
            assert f"q3cn-doctor: {finding_id}: pass -> {status}: " in done.stdout
        if seeded:
            assert "q3cn-doctor: see more: q3cn-doctor check --only " in done.stdout
        assert "Problem executing scripts" not in done.stdout + done.stderr
    finally:
        removed = _doctor("hook", "uninstall", "--apt")
        if APT_CONF.exists() and APT_CONF.read_text().startswith("# Written by q3cn-doctor"):
            APT_CONF.unlink()  # never leave it behind, even if uninstall broke
        for name, data in saved.items():
            path = STATE / name
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)
        if not had_state and STATE.is_dir() and not any(STATE.iterdir()):
            STATE.rmdir()
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "the apt hook removed: /etc/apt/apt.conf.d/99q3cn-doctor" in removed.stdout
    assert not APT_CONF.exists()

"""Packaging: the wheel a user installs holds one import name, and works in a fresh venv.

The source is copied to tmp_path first, so the build neither writes build/ or
*.egg-info into the repository nor picks up stale files from an earlier build/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import REPO
from q3cn_doctor.version import __version__
from test_cli import make_root

pytestmark = pytest.mark.slow  # builds a wheel and installs it into fresh venvs

SOURCE_DIRS = {"doctor": "q3cn_doctor", "checks": "q3cn_doctor/checks",
               "fixes": "q3cn_doctor/fixes"}
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "*.egg-info",
                                    "__pycache__", ".pytest_cache", ".ruff_cache", "shared")


def _run(argv: list, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    full_env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", NO_COLOR="1", **env)
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist",
                  source], cwd=work, timeout=180)
    assert built.returncode == 0, built.stdout + built.stderr
    wheels = list((work / "dist").glob("q3cn_doctor-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("venv") / "env"
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(home)
    except Exception as exc:  # no ensurepip (Debian without python3-venv), read-only tmp...
        pytest.skip(f"cannot create a virtual environment here: {type(exc).__name__}: {exc}")
    python = home / "bin" / "python"
    if not python.exists():
        pytest.skip("cannot create a virtual environment here: it has no bin/python")
    installed = _run([python, "-m", "pip", "install", "-q", wheel], cwd=home.parent, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return home


def test_wheel_holds_one_import_name(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"q3cn_doctor", f"q3cn_doctor-{__version__}.dist-info"}, top
    for package in ("q3cn_doctor", "q3cn_doctor/checks", "q3cn_doctor/fixes",
                    "q3cn_doctor/facts"):
        assert f"{package}/__init__.py" in names, package
    assert "q3cn_doctor/report/report.schema.json" in names
    assert not any(name.endswith((".pyc", "/")) for name in names)


def test_wheel_holds_every_source_module(wheel):
    """A new subpackage left out of pyproject's package list would vanish from installs."""
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = []
    for folder, package in SOURCE_DIRS.items():
        for path in (REPO / folder).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            inside = f"{package}/{path.relative_to(REPO / folder).as_posix()}"
            if inside not in names:
                missing.append(inside)
    assert not missing, f"not in the wheel: {missing}"


def test_wheel_metadata(wheel):
    archive = zipfile.ZipFile(wheel)
    info = f"q3cn_doctor-{__version__}.dist-info"
    entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert "q3cn-doctor = q3cn_doctor.app.cli:main" in entry_points
    metadata = archive.read(f"{info}/METADATA").decode()
    assert f"Version: {__version__}" in metadata
    for dependency in ("click", "rich", "psutil", "py-cpuinfo", "nvidia-ml-py"):
        assert f"Requires-Dist: {dependency}" in metadata


def test_fresh_venv_runs_the_doctor(fresh_venv, tmp_path):
    script = fresh_venv / "bin" / "q3cn-doctor"
    # Run from an empty folder so nothing in the repository can be imported by accident.
    version = _run([script, "--version"], cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert __version__ in version.stdout
    listed = _run([script, "check", "--list"], cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    for check_id in ("memory.swappiness", "memory.swap", "memory.hugepages", "cpu.governor",
                     "system.virtualization"):
        assert check_id in listed.stdout
    root = make_root(tmp_path / "root", mem_gib=64, hugetlb_gib=60)
    report = _run([script, "check", "--root", root, "--json"], cwd=tmp_path,
                  XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    assert report.returncode == 1, report.stderr
    assert json.loads(report.stdout)["summary"]["fail"] == 1


def test_fresh_venv_has_no_generic_packages(fresh_venv, tmp_path):
    python = fresh_venv / "bin" / "python"
    probe = ("import importlib.util, json, q3cn_doctor\n"
             "from importlib.resources import files\n"
             "print(json.dumps({'generic': [n for n in ('checks', 'fixes', 'doctor') "
             "if importlib.util.find_spec(n)], 'home': q3cn_doctor.__file__, "
             "'schema': json.loads(files('q3cn_doctor.report').joinpath('report.schema.json')"
             ".read_text())['$schema']}))\n")
    result = _run([python, "-c", probe], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["generic"] == []
    assert Path(answer["home"]).is_relative_to(fresh_venv)
    assert answer["schema"].endswith("2020-12/schema")
    module = _run([python, "-m", "q3cn_doctor", "--version"], cwd=tmp_path)
    assert module.returncode == 0 and __version__ in module.stdout

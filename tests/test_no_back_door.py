"""The one door: checks and facts reach the machine only through their Host.

Every built-in check runs against a snapshot twice: once normally, then with every
way of reading a file, listing a folder or starting a program refused unless it
points inside the snapshot directory. Both runs must give the same findings, no
check may error, and nothing may even try to go round the host.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import os
import subprocess

import pytest
from q3cn_doctor.checking.findings import ERROR, SKIP
from q3cn_doctor.checking.runner import available_checks, run_checks
from q3cn_doctor.facts import Facts
from q3cn_doctor.host import nvml
from q3cn_doctor.host.base import RAN
from q3cn_doctor.host.live import LiveHost
from q3cn_doctor.host.snapshot import RecordingHost, SnapshotHost
from q3cn_doctor.options import Options

_PATH_FUNCTIONS = [(builtins, "open"), (io, "open"), (os, "open"), (os, "listdir"),
                   (os, "scandir"), (os, "readlink"), (os, "stat"), (os, "lstat")]
_PROGRAM_FUNCTIONS = [(subprocess, "Popen"), (os, "system"), (os, "popen"), (os, "fork"),
                      (os, "posix_spawn"), (os, "posix_spawnp"), (os, "execv"),
                      (os, "execve"), (nvml, "read_nvml")]


@contextlib.contextmanager
def only_inside(directory: str):
    """Refuse every path outside ``directory`` and every program; yield what was refused."""
    allowed = os.path.abspath(directory)
    refused: list[str] = []
    saved = []

    def inside(path) -> bool:
        if isinstance(path, int):  # an already open descriptor
            return True
        name = os.path.abspath(os.fsdecode(path))
        return name == allowed or name.startswith(allowed + os.sep)

    def guard(real, label):
        def guarded(path=".", *args, **kwargs):
            if not inside(path):
                refused.append(f"{label} {path}")
                raise PermissionError(errno.EACCES, "outside the snapshot", str(path))
            return real(path, *args, **kwargs)
        return guarded

    def forbid(label):
        def forbidden(*args, **kwargs):
            refused.append(f"{label} {args[:1]}")
            raise PermissionError(errno.EPERM, f"{label} is not allowed in a replay")
        return forbidden

    try:
        for module, name in _PATH_FUNCTIONS + _PROGRAM_FUNCTIONS:
            if not hasattr(module, name):
                continue
            real = getattr(module, name)
            saved.append((module, name, real))
            label = f"{module.__name__}.{name}"
            setattr(module, name, guard(real, label) if (module, name) in _PATH_FUNCTIONS
                    else forbid(label))
        with contextlib.suppress(ImportError):
            import pynvml

            saved.append((pynvml, "nvmlInit", pynvml.nvmlInit))
            pynvml.nvmlInit = forbid("pynvml.nvmlInit")
        yield refused
    finally:
        for module, name, real in reversed(saved):
            setattr(module, name, real)


def builtin_specs():
    """Found before any guard: discovery lists the installed package, not the machine."""
    specs, failures = available_checks(plugins=False)
    assert specs and not failures
    return specs


def run_all(directory: str, specs) -> tuple[list[dict], dict]:
    """Every built-in check and every facts section, replayed from ``directory``."""
    facts = Facts(SnapshotHost(directory), Options(snapshot=directory, plugins=False))
    findings = run_checks(facts, specs)
    return [finding.to_json() for finding in findings], facts.to_json()


def record_this_machine(directory: str) -> str:
    host = RecordingHost(directory)
    specs, _ = available_checks(plugins=False)
    facts = Facts(host, Options(plugins=False))
    run_checks(facts, specs)
    facts.to_json()
    return host.finish()


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


def handmade_snapshot(directory: str) -> str:
    """A small desktop written by hand: two cpufreq policies, disk swap, hugepages."""
    fs = os.path.join(directory, "fs")
    files = {
        "/proc/meminfo": "MemTotal:       65536000 kB\nMemAvailable:   60000000 kB\n"
                         "HugePages_Total:       0\nHugetlb:               0 kB\n",
        "/proc/swaps": "Filename\tType\tSize\tUsed\tPriority\n"
                       "/dev/nvme0n1p3 partition\t8388604\t0\t-2\n",
        "/proc/sys/vm/swappiness": "60\n",
        "/proc/sys/kernel/osrelease": "6.8.0-45-generic\n",
        "/proc/cpuinfo": "processor\t: 0\nvendor_id\t: AuthenticAMD\n"
                         "model name\t: AMD Ryzen 9 7950X 16-Core Processor\n\n"
                         "processor\t: 1\nvendor_id\t: AuthenticAMD\n"
                         "model name\t: AMD Ryzen 9 7950X 16-Core Processor\n\n",
        "/etc/os-release": 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\n',
        "/sys/devices/system/cpu/online": "0-1\n",
        "/sys/kernel/mm/transparent_hugepage/enabled": "always [madvise] never\n",
        "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages": "0\n",
        "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages": "0\n",
    }
    for cpu in (0, 1):
        policy = f"/sys/devices/system/cpu/cpufreq/policy{cpu}/"
        files[policy + "affected_cpus"] = f"{cpu}\n"
        files[policy + "scaling_driver"] = "amd-pstate-epp\n"
        files[policy + "scaling_governor"] = "powersave\n"
        files[policy + "energy_performance_preference"] = "balance_performance\n"
    for path, text in files.items():
        write(fs + path, text)
    for flag, answer in (("--vm", "none"), ("--container", "none")):
        base = os.path.join(directory, "cmd", f"systemd-detect-virt_{flag}")
        write(base + ".out", answer + "\n")
        write(base + ".rc", "1\n")
    write(os.path.join(directory, "nvml.json"),
          json.dumps({"init": "NVML_ERROR_DRIVER_NOT_LOADED", "reason": "no driver"}))
    write(os.path.join(directory, "snapshot.json"),
          json.dumps({"format": 1, "euid": 1000, "rlimits": {"MEMLOCK": [65536, 65536]}}))
    return directory


@pytest.fixture(params=[pytest.param("recorded", marks=pytest.mark.live), "handmade"])
def snapshot_dir(request, tmp_path):
    directory = str(tmp_path / "snapshot")
    if request.param == "recorded":
        return record_this_machine(directory)
    return handmade_snapshot(directory)


def test_checks_use_only_the_host(snapshot_dir):
    specs = builtin_specs()
    first_findings, first_facts = run_all(snapshot_dir, specs)
    assert first_findings
    assert any(finding["evidence"] for finding in first_findings)
    with only_inside(snapshot_dir) as refused:
        second_findings, second_facts = run_all(snapshot_dir, specs)
    assert refused == []  # nothing even tried to go round the host
    assert second_findings == first_findings
    assert second_facts == first_facts
    assert [f["id"] for f in second_findings if f["status"] == ERROR] == []


def test_handmade_snapshot_is_really_read(tmp_path):
    """The replay sees the hand-made machine, so the equality above is not vacuous."""
    directory = handmade_snapshot(str(tmp_path / "snapshot"))
    specs = builtin_specs()
    with only_inside(directory):
        findings, facts = run_all(directory, specs)
    assert facts["cpu"]["model_name"] == "AMD Ryzen 9 7950X 16-Core Processor"
    assert facts["memory"]["swappiness"] == 60
    assert facts["system"]["virtualization"]["kind"] == "none"
    assert [p["governor"] for p in facts["cpu"]["frequency_policies"]] == ["powersave"] * 2
    assert any(f["status"] != SKIP for f in findings)


def test_the_guard_blocks_the_live_machine(tmp_path):
    """The patched functions really refuse: a live host under the guard sees nothing."""
    directory = str(tmp_path / "snapshot")
    os.makedirs(directory)
    live = LiveHost()
    with only_inside(directory) as refused:
        meminfo = live.cat("/proc/meminfo")
        result = live.run(["true"])
        with pytest.raises(PermissionError):
            live.nvml()
        with pytest.raises(PermissionError), open("/etc/os-release", "rb"):
            pass
        inside = os.path.join(directory, "ok.txt")
        with open(inside, "w") as handle:  # inside the snapshot folder is allowed
            handle.write("fine")
    assert meminfo is None
    assert result.state != RAN
    assert any("/proc/meminfo" in entry for entry in refused)
    # The program is refused at its PATH lookup (a stat outside the snapshot) or at Popen.
    assert any("Popen" in entry or "os.stat" in entry and "/true" in entry for entry in refused)
    assert any("read_nvml" in entry for entry in refused)
    with open(os.path.join(directory, "ok.txt")) as handle:
        assert handle.read() == "fine"

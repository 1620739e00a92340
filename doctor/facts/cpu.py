"""The cpu section: identity, online CPUs and frequency policy.

The topology work (P/E cores, CCDs, NUMA, the affinity plan) extends this
section; what is here is what the governor check judges. /proc/cpuinfo and
/sys answer in well under a millisecond; py-cpuinfo takes over a second, so
it stays off this path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..host import Host, parse_cpu_list
from ..options import Options

if TYPE_CHECKING:
    from . import Facts

CPU_ROOT = "/sys/devices/system/cpu"


@dataclass
class FrequencyPolicy:
    """One cpufreq policy: the CPUs that share a clock and how it is governed."""

    name: str  # policy0, or cpu0 on kernels without policy folders
    cpus: list[int]
    driver: str | None
    governor: str | None
    available_governors: list[str]
    epp: str | None  # energy_performance_preference, where the driver has one


@dataclass
class CpuFacts:
    model_name: str | None
    vendor: str | None
    logical: int | None  # online CPUs
    online_cpus: list[int]
    frequency_policies: list[FrequencyPolicy]
    basis: dict[str, str] = field(default_factory=dict)


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per processor block."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return [block for block in blocks if "processor" in block]


def _policies(host: Host) -> list[FrequencyPolicy]:
    folders = host.glob(CPU_ROOT + "/cpufreq/policy*")
    if not folders:  # older kernels expose cpufreq only per CPU
        folders = [path[: -len("/scaling_governor")]
                   for path in host.glob(CPU_ROOT + "/cpu[0-9]*/cpufreq/scaling_governor")]
    policies = []
    linked: dict[str, list[int]] | None = None
    for folder in sorted(folders, key=_number_in):
        cpus_text = host.cat(folder + "/affected_cpus") or host.cat(folder + "/related_cpus")
        cpus = [int(c) for c in cpus_text.split()] if cpus_text else []
        if not cpus and (match := re.search(r"/cpu(\d+)/cpufreq$", folder)):
            cpus = [int(match.group(1))]
        if not cpus and (match := re.search(r"/(policy(\d+))$", folder)):
            # No CPU list (a partial copy of sysfs): the cpuN/cpufreq links say which
            # CPUs share the policy; policyN is at least named after CPU N.
            if linked is None:
                linked = _cpus_by_policy_link(host)
            cpus = linked.get(match.group(1)) or [int(match.group(2))]
        policies.append(FrequencyPolicy(
            name=folder.rsplit("/", 1)[-1] if "/policy" in folder else folder.split("/")[-2],
            cpus=cpus,
            driver=host.cat(folder + "/scaling_driver"),
            governor=host.cat(folder + "/scaling_governor"),
            available_governors=(host.cat(folder + "/scaling_available_governors") or "").split(),
            epp=host.cat(folder + "/energy_performance_preference"),
        ))
    return policies


def _cpus_by_policy_link(host: Host) -> dict[str, list[int]]:
    """policyN -> the CPUs whose ``cpuM/cpufreq`` symlink points at it."""
    found: dict[str, list[int]] = {}
    for link in host.glob(CPU_ROOT + "/cpu[0-9]*/cpufreq"):
        try:
            target = host.readlink(link)
        except OSError:  # a folder (the older layout), not a link
            continue
        cpu = re.search(r"/cpu(\d+)/cpufreq$", link)
        if cpu:
            found.setdefault(target.rstrip("/").rsplit("/", 1)[-1], []).append(int(cpu.group(1)))
    return {name: sorted(cpus) for name, cpus in found.items()}


def _number_in(path: str) -> int:
    digits = re.findall(r"\d+", path)
    return int(digits[-1]) if digits else 0


def gather(host: Host, options: Options, facts: Facts) -> CpuFacts:
    basis: dict[str, str] = {}
    blocks = parse_cpuinfo(host.cat("/proc/cpuinfo") or "")
    first = blocks[0] if blocks else {}
    online_text = host.cat(CPU_ROOT + "/online")
    if online_text:
        online = parse_cpu_list(online_text)
        basis["logical"] = CPU_ROOT + "/online"
    else:
        online = [int(block["processor"]) for block in blocks if block["processor"].isdigit()]
        basis["logical"] = "processor entries in /proc/cpuinfo" if online else "unknown"
    policies = _policies(host)
    basis["frequency_policies"] = (
        CPU_ROOT + "/cpufreq" if policies else "no cpufreq in sysfs (VMs and some containers)"
    )
    basis["model_name"] = "/proc/cpuinfo"
    return CpuFacts(
        model_name=first.get("model name") or first.get("Model") or first.get("cpu model"),
        vendor=first.get("vendor_id") or first.get("CPU implementer"),
        logical=len(online) or None,
        online_cpus=online,
        frequency_policies=policies,
        basis=basis,
    )

"""The cgroup section: the CPU quota, cpuset and memory limit llama-server runs under.

A container (``docker run --cpus 4``), a systemd unit (``CPUQuota=400%``, which systemd
writes to the unit's ``cpu.max``) or a slice can cap the CPU time of every process in it.
llama.cpp's threads wait for each other at every matrix product, so more threads than
the quota allows stall each other for whole scheduler periods (8 threads under a 4-CPU
quota: 12.07 -> 0.27 tok/s, ollama #17916). A memory limit below the model's RAM part
makes the kernel reclaim the mapped weights (re-read from disk every token) or kill
llama-server when they are locked.

Read for this process (``launch`` execs llama-server in it) and for every running
llama-server, each through its ``/proc/PID/cgroup``: cgroup v2's ``cpu.max``,
``cpuset.cpus.effective`` and ``memory.max``, or v1's ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us``, ``cpuset.effective_cpus`` and ``memory.limit_in_bytes``. A limit
on any ancestor cgroup applies too, so the tightest along the path is kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgspec import Struct, field
from q3cn_doctor.host.base import Host, cpu_list_or_none
from q3cn_doctor.options import Options

if TYPE_CHECKING:
    from . import Facts

MOUNT = "/sys/fs/cgroup"
SERVER_NAME = "llama-server"
V1_UNLIMITED = 2**62  # v1 writes "no limit" as a page-rounded 2^63 - 1


class CgroupLimits(Struct):
    """What one process's cgroup (and its ancestors) allow it."""

    cgroup: str  # the path /proc/PID/cgroup names ("/user.slice/...", "/" in a container)
    version: int  # 2 (unified) or 1
    cpu_quota: float | None = None  # CPUs' worth of time (cpu.max 400000 100000: 4.0)
    quota_source: str | None = None  # the file that set it, and its text
    cpuset: list[int] | None = None  # cpuset.cpus.effective, where a controller is there
    memory_max_bytes: int | None = None
    memory_source: str | None = None


class CgroupFacts(Struct):
    """The CPU and memory limits of the cgroups llama-server runs or would run in: a
    container quota starves threads that the CPU count says are there."""
    own: CgroupLimits | None  # this process: where `launch` starts llama-server
    servers: dict[int, CgroupLimits] = field(default_factory=dict)  # running llama-server pids
    basis: dict[str, str] = field(default_factory=dict)
    # This process's CPU affinity (a taskset, a legacy /dev/cpuset, a container's pinning),
    # which the llama-server it execs inherits; None where /proc/self/status has none.
    affinity: list[int] | None = None

    def allowed_cpus(self) -> list[int] | None:
        """The CPUs this process may run on: its cpuset and its affinity together."""
        sets = [set(cpus) for cpus in (getattr(self.own, "cpuset", None), self.affinity)
                if cpus]
        return sorted(set.intersection(*sets)) if sets else None


def gather(host: Host, options: Options, facts: Facts) -> CgroupFacts:
    servers = {}
    for process in host.processes():
        program = process.cmdline[0].rsplit("/", 1)[-1] if process.cmdline else ""
        if SERVER_NAME in (process.name, program):
            limits = limits_of(host, f"/proc/{process.pid}/cgroup")
            if limits is not None:
                servers[process.pid] = limits
    return CgroupFacts(
        own=limits_of(host, "/proc/self/cgroup"), servers=servers,
        basis={"own": "/proc/self/cgroup, then cpu.max / cpu.cfs_quota_us, "
                      "cpuset.cpus.effective and memory.max / memory.limit_in_bytes along "
                      f"its path under {MOUNT} (the tightest kept)",
               "servers": "the same for each running llama-server (/proc/PID/cgroup)",
               "affinity": "Cpus_allowed_list in /proc/self/status"},
        affinity=_affinity(host))


def _affinity(host: Host) -> list[int] | None:
    for line in (host.cat("/proc/self/status") or "").splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return cpu_list_or_none(line.partition(":")[2].strip()) or None
    return None


def limits_of(host: Host, cgroup_file: str) -> CgroupLimits | None:
    """The limits of the process whose ``/proc/PID/cgroup`` is ``cgroup_file``; None where
    it cannot be read (no /proc, a host without cgroups)."""
    text = host.cat(cgroup_file)
    if not text:
        return None
    entries = parse_cgroup_file(text)
    unified = entries.get("")
    if unified is not None and host.exists(f"{MOUNT}/cgroup.controllers"):
        return _v2(host, unified)
    if any(key for key in entries):
        return _v1(host, entries)
    return None


def parse_cgroup_file(text: str) -> dict[str, str]:
    """``/proc/PID/cgroup`` as controller -> path: v2's ``0::/path`` under "", each of v1's
    comma-joined controllers (``2:cpu,cpuacct:/docker``) under its own name."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/"):
            continue
        if parts[1] == "":
            paths[""] = parts[2]
        for name in parts[1].split(","):
            if name:
                paths[name.removeprefix("name=")] = parts[2]
    return paths


def parse_cpu_max(text: str | None) -> float | None:
    """cgroup v2 ``cpu.max`` (``250000 100000``) as CPUs; None for ``max`` or garbage."""
    parts = (text or "").split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs(quota_text: str | None, period_text: str | None) -> float | None:
    """cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` as CPUs; -1 is no quota."""
    try:
        quota, period = int(quota_text or ""), int(period_text or "")
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_memory_limit(text: str | None) -> int | None:
    """``memory.max`` (v2: ``max`` or bytes) or ``memory.limit_in_bytes`` (v1: 2^63 rounded
    down to a page for none) in bytes; None where there is no limit."""
    text = (text or "").strip()
    if not text.isdecimal():
        return None
    value = int(text)
    return value if value < V1_UNLIMITED else None


def _ancestors(base: str, path: str) -> list[str]:
    """``base + path`` and each folder above it up to ``base``, deepest first."""
    parts = [part for part in path.split("/") if part and part != ".."]
    return [base + "".join("/" + part for part in parts[:depth])
            for depth in range(len(parts), -1, -1)]


def _tighter(current: tuple | None, value, where: str) -> tuple | None:
    if value is None:
        return current
    return (value, where) if current is None or value < current[0] else current


def _v2(host: Host, path: str) -> CgroupLimits:
    limits = CgroupLimits(path, 2)
    folders = _ancestors(MOUNT, path)
    # A container without its own cgroup namespace names the host's path, which its
    # /sys/fs/cgroup (the container's own cgroup) does not have: read that root then.
    existing = [folder for folder in folders if host.is_dir(folder)] or [MOUNT]
    quota = memory = None
    for folder in existing:
        text = host.cat(f"{folder}/cpu.max")
        quota = _tighter(quota, parse_cpu_max(text), f"{folder}/cpu.max = {text}")
        text = host.cat(f"{folder}/memory.max")
        memory = _tighter(memory, parse_memory_limit(text), f"{folder}/memory.max = {text}")
    limits.cpuset = _cpus(host, f"{existing[0]}/cpuset.cpus.effective")
    _store(limits, quota, memory)
    return limits


def _v1_mounts(host: Host) -> dict[str, tuple[str, str]]:
    """controller -> (mount point, the cgroup path mounted there) from mountinfo."""
    mounts: dict[str, tuple[str, str]] = {}
    for line in (host.cat("/proc/self/mountinfo") or "").splitlines():
        before, dash, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not dash or len(fields) < 5 or len(tail) < 3 or tail[0] != "cgroup":
            continue
        for option in tail[2].split(","):
            mounts.setdefault(option, (fields[4], fields[3]))
    return mounts


def _v1_folders(host: Host, controller: str, entries: dict[str, str],
                mounts: dict[str, tuple[str, str]]) -> list[str]:
    path = entries.get(controller)
    if path is None:
        return []
    point, root = mounts.get(controller, (f"{MOUNT}/{controller}", "/"))
    relative = path[len(root):] if root != "/" and path.startswith(root) else path
    folders = [folder for folder in _ancestors(point, relative) if host.is_dir(folder)]
    return folders or ([point] if host.is_dir(point) else [])


def _v1(host: Host, entries: dict[str, str]) -> CgroupLimits:
    limits = CgroupLimits(entries.get("cpu") or next(iter(entries.values())), 1)
    mounts = _v1_mounts(host)
    quota = memory = None
    for folder in _v1_folders(host, "cpu", entries, mounts):
        quota_text = host.cat(f"{folder}/cpu.cfs_quota_us")
        period_text = host.cat(f"{folder}/cpu.cfs_period_us")
        quota = _tighter(quota, parse_cfs(quota_text, period_text),
                         f"{folder}/cpu.cfs_quota_us = {quota_text} "
                         f"(cpu.cfs_period_us = {period_text})")
    for folder in _v1_folders(host, "memory", entries, mounts):
        text = host.cat(f"{folder}/memory.limit_in_bytes")
        memory = _tighter(memory, parse_memory_limit(text),
                          f"{folder}/memory.limit_in_bytes = {text}")
    cpuset = _v1_folders(host, "cpuset", entries, mounts)
    if cpuset:
        limits.cpuset = _cpus(host, f"{cpuset[0]}/cpuset.effective_cpus")
    _store(limits, quota, memory)
    return limits


def _store(limits: CgroupLimits, quota: tuple | None, memory: tuple | None) -> None:
    if quota is not None:
        limits.cpu_quota, limits.quota_source = quota
    if memory is not None:
        limits.memory_max_bytes, limits.memory_source = memory


def _cpus(host: Host, path: str) -> list[int] | None:
    return cpu_list_or_none(host.cat(path))

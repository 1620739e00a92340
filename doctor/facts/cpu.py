"""The cpu section: identity, topology, ISA features and frequency policy.

Topology is what the thread and affinity plan (doctor/cpuplan.py) is made of:
physical cores (distinct SMT sibling lists: core ids repeat across clusters and
dies), sockets, core classes (P/E on hybrid Intel, big/LITTLE on ARM, Zen/Zen c
on AMD), L3 groups (CCDs/CCXs on AMD), NUMA nodes, and the CPUs the scheduler
leaves alone (offline, isolated). Real sysfs is messy: lists can end in NUL
bytes, older kernels lack ``core_cpus_list``, package ids are arbitrary and ARM
capacities vary within one core type; each value's ``basis`` says how it was
derived.

/proc/cpuinfo and /sys answer in well under a millisecond; py-cpuinfo takes
over a second, so it stays off this path.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from msgspec import Struct, field
from q3cn_doctor.host.base import MAX_CPU_ID, Host, parse_cpu_list
from q3cn_doctor.options import Options
from q3cn_doctor.parsers.procfs import bounded_int, cache_size_bytes

if TYPE_CHECKING:
    from . import Facts

CPU_ROOT = "/sys/devices/system/cpu"
NODE_ROOT = "/sys/devices/system/node"
HYBRID_P_LIST = "/sys/devices/cpu_core/cpus"  # the kernel's PMU lists on hybrid Intel
HYBRID_E_LIST = "/sys/devices/cpu_atom/cpus"
HYBRID_LP_LIST = "/sys/devices/cpu_lowpower/cpus"  # Arrow Lake-H/U's SoC-tile LP E-cores
PPD_STATE = "/var/lib/power-profiles-daemon/state.ini"
TUNED_PROFILE = "/etc/tuned/active_profile"
PLATFORM_PROFILE = "/sys/firmware/acpi/platform_profile"

# Daemons that set governors, EPP or boost themselves: a fix must go through them.
POWER_MANAGERS = ("power-profiles-daemon", "tuned", "tuned-ppd", "auto-cpufreq",
                  "system76-power", "tlp")

# A class of cores is "fast" when its capacity or clock is within this share of the
# fastest class; classes split where sorted values drop below CLUSTER_GAP of the one above.
FAST_SHARE = 0.8
CLUSTER_GAP = 0.9
VCACHE_RATIO = 2.5  # an L3 this many times the smallest in the CPU is 3D V-cache

# ARM core names by (implementer, part), as lscpu and hwloc print them.
ARM_PARTS = {
    ("0x41", "0xc07"): "Cortex-A7", ("0x41", "0xc0f"): "Cortex-A15",
    ("0x41", "0xd03"): "Cortex-A53", ("0x41", "0xd04"): "Cortex-A35",
    ("0x41", "0xd05"): "Cortex-A55", ("0x41", "0xd07"): "Cortex-A57",
    ("0x41", "0xd08"): "Cortex-A72", ("0x41", "0xd09"): "Cortex-A73",
    ("0x41", "0xd0a"): "Cortex-A75", ("0x41", "0xd0b"): "Cortex-A76",
    ("0x41", "0xd0c"): "Neoverse-N1", ("0x41", "0xd0d"): "Cortex-A77",
    ("0x41", "0xd40"): "Neoverse-V1", ("0x41", "0xd41"): "Cortex-A78",
    ("0x41", "0xd44"): "Cortex-X1", ("0x41", "0xd46"): "Cortex-A510",
    ("0x41", "0xd47"): "Cortex-A710", ("0x41", "0xd48"): "Cortex-X2",
    ("0x41", "0xd49"): "Neoverse-N2", ("0x41", "0xd4d"): "Cortex-A715",
    ("0x41", "0xd4e"): "Cortex-X3", ("0x41", "0xd4f"): "Neoverse-V2",
    ("0x41", "0xd80"): "Cortex-A520", ("0x41", "0xd81"): "Cortex-A720",
    ("0x41", "0xd82"): "Cortex-X4", ("0x41", "0xd85"): "Cortex-X925",
    ("0x41", "0xd87"): "Cortex-A725", ("0x48", "0xd01"): "TaiShan-v110",
    ("0x61", "0x022"): "Apple Icestorm", ("0x61", "0x023"): "Apple Firestorm",
}

# How fast each ARM core type is, for /proc/cpuinfo without sysfs capacity or clocks: a
# prime core (Cortex-X) 1024, a big core (Cortex-A7x, Neoverse, Apple Firestorm) about
# 750, a LITTLE core (Cortex-A5x, A35, A7, Apple Icestorm) about 400 -- the ratios the
# kernel's capacity-dmips-mhz device-tree values give (the GB10's sysfs: X925 1024,
# A725 731). Only the order and the FAST_SHARE cut matter.
ARM_TIERS = {name: tier for names, tier in (
    (("Cortex-X1", "Cortex-X2", "Cortex-X3", "Cortex-X4", "Cortex-X925"), 1024),
    (("Cortex-A15", "Cortex-A57", "Cortex-A72", "Cortex-A73", "Cortex-A75", "Cortex-A76",
      "Cortex-A77", "Cortex-A78", "Cortex-A710", "Cortex-A715", "Cortex-A720", "Cortex-A725",
      "Neoverse-N1", "Neoverse-N2", "Neoverse-V1", "Neoverse-V2", "Apple Firestorm"), 750),
    (("Cortex-A7", "Cortex-A35", "Cortex-A53", "Cortex-A55", "Cortex-A510", "Cortex-A520",
      "Apple Icestorm"), 400),
) for name in names}

# /proc/cpuinfo flag names of the x86 features llama.cpp's CPU backends are built for
# (the ggml-cpu variants: haswell, skylakex, icelake, alderlake, zen4, sapphirerapids...).
X86_FLAGS = {
    "sse4_2": ("sse4_2",), "avx": ("avx",), "avx2": ("avx2",), "bmi2": ("bmi2",),
    "fma": ("fma",), "f16c": ("f16c",), "avx_vnni": ("avx_vnni",),
    "avx512f": ("avx512f",), "avx512cd": ("avx512cd",), "avx512vl": ("avx512vl",),
    "avx512dq": ("avx512dq",), "avx512bw": ("avx512bw",), "avx512vbmi": ("avx512vbmi",),
    "avx512_vnni": ("avx512_vnni",), "avx512_bf16": ("avx512_bf16",),
    "amx": ("amx_tile", "amx_int8"),
}
ARM_FLAGS = {  # aarch64 names, with the 32-bit kernel's "neon"
    "neon": ("asimd",), "dotprod": ("asimddp",), "i8mm": ("i8mm",), "fp16": ("fphp", "asimdhp"),
    "bf16": ("bf16",), "sve": ("sve",), "sve2": ("sve2",),
}
ISA_KEYS = ("avx2", "avx512f", "avx_vnni", "amx", "f16c", "fma")  # always in facts.cpu.isa


class FrequencyPolicy(Struct):
    """One cpufreq policy: the CPUs that share a clock and how it is governed."""

    name: str  # policy0, or cpu0 on kernels without policy folders
    cpus: list[int]
    driver: str | None
    governor: str | None
    available_governors: list[str]
    epp: str | None  # energy_performance_preference, where the driver has one
    max_freq_khz: int | None = None  # cpuinfo_max_freq: the hardware's top clock
    scaling_max_khz: int | None = None  # scaling_max_freq: the top the kernel allows now


class CoreClass(Struct):
    """CPUs of one core type, fastest class first in ``CpuFacts.core_classes``."""

    name: str  # "P-core", "E-core", "Cortex-X925", "Zen c", "capacity 1024", "all cores"
    cpus: list[int]
    cores: int
    fast: bool  # in the class the plan runs on
    max_freq_khz: int | None = None
    capacity: int | None = None  # cpu_capacity (ARM, RISC-V): 1024 is the fastest CPU


class L3Group(Struct):
    """CPUs sharing one L3: a CCD (Zen 3 on) or CCX (Zen 1/2) on AMD, a die or socket elsewhere."""

    cpus: list[int]
    cores: int
    size_bytes: int | None
    vcache: bool = False  # AMD, one core class: an L3 2.5x the smallest or more (X3D parts)


class NumaNode(Struct):
    """One NUMA node: its CPUs and memory, for keeping threads beside their weights."""
    node: int
    cpus: list[int]
    memory_bytes: int | None


class CpuFacts(Struct):
    """The CPU as llama.cpp's threads meet it: core kinds, SMT, governor, NUMA and the
    flags the build's kernels need."""
    model_name: str | None
    vendor: str | None
    logical: int | None  # online CPUs
    online_cpus: list[int]
    frequency_policies: list[FrequencyPolicy]
    basis: dict[str, str] = field(default_factory=dict)
    arch: str | None = None  # x86, arm, riscv, s390, or None
    family: int | None = None  # x86 cpu family: AMD 23 Zen 1/2, 25 Zen 3/4, 26 Zen 5
    physical_cores: int | None = None
    sockets: int | None = None
    smt: bool | None = None  # some core runs two or more online threads
    threads_per_core: int | None = None
    cores: list[list[int]] = field(default_factory=list)  # each core's online CPUs
    p_cores: int | None = None  # cores of the fast class; None where all are of one class
    e_cores: int | None = None
    p_cpus: list[int] | None = None  # logical CPUs of the fast class; None where one class
    e_cpus: list[int] | None = None
    core_classes: list[CoreClass] = field(default_factory=list)
    l3_groups: list[L3Group] = field(default_factory=list)
    numa_nodes: int | None = None
    numa: list[NumaNode] = field(default_factory=list)
    offline_cpus: list[int] = field(default_factory=list)
    isolated_cpus: list[int] = field(default_factory=list)  # isolcpus
    nohz_full_cpus: list[int] = field(default_factory=list)
    isa: dict[str, bool | None] = field(default_factory=dict)
    no_turbo: bool | None = None  # intel_pstate/no_turbo
    turbo_pct: int | None = None  # intel_pstate/turbo_pct: 0 on a CPU without turbo
    max_perf_pct: int | None = None  # intel_pstate/max_perf_pct: a cap on every core
    boost: bool | None = None  # cpufreq/boost (acpi-cpufreq, amd-pstate)
    pstate_status: str | None = None  # intel_pstate or amd_pstate mode: active, passive, guided
    platform_profile: str | None = None  # ACPI platform profile: low-power, balanced, performance
    power_profile: str | None = None  # power-profiles-daemon's profile
    tuned_profile: str | None = None
    power_managers: list[str] = field(default_factory=list)  # such daemons seen running

    @property
    def hybrid(self) -> bool:
        return bool(self.p_cpus and self.e_cpus)


# -- small readers --------------------------------------------------------------------------
def _text(host: Host, path: str) -> str | None:
    """A sysfs value without its trailing newline and NUL bytes (some kernels print both)."""
    text = host.cat(path)
    return None if text is None else text.replace("\x00", "").strip()


def _cpus(host: Host, path: str) -> list[int] | None:
    text = _text(host, path)
    if text is None:
        return None
    try:
        return parse_cpu_list(text)
    except ValueError:
        return None


def _int(host: Host, path: str) -> int | None:
    return bounded_int(_text(host, path), signed=True)


def parse_cpu_mask(text: str) -> list[int]:
    """The kernel's hex CPU mask (``00000000,003f0000,0000003f``) as CPU ids."""
    digits = text.replace("\x00", "").replace(",", "").strip().lstrip("0")
    if len(digits) * 4 > MAX_CPU_ID + 1:
        raise ValueError(f"a CPU mask of {len(digits)} hex digits names CPUs beyond {MAX_CPU_ID}")
    bits = bin(int(digits, 16))[:1:-1] if digits else ""  # lowest bit first
    return [cpu for cpu, bit in enumerate(bits) if bit == "1"]


def cpu_mask(cpus: list[int]) -> str:
    """CPU ids as a hex mask, ``0x`` first (taskset and llama.cpp's --cpu-mask read it)."""
    value = 0
    for cpu in cpus:
        value |= 1 << cpu
    return f"0x{value:x}"


# -- /proc/cpuinfo --------------------------------------------------------------------------
def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per processor block."""
    return [block for block in _blocks(text) if "processor" in block]


def _blocks(text: str) -> list[dict[str, str]]:
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
            current.setdefault(key.strip(), value.strip())
    if current:
        blocks.append(current)
    return blocks


def _shared_keys(text: str) -> dict[str, str]:
    """Keys printed once for all processors (32-bit ARM prints Features and CPU part last)."""
    shared: dict[str, str] = {}
    for block in _blocks(text):
        if "processor" not in block or "Processor" in block:
            for key, value in block.items():
                if key != "processor":
                    shared.setdefault(key, value)
    return shared


def _arch(first: dict[str, str]) -> str | None:
    vendor = first.get("vendor_id", "")
    if "flags" in first or vendor in ("GenuineIntel", "AuthenticAMD", "HygonGenuine",
                                      "CentaurHauls", "  Shanghai  "):
        return "x86"
    if "CPU implementer" in first or "CPU architecture" in first:
        return "arm"
    if first.get("isa", "").startswith("rv"):
        return "riscv"
    if vendor.startswith("IBM/S390"):
        return "s390"
    return None


def _isa(arch: str | None, flag_sets: list[set[str]]) -> tuple[dict[str, bool | None], str]:
    """The features llama.cpp cares about, present on every online CPU."""
    isa: dict[str, bool | None] = dict.fromkeys(ISA_KEYS)
    if not flag_sets or arch not in ("x86", "arm"):
        why = "no flags in /proc/cpuinfo" if not flag_sets else f"no x86 or ARM flags ({arch})"
        return isa, why
    common = set.intersection(*flag_sets)
    table = X86_FLAGS if arch == "x86" else ARM_FLAGS
    for name, needed in table.items():
        if arch == "arm" and name == "neon":
            isa[name] = bool({"asimd", "neon"} & common)
        elif arch == "arm" and name == "fp16":
            isa[name] = bool(set(needed) & common)
        else:
            isa[name] = all(flag in common for flag in needed)
    source = "flags" if arch == "x86" else "Features"
    return isa, f"{source} in /proc/cpuinfo, present on every CPU (amx: amx_tile and amx_int8)"


# -- cpufreq --------------------------------------------------------------------------------
def policy_folder(name: str) -> str:
    """A frequency policy's sysfs folder: policyN, or cpuN/cpufreq on kernels with
    per-CPU cpufreq folders only."""
    if name.startswith("policy"):
        return f"{CPU_ROOT}/cpufreq/{name}"
    return f"{CPU_ROOT}/{name}/cpufreq"


def _policies(host: Host) -> list[FrequencyPolicy]:
    folders = host.glob(CPU_ROOT + "/cpufreq/policy*")
    if not folders:  # older kernels expose cpufreq only per CPU
        folders = [path[: -len("/scaling_governor")]
                   for path in host.glob(CPU_ROOT + "/cpu[0-9]*/cpufreq/scaling_governor")]
    policies = []
    linked: dict[str, list[int]] | None = None
    for folder in sorted(folders, key=_number_in):
        cpus_text = _text(host, folder + "/affected_cpus") or _text(host, folder + "/related_cpus")
        cpus = [cpu for word in (cpus_text or "").split()
                if (cpu := bounded_int(word)) is not None and cpu <= MAX_CPU_ID]
        if not cpus and (match := re.search(r"/cpu(\d{1,5})/cpufreq$", folder)):
            cpus = [int(match.group(1))]
        if not cpus and (match := re.search(r"/(policy(\d{1,5}))$", folder)):
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
            max_freq_khz=_int(host, folder + "/cpuinfo_max_freq"),
            scaling_max_khz=_int(host, folder + "/scaling_max_freq"),
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
        cpu = re.search(r"/cpu(\d{1,5})/cpufreq$", link)
        if cpu:
            found.setdefault(target.rstrip("/").rsplit("/", 1)[-1], []).append(int(cpu.group(1)))
    return {name: sorted(cpus) for name, cpus in found.items()}


def _number_in(path: str) -> int:
    digits = re.findall(r"\d+", path)
    return (bounded_int(digits[-1]) or 0) if digits else 0


# -- topology -------------------------------------------------------------------------------
class _Cpu(Struct):
    """What sysfs says about one online CPU."""

    siblings: list[int] | None = None
    package: int | None = None
    package_cpus: list[int] | None = None
    capacity: int | None = None
    max_freq_khz: int | None = None
    l2: list[int] | None = None
    l3: list[int] | None = None
    l3_bytes: int | None = None


def _read_cpu(host: Host, cpu: int, sibling_file: str | None) -> _Cpu:
    base = f"{CPU_ROOT}/cpu{cpu}"
    data = _Cpu()
    if sibling_file:
        data.siblings = _cpus(host, f"{base}/topology/{sibling_file}")
    data.package = _int(host, f"{base}/topology/physical_package_id")
    data.package_cpus = (_cpus(host, f"{base}/topology/package_cpus_list")
                         or _cpus(host, f"{base}/topology/core_siblings_list"))
    data.capacity = _int(host, f"{base}/cpu_capacity")
    for index in host.glob(f"{base}/cache/index[0-9]*"):
        level = _text(host, index + "/level")
        if level == "2":
            data.l2 = _cpus(host, index + "/shared_cpu_list")
        elif level == "3":
            data.l3 = _cpus(host, index + "/shared_cpu_list")
            data.l3_bytes = cache_size_bytes(_text(host, index + "/size"))
    return data


class _Groups:
    """Union-find over CPU ids: sibling lists that disagree still make one core."""

    def __init__(self, items: list[int]) -> None:
        self.parent = {item: item for item in items}

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def join(self, members: list[int]) -> None:
        members = [m for m in members if m in self.parent]
        for other in members[1:]:
            self.parent[self.find(other)] = self.find(members[0])

    def groups(self) -> list[list[int]]:
        found: dict[int, list[int]] = {}
        for item in sorted(self.parent):
            found.setdefault(self.find(item), []).append(item)
        return sorted(found.values())


def _cores(online: list[int], cpus: dict[int, _Cpu], blocks: dict[int, dict[str, str]],
           sibling_file: str | None) -> tuple[list[list[int]], str]:
    groups = _Groups(online)
    if any(cpus[c].siblings for c in online):
        for cpu in online:
            groups.join([cpu] + (cpus[cpu].siblings or []))
        return groups.groups(), (f"distinct topology/{sibling_file} sets of the online CPUs"
                                 if sibling_file else "topology sibling lists")
    keyed = {c: (blocks[c].get("physical id"), blocks[c].get("core id"))
             for c in online if c in blocks}
    if keyed and all(None not in key for key in keyed.values()):
        by_key: dict[tuple, list[int]] = {}
        for cpu, key in keyed.items():
            by_key.setdefault(key, []).append(cpu)
        for members in by_key.values():
            groups.join(members)
        return groups.groups(), "(physical id, core id) pairs in /proc/cpuinfo"
    return groups.groups(), "no SMT information: one core per CPU"


def _sockets(online: list[int], cpus: dict[int, _Cpu],
             blocks: dict[int, dict[str, str]]) -> tuple[int | None, str]:
    if any(cpus[c].package_cpus for c in online):
        # Old ARM kernels number each cluster as a package; an L3 never spans sockets,
        # so packages that share one are one socket.
        groups = _Groups(online)
        for cpu in online:
            groups.join([cpu] + (cpus[cpu].package_cpus or []))
            groups.join([cpu] + (cpus[cpu].l3 or []))
        return len(groups.groups()), ("topology/package_cpus_list (core_siblings_list on older "
                                      "kernels), packages sharing an L3 merged")
    packages = {cpus[c].package for c in online if cpus[c].package is not None}
    packages.discard(-1)
    if packages:
        return len(packages), "distinct topology/physical_package_id"
    ids = {blocks[c].get("physical id") for c in online if c in blocks}
    ids.discard(None)
    if ids:
        return len(ids), "distinct physical id in /proc/cpuinfo"
    return None, "no package information"


def _perf(values: list[int | None]) -> int | None:
    known = [v for v in values if v]
    return max(known) if known else None


def _cluster(cores: list[list[int]], metric: dict[int, int]) -> list[list[list[int]]]:
    """Cores grouped by a performance number, fastest first: a new group starts where the
    value drops below CLUSTER_GAP of the one above (ARM capacities vary within one type)."""
    ordered = sorted(cores, key=lambda core: (-metric[core[0]], core[0]))
    groups: list[list[list[int]]] = []
    previous = None
    for core in ordered:
        value = metric[core[0]]
        if previous is None or value < previous * CLUSTER_GAP:
            groups.append([])
        groups[-1].append(core)
        previous = value
    return groups


def _classes(host: Host, online: list[int], cores: list[list[int]], cpus: dict[int, _Cpu],
             blocks: dict[int, dict[str, str]], vendor: str | None, arch: str | None,
             offline: list[int]) -> tuple[list[CoreClass], str]:
    """Core classes, fastest first, with ``fast`` marked, and how they were told apart."""
    online_set = set(online)
    core_of = {cpu: core for core in cores for cpu in core}
    freq = {c: cpus[c].max_freq_khz for c in online}
    capacity = {c: cpus[c].capacity for c in online}

    def make(name: str, members: list[int], fast: bool = False) -> CoreClass:
        member_cores = {tuple(core_of[c]) for c in members}
        return CoreClass(name, sorted(members), len(member_cores), fast,
                         _perf([freq[c] for c in members]), _perf([capacity[c] for c in members]))

    def per_core(values: dict[int, int | None]) -> dict[int, int] | None:
        found = {core[0]: _perf([values[c] for c in core]) for core in cores}
        return found if all(found.values()) else None  # type: ignore[return-value]

    def ranked(classes: list[CoreClass], key: str) -> list[CoreClass]:
        """Fastest first; every class within FAST_SHARE of the fastest is fast."""
        classes.sort(key=lambda k: (-(getattr(k, key) or 0), k.cpus[0]))
        top = getattr(classes[0], key)
        for klass in classes:
            klass.fast = getattr(klass, key) >= FAST_SHARE * top
        return classes

    if not online:
        return [], "no online CPUs known"
    # 1. Hybrid Intel: the kernel lists each core type's CPUs under its PMU.
    hybrid = _hybrid_lists(host, online_set)
    if hybrid:
        return [make(name, members, name == "P-core") for name, members in hybrid[0]], hybrid[1]
    # 2. ARM: CPU part names the core type; rank the types by capacity, else clock.
    parts = {c: (blocks[c].get("CPU implementer"), blocks[c].get("CPU part"))
             for c in online if c in blocks and blocks[c].get("CPU part")}
    if len(set(parts.values())) > 1 and len(parts) == len(online):
        by_part: dict[tuple, list[int]] = {}
        for cpu in online:
            by_part.setdefault(parts[cpu], []).append(cpu)
        classes = [make(ARM_PARTS.get(key, f"CPU part {key[1]}"), members)
                   for key, members in by_part.items()]
        for key in ("capacity", "max_freq_khz"):
            if all(getattr(k, key) for k in classes):
                source = "cpu_capacity" if key == "capacity" else "cpuinfo_max_freq"
                return ranked(classes, key), f"CPU part in /proc/cpuinfo, ranked by {source}"
        return _by_arm_tier(classes)
    # 3. Per-CPU capacity (ARM, RISC-V without part names): cluster the values.
    metric = per_core(capacity)
    if metric and len(set(metric.values())) > 1:
        groups = _cluster(cores, metric)
        if len(groups) > 1:
            classes = [make(f"capacity {metric[group[0][0]]}",
                            [c for core in group for c in core]) for group in groups]
            return ranked(classes, "capacity"), \
                "cpu_capacity, clustered (values within 10% are one type)"
    # 4. x86 without the PMU lists (older kernels, partial dumps): a clock gap that comes
    #    with a different SMT, L2 or L3 layout is two core types; a clock gap alone is
    #    favoured cores (Turbo Boost Max 3.0) or an X3D part's CCDs, not two types.
    metric = per_core(freq)
    if arch == "x86" and metric and len(set(metric.values())) > 1:
        groups = _cluster(cores, metric)
        if len(groups) == 2 and _differ(groups, cpus):
            names = ("Zen", "Zen c") if vendor == "AuthenticAMD" else ("P-core", "E-core")
            return [make(names[0], [c for core in groups[0] for c in core], True),
                    make(names[1], [c for core in groups[1] for c in core])], \
                "cpuinfo_max_freq gap with a different SMT or cache layout between the groups"
    # 5. Bare /proc/cpuinfo on Intel: hybrid parts run two threads on P-cores, one on E-cores.
    if vendor == "GenuineIntel" and not offline:
        two = [c for core in cores if len(core) > 1 for c in core]
        one = [c for core in cores if len(core) == 1 for c in core]
        if two and one:
            return [make("P-core", two, True), make("E-core", one)], \
                "cores with two threads (P) and with one (E), all CPUs online"
    return [make("all cores", list(online), True)], \
        "one core type: nothing tells the cores apart"


def _hybrid_lists(host: Host, online_set: set[int]
                  ) -> tuple[list[tuple[str, list[int]]], str] | None:
    """Hybrid Intel's core types as the kernel's PMU lists give them, fastest first, and
    the lists read; None where there are not both P- and E-cores."""
    def listed(path: str) -> list[int]:
        return [c for c in _cpus(host, path) or [] if c in online_set]

    p, e = listed(HYBRID_P_LIST), listed(HYBRID_E_LIST)
    if not (p and e):
        return None
    # The third list, where the kernel has one, holds the low-power E-cores: slower still
    # (Arrow Lake-H: 2.5 GHz beside 3.9 and 4.5), and in no other list.
    lp = listed(HYBRID_LP_LIST)
    lists = (f"{HYBRID_P_LIST}, {HYBRID_E_LIST} and {HYBRID_LP_LIST}" if lp else
             f"{HYBRID_P_LIST} and {HYBRID_E_LIST}")
    classes = [("P-core", p), ("E-core", e)] + ([("LP E-core", lp)] if lp else [])
    return classes, f"{lists} (the kernel's hybrid PMU lists)"


def _by_arm_tier(classes: list[CoreClass]) -> tuple[list[CoreClass], str]:
    """ARM core types with no capacity or clock in sysfs, ranked by what each type is."""
    if not all(k.name in ARM_TIERS for k in classes):
        return sorted(classes, key=lambda k: k.cpus[0]), \
            "CPU part in /proc/cpuinfo; no capacity or clock to rank the types"
    classes.sort(key=lambda k: (-ARM_TIERS[k.name], k.cpus[0]))
    top = ARM_TIERS[classes[0].name]
    for klass in classes:
        klass.fast = ARM_TIERS[klass.name] >= FAST_SHARE * top
    return classes, ("CPU part in /proc/cpuinfo, ranked by core type (prime, big, LITTLE): "
                     "sysfs gives no capacity or clock")


def _differ(groups: list[list[list[int]]], cpus: dict[int, _Cpu]) -> bool:
    def shape(group: list[list[int]]) -> set[tuple]:
        return {(len(core), len(cpus[core[0]].l2 or []), cpus[core[0]].l3_bytes)
                for core in group}
    return not shape(groups[0]) & shape(groups[1])


def _l3_groups(online: list[int], cores: list[list[int]], cpus: dict[int, _Cpu],
               vendor: str | None, one_class: bool) -> list[L3Group]:
    online_set = set(online)
    seen: dict[tuple[int, ...], int | None] = {}
    for cpu in online:
        shared = cpus[cpu].l3
        if shared:
            key = tuple(sorted(set(shared) & online_set | {cpu}))
            seen.setdefault(key, cpus[cpu].l3_bytes)
    groups = []
    for members, size in sorted(seen.items()):
        member_set = set(members)
        count = sum(1 for core in cores if core[0] in member_set)
        groups.append(L3Group(list(members), count, size))
    if vendor == "AuthenticAMD" and len(groups) > 1 and one_class:
        # X3D parts stack 64 MiB on one CCD (96 vs 32 MiB); Zen 5/5c mixes differ by 2x only
        sizes = [g.size_bytes for g in groups if g.size_bytes]
        for group in groups:
            group.vcache = bool(sizes and group.size_bytes
                                and group.size_bytes >= VCACHE_RATIO * min(sizes))
    return groups


def _numa(host: Host) -> tuple[list[NumaNode], str]:
    text = _text(host, NODE_ROOT + "/online")
    ids: list[int] = []
    if text:
        try:
            ids = parse_cpu_list(text)
        except ValueError:
            ids = []
    how = f"{NODE_ROOT}/online"
    if not ids:
        try:
            ids = sorted(node for name in host.listdir(NODE_ROOT)
                         if name.startswith("node") and (node := bounded_int(name[4:])) is not None
                         and node <= MAX_CPU_ID)
        except OSError:
            return [], f"no {NODE_ROOT}"
        how = f"the node folders in {NODE_ROOT}"
    nodes = []
    for node in ids:
        base = f"{NODE_ROOT}/node{node}"
        cpus = _cpus(host, base + "/cpulist")
        if cpus is None:
            mask = _text(host, base + "/cpumap")
            try:
                cpus = parse_cpu_mask(mask) if mask else []
            except ValueError:
                cpus = []
        memory = None
        match = re.search(r"MemTotal:\s+(\d+)\s*kB", host.cat(base + "/meminfo") or "")
        if match and (kib := bounded_int(match.group(1))) is not None:
            memory = kib * 1024
        nodes.append(NumaNode(node, cpus, memory))
    return nodes, f"{how}; nodeN/cpulist (else cpumap) and nodeN/meminfo"


def _cmdline_cpus(cmdline: str, name: str) -> list[int]:
    """CPUs named by a boot parameter (``isolcpus=domain,managed_irq,2-5``)."""
    for word in cmdline.split():
        key, _, value = word.partition("=")
        if key == name:
            parts = [p for p in value.split(",") if re.fullmatch(r"\d+(-\d+)?", p)]
            try:
                return parse_cpu_list(",".join(parts))
            except ValueError:
                return []
    return []


# -- power management -----------------------------------------------------------------------
def _ppd_profile(host: Host) -> str | None:
    section = None
    for line in (host.cat(PPD_STATE) or "").splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "State" and line.startswith("Profile="):
            return line.partition("=")[2].strip() or None
    return None


def _running_managers(host: Host) -> tuple[list[str], bool]:
    """Power daemons among the running processes, and whether the list could be read."""
    try:
        processes = host.processes()
    except NotImplementedError:
        return [], False
    found = []
    for process in processes:
        names = {process.name}
        if process.cmdline:
            names.add(process.cmdline[0].rsplit("/", 1)[-1])
            if len(process.cmdline) > 1 and process.name.startswith("python"):
                names.add(process.cmdline[1].rsplit("/", 1)[-1])  # tuned, auto-cpufreq
        for manager in POWER_MANAGERS:
            # /proc/PID/status cuts names at 15 characters ("power-profiles-")
            seen = manager in names or any(len(n) == 15 and manager.startswith(n)
                                           for n in names)
            if seen and manager not in found:
                found.append(manager)
    return found, True


# -- the section ----------------------------------------------------------------------------
def gather(host: Host, options: Options, facts: Facts) -> CpuFacts:
    basis: dict[str, str] = {}
    cpuinfo = host.cat("/proc/cpuinfo") or ""
    blocks = parse_cpuinfo(cpuinfo)
    shared = _shared_keys(cpuinfo)
    first = dict(shared, **blocks[0]) if blocks else shared
    by_id = {cpu: dict(shared, **b) for b in blocks
             if (cpu := bounded_int(b["processor"])) is not None and cpu <= MAX_CPU_ID}

    listed = _cpus(host, CPU_ROOT + "/online")
    present = _cpus(host, CPU_ROOT + "/present")
    if listed:
        online = listed
        basis["logical"] = CPU_ROOT + "/online"
    elif by_id:
        online = sorted(by_id)
        basis["logical"] = "processor entries in /proc/cpuinfo"
    elif present:
        online = present
        basis["logical"] = CPU_ROOT + "/present (no online list in this copy of sysfs)"
    else:
        online = []
        basis["logical"] = "unknown"
    offline = _cpus(host, CPU_ROOT + "/offline")
    if offline is None:
        offline = sorted(set(present or []) - set(online))
    basis["offline_cpus"] = f"{CPU_ROOT}/offline, else present minus online"

    policies = _policies(host)
    basis["frequency_policies"] = (
        CPU_ROOT + "/cpufreq" if policies else "no cpufreq in sysfs (VMs and some containers)"
    )
    basis["model_name"] = "/proc/cpuinfo"
    vendor = first.get("vendor_id") or first.get("CPU implementer")
    arch = _arch(first)
    basis["arch"] = "/proc/cpuinfo (vendor_id, CPU implementer, isa)"

    # Per-CPU topology. Kernels before 5.7 have no core_cpus_list: use the same file for
    # every CPU, the first that the first CPU has.
    sibling_file = None
    if online:
        for name in ("core_cpus_list", "thread_siblings_list"):
            if _cpus(host, f"{CPU_ROOT}/cpu{online[0]}/topology/{name}"):
                sibling_file = name
                break
    freq_of = {cpu: policy.max_freq_khz for policy in policies for cpu in policy.cpus}
    cpus: dict[int, _Cpu] = {}
    for cpu in online:
        cpus[cpu] = _read_cpu(host, cpu, sibling_file)
        cpus[cpu].max_freq_khz = freq_of.get(cpu)

    cores, basis["physical_cores"] = _cores(online, cpus, by_id, sibling_file)
    threads = max((len(core) for core in cores), default=0)
    smt = threads > 1 if cores else None
    smt_active = _text(host, CPU_ROOT + "/smt/active")
    basis["smt"] = "a core with two or more online threads" + (
        f" ({CPU_ROOT}/smt/active = {smt_active})" if smt_active is not None else "")
    sockets, basis["sockets"] = _sockets(online, cpus, by_id)

    classes, basis["core_classes"] = _classes(host, online, cores, cpus, by_id, vendor, arch,
                                              offline)
    p_cpus = e_cpus = None
    p_cores = e_cores = None
    if len(classes) > 1 and any(k.fast for k in classes):
        p_cpus = sorted(c for k in classes if k.fast for c in k.cpus)
        e_cpus = sorted(c for k in classes if not k.fast for c in k.cpus)
        p_cores = sum(k.cores for k in classes if k.fast)
        e_cores = sum(k.cores for k in classes if not k.fast)
    basis["p_cores"] = basis["p_cpus"] = (
        f"core classes by {basis['core_classes']}" if p_cpus else "one core class: null")

    l3 = _l3_groups(online, cores, cpus, vendor, len(classes) <= 1)
    basis["l3_groups"] = "cache/index*/ with level 3: shared_cpu_list and size"

    nodes, basis["numa"] = _numa(host)
    if nodes:
        numa_nodes = len(nodes)
        basis["numa_nodes"] = basis["numa"]
    elif host.is_dir(CPU_ROOT) and online:
        numa_nodes = 1
        basis["numa_nodes"] = f"no {NODE_ROOT} (a kernel without NUMA): one node"
    else:
        numa_nodes = None
        basis["numa_nodes"] = "unknown"

    cmdline = host.cat("/proc/cmdline") or ""
    isolated = _cpus(host, CPU_ROOT + "/isolated")
    isolated = sorted(set(isolated or []) | set(_cmdline_cpus(cmdline, "isolcpus")))
    nohz = _cpus(host, CPU_ROOT + "/nohz_full")
    nohz = sorted(set(nohz or []) | set(_cmdline_cpus(cmdline, "nohz_full")))
    basis["isolated_cpus"] = f"{CPU_ROOT}/isolated and isolcpus= in /proc/cmdline"
    basis["nohz_full_cpus"] = f"{CPU_ROOT}/nohz_full and nohz_full= in /proc/cmdline"

    flag_key = {"x86": "flags", "arm": "Features"}.get(arch or "", "")
    sources = [by_id[c] for c in online if c in by_id] or [first]
    flag_sets = [set(b[flag_key].split()) for b in sources if b.get(flag_key)]
    isa, basis["isa"] = _isa(arch, flag_sets)

    no_turbo_text = _text(host, CPU_ROOT + "/intel_pstate/no_turbo")
    boost_text = _text(host, CPU_ROOT + "/cpufreq/boost")
    status = (_text(host, CPU_ROOT + "/intel_pstate/status")
              or _text(host, CPU_ROOT + "/amd_pstate/status"))
    basis["no_turbo"] = CPU_ROOT + "/intel_pstate/no_turbo, turbo_pct, max_perf_pct"
    basis["boost"] = CPU_ROOT + "/cpufreq/boost"
    basis["pstate_status"] = CPU_ROOT + "/intel_pstate/status, else amd_pstate/status"
    managers, listed = _running_managers(host)
    basis["power_managers"] = ("running processes" if listed
                               else "unknown: this host lists no processes")
    basis["power_profile"] = PPD_STATE + " [State] Profile"
    basis["tuned_profile"] = TUNED_PROFILE
    basis["platform_profile"] = PLATFORM_PROFILE

    return CpuFacts(
        model_name=(first.get("model name") or first.get("Model") or first.get("cpu model")
                    or first.get("Processor")),
        vendor=vendor,
        logical=len(online) or None,
        online_cpus=online,
        frequency_policies=policies,
        basis=basis,
        arch=arch,
        family=bounded_int(first.get("cpu family")),
        physical_cores=len(cores) or None,
        sockets=sockets,
        smt=smt,
        threads_per_core=threads or None,
        cores=cores,
        p_cores=p_cores,
        e_cores=e_cores,
        p_cpus=p_cpus,
        e_cpus=e_cpus,
        core_classes=classes,
        l3_groups=l3,
        numa_nodes=numa_nodes,
        numa=nodes,
        offline_cpus=offline,
        isolated_cpus=isolated,
        nohz_full_cpus=nohz,
        isa=isa,
        no_turbo=None if no_turbo_text not in ("0", "1") else no_turbo_text == "1",
        turbo_pct=_int(host, CPU_ROOT + "/intel_pstate/turbo_pct"),
        max_perf_pct=_int(host, CPU_ROOT + "/intel_pstate/max_perf_pct"),
        boost=None if boost_text not in ("0", "1") else boost_text == "1",
        pstate_status=status or None,
        platform_profile=_text(host, PLATFORM_PROFILE) or None,
        power_profile=_ppd_profile(host),
        tuned_profile=(_text(host, TUNED_PROFILE) or "").split("\n")[0].strip() or None,
        power_managers=managers,
    )

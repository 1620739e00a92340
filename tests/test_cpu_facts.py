"""The cpu facts on real machines (tests/fixtures/hosts/cpu-*; SOURCE.txt in each names the corpus
source and the ground truth, hwloc or lscpu output of the same dump, that the numbers below repeat)
and on small kernel-format trees for the messy cases: NUL-terminated lists, missing core_cpus_list,
repeated core ids, arbitrary package ids, offline and isolated CPUs, bare /proc/cpuinfo.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import copy_fixture, host_fixture
from fixture_hosts import CPU_KVM as KVM
from fixture_hosts import CPU_OPTERON as OPTERON
from fixture_hosts import EPYC, GB10, GUIDE, N100, RAPTOR, RYZEN
from q3cn_doctor.facts import Facts
from q3cn_doctor.facts.cpu import cpu_mask, parse_cpu_mask, parse_cpuinfo
from q3cn_doctor.host.base import format_cpu_list
from q3cn_doctor.host.snapshot import SnapshotHost
from q3cn_doctor.options import Options

GIB = 1024**3
CPU = "/sys/devices/system/cpu"


def cpu_of(directory: str | Path):
    return Facts(SnapshotHost(str(directory)), Options(snapshot=str(directory))).cpu


def fixture_cpu(name: str):
    return cpu_of(host_fixture(name))


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for path, content in files.items():
        target = root / "fs" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    return root



def lists(cpus: list[int] | None) -> str | None:
    return None if cpus is None else format_cpu_list(cpus)


# -- the guide's machine and the other hybrids ---------------------------------------------------
def test_guide_i5_12600k_from_the_kernels_hybrid_lists():
    cpu = fixture_cpu(GUIDE)
    assert (cpu.model_name, cpu.vendor, cpu.arch) == (
        "12th Gen Intel(R) Core(TM) i5-12600K", "GenuineIntel", "x86")
    assert (cpu.logical, cpu.physical_cores, cpu.sockets, cpu.smt, cpu.threads_per_core) == (
        16, 10, 1, True, 2)
    assert (cpu.p_cores, cpu.e_cores) == (6, 4)
    assert (lists(cpu.p_cpus), lists(cpu.e_cpus)) == ("0-11", "12-15")
    assert cpu.cores[:2] == [[0, 1], [2, 3]] and cpu.cores[-1] == [15]
    assert [(k.name, lists(k.cpus), k.cores, k.fast, k.max_freq_khz) for k in cpu.core_classes] == [
        ("P-core", "0-11", 6, True, 4900000), ("E-core", "12-15", 4, False, 3600000)]
    assert cpu.basis["core_classes"].startswith("/sys/devices/cpu_core/cpus and "
                                                "/sys/devices/cpu_atom/cpus")
    assert cpu.hybrid
    assert [(lists(g.cpus), g.cores, g.size_bytes) for g in cpu.l3_groups] == [
        ("0-15", 10, 20 * 1024**2)]
    assert cpu.isa == dict(cpu.isa, avx2=True, avx512f=False, avx_vnni=True, amx=False,
                           f16c=True, fma=True)
    assert (cpu.no_turbo, cpu.boost, cpu.pstate_status) == (False, None, "active")
    assert (cpu.power_profile, cpu.power_managers, cpu.tuned_profile) == (
        "balanced", ["power-profiles-daemon"], None)


def test_i7_1370p_classes_from_clock_gap_and_layout_without_pmu_lists():
    cpu = fixture_cpu(RAPTOR)
    # hwloc: cores P#0,4,...,20 with two PUs (cpukind 1), P#24-31 with one (cpukind 0)
    assert (cpu.logical, cpu.physical_cores, cpu.smt) == (20, 14, True)
    assert (cpu.p_cores, cpu.e_cores, lists(cpu.p_cpus), lists(cpu.e_cpus)) == (
        6, 8, "0-11", "12-19")
    assert [(k.name, k.max_freq_khz) for k in cpu.core_classes] == [
        ("P-core", 5200000), ("E-core", 3900000)]  # Turbo Boost Max 3.0 cores at 5.2 GHz
    assert cpu.basis["core_classes"].startswith("cpuinfo_max_freq gap with a different SMT")
    assert [(lists(g.cpus), g.size_bytes) for g in cpu.l3_groups] == [("0-19", 24 * 1024**2)]
    assert (cpu.numa_nodes, cpu.sockets, cpu.offline_cpus, cpu.isolated_cpus) == (1, 1, [], [])


def test_bare_cpuinfo_tells_p_from_e_by_threads_per_core(tmp_path):
    """No sysfs at all: the 1370P's /proc/cpuinfo alone, where P-core ids carry two threads."""
    cpuinfo = (Path(host_fixture(RAPTOR)) / "fs/proc/cpuinfo").read_text()
    cpu = cpu_of(write_tree(tmp_path, {"/proc/cpuinfo": cpuinfo}))
    assert cpu.basis["physical_cores"] == "(physical id, core id) pairs in /proc/cpuinfo"
    assert (cpu.logical, cpu.physical_cores, lists(cpu.p_cpus), lists(cpu.e_cpus)) == (
        20, 14, "0-11", "12-19")
    assert cpu.basis["core_classes"].startswith("cores with two threads (P)")


def test_gb10_big_little_by_cpu_part_despite_uneven_capacities():
    cpu = fixture_cpu(GB10)
    # hwloc cpukinds: 0x00007c1f (efficiency 718) and 0x000f83e0 (997)
    assert (cpu.arch, cpu.vendor, cpu.model_name) == ("arm", "0x41", None)
    assert (cpu.logical, cpu.physical_cores, cpu.smt, cpu.sockets) == (20, 20, False, 1)
    assert cpu_mask(cpu.p_cpus) == "0xf83e0" and cpu_mask(cpu.e_cpus) == "0x7c1f"
    assert (cpu.p_cores, cpu.e_cores) == (10, 10)
    assert [(k.name, k.capacity, k.max_freq_khz) for k in cpu.core_classes] == [
        ("Cortex-X925", 1024, 3900000), ("Cortex-A725", 731, 2808000)]
    assert cpu.basis["core_classes"] == "CPU part in /proc/cpuinfo, ranked by cpu_capacity"
    assert [(cpu_mask(g.cpus), g.size_bytes) for g in cpu.l3_groups] == [
        ("0x3ff", 8388608), ("0xffc00", 16777216)]
    assert [(n.node, n.memory_bytes) for n in cpu.numa] == [(0, 128520671232)]
    assert cpu.isa["avx2"] is None and cpu.isa["dotprod"] and cpu.isa["sve2"] and cpu.isa["i8mm"]


def test_gb10_big_little_from_cpuinfo_alone(tmp_path):
    """The same GB10 with only /proc/cpuinfo (a container, a pasted file): each core's
    CPU part (0xd85 Cortex-X925, 0xd87 Cortex-A725) still tells the fast cores."""
    cpuinfo = (Path(host_fixture(GB10)) / "fs/proc/cpuinfo").read_text()
    cpu = cpu_of(write_tree(tmp_path, {"/proc/cpuinfo": cpuinfo}))
    assert [(k.name, k.fast, k.capacity) for k in cpu.core_classes] == [
        ("Cortex-X925", True, None), ("Cortex-A725", False, None)]
    assert cpu_mask(cpu.p_cpus) == "0xf83e0" and cpu_mask(cpu.e_cpus) == "0x7c1f"
    assert cpu.basis["core_classes"].startswith("CPU part in /proc/cpuinfo, ranked by core type")


def test_n100_is_one_class_although_every_core_is_an_e_core():
    cpu = fixture_cpu(N100)
    assert (cpu.model_name, cpu.logical, cpu.physical_cores, cpu.smt) == (
        "Intel(R) N100", 4, 4, False)
    assert (cpu.p_cores, cpu.e_cores, cpu.p_cpus, cpu.e_cpus) == (None, None, None, None)
    assert [(k.name, k.fast, lists(k.cpus)) for k in cpu.core_classes] == [
        ("all cores", True, "0-3")]
    assert cpu.basis["p_cores"] == "one core class: null"
    assert (cpu.isa["avx2"], cpu.isa["avx_vnni"], cpu.isa["avx512f"]) == (True, True, False)


# -- CCDs and NUMA servers -----------------------------------------------------------------------
def test_ryzen_7950x_two_ccds_from_present_without_online_or_cpuinfo():
    cpu = fixture_cpu(RYZEN)
    assert cpu.basis["logical"].startswith(f"{CPU}/present")
    assert (cpu.logical, cpu.physical_cores, cpu.smt, cpu.threads_per_core) == (32, 16, True, 2)
    assert cpu.cores[0] == [0, 16] and cpu.cores[15] == [15, 31]
    assert (cpu.p_cores, cpu.e_cores, cpu.model_name, cpu.arch) == (None, None, None, None)
    assert [(lists(g.cpus), g.cores, g.size_bytes, g.vcache) for g in cpu.l3_groups] == [
        ("0-7,16-23", 8, 32 * 1024**2, False), ("8-15,24-31", 8, 32 * 1024**2, False)]
    assert (cpu.numa_nodes, cpu.sockets) == (1, 1)
    assert set(cpu.isa.values()) == {None}


def test_x3d_vcache_ccd_is_flagged(tmp_path):
    """The same layout with a 96 MiB L3 on the first CCD, as on a 7950X3D."""
    root = copy_fixture(RYZEN, tmp_path)
    write_tree(root, {"/proc/cpuinfo": "".join(
        f"processor\t: {n}\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n\n" for n in range(32))})
    for n in list(range(8)) + list(range(16, 24)):
        write_tree(root, {f"{CPU}/cpu{n}/cache/index3/size": "98304K\n"})
    cpu = cpu_of(root)
    assert [(lists(g.cpus), g.size_bytes, g.vcache) for g in cpu.l3_groups] == [
        ("0-7,16-23", 96 * 1024**2, True), ("8-15,24-31", 32 * 1024**2, False)]
    assert (cpu.p_cpus, cpu.family) == (None, 25)  # one core class: X3D is not hybrid


def test_epyc_7451_two_sockets_eight_nodes_from_cpumap():
    cpu = fixture_cpu(EPYC)
    # lscpu: 96 CPUs, 2 threads per core, 24 cores per socket, 2 sockets, L3 16 instances
    assert (cpu.logical, cpu.physical_cores, cpu.sockets, cpu.threads_per_core) == (96, 48, 2, 2)
    assert cpu.basis["physical_cores"] == (
        "distinct topology/thread_siblings_list sets of the online CPUs")  # no core_cpus_list
    assert len(cpu.l3_groups) == 16 and {g.cores for g in cpu.l3_groups} == {3}
    assert sum(g.size_bytes for g in cpu.l3_groups) == 128 * 1024**2
    assert cpu.numa_nodes == 8
    assert [lists(n.cpus) for n in cpu.numa] == [
        "0-5,48-53", "6-11,54-59", "12-17,60-65", "18-23,66-71", "24-29,72-77",
        "30-35,78-83", "36-41,84-89", "42-47,90-95"]
    assert {n.memory_bytes for n in cpu.numa} == {None}
    assert cpu.basis["numa"].startswith("the node folders in /sys/devices/system/node")


def test_opteron_6276_cmt_modules_nul_terminated_node_list():
    cpu = fixture_cpu(OPTERON)
    raw = (Path(host_fixture(OPTERON)) / "fs/sys/devices/system/node/online").read_bytes()
    assert raw == b"0-7\n\x00"  # as published: the parser must not choke on it
    assert (cpu.logical, cpu.physical_cores, cpu.smt, cpu.sockets) == (64, 32, True, 4)
    assert cpu.numa_nodes == 8
    assert [lists(n.cpus) for n in cpu.numa] == [f"{8 * i}-{8 * i + 7}" for i in range(8)]
    # hwloc: 16 GiB per node except P#5 with 8192 MiB
    assert [round(n.memory_bytes / GIB) for n in cpu.numa] == [16, 16, 16, 16, 16, 8, 16, 16]
    assert cpu.numa[5].memory_bytes == 8 * GIB
    assert [(lists(g.cpus), g.size_bytes) for g in cpu.l3_groups][:2] == [
        ("0-7", 6 * 1024**2), ("8-15", 6 * 1024**2)]
    assert (cpu.isa["avx2"], cpu.isa["fma"], cpu.isa["avx"]) == (False, False, True)  # FMA4 only
    assert cpu.family == 21


def test_kvm_guest_two_sockets_of_one_core():
    cpu = fixture_cpu(KVM)
    assert (cpu.logical, cpu.physical_cores, cpu.sockets, cpu.smt) == (2, 2, 2, False)
    assert (cpu.p_cores, cpu.l3_groups, cpu.numa_nodes) == (None, [], 1)
    assert cpu.numa[0].memory_bytes == 2052540 * 1024
    assert cpu.frequency_policies == [] and cpu.isa["avx2"] is True


# -- kernel formats and messy trees -----------------------------------------------------------
def test_nul_bytes_after_topology_lists(tmp_path):
    """Kunpeng 920 (corpus sysfs/017) prints every topology list as "N\\n\\0"."""
    files: dict[str, str | bytes] = {f"{CPU}/online": b"0-3\n\x00"}
    for n in range(4):
        files[f"{CPU}/cpu{n}/topology/core_cpus_list"] = f"{n}\n\x00".encode()
        files[f"{CPU}/cpu{n}/topology/package_cpus_list"] = b"0-3\n\x00"
        files[f"{CPU}/cpu{n}/topology/physical_package_id"] = b"36\n"
    files["/sys/devices/system/node/online"] = b"0\n\x00"
    files["/sys/devices/system/node/node0/cpulist"] = b"0-3\n\x00"
    cpu = cpu_of(write_tree(tmp_path, files))
    assert (cpu.logical, cpu.physical_cores, cpu.sockets, cpu.smt, cpu.numa_nodes) == (
        4, 4, 1, False, 1)


def test_nul_or_garbage_in_cpufreq_and_online_lists_loses_only_that_value(tmp_path):
    """A NUL after a cpufreq policy's affected_cpus, or an online list that is not a CPU
    list, once made the whole cpu section a FactsError (every CPU check an error)."""
    files: dict[str, str | bytes] = {f"{CPU}/online": b"0-3,garbage\n", f"{CPU}/present": b"0-3\n"}
    for n in range(4):
        files[f"{CPU}/cpu{n}/topology/core_cpus_list"] = f"{n}\n".encode()
    for policy, cpus in (("policy0", b"0 1\n\x00"), ("policy2", b"junk\n")):
        files[f"{CPU}/cpufreq/{policy}/affected_cpus"] = cpus
        files[f"{CPU}/cpufreq/{policy}/scaling_governor"] = b"powersave\n"
    cpu = cpu_of(write_tree(tmp_path, files))
    assert cpu.online_cpus == [0, 1, 2, 3]
    assert cpu.basis["logical"].startswith(f"{CPU}/present")
    assert [(p.name, p.cpus) for p in cpu.frequency_policies] == [("policy0", [0, 1]),
                                                                  ("policy2", [2])]


def test_core_ids_repeat_across_clusters_sibling_lists_count(tmp_path):
    """Like the SG2042 and Magny-Cours dumps: core_id 0-1 in each of two clusters."""
    files = {f"{CPU}/online": "0-3\n"}
    for n in range(4):
        files[f"{CPU}/cpu{n}/topology/core_id"] = f"{n % 2}\n"
        files[f"{CPU}/cpu{n}/topology/thread_siblings_list"] = f"{n}\n"
        files[f"{CPU}/cpu{n}/topology/physical_package_id"] = "0\n"
    cpu = cpu_of(write_tree(tmp_path, files))
    assert cpu.physical_cores == 4
    assert cpu.basis["physical_cores"].startswith("distinct topology/thread_siblings_list")


def test_arm_clusters_numbered_as_packages_are_one_socket(tmp_path):
    """Old arm64 kernels give each cluster its own package id; the shared L3 joins them."""
    files = {f"{CPU}/online": "0-3\n"}
    for n in range(4):
        files[f"{CPU}/cpu{n}/topology/core_cpus_list"] = f"{n}\n"
        files[f"{CPU}/cpu{n}/topology/physical_package_id"] = f"{n // 2}\n"
        files[f"{CPU}/cpu{n}/topology/package_cpus_list"] = "0-1\n" if n < 2 else "2-3\n"
        files[f"{CPU}/cpu{n}/cache/index3/level"] = "3\n"
        files[f"{CPU}/cpu{n}/cache/index3/shared_cpu_list"] = "0-3\n"
    assert cpu_of(write_tree(tmp_path, files)).sockets == 1


def test_capacity_clusters_without_part_names(tmp_path):
    """Pixel 6 (corpus sysfs/004): 2 x 1024, 2 x 820, 4 x 280 and no /proc/cpuinfo."""
    files = {f"{CPU}/online": "0-7\n"}
    for n, capacity in enumerate([1024, 1024, 820, 820, 280, 280, 280, 280]):
        files[f"{CPU}/cpu{n}/topology/core_cpus_list"] = f"{n}\n"
        files[f"{CPU}/cpu{n}/cpu_capacity"] = f"{capacity}\n"
    cpu = cpu_of(write_tree(tmp_path, files))
    assert [(k.name, lists(k.cpus), k.fast) for k in cpu.core_classes] == [
        ("capacity 1024", "0-1", True), ("capacity 820", "2-3", True),
        ("capacity 280", "4-7", False)]
    assert (lists(cpu.p_cpus), cpu.p_cores, cpu.e_cores) == ("0-3", 4, 4)


def test_amd_zen5_and_zen5c_by_clock_and_l3(tmp_path):
    """A Strix Point-like part: 4 Zen 5 cores (5.1 GHz, 16 MiB L3) and 8 Zen 5c (3.3 GHz, 8 MiB)."""
    files = {f"{CPU}/online": "0-23\n", "/proc/cpuinfo": "".join(
        f"processor\t: {n}\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nflags\t\t: avx2\n\n"
        for n in range(24))}
    for n in range(24):
        core = n % 12
        big = core < 4
        base = f"{CPU}/cpu{n}"
        files[f"{base}/topology/core_cpus_list"] = f"{core},{core + 12}\n"
        files[f"{base}/cache/index3/level"] = "3\n"
        files[f"{base}/cache/index3/size"] = "16384K\n" if big else "8192K\n"
        files[f"{base}/cache/index3/shared_cpu_list"] = "0-3,12-15\n" if big else "4-11,16-23\n"
        files[f"{CPU}/cpufreq/policy{n}/affected_cpus"] = f"{n}\n"
        files[f"{CPU}/cpufreq/policy{n}/cpuinfo_max_freq"] = "5100000\n" if big else "3300000\n"
    cpu = cpu_of(write_tree(tmp_path, files))
    assert [(k.name, lists(k.cpus), k.cores) for k in cpu.core_classes] == [
        ("Zen", "0-3,12-15", 4), ("Zen c", "4-11,16-23", 8)]
    assert (cpu.p_cores, cpu.e_cores) == (4, 8)
    assert [g.vcache for g in cpu.l3_groups] == [False, False]  # 16 vs 8 MiB is no V-cache
    for n in range(24):  # without clocks the two types look alike: still one class, no V-cache
        (tmp_path / f"fs{CPU}/cpufreq/policy{n}/cpuinfo_max_freq").unlink()
    cpu = cpu_of(tmp_path)
    assert (cpu.p_cpus, [g.vcache for g in cpu.l3_groups]) == (None, [False, False])


def test_favoured_cores_are_not_a_second_class(tmp_path):
    """Turbo Boost Max 3.0: two cores clock higher, with the same SMT and caches."""
    files = {f"{CPU}/online": "0-7\n", "/proc/cpuinfo": "".join(
        f"processor\t: {n}\nvendor_id\t: GenuineIntel\nflags\t\t: avx2\n\n" for n in range(8))}
    for n in range(8):
        files[f"{CPU}/cpu{n}/topology/core_cpus_list"] = f"{n % 4},{n % 4 + 4}\n"
        files[f"{CPU}/cpufreq/policy{n}/affected_cpus"] = f"{n}\n"
        files[f"{CPU}/cpufreq/policy{n}/cpuinfo_max_freq"] = (
            "5300000\n" if n % 4 < 2 else "4900000\n")
    cpu = cpu_of(write_tree(tmp_path, files))
    assert (cpu.p_cpus, [k.name for k in cpu.core_classes]) == (None, ["all cores"])


def test_offline_cpus_as_on_the_s390_lpar(tmp_path):
    """Corpus sysfs/025: present 0-19, online 1-5,8-19 (no offline file in the dump)."""
    files = {f"{CPU}/online": "1-5,8-19\n", f"{CPU}/present": "0-19\n"}
    cpu = cpu_of(write_tree(tmp_path, files))
    assert (lists(cpu.offline_cpus), cpu.logical) == ("0,6-7", 17)
    files[f"{CPU}/offline"] = "0,6-7,20-63\n"
    assert lists(cpu_of(write_tree(tmp_path, files)).offline_cpus) == "0,6-7,20-63"


def test_isolated_and_nohz_full_from_sysfs_and_cmdline(tmp_path):
    files = {f"{CPU}/online": "0-7\n", f"{CPU}/isolated": "6\n",
             "/proc/cmdline": "ro quiet isolcpus=domain,managed_irq,6-7 nohz_full=5-7\n"}
    cpu = cpu_of(write_tree(tmp_path, files))
    assert (cpu.isolated_cpus, cpu.nohz_full_cpus) == ([6, 7], [5, 6, 7])


def test_boost_tuned_and_platform_profile(tmp_path):
    root = write_tree(tmp_path, {
        f"{CPU}/online": "0-1\n", f"{CPU}/cpufreq/boost": "0\n",
        f"{CPU}/amd_pstate/status": "active\n", "/etc/tuned/active_profile": "powersave\n",
        "/sys/firmware/acpi/platform_profile": "low-power\n"})
    (root / "snapshot.json").write_text(json.dumps({"processes": [
        {"pid": 900, "name": "tuned", "cmdline": ["/usr/bin/python3", "-Es", "/usr/sbin/tuned"]},
        {"pid": 901, "name": "python3", "cmdline": ["/usr/bin/python3", "/usr/bin/auto-cpufreq"]},
    ]}))
    cpu = cpu_of(root)
    assert (cpu.boost, cpu.no_turbo, cpu.pstate_status) == (False, None, "active")
    assert (cpu.tuned_profile, cpu.platform_profile, cpu.power_profile) == (
        "powersave", "low-power", None)
    assert cpu.power_managers == ["tuned", "auto-cpufreq"]


def test_cpuinfo_parsing_armv7_shared_block_and_s390(tmp_path):
    armv7 = ("Processor\t: ARMv7 Processor rev 4 (v7l)\nprocessor\t: 0\nBogoMIPS\t: 1694.10\n\n"
             "processor\t: 1\nBogoMIPS\t: 1694.10\n\nFeatures\t: swp half thumb neon vfpv4\n"
             "CPU implementer\t: 0x41\nCPU architecture: 7\nCPU part\t: 0xc0f\n\nHardware\t: X\n")
    cpu = cpu_of(write_tree(tmp_path / "a", {"/proc/cpuinfo": armv7}))
    assert (cpu.arch, cpu.vendor, cpu.model_name, cpu.logical) == (
        "arm", "0x41", "ARMv7 Processor rev 4 (v7l)", 2)
    assert cpu.isa["neon"] is True and cpu.isa["dotprod"] is False
    assert [b["processor"] for b in parse_cpuinfo(armv7)] == ["0", "1"]
    s390 = ("vendor_id       : IBM/S390\n# processors    : 2\nfeatures\t: esan3 zarch\n"
            "processor 0: version = 00,  identification = 279F25,  machine = 2817\n")
    cpu = cpu_of(write_tree(tmp_path / "b", {"/proc/cpuinfo": s390, f"{CPU}/online": "0-1\n"}))
    assert (cpu.arch, cpu.logical, cpu.isa["avx2"]) == ("s390", 2, None)


@pytest.mark.parametrize("text, cpus", [
    ("00000000,003f0000,0000003f", [0, 1, 2, 3, 4, 5, 48, 49, 50, 51, 52, 53]),
    ("fc000000,0000fc00,00000000\n", [42, 43, 44, 45, 46, 47, 90, 91, 92, 93, 94, 95]),
    ("0\n\x00", []),
])
def test_parse_cpu_mask(text, cpus):
    assert parse_cpu_mask(text) == cpus


def test_cpu_mask_round_trip():
    assert cpu_mask(list(range(12))) == "0xfff"
    assert cpu_mask([0, 2, 4, 6, 8, 10]) == "0x555"
    assert parse_cpu_mask(cpu_mask([5, 70, 127])[2:]) == [5, 70, 127]


def test_cpuinfo_of_96_cpus():
    """The EPYC's real /proc/cpuinfo (133 kB): one block per CPU. How fast that parses is
    timed by bench/bench_parsers.py, not here."""
    text = (Path(host_fixture(EPYC)) / "fs/proc/cpuinfo").read_text()
    blocks = parse_cpuinfo(text)
    assert [block["processor"] for block in blocks] == [str(cpu) for cpu in range(96)]

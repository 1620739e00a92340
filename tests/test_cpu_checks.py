"""cpu.topology, cpu.numa, cpu.isa and the extended cpu.governor on the cpu-* fixtures (real
machines, and the constructed i5-12600K of the guide), with variations written over copies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURES, copy_fixture, host_fixture, run_cli, snapshot_facts
from conftest import snapshot_findings as findings
from conftest import write_fs as write
from fixture_hosts import ARL_H, EPYC, GB10, GUIDE, N100, RAPTOR, RYZEN
from fixture_hosts import CPU_KVM as KVM
from fixture_hosts import CPU_OPTERON as OPTERON
from q3cn_doctor.checking.findings import ERROR, INFO, PASS, SKIP, WARN
from q3cn_doctor.plan.cpu import plan_for

CPU = "/sys/devices/system/cpu"
GUIDE_PID = 4242





def set_processes(root: Path, *processes: dict) -> None:
    meta_path = root / "snapshot.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta["processes"] = list(processes)
    meta_path.write_text(json.dumps(meta))


def server(cmdline: list[str], affinity: list[int], pid: int = GUIDE_PID) -> dict:
    return {"pid": pid, "name": "llama-server", "cmdline": ["llama-server", *cmdline],
            "affinity": affinity, "threads": 20, "uid": 1000}


PPD = {"pid": 1012, "name": "power-profiles-", "cmdline": ["/usr/libexec/power-profiles-daemon"]}


# -- cpu.topology ---------------------------------------------------------------------------
def test_topology_guide_machine_info_with_the_plan():
    found = findings(GUIDE, "cpu.topology")
    assert sorted(found) == ["cpu.topology", f"cpu.topology:pid{GUIDE_PID}"]
    main = found["cpu.topology"]
    assert main.status == INFO
    assert main.title == "Hybrid CPU: 6 P-cores fast, 4 E-cores slow"
    assert main.observed.startswith(
        "P-core: CPUs 0-11 (6 cores x 2 threads, up to 4.9 GHz); "
        "E-core: CPUs 12-15 (4 cores, up to 3.6 GHz); told apart by /sys/devices/cpu_core/cpus")
    assert main.recommended == (
        "Launch as `taskset -c 0-11 llama-server --threads 6 --threads-batch 12` (or pin each "
        "thread with llama.cpp's own flags: --cpu-mask 0x555 --cpu-strict 1 "
        "--cpu-range-batch 0-11).")
    assert {"/sys/devices/cpu_core/cpus", "/sys/devices/cpu_atom/cpus"} <= set(main.evidence)


def test_topology_warns_on_a_server_whose_affinity_includes_the_e_cores():
    """The fixture's llama-server runs the guide's flags but without taskset: affinity 0-15."""
    warn = findings(GUIDE, "cpu.topology")[f"cpu.topology:pid{GUIDE_PID}"]
    assert warn.status == WARN
    assert warn.title == f"llama-server (pid {GUIDE_PID}) may run threads on the slow cores"
    assert warn.observed == (
        f"llama-server pid {GUIDE_PID}: affinity 0-15, 10 threads (--threads), 27 OS threads "
        "in all: its affinity includes the slow cores (CPUs 12-15)")
    assert warn.fixes == ["cpu.affinity"]
    assert f"taskset -a -p -c 0-11 {GUIDE_PID}" in warn.recommended


def test_topology_server_pinned_like_the_guide_is_fine(tmp_path):
    root = copy_fixture(GUIDE, tmp_path)
    set_processes(root, PPD, server(["--threads", "10", "--threads-batch", "12"], list(range(12))))
    assert list(findings(root, "cpu.topology")) == ["cpu.topology"]


def test_topology_server_with_more_threads_than_p_cpus(tmp_path):
    root = copy_fixture(GUIDE, tmp_path)
    set_processes(root, server(["-t", "16"], list(range(12))))
    warn = findings(root, "cpu.topology")[f"cpu.topology:pid{GUIDE_PID}"]
    assert warn.title == f"llama-server (pid {GUIDE_PID}) runs more threads than it has CPUs"
    assert warn.observed.endswith(
        "16 threads (--threads) are more than its 12 fast CPUs, so threads queue for CPUs")
    assert warn.fixes == ["cpu.affinity"]


def test_topology_server_default_threads_with_all_cpus(tmp_path):
    """No --threads: llama.cpp picks one per P-core, but the affinity still allows E-cores."""
    root = copy_fixture(GUIDE, tmp_path)
    set_processes(root, server(["-m", "model.gguf"], list(range(16))))
    warn = findings(root, "cpu.topology")[f"cpu.topology:pid{GUIDE_PID}"]
    assert "6 threads (llama.cpp's default without --threads)" in warn.observed
    assert warn.observed.endswith("its affinity includes the slow cores (CPUs 12-15)")


def test_topology_server_pinned_by_its_own_cpu_mask(tmp_path):
    root = copy_fixture(GUIDE, tmp_path)
    set_processes(root, server(["--threads", "6", "--cpu-mask", "0x555", "--cpu-strict", "1"],
                               list(range(16))))
    assert list(findings(root, "cpu.topology")) == ["cpu.topology"]
    set_processes(root, server(["--threads", "6", "-Cr", "8-15"], list(range(16))))
    warn = findings(root, "cpu.topology")[f"cpu.topology:pid{GUIDE_PID}"]
    assert warn.observed.endswith(
        "its --cpu-mask/--cpu-range includes the slow cores (CPUs 12-15); 6 threads (--threads) "
        "are more than its 4 fast CPUs, so some run on the slow cores")


def test_topology_uniform_cpu_server_oversubscribed(tmp_path):
    root = copy_fixture(N100, tmp_path)
    set_processes(root, server(["--threads", "8"], [0, 1, 2, 3], pid=31))
    found = findings(root, "cpu.topology")
    assert found["cpu.topology"].status == PASS
    assert found["cpu.topology:pid31"].observed.endswith(
        "8 threads (--threads) are more than its 4 CPUs, so threads queue for CPUs")


def test_topology_raptor_lake_and_gb10_hybrids():
    raptor = findings(RAPTOR, "cpu.topology")["cpu.topology"]
    assert (raptor.status, raptor.title) == (INFO, "Hybrid CPU: 6 P-cores fast, 8 E-cores slow")
    assert "told apart by cpuinfo_max_freq gap" in raptor.observed
    gb10 = findings(GB10, "cpu.topology")["cpu.topology"]
    assert gb10.title == "Hybrid CPU: 10 Cortex-X925 cores fast, 10 Cortex-A725 cores slow"
    assert "`taskset -c 5-9,15-19 llama-server --threads 10 --threads-batch 10`" in (
        gb10.recommended)


def test_topology_arrow_lake_low_power_e_cores_are_a_class_of_their_own():
    topology = findings(ARL_H, "cpu.topology")["cpu.topology"]
    assert topology.title == "Hybrid CPU: 4 P-cores fast, 8 E-cores + 2 LP E-cores slow"
    assert "LP E-core: CPUs 12-13 (2 cores, up to 2.5 GHz)" in topology.observed
    assert "cpu_atom/cpus and /sys/devices/cpu_lowpower/cpus (the kernel's hybrid PMU lists)" \
        in topology.observed
    assert "`taskset -c 0-3 llama-server --threads 4 --threads-batch 4`" in topology.recommended


def test_topology_two_ccds(tmp_path):
    found = findings(RYZEN, "cpu.topology")["cpu.topology"]
    assert (found.status, found.title) == (INFO, "2 separate L3 caches")  # no vendor in this dump
    assert found.observed == ("all cores: CPUs 0-31 (16 cores x 2 threads). 2 L3 groups: "
                              "CPUs 0-7,16-23 (32 MiB); CPUs 8-15,24-31 (32 MiB)")
    root = copy_fixture(RYZEN, tmp_path)
    write(root, "/proc/cpuinfo", "".join(
        f"processor\t: {n}\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nflags\t\t: avx2\n\n"
        for n in range(32)))
    for n in list(range(8)) + list(range(16, 24)):
        write(root, f"{CPU}/cpu{n}/cache/index3/size", "98304K\n")
    x3d = findings(root, "cpu.topology")["cpu.topology"]
    assert x3d.title == ("2 CCDs, each with its own L3 cache, one with 3D V-cache "
                         "(CPUs 0-7,16-23)")
    assert "CPUs 0-7,16-23 (96 MiB, 3D V-cache)" in x3d.observed


def test_topology_uniform_pass_and_vm_note():
    n100 = findings(N100, "cpu.topology")["cpu.topology"]
    assert (n100.status, n100.title, n100.observed) == (
        PASS, "4 cores of one class", "all cores: CPUs 0-3 (4 cores)")
    kvm = findings(KVM, "cpu.topology")["cpu.topology"]
    assert kvm.title == "2 cores of one class"
    assert kvm.observed.endswith("2 sockets. Virtual CPUs: the host's core types and caches "
                                 "are hidden")


def test_topology_counts_one_core_in_the_singular():
    """The Hyper-V guest: one core with two threads, never "1 cores"."""
    hyperv = findings("008-hyperv-gen2-guest-rhcos-2vcpu", "cpu.topology")["cpu.topology"]
    assert hyperv.title == "1 core of one class, 2 threads"
    assert hyperv.observed.startswith("all cores: CPUs 0-1 (1 core x 2 threads).")


def test_topology_skips_without_cpus(tmp_path):
    (tmp_path / "fs").mkdir()
    found = findings(tmp_path, "cpu.topology")["cpu.topology"]
    assert (found.status, found.title) == (SKIP, "CPU topology unknown")


# -- cpu.numa -------------------------------------------------------------------------------
def test_numa_epyc_eight_nodes_without_a_policy():
    found = findings(EPYC, "cpu.numa")["cpu.numa"]
    assert (found.status, found.title) == (
        WARN, "8 NUMA nodes and llama-server has no NUMA policy")
    assert found.observed.startswith("8 NUMA nodes: node0: CPUs 0-5,48-53; node1: CPUs 6-11")
    assert found.recommended.startswith(
        "Launch with --numa distribute, as `q3cn-doctor launch` does: `taskset -c 0-95 "
        "llama-server --threads 48 --threads-batch 96 --numa distribute`")
    assert "numactl --cpunodebind=0 --membind=0" in found.recommended
    assert found.fixes == []


def test_numa_policy_in_the_configured_server_arguments_passes(tmp_path):
    """config ``args = ["--numa", "distribute"]``: the policy is planned, no warning; with
    balancing on, the warning is about balancing only."""
    found = findings(EPYC, "cpu.numa", server_args=["--numa", "distribute"])["cpu.numa"]
    assert (found.status, found.title) == (
        PASS, "llama-server's arguments set a NUMA policy (--numa distribute)")
    assert found.observed.endswith("; your llama-server arguments: --numa distribute")
    root = copy_fixture(OPTERON, tmp_path)
    write(root, "/proc/sys/kernel/numa_balancing", "1\n")
    found = findings(root, "cpu.numa", server_args=["--numa=isolate"])["cpu.numa"]
    assert (found.status, found.fixes) == (WARN, ["sysctl.numa_balancing"])
    assert found.title == "llama-server has a NUMA policy, but automatic NUMA balancing is on"


def test_numa_balancing_on_adds_the_sysctl_fix(tmp_path):
    root = copy_fixture(OPTERON, tmp_path)
    write(root, "/proc/sys/kernel/numa_balancing", "1\n")
    found = findings(root, "cpu.numa")["cpu.numa"]
    assert found.status == WARN
    assert found.observed.startswith("8 NUMA nodes: node0: CPUs 0-7, 16.0 GiB;")
    assert found.observed.endswith("; kernel.numa_balancing = 1")
    assert "kernel.numa_balancing=0" in found.recommended
    assert found.fixes == ["sysctl.numa_balancing"]


def test_numa_server_with_a_policy_passes(tmp_path):
    root = copy_fixture(OPTERON, tmp_path)
    set_processes(root, server(["--numa", "distribute"], list(range(64)), pid=5))
    found = findings(root, "cpu.numa")["cpu.numa"]
    assert (found.status, found.title) == (PASS, "llama-server runs with a NUMA policy")
    assert found.observed.endswith("llama-server pid 5: --numa distribute")
    set_processes(root, server([], list(range(8, 16)), pid=6))
    assert findings(root, "cpu.numa")["cpu.numa"].observed.endswith(
        "llama-server pid 6: affinity within node1")
    set_processes(root, server([], list(range(64)), pid=7))
    spans = findings(root, "cpu.numa")["cpu.numa"]
    assert spans.status == WARN
    assert "llama-server pid 7: no --numa and spans nodes" in spans.observed


def in_cgroup_v2(root: Path, name: str, text: str) -> Path:
    """The machine inside a cgroup v2 container (automaxprocs's real files) whose cgroup
    file ``name`` holds ``text``."""
    amp = FIXTURES / "cgroup" / "automaxprocs"
    write(root, "/proc/self/cgroup", (amp / "proc/v2/cgroup-root").read_text())
    write(root, "/proc/self/mountinfo", (amp / "proc/v2/mountinfo-v2").read_text())
    write(root, "/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n")
    write(root, f"/sys/fs/cgroup/{name}", text)
    return root


def test_numa_cpuset_on_one_node_needs_no_policy(tmp_path):
    """A cgroup cpuset that holds the process to node1's CPUs keeps every read local (hwloc's
    nvidiagpunumanodes POWER9 dump, held to node0 by cpuset /jjh, was told to distribute)."""
    root = in_cgroup_v2(copy_fixture(OPTERON, tmp_path), "cpuset.cpus.effective", "8-15\n")
    found = findings(root, "cpu.numa")["cpu.numa"]
    assert (found.status, found.title) == (
        PASS, "The CPUs llama-server may use are all on node1: reads stay local")
    assert "the plan runs llama-server on CPUs 8-15" in found.observed
    assert "The CPUs the plan may use are all on node1, of 8 NUMA nodes: reads stay local " \
           "with no NUMA policy." in plan_for(snapshot_facts(root)).rationale
    write(root, "/sys/fs/cgroup/cpuset.cpus.effective", "0-15\n")  # two nodes: a policy
    assert findings(root, "cpu.numa")["cpu.numa"].status == WARN


def test_numa_quota_that_keeps_the_threads_on_one_node_plans_no_policy(tmp_path):
    """A 4-CPU quota on the 8-node EPYC keeps four cores of node0: no --numa distribute
    over nodes the threads never run on, and the check says the same as the plan."""
    root = in_cgroup_v2(copy_fixture(EPYC, tmp_path), "cpu.max", "400000 100000\n")
    plan = plan_for(snapshot_facts(root))
    assert (plan.threads, plan.numa, plan.cpus) == (4, None, [0, 1, 2, 3, 48, 49, 50, 51])
    found = findings(root, "cpu.numa")["cpu.numa"]
    assert (found.status, found.title) == (
        PASS, "The CPUs llama-server may use are all on node0: reads stay local")


def test_numa_single_node_and_firmware_duplicates(tmp_path):
    single = findings(GB10, "cpu.numa")["cpu.numa"]
    assert (single.status, single.title, single.observed) == (
        PASS, "One NUMA node: all memory is local", "node0: CPUs 0-19, 119.7 GiB")
    # corpus sysfs/016 (Xeon E5472): every node lists CPUs 0-7
    files = {f"{CPU}/online": "0-7\n", "/sys/devices/system/node/online": "0-1\n\x00",
             "/sys/devices/system/node/node0/cpulist": "0-7\n",
             "/sys/devices/system/node/node1/cpulist": "0-7\n"}
    root = tmp_path / "e5472"
    for path, text in files.items():
        write(root, path, text)
    dup = findings(root, "cpu.numa")["cpu.numa"]
    assert (dup.status, dup.title) == (PASS, "2 NUMA nodes that list the same CPUs: one "
                                             "memory domain")
    write(root, "/sys/devices/system/node/node1/cpulist", "\n")
    memory_only = findings(root, "cpu.numa")["cpu.numa"]
    assert memory_only.title == "One NUMA node with CPUs; 1 hold memory only"


# -- cpu.isa --------------------------------------------------------------------------------
def test_isa_opteron_without_avx2_warns():
    found = findings(OPTERON, "cpu.isa")["cpu.isa"]
    assert (found.status, found.title) == (WARN, "The CPU lacks AVX2")
    assert found.observed == ("has AVX; lacks AVX2, FMA, F16C, AVX-VNNI, AVX-512F, "
                              "AVX512-VNNI, AVX512-BF16, AMX")
    assert "GPU" in found.recommended and "-cpu host" not in found.recommended


def test_isa_vm_without_avx2_points_at_cpu_passthrough(tmp_path):
    root = copy_fixture(KVM, tmp_path)
    text = (root / "fs/proc/cpuinfo").read_text().replace(" avx2", "")
    (root / "fs/proc/cpuinfo").write_text(text)
    found = findings(root, "cpu.isa")["cpu.isa"]
    assert found.status == WARN
    assert found.recommended.startswith("This is a VM: pass the host CPU model through")


def test_isa_passes_and_skips():
    guide = findings(GUIDE, "cpu.isa")["cpu.isa"]
    assert (guide.status, guide.title, guide.observed) == (
        PASS, "AVX2 and FMA present",
        "has AVX, AVX2, FMA, F16C, AVX-VNNI; lacks AVX-512F, AVX512-VNNI, AVX512-BF16, AMX")
    gb10 = findings(GB10, "cpu.isa")["cpu.isa"]
    assert (gb10.status, gb10.observed) == (
        PASS, "has NEON, dot product, I8MM, FP16, SVE, SVE2")
    ryzen = findings(RYZEN, "cpu.isa")["cpu.isa"]
    assert (ryzen.status, ryzen.observed) == (
        SKIP, "this check knows x86 and ARM; this CPU is unknown")


def test_isa_armv8_0_without_dot_product(tmp_path):
    write(tmp_path, "/proc/cpuinfo", "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
          "CPU implementer\t: 0x41\nCPU part\t: 0xd08\n")
    found = findings(tmp_path, "cpu.isa")["cpu.isa"]
    assert (found.status, found.title) == (INFO, "The CPU has no dot-product instructions "
                                                 "(Armv8.0)")


def _with_server(root: Path, variants: list[str]) -> None:
    write(root, "/opt/llama.cpp/build/bin/llama-server", "")
    for variant in variants:
        write(root, f"/opt/llama.cpp/build/bin/libggml-cpu-{variant}.so", "")


def test_isa_build_variants_that_stop_short(tmp_path):
    root = copy_fixture(GUIDE, tmp_path)  # PATH in its snapshot.json has /opt/llama.cpp/build/bin
    _with_server(root, ["x64", "sse42", "sandybridge", "haswell", "skylakex"])
    build = findings(root, "cpu.isa")["cpu.isa:build"]
    assert (build.status, build.title) == (
        INFO, "llama-server's CPU backends leave AVX_VNNI unused")
    assert build.observed == (
        "/opt/llama.cpp/build/bin/llama-server: CPU backends haswell, sandybridge, skylakex, "
        "sse42, x64; on this CPU ggml loads libggml-cpu-haswell.so; this CPU could run "
        "libggml-cpu-alderlake.so")


def test_isa_build_with_the_best_variant_and_with_none_that_runs(tmp_path):
    root = copy_fixture(GUIDE, tmp_path)
    _with_server(root, ["haswell", "alderlake", "zen4"])
    best = findings(root, "cpu.isa")["cpu.isa:build"]
    assert (best.status, best.title) == (
        PASS, "llama-server loads its best CPU backend for this CPU (alderlake)")
    only = copy_fixture(GUIDE, tmp_path / "only")
    _with_server(only, ["zen4", "sapphirerapids"])
    none = findings(only, "cpu.isa")["cpu.isa:build"]
    assert (none.status, none.title) == (WARN, "None of llama-server's CPU backends runs on "
                                               "this CPU")


def test_isa_single_backend_build_says_nothing_more(tmp_path):
    root = copy_fixture(GUIDE, tmp_path)
    _with_server(root, [])
    write(root, "/opt/llama.cpp/build/bin/libggml-cpu.so", "")
    assert list(findings(root, "cpu.isa")) == ["cpu.isa"]


# -- cpu.governor: managers, boost, profiles ------------------------------------------------------
def test_governor_names_power_profiles_daemon_as_owner():
    found = findings(GUIDE, "cpu.governor")
    assert list(found) == ["cpu.governor"]
    main = found["cpu.governor"]
    assert main.status == WARN
    assert main.observed == ("powersave on CPUs 0-15 (intel_pstate, EPP balance_performance); "
                             "llama-server is planned on CPUs 0-11 (the CPU plan); "
                             "set by power-profiles-daemon (profile balanced)")
    assert "switch it with `powerprofilesctl set performance` rather than writing sysfs" in (
        main.recommended)
    assert (main.fixes, main.manual) == (["cpu.governor"], ["powerprofilesctl set performance"])
    assert "/var/lib/power-profiles-daemon/state.ini" in main.evidence


def test_governor_boost_off_and_power_saver(tmp_path):
    root = copy_fixture(GUIDE, tmp_path)
    write(root, f"{CPU}/intel_pstate/no_turbo", "1\n")
    write(root, "/var/lib/power-profiles-daemon/state.ini",
          "[State]\nCpuDriver=intel_pstate\nProfile=power-saver\n")
    found = findings(root, "cpu.governor")
    assert sorted(found) == ["cpu.governor", "cpu.governor:boost", "cpu.governor:profile"]
    boost = found["cpu.governor:boost"]
    assert (boost.status, boost.title, boost.fixes) == (WARN, "Turbo boost is off", ["cpu.boost"])
    assert boost.observed == (f"{CPU}/intel_pstate/no_turbo = 1; power-profiles-daemon "
                              "(profile power-saver) is running")
    assert boost.manual == [f"echo 0 > {CPU}/intel_pstate/no_turbo"]
    profile = found["cpu.governor:profile"]
    assert (profile.status, profile.fixes, profile.manual) == (
        WARN, ["cpu.governor"], ["powerprofilesctl set performance"])  # the fix switches it
    assert profile.title == ("Power profile in power-saving mode (power-profiles-daemon profile "
                             "power-saver)")


def test_governor_profile_of_a_stopped_daemon_is_ignored(tmp_path):
    root = copy_fixture(GUIDE, tmp_path)
    write(root, "/var/lib/power-profiles-daemon/state.ini", "[State]\nProfile=power-saver\n")
    set_processes(root)
    found = findings(root, "cpu.governor")
    assert list(found) == ["cpu.governor"]
    assert found["cpu.governor"].observed == (
        "powersave on CPUs 0-15 (intel_pstate, EPP balance_performance); "
        "llama-server is planned on CPUs 0-11 (the CPU plan)")
    assert found["cpu.governor"].manual == []


def test_governor_tuned_powersave_and_cpufreq_boost(tmp_path):
    root = copy_fixture(GB10, tmp_path)
    write(root, "/etc/tuned/active_profile", "powersave\n")
    write(root, f"{CPU}/cpufreq/boost", "0\n")
    set_processes(root, {"pid": 700, "name": "tuned",
                         "cmdline": ["/usr/bin/python3", "-Es", "/usr/sbin/tuned", "-l", "-P"]})
    found = findings(root, "cpu.governor")
    assert found["cpu.governor"].status == PASS
    assert found["cpu.governor"].observed.endswith("; set by tuned (profile powersave)")
    assert found["cpu.governor:boost"].manual == [f"echo 1 > {CPU}/cpufreq/boost"]
    assert found["cpu.governor:profile"].manual == ["tuned-adm profile throughput-performance"]


# -- the whole area -----------------------------------------------------------------------------
def test_every_cpu_fixture_runs_the_cpu_area_without_errors():
    for name in (GUIDE, RAPTOR, GB10, RYZEN, EPYC, OPTERON, N100, KVM):
        found = findings(name, "cpu")
        assert {f.check for f in found.values()} == {
            "cpu.governor", "cpu.topology", "cpu.numa", "cpu.isa", "cpu.quota",
            "cpu.power_daemon", "cpu.contention", "cpu.clocks", "cpu.thermal"}, name
        assert ERROR not in {f.status for f in found.values()}, name


@pytest.mark.live
def test_check_only_cpu_on_this_machine_is_sensible():
    result = run_cli("check", "--only", "cpu", "--json", env={"NO_COLOR": "1"})
    assert result.returncode in (0, 1), result.stderr
    document = json.loads(result.stdout)
    statuses = {f["id"]: f["status"] for f in document["findings"]}
    assert {"cpu.governor", "cpu.topology", "cpu.numa", "cpu.isa"} <= set(statuses)
    assert ERROR not in statuses.values()
    cpu = document["facts"]["cpu"]
    assert cpu["logical"] == len(cpu["online_cpus"]) >= 1
    assert cpu["physical_cores"] >= 1 and cpu["numa_nodes"] >= 1


def test_snapshot_report_validates_against_the_schema():
    from jsonschema import Draft202012Validator
    from test_schema import SCHEMA_PATH

    validator = Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    for name in (GUIDE, GB10, RYZEN, EPYC):
        result = run_cli("check", "--snapshot", host_fixture(name), "--only", "cpu", "--json")
        document = json.loads(result.stdout)
        validator.validate(document)
        assert document["facts"]["cpu"]["p_cores"] == {GUIDE: 6, GB10: 10}.get(name)

"""The thread and affinity plan (doctor/cpuplan.py), as data: a 16-CPU plan cannot be applied on
the 2-CPU build machine, so it is computed from each fixture's snapshot and compared.

The guide's machine (cpu-i5-12600k-guide-constructed, see its README.md) runs llama-server as
``taskset -c 0-11 ... --threads 10 --threads-batch 12``. The plan keeps the CPUs and the batch
threads, and picks one generation thread per P-core (6); its rationale says why.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import copy_fixture
from conftest import snapshot_facts as facts
from fixture_hosts import CPU_KVM as KVM
from fixture_hosts import CPU_OPTERON as OPTERON
from fixture_hosts import EPYC, GB10, GUIDE, N100, RAPTOR, RYZEN
from q3cn_doctor.facts.cpu import CpuFacts
from q3cn_doctor.host.snapshot import SnapshotHost
from q3cn_doctor.plan.cpu import llama_default_threads, plan, plan_for, running_servers
from q3cn_doctor.plan.placement import placement

GIB = 1024**3

# The thread and placement lines of `llama-server --help`, build 0c1e570 (2026-10; corpus
# llama-server/help-2026-10-commit-0c1e570.txt; descriptions cut at 100 columns), and of a build
# from before the placement flags.
HELP_2026 = """\
-t,    --threads N                      number of CPU threads to use during generation (default: -1)
-tb,   --threads-batch N                number of threads to use during batch and prompt processing
-C,    --cpu-mask M                     CPU affinity mask: arbitrarily long hex. Complements
-Cr,   --cpu-range lo-hi                range of CPUs for affinity. Complements --cpu-mask
--cpu-strict <0|1>                      use strict CPU placement (default: 0)
-Cb,   --cpu-mask-batch M               CPU affinity mask: arbitrarily long hex. Complements
-Crb,  --cpu-range-batch lo-hi          ranges of CPUs for affinity. Complements --cpu-mask-batch
--numa TYPE                             attempt optimizations that help on some NUMA systems
"""
HELP_OLD = """\
-t,    --threads N                      number of threads to use during generation (default: 8)
-tb,   --threads-batch N                number of threads to use during batch and prompt processing
--numa TYPE                             attempt optimizations that help on some NUMA systems
"""



def plan_of(name: str | Path, model_bytes: int | None = None):
    return plan(facts(name).cpu, model_bytes)



def test_guide_machine_keeps_the_guides_cpus_and_batch_threads():
    p = plan_of(GUIDE)
    assert (p.cpus, p.cpu_list, p.mask) == (list(range(12)), "0-11", "0xfff")
    assert p.taskset == "taskset -c 0-11" and p.prefix == "taskset -c 0-11"
    assert (p.threads, p.threads_batch) == (6, 12)
    assert (p.generation_cpus, p.generation_mask) == ([0, 2, 4, 6, 8, 10], "0x555")
    assert p.slow_cpus == [12, 13, 14, 15]
    assert (p.numa, p.numa_node, p.left_out) == (None, None, [])
    assert p.thread_args() == ["--threads", "6", "--threads-batch", "12"]
    assert p.affinity_args() == ["--cpu-mask", "0x555", "--cpu-strict", "1",
                                 "--cpu-range-batch", "0-11"]
    assert p.command() == "taskset -c 0-11 llama-server --threads 6 --threads-batch 12"


def test_guide_machine_rationale_says_why_threads_differ_from_the_guide():
    p = plan_of(GUIDE)
    text = " ".join(p.rationale)
    assert "keeps off the 4 slower ones (E-core: CPUs 12-15)" in text
    [threads] = [line for line in p.rationale if line.startswith("--threads 6:")]
    assert "differs from the guide's --threads 10" in threads
    assert "one per physical core" in threads and "llama-bench -t 6,12" in threads
    [batch] = [line for line in p.rationale if line.startswith("--threads-batch 12:")]
    assert "the guide's --threads-batch 12" in batch


def test_affinity_flags_follow_the_installed_build():
    p = plan_of(GUIDE)
    assert p.affinity_args(HELP_2026) == p.affinity_args()
    assert p.affinity_args(HELP_OLD) == []  # only taskset can pin this build
    names = ["-t", "--threads", "-C", "--cpu-mask", "--cpu-strict"]  # facts.server.flags form
    assert p.affinity_args(names) == ["--cpu-mask", "0x555", "--cpu-strict", "1"]
    assert p.command(strict=True, help_text=HELP_OLD) == p.command()
    assert p.command(server="/opt/llama/llama-server", strict=True) == (
        "taskset -c 0-11 /opt/llama/llama-server --threads 6 --threads-batch 12 "
        "--cpu-mask 0x555 --cpu-strict 1 --cpu-range-batch 0-11")


def test_raptor_lake_laptop_runs_on_its_p_cores():
    p = plan_of(RAPTOR)
    assert (p.cpu_list, p.threads, p.threads_batch, p.slow_cpus) == (
        "0-11", 6, 12, list(range(12, 20)))


def test_gb10_runs_on_the_x925_cores_one_thread_each():
    p = plan_of(GB10)
    assert (p.cpu_list, p.mask, p.threads, p.threads_batch) == ("5-9,15-19", "0xf83e0", 10, 10)
    assert p.affinity_args() == ["--cpu-mask", "0xf83e0", "--cpu-strict", "1"]
    assert any("2 L3 groups" in line for line in p.rationale)


def test_ryzen_two_ccds_uses_every_core_first_threads_for_generation():
    p = plan_of(RYZEN)
    assert (p.cpu_list, p.threads, p.threads_batch, p.slow_cpus) == ("0-31", 16, 32, [])
    assert p.generation_cpus == list(range(16))  # siblings are N and N+16
    assert p.affinity_args() == ["--cpu-range", "0-15", "--cpu-strict", "1",
                                 "--cpu-range-batch", "0-31"]
    [ccds] = [line for line in p.rationale if "separate L3 caches" in line]
    assert "CPUs 0-7,16-23; CPUs 8-15,24-31" in ccds and "taskset -c 0-7,16-23" in ccds


def test_uniform_small_cpus():
    n100 = plan_of(N100)
    assert (n100.cpu_list, n100.threads, n100.threads_batch, n100.affinity_args()) == (
        "0-3", 4, 4, ["--cpu-range", "0-3", "--cpu-strict", "1"])
    kvm = plan_of(KVM)
    assert (kvm.command(), kvm.rationale[0]) == (
        "taskset -c 0-1 llama-server --threads 2 --threads-batch 2",
        "All 2 cores are of one class, so the plan uses all of them.")


def test_epyc_distributes_over_eight_nodes_when_the_model_size_is_unknown():
    p = plan_of(EPYC)
    assert (p.numa, p.numa_node, p.threads, p.threads_batch) == ("distribute", None, 48, 96)
    assert p.thread_args()[-2:] == ["--numa", "distribute"]
    assert p.affinity_args() == []  # --numa distribute places the threads itself
    assert any(line.startswith("8 NUMA nodes and the model's size is unknown")
               for line in p.rationale)


def test_opteron_binds_to_one_node_where_the_model_fits():
    p = plan_of(OPTERON, model_bytes=10 * GIB)
    # nodes 1-4 and 6 hold 16 GiB and 8 CPUs each; node 0 a little less: the lowest full one wins
    assert (p.numa, p.numa_node, p.cpu_list, p.threads, p.threads_batch) == (
        "numactl", 1, "8-15", 4, 8)
    assert p.prefix == "numactl --cpunodebind=1 --membind=1"
    assert p.command() == ("numactl --cpunodebind=1 --membind=1 llama-server --threads 4 "
                           "--threads-batch 8 --numa numactl")
    assert p.left_out == [c for c in range(64) if not 8 <= c <= 15]


def test_opteron_distributes_a_model_larger_than_any_node():
    p = plan_of(OPTERON, model_bytes=52 * GIB)
    assert (p.numa, p.numa_node, p.cpu_list, p.threads) == ("distribute", None, "0-63", 32)
    assert any("larger than any node (16.0 GiB at most)" in line for line in p.rationale)


def test_isolated_cpus_are_left_out(tmp_path):
    root = copy_fixture(GUIDE, tmp_path)
    (root / "fs/proc/cmdline").write_text("ro quiet isolcpus=10-11\n")
    p = plan_of(root)
    assert (p.cpu_list, p.left_out, p.threads, p.threads_batch) == ("0-9", [10, 11], 5, 10)


def test_the_process_affinity_bounds_the_plan(tmp_path):
    """Started under `taskset -c 0-3` (or a legacy /dev/cpuset): llama-server inherits
    that affinity, so the plan stays inside it."""
    root = copy_fixture(GUIDE, tmp_path)
    (root / "fs/proc/self").mkdir(parents=True, exist_ok=True)
    (root / "fs/proc/self/status").write_text(
        "Name:\tq3cn-doctor\nCpus_allowed:\tf\nCpus_allowed_list:\t0-3\n")
    p = plan_for(facts(root))
    assert (p.cpu_list, p.threads, p.threads_batch) == ("0-3", 2, 4)
    assert p.rationale[0] == ("This process may run on CPUs 0-3 only (its cgroup cpuset and "
                              "CPU affinity): the plan stays inside them.")


def test_plan_without_known_cpus():
    cpu = CpuFacts(None, None, None, [], [])
    p = plan(cpu)
    assert (p.cpus, p.taskset, p.threads, p.affinity_args()) == ([], "", 1, [])
    assert p.command() == "llama-server --threads 1 --threads-batch 1"


def test_plan_for_reads_the_model_only_with_several_nodes():
    one = facts(GUIDE)
    plan_for(one)
    assert "model" not in one._values and "gpus" not in one._values
    many = facts(OPTERON)
    p = plan_for(many)
    assert "model" in many._values  # Qwen3-Coder-Next needs ~52 GiB: no node holds it
    assert p.numa == "distribute"
    # A node bound to holds the run's prompt cache and checkpoints too, not the weights alone.
    placed = placement(many)
    assert placed.serving_ram_bytes > 0
    held = (placed.ram_bytes + placed.serving_ram_bytes) / GIB
    assert any(f"the model's RAM ({held:.1f} GiB with its KV and prompt cache) is larger "
               "than any node" in line for line in p.rationale)


def test_to_json_is_plain_data():
    document = json.loads(json.dumps(plan_of(GUIDE).to_json()))
    assert document["cpu_list"] == "0-11" and document["generation_mask"] == "0x555"
    assert document["thread_args"] == ["--threads", "6", "--threads-batch", "12"]
    assert document["rationale"] == plan_of(GUIDE).rationale


# -- running servers ------------------------------------------------------------------------
def test_running_server_flags_from_the_command_line(tmp_path):
    root = copy_fixture(GUIDE, tmp_path)
    meta = json.loads((root / "snapshot.json").read_text())
    meta["processes"].append({"pid": 77, "name": "llama-server", "cmdline": [
        "llama-server", "-t", "6", "-tb=12", "-C", "0x555", "-Cr", "12-13", "--cpu-strict", "1",
        "--numa", "isolate"], "affinity": list(range(16)), "threads": 20})
    (root / "snapshot.json").write_text(json.dumps(meta))
    servers = {s.pid: s for s in running_servers(SnapshotHost(str(root)))}
    assert sorted(servers) == [77, 4242]
    guide = servers[4242]
    assert (guide.threads, guide.threads_batch, guide.cpu_flags, guide.strict, guide.numa) == (
        10, 12, None, False, None)
    other = servers[77]
    assert (other.threads, other.threads_batch, other.strict, other.numa) == (
        6, 12, True, "isolate")
    assert other.cpu_flags == [0, 2, 4, 6, 8, 10, 12, 13]


def test_llama_default_threads_mirrors_cpu_get_num_math():
    cpu = facts(GUIDE).cpu
    assert llama_default_threads(cpu, None) == 6  # one per P-core while it may pin anywhere
    assert llama_default_threads(cpu, list(range(12))) == 10  # under taskset: every core
    assert llama_default_threads(facts(GB10).cpu, None) == 20  # ARM: every core

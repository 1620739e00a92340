"""cpu.quota and the cgroup facts: the quota and memory limit of a container or unit, read
from the real cgroup files uber-go/automaxprocs tests on (tests/fixtures/cgroup/SOURCE.txt),
placed into the guide's machine; the CPU plan caps its threads at the quota."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import FIXTURES, copy_fixture, run_cli, snapshot_facts, snapshot_findings, write_fs
from fixture_hosts import GUIDE
from launch_fixtures import QWEN_PATH, guide_machine
from q3cn_doctor.facts.cgroup import (
    parse_cfs,
    parse_cgroup_file,
    parse_cpu_max,
    parse_memory_limit,
)
from q3cn_doctor.plan.cpu import plan_for

AMP = FIXTURES / "cgroup" / "automaxprocs"
GIB = 1024**3


def _text(path: str) -> str:
    return (AMP / path).read_text()


def v2_machine(tmp_path: Path, cpu_max: str | None = None, memory_max: str = "max") -> Path:
    """The guide's machine inside a cgroup v2 container (cgroup namespace: "0::/")."""
    root = guide_machine(tmp_path / "guide")
    write_fs(root, "/proc/self/cgroup", _text("proc/v2/cgroup-root"))
    write_fs(root, "/proc/self/mountinfo", _text("proc/v2/mountinfo-v2"))
    write_fs(root, "/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n")
    write_fs(root, "/sys/fs/cgroup/cpu.max", cpu_max or _text("cgroups/v2/set"))
    write_fs(root, "/sys/fs/cgroup/memory.max", memory_max + "\n")
    return root


def v1_machine(tmp_path: Path) -> Path:
    """The guide's machine in automaxprocs's cgroup v1 Docker container (cpu,cpuacct at
    /docker, memory at /docker/large), with its 600000/100000 quota."""
    root = guide_machine(tmp_path / "guide")
    write_fs(root, "/proc/self/cgroup", _text("proc/cgroups/cgroup"))
    write_fs(root, "/proc/self/mountinfo", _text("proc/cgroups/mountinfo"))
    base = "/sys/fs/cgroup/cpu,cpuacct"
    write_fs(root, f"{base}/cpu.cfs_quota_us", _text("cgroups/cpu/cpu.cfs_quota_us"))
    write_fs(root, f"{base}/cpu.cfs_period_us", _text("cgroups/cpu/cpu.cfs_period_us"))
    write_fs(root, "/sys/fs/cgroup/memory/large/memory.limit_in_bytes", f"{16 * GIB}\n")
    write_fs(root, "/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n")
    return root


def test_parsers_read_the_real_files():
    assert parse_cpu_max(_text("cgroups/v2/set")) == 2.5
    assert parse_cpu_max(_text("cgroups/v2/unset")) is None
    assert parse_cfs(_text("cgroups/cpu/cpu.cfs_quota_us"),
                     _text("cgroups/cpu/cpu.cfs_period_us")) == 6.0
    assert parse_cfs("-1", "100000") is None
    assert parse_cgroup_file(_text("proc/cgroups/cgroup")) == {
        "memory": "/docker/large", "cpu": "/docker", "cpuacct": "/docker", "cpuset": "/"}
    assert parse_cgroup_file(_text("proc/v2/cgroup-subdir")) == {"": "/Example"}
    assert parse_memory_limit("max") is None
    assert parse_memory_limit("9223372036854771712") is None  # v1's "no limit"
    assert parse_memory_limit("17179869184") == 16 * GIB
    assert parse_cpu_max("garbage here") is None and parse_cfs("x", "") is None


def test_v2_quota_caps_the_plan_and_the_check_says_so(tmp_path):
    root = v2_machine(tmp_path)
    facts = snapshot_facts(root)
    assert facts.cgroup.own.version == 2 and facts.cgroup.own.cpu_quota == 2.5
    plan = plan_for(facts)
    assert (plan.threads, plan.threads_batch, plan.uncapped_threads) == (2, 2, 6)
    assert plan.cpus == [0, 1, 2, 3]  # the first two P-cores and their SMT siblings
    assert any("ollama #17916" in line for line in plan.rationale)
    finding = snapshot_findings(root, "cpu.quota")["cpu.quota"]
    assert finding.status == "warn"
    assert "2.5 CPUs caps llama-server at 2 of 6 threads" in finding.title
    assert "/sys/fs/cgroup/cpu.max = 250000 100000" in finding.observed
    # priced by the speed model: 6 threads instead of 2 is worth tok/s
    assert finding.cost_tok_s is not None and finding.cost_tok_s > 0
    assert "The speed model expects ~" in finding.impact and "with 6 threads" in finding.impact


def test_v1_container_quota_and_memory_limit(tmp_path):
    root = v1_machine(tmp_path)
    own = snapshot_facts(root).cgroup.own
    assert (own.version, own.cpu_quota, own.memory_max_bytes) == (1, 6.0, 16 * GIB)
    assert own.quota_source.startswith("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us = 600000")
    findings = snapshot_findings(root, "cpu.quota")
    # 6 CPUs of quota cover the 6 P-cores: no cap
    assert findings["cpu.quota"].status == "pass"
    assert plan_for(snapshot_facts(root)).threads == 6
    # 16 GiB cannot hold Qwen3-Coder-Next's experts
    memory = findings["cpu.quota:memory"]
    assert memory.status == "fail" and "below the model's RAM part" in memory.title
    assert "The speed model cannot price this: now far below" in memory.impact  # disk-bound


def test_launch_does_not_lock_a_model_the_cgroup_limit_cannot_hold(tmp_path):
    """The guide's machine (64 GiB, memlock unlimited) in a container limited to 16 GiB, as
    automaxprocs's Docker test tree is: locked, the 47.7 GiB load would be killed by the
    out-of-memory killer at the limit, so launch maps the model instead."""
    root = v1_machine(tmp_path)
    done = run_cli("launch", "--json", "--snapshot", str(root), "--model", QWEN_PATH,
                   env={"XDG_CONFIG_HOME": "/nonexistent-q3cn-doctor-test-xdg"})
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert "mlock" not in plan["command"]
    assert any("exceed the cgroup's memory limit (16.0 GiB" in n for n in plan["notes"])
    # and the memlock limit, 8 MiB here, is moot: nothing would be locked
    meta = json.loads((root / "snapshot.json").read_text())
    meta["rlimits"]["MEMLOCK"] = [8 * 1024 * 1024, 8 * 1024 * 1024]
    (root / "snapshot.json").write_text(json.dumps(meta))
    memlock = snapshot_findings(root, "memory.memlock")["memory.memlock"]
    assert memlock.status == "info" and "its cgroup's memory limit cannot hold" in memlock.title
    # and swappiness judges the model as mapped, as launch will hold it
    write_fs(root, "/proc/sys/vm/swappiness", "60\n")
    write_fs(root, "/proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n"
                                  "/dev/nvme0n1p3 partition\t16777212\t0\t-2\n")
    swappiness = snapshot_findings(root, "memory.swappiness")["memory.swappiness"]
    assert "its cgroup's memory limit cannot hold its 38.5 GiB" in swappiness.observed


def test_no_quota_and_no_limit_pass(tmp_path):
    root = v2_machine(tmp_path, cpu_max=_text("cgroups/v2/unset"))
    findings = snapshot_findings(root, "cpu.quota")
    assert findings["cpu.quota"].status == "pass"
    assert findings["cpu.quota:memory"].status == "pass"
    assert plan_for(snapshot_facts(root)).uncapped_threads is None


def test_a_running_server_over_its_quota_fails(tmp_path):
    root = v2_machine(tmp_path, cpu_max=_text("cgroups/v2/unset"))
    meta = json.loads((root / "snapshot.json").read_text())
    meta["processes"] = [{"pid": 4242, "name": "llama-server",
                          "cmdline": ["/usr/local/bin/llama-server", "-m", "m.gguf", "-t", "8"],
                          "affinity": list(range(16)), "threads": 9, "uid": 1000}]
    (root / "snapshot.json").write_text(json.dumps(meta))
    write_fs(root, "/proc/4242/cgroup", "0::/system.slice/llama-server.service\n")
    write_fs(root, "/sys/fs/cgroup/system.slice/llama-server.service/cpu.max", "400000 100000\n")
    finding = snapshot_findings(root, "cpu.quota")["cpu.quota:pid4242"]
    assert finding.status == "warn"
    assert "8 threads under a 4-CPU quota" in finding.title
    assert "--threads 4" in finding.recommended
    # an ancestor's tighter quota wins
    write_fs(root, "/sys/fs/cgroup/system.slice/cpu.max", "200000 100000\n")
    finding = snapshot_findings(root, "cpu.quota")["cpu.quota:pid4242"]
    assert "under a 2-CPU quota" in finding.title


def test_no_cgroup_file_skips(tmp_path):
    root = copy_fixture(GUIDE, tmp_path)
    assert snapshot_findings(root, "cpu.quota")["cpu.quota"].status == "skip"


def test_the_launch_runs_the_capped_threads(tmp_path):
    from test_launch_plan import printed

    command = printed(v2_machine(tmp_path))
    assert "--threads 2 --threads-batch 2" in command
    assert "--cpu-range 0-2" not in command and "--cpu-strict 1" in command

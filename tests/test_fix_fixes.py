"""Each fix on the machines it is for (fixture trees copied into tmp_path) and on the
ones it must leave alone: zram-only swap, a kernel command line that sets the value
on purpose, another tuning daemon, a process that is not there."""

from __future__ import annotations

import errno
import importlib
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, HOSTS
from q3cn_doctor.checking.findings import FAIL
from q3cn_doctor.checking.runner import available_checks, run_checks
from q3cn_doctor.facts import Facts
from q3cn_doctor.fixing import plan as fixing_plan
from q3cn_doctor.fixing.engine import DONE, FAILED_OUTCOME, Engine
from q3cn_doctor.fixing.journal import Journal
from q3cn_doctor.fixing.plan import (
    CHANGE,
    REFUSED,
    Fix,
    FixOptions,
    build_plan,
    builtin_fixes,
    discover_fixes,
    fix_order,
)
from q3cn_doctor.host.base import RAN, CommandResult
from q3cn_doctor.host.live import RootHost
from q3cn_doctor.host.snapshot import SnapshotHost
from q3cn_doctor.options import Options
from test_fix_engine import (
    THP,
    add_process,
    apply_all,
    full_root,
    plan_for,
    revert,
    tree_state,
    write,
)
from test_memory_checks import one
from test_memory_facts import listing, mem_snapshot, spd


def fixture_root(tmp_path: Path, name: str) -> Path:
    """A real machine's captured files, copied so a fix can change them."""
    (source,) = [p for p in HOSTS.iterdir() if p.name.startswith(name)]
    root = tmp_path / source.name
    shutil.copytree(source / "fs", root, symlinks=True)
    (root / "var/lib").mkdir(parents=True, exist_ok=True)
    return root


def only_fix(root: Path, fix_id: str, **kwargs):
    host, plan = plan_for(root, only=(fix_id,), **kwargs)
    (fix,) = plan.fixes
    return host, plan, fix


def round_trip(root: Path, fix_id: str, **kwargs) -> list:
    start = tree_state(root)
    outcomes, _ = apply_all(root, only=(fix_id,), **kwargs)
    assert outcomes and all(o.result == DONE for o in outcomes), outcomes
    revert(root)
    assert tree_state(root) == start
    return outcomes


# -- sysctl.swappiness ---------------------------------------------------------------------------
def test_swappiness_is_not_offered_where_zram_is_the_only_swap(tmp_path):
    root = fixture_root(tmp_path, "007")
    _, plan = plan_for(root)
    assert "sysctl.swappiness" not in [p.fix_id for p in plan.fixes]
    _, _, fix = only_fix(root, "sysctl.swappiness")
    assert fix.status == "unavailable" and "zram is the only swap" in fix.reason


def test_swappiness_on_a_real_laptop_with_disk_swap(tmp_path):
    """Asked for by name: this laptop maps its model (RAM cannot hold it), where swap never
    holds it, so no finding offers the fix; the fix itself works on the real tree."""
    root = fixture_root(tmp_path, "001")
    _, plan = plan_for(root)
    assert "sysctl.swappiness" not in [p.fix_id for p in plan.fixes if p.status == CHANGE]
    _, _, fix = only_fix(root, "sysctl.swappiness")
    assert fix.status == CHANGE
    round_trip(root, "sysctl.swappiness")


# -- hugepages.release ----------------------------------------------------------------------------
def test_hugepages_release_on_a_real_server(tmp_path):
    root = fixture_root(tmp_path, "006")  # 2048 x 2 MiB pages reserved
    _, _, fix = only_fix(root, "hugepages.release")
    (change,) = fix.changes
    assert change.target.path == "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
    assert (change.current, change.new) == ("2048", "0")
    assert any("Nothing in sysctl.d or on the kernel command line" in n for n in fix.notes)
    round_trip(root, "hugepages.release")


def test_hugepages_reserved_at_boot_are_reported_or_persisted(tmp_path):
    root = fixture_root(tmp_path, "006")
    write(root, "proc/cmdline", "BOOT_IMAGE=/vmlinuz ro default_hugepagesz=2M hugepages=2048\n")
    write(root, "etc/sysctl.d/80-dpdk.conf", "vm.nr_hugepages = 2048\n")
    (root / "sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").write_text("2000\n")
    _, _, fix = only_fix(root, "hugepages.release")
    assert any("default_hugepagesz=2M hugepages=2048" in step for step in fix.manual)
    files = [c for c in fix.changes if c.target.kind == "file"]
    assert [c.target.path for c in files] == ["/etc/sysctl.d/99-q3cn-doctor-hugepages.conf"]
    assert any("48 of the 2 MiB pages are in use" in n for n in fix.notes)
    round_trip(root, "hugepages.release")


# -- thp.mode ------------------------------------------------------------------------------------
def thp_root(tmp_path: Path) -> Path:
    return full_root(tmp_path / "root")  # THP never, /usr/lib/tmpfiles.d present


def test_thp_is_optional_unless_asked_for(tmp_path):
    root = thp_root(tmp_path)
    _, plan = plan_for(root)
    (thp,) = [p for p in plan.fixes if p.fix_id == "thp.mode"]
    assert thp.status == "optional"  # an informational finding: applied only with --only
    assert thp.changes and not thp.selected
    outcomes = round_trip(root, "thp.mode")
    assert [o.what for o in outcomes][0] == "transparent huge pages"


def test_thp_set_on_the_kernel_command_line_is_a_manual_step(tmp_path):
    root = thp_root(tmp_path)
    write(root, "proc/cmdline", "BOOT_IMAGE=/vmlinuz ro transparent_hugepage=never\n")
    _, _, fix = only_fix(root, "thp.mode")
    assert [c.target.kind for c in fix.changes] == ["sysfs"]
    assert "transparent_hugepage=never" in fix.manual[0]


def test_thp_conflicting_tmpfiles_line_is_reported(tmp_path):
    root = thp_root(tmp_path)
    write(root, "usr/lib/tmpfiles.d/db-tuning.conf", f"w {THP} - - - - never\n")
    _, _, fix = only_fix(root, "thp.mode")
    assert [c.target.kind for c in fix.changes] == ["sysfs"]
    assert "/usr/lib/tmpfiles.d/db-tuning.conf:1 writes never" in fix.manual[0]


def test_thp_without_madvise_is_unavailable(tmp_path):
    root = thp_root(tmp_path)
    (root / THP[1:]).write_text("always [never]\n")
    _, _, fix = only_fix(root, "thp.mode")
    assert fix.status == "unavailable" and "no madvise" in fix.reason


# -- cpu.governor ----------------------------------------------------------------------------------
def test_governor_on_intel_pstate_laptop_sets_epp_then_governor(tmp_path):
    root = fixture_root(tmp_path, "002")
    (root / "usr/lib/tmpfiles.d").mkdir(parents=True)
    _, _, fix = only_fix(root, "cpu.governor")
    kinds = [(c.what.split(" on ")[0], c.target.path.rsplit("/", 1)[1]) for c in fix.changes]
    assert kinds[:2] == [("EPP", "energy_performance_preference"), ("governor", "scaling_governor")]
    assert len([c for c in fix.changes if c.target.kind == "sysfs"]) == 16  # 8 policies x 2
    (file_change,) = [c for c in fix.changes if c.target.kind == "file"]
    text = file_change.target.data(file_change.new).decode()
    assert "w /sys/devices/system/cpu/cpufreq/policy7/scaling_governor - - - - performance" in text
    round_trip(root, "cpu.governor")


def test_governor_on_per_cpu_cpufreq_folders(tmp_path):
    root = fixture_root(tmp_path, "003")  # an old kernel: cpuN/cpufreq, ondemand
    _, _, fix = only_fix(root, "cpu.governor")
    paths = [c.target.path for c in fix.changes if c.target.kind == "sysfs"]
    assert "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor" in paths
    assert any("No systemd-tmpfiles" in n for n in fix.notes)
    round_trip(root, "cpu.governor")


class DaemonHost(RootHost):
    """A tree whose tuned answers tuned-adm (RootHost itself runs no command)."""

    def __init__(self, prefix: str, profile: str = "balanced") -> None:
        super().__init__(prefix, euid=0)
        self.profile = profile
        self.commands: list[tuple[str, ...]] = []

    def _run(self, argv, timeout):
        self.commands.append(argv)
        if argv == ("tuned-adm", "active"):
            return CommandResult(argv, RAN, 0, f"Current active profile: {self.profile}\n")
        if argv[:2] == ("tuned-adm", "profile") and len(argv) == 3:
            self.profile = argv[2]
            return CommandResult(argv, RAN, 0)
        return super()._run(argv, timeout)


def test_governor_switches_a_running_tuned_instead_of_fighting_it(tmp_path):
    root = full_root(tmp_path / "root")
    add_process(root, pid=900, threads=(900,), name="tuned")
    start = tree_state(root)
    host = DaemonHost(str(root))
    _, _, fix = only_fix(root, "cpu.governor", host=host)
    (change,) = fix.changes
    assert (change.target.kind, change.current, change.new) == (
        "profile", "balanced", "throughput-performance")
    outcomes, _ = apply_all(root, host=host, only=("cpu.governor",))
    assert [o.result for o in outcomes] == [DONE]
    assert host.profile == "throughput-performance"
    assert tree_state(root) == start  # no sysfs write behind tuned's back
    revert(root, host=DaemonHost(str(root), profile=host.profile))
    # The revert's host started at throughput-performance and was switched back:
    entries = Journal(RootHost(str(root))).entries
    assert entries[0]["before"] == "balanced" and entries[0]["state"] == "reverted"
    # Without a way to ask tuned (--root runs no command) the switch is refused, not guessed.
    _, _, fix = only_fix(root, "cpu.governor")
    assert fix.status == REFUSED and "cannot be read" in fix.changes[0].reason


def test_governor_steps_aside_for_a_daemon_it_cannot_switch(tmp_path):
    root = full_root(tmp_path / "root")
    add_process(root, pid=777, threads=(777,), name="auto-cpufreq")
    _, _, fix = only_fix(root, "cpu.governor")
    assert fix.status == "unavailable" and "auto-cpufreq is running" in fix.reason


# -- cpu.boost, sysctl.numa_balancing ------------------------------------------------------------
def test_boost_on_through_intel_pstate(tmp_path):
    root = full_root(tmp_path / "root")
    write(root, "sys/devices/system/cpu/intel_pstate/no_turbo", "1\n")
    _, _, fix = only_fix(root, "cpu.boost")
    assert [(c.target.path, c.current, c.new) for c in fix.changes][0] == (
        "/sys/devices/system/cpu/intel_pstate/no_turbo", "1", "0")
    assert fix.changes[1].target.path == "/etc/tmpfiles.d/q3cn-doctor-cpu-boost.conf"
    round_trip(root, "cpu.boost")


def test_boost_on_through_cpufreq_boost(tmp_path):
    root = full_root(tmp_path / "root")
    write(root, "sys/devices/system/cpu/cpufreq/boost", "0\n")
    outcomes = round_trip(root, "cpu.boost", persist=False)
    assert [o.after for o in outcomes] == ["1"]


def test_boost_already_on_plans_no_boot_file(tmp_path):
    """No runtime change, no tmpfiles.d line: as the governor fix, only what is changed is
    kept at boot (the cpufreq sweep: every intel_pstate machine with no_turbo = 0)."""
    root = full_root(tmp_path / "root")
    write(root, "sys/devices/system/cpu/intel_pstate/no_turbo", "0\n")
    _, _, fix = only_fix(root, "cpu.boost")
    assert [c.target.kind for c in fix.changes] == ["sysfs"]


def test_boost_on_a_cpu_without_turbo_is_unavailable(tmp_path):
    """konkor/cpufreq#45: an i3-2375M (no Turbo Boost) with no_turbo = 1; intel_pstate's
    turbo_pct is 0 and the kernel refuses no_turbo = 0 (EPERM)."""
    root = full_root(tmp_path / "root")
    write(root, "sys/devices/system/cpu/intel_pstate/no_turbo", "1\n")
    write(root, "sys/devices/system/cpu/intel_pstate/turbo_pct", "0\n")
    _, _, fix = only_fix(root, "cpu.boost")
    assert fix.status == "unavailable" and "no turbo range" in fix.reason


def test_governor_fix_follows_the_check_where_no_cpu_is_planned(tmp_path):
    """prometheus/procfs's tree has no /proc/cpuinfo: the CPU plan is empty, cpu.governor
    judges every policy, and the fix sets them all, rather than nothing and "(already
    applied)"."""
    root = fixture_root(tmp_path, "procfs-prometheus-mixed")
    _, _, fix = only_fix(root, "cpu.governor")
    assert [c.target.path.rsplit("/", 1)[1] for c in fix.changes if c.target.kind == "sysfs"
            ] == ["scaling_governor"]


def test_numa_balancing_off_now_and_at_boot(tmp_path):
    root = full_root(tmp_path / "root")
    write(root, "proc/sys/kernel/numa_balancing", "1\n")
    _, _, fix = only_fix(root, "sysctl.numa_balancing")
    assert [c.target.path for c in fix.changes] == [
        "/proc/sys/kernel/numa_balancing", "/etc/sysctl.d/99-q3cn-doctor-numa-balancing.conf"]
    round_trip(root, "sysctl.numa_balancing")


# -- memlock.limit -----------------------------------------------------------------------------
def test_memlock_writes_limits_and_a_service_drop_in(tmp_path):
    root = full_root(tmp_path / "root")
    _, _, fix = only_fix(root, "memlock.limit", service="llama-server.service")
    assert [(c.target.path, c.effect) for c in fix.changes] == [
        ("/etc/security/limits.d/95-q3cn-doctor-memlock-alice.conf", "after-relogin"),
        ("/etc/systemd/system/llama-server.service.d/90-q3cn-doctor-memlock.conf",
         "after-restart")]
    assert any("systemctl daemon-reload" in step for step in fix.manual)
    round_trip(root, "memlock.limit", service="llama-server")


def test_memlock_a_later_user_entry_wins_so_we_go_later_or_report(tmp_path):
    root = full_root(tmp_path / "root")
    write(root, "etc/security/limits.d/99-site.conf", "alice hard memlock 65536\n")
    _, _, fix = only_fix(root, "memlock.limit")
    assert [c.target.path for c in fix.changes] == [
        "/etc/security/limits.d/zz-q3cn-doctor-memlock-alice.conf"]
    write(root, "etc/security/limits.d/zzz-site.conf", "alice soft memlock 65536\n")
    _, _, fix = only_fix(root, "memlock.limit")
    assert fix.changes == []
    assert "zzz-site.conf:1 sets alice soft memlock 65536" in fix.manual[0]


def test_memlock_both_of_our_names_taken_is_a_manual_step(tmp_path):
    """Files q3cn-doctor did not write under both names it would use: planned as a step
    by hand (never "could not plan"), for the limits file and the service drop-in."""
    root = full_root(tmp_path / "root")
    for name in ("95-q3cn-doctor-memlock-alice.conf", "zz-q3cn-doctor-memlock-alice.conf"):
        write(root, f"etc/security/limits.d/{name}", "# the admin's own\n")
    for name in ("90-q3cn-doctor-memlock.conf", "zz-q3cn-doctor-memlock.conf"):
        write(root, f"etc/systemd/system/llama-server.service.d/{name}", "# the admin's\n")
    _, _, fix = only_fix(root, "memlock.limit", service="llama-server")
    assert fix.status != "unavailable", fix.reason
    assert fix.changes == []
    assert any("zz-q3cn-doctor-memlock-alice.conf exist and were not written by q3cn-doctor"
               in step for step in fix.manual), fix.manual
    assert any("zz-q3cn-doctor-memlock.conf exist and were not written by q3cn-doctor"
               in step and "LimitMEMLOCK=infinity" in step for step in fix.manual), fix.manual


@pytest.mark.parametrize("user", ["../etc", "a b", ""])
def test_memlock_refuses_odd_user_names(tmp_path, user):
    root = full_root(tmp_path / "root")
    _, _, fix = only_fix(root, "memlock.limit", user=user)
    assert fix.status == "unavailable"


def test_memlock_without_pam_limits_needs_a_service(tmp_path):
    root = full_root(tmp_path / "root")
    shutil.rmtree(root / "etc/security")
    _, _, fix = only_fix(root, "memlock.limit")
    assert fix.status == "unavailable" and "--service" in fix.reason


# -- cpu.affinity ---------------------------------------------------------------------------------
def test_affinity_repins_every_thread_and_restores_each_list(tmp_path):
    root = full_root(tmp_path / "root")
    write(root, "proc/4242/task/4243/status",
          (root / "proc/4242/task/4243/status").read_text()
          .replace("Cpus_allowed:\t1", "Cpus_allowed:\t2")
          .replace("Cpus_allowed_list:\t0", "Cpus_allowed_list:\t1"))
    _, _, fix = only_fix(root, "cpu.affinity")
    (change,) = fix.changes
    assert change.needs_root  # another user's process (uid 1000)
    assert change.current["threads"] == {"4242": "0", "4243": "1"}
    assert change.new["threads"] == {"4242": "0-1", "4243": "0-1"}
    round_trip(root, "cpu.affinity")


def test_affinity_with_no_llama_server(tmp_path):
    root = full_root(tmp_path / "root")
    shutil.rmtree(root / "proc/4242")
    _, _, fix = only_fix(root, "cpu.affinity")
    assert fix.status == "unavailable" and "no llama-server is running" in fix.reason
    _, _, fix = only_fix(root, "cpu.affinity", pid=31337)
    assert fix.status == "unavailable" and "31337" in fix.reason


def test_affinity_revert_leaves_a_reused_pid_alone(tmp_path):
    root = full_root(tmp_path / "root")
    apply_all(root, only=("cpu.affinity",))
    shutil.rmtree(root / "proc/4242")
    add_process(root, cpus="0-1", mask="3", start=999999, name="bash")  # same pid, new process
    after = tree_state(root)
    (outcome,) = revert(root)
    assert outcome.result == "unchanged" and "no longer exists" in outcome.detail
    assert tree_state(root) == after


def test_affinity_thread_refused_is_a_failed_fix(tmp_path):
    root = full_root(tmp_path / "root")
    start = tree_state(root)
    host = RootHost(str(root), euid=0)
    host.faults["write:affinity:4242/4243"] = errno.EINVAL
    outcomes, _ = apply_all(root, host=host, only=("cpu.affinity",))
    assert [o.result for o in outcomes] == [FAILED_OUTCOME]
    revert(root)  # the main thread was re-pinned before the refusal: it is restored
    assert tree_state(root) == start


def test_every_fix_module_registers_one_fix_and_is_in_the_order():
    """Each module in fixes/ exposes one ``FIX``; ORDER lists every fix id, each once, and
    nothing else; builtin_fixes (what plans iterate) comes in that order."""
    fixes_dir = Path(__file__).parent.parent / "fixes"
    modules = sorted(p.stem for p in fixes_dir.glob("*.py") if p.stem != "__init__")
    ids = []
    for name in modules:
        fix = getattr(importlib.import_module(f"q3cn_doctor.fixes.{name}"), "FIX", None)
        assert isinstance(fix, Fix), f"fixes/{name}.py has no FIX = SomeFix()"
        assert fix.id and fix.title, name
        ids.append(fix.id)
    order = fix_order()
    assert len(set(order)) == len(order), "a fix id is listed twice in fixes.ORDER"
    assert sorted(set(ids) - set(order)) == [], "fix modules missing from fixes.ORDER"
    assert sorted(set(order) - set(ids)) == [], "fixes.ORDER names fixes that do not exist"
    assert set(discover_fixes()) == set(ids)
    assert list(builtin_fixes()) == order


def test_a_fix_left_out_of_the_order_is_planned_last(monkeypatch):
    order = [f for f in fix_order() if f != "cpu.governor"]
    monkeypatch.setattr(fixing_plan, "fix_order", lambda: order)
    assert list(builtin_fixes()) == order + ["cpu.governor"]


def test_fixes_are_planned_and_applied_in_the_order(tmp_path):
    root = full_root(tmp_path / "root")
    outcomes, plan = apply_all(root)
    assert [p.fix_id for p in plan.fixes] == fix_order()
    applied = list(dict.fromkeys(o.fix for o in outcomes))
    assert applied == fix_order()
    assert applied.index("cpu.governor") < applied.index("cpu.boost")  # the reason for ORDER


def test_a_root_tree_stores_kernel_values_as_the_kernel_shows_them(tmp_path):
    root = full_root(tmp_path / "root")
    host = RootHost(str(root), euid=0)
    host.write_kernel_value(THP, "madvise\n")
    assert (root / THP[1:]).read_text() == "always [madvise] never\n"
    with pytest.raises(OSError) as refused:
        host.write_kernel_value(THP, "sometimes\n")  # not a choice: the kernel says EINVAL
    assert refused.value.errno == errno.EINVAL
    assert (root / THP[1:]).read_text() == "always [madvise] never\n"
    with pytest.raises(FileNotFoundError):  # kernel files are never created
        host.write_kernel_value("/proc/sys/vm/no_such_key", "1\n")
    assert not (root / "proc/sys/vm/no_such_key").exists()


# -- spd.driver -----------------------------------------------------------------------------------
def spd_root(tmp_path: Path) -> Path:
    """A tree with a real machine's DDR4 modules in systemd's udev database (a Lenovo
    ThinkCentre M720s, tests/fixtures/udev/001) and the kernel's /sys/module."""
    root = tmp_path / "root"
    write(root, "run/udev/data/+dmi:id", next((FIXTURES / "udev").glob("001-*.txt")).read_text())
    (root / "sys/module").mkdir(parents=True)
    (root / "var/lib").mkdir(parents=True)
    return root


def test_spd_driver_loads_ee1004_for_ddr4_and_round_trips(tmp_path):
    root = spd_root(tmp_path)
    _, _, fix = only_fix(root, "spd.driver")
    (change,) = fix.changes
    assert (change.target.kind, change.target.path) == ("module", "/sys/module/ee1004")
    assert (change.current, change.new, change.status) == ("not loaded", "loaded", CHANGE)
    assert any("until the next reboot" in note for note in fix.notes)
    assert any("i2c_i801" in step for step in fix.manual)  # no SMBus adapter in this tree
    outcomes = round_trip(root, "spd.driver")
    assert [o.what for o in outcomes] == ["kernel module ee1004"]


def test_spd_driver_persists_only_when_asked(tmp_path):
    root = spd_root(tmp_path)
    host = RootHost(str(root), euid=0)
    facts = Facts(host, Options(root=str(root), plugins=False))
    plan = build_plan(facts, [], FixOptions(["spd.driver"], persist_asked=True))
    (fix,) = plan.fixes
    assert [c.target.path for c in fix.changes] == ["/sys/module/ee1004",
                                                   "/etc/modules-load.d/q3cn-doctor-spd.conf"]
    start = tree_state(root)
    outcomes = Engine(host).apply(plan)
    assert all(o.result == DONE for o in outcomes)
    assert (root / "sys/module/ee1004/initstate").read_text() == "live\n"
    assert (root / "etc/modules-load.d/q3cn-doctor-spd.conf").read_text().endswith("ee1004\n")
    revert(root)
    assert tree_state(root) == start


def test_spd_driver_leaves_a_loaded_or_builtin_driver_alone(tmp_path):
    root = spd_root(tmp_path)
    write(root, "sys/module/ee1004/initstate", "live\n")
    _, _, fix = only_fix(root, "spd.driver")
    assert fix.status == "already"
    (root / "sys/module/ee1004/initstate").unlink()  # built in: the folder, no initstate
    _, _, fix = only_fix(root, "spd.driver")
    assert fix.status == REFUSED and "built into the kernel" in fix.changes[0].reason


def test_spd_driver_cures_nothing_itself(tmp_path):
    """Loading the SPD driver lets memory.speed read the real rating; it speeds nothing
    up. A memory.speed failure that offers it keeps its XMP/EXPO steps by hand, and the
    ledger counts no gain for `fix --apply`."""
    from q3cn_doctor.app.reporting import cured_by
    from q3cn_doctor.checking.findings import FAIL, Finding

    root = spd_root(tmp_path)
    facts = Facts(RootHost(str(root), euid=0), Options(root=str(root), plugins=False))
    xmp_off = Finding(id="memory.speed", check="memory.speed", area="memory", status=FAIL,
                      title="RAM below its XMP rating", fixes=["spd.driver"],
                      manual=["Enable XMP in the BIOS."], cost_tok_s=12.0,
                      what_if={"ram_mts": 3200})
    plan = build_plan(facts, [xmp_off], FixOptions())
    (fix,) = plan.fixes
    assert fix.status == CHANGE and fix.gain_tok_s is None
    assert plan.manual == [("memory.speed", "Enable XMP in the BIOS.")]
    assert cured_by(plan) == set()


def snapshot_plan(directory: Path, fix_id: str):
    facts = Facts(SnapshotHost(str(directory)), Options(snapshot=str(directory), plugins=False))
    specs, _ = available_checks(False)
    findings = run_checks(facts, specs)
    return findings, build_plan(facts, findings, FixOptions([fix_id]))


def test_spd_driver_picks_spd5118_for_ddr5_and_nothing_for_soldered(tmp_path):
    ddr5 = mem_snapshot(tmp_path / "ddr5", dmidecode=listing("003"),  # Crucial DDR5 5600
                        files={"/sys/module/.keep": ""})
    _, plan = snapshot_plan(ddr5, "spd.driver")
    (fix,) = plan.fixes
    assert [c.target.name for c in fix.changes] == ["spd5118"]
    # 018 prints Type <OUT OF SPEC>, but a module rated 4800 can only be DDR5.
    out_of_spec = mem_snapshot(tmp_path / "oos", dmidecode=listing("018"),
                               files={"/sys/module/.keep": ""})
    _, plan = snapshot_plan(out_of_spec, "spd.driver")
    assert [c.target.name for c in plan.fixes[0].changes] == ["spd5118"]
    unknown = mem_snapshot(tmp_path / "unknown", dmidecode=listing("060"),  # Type: Unknown
                           files={"/sys/module/.keep": ""})
    _, plan = snapshot_plan(unknown, "spd.driver")
    assert plan.fixes[0].reason == "the modules' type is not DDR4 or DDR5 (or is unknown)"
    lpddr = mem_snapshot(tmp_path / "lp", dmidecode=listing("035"),
                         files={"/sys/module/.keep": ""})
    _, plan = snapshot_plan(lpddr, "spd.driver")
    assert plan.fixes[0].reason == "soldered memory has no SPD EEPROM"


def test_the_speed_verdict_once_the_driver_exposes_the_eeproms(tmp_path):
    """018's modules (InnoDisk M5UV-AGS2JC0P-B: a part number no scheme reads; DDR5 4800
    at 4000) before the driver, then with what spd5118 would expose: the corpus' real SPD
    images of a JEDEC-4800 module (Samsung, SPD 012) and of an EXPO-6000 kit (G.Skill,
    SPD 005), two of each. The images are not 018's own modules: they show what the
    verdict rests on once an EEPROM is readable."""
    before = mem_snapshot(tmp_path / "before", dmidecode=listing("018"))
    speed = one(before, "memory.speed")
    assert speed.fixes == ["spd.driver"] and "from dmidecode" in speed.observed
    jedec = mem_snapshot(tmp_path / "jedec", dmidecode=listing("018"), eeproms={
        "spd5118/1-0050": spd("012"), "spd5118/1-0052": spd("012")})
    held = one(jedec, "memory.speed")
    assert "rated 4800 MT/s (JEDEC, from spd" in held.observed and not held.fixes
    kit = mem_snapshot(tmp_path / "kit", dmidecode=listing("018"), eeproms={
        "spd5118/1-0050": spd("005"), "spd5118/1-0052": spd("005")})
    fail = one(kit, "memory.speed")
    assert fail.status == FAIL and "below the 6000 MT/s its EXPO profile" in fail.title
    assert not fail.fixes


def test_only_the_spd_drivers_are_modules_a_fix_may_load():
    from q3cn_doctor.fixing.targets import KernelModule

    assert KernelModule("spd5118").not_allowed() is None
    assert "not a kernel module" in KernelModule("nvidia").not_allowed()
    assert KernelModule("ee1004").valid("loaded") and not KernelModule("ee1004").valid("on")
    with pytest.raises(ValueError):
        KernelModule("../../etc")

"""The fix engine's safety contract, proved on --root trees built in tmp_path.

This machine runs the tests as root: every host here is a RootHost on a temporary
tree, so nothing can reach the real /proc/sys, /sys or /etc. Each test compares
the whole tree (every file's bytes, mode and owner, every folder and link) before
and after; the journal's own folder, var/lib/q3cn-doctor, is the one thing a
revert keeps (it is the record of what was done).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from conftest import FIXTURES
from q3cn_doctor.checking.runner import available_checks, run_checks
from q3cn_doctor.facts import Facts
from q3cn_doctor.fixing.engine import DONE, FAILED_OUTCOME, Engine, needs_root
from q3cn_doctor.fixing.journal import APPLIED, FAILED, LEFT, PENDING, REVERTED, Journal
from q3cn_doctor.fixing.plan import ALREADY, CHANGE, REFUSED, FixOptions, build_plan, fix_order
from q3cn_doctor.fixing.targets import ConfigFile, header
from q3cn_doctor.host.live import RootHost
from q3cn_doctor.options import Options
from test_cli import make_root

STATE = "var/lib/q3cn-doctor"
ALL_FIXES = tuple(fix_order())  # full_root gives every fix work to do
GOVERNOR = "/sys/devices/system/cpu/cpufreq/policy0/scaling_governor"
THP = "/sys/kernel/mm/transparent_hugepage/enabled"
OUR_SWAPPINESS = "etc/sysctl.d/99-q3cn-doctor-swappiness.conf"


class Crash(BaseException):
    """A simulated power cut: not an OSError, so nothing in the engine catches it."""


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def tree_state(root: Path, skip: tuple[str, ...] = (STATE,)) -> dict[str, tuple]:
    """Everything in a tree that a change could touch: bytes, modes, owners, links."""
    state: dict[str, tuple] = {}
    for directory, folders, files in os.walk(root):
        for name in folders + files:
            full = os.path.join(directory, name)
            relative = os.path.relpath(full, root)
            if any(relative == s or relative.startswith(s + "/") for s in skip):
                continue
            info = os.lstat(full)
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                state[relative] = ("link", os.readlink(full))
            elif stat.S_ISDIR(info.st_mode):
                state[relative] = ("dir", mode, info.st_uid, info.st_gid)
            else:
                with open(full, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
                state[relative] = ("file", mode, info.st_uid, info.st_gid, digest)
    return state


def add_process(root: Path, pid: int = 4242, threads: tuple[int, ...] = (4242, 4243),
                cpus: str = "0", mask: str = "1", start: int = 123456,
                name: str = "llama-server") -> None:
    """A running llama-server in the tree's /proc, as the kernel lays it out."""
    def status(tid: int) -> str:
        return (f"Name:\t{name}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{pid}\n"
                f"Pid:\t{tid}\nUid:\t1000\t1000\t1000\t1000\nThreads:\t{len(threads)}\n"
                f"Cpus_allowed:\t{mask}\nCpus_allowed_list:\t{cpus}\n"
                "Mems_allowed_list:\t0\nvoluntary_ctxt_switches:\t12\n")
    base = f"proc/{pid}"
    write(root, f"{base}/status", status(pid))
    write(root, f"{base}/cmdline", f"/usr/local/bin/{name}\0-m\0/models/q.gguf\0")
    write(root, f"{base}/stat", f"{pid} ({name}) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 5 3 0 0 "
                                f"20 0 {len(threads)} 0 {start} 1000 200 18446744073709551615\n")
    for tid in threads:
        write(root, f"{base}/task/{tid}/status", status(tid))


def full_root(path: Path) -> Path:
    """A desktop where every fix has work: disk swap at swappiness 60 beside a model read
    into unlocked memory (--no-mmap in the config file), 60 GiB of 1 GiB hugetlb pages,
    THP never, powersave with EPP balance_power, alice's memlock at 8 MiB in
    limits.conf, a llama-server service and a running llama-server pinned to CPU 0,
    turbo boost off and NUMA balancing on. Our own sysctl.d file from an earlier run holds
    another value (a rewrite to restore), /etc/tmpfiles.d is missing (a folder to create
    and remove)."""
    root = make_root(path, mem_gib=64, hugetlb_gib=60, disk_swap=True, swappiness=60,
                     governor="powersave", no_mmap=True)
    write(root, "sys/kernel/mm/transparent_hugepage/enabled", "always madvise [never]\n")
    write(root, "sys/devices/system/cpu/cpufreq/boost", "0\n")
    # A real machine's DDR4 modules as systemd's udev database lists them (spd.driver).
    write(root, "run/udev/data/+dmi:id",
          next((FIXTURES / "udev").glob("001-*.txt")).read_text())
    (root / "sys/module").mkdir(parents=True)
    write(root, "proc/sys/kernel/numa_balancing", "1\n")
    write(root, "proc/cmdline", "BOOT_IMAGE=/vmlinuz-6.8.0 root=/dev/nvme0n1p2 ro quiet\n")
    write(root, "usr/lib/sysctl.d/50-default.conf", "kernel.sysrq = 16\nvm.swappiness = 60\n")
    write(root, OUR_SWAPPINESS, header("sysctl.swappiness") + "vm.swappiness = 5\n")
    write(root, "usr/lib/tmpfiles.d/systemd.conf", "d /run/user 0755 root root -\n")
    write(root, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"
                              "alice:x:1000:1000:Alice:/home/alice:/bin/bash\n")
    write(root, "etc/group", "root:x:0:\nalice:x:1000:\n")
    write(root, "etc/security/limits.conf", "# /etc/security/limits.conf\n*\tsoft\tcore\t0\n"
                                            "alice\tsoft\tmemlock\t8192\n")
    (root / "etc/security/limits.d").mkdir(parents=True)
    write(root, "etc/systemd/system/llama-server.service",
          "[Service]\nExecStart=/usr/local/bin/llama-server -m /models/q.gguf\n")
    (root / "var/lib").mkdir(parents=True)
    add_process(root)
    return root


def plan_for(root: Path, *, euid: int = 0, only: tuple[str, ...] = (), persist: bool = True,
             service: str | None = None, pid: int | None = None, user: str = "alice",
             host: RootHost | None = None):
    host = host or RootHost(str(root), euid=euid)
    facts = Facts(host, Options(root=str(root), user=user, plugins=False))
    specs, _ = available_checks(False)
    findings = run_checks(facts, specs)
    return host, build_plan(facts, findings, FixOptions(list(only), persist, service, pid))


def apply_all(root: Path, step=None, host: RootHost | None = None, **kwargs):
    kwargs.setdefault("only", ALL_FIXES)
    kwargs.setdefault("service", "llama-server")
    host, plan = plan_for(root, host=host, **kwargs)
    return Engine(host, step).apply(plan), plan


def revert(root: Path, host: RootHost | None = None):
    return Engine(host or RootHost(str(root), euid=0)).revert()


def by_what(outcomes) -> dict[str, str]:
    return {o.what: o.result for o in outcomes}


# -- the round trip -----------------------------------------------------------------------
def test_plan_apply_verify_revert_round_trip_is_byte_identical(tmp_path):
    root = full_root(tmp_path / "root")
    start = tree_state(root)
    outcomes, plan = apply_all(root)
    assert {p.fix_id: p.status for p in plan.fixes} == dict.fromkeys(ALL_FIXES, CHANGE)
    assert outcomes and all(o.result == DONE for o in outcomes), outcomes
    # Every value really changed, and every file says who wrote it.
    assert (root / "proc/sys/vm/swappiness").read_text() == "0\n"
    assert (root / "sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages").read_text() == "0\n"
    assert (root / THP[1:]).read_text() == "always [madvise] never\n"
    assert (root / GOVERNOR[1:]).read_text() == "performance\n"
    assert (root / "sys/devices/system/cpu/cpufreq/policy0/energy_performance_preference"
            ).read_text() == "performance\n"
    assert (root / OUR_SWAPPINESS).read_text().endswith("\nvm.swappiness = 0\n")
    limits = (root / "etc/security/limits.d/95-q3cn-doctor-memlock-alice.conf").read_text()
    assert "alice\tsoft\tmemlock\tunlimited\nalice\thard\tmemlock\tunlimited\n" in limits
    dropin = root / "etc/systemd/system/llama-server.service.d/90-q3cn-doctor-memlock.conf"
    assert dropin.read_text().endswith("[Service]\nLimitMEMLOCK=infinity\n")
    tmpfiles = (root / "etc/tmpfiles.d/q3cn-doctor-thp.conf").read_text()
    assert f"w {THP} - - - - madvise\n" in tmpfiles
    for path in (root / "proc/4242/status", root / "proc/4242/task/4243/status"):
        assert "Cpus_allowed_list:\t0-1\n" in path.read_text()
        assert "Cpus_allowed:\t3\n" in path.read_text()
    for written in (limits, dropin.read_text(), tmpfiles):
        assert written.startswith("# Written by q3cn-doctor (fix ")
    if os.geteuid() == 0:
        assert (root / "etc/tmpfiles.d/q3cn-doctor-thp.conf").stat().st_uid == 0
    assert stat.S_IMODE(os.stat(root / "etc/tmpfiles.d/q3cn-doctor-thp.conf").st_mode) == 0o644
    # The journal: root's folder, 0700, every entry applied.
    journal_dir = root / STATE
    assert stat.S_IMODE(journal_dir.stat().st_mode) == 0o700
    entries = json.loads((journal_dir / "journal.json").read_text())["entries"]
    assert [e["state"] for e in entries] == [APPLIED] * len(outcomes)
    # Revert: newest first, exact.
    reverted = revert(root)
    assert [o.result for o in reverted] == [REVERTED] * len(outcomes)
    assert [o.what for o in reverted] == [o.what for o in reversed(outcomes)]
    assert tree_state(root) == start
    assert revert(root) == []  # nothing left to undo


def test_second_apply_is_a_no_op_and_says_so(tmp_path):
    root = full_root(tmp_path / "root")
    first, _ = apply_all(root)
    after_first = tree_state(root, skip=())
    second, plan = apply_all(root)
    assert second == []  # nothing selected: every planned fix is already so
    statuses = {p.fix_id: p.status for p in plan.fixes}
    for fix_id in ("sysctl.swappiness", "thp.mode", "cpu.governor", "memlock.limit",
                   "cpu.affinity"):
        assert statuses[fix_id] == ALREADY, statuses
    assert all(c.status == ALREADY for p in plan.fixes for c in p.changes)
    assert tree_state(root, skip=()) == after_first  # not even the journal was touched
    # Simulating the same changes says "already", through the apply code path itself.
    host, plan = plan_for(root, only=("sysctl.swappiness",))
    outcome = Engine(host).execute(plan.fixes[0].changes[0], simulate=False)
    assert outcome.result == ALREADY


def test_dry_run_simulates_through_the_same_path_and_writes_nothing(tmp_path):
    root = full_root(tmp_path / "root")
    start = tree_state(root, skip=())
    host, plan = plan_for(root, only=ALL_FIXES, service="llama-server")
    outcomes = Engine(host).apply(plan, simulate=True)
    assert outcomes and {o.result for o in outcomes} == {"would-change"}
    assert tree_state(root, skip=()) == start


# -- crashes --------------------------------------------------------------------------------
def _steps(tmp_path: Path) -> list[str]:
    names: list[str] = []
    apply_all(full_root(tmp_path / "count"), step=names.append)
    return names


@pytest.mark.slow  # a full apply and revert for every one of its steps
def test_a_crash_after_any_step_of_apply_is_restored_by_revert(tmp_path):
    steps = _steps(tmp_path)
    assert steps[0] == "state-dir" and len(steps) > 20
    kinds = {name.split()[0] for name in steps}
    assert {"record", "change", "applied"} <= kinds
    for index, name in enumerate(steps):
        root = full_root(tmp_path / f"crash-{index}")
        start = tree_state(root)

        def crash(step: str, _at=name) -> None:
            if step == _at:
                raise Crash(step)

        with pytest.raises(Crash):
            apply_all(root, step=crash)
        # A new process: fresh host, fresh journal read from disk.
        outcomes = revert(root)
        assert all(o.result in (REVERTED, "unchanged") for o in outcomes), (name, outcomes)
        assert tree_state(root) == start, f"crash after {name!r} not undone"
        journal = Journal(RootHost(str(root), euid=0))
        assert journal.open_entries() == []


def test_a_crash_between_record_and_change_leaves_a_pending_entry(tmp_path):
    root = full_root(tmp_path / "root")

    def crash(step: str) -> None:
        if step == "record 1":
            raise Crash(step)

    with pytest.raises(Crash):
        apply_all(root, step=crash, only=("sysctl.swappiness",))
    entries = Journal(RootHost(str(root), euid=0)).entries
    assert [e["state"] for e in entries] == [PENDING]
    assert entries[0]["before"] == "60"  # the old value is on disk before the change
    assert (root / "proc/sys/vm/swappiness").read_text() == "60\n"


# -- refusals ----------------------------------------------------------------------------------
def test_a_file_we_do_not_own_is_refused(tmp_path):
    root = full_root(tmp_path / "root")
    foreign = write(root, "etc/tmpfiles.d/q3cn-doctor-thp.conf",
                    "w /sys/kernel/mm/transparent_hugepage/enabled - - - - never\n")
    start = tree_state(root)
    host, plan = plan_for(root, only=("thp.mode",))
    (thp,) = plan.fixes
    assert thp.status == REFUSED
    refused = [c for c in thp.changes if c.status == REFUSED]
    assert refused and "not written by q3cn-doctor" in refused[0].reason
    outcomes = Engine(host).apply(plan)
    assert [o.result for o in outcomes] == [REFUSED]
    assert tree_state(root) == start  # not even the runtime value of a refused fix
    assert foreign.read_text().endswith("never\n")
    # The engine itself refuses too, whatever a plan says.
    target = ConfigFile("/etc/tmpfiles.d/q3cn-doctor-thp.conf")
    assert "never modified" in target.refusal(target.read(host))


@pytest.mark.parametrize("absolute", [True, False])
def test_a_symlink_at_a_target_is_not_followed(tmp_path, absolute):
    root = full_root(tmp_path / "root")
    outside = tmp_path / "outside.conf"
    outside.write_text("outside the tree\n")
    precious = write(root, "etc/precious.conf", "inside the tree\n")
    link = root / "etc/tmpfiles.d/q3cn-doctor-thp.conf"
    link.parent.mkdir(parents=True)
    os.symlink(str(outside) if absolute else "../precious.conf", link)
    start = tree_state(root)
    host, plan = plan_for(root, only=("thp.mode",))
    (thp,) = plan.fixes
    assert thp.status == REFUSED
    assert any("symbolic link" in c.reason for c in thp.changes)
    assert [o.result for o in Engine(host).apply(plan)] == [REFUSED]
    assert tree_state(root) == start
    assert outside.read_text() == "outside the tree\n"
    assert precious.read_text() == "inside the tree\n"
    # The host's own write primitives refuse a link at the target as well.
    with pytest.raises(OSError) as refused:
        host.write_bytes("/etc/tmpfiles.d/q3cn-doctor-thp.conf", b"x\n")
    assert refused.value.errno == errno.ELOOP
    governor = root / GOVERNOR[1:]
    governor.unlink()
    os.symlink("../../../../../../etc/precious.conf", governor)
    with pytest.raises(OSError) as refused:
        host.write_kernel_value(GOVERNOR, "performance\n")
    assert refused.value.errno == errno.ELOOP
    assert outside.read_text() == "outside the tree\n"
    assert precious.read_text() == "inside the tree\n"


def test_a_symlink_at_our_sysctl_file_name_is_left_alone(tmp_path):
    root = full_root(tmp_path / "root")
    (root / OUR_SWAPPINESS).unlink()
    outside = tmp_path / "outside.conf"
    outside.write_text("vm.swappiness = 60\n")
    os.symlink(str(outside), root / OUR_SWAPPINESS)
    outcomes, plan = apply_all(root, only=("sysctl.swappiness",))
    assert all(o.result == DONE for o in outcomes)
    # Another name was chosen; the link and what it points to are untouched.
    assert os.readlink(root / OUR_SWAPPINESS) == str(outside)
    assert outside.read_text() == "vm.swappiness = 60\n"
    assert (root / "etc/sysctl.d/zz-q3cn-doctor-swappiness.conf").read_text().endswith(
        "vm.swappiness = 0\n")


def test_not_root_changes_nothing(tmp_path):
    root = full_root(tmp_path / "root")
    start = tree_state(root, skip=())
    host, plan = plan_for(root, euid=1000, only=ALL_FIXES, service="llama-server")
    denied = needs_root(plan.pending_changes(), host)
    assert {c.what for c in denied} >= {"vm.swappiness", "transparent huge pages"}
    assert tree_state(root, skip=()) == start
    # As root (the same tree, the host's euid 0) nothing is denied.
    host, plan = plan_for(root, euid=0, only=ALL_FIXES, service="llama-server")
    assert needs_root(plan.pending_changes(), host) == []


# -- the kernel says no -------------------------------------------------------------------------
def test_a_sysfs_write_the_kernel_refuses_is_a_failed_fix(tmp_path):
    root = full_root(tmp_path / "root")
    start = tree_state(root)
    host = RootHost(str(root), euid=0)
    host.faults["write:" + GOVERNOR] = errno.EINVAL
    outcomes, _ = apply_all(root, host=host)
    results = by_what(outcomes)
    assert results["governor on CPUs 0-1"] == FAILED_OUTCOME
    failed = next(o for o in outcomes if o.result == FAILED_OUTCOME)
    assert "EINVAL" in failed.detail
    assert (root / GOVERNOR[1:]).read_text() == "powersave\n"
    assert results["vm.swappiness"] == DONE  # the other fixes still went through
    states = {e["what"]: e["state"] for e in Journal(RootHost(str(root))).entries}
    assert states["governor on CPUs 0-1"] == FAILED
    revert(root)
    assert tree_state(root) == start


class ClampingHost(RootHost):
    """A kernel that keeps 5 huge pages a program still holds, whatever is written."""

    def _write_kernel_value(self, path: str, data: bytes) -> None:
        if path.endswith("/nr_hugepages") and data.strip() == b"0":
            data = b"5\n"
        super()._write_kernel_value(path, data)


def test_a_value_that_reads_back_different_is_a_failed_fix_and_reverts(tmp_path):
    root = full_root(tmp_path / "root")
    start = tree_state(root)
    outcomes, _ = apply_all(root, host=ClampingHost(str(root), euid=0),
                            only=("hugepages.release",))
    (outcome,) = outcomes
    assert outcome.result == FAILED_OUTCOME
    assert "reads back 5" in outcome.detail
    (entry,) = Journal(RootHost(str(root))).entries
    assert entry["state"] == APPLIED and entry["after"] == "5"  # what it really is now
    revert(root)
    assert tree_state(root) == start


class UndoingHost(RootHost):
    """A daemon that puts the governor back to powersave as soon as boost is switched on."""

    def _write_kernel_value(self, path: str, data: bytes) -> None:
        super()._write_kernel_value(path, data)
        if path.endswith("/cpufreq/boost"):
            super()._write_kernel_value(GOVERNOR, b"powersave\n")


def test_a_change_undone_by_a_later_one_is_a_failed_fix(tmp_path):
    """Every change is read back once all of them are made: the governor read back fine
    right after its write, then turning boost on undid it."""
    root = full_root(tmp_path / "root")
    start = tree_state(root)
    outcomes, _ = apply_all(root, host=UndoingHost(str(root), euid=0), persist=False,
                            only=("cpu.governor", "cpu.boost"))
    results = by_what(outcomes)
    assert results == {"EPP on CPUs 0-1": DONE, "governor on CPUs 0-1": FAILED_OUTCOME,
                       "turbo boost (boost)": DONE}
    failed = next(o for o in outcomes if o.result == FAILED_OUTCOME)
    assert "no longer holds" in failed.detail and "reads powersave" in failed.detail
    assert (failed.before, failed.after) == ("powersave", "powersave")
    assert (root / GOVERNOR[1:]).read_text() == "powersave\n"
    # The journal still holds the write: revert finds it as before and restores the rest.
    states = {e["what"]: e["state"] for e in Journal(RootHost(str(root))).entries}
    assert states["governor on CPUs 0-1"] == APPLIED
    reverted = by_what(revert(root))
    assert reverted["governor on CPUs 0-1"] == "unchanged"
    assert tree_state(root) == start


# -- revert leaves others' changes alone ----------------------------------------------------------
def test_revert_leaves_alone_a_file_changed_since_we_wrote_it(tmp_path):
    root = full_root(tmp_path / "root")
    apply_all(root, only=("sysctl.swappiness", "thp.mode"))
    ours = root / "etc/tmpfiles.d/q3cn-doctor-thp.conf"
    edited = ours.read_text() + "# my own line\n"
    ours.write_text(edited)
    (root / "proc/sys/vm/swappiness").write_text("10\n")  # someone set it by hand
    outcomes = by_what(revert(root))
    assert outcomes["/etc/tmpfiles.d/q3cn-doctor-thp.conf (THP madvise at boot)"] == LEFT
    assert outcomes["vm.swappiness"] == LEFT
    assert outcomes["transparent huge pages"] == REVERTED
    assert ours.read_text() == edited
    assert (root / "proc/sys/vm/swappiness").read_text() == "10\n"
    assert (root / THP[1:]).read_text() == "always madvise [never]\n"
    # Left entries are reported once, then kept out of later reverts (and shown by --status).
    assert revert(root) == []
    rows = Engine(RootHost(str(root))).status()
    assert {r["state"] for r in rows} == {LEFT}


def test_revert_restores_recorded_values_not_defaults(tmp_path):
    root = full_root(tmp_path / "root")
    (root / "proc/sys/vm/swappiness").write_text("37\n")  # an unusual value, no default
    apply_all(root, only=("sysctl.swappiness",), persist=False)
    assert (root / "proc/sys/vm/swappiness").read_text() == "0\n"
    revert(root)
    assert (root / "proc/sys/vm/swappiness").read_text() == "37\n"


def test_a_file_is_restored_with_its_recorded_mode_even_zero(tmp_path):
    """Revert restores the recorded mode, never the default: 0o000 included (falsy)."""
    root = full_root(tmp_path / "root")
    host = RootHost(str(root), euid=0)
    target = ConfigFile("/etc/sysctl.d/99-q3cn-doctor-swappiness.conf")
    recorded = ConfigFile.wanted(header("sysctl.swappiness").encode() + b"vm.swappiness = 5\n",
                                 0o000)
    target.write(host, recorded)
    assert stat.S_IMODE(os.stat(root / OUR_SWAPPINESS).st_mode) == 0o000
    target.write(host, ConfigFile.wanted(b"x\n", 0o640))
    assert stat.S_IMODE(os.stat(root / OUR_SWAPPINESS).st_mode) == 0o640


def test_the_journal_is_written_before_the_change(tmp_path):
    root = full_root(tmp_path / "root")
    seen: list[tuple[str, str]] = []

    def watch(step: str) -> None:
        if step.startswith(("record", "change")):
            seen.append((step, (root / "proc/sys/vm/swappiness").read_text()))

    apply_all(root, step=watch, only=("sysctl.swappiness",), persist=False)
    assert seen == [("record 1", "60\n"), ("change 1", "0\n")]


def test_an_unwritable_journal_stops_everything(tmp_path):
    from q3cn_doctor.fixing.journal import JournalError

    root = full_root(tmp_path / "root")
    start = tree_state(root)
    host = RootHost(str(root), euid=0)
    host.faults["write:/var/lib/q3cn-doctor/journal.json"] = errno.ENOSPC
    with pytest.raises(JournalError):
        apply_all(root, host=host)
    shutil.rmtree(root / STATE, ignore_errors=True)
    assert tree_state(root) == start


def test_a_corrupt_journal_is_refused_not_overwritten(tmp_path):
    from q3cn_doctor.fixing.journal import JournalError

    root = full_root(tmp_path / "root")
    write(root, f"{STATE}/journal.json", "{not json")
    with pytest.raises(JournalError):
        revert(root)
    with pytest.raises(JournalError):
        apply_all(root)
    assert (root / STATE / "journal.json").read_text() == "{not json"
    assert (root / "proc/sys/vm/swappiness").read_text() == "60\n"


@pytest.mark.parametrize("entries", [
    [1],  # not an object
    [{"state": "applied"}],  # fields missing
    [{"seq": 1, "time": "t", "state": "applied", "fix": "x", "before": "1",
      "target": {"kind": "sysctl"}}],  # a target without its path
    [{"seq": 1, "time": "t", "state": "gone", "fix": "x", "before": "1",
      "target": {"kind": "sysctl", "path": "/proc/sys/vm/swappiness"}}],  # unknown state
], ids=["number", "no-fields", "no-path", "unknown-state"])
def test_a_damaged_journal_entry_is_refused_as_a_whole(tmp_path, entries):
    """A journal that parses but holds entries q3cn-doctor did not write is refused before
    anything is read from it: no traceback half-way through a revert."""
    from q3cn_doctor.fixing.journal import JournalError

    root = full_root(tmp_path / "root")
    write(root, f"{STATE}/journal.json", json.dumps({"format": 1, "entries": entries}))
    with pytest.raises(JournalError, match="entry 1 is not one q3cn-doctor wrote"):
        revert(root)
    with pytest.raises(JournalError):
        Engine(RootHost(str(root))).status()
    assert (root / "proc/sys/vm/swappiness").read_text() == "60\n"


def test_a_change_of_a_kind_this_version_cannot_undo_is_refused(tmp_path):
    """An entry from a newer q3cn-doctor (a target kind this version lacks): revert
    refuses, before restoring anything, rather than guessing."""
    from q3cn_doctor.fixing.journal import JournalError

    root = full_root(tmp_path / "root")
    apply_all(root, only=("sysctl.swappiness",), persist=False)
    path = root / STATE / "journal.json"
    document = json.loads(path.read_text())
    document["entries"].insert(0, {"seq": 0, "time": "t", "state": "applied", "fix": "new",
                                   "what": "a future change", "before": None,
                                   "target": {"kind": "future", "path": "/x"}})
    path.write_text(json.dumps(document))
    with pytest.raises(JournalError, match="cannot undo"):
        revert(root)
    assert (root / "proc/sys/vm/swappiness").read_text() == "0\n"  # nothing half-done


@pytest.mark.slow  # a full apply and revert for every step of the revert
def test_a_crash_during_revert_is_finished_by_the_next_revert(tmp_path):
    names: list[str] = []
    counted = full_root(tmp_path / "count")
    apply_all(counted)
    Engine(RootHost(str(counted), euid=0), names.append).revert()
    assert any(n.startswith("restore") for n in names)
    for index, name in enumerate(names):
        root = full_root(tmp_path / f"crash-{index}")
        start = tree_state(root)
        apply_all(root)

        def crash(step: str, _at=name) -> None:
            if step == _at:
                raise Crash(step)

        with pytest.raises(Crash):
            Engine(RootHost(str(root), euid=0), crash).revert()
        revert(root)
        assert tree_state(root) == start, f"crash after {name!r} of revert not finished"


def test_one_run_at_a_time(tmp_path):
    from q3cn_doctor.fixing.journal import JournalError

    root = full_root(tmp_path / "root")
    start = tree_state(root)
    (root / STATE).mkdir(mode=0o700)
    other = RootHost(str(root), euid=0)
    with other.locked("/var/lib/q3cn-doctor/lock"):  # another `fix --apply` is running
        with pytest.raises(JournalError, match="another `q3cn-doctor fix`"):
            apply_all(root)
        assert tree_state(root) == start
    outcomes, _ = apply_all(root)  # once it has finished
    assert outcomes and all(o.result == DONE for o in outcomes)

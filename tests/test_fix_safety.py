"""The fix engine against a hostile or a dying world (issue 18: items 3, 4, 10, 13, 14, 15,
the journal and hooks.json fuzzing, and kill -9 inside a step).

Every host is a RootHost on a tree in tmp_path. A kill is a ``Crash`` (a BaseException
nothing in the engine catches) raised at a system call of a write primitive through
``host.syscall_hook``, and every call after it raises too: a killed process does no
cleanup. The next run is a fresh host reading the journal from disk, as after a reboot.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from q3cn_doctor.fixing.engine import DONE, FAILED_OUTCOME, Engine
from q3cn_doctor.fixing.journal import LEFT, REVERTED, Journal, JournalError
from q3cn_doctor.fixing.plan import REFUSED, Change, FixContext, FixOptions, FixPlan
from q3cn_doctor.fixing.targets import (
    ALLOWED_PATHS,
    ConfigFile,
    DaemonProfile,
    KernelValue,
    ThreadAffinity,
    header,
)
from q3cn_doctor.host.live import RootHost
from test_cli import cli
from test_fix_engine import (
    OUR_SWAPPINESS,
    STATE,
    THP,
    Crash,
    apply_all,
    by_what,
    full_root,
    revert,
    tree_state,
    write,
)

JOURNAL = STATE + "/journal.json"
ROOT_ENV = {"Q3CN_DOCTOR_EUID": "0"}
KILL_FIXES = ("sysctl.swappiness", "thp.mode", "cpu.affinity")  # a kernel value, a file in
#  a folder the fix creates, a rewrite of a file in place, and a process's threads


def temporaries(root: Path) -> list[str]:
    return [os.path.relpath(os.path.join(folder, name), root)
            for folder, _, names in os.walk(root) for name in names
            if name.startswith(".q3cn-doctor.")]


class Killer:
    """A syscall hook that kills the process at the ``at``-th system call (0-based)."""

    def __init__(self, at: int) -> None:
        self.at, self.seen, self.dead = at, 0, False

    def __call__(self, operation: str, path: str) -> None:
        if self.dead or self.seen == self.at:
            self.dead = True
            raise Crash(f"killed at {operation} {path}")
        self.seen += 1


def counted(root: Path, act) -> int:
    """How many system calls ``act(host)`` makes on a copy of ``root``."""
    host = RootHost(str(root), euid=0)
    calls: list[str] = []
    host.syscall_hook = lambda operation, path: calls.append(operation)
    act(host)
    return len(calls)


# -- kill -9 at every system call of apply and of revert -----------------------------------
def _apply(host: RootHost) -> None:
    apply_all(Path(host.prefix), host=host, only=KILL_FIXES)


def _killed_apply_is_reverted(tmp_path: Path, index: int) -> None:
    root = full_root(tmp_path / f"kill-{index}")
    start = tree_state(root)
    host = RootHost(str(root), euid=0)
    host.syscall_hook = Killer(index)
    with pytest.raises(Crash):
        _apply(host)
    outcomes = revert(root)
    assert all(o.result in (REVERTED, "unchanged") for o in outcomes), (index, outcomes)
    assert tree_state(root) == start, f"a kill at system call {index} of apply not undone"
    assert temporaries(root) == [], index
    assert Journal(RootHost(str(root), euid=0)).open_entries() == []


def _killed_revert_is_finished(tmp_path: Path, index: int) -> None:
    root = full_root(tmp_path / f"kill-revert-{index}")
    start = tree_state(root)
    apply_all(root, only=KILL_FIXES)
    host = RootHost(str(root), euid=0)
    host.syscall_hook = Killer(index)
    with pytest.raises(Crash):
        Engine(host).revert()
    outcomes = revert(root)
    assert all(o.result in (REVERTED, "unchanged") for o in outcomes), (index, outcomes)
    assert tree_state(root) == start, f"a kill at system call {index} of revert not finished"
    assert temporaries(root) == [], index


def _apply_calls(tmp_path: Path) -> int:
    return counted(full_root(tmp_path / "count-apply"), _apply)


def _revert_calls(tmp_path: Path) -> int:
    root = full_root(tmp_path / "count-revert")
    apply_all(root, only=KILL_FIXES)
    return counted(root, lambda host: Engine(host).revert())


def test_a_kill_inside_a_step_of_apply_is_reverted_byte_for_byte(tmp_path):
    """A sample of the system calls (every 15th, the last one, each rename): the whole
    sweep is the slow test below."""
    total = _apply_calls(tmp_path)
    assert total > 100
    for index in sorted({*range(0, total, 15), total - 1}):
        _killed_apply_is_reverted(tmp_path, index)


@pytest.mark.slow  # one apply and revert per system call: ~230 of them
def test_a_kill_at_every_system_call_of_apply_is_reverted_byte_for_byte(tmp_path):
    for index in range(_apply_calls(tmp_path)):
        _killed_apply_is_reverted(tmp_path, index)


def test_a_kill_inside_a_step_of_revert_is_finished_by_the_next(tmp_path):
    total = _revert_calls(tmp_path)
    assert total > 50
    for index in sorted({*range(0, total, 15), total - 1}):
        _killed_revert_is_finished(tmp_path, index)


@pytest.mark.slow  # one apply and two reverts per system call of a revert
def test_a_kill_at_every_system_call_of_revert_is_finished_by_the_next(tmp_path):
    for index in range(_revert_calls(tmp_path)):
        _killed_revert_is_finished(tmp_path, index)


# -- 13: cpu.affinity killed half-way through re-pinning ---------------------------------------
class KilledMidRepin(RootHost):
    """Killed after re-pinning the first thread, before the second."""

    def _set_affinity(self, pid: int, tid: int, cpus: list[int]) -> None:
        if tid == 4243:
            raise Crash("killed while re-pinning")
        super()._set_affinity(pid, tid, cpus)


def test_a_process_half_re_pinned_by_a_killed_run_is_restored(tmp_path):
    root = full_root(tmp_path / "root")
    start = tree_state(root)
    with pytest.raises(Crash):
        apply_all(root, host=KilledMidRepin(str(root), euid=0), only=("cpu.affinity",))
    assert "Cpus_allowed_list:\t0-1\n" in (root / "proc/4242/task/4242/status").read_text()
    assert "Cpus_allowed_list:\t0\n" in (root / "proc/4242/task/4243/status").read_text()
    (entry,) = Journal(RootHost(str(root))).entries
    assert entry["before"]["threads"] == {"4242": "0", "4243": "0"}  # each thread's mask
    outcomes = revert(root)
    assert [o.result for o in outcomes] == [REVERTED]
    assert tree_state(root) == start


def test_a_thread_re_pinned_by_someone_else_since_is_left_alone(tmp_path):
    root = full_root(tmp_path / "root")
    apply_all(root, only=("cpu.affinity",))
    status = root / "proc/4242/task/4243/status"
    status.write_text(status.read_text().replace("Cpus_allowed_list:\t0-1",
                                                 "Cpus_allowed_list:\t1"))
    assert [o.result for o in revert(root)] == [LEFT]


# -- 14: temporaries and torn rewrites -------------------------------------------------------------
def test_a_kill_at_the_rename_leaves_nothing_after_the_next_revert(tmp_path):
    """Killed between writing a file's temporary and renaming it into place, in a folder
    the fix created (/etc/tmpfiles.d): the next run removes the temporary and the folder."""
    root = full_root(tmp_path / "root")
    start = tree_state(root)
    host = RootHost(str(root), euid=0)
    dead = []

    def kill_at_rename(operation: str, path: str) -> None:
        if dead or (operation == "rename" and path.endswith("q3cn-doctor-thp.conf")):
            dead.append(path)
            raise Crash("killed at rename")

    host.syscall_hook = kill_at_rename
    with pytest.raises(Crash):
        apply_all(root, host=host, only=("thp.mode",))
    assert [os.path.dirname(t) for t in temporaries(root)] == ["etc/tmpfiles.d"]
    revert(root)
    assert temporaries(root) == []
    assert tree_state(root) == start  # /etc/tmpfiles.d, which the fix made, is gone too


def test_a_kill_at_the_truncate_of_an_in_place_rewrite_cannot_tear_it(tmp_path, monkeypatch):
    """A tree's kernel file was rewritten in place, write then ftruncate: a kill between
    them tore it and revert left it alone. Now it is replaced whole."""
    root = full_root(tmp_path / "root")
    start = tree_state(root)

    def killed_truncate(*args, **kwargs):
        raise Crash("killed at ftruncate")

    monkeypatch.setattr(os, "ftruncate", killed_truncate)
    with contextlib.suppress(Crash):
        apply_all(root, only=("sysctl.swappiness",), persist=False)
    monkeypatch.undo()
    assert (root / "proc/sys/vm/swappiness").read_text() in ("60\n", "0\n")  # never "0\n\n"
    assert [o.result for o in revert(root)] in ([REVERTED], ["unchanged"])
    assert tree_state(root) == start


def test_only_our_own_temporaries_of_dead_runs_are_removed(tmp_path):
    root = full_root(tmp_path / "root")
    folder = root / "etc/sysctl.d"
    ours_dead = folder / ".q3cn-doctor.999999999.0123456789ab"
    ours_alive = folder / f".q3cn-doctor.{os.getppid()}.0123456789ab"  # a running process
    someone_elses = folder / ".q3cn-doctor-notes.txt"
    for path in (ours_dead, ours_alive, someone_elses):
        path.write_text("x")
    link = folder / ".q3cn-doctor.999999998.0123456789ab"
    os.symlink(root / "etc/passwd", link)
    removed = RootHost(str(root), euid=0).remove_temporaries("/etc/sysctl.d")
    assert removed == [ours_dead.name]
    assert ours_alive.exists() and someone_elses.exists() and link.is_symlink()


# -- 15: owner and mode restored exactly ---------------------------------------------------------
def test_revert_restores_owner_and_setuid_mode_exactly(tmp_path):
    root = full_root(tmp_path / "root")
    ours = root / OUR_SWAPPINESS
    os.chown(ours, 1000, 1000)
    ours.chmod(0o4644)  # chown after chmod would clear it: the order is part of the test
    start = tree_state(root)
    outcomes, _ = apply_all(root, only=("sysctl.swappiness",))
    assert all(o.result == DONE for o in outcomes)
    assert (ours.stat().st_uid, ours.stat().st_gid) == (0, 0)  # ours while applied
    reverted = by_what(revert(root))
    assert set(reverted.values()) == {REVERTED}
    info = ours.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (1000, 1000, 0o4644)
    assert tree_state(root) == start


class CannotChown(RootHost):
    """A host where the owner cannot be given back (not root on the tree, say)."""

    def _write_bytes(self, path, data, mode, owner):
        super()._write_bytes(path, data, mode, None)


def test_revert_says_restored_only_when_the_owner_came_back(tmp_path):
    root = full_root(tmp_path / "root")
    os.chown(root / OUR_SWAPPINESS, 1000, 1000)
    apply_all(root, only=("sysctl.swappiness",))
    outcomes = by_what(Engine(CannotChown(str(root), euid=0)).revert())
    mine = next(what for what in outcomes if what.startswith("/etc/sysctl.d/"))
    assert outcomes[mine] == FAILED_OUTCOME
    assert outcomes["vm.swappiness"] == REVERTED


# -- 3: a folder swapped for a link between the check and the write -----------------------------
def _swap(folder: Path, outside: Path) -> None:
    folder.rename(folder.with_name(folder.name + ".real"))
    os.symlink(outside, folder)


def test_a_folder_swapped_for_a_link_mid_write_puts_nothing_outside(tmp_path, monkeypatch):
    root = full_root(tmp_path / "root")
    outside = tmp_path / "outside"
    outside.mkdir()
    host = RootHost(str(root), euid=0)
    real_open, swapped = os.open, []

    def racing_open(path, *args, **kwargs):
        if not swapped:  # the check is done, the first open of the write is next
            swapped.append(True)
            _swap(root / "etc/sysctl.d", outside)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", racing_open)
    with pytest.raises(OSError) as refused:
        host.write_bytes("/etc/sysctl.d/99-q3cn-doctor-swappiness.conf", b"vm.swappiness = 0\n")
    monkeypatch.undo()
    assert swapped and refused.value.errno in (errno.ELOOP, errno.ENOTDIR)
    assert os.listdir(outside) == []


def test_a_live_write_is_refused_the_same_way(tmp_path):
    """The live host walks from / with the same descriptors (here into tmp_path, which is
    not the machine's configuration): the swap at the first system call is refused."""
    from q3cn_doctor.host.live import LiveHost

    folder = tmp_path / "etc" / "sysctl.d"
    folder.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    host = LiveHost()
    host.syscall_hook = lambda operation, path: (
        None if folder.is_symlink() else _swap(folder, outside))
    with pytest.raises(OSError) as refused:
        host.write_bytes(str(folder / "99-q3cn-doctor-x.conf"), b"x\n")
    assert refused.value.errno in (errno.ELOOP, errno.ENOTDIR)
    assert os.listdir(outside) == []


@pytest.mark.slow  # one apply per system call of an apply
def test_a_swap_at_any_system_call_of_an_apply_puts_nothing_outside(tmp_path):
    """The race at each system call of the apply: the engine's writes land in the tree or
    fail, and revert still restores everything that did land."""
    total = counted(full_root(tmp_path / "count"), lambda host: apply_all(
        Path(host.prefix), host=host, only=("sysctl.swappiness",)))
    for index in range(total):
        root = full_root(tmp_path / f"race-{index}")
        outside = tmp_path / f"outside-{index}"
        outside.mkdir()
        host = RootHost(str(root), euid=0)
        calls = []

        def race(operation, path, _root=root, _outside=outside, _at=index, _calls=calls):
            if len(_calls) == _at:
                _swap(_root / "etc/sysctl.d", _outside)
            _calls.append(operation)

        host.syscall_hook = race
        apply_all(root, host=host, only=("sysctl.swappiness",))
        assert os.listdir(outside) == [], index


# -- 4: the journal is checked against the allow-list before anything is restored --------------
def _journal_with(root: Path, entry: dict) -> None:
    write(root, JOURNAL, json.dumps({"format": 1, "entries": [entry]}))
    os.chmod(root / STATE, 0o700)


def _file_entry(path: str, data: bytes, **extra) -> dict:
    return {"seq": 1, "time": "t", "state": "applied", "fix": "sysctl.swappiness",
            "what": "/etc/sysctl.d/99-q3cn-doctor-swappiness.conf (vm.swappiness = 0)",
            "target": {"kind": "file", "path": path, "mode": 0o644},
            "before": ConfigFile.wanted(data, 0o777), "after": {"exists": False}, **extra}


def test_a_hand_edited_journal_cannot_make_revert_write_anywhere(tmp_path):
    root = full_root(tmp_path / "root")
    shadow = write(root, "etc/shadow", "root:$6$hash:19000:0:99999:7:::\n")
    _journal_with(root, _file_entry("/etc/shadow", b"root::0:0:::::\n"))
    start = tree_state(root)
    for host in (RootHost(str(root), euid=0),):
        with pytest.raises(JournalError, match="not a file q3cn-doctor's fixes write"):
            Engine(host).revert()
    result = cli("fix", "--root", str(root), "--revert", "--yes", env=ROOT_ENV)
    assert result.returncode == 1 and "not a file q3cn-doctor's fixes write" in result.stderr
    assert "Traceback" not in result.stderr
    assert tree_state(root) == start
    assert shadow.read_text().startswith("root:$6$")


@pytest.mark.parametrize("change", [
    {"before": ConfigFile.wanted(b"kernel.core_pattern = |/tmp/x\n")},  # not our header
    {"created_dirs": ["/var/lib/victim"]},
    {"created_dirs": ["/etc/sysctl.d/../../var/lib/victim"]},
    {"what": "/etc/tmpfiles.d/q3cn-doctor-thp.conf (THP)"},  # names another file
    {"target": {"kind": "sysctl", "path": "/proc/sys/kernel/core_pattern", "choice": False,
                "key": None}, "before": "|/tmp/x", "after": "core", "created_dirs": []},
    {"target": {"kind": "profile", "path": "tuned", "daemon": "tuned"},
     "before": "--help", "after": "throughput-performance"},
    {"target": {"kind": "file", "path": OUR_SWAPPINESS, "mode": 2**70}},
], ids=["not-ours", "created-dir-elsewhere", "created-dir-dotdot", "what-lies",
        "kernel-off-list", "profile-argument", "huge-mode"])
def test_a_journal_entry_no_fix_could_write_is_refused(tmp_path, change):
    root = full_root(tmp_path / "root")
    victim = root / "var/lib/victim"
    victim.mkdir(parents=True)
    entry = _file_entry("/etc/sysctl.d/99-q3cn-doctor-swappiness.conf",
                        header("sysctl.swappiness").encode() + b"vm.swappiness = 1\n",
                        created_dirs=["/etc/sysctl.d"])
    entry.update(change)
    _journal_with(root, entry)
    start = tree_state(root)
    with pytest.raises(JournalError, match="is not one q3cn-doctor wrote"):
        revert(root)
    assert tree_state(root) == start and victim.is_dir()


@pytest.mark.parametrize("owner,mode", [(65534, 0o700), (0, 0o777), (0, 0o720)])
def test_a_state_folder_others_control_is_refused(tmp_path, owner, mode):
    root = full_root(tmp_path / "root")
    apply_all(root, only=("sysctl.swappiness",), persist=False)
    os.chown(root / STATE, owner, owner)
    os.chmod(root / STATE, mode)
    for act in (lambda: revert(root), lambda: apply_all(root, only=("sysctl.swappiness",)),
                lambda: Engine(RootHost(str(root))).status()):
        with pytest.raises(JournalError, match="owned by uid|writable by other"):
            act()
    assert (root / "proc/sys/vm/swappiness").read_text() == "0\n"


def test_a_journal_that_is_a_link_is_refused(tmp_path):
    root = full_root(tmp_path / "root")
    apply_all(root, only=("sysctl.swappiness",), persist=False)
    elsewhere = tmp_path / "journal.json"
    shutil.move(root / JOURNAL, elsewhere)
    os.symlink(elsewhere, root / JOURNAL)
    with pytest.raises(JournalError, match="is a link"):
        revert(root)


def test_the_planner_refuses_a_target_off_the_allow_list(tmp_path):
    root = full_root(tmp_path / "root")
    host = RootHost(str(root), euid=0)
    plan = FixPlan("rogue.fix", "A fix that asks too much")
    ctx = FixContext(host, None, None, FixOptions(), [], plan)
    ctx.file("/etc/shadow", header("rogue.fix") + "x\n")
    ctx.kernel("/proc/sys/kernel/core_pattern", "|/tmp/x", "core pattern", kind="sysctl")
    ctx.add(Change("rogue.fix", DaemonProfile("tuned"), "tuned", "balanced", "x"))
    assert [c.status for c in plan.changes] == [REFUSED, REFUSED, "change"]
    assert "not a file q3cn-doctor's fixes write" in plan.changes[0].reason


def test_every_path_a_fix_plans_is_on_the_allow_list(tmp_path):
    """The allow-list and fixes/ agree: full_root gives every fix work, none is refused."""
    _, plan = apply_all(full_root(tmp_path / "root"))
    targets = [c.target for p in plan.fixes for c in p.changes]
    assert targets and all(t.not_allowed() is None for t in targets)
    assert {t.kind for t in targets} >= {"file", "sysctl", "sysfs", "affinity"}
    assert set(ALLOWED_PATHS) == {"sysctl", "sysfs", "file"}


# -- 10: the journal does not grow with each apply/revert cycle ------------------------------------
def test_apply_revert_cycles_do_not_grow_the_journal(tmp_path):
    root = full_root(tmp_path / "root")
    sizes = []
    for _ in range(12):
        apply_all(root, only=("sysctl.swappiness",))
        revert(root)
        sizes.append((root / JOURNAL).stat().st_size)
    assert max(sizes[2:]) <= sizes[1], sizes


@pytest.mark.slow  # a large file: a journal of 2000 apply/revert cycles
def test_a_journal_of_2000_cycles_is_compacted_by_the_next_apply(tmp_path):
    root = full_root(tmp_path / "root")
    apply_all(root, only=("sysctl.swappiness",))
    revert(root)
    document = json.loads((root / JOURNAL).read_text())
    cycle = document["entries"]
    document["entries"] = [dict(entry, seq=n * len(cycle) + i + 1)
                           for n in range(2000) for i, entry in enumerate(cycle)]
    (root / JOURNAL).write_text(json.dumps(document))
    assert (root / JOURNAL).stat().st_size > 2_000_000
    outcomes, _ = apply_all(root, only=("sysctl.swappiness",))
    assert all(o.result == DONE for o in outcomes)
    entries = Journal(RootHost(str(root))).entries
    assert len(entries) == len(outcomes)  # only this run's
    assert (root / JOURNAL).stat().st_size < 20_000


# -- fuzzing: a mutated journal is refused clearly, and nothing leaves the allow-list ------------
def _applied_journal(tmp_path: Path) -> tuple[Path, dict]:
    root = full_root(tmp_path / "template")
    apply_all(root, only=("sysctl.swappiness", "thp.mode", "cpu.affinity"))
    return root, json.loads((root / JOURNAL).read_text())


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
    | st.text(max_size=20) | st.sampled_from(["/etc/shadow", "/proc/sys/kernel/core_pattern",
                                              "..", "/etc", "file", "sysctl", "applied",
                                              base64.b64encode(b"root::0:0\n").decode()]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=3),
    max_leaves=6)


def _paths(document) -> list[list]:
    """Every place in a JSON document a mutation can land, as a key path."""
    found = [[]]
    if isinstance(document, dict):
        for key, value in document.items():
            found += [[key] + rest for rest in _paths(value)]
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += [[index] + rest for rest in _paths(value)]
    return found


def _mutate(document, where: list, value):
    if not where:
        return value
    copy = json.loads(json.dumps(document))
    node = copy
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    return copy


ALLOWED_RELATIVE = ("proc/", "sys/", "etc/sysctl.d", "etc/tmpfiles.d", "etc/security/limits.d",
                    "etc/systemd/system/", STATE)


@pytest.mark.slow  # a fuzz sweep: 60 mutated journals, each reverted
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_mutated_journal_is_refused_or_reverted_inside_the_allow_list(tmp_path_factory, data):
    base = tmp_path_factory.mktemp("fuzz")
    template, document = _applied_journal(base)
    where = data.draw(st.sampled_from(_paths(document)))
    value = data.draw(JSON_VALUES)
    mutated = _mutate(document, where, value)
    root = base / "root"
    shutil.copytree(template, root, symlinks=True)
    (root / JOURNAL).write_text(json.dumps(mutated))
    start = tree_state(root, skip=())
    try:
        Engine(RootHost(str(root), euid=0)).status()
        revert(root)
    except JournalError as exc:
        assert str(exc)  # a clear message, and nothing was written
        assert tree_state(root, skip=()) == start
        return
    changed = {path for path in set(start) | set(tree_state(root, skip=()))
               if start.get(path) != tree_state(root, skip=()).get(path)}
    assert all(path.startswith(ALLOWED_RELATIVE) for path in changed), changed


# -- hooks.json: its entries name only hook files, its folders only theirs -----------------------
def _record(root: Path, hooks: dict) -> None:
    write(root, STATE + "/hooks.json", json.dumps({"format": 1, "hooks": hooks}))
    os.chmod(root / STATE, 0o700)


@pytest.mark.parametrize("path,entry", [
    ("/etc/pacman.d/hooks/95-q3cn-doctor.hook",
     {"kind": "pacman", "unit": None, "sha256": "0" * 64, "created_dirs": ["/var/lib/victim"]}),
    ("/etc/shadow", {"kind": "pacman", "unit": None, "sha256": "0" * 64, "created_dirs": []}),
    ("/etc/systemd/system/llama.service.d/95-q3cn-doctor-guard.conf",
     {"kind": "service", "unit": ["llama.service"], "sha256": "0" * 64}),
    ("/etc/systemd/system/llama.service.d/95-q3cn-doctor-guard.conf",
     {"kind": "service", "unit": "other.service", "sha256": "0" * 64}),
], ids=["created-dir-elsewhere", "not-a-hook-path", "unit-a-list", "unit-mismatch"])
def test_a_hooks_record_no_install_wrote_is_refused_clearly(tmp_path, path, entry):
    root = full_root(tmp_path / "root")
    victim = root / "var/lib/victim"
    victim.mkdir(parents=True)
    _record(root, {path: entry})
    start = tree_state(root, skip=())
    for args in (("status",), ("uninstall", "--pacman"), ("install", "--apt")):
        result = cli("hook", *args, "--root", str(root), env=ROOT_ENV)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "is not one q3cn-doctor wrote" in result.stderr and "Traceback" not in result.stderr
    assert tree_state(root, skip=()) == start and victim.is_dir()


def test_a_hooks_record_in_a_state_folder_others_control_is_refused(tmp_path):
    root = full_root(tmp_path / "root")
    assert cli("hook", "install", "--apt", "--root", str(root), env=ROOT_ENV).returncode == 0
    os.chmod(root / STATE, 0o777)
    result = cli("hook", "uninstall", "--apt", "--root", str(root), env=ROOT_ENV)
    assert result.returncode == 2 and "writable by other users" in result.stderr
    assert (root / "etc/apt/apt.conf.d/99q3cn-doctor").exists()


@pytest.mark.slow  # a fuzz sweep: 40 mutated records, each run
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_mutated_hooks_record_never_crashes_or_removes_a_foreign_folder(tmp_path_factory,
                                                                        data):
    from q3cn_doctor.hooks.install import APT, HookError, Record, run_status, uninstall

    base = tmp_path_factory.mktemp("hooks")
    root = full_root(base / "root")
    victim = root / "etc/victim"
    victim.mkdir(parents=True)
    host = RootHost(str(root), euid=0)
    from q3cn_doctor.hooks.install import install

    install(host, APT, ["/usr/bin/q3cn-doctor"])
    document = json.loads((root / STATE / "hooks.json").read_text())
    where = data.draw(st.sampled_from(_paths(document)))
    value = data.draw(JSON_VALUES | st.just(["/etc/victim"]))
    (root / STATE / "hooks.json").write_text(json.dumps(_mutate(document, where, value)))
    try:
        run_status(RootHost(str(root), euid=0), True)
        uninstall(RootHost(str(root), euid=0), APT, ["/usr/bin/q3cn-doctor"],
                  record=Record(RootHost(str(root), euid=0)))
    except HookError as exc:
        assert str(exc)
    assert victim.is_dir()


# -- the targets' own checks --------------------------------------------------------------------
def test_each_target_kind_knows_its_states():
    assert KernelValue("/proc/sys/vm/swappiness", "sysctl").valid("60")
    assert not KernelValue("/proc/sys/vm/swappiness", "sysctl").valid("6\n0")
    assert ConfigFile(OUR_SWAPPINESS).valid({"exists": False})
    assert not ConfigFile(OUR_SWAPPINESS).valid(dict(ConfigFile.wanted(b"x"), mode=2**70))
    assert not ConfigFile(OUR_SWAPPINESS).valid(dict(ConfigFile.wanted(b"x"), data="@@"))
    assert ThreadAffinity(4242).valid({"start": 1, "threads": {"4242": "0-3"}})
    assert not ThreadAffinity(4242).valid({"start": 1, "threads": {"4242": "0-99999"}})
    assert not DaemonProfile("tuned").valid("-x")
    assert THP.startswith("/sys/") and ALLOWED_PATHS["sysfs"].match(THP)

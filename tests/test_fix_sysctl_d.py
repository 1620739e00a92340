"""sysctl.d precedence: which file wins at boot, and the name q3cn-doctor picks to win.

The rules (systemd-sysctl and procps ``sysctl --system``): *.conf files from
/etc/sysctl.d, /run/sysctl.d, /usr/local/lib/sysctl.d, /usr/lib/sysctl.d and
/lib/sysctl.d; a name in an earlier folder masks the same name in later ones; the
rest are read sorted by name, and the last assignment wins; /etc/sysctl.conf is
read after all of them.
"""

from __future__ import annotations

import os

from q3cn_doctor.fixing import dropins as sysctl_d
from q3cn_doctor.fixing.engine import DONE
from q3cn_doctor.fixing.plan import CHANGE
from q3cn_doctor.fixing.targets import header
from q3cn_doctor.host.live import RootHost
from test_fix_engine import (
    OUR_SWAPPINESS,
    apply_all,
    full_root,
    plan_for,
    revert,
    tree_state,
    write,
)

CACHYOS = "usr/lib/sysctl.d/70-cachyos-settings.conf"  # CachyOS ships swappiness 100 for zram


def winner(root) -> tuple[str, str]:
    found = sysctl_d.effective(RootHost(str(root)), "vm.swappiness")
    assert found is not None
    return found.path, found.value


def swappiness_plan(root, **kwargs):
    host, plan = plan_for(root, only=("sysctl.swappiness",), **kwargs)
    (fix,) = plan.fixes
    return host, plan, fix


def test_later_name_wins_across_folders_and_earlier_folders_mask(tmp_path):
    root = tmp_path
    write(root, "usr/lib/sysctl.d/10-a.conf", "vm.swappiness = 10\n")
    write(root, "etc/sysctl.d/20-b.conf", "# comment\n; also a comment\nvm/swappiness=20\n")
    write(root, "lib/sysctl.d/30-c.conf", "-vm.swappiness = 30\n")
    assert winner(root) == ("/lib/sysctl.d/30-c.conf", "30")
    # The same name in /etc masks the one in /lib, whatever it says.
    write(root, "etc/sysctl.d/30-c.conf", "kernel.sysrq = 1\n")
    assert winner(root) == ("/etc/sysctl.d/20-b.conf", "20")
    # /run beats /usr/lib for the same name; a link to /dev/null masks a file away.
    write(root, "run/sysctl.d/20-b.conf", "vm.swappiness = 25\n")
    assert winner(root) == ("/etc/sysctl.d/20-b.conf", "20")
    os.remove(root / "etc/sysctl.d/20-b.conf")
    assert winner(root) == ("/run/sysctl.d/20-b.conf", "25")
    os.symlink("/dev/null", root / "etc/sysctl.d/20-b.conf")
    assert winner(root) == ("/usr/lib/sysctl.d/10-a.conf", "10")
    # /etc/sysctl.conf comes after every file.
    write(root, "etc/sysctl.conf", "vm.swappiness=99\n")
    assert winner(root) == ("/etc/sysctl.conf", "99")
    where = [a.where() for a in sysctl_d.assignments(RootHost(str(root)), "vm.swappiness")]
    assert where == ["/usr/lib/sysctl.d/10-a.conf:1", "/etc/sysctl.conf:1"]


def test_our_file_beats_the_cachyos_vendor_file(tmp_path):
    root = full_root(tmp_path / "root")
    os.remove(root / OUR_SWAPPINESS)
    write(root, CACHYOS, "vm.swappiness = 100\nvm.vfs_cache_pressure = 50\n")
    _, _, fix = swappiness_plan(root)
    files = [c for c in fix.changes if c.target.kind == "file"]
    assert [c.target.path for c in files] == ["/etc/sysctl.d/99-q3cn-doctor-swappiness.conf"]
    assert any("70-cachyos-settings.conf:1" in note for note in fix.notes)
    apply_all(root, only=("sysctl.swappiness",))
    assert winner(root) == ("/etc/sysctl.d/99-q3cn-doctor-swappiness.conf", "0")


def test_a_higher_priority_conflicting_file_makes_us_pick_a_later_name(tmp_path):
    root = full_root(tmp_path / "root")
    os.remove(root / OUR_SWAPPINESS)
    # "99-zzz" sorts after "99-q3cn-doctor-...": it would beat our usual name.
    local = write(root, "etc/sysctl.d/99-zzz-local.conf", "vm.swappiness = 60\n")
    start = tree_state(root)
    _, _, fix = swappiness_plan(root)
    assert fix.status == CHANGE and fix.manual == []
    files = [c.target.path for c in fix.changes if c.target.kind == "file"]
    assert files == ["/etc/sysctl.d/zz-q3cn-doctor-swappiness.conf"]
    outcomes, _ = apply_all(root, only=("sysctl.swappiness",))
    assert all(o.result == DONE for o in outcomes)
    assert winner(root) == ("/etc/sysctl.d/zz-q3cn-doctor-swappiness.conf", "0")
    assert local.read_text() == "vm.swappiness = 60\n"  # never edited
    revert(root)
    assert tree_state(root) == start


def test_a_conflict_no_name_can_beat_is_reported_not_overridden(tmp_path):
    root = full_root(tmp_path / "root")
    os.remove(root / OUR_SWAPPINESS)
    write(root, "etc/sysctl.conf", "# local settings\nvm.swappiness = 60\n")
    _, _, fix = swappiness_plan(root)
    assert [c.target.kind for c in fix.changes] == ["sysctl"]  # the runtime value only
    assert len(fix.manual) == 1
    assert "/etc/sysctl.conf:2 sets vm.swappiness = 60" in fix.manual[0]
    assert "never edits a file it did not create" in fix.manual[0]
    # The same where a file sorts after every name we could use.
    os.remove(root / "etc/sysctl.conf")
    write(root, "run/sysctl.d/zzz-override.conf", "vm.swappiness = 30\n")
    _, _, fix = swappiness_plan(root)
    assert [c.target.kind for c in fix.changes] == ["sysctl"]
    assert "/run/sysctl.d/zzz-override.conf:1" in fix.manual[0]


def test_a_name_taken_by_someone_else_is_never_used(tmp_path):
    root = full_root(tmp_path / "root")
    theirs = write(root, OUR_SWAPPINESS, "vm.swappiness = 60\n")  # no header: not ours
    host, _, fix = swappiness_plan(root)
    files = [c.target.path for c in fix.changes if c.target.kind == "file"]
    assert files == ["/etc/sysctl.d/zz-q3cn-doctor-swappiness.conf"]
    # A same-named file in a later folder is not masked by ours either.
    os.remove(theirs)
    write(root, "usr/lib/sysctl.d/99-q3cn-doctor-swappiness.conf", "vm.swappiness = 60\n")
    _, _, fix = swappiness_plan(root)
    files = [c.target.path for c in fix.changes if c.target.kind == "file"]
    assert files == ["/etc/sysctl.d/zz-q3cn-doctor-swappiness.conf"]


def test_nothing_to_write_where_the_files_already_give_the_value(tmp_path):
    root = full_root(tmp_path / "root")
    os.remove(root / OUR_SWAPPINESS)
    write(root, "etc/sysctl.d/60-llm.conf", "vm.swappiness = 0\n")
    _, _, fix = swappiness_plan(root)
    assert [c.target.kind for c in fix.changes] == ["sysctl"]
    assert any("already holds at boot (/etc/sysctl.d/60-llm.conf:1)" in n for n in fix.notes)


def test_our_earlier_file_is_rewritten_and_restored(tmp_path):
    root = full_root(tmp_path / "root")  # holds our 99-... file with vm.swappiness = 5
    before = (root / OUR_SWAPPINESS).read_bytes()
    _, _, fix = swappiness_plan(root)
    (file_change,) = [c for c in fix.changes if c.target.kind == "file"]
    assert file_change.target.path == "/" + OUR_SWAPPINESS
    assert file_change.status == CHANGE
    apply_all(root, only=("sysctl.swappiness",))
    assert (root / OUR_SWAPPINESS).read_bytes() == (
        header("sysctl.swappiness") + "vm.swappiness = 0\n").encode()
    revert(root)
    assert (root / OUR_SWAPPINESS).read_bytes() == before


def test_runtime_only_plans_no_file(tmp_path):
    root = full_root(tmp_path / "root")
    _, _, fix = swappiness_plan(root, persist=False)
    assert [c.target.kind for c in fix.changes] == ["sysctl"]
    assert any("--runtime-only" in n for n in fix.notes)

"""server.rtprio and rtprio.limit: --prio 2 asks ggml for SCHED_FIFO priority 80, which needs
CAP_SYS_NICE or an RLIMIT_RTPRIO of 80; the fix writes limits.d (or a service drop-in) into a
temp tree, never the machine, and reverts byte for byte."""

from __future__ import annotations

import base64

from conftest import snapshot_findings
from launch_fixtures import guide_machine
from test_fix_engine import full_root, write
from test_fix_fixes import only_fix, round_trip
from test_launch_plan import printed


def test_no_rtprio_is_info_and_offers_the_fix(tmp_path):
    finding = snapshot_findings(guide_machine(tmp_path / "g"), "server.rtprio")["server.rtprio"]
    assert finding.status == "info" and finding.fixes == ["rtprio.limit"]
    assert "soft 0, hard 0" in finding.observed


def test_a_hard_limit_of_99_or_cap_sys_nice_passes(tmp_path):
    for name, kwargs in (("r", {"rtprio": (0, 99)}), ("c", {"capabilities": 1 << 23})):
        found = snapshot_findings(guide_machine(tmp_path / name, **kwargs), "server.rtprio")
        assert found["server.rtprio"].status == "pass"


def test_a_limit_below_80_is_not_enough_for_the_check_or_the_launch(tmp_path):
    root = guide_machine(tmp_path / "g", rtprio=(50, 50))
    assert snapshot_findings(root, "server.rtprio")["server.rtprio"].status == "info"
    assert "--prio" not in printed(root)


def test_another_users_limits_conf_line_decides(tmp_path):
    root = guide_machine(tmp_path / "g")
    fs = root / "fs/etc"
    fs.mkdir(parents=True, exist_ok=True)
    (fs / "passwd").write_text("bob:x:1001:1001::/home/bob:/bin/bash\n")
    (fs / "group").write_text("audio:x:29:bob\n")
    (fs / "security/limits.d").mkdir(parents=True)
    (fs / "security/limits.d/audio.conf").write_text("@audio - rtprio 95\n")
    finding = snapshot_findings(root, "server.rtprio", user="bob")["server.rtprio"]
    assert finding.status == "pass" and "audio.conf:1" in finding.observed


def test_fix_writes_limits_and_a_drop_in_and_reverts(tmp_path):
    root = full_root(tmp_path / "root")
    _, _, fix = only_fix(root, "rtprio.limit", service="llama-server")
    assert [(c.target.path, c.effect) for c in fix.changes] == [
        ("/etc/security/limits.d/95-q3cn-doctor-rtprio-alice.conf", "after-relogin"),
        ("/etc/systemd/system/llama-server.service.d/90-q3cn-doctor-rtprio.conf",
         "after-restart")]
    assert b"alice\tsoft\trtprio\t80\n" in base64.b64decode(fix.changes[0].new["data"])
    round_trip(root, "rtprio.limit", service="llama-server")


def test_fix_leaves_a_later_sufficient_line_alone_and_reports_a_lower_one(tmp_path):
    root = full_root(tmp_path / "root")
    write(root, "etc/security/limits.d/zzz-site.conf", "alice hard rtprio 99\n")
    _, _, fix = only_fix(root, "rtprio.limit")
    assert [c.target.path for c in fix.changes] == [
        "/etc/security/limits.d/95-q3cn-doctor-rtprio-alice.conf"]
    write(root, "etc/security/limits.d/zzz-site.conf", "alice soft rtprio 10\n")
    _, _, fix = only_fix(root, "rtprio.limit")
    assert fix.changes == [] and "zzz-site.conf:1 sets alice soft rtprio 10" in fix.manual[0]

"""cpu.power_daemon on the guide's machine, which runs power-profiles-daemon (its snapshot's
process list), with the replacement steps for each distribution's os-release."""

from __future__ import annotations

import json

from conftest import copy_fixture, snapshot_findings, write_fs
from fixture_hosts import GUIDE, LAPTOP


def test_ppd_running_is_reported_with_the_distributions_replacement(tmp_path):
    root = copy_fixture(GUIDE, tmp_path)
    write_fs(root, "/etc/os-release", 'NAME="Fedora Linux"\nID=fedora\n'
                                      'PRETTY_NAME="Fedora Linux 42 (Workstation Edition)"\n')
    finding = snapshot_findings(root, "cpu.power_daemon")["cpu.power_daemon"]
    assert finding.status == "warn"  # the profile it holds is unknown here
    assert "Fedora Linux 42" in finding.observed
    assert finding.manual[0].startswith("sudo dnf swap power-profiles-daemon tuned-ppd")
    assert "32-35 instead of about 40 tok/s" in finding.impact


def test_ubuntu_by_id_like_and_an_unknown_distribution(tmp_path):
    root = copy_fixture(GUIDE, tmp_path)
    write_fs(root, "/etc/os-release", "ID=pop\nID_LIKE=\"ubuntu debian\"\n")
    finding = snapshot_findings(root, "cpu.power_daemon")["cpu.power_daemon"]
    assert finding.manual[0] == "sudo apt install tuned"
    write_fs(root, "/etc/os-release", "ID=someos\n")
    finding = snapshot_findings(root, "cpu.power_daemon")["cpu.power_daemon"]
    assert finding.manual[0].startswith("Install tuned")


def test_performance_profile_is_info_and_no_daemon_passes(tmp_path):
    root = copy_fixture(GUIDE, tmp_path)
    write_fs(root, "/var/lib/power-profiles-daemon/state.ini",
             "[State]\nDriver=intel_pstate\nProfile=performance\n")
    assert snapshot_findings(root, "cpu.power_daemon")["cpu.power_daemon"].status == "info"
    meta = json.loads((root / "snapshot.json").read_text())
    meta["processes"] = [p for p in meta["processes"] if p["pid"] != 1012]
    (root / "snapshot.json").write_text(json.dumps(meta))
    assert snapshot_findings(root, "cpu.power_daemon")["cpu.power_daemon"].status == "pass"


def test_a_host_without_processes_skips():
    # the HP laptop fixture records files only, no process list
    found = snapshot_findings(LAPTOP, "cpu.power_daemon")["cpu.power_daemon"]
    assert found.status == "skip"

"""cpu.contention, cpu.clocks and cpu.thermal on prometheus/procfs's real /proc and /sys files
(tests/fixtures/hosts/procfs-prometheus-mixed/README.md), on variants of them (each edit
says what it changes), and on a --measure sample replayed from a snapshot's load.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import HOSTS, copy_fixture, snapshot_facts, snapshot_findings, write_fs
from launch_fixtures import guide_machine
from q3cn_doctor.host.sampler import busy_and_top, cpu_times, process_ticks

PROCFS = "procfs-prometheus-mixed"
FS = HOSTS / PROCFS / "fs"
CHECKS = ("cpu.contention", "cpu.clocks", "cpu.thermal")


def test_sampler_parsers_read_the_real_files():
    times = cpu_times((FS / "proc/stat").read_text())
    # cpu0  44490 19 21045 1087069 220 1 3410 0 0 0: idle + iowait are not busy
    assert times[0] == (44490 + 19 + 21045 + 1 + 3410, 44490 + 19 + 21045 + 1087069 + 220
                        + 1 + 3410)
    stat = ("26231 (vim) R 5392 7446 5392 34835 7446 4218880 32533 309516 26 82 1677 44 158 "
            "99 20 0 1 0 82375 56274944 1981")  # the head of procfs's proc/26231/stat
    assert process_ticks(stat) == ("vim", 1677 + 44)
    assert process_ticks("1 (a) b) S 0") is None  # too short: not a stat line
    busy, top = busy_and_top({0: (100, 1000)}, {0: (150, 1100)}, {7: ("x", 0)},
                             {7: ("x", 80)}, 1.0, 100)
    assert busy == {0: 0.5} and top == [{"pid": 7, "name": "x", "cpus": 0.8}]


def test_the_real_tree_idle_and_throttled_since_boot():
    found = snapshot_findings(PROCFS, *CHECKS)
    assert found["cpu.contention"].status == "pass"
    assert "load average 0.02 0.04 0.05" in found["cpu.contention"].observed
    thermal = found["cpu.thermal"]
    # 10084 + 34818 (cpu0) + 523 + 34818 (cpu1)
    assert (thermal.status, thermal.title) == ("info", "The CPU throttled 80243 times since boot")
    assert "package-0 long_term 4090 W/short_term 4090 W" in thermal.observed
    assert found["cpu.clocks"].status == "skip"
    assert "--measure" in found["cpu.clocks"].recommended


def test_a_lowered_pl1_and_a_zone_near_its_trip_point_warn(tmp_path):
    root = copy_fixture(PROCFS, tmp_path)
    # PL1 lowered to 35 W against the package's rated 95 W (constraint_0_max_power_uw)
    write_fs(root, "/sys/class/powercap/intel-rapl:0/constraint_0_power_limit_uw", "35000000\n")
    # a passive trip point at 52 C on the zone that reads 49.925 C
    write_fs(root, "/sys/class/thermal/thermal_zone0/trip_point_0_type", "passive\n")
    write_fs(root, "/sys/class/thermal/thermal_zone0/trip_point_0_temp", "52000\n")
    finding = snapshot_findings(root, "cpu.thermal")["cpu.thermal"]
    assert finding.status == "warn"
    assert "package-0 power limited to 35 W (PL1) below its rated 95 W" in finding.title
    assert "thermal_zone0 (bcm2835_thermal) at 50 C, near its 52 C trip point" in finding.title


def test_cpu_pressure_means_busy(tmp_path):
    root = copy_fixture(PROCFS, tmp_path)
    write_fs(root, "/proc/pressure/cpu", "some avg10=35.20 avg60=20.00 avg300=3.85 total=15\n")
    finding = snapshot_findings(root, "cpu.contention")["cpu.contention"]
    assert finding.status == "warn" and "ps aux --sort=-%cpu" in finding.recommended


def sampled_machine(tmp_path: Path) -> Path:
    """The guide's machine with a --measure sample in its load.json: a compile job using
    3.8 CPUs while idle, and the P-cores at 2.0-2.2 GHz of their 4.9 GHz under load."""
    root = guide_machine(tmp_path / "g")
    for cpu in range(16):
        write_fs(root, f"/sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq", "4900000\n")
    sample = {"idle_seconds": 1.0, "load_seconds": 1.3,
              "cpu_busy": {str(c): (0.6 if c < 12 else 0.0) for c in range(16)},
              "top": [{"pid": 5150, "name": "cc1plus", "cpus": 3.8},
                      {"pid": 900, "name": "gnome-shell", "cpus": 0.1}],
              "freq_khz": {str(c): [2000000, 2200000] for c in range(16)},
              "throttle_delta": {"0": 12}, "zone_peak_mc": {}, "method": "--measure: test"}
    (root / "load.json").write_text(json.dumps({"sample": sample}))
    return root


def test_a_recorded_sample_names_the_busy_process_and_prices_it(tmp_path):
    root = sampled_machine(tmp_path)
    found = snapshot_findings(root, *CHECKS)
    contention = found["cpu.contention"]
    assert contention.status == "warn" and contention.title.startswith("cc1plus busy")
    assert "cc1plus (pid 5150, 3.8 CPUs)" in contention.observed
    assert contention.cost_tok_s is not None and contention.cost_tok_s > 0
    clocks = found["cpu.clocks"]
    assert clocks.status == "warn" and "43% of their maximum clock" in clocks.observed
    thermal = found["cpu.thermal"]
    assert thermal.status == "warn"
    assert thermal.title == "throttled 12 times on CPUs 0 during the load"


def test_no_sample_without_measure_and_none_on_a_snapshot(tmp_path):
    root = guide_machine(tmp_path / "g")
    load = snapshot_facts(root, measure=True).load
    assert not load.measured and "only on the machine itself" in load.basis["measured"]


@pytest.mark.slow  # a measurement: a second of idle, then the read probe
@pytest.mark.live
def test_sampling_this_machine(tmp_path):
    """A real sample of this machine: one idle second, then the read probe under watch."""
    from q3cn_doctor.host.live import LiveHost
    from q3cn_doctor.host.sampler import sample_load

    data = sample_load(LiveHost())
    assert 0.9 < data["idle_seconds"] < 3 and data["cpu_busy"]
    assert all(0 <= share <= 1 for share in data["cpu_busy"].values())
    assert data["load_seconds"] > 0


def test_clock_share_under_load_against_each_maximum():
    from q3cn_doctor.host.sampler import clock_share, watch_load

    readings = {"freq_khz": {"0": [2000000, 2400000], "1": [3300000]}}
    assert clock_share(readings, {0: 4400000, 1: 3300000}) == pytest.approx((0.5 + 1.0) / 2)
    assert clock_share(readings, {}) is None
    result, watched = watch_load(lambda: 42)  # the watcher wraps any load and returns its result
    assert result == 42 and watched["load_seconds"] >= 0 and "throttle_delta" in watched

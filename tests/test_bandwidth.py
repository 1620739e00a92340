"""Read-bandwidth measurement (on a small buffer, for speed) and its sizing through a host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from q3cn_doctor.facts.memory import theoretical_bandwidth
from q3cn_doctor.host.bandwidth import (
    DEFAULT_BUFFER_BYTES,
    last_level_cache_bytes,
    measure_read_bandwidth,
    plan_buffer_bytes,
    plan_threads,
)
from q3cn_doctor.host.live import RootHost

MIB, GIB = 2**20, 2**30


@pytest.mark.parametrize("mts, channels, bus_bytes, expected", [
    (6000, 2, 8, 96.0e9),  # DDR5-6000 in two channels: the kit
    (4800, 2, 8, 76.8e9),  # the same kit at its JEDEC default
    (3200, 2, 8, 51.2e9),  # DDR4-3200 dual channel
    (8533, 4, 4, 136.528e9),  # LPDDR5X-8533 on four 32-bit channels
])
def test_theoretical_bandwidth(mts, channels, bus_bytes, expected):
    assert theoretical_bandwidth(mts, channels, bus_bytes) == pytest.approx(expected, rel=1e-12)


def test_theoretical_bandwidth_defaults_to_64_bit_channels():
    assert theoretical_bandwidth(6000, 2) == 96.0e9


def test_a_small_measurement_is_plausible():
    result = measure_read_bandwidth(8 * MIB, threads=2, passes=2, budget_s=0.2)
    assert 100e6 < result.bytes_per_s < 2e12
    assert result.bytes_per_s == max(result.pass_bytes_per_s)
    assert 1 <= len(result.pass_bytes_per_s) <= 2
    assert result.gb_per_s == result.bytes_per_s / 1e9
    assert 1 <= result.threads <= min(2, len(os.sched_getaffinity(0)))
    assert result.buffer_bytes % os.sysconf("SC_PAGE_SIZE") == 0
    assert result.buffer_bytes <= 8 * MIB
    assert "memchr" in result.method and f"{result.threads} threads" in result.method
    assert result.seconds > 0


def test_threads_never_exceed_the_cpus_this_process_may_use():
    allowed = len(os.sched_getaffinity(0))
    assert measure_read_bandwidth(4 * MIB, threads=10_000, passes=1).threads == allowed
    assert measure_read_bandwidth(4 * MIB, threads=0, passes=1).threads == 1


def test_the_budget_stops_passes_early():
    result = measure_read_bandwidth(4 * MIB, threads=1, passes=1000, budget_s=0.1)
    assert 1 <= len(result.pass_bytes_per_s) < 1000


# -- sizing, read through the host ---------------------------------------------

def machine(root: Path, l3_instances: dict[str, str], available_kib: int | None = None,
            online: str | None = None) -> RootHost:
    """A tree with one L3 per instance (shared CPU list -> size) and an L2 to ignore."""
    for shared, size in l3_instances.items():
        for cpu in (int(part.split("-")[0]) for part in shared.split(",")):
            cache = root / f"sys/devices/system/cpu/cpu{cpu}/cache"
            (cache / "index3").mkdir(parents=True)
            (cache / "index3/level").write_text("3\n")
            (cache / "index3/size").write_text(size + "\n")
            (cache / "index3/shared_cpu_list").write_text(shared + "\n")
            (cache / "index2").mkdir()
            (cache / "index2/level").write_text("2\n")
    if available_kib is not None:
        (root / "proc").mkdir()
        (root / "proc/meminfo").write_text(
            f"MemTotal:       {available_kib * 2} kB\nMemAvailable:   {available_kib} kB\n")
    if online is not None:
        (root / "sys/devices/system/cpu").mkdir(parents=True, exist_ok=True)
        (root / "sys/devices/system/cpu/online").write_text(online + "\n")
    return RootHost(str(root))


def test_last_level_cache_sums_each_instance_once(tmp_path):
    host = machine(tmp_path, {"0-7,16-23": "32768K", "8-15,24-31": "32768K"})
    assert last_level_cache_bytes(host) == 64 * MIB


def test_buffer_is_512_mib_unless_the_cache_is_large(tmp_path):
    host = machine(tmp_path, {"0-15": "32768K"}, available_kib=60 * 2**20)
    assert plan_buffer_bytes(host) == DEFAULT_BUFFER_BYTES == 512 * MIB


def test_buffer_is_four_times_a_large_cache(tmp_path):
    """Two 128 MiB L3 instances (a big-cache part): 4 x 256 MiB is more than the floor."""
    host = machine(tmp_path, {"0-7": "131072K", "8-15": "131072K"}, available_kib=60 * 2**20)
    assert plan_buffer_bytes(host) == 1 * GIB


def test_buffer_is_capped_by_available_memory(tmp_path):
    host = machine(tmp_path, {"0-3": "8M"}, available_kib=1 * 2**20)  # 1 GiB available
    assert plan_buffer_bytes(host) == 256 * MIB


def test_sizing_without_cache_or_meminfo(tmp_path):
    host = machine(tmp_path, {})
    assert last_level_cache_bytes(host) == 0
    assert plan_buffer_bytes(host) == DEFAULT_BUFFER_BYTES


def test_one_thread_per_online_cpu(tmp_path):
    assert plan_threads(machine(tmp_path / "a", {}, online="0-15")) == 16
    assert plan_threads(machine(tmp_path / "b", {}, online="0,2-3")) == 3
    assert plan_threads(machine(tmp_path / "c", {})) == (os.cpu_count() or 1)

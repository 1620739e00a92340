"""Sampling the live machine over time: who uses the CPUs, and what the clocks do under load.

The host reads each source once a run; a sample needs the same files twice or more, so
this reads /proc and /sys directly, on the live machine only (facts/thermal.py calls it
under ``--measure``; a recording keeps the result in load.json). Two phases:

1. idle: ``/proc/stat`` and every ``/proc/PID/stat`` one second apart: each CPU's busy
   share and the processes that used the most CPU time in that second;
2. load: the read-bandwidth probe (host/bandwidth.py) on every CPU, the memory-bound work
   token generation is, while a thread reads ``scaling_cur_freq``, the throttle counters
   and the thermal zones every 0.2 s.
"""

from __future__ import annotations

import glob
import os
import re
import threading
import time
from typing import Callable, TypeVar

T = TypeVar("T")

IDLE_S = 1.0
INTERVAL_S = 0.2
TOP = 5
_CPU_LINE = re.compile(r"^cpu(\d+)\s+(.*)$", re.MULTILINE)


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return None


def cpu_times(stat_text: str) -> dict[int, tuple[int, int]]:
    """/proc/stat per CPU: (busy ticks, total ticks); idle and iowait count as not busy."""
    times = {}
    for match in _CPU_LINE.finditer(stat_text):
        values = [int(v) for v in match.group(2).split()[:8] if v.isdecimal()]
        if len(values) >= 5:
            idle = values[3] + values[4]
            times[int(match.group(1))] = (sum(values) - idle, sum(values))
    return times


def process_ticks(stat_text: str) -> tuple[str, int] | None:
    """``/proc/PID/stat``: (name, utime + stime); the name may hold spaces and parentheses."""
    head, _, rest = stat_text.rpartition(")")
    fields = rest.split()
    if "(" not in head or len(fields) < 13:
        return None
    try:
        return head.split("(", 1)[1], int(fields[11]) + int(fields[12])
    except ValueError:
        return None


def _processes() -> dict[int, tuple[str, int]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdecimal():
            parsed = process_ticks(_read(f"/proc/{entry}/stat") or "")
            if parsed is not None:
                found[int(entry)] = parsed
    return found


def busy_and_top(before: dict, after: dict, procs_before: dict, procs_after: dict,
                 seconds: float, ticks_per_s: int) -> tuple[dict[int, float], list[dict]]:
    """Each CPU's busy share and the busiest processes (in CPUs' worth) between two reads."""
    busy = {}
    for cpu, (used, total) in after.items():
        if cpu in before and total > before[cpu][1]:
            busy[cpu] = round((used - before[cpu][0]) / (total - before[cpu][1]), 3)
    users = []
    for pid, (name, ticks) in procs_after.items():
        if pid in procs_before and pid != os.getpid():
            share = (ticks - procs_before[pid][1]) / ticks_per_s / seconds
            if share > 0.05:
                users.append({"pid": pid, "name": name, "cpus": round(share, 2)})
    users.sort(key=lambda entry: -entry["cpus"])
    return busy, users[:TOP]


def _watch(stop: threading.Event, readings: dict) -> None:
    """Read clocks, throttle counters and zone temperatures until ``stop`` is set."""
    freq_paths = glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq")
    zones = glob.glob("/sys/class/thermal/thermal_zone*/temp")
    while not stop.wait(INTERVAL_S):
        for path in freq_paths:
            cpu = re.search(r"/cpu(\d+)/", path).group(1)
            text = (_read(path) or "").strip()
            if text.isdecimal():
                readings["freq_khz"].setdefault(cpu, []).append(int(text))
        for path in zones:
            text = (_read(path) or "").strip().lstrip("-")
            zone = path.split("/")[-2]
            if text.isdecimal():
                peak = readings["zone_peak_mc"].get(zone, 0)
                readings["zone_peak_mc"][zone] = max(peak, int(text))


def _throttle_counts() -> dict[str, int]:
    counts = {}
    for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle/"
                          "core_throttle_count"):
        text = (_read(path) or "").strip()
        if text.isdecimal():
            counts[re.search(r"/cpu(\d+)/", path).group(1)] = int(text)
    return counts


def watch_load(run: Callable[[], T]) -> tuple[T, dict]:
    """``run()`` (a load: the read probe, a benchmark) while a thread reads the clocks, the
    throttle counters and the zone temperatures; its result and what was read (JSON-ready,
    CPU ids as strings)."""
    readings: dict = {"freq_khz": {}, "zone_peak_mc": {}}
    counts_before = _throttle_counts()
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(stop, readings), daemon=True)
    start = time.perf_counter()
    watcher.start()
    try:
        result = run()
    finally:
        stop.set()
        watcher.join(timeout=2)
    counts_after = _throttle_counts()
    readings["load_seconds"] = round(time.perf_counter() - start, 3)
    readings["throttle_delta"] = {cpu: n - counts_before.get(cpu, n)
                                  for cpu, n in counts_after.items()}
    return result, readings


def clock_share(readings: dict, max_khz: dict[int, int]) -> float | None:
    """The mean clock under load as a share of each CPU's maximum, over the CPUs read."""
    shares = [sum(values) / len(values) / max_khz[int(cpu)]
              for cpu, values in readings.get("freq_khz", {}).items()
              if values and max_khz.get(int(cpu))]
    return sum(shares) / len(shares) if shares else None


def sample_load(host) -> dict:
    """Both phases, as JSON-ready data (CPU ids as strings)."""
    from q3cn_doctor.host import bandwidth

    ticks = os.sysconf("SC_CLK_TCK")
    start = time.perf_counter()
    stat_before, procs_before = cpu_times(_read("/proc/stat") or ""), _processes()
    time.sleep(IDLE_S)
    stat_after, procs_after = cpu_times(_read("/proc/stat") or ""), _processes()
    idle = time.perf_counter() - start
    busy, top = busy_and_top(stat_before, stat_after, procs_before, procs_after, idle, ticks)
    _, readings = watch_load(lambda: bandwidth.measure_read_bandwidth(
        bandwidth.plan_buffer_bytes(host), bandwidth.plan_threads(host)))
    return {
        "idle_seconds": round(idle, 3), "cpu_busy": {str(k): v for k, v in busy.items()},
        "top": top, **readings,
        "method": f"--measure: /proc/stat and /proc/PID/stat {IDLE_S:g} s apart, then the "
                  f"read-bandwidth probe on every CPU with clocks, throttle counters and "
                  f"zone temperatures read every {INTERVAL_S:g} s"}

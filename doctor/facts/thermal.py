"""The thermal and load sections: what holds the CPU's clocks down, and who else uses it.

``thermal`` is read once, at no cost: the thermal-throttle counters the kernel keeps per
CPU since boot (``thermal_throttle/{core,package}_throttle_count``, Intel), the package
power limits (``intel-rapl`` powercap: PL1 ``long_term`` and PL2 ``short_term``
against the package's rated power), the thermal zones' temperatures and trip points,
and each CPU's clock now against its maximum.

``load`` is sampled, so only under ``--measure`` on the live machine (a plain ``check``
stays a preflight): first the machine as it is for a second (``/proc/stat`` and every
process's ``/proc/PID/stat``: the CPUs' busy share and the busiest processes, what
``ps aux --sort=-%cpu`` shows), then every CPU loaded by the read-bandwidth probe (the
memory-bound work token generation is) while the clocks, throttle counters and zone
temperatures are read every 0.2 s. A snapshot recorded with ``--measure`` replays the
samples (its ``load.json``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from msgspec import Struct, field
from q3cn_doctor.host.base import Host
from q3cn_doctor.options import Options
from q3cn_doctor.records import plain

if TYPE_CHECKING:
    from . import Facts

CPU_ROOT = "/sys/devices/system/cpu"
RAPL_ROOT = "/sys/class/powercap"
ZONE_ROOT = "/sys/class/thermal"
RECORD = "load"  # a recording's load.json holds the samples


class PowerLimit(Struct):
    """One RAPL package limit: a low sustained limit holds the cores below their clocks."""
    zone: str  # intel-rapl:0
    name: str  # package-0
    enabled: bool | None
    constraints: dict[str, int]  # long_term / short_term -> power limit in microwatts
    max_power_uw: int | None  # constraint_0_max_power_uw: the package's rated power


class ThermalZone(Struct):
    """One thermal zone and its trip points: how close the CPU runs to throttling."""
    zone: str  # thermal_zone0
    type: str | None  # x86_pkg_temp, acpitz, k10temp...
    temp_mc: int | None  # millidegrees Celsius
    trips: list[tuple[str, int]] = field(default_factory=list)  # (type, millidegrees)


class ThermalFacts(Struct):
    """Throttle counters, power limits and temperatures: what slows the cores under load."""
    throttle_counts: dict[int, dict[str, int]]  # cpu -> {"core": n, "package": n}
    power_limits: list[PowerLimit]
    zones: list[ThermalZone]
    cur_khz: dict[int, int]  # scaling_cur_freq now
    max_khz: dict[int, int]  # cpuinfo_max_freq
    basis: dict[str, str] = field(default_factory=dict)


def _int(host: Host, path: str) -> int | None:
    text = host.cat(path)
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _cpus(host: Host) -> list[int]:
    found = []
    for path in host.glob(CPU_ROOT + "/cpu[0-9]*"):
        match = re.search(r"/cpu(\d+)$", path)
        if match:
            found.append(int(match.group(1)))
    return sorted(found)


def gather(host: Host, options: Options, facts: Facts) -> ThermalFacts:
    counts: dict[int, dict[str, int]] = {}
    cur: dict[int, int] = {}
    top: dict[int, int] = {}
    for cpu in _cpus(host):
        base = f"{CPU_ROOT}/cpu{cpu}"
        for kind in ("core", "package"):
            value = _int(host, f"{base}/thermal_throttle/{kind}_throttle_count")
            if value is not None:
                counts.setdefault(cpu, {})[kind] = value
        for name, store in (("scaling_cur_freq", cur), ("cpuinfo_max_freq", top)):
            value = _int(host, f"{base}/cpufreq/{name}")
            if value:
                store[cpu] = value
    return ThermalFacts(counts, _power_limits(host), _zones(host), cur, top, basis={
        "throttle_counts": f"{CPU_ROOT}/cpuN/thermal_throttle/*_throttle_count (since boot)",
        "power_limits": f"{RAPL_ROOT}/intel-rapl:N/constraint_*",
        "zones": f"{ZONE_ROOT}/thermal_zoneN/{{type,temp,trip_point_*}}",
        "cur_khz": f"{CPU_ROOT}/cpuN/cpufreq/scaling_cur_freq (now, idle or not)"})


def _power_limits(host: Host) -> list[PowerLimit]:
    limits = []
    for path in host.glob(RAPL_ROOT + "/intel-rapl:*"):
        zone = path.rsplit("/", 1)[-1]
        if zone.count(":") != 1:  # intel-rapl:0:0 is a subzone (core, uncore, dram)
            continue
        constraints = {}
        for index in range(4):
            name = host.cat(f"{path}/constraint_{index}_name")
            limit = _int(host, f"{path}/constraint_{index}_power_limit_uw")
            if name and limit is not None:
                constraints[name] = limit
        enabled = host.cat(f"{path}/enabled")
        limits.append(PowerLimit(zone, host.cat(f"{path}/name") or zone,
                                 None if enabled not in ("0", "1") else enabled == "1",
                                 constraints, _int(host, f"{path}/constraint_0_max_power_uw")))
    return limits


def _zones(host: Host) -> list[ThermalZone]:
    zones = []
    for path in host.glob(ZONE_ROOT + "/thermal_zone*"):
        trips = []
        for index in range(16):
            kind = host.cat(f"{path}/trip_point_{index}_type")
            temp = _int(host, f"{path}/trip_point_{index}_temp")
            if kind is None:
                break
            if temp and temp > 0:
                trips.append((kind, temp))
        zones.append(ThermalZone(path.rsplit("/", 1)[-1], host.cat(f"{path}/type"),
                                 _int(host, f"{path}/temp"), trips))
    return zones


# -- the sampled section ---------------------------------------------------------------------

class LoadFacts(Struct):
    """A short sample of the machine idle and under load: other work competing for the
    cores, and the clocks, throttling and temperatures a load brings."""
    measured: bool  # False: not sampled (see basis)
    idle_seconds: float = 0.0
    cpu_busy: dict[int, float] = field(default_factory=dict)  # share of the idle second
    top: list[dict] = field(default_factory=list)  # {pid, name, cpus}: busiest, CPUs' worth
    load_seconds: float = 0.0
    freq_khz: dict[int, list[int]] = field(default_factory=dict)  # readings under load
    throttle_delta: dict[int, int] = field(default_factory=dict)  # cpu -> new throttle events
    zone_peak_mc: dict[str, int] = field(default_factory=dict)
    basis: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return plain(self)


def gather_load(host: Host, options: Options, facts: Facts) -> LoadFacts:
    recorded = host.recorded(RECORD, "sample")
    if isinstance(recorded, dict):
        host.note(f"{RECORD}.json:sample")
        try:
            return _from_record(recorded)
        except (TypeError, ValueError, KeyError) as exc:
            return LoadFacts(False, basis={"measured": f"{RECORD}.json is damaged: {exc}"})
    if not options.measure:
        return LoadFacts(False, basis={"measured": "not sampled (use --measure)"})
    if host.kind != "live" or options.snapshot or options.root:
        return LoadFacts(False, basis={"measured": "not sampled: only on the machine itself"})
    from q3cn_doctor.host.sampler import sample_load

    try:
        data = sample_load(host)
    except (OSError, RuntimeError, MemoryError) as exc:
        return LoadFacts(False, basis={"measured": f"sampling failed: {exc}"})
    host.record(RECORD, "sample", data)
    return _from_record(data)


def _from_record(data: dict) -> LoadFacts:
    """A sample as host/sampler.py returns it (JSON: CPU ids are strings)."""
    return LoadFacts(
        measured=True, idle_seconds=float(data["idle_seconds"]),
        cpu_busy={int(k): float(v) for k, v in data["cpu_busy"].items()},
        top=[dict(entry) for entry in data["top"]],
        load_seconds=float(data["load_seconds"]),
        freq_khz={int(k): [int(x) for x in v] for k, v in data["freq_khz"].items()},
        throttle_delta={int(k): int(v) for k, v in data["throttle_delta"].items()},
        zone_peak_mc={str(k): int(v) for k, v in data["zone_peak_mc"].items()},
        basis={"measured": str(data.get("method", "--measure"))})

"""Other programs on llama-server's CPUs, clocks under load, throttling and power limits.

A plain ``check`` reads what costs nothing (load average, CPU pressure, throttle counters
since boot, power limits, zone temperatures); ``check --measure`` samples the machine for
a second and then under load (facts.load), naming the busiest processes and the clocks
the planned CPUs really reach.
"""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.host.base import format_cpu_list
from q3cn_doctor.plan.cpu import plan_for, planned_cpus
from q3cn_doctor.plan.speed import compare, difference, speed, what_if

BUSY_SHARE = 0.25  # planned CPUs busier than this on average: someone else is working
BUSY_PROCESS = 0.5  # a process using half a CPU or more is worth naming
PSI_BUSY = 10.0  # % of the last 10 s some task waited for a CPU
SLOW_CLOCK = 0.7  # under load, below 70% of the maximum clock
POWER_SHARE = 0.9  # PL1 below 90% of the package's rated power
TRIP_MARGIN_MC = 5000  # within 5 degrees of a passive or hot trip point
MEASURE = "Run `q3cn-doctor check --measure` to sample it (a few seconds)."


def _planned(ctx: Context) -> list[int]:
    """The CPU plan's CPUs (else the online ones); else every CPU sysfs lists a clock for."""
    cpus, _ = planned_cpus(ctx.facts)
    return cpus or sorted(ctx.facts.thermal.max_khz)


def _psi(text: str | None) -> float | None:
    for line in (text or "").splitlines():
        if line.startswith("some "):
            for word in line.split():
                if word.startswith("avg10="):
                    return float(word[6:])
    return None


@check("cpu.contention", "No other program busy on the CPUs llama-server will use")
def contention(ctx: Context):
    load = ctx.facts.load
    cpus = _planned(ctx)
    if load.measured:
        return _sampled(ctx, load, cpus)
    loadavg = (ctx.host.cat("/proc/loadavg") or "").split()
    pressure = _psi(ctx.host.cat("/proc/pressure/cpu"))
    if not loadavg and pressure is None:
        return ctx.finding(SKIP, "CPU load unknown",
                           observed="no /proc/loadavg or /proc/pressure/cpu here")
    one = float(loadavg[0]) if loadavg else None
    logical = ctx.facts.cpu.logical or len(cpus) or 1
    observed = (f"load average {' '.join(loadavg[:3]) or 'unknown'} on {logical} CPUs; CPU "
                f"pressure (some, avg10) {'unknown' if pressure is None else f'{pressure}%'}")
    busy = (one is not None and one > logical * 0.5) or (pressure or 0) > PSI_BUSY
    if busy:
        return ctx.finding(
            WARN, "The CPUs are busy right now", observed=observed,
            recommended="See who: `ps aux --sort=-%cpu | head`, or " + MEASURE[4:],
            impact="A generation thread that shares its core with another program falls "
                   "behind, and every token waits for it.")
    return ctx.finding(PASS, "The CPUs are mostly idle", observed=observed + ". " + MEASURE)


def _sampled(ctx: Context, load, cpus: list[int]):
    shares = [load.cpu_busy[c] for c in cpus if c in load.cpu_busy]
    mean = sum(shares) / len(shares) if shares else 0.0
    heavy = [p for p in load.top if p["cpus"] >= BUSY_PROCESS]
    names = ", ".join(f"{p['name']} (pid {p['pid']}, {p['cpus']:.1f} CPUs)" for p in load.top)
    observed = (f"over {load.idle_seconds:.1f} s: CPUs {format_cpu_list(cpus)} "
                f"{mean:.0%} busy on average; busiest: {names or 'none'} "
                f"({load.basis.get('measured', '')})")
    if mean < BUSY_SHARE and not heavy:
        return ctx.finding(PASS, "Nothing else is busy on llama-server's CPUs",
                           observed=observed)
    plan = plan_for(ctx.facts)
    lost = sum(p["cpus"] for p in heavy) or mean * len(cpus)
    left = max(1, round(plan.threads - min(lost, plan.threads - 1)))
    contended, now = what_if(ctx.facts, threads=left), speed(ctx.facts)
    gain = difference(contended, now)
    who = ", ".join(p["name"] for p in heavy) or "other programs"
    return ctx.finding(
        WARN, f"{who} busy on llama-server's CPUs", observed=observed,
        recommended=f"Stop or pause {who} while llama-server generates (or move them to "
                    "other cores with taskset), then re-run `q3cn-doctor check --measure`.",
        impact=f"About {lost:.1f} CPUs' worth of the planned {plan.threads} threads' time goes "
               f"elsewhere, as if {left} thread{'s' * (left != 1)} ran. "
               + compare(contended, now, "with those CPUs free"),
        cost_tok_s=gain)


@check("cpu.clocks", "The CPUs llama-server uses reach their top clock under load")
def clocks(ctx: Context):
    load, thermal = ctx.facts.load, ctx.facts.thermal
    cpus = _planned(ctx)
    if not thermal.max_khz:
        return ctx.finding(SKIP, "CPU clocks unknown",
                           observed="no cpufreq here (a VM or container, or no driver)")
    if not load.measured:
        now = [thermal.cur_khz[c] / thermal.max_khz[c] for c in cpus
               if c in thermal.cur_khz and c in thermal.max_khz]
        idle = f"now (idle) {sum(now) / len(now):.0%} of their maximum on average" if now else ""
        return ctx.finding(SKIP, "Clocks under load not sampled",
                           observed=f"CPUs {format_cpu_list(cpus)}: {idle or 'no reading'}; "
                                    f"{load.basis.get('measured', '')}",
                           recommended=MEASURE)
    shares = {c: sum(r) / len(r) / thermal.max_khz[c] for c, r in load.freq_khz.items()
              if c in cpus and r and thermal.max_khz.get(c)}
    if not shares:
        return ctx.finding(SKIP, "No clock readings under load",
                           observed=load.basis.get("measured", ""))
    mean = sum(shares.values()) / len(shares)
    slow = sorted(c for c, share in shares.items() if share < SLOW_CLOCK)
    observed = (f"under the read load ({load.load_seconds:.1f} s): CPUs "
                f"{format_cpu_list(sorted(shares))} at {mean:.0%} of their maximum clock on "
                f"average" + (f"; below {SLOW_CLOCK:.0%}: {format_cpu_list(slow)}"
                              if slow else ""))
    if not slow:
        return ctx.finding(PASS, f"The planned CPUs run at {mean:.0%} of their top clock "
                                 "under load", observed=observed)
    return ctx.finding(
        WARN, f"{len(slow)} planned CPUs run below {SLOW_CLOCK:.0%} of their top clock under "
              "load",
        observed=observed,
        recommended="Look at cpu.thermal and cpu.governor: heat, a power limit or a "
                    "power-saving profile holds the clock down.",
        impact="Not priced: the speed model's generation is bound by memory bandwidth; prompt "
               "processing, bound by the clock, slows about in proportion.")


def _power(thermal) -> list[str]:
    problems = []
    for limit in thermal.power_limits:
        pl1 = limit.constraints.get("long_term")
        rated = limit.max_power_uw
        if limit.enabled is not False and pl1 and rated and pl1 < rated * POWER_SHARE:
            problems.append(f"{limit.name} power limited to {pl1 / 1e6:.0f} W (PL1) below its "
                            f"rated {rated / 1e6:.0f} W")
    return problems


def _zones(thermal) -> list[str]:
    problems = []
    for zone in thermal.zones:
        trips = [t for kind, t in zone.trips if kind in ("passive", "hot", "critical")]
        if zone.temp_mc is None or not trips:
            continue
        if zone.temp_mc >= min(trips) - TRIP_MARGIN_MC:
            problems.append(f"{zone.zone} ({zone.type}) at {zone.temp_mc / 1000:.0f} C, near "
                            f"its {min(trips) / 1000:.0f} C trip point")
    return problems


@check("cpu.thermal", "No thermal throttling, package power limit or zone near its trip point")
def thermal_check(ctx: Context):
    thermal, load = ctx.facts.thermal, ctx.facts.load
    if not (thermal.throttle_counts or thermal.power_limits or thermal.zones
            or load.throttle_delta):
        return ctx.finding(SKIP, "No thermal or power-limit readings here",
                           observed="no thermal_throttle, intel-rapl or thermal_zone in sysfs")
    counts = {cpu: sum(kinds.values()) for cpu, kinds in thermal.throttle_counts.items()}
    rising = {cpu: n for cpu, n in load.throttle_delta.items() if n > 0}
    problems = _power(thermal) + _zones(thermal)
    if rising:
        problems.insert(0, f"throttled {sum(rising.values())} times on CPUs "
                           f"{format_cpu_list(sorted(rising))} during the load")
    zones = "; ".join(f"{z.zone} ({z.type}) {z.temp_mc / 1000:.1f} C" for z in thermal.zones
                      if z.temp_mc is not None)
    observed = "; ".join(part for part in (
        f"throttle events since boot: {sum(counts.values())} over {len(counts)} CPUs"
        if counts else "", "power limits: " + ", ".join(
            f"{p.name} " + "/".join(f"{k} {v / 1e6:.0f} W" for k, v in p.constraints.items())
            for p in thermal.power_limits) if thermal.power_limits else "",
        f"zones: {zones}" if zones else "", load.basis.get("measured", "")) if part)
    if problems:
        return ctx.finding(
            WARN, "; ".join(problems), observed=observed,
            recommended="Clean the cooler and fans, check the case airflow, raise the power "
                        "limit in the BIOS (PL1/PL2, or the laptop's performance mode), and "
                        "re-run `q3cn-doctor check --measure` after a few minutes of load.",
            impact="Tokens/s sag after minutes of generation as the clocks come down; prompt "
                   "processing loses the most. Not priced: the speed model has no thermal term.")
    if counts and sum(counts.values()):
        return ctx.finding(
            INFO, f"The CPU throttled {sum(counts.values())} times since boot",
            observed=observed,
            recommended="Throttling at some point since boot is common; " + (
                "none during the sampled load." if load.measured else MEASURE),
            impact="Only throttling under llama-server's load costs speed.")
    return ctx.finding(PASS, "No thermal throttling or power limit found", observed=observed)

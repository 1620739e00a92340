"""RAM bandwidth, in theory and (with --measure) measured, and what the speed model expects
of generation at it."""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.facts import FactsError
from q3cn_doctor.plan.speed import PROBE_SHARE, compare, difference, speed, what_if

FAR_UNDER = 0.5  # measured read bandwidth below this share of theoretical is a warning
HOW_TO_LIST = ("Run `sudo q3cn-doctor check`: dmidecode needs root. Without root the doctor "
               "reads systemd's udev properties (`udevadm info --query=property "
               "--path=/sys/devices/virtual/dmi/id`) and the SPD EEPROMs the ee1004/spd5118 "
               "drivers expose.")


def hollow(memory) -> bool:
    """Modules with no speed and no part number: what VMs and empty firmware list."""
    return bool(memory.modules) and not any(
        m.speed_mts or m.configured_mts or m.part_number for m in memory.modules)


def gbps(bytes_per_s: float | None) -> str:
    return "unknown" if bytes_per_s is None else f"{bytes_per_s / 1e9:.1f} GB/s"


def expectation(ctx: Context, **changes) -> str:
    """``the speed model expects ~37 tok/s (31-43) for <model>`` (with ``changes``: the
    what-if, e.g. a measured bandwidth)."""
    try:
        estimate = what_if(ctx.facts, **changes) if changes else speed(ctx.facts)
        name = ctx.facts.model.name
    except FactsError:
        return "the speed model cannot say how fast generation runs"
    return f"the speed model expects {estimate.text()} for {name}"


@check("memory.bandwidth", "RAM read bandwidth, theoretical and (with --measure) measured")
def bandwidth(ctx: Context):
    memory = ctx.facts.memory
    theoretical = memory.theoretical_bytes_per_s
    measured = (memory.measured or {}).get("bytes_per_s")
    basis = memory.basis
    if theoretical is None and measured is None:
        recommended = "Run with --measure (or `q3cn-doctor bench memory`) to time it."
        if not memory.modules:
            recommended = (memory.how_to or HOW_TO_LIST) + " " + recommended
        return ctx.finding(
            SKIP, "RAM bandwidth unknown",
            observed=f"theoretical: {basis.get('theoretical_bytes_per_s', 'unknown')}; "
                     f"measured: {basis.get('measured', 'not measured')}",
            recommended=recommended)
    theory = (f"theoretical {gbps(theoretical)} ({basis.get('theoretical_bytes_per_s')})"
              if theoretical else f"theoretical unknown ({basis.get('theoretical_bytes_per_s')})")
    if measured is None:
        return ctx.finding(
            INFO, f"Theoretical RAM bandwidth {gbps(theoretical)}: {expectation(ctx)}",
            observed=f"{theory}; measured: {basis.get('measured')}",
            recommended="Measure it with `q3cn-doctor check --measure` or `q3cn-doctor bench "
                        "memory` on the machine itself: real read bandwidth is what token "
                        "generation gets.",
            impact="Token generation reads the CPU's part of the weights from RAM once per "
                   "token, so RAM bandwidth sets much of its pace.")
    observed = f"measured {gbps(measured)} ({memory.measured.get('method')}); {theory}"
    if theoretical is None:
        return ctx.finding(INFO,
                           f"Measured RAM read bandwidth {gbps(measured)}: {expectation(ctx)}",
                           observed=observed)
    share = measured / theoretical
    if share < FAR_UNDER:
        healthy = theoretical * PROBE_SHARE
        try:
            now, then = speed(ctx.facts), what_if(ctx.facts, ram_bytes_per_s=healthy)
            impact, cost = compare(now, then, f"reading a healthy {gbps(healthy)}"), \
                difference(now, then)
        except FactsError:
            impact, cost = "Tokens/s follow the measured bandwidth.", None
        return ctx.finding(
            WARN,
            f"Measured RAM bandwidth {gbps(measured)} is {share:.0%} of the theoretical "
            f"{gbps(theoretical)}",
            observed=observed,
            recommended="Look for what holds it back: a module that fell back to single channel, "
                        "a speed the firmware reports but does not run, other programs streaming "
                        "memory, a VM's share of the host, or CPU power saving (see "
                        "cpu.governor). Re-run `q3cn-doctor bench memory` on an idle machine.",
            impact=impact, cost_tok_s=cost)
    return ctx.finding(
        PASS,
        f"Measured RAM read bandwidth {gbps(measured)}, {share:.0%} of the theoretical "
        f"{gbps(theoretical)}",
        observed=observed, impact=f"At this bandwidth {expectation(ctx)}.")

"""RAM bandwidth: the ceiling on tokens/s, in theory and (with --measure) measured."""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.facts import FactsError
from q3cn_doctor.plan.placement import placement

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


def ram_bytes_per_token(ctx: Context) -> int | None:
    """What one generated token reads from RAM on this machine (the placement); None where
    nothing is (the GPUs hold it all) or the placement is unknown."""
    try:
        return placement(ctx.facts).ram_bytes_per_token or None
    except FactsError:
        return None


def tokens_per_s(ctx: Context, bytes_per_s: float | None) -> float | None:
    """The generation ceiling a bandwidth allows: bytes/s over bytes read per token."""
    per_token = ram_bytes_per_token(ctx)
    return bytes_per_s / per_token if bytes_per_s and per_token else None


def ceiling(ctx: Context, bytes_per_s: float | None) -> str:
    """``about 48 tok/s`` for a bandwidth, naming the model's bytes per token."""
    tokens = tokens_per_s(ctx, bytes_per_s)
    if tokens is None:
        return "an unknown number of tok/s"
    per_token = ram_bytes_per_token(ctx) or 0
    return (f"about {tokens:.0f} tok/s at most for {ctx.facts.model.name} "
            f"({per_token / 1e9:.1f} GB read from RAM per token)")


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
            INFO, f"Theoretical RAM bandwidth {gbps(theoretical)}: {ceiling(ctx, theoretical)}",
            observed=f"{theory}; measured: {basis.get('measured')}",
            recommended="Measure it with `q3cn-doctor check --measure` or `q3cn-doctor bench "
                        "memory` on the machine itself: real read bandwidth is what token "
                        "generation gets.",
            impact="Token generation reads the active weights from RAM once per token, so RAM "
                   "bandwidth caps tokens/s.")
    observed = f"measured {gbps(measured)} ({memory.measured.get('method')}); {theory}"
    if theoretical is None:
        return ctx.finding(INFO,
                           f"Measured RAM read bandwidth {gbps(measured)}: "
                           f"{ceiling(ctx, measured)}",
                           observed=observed)
    share = measured / theoretical
    if share < FAR_UNDER:
        return ctx.finding(
            WARN,
            f"Measured RAM bandwidth {gbps(measured)} is {share:.0%} of the theoretical "
            f"{gbps(theoretical)}",
            observed=observed,
            recommended="Look for what holds it back: a module that fell back to single channel, "
                        "a speed the firmware reports but does not run, other programs streaming "
                        "memory, a VM's share of the host, or CPU power saving (see "
                        "cpu.governor). Re-run `q3cn-doctor bench memory` on an idle machine.",
            impact=f"Tokens/s follow the measured figure: {ceiling(ctx, measured)}, against "
                   f"{ceiling(ctx, theoretical)} in theory.")
    return ctx.finding(
        PASS,
        f"Measured RAM read bandwidth {gbps(measured)}, {share:.0%} of the theoretical "
        f"{gbps(theoretical)}",
        observed=observed, impact=f"Generation ceiling: {ceiling(ctx, measured)}.")

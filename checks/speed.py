"""RAM speed: configured against what the modules are sold for (XMP/EXPO left off)."""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import FAIL, INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.checks.bandwidth import HOW_TO_LIST, gbps, hollow
from q3cn_doctor.facts import FactsError
from q3cn_doctor.facts.memory import theoretical_bandwidth
from q3cn_doctor.plan.speed import compare, difference, what_if
from q3cn_doctor.plan.speed import speed as speed_estimate

GIB = 1024**3
TOLERANCE = 0.01  # 2666 vs 2667, 3200 vs 3197: the same speed
HALF_MARGIN = 1.1  # measured above 1.1x the half-rate theoretical: it really runs at full rate
RATING_HOW_TO = ("State the rating the kit is sold at: `q3cn-doctor check --ram-rated 6000`, or "
                 "`ram_rated = 6000` in ~/.config/q3cn-doctor/config.toml (it is on the kit's "
                 "label, e.g. DDR5-6000). Or run `sudo q3cn-doctor check` so the SPD EEPROMs "
                 "can be read (load their driver: `sudo modprobe spd5118` for DDR5, "
                 "`sudo modprobe ee1004` for DDR4).")
XMP_STEPS = [
    "Enter the BIOS/UEFI setup and enable the kit's profile: XMP on Intel boards, EXPO on AMD "
    "(ASUS calls it DOCP or AI Overclock Tuner, MSI A-XMP, Gigabyte XMP/EXPO); pick profile 1.",
    "Save, boot, and run `q3cn-doctor check --only memory` (and `q3cn-doctor bench memory`) to "
    "see the new speed and bandwidth.",
    "If it is unstable (failed boots, crashes, memory training loops): update the BIOS, try the "
    "kit's second or lower profile, or set the speed one step lower (e.g. 5600 for a 6000 kit) "
    "keeping the profile's timings and voltage; test with memtest86+. Four DDR5 modules rarely "
    "hold their profile: two larger modules do.",
]


def _modules_line(memory) -> str:
    groups: dict[tuple, int] = {}
    for module in memory.modules:
        size = f"{module.size_bytes / GIB:g} GB" if module.size_bytes else "? GB"
        key = (size, module.type or "RAM", module.part_number or "no part number",
               module.speed_mts)
        groups[key] = groups.get(key, 0) + 1
    return ", ".join(f"{count} x {size} {kind} {part} (Speed: {speed or 'unknown'})"
                     for (size, kind, part, speed), count in groups.items())


def _rating_line(memory) -> str:
    if memory.rated_mts is None:
        return "rating unknown"
    return (f"rated {memory.rated_mts} MT/s ({memory.rated_profile}, from {memory.rated_source}, "
            f"{memory.rated_confidence} confidence: {memory.basis.get('rated_mts')})")


def _cost(ctx: Context, memory, configured: int, rated: int) -> tuple[str, float | None]:
    """What running below the rating costs: the speed model now and at ``rated`` MT/s."""
    bandwidth = ""
    if memory.channels:
        bandwidth = (f"RAM bandwidth {gbps(theoretical_bandwidth(configured, memory.channels))} "
                     f"now against {gbps(theoretical_bandwidth(rated, memory.channels))} at "
                     f"{rated} MT/s over {memory.channels} channel(s). ")
    try:
        now, then = speed_estimate(ctx.facts), what_if(ctx.facts, ram_mts=rated)
    except FactsError:
        return (bandwidth + "Token generation reads the CPU's part of the model from RAM, so "
                f"it slows with the RAM: {configured}/{rated} = {configured / rated:.0%} of "
                "the bandwidth.", None)
    return bandwidth + compare(now, then, f"at {rated} MT/s"), difference(now, then)


HALF_RATE_STEP = ("Check the memory settings in the BIOS (a manual speed, or a failed XMP/EXPO "
                  "that fell back) and update the BIOS.")
SOLDERED_STEP = "Look for a BIOS update or a performance power mode in the firmware setup."


def _clock_contradicted(ctx: Context, memory):
    """Firmware printed the clock where the rate belongs (so configured is twice the printed
    number), unless measured bandwidth shows the RAM really runs at the printed rate."""
    measured = (memory.measured or {}).get("bytes_per_s")
    if not (memory.clock_printed and measured and memory.channels):
        return None
    printed = memory.configured_mts // 2
    half_theory = theoretical_bandwidth(printed, memory.channels)
    if measured > half_theory * HALF_MARGIN:
        return None
    impact, tok_s = _cost(ctx, memory, printed, memory.configured_mts)
    return ctx.finding(
        WARN, f"RAM really runs at {printed} MT/s, not the {memory.configured_mts} the firmware's "
              "clock suggests",
        observed=(f"configured printed as {printed}, read as the clock of "
                  f"{memory.configured_mts} MT/s; measured {gbps(measured)}, "
                  f"{gbps(half_theory)} possible at {printed}; {_modules_line(memory)}"),
        recommended=HALF_RATE_STEP, impact=impact, cost_tok_s=tok_s,
        manual=[HALF_RATE_STEP], action="the BIOS memory settings",
        what_if={"ram_mts": memory.configured_mts})


def _held_back_reasons(memory) -> str:
    reasons = []
    if memory.channels and len(memory.modules) > memory.channels:
        reasons.append(f"{len(memory.modules)} modules on {memory.channels} channels (two per "
                       "channel lowers the supported speed)")
    if len({m.speed_mts for m in memory.modules}) > 1 or len(
            {m.part_number for m in memory.modules}) > 1:
        reasons.append("mixed modules run at the slowest common speed")
    reasons.append("the CPU's or laptop platform's supported memory speed")
    reasons.append("a conservative BIOS default")
    return "; ".join(reasons)


@check("memory.speed", "RAM runs at the speed it is sold for (XMP/EXPO enabled)")
def speed(ctx: Context):
    memory = ctx.facts.memory
    system = ctx.facts.get("system")
    virtual = system is not None and bool(system.virtualization.is_virtual)
    if not memory.modules:
        if virtual:
            return ctx.finding(SKIP, "RAM speed is the host's: this is a VM or container",
                               observed=memory.basis.get("source", ""),
                               recommended="Run q3cn-doctor on the host to judge its RAM speed.")
        return ctx.finding(SKIP, "RAM modules unknown: no source listed them",
                           observed=memory.basis.get("source", ""),
                           recommended=memory.how_to or HOW_TO_LIST)
    configured, rated = memory.configured_mts, memory.rated_mts
    if (virtual and configured is None) or hollow(memory):
        return ctx.finding(
            SKIP,
            "RAM speed is the host's: the firmware describes no real modules (a VM?)",
            observed=f"{memory.source}: {_modules_line(memory)}",
            recommended="On a VM, run q3cn-doctor on the host to judge its RAM speed.")
    observed = (f"configured {f'{configured} MT/s' if configured else 'speed unknown'}; "
                f"{_modules_line(memory)}; {_rating_line(memory)}")
    if memory.clock_printed:
        observed += f"; {memory.basis.get('configured_mts')}"
    if configured is None:
        how = ("Run `sudo q3cn-doctor check`: the SPD EEPROMs give the rating, dmidecode the "
               "speed the firmware set." if memory.source == "spd" else
               "This firmware does not report the configured speed: measure the bandwidth "
               "instead (`q3cn-doctor bench memory`).")
        return ctx.finding(INFO, "Configured RAM speed unknown", observed=observed, recommended=how)
    if rated is None:
        return ctx.finding(INFO, f"RAM runs at {configured} MT/s; what it is rated for is unknown",
                           observed=observed, recommended=RATING_HOW_TO, fixes=["spd.driver"])
    if memory.soldered:
        return _soldered(ctx, memory, observed)
    contradicted = _clock_contradicted(ctx, memory)
    if contradicted is not None:
        return contradicted
    if configured > rated * (1 + TOLERANCE):
        return _above_rating(ctx, memory, observed)
    if configured >= rated * (1 - TOLERANCE):
        return _at_rating(ctx, memory, observed)
    return _below_rating(ctx, memory, observed)


def _soldered(ctx: Context, memory, observed: str):
    """Soldered LPDDR runs at what the platform sets: judged against the lower of the
    chips' grade and what the CPU supports, never against XMP."""
    configured, chips, platform = memory.configured_mts, memory.rated_mts, memory.platform_mts
    first = memory.modules[0]
    kind = first.family or (first.type if first.type and first.type[0] != "<" else "memory")
    target = min(chips, platform) if platform else chips
    where = (f"{memory.platform} supports {platform} MT/s" if platform else
             f"{memory.platform}'s limit for this memory is unknown" if memory.platform else
             "the platform's limit is unknown (the CPU model is not in the platform table)")
    observed += f"; {where}"
    if configured >= target * (1 - TOLERANCE):
        if configured > chips * (1 + TOLERANCE):
            title = f"Soldered {kind} runs at {configured} MT/s, above the chips' {chips}"
        elif platform and configured < chips * (1 - TOLERANCE):
            title = (f"Soldered {kind} runs at {configured} MT/s, the fastest {memory.platform} "
                     f"supports (chips rated {chips})")
        else:
            title = f"RAM runs at its rated {chips} MT/s"
        return ctx.finding(PASS, title, observed=observed)
    status = WARN if platform else INFO
    impact, tok_s = _cost(ctx, memory, configured, target)
    return ctx.finding(
        status,
        f"The platform runs its soldered {kind} at {configured} MT/s, below the {target} "
        + ("the chips and the CPU allow" if platform else "the chips are rated for"),
        observed=observed,
        recommended="Soldered memory has no XMP/EXPO: the laptop's firmware sets its speed. "
                    "Look for a BIOS update or a performance power mode; otherwise this is "
                    "the machine's limit.",
        impact=impact, cost_tok_s=tok_s, manual=[SOLDERED_STEP], action="a BIOS update",
        what_if={"ram_mts": target})


def _above_rating(ctx: Context, memory, observed: str):
    """Faster than the rating: a profile on (rating from dmidecode's JEDEC) or overclocked."""
    configured, rated = memory.configured_mts, memory.rated_mts
    if memory.rated_source == "dmidecode" and not memory.soldered:
        return ctx.finding(
            INFO,
            f"RAM runs at {configured} MT/s, above its JEDEC {rated}: XMP/EXPO or a "
            "manual setting is on",
            observed=observed,
            recommended="Nothing to do. " + RATING_HOW_TO.split(". Or")[0]
                        + " to compare with the kit's own rating.")
    return ctx.finding(
        INFO, f"RAM runs at {configured} MT/s, above its {rated} MT/s rating (overclocked)",
        observed=observed,
        recommended="Fine while it is stable; if llama-server or the machine crashes, return "
                    "to the kit's XMP/EXPO profile and test with memtest86+.")


def _at_rating(ctx: Context, memory, observed: str):
    """At the rating: a pass, unless the rating is only dmidecode's JEDEC speed of modules
    that could be an XMP/EXPO kit (registered server modules have no such profile)."""
    configured, rated = memory.configured_mts, memory.rated_mts
    registered = all(m.registered for m in memory.modules)
    if memory.rated_source == "dmidecode" and not memory.soldered and not registered:
        return ctx.finding(
            INFO,
            f"RAM runs at its JEDEC speed {configured} MT/s; whether the kit is rated "
            "faster (XMP/EXPO) is unknown",
            observed=observed, recommended=RATING_HOW_TO, fixes=["spd.driver"],
            impact="Retail kits show their JEDEC speed (often DDR5-4800) until XMP/EXPO is "
                   "enabled; only the SPD, the part number or you can tell the rating.")
    return ctx.finding(PASS, f"RAM runs at its rated {rated} MT/s", observed=observed)


def _below_rating(ctx: Context, memory, observed: str):
    """Slower than the rating: a kit with its profile off fails; JEDEC modules held back
    are judged against what the CPU supports for this population."""
    configured, rated = memory.configured_mts, memory.rated_mts
    cost = _cost(ctx, memory, configured, rated)
    if memory.rated_profile == "JEDEC":
        return _jedec_below(ctx, memory, observed, cost)
    impact, tok_s = cost
    above = (f" It runs above JEDEC {memory.jedec_mts} but below the profile: a partial or "
             "manual setting." if memory.jedec_mts and configured > memory.jedec_mts * 1.01
             else "")
    profile = memory.rated_profile if memory.rated_profile in ("XMP", "EXPO") else "XMP/EXPO"
    return ctx.finding(
        FAIL,
        f"RAM runs at {configured} MT/s, below the {rated} MT/s its {profile} profile is rated for",
        observed=observed + "." + above,
        recommended=f"Enable {profile} in the BIOS, then re-check.", impact=impact,
        cost_tok_s=tok_s, manual=XMP_STEPS, fixes=_spd_fix(memory),
        action=f"{profile} in the BIOS", what_if={"ram_mts": rated})


def _jedec_below(ctx: Context, memory, observed: str, cost: tuple[str, float | None]):
    """JEDEC modules below their own speed: at the CPU's limit, two per channel, or held."""
    configured, rated, platform = memory.configured_mts, memory.rated_mts, memory.platform_mts
    impact, tok_s = cost
    if platform and configured >= platform * (1 - TOLERANCE):
        return ctx.finding(
            PASS, f"RAM runs at {configured} MT/s, the fastest {memory.platform} supports "
                  f"(modules rated {rated})",
            observed=observed + f"; {memory.platform} supports {platform} MT/s")
    if memory.channels and len(memory.modules) > memory.channels:
        return ctx.finding(
            INFO, f"{len(memory.modules)} modules on {memory.channels} channel(s) run at "
                  f"{configured} of their {rated} MT/s",
            observed=observed,
            recommended="Two modules per channel lower the speed the memory controller holds "
                        "(the CPU maker's limits for two per channel are lower). For bandwidth, "
                        "one larger module per channel reaches the modules' own speed.",
            impact=impact, cost_tok_s=tok_s, fixes=_spd_fix(memory))
    step = ("Check the CPU's supported speed for this population, update the BIOS, and set "
            f"the speed to {rated} MT/s in the BIOS if the board allows.")
    return ctx.finding(
        WARN, f"JEDEC modules held below their own speed: {configured} of {rated} MT/s",
        observed=observed,
        recommended=f"This is not XMP being off: the modules' own speed is {rated}. Likely "
                    f"causes: {_held_back_reasons(memory)}. " + step,
        impact=impact, cost_tok_s=tok_s, fixes=_spd_fix(memory), manual=[step],
        action=f"RAM at {rated} in the BIOS", what_if={"ram_mts": rated})


def _spd_fix(memory) -> list[str]:
    """The SPD driver fix, where the rating is a guess the EEPROMs could replace."""
    return [] if memory.rated_source == "spd" or memory.source == "spd" else ["spd.driver"]

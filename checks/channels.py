"""Memory channels: every channel populated, with matching modules."""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.checks.bandwidth import HOW_TO_LIST, gbps, hollow
from q3cn_doctor.facts import FactsError
from q3cn_doctor.facts.memory import theoretical_bandwidth
from q3cn_doctor.plan.speed import compare, difference, speed, what_if
from q3cn_doctor.units import gib

CONSUMER_CHANNELS = 2  # desktop and laptop CPUs: two 64-bit channels


def _bandwidth(memory, channels: int) -> float | None:
    speed = memory.configured_mts or memory.rated_mts
    return theoretical_bandwidth(speed, channels) if speed else None


def _layout(memory) -> str:
    placed = ", ".join(f"{m.locator or '?'}"
                       + (f"/{m.bank_locator}" if m.bank_locator else "")
                       + f" [{m.channel or '?'}] {gib(m.size_bytes)}"
                       for m in memory.modules)
    board = f" of {memory.board_channels}" if memory.board_channels else ""
    return (f"{len(memory.modules)} module(s) in {memory.slots} slot(s), {memory.channels}"
            f"{board} channel(s) in use ({memory.basis.get('channels')}): {placed}")


@check("memory.channels", "Every memory channel populated, with matching modules")
def channels(ctx: Context):
    memory = ctx.facts.memory
    modules = memory.modules
    try:
        virtual = ctx.facts.system.virtualization.kind in ("vm", "wsl", "container")
    except FactsError:
        virtual = False
    if virtual:
        return ctx.finding(SKIP, "Memory channels are the host's: this is a VM or container",
                           observed=memory.basis.get("source", ""),
                           recommended="Run q3cn-doctor on the host to judge its memory channels.")
    if not modules:
        return ctx.finding(SKIP, "Memory channels unknown: no module listing",
                           observed=memory.basis.get("source", ""),
                           recommended=memory.how_to or HOW_TO_LIST)
    if hollow(memory):
        return ctx.finding(
            SKIP, "The firmware describes no real modules (a VM?)",
            observed=f"{len(modules)} module(s) with no speed and no part number ({memory.source})",
            recommended="On a VM, run q3cn-doctor on the host to judge its memory channels.")
    if memory.soldered and not (memory.board_channels and memory.channels
                                and memory.channels < memory.board_channels):
        return ctx.finding(PASS,
                           f"Soldered memory on {memory.channels} x 64-bit channel(s): "
                           "nothing to rearrange",
                           observed=memory.basis.get("channels", ""))
    if memory.channels is None:
        return ctx.finding(
            SKIP, "Which channel each module sits on is unknown: the slot names name no channel",
            observed=f"{len(modules)} module(s): {memory.basis.get('channels')}",
            recommended="Check the board manual's slot order against the modules' slots "
                        "(which slots share a channel), and fill one slot per channel first.")
    observed = _layout(memory)
    placement, cost, wanted = _placement(ctx, memory)
    problems = placement + _matching(memory)
    if not problems:
        sizes = {m.size_bytes for m in modules}
        return ctx.finding(PASS, f"{len(modules)} matching module(s) on {memory.channels} "
                                 "channel(s)" if len(sizes) == 1 else
                                 f"{len(modules)} modules on {memory.channels} channels, the "
                                 "same amount of RAM in each: fully interleaved",
                           observed=observed)
    order = {WARN: 0, INFO: 1}
    problems.sort(key=lambda p: order[p[0]])
    status = problems[0][0]
    title = problems[0][1] + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
    return ctx.finding(status, title, observed=observed + ". " + "; ".join(p[1] for p in problems),
                       recommended=" ".join(p[2] for p in problems),
                       impact=" ".join(p[3] for p in problems), cost_tok_s=cost,
                       manual=[p[2] for p in problems], action=_action(problems[0][1]),
                       what_if={"ram_channels": wanted} if wanted else None)


def _action(title: str) -> str:
    """The ledger's few words for the costliest module problem."""
    if title.startswith("One module"):
        return "a second DIMM"
    if "share" in title:
        return "DIMMs in the right slots"
    if "populated" in title:
        return "a DIMM in every channel"
    return "matching DIMMs"


def _priced(ctx: Context, channels: int) -> tuple[str, float | None]:
    """The speed model now and with ``channels`` channels in use."""
    try:
        now, then = speed(ctx.facts), what_if(ctx.facts, ram_channels=channels)
    except FactsError:
        return "Tokens/s fall with it.", None
    return compare(now, then, f"with {channels} channels"), difference(now, then)


def _lost(ctx: Context, memory, used: int, full: int) -> tuple[str, float | None]:
    """Bandwidth now and with every channel in use, and what the speed model says of it."""
    now, best = _bandwidth(memory, used), _bandwidth(memory, full)
    tokens, cost = _priced(ctx, full)
    return (f"{gbps(now)} instead of {gbps(best)}: {1 - used / full:.0%} of the bandwidth is "
            f"lost. {tokens}", cost)


Problem = tuple[str, str, str, str]  # status, title, advice, impact


def _placement(ctx: Context, memory) -> tuple[list[Problem], float | None, int | None]:
    """Channels left empty: one module, modules sharing a channel, or too few modules; the
    tok/s that costs, and the channels a cure would use (the speed model's input)."""
    modules, used = memory.modules, memory.channels
    board = memory.board_channels or (CONSUMER_CHANNELS if (memory.slots or 0) > 1 else None)
    if not board or used >= board:
        return [], None, None
    if len(modules) == 1:
        wanted = min(2, board) if board == 2 else board
        impact, cost = _lost(ctx, memory, 1, wanted)
        advice = ("Add a SO-DIMM of the soldered memory's size and speed in the empty slot: "
                  "the board pairs it with the soldered channel." if memory.soldered else
                  "Add a module of the same kit (same size and part number) in the slot the "
                  "board manual names for two modules" + (
                      ", and fill every channel" if board > 2 else "") + ".")
        return [(WARN, f"One module: the RAM runs single-channel (1 of {board} channels)",
                 advice, impact)], cost, wanted
    if used < min(len(modules), board):
        best = min(len(modules), board)
        impact, cost = _lost(ctx, memory, used, best)
        return [(WARN, f"{len(modules)} modules share {used} channel(s); {best} could be used",
                 "Move the modules to the slots the board manual gives for this many modules "
                 "(usually A2 and B2 for two), so each channel holds one.", impact)], cost, best
    impact, cost = _lost(ctx, memory, used, board)
    return [(WARN, f"{used} of {board} memory channels populated: {board - used} empty",
             f"Add modules (the same part) so every channel holds one: {board - used} more "
             "for this board.", impact)], cost, board


def _matching(memory) -> list[Problem]:
    """Sizes judged per channel (flex mode, where the slots name the channels), speeds and
    part numbers."""
    problems = []
    modules = memory.modules
    totals: dict[str, int] = {}
    for module in modules:
        key = module.channel or ""
        totals[key] = totals.get(key, 0) + (module.size_bytes or 0)
    if len(set(totals.values())) > 1 and all(m.size_bytes and m.channel for m in modules):
        unmatched = sum(totals.values()) - min(totals.values()) * len(totals)
        per_channel = ", ".join(f"{key} {gib(total)}" for key, total in sorted(totals.items()))
        problems.append((
            WARN, "Channels hold different amounts of RAM: " + per_channel,
            "Use matching modules (one kit) so every channel holds the same amount.",
            f"Channels interleave only over the matched part: {gib(unmatched)} runs with "
            "fewer channels (Intel flex mode, AMD likewise), at a fraction of the bandwidth."))
    speeds = {m.speed_mts for m in modules if m.speed_mts}
    parts = {m.part_number for m in modules if m.part_number}
    if len(speeds) > 1:
        slowest = min(speeds)
        held = not memory.configured_mts or memory.configured_mts < slowest * 0.99
        problems.append((
            WARN if held else INFO, "Mixed module speeds: " + ", ".join(
                f"{s} MT/s" for s in sorted(speeds)),
            "Use one kit; mixed modules rarely hold an XMP/EXPO profile.",
            f"Every channel runs at the slowest module's speed: {slowest} of "
            f"{max(speeds)} MT/s, {1 - slowest / max(speeds):.0%} of the bandwidth lost."))
    elif len(parts) > 1:
        problems.append((
            INFO, "Modules of different part numbers: " + ", ".join(sorted(parts)),
            "A single kit is validated together; mixed kits may need a lower speed.",
            "Mixed kits often fail to hold their XMP/EXPO profile."))
    ddr5 = all((m.type or "").upper() == "DDR5" for m in modules)
    held = (memory.configured_mts and memory.rated_mts
            and memory.configured_mts < memory.rated_mts)
    if ddr5 and len(modules) >= 4 and memory.channels <= CONSUMER_CHANNELS and held:
        problems.append((
            INFO, f"{len(modules)} DDR5 modules, two per channel, run at "
                  f"{memory.configured_mts} of {memory.rated_mts} MT/s",
            "For bandwidth, two larger modules beat four: four DDR5 modules on a desktop "
            "typically train at 3600-5200 MT/s where two reach 6000 or more.",
            "Two modules per channel lowers the speed the memory controller can hold."))
    return problems

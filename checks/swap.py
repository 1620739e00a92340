"""Swap: how eagerly the kernel pages the model out, and whether it has to."""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.plan.placement import placement
from q3cn_doctor.units import gib

SWAPPINESS_LIMIT = 10


def _describe(devices) -> str:
    return ", ".join(f"{d.path} ({d.kind}, {gib(d.size_bytes)})" for d in devices) or "none"


@check("memory.swappiness", "vm.swappiness low enough that the kernel keeps the model in RAM")
def swappiness(ctx: Context):
    memory = ctx.facts.memory
    value = memory.swappiness
    if value is None:
        return ctx.finding(SKIP, "Swappiness unknown",
                           observed="/proc/sys/vm/swappiness could not be read")
    observed = f"vm.swappiness = {value}; swap: {_describe(memory.swap)}"
    if not memory.swap:
        return ctx.finding(PASS, "No swap active, so swappiness cannot page the model out",
                           observed=observed)
    if not memory.disk_swap:
        return ctx.finding(
            INFO, "Swap is zram only: compressed in RAM, never written to disk",
            observed=observed,
            recommended="Leave it: zram compresses in RAM instead of writing to disk (CachyOS "
                        "ships 100).",
            impact="zram costs CPU time, not disk reads, so it does not stall token generation.")
    if value <= SWAPPINESS_LIMIT:
        return ctx.finding(PASS, f"Swappiness {value} keeps the model in RAM", observed=observed)
    return ctx.finding(
        WARN, f"Swappiness {value} lets the kernel page the model out to disk", observed=observed,
        recommended="Set vm.swappiness=0 (the guide's value for a model held in RAM).",
        impact="Expert weights paged to disk are read back at disk speed, stalling tokens for "
               "seconds.",
        fixes=["sysctl.swappiness"])


@check("memory.swap", "No disk swap in play while RAM is short of the model plus headroom")
def swap(ctx: Context):
    memory = ctx.facts.memory
    if memory.total_bytes is None:
        return ctx.finding(SKIP, "RAM size unknown", observed="/proc/meminfo could not be read")
    plan = placement(ctx.facts)
    needed = plan.ram_needed_bytes
    observed = (f"RAM {gib(memory.total_bytes)}; the model needs about {gib(needed)} "
                f"({plan.needed_basis}); disk swap: {_describe(memory.disk_swap)}")
    if not memory.disk_swap:
        return ctx.finding(PASS, "No disk swap for the model's memory to be paged to",
                           observed=observed)
    if memory.total_bytes >= needed:
        return ctx.finding(PASS, "RAM holds the model with headroom; disk swap stays idle",
                           observed=observed)
    return ctx.finding(
        WARN, f"RAM is {gib(needed - memory.total_bytes)} short, so the model will page to disk",
        observed=observed,
        recommended="Free RAM, put more of the model on the GPU, pick a smaller quant or a shorter "
                    "--ctx-size, or add RAM.",
        impact="Each token reads the active experts; any of them on disk costs disk latency per "
               "token.",
        manual=["Add RAM or choose a smaller model so weights plus KV cache fit in RAM."],
        action="more RAM or a smaller model", what_if={"swap_bound": False})

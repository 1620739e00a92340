"""Swap: how eagerly the kernel pages the model out, and whether it has to."""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.facts.model import server_arg
from q3cn_doctor.host.base import UNLIMITED
from q3cn_doctor.plan.placement import no_room_to_lock, placement
from q3cn_doctor.units import gib

from .memlock import memlock_limit

SWAPPINESS_LIMIT = 10
# How launch can hold the model where no swap can take it
SAFE = {"locked": "launch locks it", "pinned": "launch pins it",
        "none": "launch keeps it on the GPU"}


def _describe(devices) -> str:
    return ", ".join(f"{d.path} ({d.kind}, {gib(d.size_bytes)})" for d in devices) or "none"


@check("memory.swappiness", "vm.swappiness cannot page out the model as launch holds it")
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
    held, how = _held(ctx)
    observed += f"; {how}"
    if held in SAFE:
        return ctx.finding(PASS, f"Swappiness {value} cannot page the model out: {SAFE[held]}",
                           observed=observed)
    if held == "mapped":
        if value > SWAPPINESS_LIMIT:
            return ctx.finding(PASS, "The model is mapped from its file: swap never holds it",
                               observed=observed)
        return ctx.finding(
            INFO, f"Swappiness {value} drops the mapped model's pages before idle memory",
            observed=observed,
            recommended="A mapped model is re-read from its file, never from swap: a low "
                        "swappiness makes the kernel drop it first under memory pressure. The "
                        "default 60 keeps more of it; locking it (memory.memlock) keeps all.")
    if value <= SWAPPINESS_LIMIT:
        return ctx.finding(PASS, f"Swappiness {value} keeps the model in RAM", observed=observed)
    impact = ("Expert weights paged to disk are read back at disk speed, stalling tokens for "
              "seconds.")
    if len(memory.disk_swap) < len(memory.swap):  # zram beside it: keep the zram
        step = (f"Turn off the disk swap ({_describe(memory.disk_swap)}) with swapoff and in "
                "/etc/fstab, keeping the zram: swappiness 0 would idle the zram as well.")
        return ctx.finding(
            WARN, f"Swappiness {value} lets the kernel page the model out to disk beside zram",
            observed=observed, recommended=step, impact=impact, manual=[step],
            action="disk swap off")
    return ctx.finding(
        WARN, f"Swappiness {value} lets the kernel page the model out to disk", observed=observed,
        recommended="Set vm.swappiness=0: the model is held in unlocked anonymous memory, which "
                    "only swap can page out.",
        impact=impact, fixes=["sysctl.swappiness"])


def _held(ctx: Context) -> tuple[str, str]:
    """How launch holds the model's RAM part, as its lock decision does: "none" (all on the
    GPU), "locked" (RAM holds it and memlock allows), "pinned" (a CUDA build reads it into
    pinned host buffers), "mapped" (mmap: file pages, never swapped) or "anonymous" (your
    --no-mmap or --load-mode none without mlock on a build that cannot pin: swappable)."""
    plan = placement(ctx.facts)
    part = plan.ram_bytes
    if part == 0:
        return "none", "the model is all on the GPU"
    args = list(ctx.options.server_args)
    mode = server_arg(args, "--load-mode", "-lm")
    server = ctx.facts.get("server")
    cuda = "cuda" in (getattr(server, "backends", None) or [])
    if "--no-mmap" in args or mode == "none":
        if "--mlock" in args:
            return "locked", "your arguments lock it (--mlock)"
        if cuda:
            return "pinned", "your --no-mmap reads it into pinned CUDA host buffers"
        return "anonymous", "your arguments read it into unlocked memory (--no-mmap)"
    short = no_room_to_lock(ctx.facts, part)
    if short is not None:
        return "mapped", f"{short[0]} cannot hold its {gib(part)}: launch maps it"
    limit, exempt, _ = memlock_limit(ctx)
    if exempt or limit is None or limit == UNLIMITED or limit >= part:
        return "locked", f"launch locks its {gib(part)} in RAM"
    if cuda:
        return "pinned", "memlock refuses the lock: launch reads it into pinned CUDA host buffers"
    return "mapped", "memlock refuses the lock: launch maps it"


@check("memory.swap", "No disk swap in play while RAM is short of the model plus headroom")
def swap(ctx: Context):
    memory = ctx.facts.memory
    if memory.total_bytes is None:
        return ctx.finding(SKIP, "RAM size unknown", observed="/proc/meminfo could not be read")
    plan = placement(ctx.facts)
    needed = plan.ram_needed_bytes
    reserved = memory.hugetlb_bytes or 0  # hugetlb pages: RAM llama.cpp cannot use
    usable = memory.total_bytes - reserved
    observed = (f"RAM {gib(memory.total_bytes)}"
                + (f", {gib(reserved)} of it hugetlb pages" if reserved else "")
                + f"; the model needs about {gib(needed)} ({plan.needed_basis}); disk swap: "
                  f"{_describe(memory.disk_swap)}")
    if not memory.disk_swap:
        return ctx.finding(PASS, "No disk swap for the model's memory to be paged to",
                           observed=observed)
    if usable >= needed:
        return ctx.finding(PASS, "RAM holds the model with headroom; disk swap stays idle",
                           observed=observed)
    return ctx.finding(
        WARN, f"RAM is {gib(needed - usable)} short, so the model will page to disk",
        observed=observed,
        recommended="Free RAM, put more of the model on the GPU, pick a smaller quant or a shorter "
                    "--ctx-size, or add RAM.",
        impact="Each token reads the active experts; any of them on disk costs disk latency per "
               "token.",
        manual=["Add RAM or choose a smaller model so weights plus KV cache fit in RAM."],
        action="more RAM or a smaller model", what_if={"swap_bound": False})

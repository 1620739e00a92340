"""Model fit: total and available RAM against the model's RAM part, KV cache and headroom."""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import FAIL, INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.plan.placement import placement
from q3cn_doctor.units import gib

NO_MMAP = ("Loaded without mmap (--no-mmap, or --load-mode other than mmap) the whole CPU "
           "part is anonymous memory: it cannot be dropped and re-read, so the kernel swaps it "
           "or the OOM killer ends llama-server. With mmap the kernel re-reads evicted weights "
           "from disk on every token that needs them.")


@check("memory.fit", "RAM holds the model's CPU part, its KV cache and OS headroom")
def fit(ctx: Context):
    memory = ctx.facts.memory
    total = memory.total_bytes
    if total is None:
        return ctx.finding(SKIP, "RAM size unknown", observed="/proc/meminfo could not be read")
    plan = placement(ctx.facts)
    need = plan.ram_needed_bytes
    available = memory.available_bytes
    reserved = memory.hugetlb_bytes or 0
    # MemAvailable moves from second to second: it is quoted only where it decides.
    observed = (f"RAM {gib(total)}"
                + (f", {gib(reserved)} reserved as hugetlb pages" if reserved else "")
                + f"; the model needs {gib(plan.ram_bytes)} in RAM ({plan.basis})"
                + (f" + {gib(plan.serving_ram_bytes)} for serving ({plan.serving_basis})"
                   if plan.serving_ram_bytes else "")
                + f" + {gib(plan.headroom_bytes)} for the OS = {gib(need)}")
    if total < need:
        system = ctx.facts.get("system")
        wsl = system is not None and system.virtualization.kind == "wsl"
        step = ("WSL2 gives its VM half the host's RAM by default: raise `memory=` under "
                "[wsl2] in %UserProfile%\\.wslconfig, then `wsl --shutdown`. " if wsl else "")
        return ctx.finding(
            FAIL, f"The model does not fit in RAM: {gib(need - total)} short", observed=observed,
            recommended=step + "Pick a smaller quant or a shorter --ctx-size, put more of the "
                        "model on the GPU, or add RAM.",
            impact=NO_MMAP,
            manual=[step.strip()] * wsl + [
                "Add RAM, or choose a model whose weights plus KV cache fit in RAM and VRAM."],
            action="the WSL2 VM's memory" if wsl else "more RAM or a smaller model")
    if total - reserved < need:
        return ctx.finding(INFO, "The model fits only once the hugetlb reservation is released",
                           observed=observed,
                           recommended="See memory.hugepages: release the reserved pages.",
                           impact="llama.cpp cannot use hugetlb pages, so they count as RAM taken.")
    if available is not None and available < plan.ram_bytes:
        return ctx.finding(
            WARN,
            f"Only {gib(available)} of RAM is free now; the model needs {gib(plan.ram_bytes)}",
            observed=f"{observed}; {gib(available)} available now (/proc/meminfo MemAvailable)",
            recommended="Close what holds the memory (another llama-server, browsers, VMs) before "
                        "launching, or free the page cache it cannot reclaim.",
            impact=NO_MMAP)
    return ctx.finding(PASS, f"RAM holds the model with {gib(total - reserved - need)} to spare",
                       observed=observed)

"""Huge pages: hugetlb reservations the model cannot use, and the THP mode."""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import FAIL, INFO, PASS, SKIP
from q3cn_doctor.checking.registry import check
from q3cn_doctor.plan.placement import placement
from q3cn_doctor.units import gib


@check("memory.hugepages", "Reserved hugetlb pages leave RAM for the model; THP mode")
def hugepages(ctx: Context):
    memory = ctx.facts.memory
    findings = []
    reserved = memory.hugetlb_bytes
    if reserved is None or memory.total_bytes is None:
        findings.append(ctx.finding(SKIP, "Huge page reservations unknown",
                                    observed="/proc/meminfo could not be read"))
    elif reserved == 0:
        findings.append(ctx.finding(PASS, "No RAM reserved for hugetlb pages",
                                    observed=f"hugetlb: 0 of {gib(memory.total_bytes)}"))
    else:
        pools = ", ".join(f"{p.total} x {p.page_size_bytes // 1024} kB ({p.free} free)"
                          for p in memory.hugepage_pools)
        left = memory.total_bytes - reserved
        plan = placement(ctx.facts)
        observed = (f"{gib(reserved)} of {gib(memory.total_bytes)} reserved as hugetlb pages "
                    f"[{pools}], leaving {gib(left)}; the model needs about "
                    f"{gib(plan.ram_needed_bytes)}")
        impact = ("llama.cpp maps the model with normal pages, so hugetlb pages are RAM "
                  "it cannot use.")
        if left < plan.ram_needed_bytes:
            advice = ("Release the reserved pages (vm.nr_hugepages=0) unless a VM or DPDK "
                      "needs them.")
            if memory.total_bytes < plan.ram_needed_bytes:
                advice += (" Even then the model does not fit in RAM: see memory.fit for a "
                           "smaller quant, a shorter context or more VRAM.")
            findings.append(ctx.finding(
                FAIL, f"Hugetlb reservations leave {gib(left)}, too little for the model",
                observed=observed, recommended=advice, impact=impact, fixes=["hugepages.release"]))
        else:
            findings.append(ctx.finding(
                INFO, f"{gib(reserved)} reserved as hugetlb pages; the model still fits",
                observed=observed, recommended="Release them if nothing on this machine uses them.",
                impact=impact, fixes=["hugepages.release"]))
    findings.append(_thp(ctx, memory.thp_enabled))
    return findings


THP_PATH = "/sys/kernel/mm/transparent_hugepage/enabled"
ALWAYS_STEP = (f"echo always > {THP_PATH} (until reboot; `transparent_hugepage=always` on the "
               "kernel command line to keep it), then compare with `q3cn-doctor bench`")


def _thp(ctx: Context, thp: str | None):
    """Honest THP advice: llama.cpp never calls madvise(MADV_HUGEPAGE) on its buffers, so
    only ``always`` gives it huge pages, and only for anonymous memory (the model read into
    RAM: --no-mmap / --load-mode mlock); a mapped model file lives in the page cache, which
    THP does not back on ordinary filesystems."""
    if thp is None:
        return ctx.finding(SKIP, "Transparent huge page mode unknown",
                           observed=f"{THP_PATH} is absent", item="thp")
    plan = placement(ctx.facts)
    read_in = bool(plan.ram_bytes) and plan.fits_ram is not False
    load = ("the plan reads the model's RAM part into anonymous memory (--load-mode mlock, "
            "or --no-mmap --mlock)" if read_in else
            "the plan maps the model from its file (it does not fit RAM with headroom), and "
            "THP does not back page-cache pages")
    observed = f"{THP_PATH} = [{thp}]; {load}"
    if thp == "always":
        return ctx.finding(
            INFO, "Transparent huge pages: always", observed=observed,
            impact=("Huge pages back the model's buffers: fewer TLB misses as each token walks "
                    "gigabytes of weights." if read_in else
                    "No effect on the mapped model; other programs' memory gets huge pages."),
            item="thp")
    if not read_in:
        return ctx.finding(
            INFO, f"Transparent huge pages: {thp}", observed=observed,
            impact="No mode changes the speed of a model mapped from its file.", item="thp")
    never = thp == "never"
    return ctx.finding(
        INFO, f"Transparent huge pages: {thp}: llama.cpp's buffers get none",
        observed=observed,
        recommended=("llama.cpp does not madvise its buffers, so `madvise` mode gives it "
                     "nothing; `always` backs the model read into RAM with huge pages: "
                     + ALWAYS_STEP + "." + (" The thp.mode fix restores the kernel's default "
                                            "madvise for other programs only." if never
                                            else "")),
        impact="Huge pages cut TLB misses when a token walks gigabytes of weights; by how much "
               "here is what the benchmark measures (the speed model has no term for it).",
        item="thp", fixes=["thp.mode"] if never else [], manual=[ALWAYS_STEP])

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
    thp = memory.thp_enabled
    if thp is None:
        findings.append(ctx.finding(
            SKIP, "Transparent huge page mode unknown",
            observed="/sys/kernel/mm/transparent_hugepage/enabled is absent", item="thp"))
    else:
        findings.append(ctx.finding(
            INFO, f"Transparent huge pages: {thp}",
            observed=f"/sys/kernel/mm/transparent_hugepage/enabled = [{thp}]",
            recommended=("madvise or always lets large buffers use huge pages"
                         if thp == "never" else ""),
            impact="Huge pages cut TLB misses when a token walks gigabytes of weights.", item="thp",
            fixes=["thp.mode"] if thp == "never" else []))
    return findings

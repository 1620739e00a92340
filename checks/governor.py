"""CPU frequency policy: a clock that idles down between tokens costs speed."""

from __future__ import annotations

from q3cn_doctor.context import Context
from q3cn_doctor.facts.cpu import FrequencyPolicy
from q3cn_doctor.findings import PASS, SKIP, WARN
from q3cn_doctor.host import format_cpu_list
from q3cn_doctor.registry import check

FAST = "performance"
# Drivers whose "powersave" governor hands the choice to the CPU's own controller
# (HWP / CPPC): there the EPP decides, and EPP performance runs at full clock.
EPP_DRIVERS = ("intel_pstate", "amd-pstate-epp")


def _at_full_speed(policy: FrequencyPolicy) -> bool:
    if policy.epp not in (None, FAST):
        return False
    return policy.governor == FAST or (policy.driver in EPP_DRIVERS and policy.epp == FAST)


@check("cpu.governor", "Scaling governor and energy-performance preference at performance")
def governor(ctx: Context):
    cpu = ctx.facts.cpu
    policies = cpu.frequency_policies
    if not policies:
        virt = ctx.facts.system.virtualization
        why = ("in a VM the hypervisor sets the clock" if virt.kind == "vm" or virt.vm
               else "no cpufreq driver is loaded")
        return ctx.finding(SKIP, "No CPU frequency control to check",
                           f"/sys/devices/system/cpu/cpufreq is absent: {why}")
    slow = [p for p in policies if not _at_full_speed(p)]
    groups: dict[tuple, list[int]] = {}
    for policy in policies:
        groups.setdefault((policy.governor, policy.driver, policy.epp), []).extend(policy.cpus)
    observed = "; ".join(
        f"{name} on CPUs {format_cpu_list(cpus)} ({driver or 'unknown driver'}"
        f"{', EPP ' + epp if epp else ''})"
        for (name, driver, epp), cpus in groups.items()
    )
    if not slow:
        return ctx.finding(PASS, "All CPUs run the performance governor", observed)
    return ctx.finding(
        WARN, f"{len(slow)} of {len(policies)} frequency policies are not at performance",
        observed,
        "Set the performance governor (and EPP performance) on the CPUs llama-server uses.",
        "Power-saving clocks ramp down between bursts; token generation runs in bursts "
        "and loses several percent of its speed to the ramp.",
        fixes=["cpu.governor"],
    )

"""CPU frequency policy: a clock that idles down between tokens costs speed.

Besides the governor and EPP: turbo/boost switched off, and a power profile in
power-saver mode. Where a daemon (tuned, power-profiles-daemon, auto-cpufreq...)
owns these settings, the advice goes through it, so a fix does not fight it.
"""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.facts.cpu import CPU_ROOT, CpuFacts, FrequencyPolicy, policy_folder
from q3cn_doctor.host.base import format_cpu_list
from q3cn_doctor.plan.cpu import planned_cpus

FAST = "performance"
# Drivers whose "powersave" governor hands the choice to the CPU's own controller
# (HWP / CPPC): there the EPP decides, and EPP performance runs at full clock.
EPP_DRIVERS = ("intel_pstate", "amd-pstate-epp")


def _at_full_speed(policy: FrequencyPolicy) -> bool:
    if policy.epp not in (None, FAST):
        return False
    return policy.governor == FAST or (policy.driver in EPP_DRIVERS and policy.epp == FAST)


# Power-saving profile names: power-profiles-daemon, tuned, the ACPI platform profile.
SAVER_PROFILES = ("power-saver", "low-power", "quiet", "cool")


def manager(cpu: CpuFacts) -> tuple[str, str] | None:
    """The running daemon that owns the governor and EPP, and its way to performance."""
    running = cpu.power_managers
    if "tuned" in running or "tuned-ppd" in running:
        profile = f" (profile {cpu.tuned_profile})" if cpu.tuned_profile else ""
        return f"tuned{profile}", "tuned-adm profile throughput-performance"
    if "power-profiles-daemon" in running:
        profile = f" (profile {cpu.power_profile})" if cpu.power_profile else ""
        return f"power-profiles-daemon{profile}", "powerprofilesctl set performance"
    if "auto-cpufreq" in running:
        return "auto-cpufreq", "auto-cpufreq --force=performance"
    if "system76-power" in running:
        return "system76-power", "system76-power profile performance"
    return None


def _saver_profile(cpu: CpuFacts) -> tuple[str, str] | None:
    """A power-saving profile in force: (what says so, the command that lifts it)."""
    running = cpu.power_managers
    tuned = cpu.tuned_profile or ""
    if ("tuned" in running or "tuned-ppd" in running) and "powersave" in tuned:
        return f"tuned profile {tuned}", "tuned-adm profile throughput-performance"
    if "power-profiles-daemon" in running and cpu.power_profile in SAVER_PROFILES:
        return (f"power-profiles-daemon profile {cpu.power_profile}",
                "powerprofilesctl set performance")
    if cpu.platform_profile in SAVER_PROFILES:
        owner = manager(cpu)
        command = owner[1] if owner else (
            "echo performance > /sys/firmware/acpi/platform_profile (or balanced, where "
            "performance is not in platform_profile_choices)")
        return f"ACPI platform profile {cpu.platform_profile}", command
    return None


def _switchable(cpu: CpuFacts) -> bool:
    """The cpu.governor fix switches tuned's or power-profiles-daemon's profile."""
    return bool({"tuned", "tuned-ppd", "power-profiles-daemon"} & set(cpu.power_managers))


def _extras(ctx: Context, cpu: CpuFacts, judged: list[FrequencyPolicy]) -> list:
    findings = []
    if cpu.no_turbo and cpu.turbo_pct == 0:
        findings.append(ctx.finding(
            INFO, "This CPU has no turbo to turn on",
            observed=f"{CPU_ROOT}/intel_pstate/no_turbo = 1, turbo_pct = 0", item="boost",
            impact="intel_pstate reports no turbo range (a CPU without Turbo Boost, or one "
                   "the BIOS locks off): writing no_turbo = 0 is refused."))
    elif cpu.no_turbo or cpu.boost is False:
        if cpu.no_turbo:
            observed, command = (f"{CPU_ROOT}/intel_pstate/no_turbo = 1",
                                 f"echo 0 > {CPU_ROOT}/intel_pstate/no_turbo")
        else:
            observed, command = (f"{CPU_ROOT}/cpufreq/boost = 0",
                                 f"echo 1 > {CPU_ROOT}/cpufreq/boost")
        owner = manager(cpu)
        advice = f"Turn boost back on: `{command}`."
        if owner:
            observed += f"; {owner[0]} is running"
            advice += (f" {owner[0].split()[0]} may have turned it off: switch its profile "
                       f"(`{owner[1]}`) so it does not turn it off again.")
        findings.append(ctx.finding(
            WARN, "Turbo boost is off", observed=observed, recommended=advice,
            impact="Boost is a large share of a modern CPU's clock range: prompt processing runs "
                   "that much slower without it.",
            item="boost", fixes=["cpu.boost"], manual=[command]))
    capped = _capped(ctx, cpu, judged)
    if capped is not None:
        findings.append(capped)
    saver = _saver_profile(cpu)
    if saver:
        findings.append(ctx.finding(
            WARN, f"Power profile in power-saving mode ({saver[0]})", observed=saver[0],
            recommended=f"Switch to a performance profile while llama-server runs: `{saver[1]}`.",
            impact="Power-saver profiles cap clocks and EPP on every core.", item="profile",
            fixes=["cpu.governor"] if _switchable(cpu) else [], manual=[saver[1]]))
    return findings


CAPPED_SHARE = 0.95
"""A policy whose scaling_max_freq is below this share of its hardware top is capped."""


def _capped(ctx: Context, cpu: CpuFacts, judged: list[FrequencyPolicy]):
    """A ceiling under the CPU's top clock: scaling_max_freq lowered (TLP's
    CPU_SCALING_MAX_FREQ_ON_*, auto-cpufreq, thermald, a battery script) or intel_pstate's
    max_perf_pct. The governor can be performance and the clock still held down."""
    low = [p for p in judged if p.scaling_max_khz and p.max_freq_khz
           and p.scaling_max_khz < p.max_freq_khz * CAPPED_SHARE]
    percent = cpu.max_perf_pct if cpu.max_perf_pct is not None and cpu.max_perf_pct < 100 \
        else None
    if not low and percent is None:
        return None
    parts, steps = [], []
    for policy in low:
        folder = policy_folder(policy.name)
        parts.append(f"{folder}/scaling_max_freq = {policy.scaling_max_khz} of "
                     f"cpuinfo_max_freq {policy.max_freq_khz}")
        steps.append(f"echo {policy.max_freq_khz} > {folder}/scaling_max_freq")
    if percent is not None:
        parts.append(f"{CPU_ROOT}/intel_pstate/max_perf_pct = {percent}")
        steps.append(f"echo 100 > {CPU_ROOT}/intel_pstate/max_perf_pct")
    top = max((p.max_freq_khz or 0) for p in low) if low else None
    ceiling = min((p.scaling_max_khz or 0) for p in low) if low else None
    title = (f"The clock is capped at {ceiling / 1e6:.1f} of {top / 1e6:.1f} GHz"
             if low else f"intel_pstate caps every core at {percent}% of its top clock")
    step = ("Lift the cap where it is set (TLP: CPU_SCALING_MAX_FREQ_ON_AC / "
            "CPU_MAX_PERF_ON_AC in /etc/tlp.conf; auto-cpufreq: scaling_max_freq), or now: `"
            + "; ".join(steps[:3]) + ("; ..." if len(steps) > 3 else "") + "`.")
    return ctx.finding(
        WARN, title, observed="; ".join(parts[:4]) + ("; ..." if len(parts) > 4 else ""),
        recommended=step, manual=[step], action="CPU clock cap lifted", item="cap",
        impact="Prompt processing is bound by the CPU clock and slows in proportion; "
               "generation, bound by RAM, loses less.")


@check("cpu.governor", "Scaling governor and energy-performance preference at performance")
def governor(ctx: Context):
    cpu = ctx.facts.cpu
    main, judged = _governor(ctx, cpu)
    return [main, *_extras(ctx, cpu, judged)]


def _governor(ctx: Context, cpu: CpuFacts):
    """The governor finding, and the policies judged (those of the planned CPUs)."""
    policies = cpu.frequency_policies
    if not policies:
        virt = ctx.facts.system.virtualization
        why = ("in a VM the hypervisor sets the clock" if virt.kind == "vm" or virt.vm
               else "no cpufreq driver is loaded")
        return ctx.finding(SKIP, "No CPU frequency control to check",
                           observed=f"/sys/devices/system/cpu/cpufreq is absent: {why}"), []
    # Only the CPUs llama-server runs on matter (the fix sets just those): E-cores
    # left to the desktop may keep saving power.
    planned, basis = planned_cpus(ctx.facts)
    judged = [p for p in policies if set(p.cpus) & set(planned)] or policies
    slow = [p for p in judged if not _at_full_speed(p)]
    groups: dict[tuple, list[int]] = {}
    for policy in policies:
        groups.setdefault((policy.governor, policy.driver, policy.epp), []).extend(policy.cpus)
    observed = "; ".join(
        f"{name} on CPUs {format_cpu_list(cpus)} ({driver or 'unknown driver'}"
        f"{', EPP ' + epp if epp else ''})"
        for (name, driver, epp), cpus in groups.items()
    )
    if len(judged) < len(policies):
        observed += f"; llama-server is planned on CPUs {format_cpu_list(planned)} ({basis})"
    owner = manager(cpu)
    if owner:
        observed += f"; set by {owner[0]}"
    if not slow:
        title = ("All CPUs run the performance governor" if len(judged) == len(policies)
                 else "The CPUs llama-server uses run at full speed")
        return ctx.finding(PASS, title, observed=observed), judged
    advice = "Set the performance governor (and EPP performance) on the CPUs llama-server uses."
    manual: list[str] = []
    if owner:
        advice += (f" {owner[0]} owns these settings: switch it with `{owner[1]}` rather than "
                   "writing sysfs, or it puts its own values back.")
        manual.append(owner[1])
    return ctx.finding(
        WARN,
        f"{len(slow)} of {len(judged)} frequency policies"
        + (" llama-server uses" if len(judged) < len(policies) else "")
        + " are not at performance",
        observed=observed, recommended=advice,
        impact="Power-saving clocks ramp down between bursts; token generation runs in bursts "
               "and loses several percent of its speed to the ramp.",
        fixes=["cpu.governor"], manual=manual), judged

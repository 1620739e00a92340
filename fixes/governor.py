"""cpu.governor: the performance governor and energy-performance preference on the CPUs
llama-server uses, through sysfs, kept across reboots by a tmpfiles.d file.

Where tuned or power-profiles-daemon runs, writing sysfs behind its back would be
undone at its next profile switch: the fix switches the daemon's profile instead
(``tuned-adm profile throughput-performance``, ``powerprofilesctl set performance``),
and revert switches it back to the recorded one.
"""

from __future__ import annotations

from q3cn_doctor.facts.cpu import policy_folder
from q3cn_doctor.fixing.persist import persist_tmpfiles
from q3cn_doctor.fixing.plan import PERSISTENT, Change, Fix, FixContext
from q3cn_doctor.fixing.targets import DaemonProfile
from q3cn_doctor.host.base import format_cpu_list
from q3cn_doctor.plan.cpu import planned_cpus

FAST = "performance"
OUR_FILE = "/etc/tmpfiles.d/q3cn-doctor-cpu-governor.conf"
PROFILES = {"tuned": "throughput-performance", "power-profiles-daemon": "performance"}


# Daemons that set governors themselves and offer no profile command to switch through.
UNSWITCHABLE = ("auto-cpufreq", "system76-power", "tlp")


def blocking_manager(ctx: FixContext) -> str | None:
    """A running daemon that would undo a sysfs write, with no profile to switch instead."""
    return next((m for m in ctx.facts.cpu.power_managers if m in UNSWITCHABLE), None)


def running_daemon(ctx: FixContext) -> str | None:
    """tuned or power-profiles-daemon, where one runs (it owns the governor then). The CPU
    facts already found the power daemons among the running processes."""
    running = ctx.facts.cpu.power_managers
    return next((d for d in ("tuned", "power-profiles-daemon") if d in running), None)


class Governor(Fix):
    id = "cpu.governor"
    title = "CPU clocks at full speed: performance governor and EPP"
    checks = ("cpu.governor",)

    def available(self, ctx: FixContext) -> str | None:
        policies = ctx.facts.cpu.frequency_policies
        if not policies:
            return "no cpufreq policies: the clock is not under the kernel's control here"
        if running_daemon(ctx):
            return None
        blocker = blocking_manager(ctx)
        if blocker:
            return (f"{blocker} is running and sets the governor itself: set it to "
                    f"{FAST} in {blocker}'s own configuration")
        if all(p.available_governors and FAST not in p.available_governors for p in policies):
            return f"the cpufreq driver offers no {FAST} governor"
        return None

    def plan(self, ctx: FixContext) -> None:
        daemon = running_daemon(ctx)
        if daemon:
            target = DaemonProfile(daemon)
            ctx.add(Change(self.id, target, f"{daemon} profile", target.read(ctx.host),
                           PROFILES[daemon], effect=PERSISTENT))
            ctx.note(f"{daemon} is running and would undo governor writes: its profile is "
                     "switched instead (it keeps the profile across reboots).")
            return
        cpus, basis = planned_cpus(ctx.facts)
        ctx.note(f"CPUs planned for: {format_cpu_list(cpus)} ({basis}).")
        boot_lines: list[tuple[str, str]] = []
        policies = ctx.facts.cpu.frequency_policies
        # as cpu.governor judges them: the planned CPUs' policies, else all of them
        for policy in [p for p in policies if set(p.cpus) & set(cpus)] or policies:
            folder = policy_folder(policy.name)
            where = f"CPUs {format_cpu_list(policy.cpus)}" if policy.cpus else policy.name
            # EPP first, governor second: reverting newest first then restores the governor
            # before the EPP, the order amd-pstate-epp accepts (it refuses EPP changes
            # while the governor is performance).
            if policy.epp is not None and policy.epp != FAST:
                path = folder + "/energy_performance_preference"
                ctx.kernel(path, FAST, f"EPP on {where}")
                boot_lines.append((path, FAST))
            if policy.governor != FAST and (not policy.available_governors
                                            or FAST in policy.available_governors):
                path = folder + "/scaling_governor"
                ctx.kernel(path, FAST, f"governor on {where}")
                boot_lines.append((path, FAST))
        persist_tmpfiles(ctx, OUR_FILE, boot_lines, f"the {FAST} governor")


FIX = Governor()

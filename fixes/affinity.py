"""cpu.affinity: re-pin a running llama-server to the CPUs the plan gives it.

Every thread of the process (``--pid``, else every process named llama-server) is
pinned with sched_setaffinity; the journal keeps each thread's previous CPU list
and the process's start time, so revert restores exactly those lists, and only
on the same process (a pid reused by a later process is left alone). It lasts
until the process exits: new launches get the plan from ``q3cn-doctor launch``.
"""

from __future__ import annotations

from q3cn_doctor.fixing.plan import NOW, Change, Fix, FixContext
from q3cn_doctor.fixing.targets import ThreadAffinity
from q3cn_doctor.host.base import Process, format_cpu_list
from q3cn_doctor.plan.cpu import planned_cpus, running_servers


def _targets(ctx: FixContext) -> list[Process]:
    """The process --pid names, else every running llama-server."""
    pid = ctx.fix_options.pid
    if pid is not None:
        return [p for p in ctx.host.processes() if p.pid == pid]
    return [server.process for server in running_servers(ctx.host)]


class Affinity(Fix):
    id = "cpu.affinity"
    title = "Pin the running llama-server to the planned CPUs"
    checks = ("cpu.topology",)

    def available(self, ctx: FixContext) -> str | None:
        if not _targets(ctx):
            pid = ctx.fix_options.pid
            return (f"no process {pid} is running" if pid is not None
                    else "no llama-server is running (give --pid)")
        return None

    def plan(self, ctx: FixContext) -> None:
        cpus, basis = planned_cpus(ctx.facts)
        cpu_text = format_cpu_list(cpus)
        ctx.note(f"CPUs planned for: {cpu_text} ({basis}). It lasts until the process exits; "
                 "`q3cn-doctor launch` applies the plan to new launches.")
        euid = ctx.host.euid()
        for process in _targets(ctx):
            target = ThreadAffinity(process.pid, process.name)
            current = target.read(ctx.host)
            wanted = {"start": current["start"],
                      "threads": dict.fromkeys(current["threads"], cpu_text)}
            change = Change(self.id, target, f"{process.name} (pid {process.pid}) threads",
                            current, wanted, effect=NOW,
                            needs_root=process.uid is None or process.uid != euid)
            ctx.add(change)


FIX = Affinity()

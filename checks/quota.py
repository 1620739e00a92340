"""Container and service limits: a CPU quota below the planned threads, a memory limit
below the model's RAM part (facts.cgroup: cpu.max / cfs_quota_us, memory.max)."""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import FAIL, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.plan.cpu import llama_default_threads, plan_for, running_servers
from q3cn_doctor.plan.placement import placement
from q3cn_doctor.plan.speed import compare, difference, speed, what_if
from q3cn_doctor.units import gib

RAISE_QUOTA = ("Give llama-server the CPUs: `docker run --cpus N` (or `docker update --cpus N "
               "CONTAINER`) with N at least the planned threads, `CPUQuota=` of N x 100% in its "
               "systemd unit (or none), or run it outside the container or slice.")
COLLAPSE = ("llama.cpp's threads wait for each other at every matrix product: a thread paused "
            "for the rest of the quota's period holds up the whole team (8 threads under a "
            "4-CPU quota: 12.07 -> 0.27 tok/s, ollama #17916).")


@check("cpu.quota", "No cgroup CPU quota or memory limit below what llama-server needs")
def quota(ctx: Context):
    cgroup = ctx.facts.cgroup
    if cgroup.own is None:
        return ctx.finding(SKIP, "Cgroup limits unknown",
                           observed="/proc/self/cgroup could not be read (no /proc here)")
    return [_cpu(ctx), *_servers(ctx), _memory(ctx)]


def _cpu(ctx: Context):
    own = ctx.facts.cgroup.own
    where = f"cgroup {own.cgroup} (v{own.version})"
    if own.cpu_quota is None:
        return ctx.finding(PASS, "No CPU quota on the cgroup llama-server would run in",
                           observed=f"{where}: no cpu.max / cfs quota along its path")
    plan = plan_for(ctx.facts)
    wanted = plan.uncapped_threads or plan.threads
    observed = (f"{where}: {own.quota_source}, {own.cpu_quota:g} CPUs of time per period; "
                f"the plan's --threads {plan.threads}"
                + (f" (capped from {wanted})" if plan.uncapped_threads else ""))
    if plan.uncapped_threads is None:
        return ctx.finding(PASS, f"The CPU quota ({own.cpu_quota:g} CPUs) covers the planned "
                                 f"{plan.threads} threads", observed=observed)
    now, then = speed(ctx.facts), what_if(ctx.facts, threads=wanted)
    gain = difference(now, then)
    return ctx.finding(
        WARN,
        f"A CPU quota of {own.cpu_quota:g} CPUs caps llama-server at {plan.threads} of "
        f"{wanted} threads",
        observed=observed,
        recommended="`q3cn-doctor launch` already runs "
                    f"--threads {plan.threads}; to use every core: {RAISE_QUOTA}",
        impact=f"Generation runs {plan.threads} threads instead of {wanted}. "
               + compare(now, then, f"with {wanted} threads") + f" Without the cap it would "
               f"be far worse: {COLLAPSE}",
        cost_tok_s=gain)


def _servers(ctx: Context) -> list:
    """A running llama-server with more threads than its own cgroup's quota."""
    findings = []
    limits = ctx.facts.cgroup.servers
    for server in running_servers(ctx.host):
        own = limits.get(server.pid)
        if own is None or own.cpu_quota is None:
            continue
        threads = server.threads or llama_default_threads(ctx.facts.cpu,
                                                          server.process.affinity)
        if threads is None or threads <= own.cpu_quota:
            continue
        given = "--threads" if server.threads else "llama.cpp's default"
        # a warning, not a failure: it must not block `launch` of a correctly planned one
        findings.append(ctx.finding(
            WARN,
            f"llama-server (pid {server.pid}) runs {threads} threads under a "
            f"{own.cpu_quota:g}-CPU quota",
            observed=f"pid {server.pid}: {given} {threads}; cgroup {own.cgroup}: "
                     f"{own.quota_source}",
            recommended=f"Restart it with --threads {max(1, int(own.cpu_quota))} (`q3cn-doctor "
                        f"launch` does), or {RAISE_QUOTA[0].lower() + RAISE_QUOTA[1:]}",
            impact=COLLAPSE, item=f"pid{server.pid}"))
    return findings


def _memory(ctx: Context):
    own = ctx.facts.cgroup.own
    where = f"cgroup {own.cgroup}"
    if own.memory_max_bytes is None:
        return ctx.finding(PASS, "No memory limit on the cgroup llama-server would run in",
                           observed=f"{where}: no memory.max / memory.limit_in_bytes",
                           item="memory")
    plan = placement(ctx.facts)
    limit = own.memory_max_bytes
    observed = (f"{where}: {own.memory_source} ({gib(limit)}); the model's RAM part is "
                f"{gib(plan.ram_bytes)}, {gib(plan.ram_needed_bytes)} with the OS headroom "
                f"({plan.basis})")
    if limit >= plan.ram_needed_bytes:
        return ctx.finding(PASS, f"The cgroup's memory limit ({gib(limit)}) holds the model's "
                                 "RAM part", observed=observed, item="memory")
    raise_it = ("Raise the limit: `docker run --memory` (or `docker update --memory`), "
                "`MemoryMax=` in the systemd unit, or run llama-server outside the container.")
    if limit < plan.ram_bytes:
        now, paged = speed(ctx.facts), what_if(ctx.facts, swap_bound=True)
        return ctx.finding(
            FAIL, f"The cgroup's memory limit ({gib(limit)}) is below the model's RAM part "
                  f"({gib(plan.ram_bytes)})",
            observed=observed, recommended=raise_it,
            impact="Mapped weights count against the limit, so the kernel evicts them and every "
                   "token reads them back from disk; locked (--mlock) the load is killed by the "
                   "out-of-memory killer. " + compare(paged, now, "with the limit raised"),
            item="memory", cost_tok_s=difference(paged, now))
    return ctx.finding(
        WARN, f"The cgroup's memory limit ({gib(limit)}) leaves little beside the model",
        observed=observed, recommended=raise_it,
        impact="The KV cache, compute buffers and the page cache of everything else in the "
               "cgroup push the model's pages out under the limit.",
        item="memory")

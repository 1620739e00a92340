"""CPU topology: core classes, CCDs and the thread and affinity plan for llama-server.

llama.cpp waits for its slowest thread on every matrix product, so threads on
E-cores (or LITTLE cores) slow every token. On a hybrid or multi-CCD CPU this
check says so and gives the plan (doctor/cpuplan.py); a running llama-server
whose affinity or thread count reaches the slow class is a warning.
"""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.facts import FactsError
from q3cn_doctor.facts.cpu import CoreClass, CpuFacts
from q3cn_doctor.host.base import format_cpu_list
from q3cn_doctor.plan.cpu import (
    CpuPlan,
    RunningServer,
    l3_kind,
    llama_default_threads,
    plan_for,
    running_servers,
)
from q3cn_doctor.plan.speed import compare, difference, what_if

IMPACT = ("llama.cpp splits each matrix product evenly over its threads and waits for the "
          "last one, so a thread on a slow core holds back every token.")


def _plural(number: int, word: str) -> str:
    """``1 core``, ``2 cores``."""
    return f"{number} {word}" + ("" if number == 1 else "s")


def class_label(klass: CoreClass, count: int | None = None) -> str:
    """``6 P-cores``, ``10 Cortex-X925 cores``, ``2 cores of capacity 820``."""
    number = klass.cores if count is None else count
    if klass.name.endswith("core"):
        return _plural(number, klass.name)
    if klass.name.startswith("capacity"):
        return f"{_plural(number, 'core')} of {klass.name}"
    return _plural(number, f"{klass.name} core")


def _ghz(khz: int | None) -> str:
    return f", up to {khz / 1e6:.1f} GHz" if khz else ""


def describe(cpu: CpuFacts) -> str:
    """The topology in one paragraph: classes, L3 groups, NUMA, offline and isolated CPUs."""
    parts = []
    for klass in cpu.core_classes:
        threads = len(klass.cpus) // klass.cores if klass.cores else 1
        shape = _plural(klass.cores, "core") + (f" x {threads} threads" if threads > 1 else "")
        parts.append(f"{klass.name}: CPUs {format_cpu_list(klass.cpus)} ({shape}"
                     f"{_ghz(klass.max_freq_khz)})")
    text = "; ".join(parts)
    if len(cpu.core_classes) > 1:
        text += f"; told apart by {cpu.basis.get('core_classes', 'unknown')}"
    if _split_l3(cpu):
        shown = []
        for group in cpu.l3_groups[:4]:
            extra = [f"{group.size_bytes // 1024**2} MiB"] if group.size_bytes else []
            extra += ["3D V-cache"] if group.vcache else []
            shown.append(f"CPUs {format_cpu_list(group.cpus)}"
                         + (f" ({', '.join(extra)})" if extra else ""))
        more = len(cpu.l3_groups) - len(shown)
        text += (f". {len(cpu.l3_groups)} {l3_kind(cpu)}: " + "; ".join(shown)
                 + (f"; {more} more" if more else ""))
    if cpu.sockets and cpu.sockets > 1:
        text += f". {cpu.sockets} sockets"
    if cpu.numa_nodes and cpu.numa_nodes > 1:
        text += f", {cpu.numa_nodes} NUMA nodes (see cpu.numa)"
    if cpu.offline_cpus:
        text += f". Offline CPUs: {format_cpu_list(cpu.offline_cpus)}"
    if cpu.isolated_cpus:
        text += f". Isolated CPUs: {format_cpu_list(cpu.isolated_cpus)}"
    return text


def _split_l3(cpu: CpuFacts) -> bool:
    """More L3 groups than sockets: CCDs (or CCXs) within one package."""
    return len(cpu.l3_groups) > max(cpu.sockets or 1, 1)


def launch_advice(the_plan: CpuPlan) -> str:
    advice = f"Launch as `{the_plan.command()}`"
    strict = the_plan.affinity_args()
    if strict:
        advice += f" (or pin each thread with llama.cpp's own flags: {' '.join(strict)})"
    return advice + "."


@check("cpu.topology", "Core classes (P/E, big/LITTLE), CCDs, and the thread and affinity plan")
def topology(ctx: Context):
    cpu = ctx.facts.cpu
    if not cpu.online_cpus:
        return ctx.finding(
            SKIP, "CPU topology unknown",
            observed="neither /sys/devices/system/cpu nor /proc/cpuinfo lists the CPUs")
    the_plan = plan_for(ctx.facts)
    observed = describe(cpu)
    system = ctx.facts.get("system")
    if system is not None and system.virtualization.in_vm:
        observed += ". Virtual CPUs: the host's core types and caches are hidden"
    recommended = launch_advice(the_plan)
    if cpu.hybrid:
        fast = [k for k in cpu.core_classes if k.fast]
        slow = [k for k in cpu.core_classes if not k.fast]
        title = (f"Hybrid CPU: {' + '.join(class_label(k) for k in fast)} fast, "
                 f"{' + '.join(class_label(k) for k in slow)} slow")
        main = ctx.finding(INFO, title, observed=observed, recommended=recommended, impact=IMPACT)
    elif _split_l3(cpu):
        kind = l3_kind(cpu)
        vcache = [g for g in cpu.l3_groups if g.vcache]
        title = (f"{len(cpu.l3_groups)} separate L3 caches" if kind == "L3 groups"
                 else f"{len(cpu.l3_groups)} {kind}, each with its own L3 cache")
        if vcache:
            title += f", one with 3D V-cache (CPUs {format_cpu_list(vcache[0].cpus)})"
        main = ctx.finding(
            INFO, title, observed=observed, recommended=recommended,
            impact=f"Threads on different {kind} share data through the slower link between them; "
                   "the plan keeps one generation thread per core so the load stays even.")
    else:
        cores = cpu.physical_cores or len(cpu.online_cpus)
        threads = f", {cpu.logical} threads" if cpu.logical and cpu.logical != cores else ""
        main = ctx.finding(PASS, f"{_plural(cores, 'core')} of one class{threads}",
                           observed=observed, recommended=recommended)
    findings = [main]
    for server in running_servers(ctx.host):
        finding = _judge_server(ctx, cpu, the_plan, server)
        if finding is not None:
            findings.append(finding)
    return findings


def _judge_server(ctx: Context, cpu: CpuFacts, the_plan: CpuPlan, server: RunningServer):
    affinity = server.process.affinity
    allowed = set(affinity) if affinity else set(cpu.online_cpus)
    compute = allowed & set(server.cpu_flags) if server.cpu_flags else allowed
    threads = server.threads or llama_default_threads(cpu, affinity)
    how = "--threads" if server.threads else "llama.cpp's default without --threads"
    problems = []
    slow = sorted(compute & set(cpu.e_cpus or []))
    fast = compute & set(cpu.p_cpus or [])
    if slow:
        where = "--cpu-mask/--cpu-range" if server.cpu_flags else "affinity"
        problems.append(f"its {where} includes the slow cores (CPUs {format_cpu_list(slow)})")
    capacity = len(fast) if cpu.hybrid else len(compute)
    if threads and capacity and threads > capacity:
        kind = "fast CPUs" if cpu.hybrid else "CPUs"
        tail = "some run on the slow cores" if slow else "threads queue for CPUs"
        problems.append(f"{threads} threads ({how}) are more than its {capacity} {kind}, so {tail}")
    if not problems:
        return None
    observed = (f"llama-server pid {server.pid}: affinity {format_cpu_list(sorted(allowed))}"
                + (f", --cpu-mask/--cpu-range {format_cpu_list(server.cpu_flags)}"
                   if server.cpu_flags else "")
                + f", {threads or 'unknown'} threads ({how})"
                + (f", {server.process.threads} OS threads in all"
                   if server.process.threads else "")
                + ": " + "; ".join(problems))
    recommended = (launch_advice(the_plan)
                   + f" To move the running one now: `taskset -a -p -c {the_plan.cpu_list} "
                   f"{server.pid}` (its thread count changes only with a restart).")
    title = (f"llama-server (pid {server.pid}) may run threads on the slow cores" if slow
             else f"llama-server (pid {server.pid}) runs more threads than it has CPUs")
    impact, cost = _priced(ctx, the_plan, threads, max(0, (threads or 0) - capacity)
                           or len(slow))
    return ctx.finding(WARN, title, observed=observed, recommended=recommended, impact=impact,
                       item=f"pid{server.pid}", fixes=["cpu.affinity"], cost_tok_s=cost)


def _priced(ctx: Context, the_plan: CpuPlan, threads: int | None,
            slowed: int) -> tuple[str, float | None]:
    """The speed model with the running server's threads, ``slowed`` of them on a slow or
    shared core (the team runs at their pace), against the plan's threads."""
    if not threads or not the_plan.threads:
        return IMPACT, None
    try:
        now = what_if(ctx.facts, threads=threads, smt_threads=slowed)
        then = what_if(ctx.facts, threads=the_plan.threads, smt_threads=0)
    except FactsError:
        return IMPACT, None
    return IMPACT + " " + compare(now, then, f"with the plan's {the_plan.threads} threads",
                                  f"with its {threads} threads"), difference(now, then)

"""NUMA: with several memory nodes, llama-server needs a policy (--numa, numactl).

Without one, the model's pages land on whichever node first touched them and
threads on the other nodes read them across the socket link, at a fraction of
local bandwidth; automatic NUMA balancing then migrates pages under the run.
"""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.facts import FactsError
from q3cn_doctor.facts.cpu import CpuFacts
from q3cn_doctor.facts.model import server_arg
from q3cn_doctor.host.base import format_cpu_list
from q3cn_doctor.plan.cpu import RunningServer, plan_for, running_servers
from q3cn_doctor.plan.speed import compare, difference, speed, what_if
from q3cn_doctor.units import gib

BALANCING = "kernel.numa_balancing"


def _nodes(cpu: CpuFacts) -> str:
    parts = []
    for node in cpu.numa:
        cpus = f"CPUs {format_cpu_list(node.cpus)}" if node.cpus else "no CPUs"
        memory = f", {gib(node.memory_bytes)}" if node.memory_bytes else ""
        parts.append(f"node{node.node}: {cpus}{memory}")
    return "; ".join(parts)


def _policy(cpu: CpuFacts, server: RunningServer) -> str | None:
    """How a running llama-server handles NUMA, or None where it does not."""
    if server.numa:
        return f"--numa {server.numa}"
    affinity = set(server.process.affinity or cpu.online_cpus)
    for node in cpu.numa:
        if node.cpus and affinity <= set(node.cpus):
            return f"affinity within node{node.node}"
    return None


@check("cpu.numa", "Several NUMA nodes: a NUMA policy for llama-server (--numa, numactl)")
def numa(ctx: Context):
    cpu = ctx.facts.cpu
    if cpu.numa_nodes is None:
        return ctx.finding(SKIP, "NUMA layout unknown",
                           observed="/sys/devices/system/node is absent")
    with_cpus = {frozenset(node.cpus) for node in cpu.numa if node.cpus}
    if cpu.numa_nodes <= 1:
        return ctx.finding(PASS, "One NUMA node: all memory is local",
                           observed=_nodes(cpu) or cpu.basis.get("numa_nodes", ""))
    cpu_nodes = [node for node in cpu.numa if node.cpus]
    if len(cpu_nodes) == 1:
        return ctx.finding(
            PASS, f"One NUMA node with CPUs; {cpu.numa_nodes - 1} hold memory only",
            observed=_nodes(cpu) + ". Memory-only nodes (CXL, HBM) get pages only when local "
                                   "memory runs out or a policy asks for them.")
    if len(with_cpus) <= 1:
        return ctx.finding(
            PASS, f"{cpu.numa_nodes} NUMA nodes that list the same CPUs: one memory domain",
            observed=_nodes(cpu) + ". Every node lists the same CPUs, a firmware table error that "
                     "hwloc merges into one node; llama.cpp gains nothing from --numa here.")
    observed = f"{cpu.numa_nodes} NUMA nodes: {_nodes(cpu)}"
    balancing = ctx.host.sysctl(BALANCING)
    if balancing is not None:
        observed += f"; {BALANCING} = {balancing}"
    servers = running_servers(ctx.host)
    policies = {server.pid: _policy(cpu, server) for server in servers}
    configured = server_arg(list(ctx.options.server_args), "--numa")
    if (servers and all(policies.values())) or (configured and not servers):
        if servers:
            observed += "; " + ", ".join(f"llama-server pid {pid}: {policy}"
                                         for pid, policy in policies.items())
            title = "llama-server runs with a NUMA policy"
        else:  # the config file's args (or launch -- ...) give llama-server one
            observed += f"; your llama-server arguments: --numa {configured}"
            title = f"llama-server's arguments set a NUMA policy (--numa {configured})"
        if balancing not in (None, "0"):
            return ctx.finding(
                WARN, "llama-server has a NUMA policy, but automatic NUMA balancing is on",
                observed=observed,
                recommended=f"Set {BALANCING}=0: llama.cpp warns that balancing moves the "
                            "model's pages under it.",
                impact=_IMPACT, fixes=["sysctl.numa_balancing"])
        return ctx.finding(PASS, title, observed=observed)
    if servers:
        observed += "; " + ", ".join(f"llama-server pid {pid}: no --numa and spans nodes"
                                     for pid, policy in policies.items() if not policy)
    the_plan = plan_for(ctx.facts)
    if not servers:
        confined = _one_node(ctx, cpu, the_plan.cpus, observed)
        if confined:
            return confined
    if the_plan.numa == "numactl":
        advice = (f"Bind llama-server to node{the_plan.numa_node}, where the model fits, as "
                  "`q3cn-doctor launch` does: "
                  f"`{the_plan.command()}`.")
    else:
        advice = ("Launch with --numa distribute, as `q3cn-doctor launch` does: "
                  f"`{the_plan.command()}`, after dropping the "
                  "page cache (`sync; echo 3 > /proc/sys/vm/drop_caches`) so the model's pages "
                  "spread over the nodes too. Where the model fits one node's memory, "
                  "`numactl --cpunodebind=0 --membind=0 llama-server --numa numactl ...` keeps "
                  "every read local instead.")
    fixes = []
    if balancing not in (None, "0"):
        advice += f" Set {BALANCING}=0 as well: llama.cpp warns that it hurts."
        fixes.append("sysctl.numa_balancing")
    impact, cost = _IMPACT, None
    if the_plan.numa == "distribute":  # the model prices spreading over every node's RAM
        try:
            now, then = speed(ctx.facts), what_if(ctx.facts, numa_policy="distribute")
            impact += " " + compare(now, then, "with --numa distribute")
            cost = difference(now, then)
        except FactsError:
            pass
    # The plan has the policy (launch adds it); the server or its arguments lack one.
    return ctx.finding(WARN, f"{cpu.numa_nodes} NUMA nodes and llama-server has no NUMA policy",
                       observed=observed, recommended=advice, impact=impact, fixes=fixes,
                       manual=[advice], action="a NUMA policy at launch",
                       what_if={"numa_policy": "distribute"}
                       if the_plan.numa != "numactl" else None, cost_tok_s=cost)


def _one_node(ctx: Context, cpu: CpuFacts, planned_cpus: list[int], observed: str):
    """A pass where the plan's CPUs lie on one node (a cpuset or the affinity keeps the
    process there): every read is local with no policy. None otherwise."""
    planned = set(planned_cpus or cpu.online_cpus)
    home = [node.node for node in cpu.numa if node.cpus and planned <= set(node.cpus)]
    if not (planned and home):  # no CPU known: nothing is on one node
        return None
    return ctx.finding(
        PASS, f"The CPUs llama-server may use are all on node{home[0]}: reads stay local",
        observed=observed + f"; the plan runs llama-server on CPUs "
                 f"{format_cpu_list(sorted(planned))}, what this process's affinity and "
                 "cgroup cpuset allow")


_IMPACT = ("Threads reading the model from another node's memory get a fraction of local "
           "bandwidth, and token generation is bound by memory bandwidth.")

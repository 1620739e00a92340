"""The thread and affinity plan: where llama-server's threads should run, and how many.

llama.cpp splits every matrix product across its threads and waits for the last
one to finish, so one thread on a slow core (an E-core, a LITTLE core, a CPU
shared with another thread) slows every token. The plan keeps the threads on
the fast class of cores, one generation thread per physical core, and gives
the affinity in each form a launch needs: a CPU list (``0-11``), a hex mask
(``0xfff``), a ``taskset -c`` prefix, and llama.cpp's own ``--cpu-mask`` /
``--cpu-range`` / ``--cpu-strict`` flags, plus ``--numa`` where there are
several NUMA nodes. ``rationale`` says why, line by line.

The plan is data: nothing here sets an affinity. ``plan(facts.cpu)`` works on
any host, a 16-CPU snapshot included; the launch work turns it into a command.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable

from msgspec import Struct, field
from q3cn_doctor.facts import Facts, FactsError
from q3cn_doctor.facts.cpu import CpuFacts, cpu_mask, parse_cpu_mask
from q3cn_doctor.host.base import MAX_CPU_ID, Host, Process, format_cpu_list
from q3cn_doctor.parsers.procfs import bounded_int

GIB = 1024**3
PRIO_HIGH = 2  # llama.cpp --prio: 0 normal, 1 medium, 2 high, 3 realtime
PRIO_HIGH_RTPRIO = 80  # ggml_thread_apply_priority: --prio 2 is SCHED_FIFO priority 80
NODE_HEADROOM = 1.1  # a model fits one NUMA node when the node holds 10% more than it needs


class CpuPlan(Struct):
    """Where llama-server's threads run and how many: the CPUs, thread counts and NUMA
    policy, with why."""
    cpus: list[int]  # where llama-server runs (taskset -c, --cpu-range-batch)
    threads: int  # --threads: token generation, one per physical core of ``cpus``
    threads_batch: int  # --threads-batch: prompt processing, every logical CPU of ``cpus``
    generation_cpus: list[int]  # one CPU per core: where strict placement puts --threads
    slow_cpus: list[int] = field(default_factory=list)  # the slow class, left out
    left_out: list[int] = field(default_factory=list)  # isolated, other NUMA nodes...
    numa: str | None = None  # llama.cpp --numa: "distribute", "numactl" or None
    numa_node: int | None = None  # the one node the plan binds to (with numactl)
    rationale: list[str] = field(default_factory=list)
    quota: float | None = None  # the cgroup's CPU quota in CPUs, where one caps the threads
    uncapped_threads: int | None = None  # --threads without that cap (what the quota costs)

    # -- the affinity in every form --------------------------------------------------------
    @property
    def cpu_list(self) -> str:
        return format_cpu_list(self.cpus)

    @property
    def mask(self) -> str:
        return cpu_mask(self.cpus)

    @property
    def generation_mask(self) -> str:
        return cpu_mask(self.generation_cpus)

    @property
    def taskset(self) -> str:
        return f"taskset -c {self.cpu_list}" if self.cpus else ""

    @property
    def prefix(self) -> str:
        """What goes before ``llama-server``: numactl for a one-node plan, else taskset."""
        if self.numa_node is not None:
            return f"numactl --cpunodebind={self.numa_node} --membind={self.numa_node}"
        return self.taskset

    def thread_args(self) -> list[str]:
        args = ["--threads", str(self.threads), "--threads-batch", str(self.threads_batch)]
        if self.numa:
            args += ["--numa", self.numa]
        return args

    def affinity_args(self, help_text: str | Iterable[str] | None = None) -> list[str]:
        """llama.cpp's own placement flags (builds since mid 2024): generation threads one
        per core, batch threads over every CPU of the plan, each pinned (--cpu-strict 1).

        With ``help_text`` (``llama-server --help``, or the flag names the build accepts,
        as facts.server.flags lists them), flags that build lacks are left out.
        --numa distribute places threads itself, so it gets no mask.
        """
        if not self.cpus or self.numa == "distribute":
            return []
        args = _range_or_mask(self.generation_cpus, "--cpu-range", "--cpu-mask")
        args += ["--cpu-strict", "1"]
        if self.generation_cpus != self.cpus:
            args += _range_or_mask(self.cpus, "--cpu-range-batch", "--cpu-mask-batch")
        if help_text is not None:
            args = _supported(args, help_text)
        return args

    def command(self, server: str = "llama-server",
                help_text: str | Iterable[str] | None = None, strict: bool = False) -> str:
        """The launch line: the prefix, the server and the thread flags (and the placement
        flags with ``strict``)."""
        parts = [self.prefix, server, *self.thread_args()]
        if strict:
            parts += self.affinity_args(help_text)
        return " ".join(p for p in parts if p)

    def to_json(self) -> dict:
        return {
            "cpus": self.cpus, "cpu_list": self.cpu_list, "mask": self.mask,
            "taskset": self.taskset, "prefix": self.prefix,
            "threads": self.threads, "threads_batch": self.threads_batch,
            "generation_cpus": self.generation_cpus, "generation_mask": self.generation_mask,
            "slow_cpus": self.slow_cpus, "left_out": self.left_out,
            "numa": self.numa, "numa_node": self.numa_node,
            "quota": self.quota, "uncapped_threads": self.uncapped_threads,
            "thread_args": self.thread_args(), "affinity_args": self.affinity_args(),
            "rationale": self.rationale,
        }


def _range_or_mask(cpus: list[int], range_flag: str, mask_flag: str) -> list[str]:
    if cpus == list(range(cpus[0], cpus[-1] + 1)):
        return [range_flag, f"{cpus[0]}-{cpus[-1]}"]
    return [mask_flag, cpu_mask(cpus)]


def _supported(args: list[str], help_text: str | Iterable[str]) -> list[str]:
    kept: list[str] = []
    names = None if isinstance(help_text, str) else set(help_text)
    for flag, value in zip(args[::2], args[1::2]):
        if names is not None:
            known = flag in names
        else:
            known = bool(re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", str(help_text)))
        if known:
            kept += [flag, value]
    return kept


def plan_for(facts: Facts) -> CpuPlan:
    """The plan for a run's facts, with the model's RAM share for the NUMA choice (read only
    where there are several NUMA nodes: it asks the GPUs what they hold)."""
    from q3cn_doctor.plan.placement import placement  # GPU facts: only with NUMA nodes

    cpu = facts.cpu
    model_bytes: int | None = None
    if len({frozenset(node.cpus) for node in cpu.numa if node.cpus}) > 1:
        try:  # all the model's run keeps in RAM: a node bound to must hold its cache too
            placed = placement(facts)
            model_bytes = placed.ram_bytes + placed.serving_ram_bytes
        except FactsError:
            model_bytes = None
    cgroup = facts.get("cgroup")
    own = getattr(cgroup, "own", None)
    return plan(cpu, model_bytes, quota=getattr(own, "cpu_quota", None),
                quota_source=getattr(own, "quota_source", None),
                cpuset=cgroup.allowed_cpus() if cgroup is not None else None)


def planned_cpus(facts: Facts) -> tuple[list[int], str]:
    """The CPUs llama-server is planned to use, and where that came from.

    Where the plan cannot be made (its facts failed to gather), every online CPU:
    the governor check and fix must still judge and set something.
    """
    try:
        cpus = sorted(set(plan_for(facts).cpus))
        if cpus:
            return cpus, "the CPU plan"
    except Exception:  # the plan must not break its callers: fall back, and say so
        pass
    return list(facts.cpu.online_cpus), "all online CPUs (no CPU plan could be made)"


def plan(cpu: CpuFacts, model_bytes: int | None = None, quota: float | None = None,
         quota_source: str | None = None, cpuset: list[int] | None = None) -> CpuPlan:
    """The plan for this CPU. ``model_bytes`` (what must sit in RAM) decides whether the
    model fits one NUMA node; a cgroup's CPU ``quota`` (in CPUs) caps the threads and its
    ``cpuset`` (with the process's affinity) bounds the CPUs."""
    why: list[str] = []
    online = list(cpu.online_cpus)
    if not online:
        threads = cpu.physical_cores or 1
        if quota:
            threads = min(threads, max(1, int(quota)))
        return CpuPlan([], threads, threads, [], rationale=[
            "The online CPUs are unknown, so the plan sets no affinity."], quota=quota)
    chosen = set(online)
    if cpuset and set(cpuset) & chosen and not chosen <= set(cpuset):
        chosen &= set(cpuset)
        why.append(f"This process may run on CPUs {format_cpu_list(sorted(chosen))} only (its "
                   "cgroup cpuset and CPU affinity): the plan stays inside them.")
    chosen, slow = _fast_class(cpu, chosen, why)

    left_out: list[int] = []
    reserved = (set(cpu.isolated_cpus) | set(cpu.nohz_full_cpus)) & chosen
    if reserved and reserved != chosen:
        chosen -= reserved
        left_out += sorted(reserved)
        why.append(f"CPUs {format_cpu_list(sorted(reserved))} are isolated (isolcpus/nohz_full):"
                   " the scheduler does not spread threads onto them, so they are left out. "
                   "If they were isolated for llama-server, add them and use --cpu-strict 1.")

    cores = [sorted(set(core) & chosen) for core in cpu.cores] if cpu.cores else []
    cores = [core for core in cores if core] or [[c] for c in sorted(chosen)]
    uncapped = len(cores)
    # The quota first: the cores it keeps are the ones the NUMA choice spreads or binds.
    cores = _quota_cap(cores, quota, quota_source, why)
    chosen = {c for core in cores for c in core}
    numa, node_id, chosen = _numa_choice(cpu, chosen, model_bytes, why, left_out)
    cores = [kept for kept in (sorted(set(core) & chosen) for core in cores) if kept]
    cpus = sorted(c for core in cores for c in core)
    threads, threads_batch = len(cores), len(cpus)
    if quota:
        threads_batch = min(threads_batch, max(1, int(quota)))
    generation = sorted(core[0] for core in cores)
    if threads_batch > threads:
        line = (f"--threads {threads}: one per physical core. Token generation is bound by "
                "memory bandwidth, and two threads on one core share its load and store units, "
                "so more threads than cores does not help")
        if slow:
            line += (
                "; llama.cpp's own default on a hybrid Intel CPU is one thread per P-core too. "
                "This is why the plan differs from the guide's --threads 10 on its 6P+4E "
                "i5-12600K: 10 threads on 6 P-cores put two threads on four of the cores, "
                "and the whole team waits for those")
        why.append(line + f". Compare with `llama-bench -t {threads},{threads_batch}` "
                   "if in doubt.")
        why.append(
            f"--threads-batch {threads_batch}: every logical CPU of the plan. Prompt "
            "processing is compute-bound and gains from the second thread of each core"
            + (" (the guide's --threads-batch 12 on the i5-12600K is the same rule)."
               if slow else "."))
    else:
        why.append(f"--threads {threads} and --threads-batch {threads_batch}: one per core "
                   "(no SMT), for generation and prompt processing alike.")
    if numa != "distribute":
        why.append(
            f"Affinity: {format_cpu_list(cpus)} (mask {cpu_mask(cpus)}). With llama.cpp's "
            f"--cpu-strict 1, generation threads go one per core on "
            f"{format_cpu_list(generation)} and batch threads on {format_cpu_list(cpus)}.")
    _note_l3(cpu, cpus, why)
    return CpuPlan(cpus, threads, threads_batch, generation, slow, sorted(left_out), numa,
                   node_id, why, quota=quota,
                   uncapped_threads=uncapped if uncapped != threads else None)


def _fast_class(cpu: CpuFacts, chosen: set[int], why: list[str]) -> tuple[set[int], list[int]]:
    """The CPUs of the fast core class, and the slow ones left out."""
    if not (cpu.p_cpus and cpu.e_cpus):
        why.append(f"All {cpu.physical_cores or len(chosen)} cores are of one class, so the "
                   "plan uses all of them.")
        return chosen, []
    fast_names = ", ".join(k.name for k in cpu.core_classes if k.fast)
    slow_names = ", ".join(k.name for k in cpu.core_classes if not k.fast)
    slow = sorted(set(cpu.e_cpus) & chosen)
    chosen = set(cpu.p_cpus) & chosen
    why.append(
        f"Runs on the {cpu.p_cores} fast cores ({fast_names}: CPUs "
        f"{format_cpu_list(sorted(chosen))}) and keeps off the {cpu.e_cores} slower ones "
        f"({slow_names}: CPUs {format_cpu_list(slow)}): llama.cpp splits each matrix "
        "product evenly and waits for the slowest thread, so one thread on a slow core "
        "holds back every token.")
    return chosen, slow


def _quota_cap(cores: list[list[int]], quota: float | None, source: str | None,
               why: list[str]) -> list[list[int]]:
    """The first ``quota`` cores (at least one) where a CPU quota allows fewer than all:
    llama.cpp's threads wait for each other at every matrix product, so a thread the
    quota has paused holds the whole team until the next period."""
    if not quota or len(cores) <= int(quota):
        return cores
    kept = cores[:max(1, int(quota))]
    why.append(
        f"--threads {len(kept)}, not {len(cores)}: a cgroup CPU quota allows {quota:g} CPUs' "
        f"worth of time ({source or 'cpu.max'}). More threads than that run out of quota "
        "mid-period and the rest wait for them: 8 threads under a 4-CPU quota fell from 12.07 "
        "to 0.27 tok/s (ollama #17916). The threads stay on "
        f"{len(kept)} core{'' if len(kept) == 1 else 's'}; raise the quota to use them all.")
    return kept


def _numa_choice(cpu: CpuFacts, chosen: set[int], model_bytes: int | None, why: list[str],
                 left_out: list[int]) -> tuple[str | None, int | None, set[int]]:
    """One node where the model fits it, else --numa distribute over all of them."""
    nodes: dict[frozenset[int], list] = {}
    for node in cpu.numa:
        members = frozenset(node.cpus) & chosen
        if members:
            nodes.setdefault(members, []).append(node)
    if len(nodes) <= 1:
        if len({frozenset(node.cpus) for node in cpu.numa if node.cpus}) > 1:
            home = ", ".join(f"node{node.node}" for group in nodes.values() for node in group)
            why.append(f"The CPUs the plan may use are all on {home or 'one node'}, of "
                       f"{len(cpu.numa)} NUMA nodes: reads stay local with no NUMA policy.")
        elif len(cpu.numa) > 1:
            why.append(f"The {len(cpu.numa)} NUMA nodes list the same CPUs (a firmware table "
                       "error): one memory domain, so no NUMA policy.")
        return None, None, chosen
    candidates = []
    for members, group in nodes.items():
        memory = [n.memory_bytes for n in group]
        if len(group) == 1 and memory[0] and model_bytes:
            candidates.append((len(members), memory[0], -group[0].node, group[0], members))
    fitting = [c for c in candidates if c[1] >= model_bytes * NODE_HEADROOM] \
        if model_bytes else []
    if fitting:
        _, memory, _, node, members = max(fitting, key=lambda c: c[:3])
        left_out += sorted(chosen - members)
        why.append(
            f"{len(nodes)} NUMA nodes: the model's RAM ({model_bytes / GIB:.1f} GiB with its "
            f"KV and prompt cache) fits node "
            f"{node.node} ({memory / GIB:.1f} GiB), so the plan binds threads and memory there "
            f"(numactl --cpunodebind={node.node} --membind={node.node}, llama.cpp --numa "
            "numactl): every read stays local.")
        return "numactl", node.node, set(members)
    if model_bytes is None:
        size = "the model's size is unknown"
    else:
        largest = max((n.memory_bytes or 0 for n in cpu.numa), default=0)
        size = (f"the model's RAM ({model_bytes / GIB:.1f} GiB with its KV and prompt cache) "
                f"is larger than any node "
                f"({largest / GIB:.1f} GiB at most)" if largest else
                "the nodes' memory sizes are unknown")
    why.append(
        f"{len(nodes)} NUMA nodes and {size}: --numa distribute spreads threads evenly over "
        "all nodes. Drop the page cache before the first load (so the model's pages spread "
        "too) and turn kernel.numa_balancing off, as llama.cpp advises.")
    return "distribute", None, chosen


def l3_kind(cpu: CpuFacts) -> str:
    """What an L3 group is on this CPU: a CCD on Zen 3 and later, a CCX on Zen 1 and 2, a die
    on the Opterons before them."""
    if cpu.vendor != "AuthenticAMD":
        return "L3 groups"
    if cpu.family is None:
        return "CCDs or CCXs"
    return "CCDs" if cpu.family >= 25 else "CCXs" if cpu.family == 23 else "dies"


def _note_l3(cpu: CpuFacts, cpus: list[int], why: list[str]) -> None:
    groups = [g for g in cpu.l3_groups if set(g.cpus) & set(cpus)]
    if len(groups) < 2 or (cpu.sockets or 1) >= len(groups):
        return
    kind = l3_kind(cpu)
    listed = "; ".join(f"CPUs {format_cpu_list(g.cpus)}" + (" (3D V-cache)" if g.vcache else "")
                       for g in groups[:4]) + ("; ..." if len(groups) > 4 else "")
    why.append(
        f"The threads span {len(groups)} {kind} with separate L3 caches ({listed}); the plan "
        "uses them all because generation needs every core's share of memory bandwidth. "
        "With fewer threads than cores, keep them inside one group (taskset -c "
        f"{format_cpu_list(groups[0].cpus)}) so no thread works across the slower link.")


# -- a running llama-server, as the checks judge it ------------------------------------------
SERVER_NAME = "llama-server"
_FLAGS = {
    "-t": "threads", "--threads": "threads", "-tb": "threads_batch",
    "--threads-batch": "threads_batch", "-C": "cpu_mask", "--cpu-mask": "cpu_mask",
    "-Cr": "cpu_range", "--cpu-range": "cpu_range", "--cpu-strict": "cpu_strict",
    "--numa": "numa",
}


class RunningServer(Struct):
    """A llama-server process with the thread and placement flags of its command line."""

    process: Process
    threads: int | None = None  # -t / --threads as given; None: llama.cpp's default
    threads_batch: int | None = None
    cpu_flags: list[int] | None = None  # CPUs of -C/--cpu-mask and -Cr/--cpu-range
    strict: bool = False
    numa: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


def running_servers(host: Host) -> list[RunningServer]:
    """The llama-server processes on this host (none where it lists no processes)."""
    processes = host.processes()
    found = []
    for process in processes:
        program = process.cmdline[0].rsplit("/", 1)[-1] if process.cmdline else ""
        if SERVER_NAME not in (process.name, program):
            continue
        server = RunningServer(process)
        values = _flag_values(process.cmdline[1:])
        server.threads = _positive(values.get("threads"))
        server.threads_batch = _positive(values.get("threads_batch"))
        server.strict = values.get("cpu_strict") == "1"
        server.numa = values.get("numa")
        cpus: set[int] = set()
        mask = values.get("cpu_mask", "").lower().removeprefix("0x")
        if re.fullmatch(r"[0-9a-f]+", mask):
            with contextlib.suppress(ValueError):  # a mask naming CPUs no machine has
                cpus |= set(parse_cpu_mask(mask))
        if values.get("cpu_range"):
            low, _, high = (bounded_int(part) for part in values["cpu_range"].partition("-"))
            if low is not None and high is not None and high <= MAX_CPU_ID:
                cpus |= set(range(low, high + 1))
        server.cpu_flags = sorted(cpus) or None
        found.append(server)
    return found


def _flag_values(args: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for index, arg in enumerate(args):
        flag, eq, inline = arg.partition("=")
        name = _FLAGS.get(flag if eq else arg)
        if name is None:
            continue
        if eq:
            values[name] = inline
        elif index + 1 < len(args):
            values[name] = args[index + 1]
    return values


MAX_THREADS = MAX_CPU_ID + 1  # a --threads beyond every CPU id is not a thread count


def _positive(text: str | None) -> int | None:
    value = bounded_int(text)
    return value if value and value <= MAX_THREADS else None


def llama_default_threads(cpu: CpuFacts, affinity: list[int] | None) -> int | None:
    """What llama.cpp picks without --threads (common's cpu_get_num_math): on x86 Linux with
    a hybrid Intel CPU, one per P-core, but only while it may pin itself to every CPU (under
    taskset it falls back); otherwise one per physical core of the whole machine."""
    unrestricted = affinity is None or set(affinity) >= set(cpu.online_cpus)
    if cpu.arch == "x86" and cpu.vendor == "GenuineIntel" and cpu.hybrid and unrestricted:
        return cpu.p_cores
    return cpu.physical_cores

"""The launch plan, and the hand-off to llama-server.

``build_plan`` turns the run's facts (the model and its memory plan, the CPU plan,
the llama-server build, the process's limits and capabilities) into a command in
this build's own flags (doctor/flags.py), the environment to set, the CPU affinity
to take where the build cannot pin its threads itself, and the resource limits to
raise. ``execute`` applies those to this process and replaces it with llama-server
(``os.execvpe``): PID, signals and exit status are llama-server's, so a systemd unit
can use ``q3cn-doctor launch`` as its ExecStart. ``shell_command`` prints the same
as one shell line (``--print``), for scripts and unit files.

Nothing here changes the machine: the plan is data, and ``execute`` changes only
this process before it becomes llama-server.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from q3cn_doctor.facts import Facts, FactsError
from q3cn_doctor.host.base import CAP_SYS_NICE, UNLIMITED
from q3cn_doctor.options import Options
from q3cn_doctor.parsers.server_help import Intents, translate
from q3cn_doctor.plan.cpu import PRIO_HIGH, PRIO_HIGH_RTPRIO
from q3cn_doctor.plan.placement import OS_HEADROOM_BYTES, placement
from q3cn_doctor.plan.server import planned_port
from q3cn_doctor.plan.speed import speed, what_if

CAP_IPC_LOCK = 14  # mlock beyond RLIMIT_MEMLOCK
GIB = 1024**3


class LaunchError(Exception):
    """The plan cannot be made: no llama-server, no model, an unreadable --help..."""


@dataclass
class LaunchPlan:
    server: str
    argv: list[str]  # what is executed: [numactl ...] llama-server args...
    env: dict[str, str]  # variables set for llama-server (the rest is inherited)
    affinity: list[int] | None  # CPUs this process takes before exec; None: unchanged
    rlimits: dict[str, tuple[int, int]]  # limits raised before exec (-1 unlimited)
    args: list[dict]  # each flag with its values and why
    notes: list[str]  # how the plan became this build's flags, and what it left out
    dropped: list[str]
    unknown_extra: list[str]  # extra arguments this build does not know
    model: dict = field(default_factory=dict)
    cpu_plan: dict | None = None

    def to_json(self) -> dict:
        document = asdict(self)
        document["rlimits"] = {name: list(pair) for name, pair in self.rlimits.items()}
        document["command"] = shell_command(self)
        return document


def build_plan(facts: Facts, options: Options) -> LaunchPlan:
    server = facts.server
    if server.path is None:
        where = "the path given with --server" if server.found_by == "--server" else "PATH"
        raise LaunchError(f"llama-server not found on {where}: install llama.cpp (a release "
                          "from https://github.com/ggml-org/llama.cpp/releases, or build it "
                          "with -DGGML_CUDA=ON) or give --server PATH")
    build = server.build()
    if build is None:
        raise LaunchError(f"cannot tell what {server.path} accepts: {server.help_error}")
    if not options.model:
        raise LaunchError("launch needs a model file: --model PATH, or model = \"PATH\" in "
                          "the config file")
    model = facts.model
    if model.error:
        raise LaunchError(f"cannot read the model: {model.error}")
    try:
        plan = placement(facts)
    except FactsError as exc:
        raise LaunchError(f"no memory plan could be made for this model here: {exc}") from exc
    notes: list[str] = []
    rlimits: dict[str, tuple[int, int]] = {}
    limits = _rlimits(facts)
    lock, why_lock = _lock_decision(facts, plan.ram_bytes, limits, rlimits)
    notes.append(why_lock)
    prio, why_prio = _prio_decision(facts, limits, rlimits)
    notes.append(why_prio)
    cpu = cpu_plan(facts)
    cpus_known = cpu is not None and bool(cpu.cpus)
    if cpu is not None and not cpus_known:
        # The CPU plan's one-thread fallback would cripple generation: llama.cpp keeps
        # its own default instead (a thread per core it sees).
        notes.append("No --threads: this host's CPUs are unknown, so llama.cpp picks its own "
                     "thread count.")
    targets = plan.fit_target_mib or [1024]
    intents = Intents(
        model=options.model,
        port=planned_port(options, facts),
        host=options.host,
        alias=options.alias,
        ctx_size=model.ctx_size,
        gpu=plan.gpus > 0,
        fit_target_mib=targets[:1] if len(set(targets)) == 1 else targets,
        n_cpu_moe=plan.n_cpu_moe if model.experts else None,
        gpu_layers=None if plan.dense_fits_gpu else plan.gpu_layers,
        lock=lock,
        thread_args=cpu.thread_args() if cpus_known else [],
        affinity_args=cpu.affinity_args() if cpus_known else [],
        prio=prio,
    )
    translation = translate(intents, build, options.server_args)
    notes += translation.notes
    affinity = None
    prefix: list[str] = []
    if cpus_known:
        if cpu.numa_node is not None:
            prefix = ["numactl", f"--cpunodebind={cpu.numa_node}", f"--membind={cpu.numa_node}"]
            notes.append(f"numactl binds threads and memory to NUMA node {cpu.numa_node}.")
        elif not translation.affinity_by_flags and _restricts(facts, cpu.cpus):
            affinity = list(cpu.cpus)
            notes.append(f"CPU affinity {cpu.cpu_list} set on the process before exec "
                         "(sched_setaffinity): every thread it starts inherits it.")
    env, env_notes = _environment(facts, plan)
    notes += env_notes
    return LaunchPlan(
        server=server.path,
        argv=prefix + [server.path] + translation.argv(),
        env=env,
        affinity=affinity,
        rlimits=rlimits,
        args=[{"flag": a.flag, "values": a.values, "why": a.why} for a in translation.args],
        notes=[note for note in notes if note],
        dropped=translation.dropped,
        unknown_extra=translation.unknown_extra,
        model={"path": model.path, "name": model.name, "architecture": model.architecture,
               "ctx_size": model.ctx_size, **_expected(facts, cpu),
               "memory_plan": plan.to_json()},
        cpu_plan=cpu.to_json() if cpu is not None else None,
    )


def _expected(facts: Facts, cpu: Any) -> dict:
    """The speed model's figures for this launch (with the NUMA policy it sets): now, its
    range, at a full context, and with the RAM at its rated speed where it runs below it."""
    numa = {"numa_policy": cpu.numa} if cpu is not None and cpu.numa else {}
    estimate = what_if(facts, **numa) if numa else speed(facts)
    memory = facts.get("memory")
    configured, rated = (getattr(memory, "configured_mts", None),
                         getattr(memory, "rated_mts", None))
    faster = what_if(facts, ram_mts=rated, **numa).tok_s if configured and rated and \
        rated > configured else None
    return {"expected_tok_s": estimate.tok_s, "expected_range": [estimate.low, estimate.high],
            "expected_tok_s_at_ctx": estimate.tok_s_at_ctx, "expected_tok_s_rated": faster}


def cpu_plan(facts: Facts) -> Any:
    """The CPU helper's thread and affinity plan (doctor/cpuplan.py), or None where the
    CPU facts cannot make one. The one place the CPU plan plugs into the launch."""
    try:
        from q3cn_doctor.plan.cpu import plan_for
    except ImportError:  # pragma: no cover - the module ships with the package
        return None
    try:
        return plan_for(facts)
    except (FactsError, ValueError, AttributeError):
        return None


def _restricts(facts: Facts, cpus: list[int]) -> bool:
    try:
        online = set(facts.cpu.online_cpus)
    except FactsError:
        return True
    return set(cpus) != online


def _rlimits(facts: Facts) -> dict[str, tuple[int, int]]:
    return dict(facts.host.rlimits())


def _capable(facts: Facts, bit: int) -> bool | None:
    mask = facts.host.capabilities()
    if mask is None:
        euid = facts.host.euid()
        return None if euid is None else euid == 0
    return bool(mask >> bit & 1)


def _covers(limit: int, need: int) -> bool:
    return limit == UNLIMITED or limit >= need


def _lock_decision(facts: Facts, need: int, limits: dict, rlimits: dict) -> tuple[bool, str]:
    """Lock the model's RAM part where RAM holds it and memlock allows (raising the soft
    limit to the hard one where that is enough)."""
    try:
        total = facts.memory.total_bytes
    except FactsError:
        total = None

    if total is not None and need + OS_HEADROOM_BYTES > total:
        return False, (f"Model not locked in RAM: its RAM part ({need / GIB:.1f} GiB) and "
                       f"the OS headroom exceed RAM ({total / GIB:.1f} GiB); mmap lets the "
                       "kernel page it instead.")
    if _capable(facts, CAP_IPC_LOCK):
        return True, "Model locked in RAM (CAP_IPC_LOCK: no memlock limit applies)."
    memlock = limits.get("MEMLOCK")
    if memlock is None:
        return True, "Model locked in RAM (the memlock limit is unknown here)."
    soft, hard = memlock
    if _covers(soft, need):
        return True, "Model locked in RAM (RLIMIT_MEMLOCK allows it)."
    if _covers(hard, need):
        rlimits["MEMLOCK"] = (hard, hard)
        return True, (f"Model locked in RAM: RLIMIT_MEMLOCK raised from {_limit(soft)} to its "
                      f"hard limit {_limit(hard)} before exec.")
    return False, (f"Model not locked in RAM: RLIMIT_MEMLOCK is {_limit(hard)}, below its "
                   f"{need / GIB:.1f} GiB (see memory.memlock; `q3cn-doctor fix --only "
                   "memlock.limit` raises it).")


def _prio_decision(facts: Facts, limits: dict, rlimits: dict) -> tuple[int | None, str]:
    """--prio 2 where the threads may take SCHED_FIFO priority 80, as ggml asks for it:
    CAP_SYS_NICE, or an RLIMIT_RTPRIO of 80 (raising the soft limit to the hard one)."""
    if _capable(facts, CAP_SYS_NICE):
        return PRIO_HIGH, "--prio 2: CAP_SYS_NICE allows high thread priority."
    rtprio = limits.get("RTPRIO")
    if rtprio is not None:
        soft, hard = rtprio
        if _covers(soft, PRIO_HIGH_RTPRIO):
            return PRIO_HIGH, "--prio 2: RLIMIT_RTPRIO allows high thread priority."
        if _covers(hard, PRIO_HIGH_RTPRIO):
            rlimits["RTPRIO"] = (hard, hard)
            return PRIO_HIGH, (f"--prio 2: RLIMIT_RTPRIO raised to its hard limit "
                               f"{'unlimited' if hard == UNLIMITED else hard} before exec.")
    return None, ("No --prio: its threads ask for SCHED_FIFO priority "
                  f"{PRIO_HIGH_RTPRIO}, which needs CAP_SYS_NICE or an RLIMIT_RTPRIO of "
                  f"{PRIO_HIGH_RTPRIO} (see server.rtprio; `q3cn-doctor fix --only "
                  "rtprio.limit`); without it llama.cpp only warns \"failed to set thread "
                  "priority\".")


def _limit(value: int) -> str:
    if value == UNLIMITED:
        return "unlimited"
    return f"{value / GIB:.1f} GiB" if value >= GIB else f"{value // 1024} KiB"


def _environment(facts: Facts, plan) -> tuple[dict[str, str], list[str]]:
    """What to set in llama-server's environment, and why (each variable's story)."""
    env: dict[str, str] = {}
    notes = []
    inherited = facts.host.environ()
    if "LLAMA_SET_ROWS" in inherited:
        notes.append("LLAMA_SET_ROWS in your environment is a no-op since llama.cpp PR #15505 "
                     "(2025-08).")
    else:
        notes.append("LLAMA_SET_ROWS not set: a no-op since llama.cpp PR #15505 (2025-08).")
    full_gpu = (plan.gpus == 1 and plan.dense_fits_gpu and plan.ram_bytes_per_token == 0
                and "cuda" in (getattr(facts.get("server"), "backends", None) or ["cuda"]))
    if "GGML_CUDA_GRAPH_OPT" in inherited:
        notes.append(f"GGML_CUDA_GRAPH_OPT={inherited['GGML_CUDA_GRAPH_OPT']} kept from your "
                     "environment.")
    elif full_gpu:
        env["GGML_CUDA_GRAPH_OPT"] = "1"
        notes.append("GGML_CUDA_GRAPH_OPT=1: the whole model runs on one GPU, where CUDA "
                     "graph optimisation helps generation.")
    else:
        notes.append("GGML_CUDA_GRAPH_OPT not set: it is opt-in and its effect on hybrid "
                     "CPU/GPU runs changed between builds (llama.cpp PRs #17639, #18593, "
                     "#18934).")
    return env, notes


# -- printing and handing off ---------------------------------------------------------------------

def _prlimit_value(value: int) -> str:
    return "unlimited" if value == UNLIMITED else str(value)


def shell_command(plan: LaunchPlan) -> str:
    """The plan as one shell line: env, prlimit, taskset, then llama-server, all quoted.
    Secrets included: it is the command to run (``--print``, a unit file)."""
    return " ".join(shlex.quote(part) for part in _shell_parts(plan))


def shown_command(plan: LaunchPlan) -> str:
    """The same line with its secrets blanked (``--api-key``...): what launch announces on
    stderr before it execs, which a service manager keeps in its log."""
    from q3cn_doctor.host.redact import redact_cmdline

    return " ".join(shlex.quote(part) for part in redact_cmdline(_shell_parts(plan)))


def _shell_parts(plan: LaunchPlan) -> list[str]:
    parts: list[str] = []
    if plan.env:
        parts += ["env"] + [f"{name}={value}" for name, value in sorted(plan.env.items())]
    if plan.rlimits:
        parts += ["prlimit"] + [f"--{name.lower()}={_prlimit_value(soft)}:"
                                f"{_prlimit_value(hard)}"
                                for name, (soft, hard) in sorted(plan.rlimits.items())]
    if plan.affinity:
        from q3cn_doctor.host.base import format_cpu_list

        parts += ["taskset", "-c", format_cpu_list(plan.affinity)]
    return parts + plan.argv


def execute(plan: LaunchPlan) -> None:
    """Become llama-server: raise the limits, take the affinity, set the environment,
    exec. Returns only by raising OSError (the program could not be started)."""
    import resource

    for name, (soft, hard) in plan.rlimits.items():
        number = getattr(resource, "RLIMIT_" + name)
        resource.setrlimit(number, tuple(resource.RLIM_INFINITY if v == UNLIMITED else v
                                         for v in (soft, hard)))
    if plan.affinity:
        os.sched_setaffinity(0, plan.affinity)
    env = dict(os.environ)
    env.update(plan.env)
    os.execvpe(plan.argv[0], plan.argv, env)

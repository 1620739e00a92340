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
from typing import Any

from msgspec import Struct, field
from q3cn_doctor.facts import Facts, FactsError
from q3cn_doctor.facts.gpu import capability_text
from q3cn_doctor.host.base import CAP_SYS_NICE, UNLIMITED
from q3cn_doctor.options import Options
from q3cn_doctor.parsers.server_help import Intents, translate
from q3cn_doctor.plan.cpu import PRIO_HIGH, PRIO_HIGH_RTPRIO
from q3cn_doctor.plan.placement import (
    hidden_gpus,
    no_room_to_lock,
    placement,
    usable_gpus,
)
from q3cn_doctor.plan.server import planned_port
from q3cn_doctor.plan.serving import serving_plan
from q3cn_doctor.plan.speed import speed, what_if
from q3cn_doctor.plan.tuned import TuneError, check_tune, saved_tune
from q3cn_doctor.records import plain
from q3cn_doctor.report.output import shell_line

from .run_as import RunAs

CAP_IPC_LOCK = 14  # mlock beyond RLIMIT_MEMLOCK
CAP_SYS_RESOURCE = 24  # raise a hard resource limit
GIB = 1024**3


class LaunchError(Exception):
    """The plan cannot be made: no llama-server, no model, an unreadable --help..."""


class LaunchPlan(Struct):
    """The command ``launch`` executes: argv, environment, limits and why each flag is there."""
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
    user: dict = field(default_factory=dict)  # who it runs as (launch/run_as.py)
    serving: dict = field(default_factory=dict)  # the serving plan (plan/serving.py)
    imported: list[str] = field(default_factory=list)  # changes made to your own command

    def to_json(self) -> dict:
        document = plain(self)
        document["rlimits"] = {name: list(pair) for name, pair in self.rlimits.items()}
        document["command"] = shell_command(self)
        return document


def build_plan(facts: Facts, options: Options, identity: RunAs | None = None,
               imported: list[str] | None = None) -> LaunchPlan:
    """The launch plan for ``identity`` (who llama-server runs as; None: this process), or
    LaunchError saying why none can be made: a facts section that could not be gathered
    (a damaged GGUF, a corrupt ELF, a hostile snapshot) is one. ``imported``: the changes
    made to the user's own command (launch --from)."""
    try:
        return _build_plan(facts, options, identity, imported)
    except FactsError as exc:
        raise LaunchError(f"no plan can be made: {exc}") from exc


def _build_plan(facts: Facts, options: Options, identity: RunAs | None,
                imported: list[str] | None) -> LaunchPlan:
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
        serving = serving_plan(facts)
    except FactsError as exc:
        raise LaunchError(f"no memory plan could be made for this model here: {exc}") from exc
    identity = identity or RunAs(None, None, None)
    notes: list[str] = [f"Runs as {identity.why}." if identity.switch else ""]
    rlimits: dict[str, tuple[int, int]] = {}
    intents, cpu = _intents(facts, options, identity, plan, serving, rlimits, notes)
    translation = translate(intents, build, _extra_args(facts, options, notes))
    notes += translation.notes
    prefix, affinity = _placement_of_threads(facts, cpu, options, notes)
    env, env_notes = _environment(facts, plan)
    notes += env_notes + _threads_note(options, cpu)
    for name, value in options.server_env.items():
        if name == "LLAMA_SET_ROWS":
            continue  # a no-op since llama.cpp PR #15505: left out, as the note says
        env[name] = value
        notes.append(f"{name}={value}: yours, kept.")
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
        model=_model_json(facts, plan, cpu),
        cpu_plan=cpu.to_json() if cpu is not None else None,
        user=identity.to_json(),
        serving=serving.to_json(),
        imported=list(imported or []),
    )


def _intents(facts: Facts, options: Options, identity: RunAs, plan, serving,
             rlimits: dict, notes: list[str]) -> tuple[Intents, Any]:
    """What the launch wants, before this build's spelling."""
    model = facts.model
    limits = _rlimits(facts)
    if identity.switch:
        lock, why_lock = _lock_decision(facts, plan.ram_bytes, limits, rlimits, identity.name)
        prio, why_prio = None, (f"No --prio: llama-server runs as {identity.name}, without "
                                "root's CAP_SYS_NICE (its threads would only warn \"failed to "
                                "set thread priority\").")
    else:
        lock, why_lock = _lock_decision(facts, plan.ram_bytes, limits, rlimits)
        prio, why_prio = _prio_decision(facts, limits, rlimits)
    no_mmap, why_load = _load_mode(facts, lock, plan, why_lock)
    notes += [why_lock, why_load, why_prio]
    cpu = cpu_plan(facts)
    cpus_known = cpu is not None and bool(cpu.cpus)
    if cpu is not None and not cpus_known:
        # The CPU plan's one-thread fallback would cripple generation: llama.cpp keeps
        # its own default instead (a thread per core it sees).
        notes.append("No --threads: this host's CPUs are unknown, so llama.cpp picks its own "
                     "thread count.")
    targets = plan.fit_target_mib or [1024]
    sampling, sampling_why = _sampling(model)
    return Intents(
        model=options.model,
        port=planned_port(options, facts),
        host=options.host,
        alias=options.alias,
        seed=options.seed,
        ctx_size=serving.ctx_size,
        ctx_why=serving.why.get("ctx_size") or "the planned context",
        sampling=sampling,
        sampling_why=sampling_why,
        gpu=plan.gpus > 0,
        fit_target_mib=targets[:1] if len(set(targets)) == 1 else targets,
        n_cpu_moe=plan.n_cpu_moe if model.experts else None,
        gpu_layers=None if plan.dense_fits_gpu else plan.gpu_layers,
        lock=lock,
        no_mmap=no_mmap,
        thread_args=cpu.thread_args() if cpus_known else [],
        affinity_args=cpu.affinity_args() if cpus_known else [],
        prio=prio,
        batch=serving.batch,
        ubatch=serving.ubatch,
        serving=_serving_intents(serving, facts.server.build()),
    ), cpu


def _model_json(facts: Facts, plan, cpu: Any) -> dict:
    model = facts.model
    return {"path": model.path, "name": model.name, "architecture": model.architecture,
            "ctx_size": plan.ctx_size, "trained_ctx": model.context_length,
            "sampling": model.sampling, "sampling_source": model.sampling_source,
            **_expected(facts, cpu), "memory_plan": plan.to_json()}


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


SAMPLING_FLAGS = {"temp": "--temp", "top_k": "--top-k", "top_p": "--top-p", "min_p": "--min-p",
                  "xtc_probability": "--xtc-probability", "xtc_threshold": "--xtc-threshold",
                  "penalty_last_n": "--repeat-last-n", "penalty_repeat": "--repeat-penalty",
                  "mirostat": "--mirostat", "mirostat_tau": "--mirostat-ent",
                  "mirostat_eta": "--mirostat-lr", "sequence": "--samplers"}


def _sampling(model) -> tuple[tuple[tuple[str, str], ...], str]:
    """The model's own sampling as llama-server flags, and where it came from. None: the
    build's defaults (no other model's settings)."""
    pairs = tuple((SAMPLING_FLAGS[key], _number(value)) for key, value in model.sampling.items()
                  if key in SAMPLING_FLAGS)
    return pairs, f"the model's recommended sampling ({model.sampling_source})"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if value != int(value) else f"{value:.1f}"
    return str(value)


def _serving_intents(serving, build) -> list[tuple[str, list[str], str]]:
    """The serving plan's flags (only those this build has; the translation drops others)."""
    why = serving.why
    wanted: list[tuple[str, list[str], str]] = [
        ("--parallel", [str(serving.parallel)], why["parallel"])]
    if serving.kv_unified:
        wanted.append(("--kv-unified", [], why["kv_unified"]))
    if serving.cache_reuse:
        wanted.append(("--cache-reuse", [str(serving.cache_reuse)], why["cache_reuse"]))
    if serving.checkpoints is not None and serving.checkpoints_flag:
        wanted.append((serving.checkpoints_flag, [str(serving.checkpoints)],
                       why["checkpoints"]))
    if serving.cache_ram_mib is not None:
        wanted.append(("--cache-ram", [str(serving.cache_ram_mib)], why["cache_ram"]))
    wanted.append(("--ubatch-size", [str(serving.ubatch)], why["batch"]))
    return [item for item in wanted if item[0] == "--ubatch-size" or build is None
            or build.knows(item[0])]


def _placement_of_threads(facts: Facts, cpu, options: Options, notes: list[str]
                          ) -> tuple[list[str], list[int] | None]:
    """numactl for a one-node plan; else the process affinity, set before exec as well as
    the build's own mask flags: llama.cpp has ignored --cpu-mask under OpenMP (its default
    threading) in some releases (PR #16164, issue #26997), and a process affinity holds for
    every thread whatever the build does."""
    if cpu is None or not cpu.cpus:
        return [], None
    if cpu.numa_node is not None:
        notes.append(f"numactl binds threads and memory to NUMA node {cpu.numa_node}.")
        return ["numactl", f"--cpunodebind={cpu.numa_node}",
                f"--membind={cpu.numa_node}"], None
    if options.affinity:
        yours = _your_cpus(facts, options.affinity, notes)
        if yours:
            return [], yours
    if not _restricts(facts, cpu.cpus):
        return [], None
    notes.append(f"CPU affinity {cpu.cpu_list} set on the process before exec "
                 "(sched_setaffinity) as well as by the build's own flags: every thread "
                 "inherits it, even where the build ignores its mask under OpenMP (llama.cpp "
                 "PR #16164, issue #26997).")
    return [], list(cpu.cpus)


def _your_cpus(facts: Facts, cpu_list: str, notes: list[str]) -> list[int]:
    """Your own taskset -c CPUs, those of them online here (a script written for another
    machine may name CPUs this one lacks: taskset would refuse to start)."""
    from q3cn_doctor.host.base import format_cpu_list, parse_cpu_list

    wanted = parse_cpu_list(cpu_list)
    try:
        online = set(facts.cpu.online_cpus)
    except FactsError:
        online = set(wanted)
    kept = [cpu for cpu in wanted if cpu in online]
    if not kept:
        notes.append(f"Your taskset -c {cpu_list} names no CPU online here: the plan's "
                     "affinity instead.")
    elif kept != wanted:
        notes.append(f"CPU affinity {format_cpu_list(kept)}: yours (taskset -c {cpu_list}), "
                     "less the CPUs this machine lacks, set on the process before exec.")
    else:
        notes.append(f"CPU affinity {cpu_list}: yours (taskset -c), set on the process "
                     "before exec.")
    return kept


def _threads_note(options: Options, cpu) -> list[str]:
    """Your own --threads is kept; the CPU plan's count and reason beside it."""
    from q3cn_doctor.facts.model import int_arg

    yours = int_arg(list(options.server_args), "-t", "--threads")
    if yours is None or cpu is None or not cpu.cpus or yours == cpu.threads:
        return []
    return [f"--threads {yours}: yours, kept. The CPU plan would use {cpu.threads}: "
            + (cpu.rationale[1] if len(cpu.rationale) > 1 else cpu.rationale[0])]


def _extra_args(facts: Facts, options: Options, notes: list[str]) -> list[str]:
    """A saved tune's llama-server arguments (noted in ``notes``) where it was measured
    on this build, model and machine, then the user's own, which win over them;
    LaunchError saying what changed where the tune was measured elsewhere."""
    if options.no_tune:
        return list(options.server_args)
    try:
        tune = saved_tune(facts, options.tune)
        if tune is None:
            return list(options.server_args)
        check_tune(facts, tune)
    except TuneError as exc:
        raise LaunchError(str(exc)) from exc
    notes.append(f"Tuned: {' '.join(tune.server_args)} (measured best by `q3cn-doctor "
                 f"tune`, {tune.source}).")
    return list(tune.server_args) + list(options.server_args)


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


def _lock_decision(facts: Facts, need: int, limits: dict, rlimits: dict,
                   as_user: str | None = None) -> tuple[bool, str]:
    """Lock the model's RAM part where RAM holds it and memlock allows (raising the soft
    limit to the hard one where that is enough). ``as_user``: root plans for the user it
    drops to, who keeps root's limits but none of its capabilities; with CAP_SYS_RESOURCE
    root raises RLIMIT_MEMLOCK to unlimited first (what LimitMEMLOCK=infinity does)."""
    short = no_room_to_lock(facts, need)
    if short is not None and short[0] == "RAM":
        return False, (f"Model not locked in RAM: its RAM part ({need / GIB:.1f} GiB) and "
                       f"the OS headroom exceed RAM ({short[1] / GIB:.1f} GiB); mmap lets the "
                       "kernel page it instead.")
    if short is not None:
        return False, (f"Model not locked in RAM: its RAM part ({need / GIB:.1f} GiB) and "
                       f"the headroom exceed the cgroup's memory limit ({short[1] / GIB:.1f} "
                       "GiB, see cpu.quota:memory), where locked pages would have the "
                       "out-of-memory killer end the load; mmap lets the kernel page it.")
    if as_user and _capable(facts, CAP_SYS_RESOURCE):
        rlimits["MEMLOCK"] = (UNLIMITED, UNLIMITED)
        return True, (f"Model locked in RAM: RLIMIT_MEMLOCK raised to unlimited as root, "
                      f"then kept by {as_user} after the drop (CAP_IPC_LOCK is not).")
    if not as_user and _capable(facts, CAP_IPC_LOCK):
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
                   f"{need / GIB:.1f} GiB"
                   + (f" (root here lacks CAP_SYS_RESOURCE to raise it for {as_user})"
                      if as_user else "")
                   + " (see memory.memlock; `q3cn-doctor fix --only memlock.limit` raises it).")


def _load_mode(facts: Facts, lock: bool, plan, why_lock: str) -> tuple[bool, str]:
    """Where locking is refused by the memlock limit, a CUDA build still reads the model
    into RAM (--no-mmap / --load-mode none): its CPU weights then sit in pinned host
    buffers, which cannot be swapped and upload to the GPU faster. Where RAM is short,
    mmap stays (the kernel can page it)."""
    if lock or plan.ram_bytes == 0 or "RLIMIT_MEMLOCK" not in why_lock:
        return False, ""
    backends = getattr(facts.get("server"), "backends", None) or []
    if "cuda" not in backends:
        return False, ""
    return True, ("Read into RAM without mmap (not locked): on this CUDA build the CPU "
                  "weights sit in pinned host buffers, which cannot be swapped out.")


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
    notes += _visible_gpus(facts, inherited, env)
    return env, notes


def _visible_gpus(facts: Facts, inherited: dict[str, str], env: dict[str, str]) -> list[str]:
    """Hide the GPUs the build has no kernels for, which would stop it at their first
    kernel: CUDA_VISIBLE_DEVICES lists the others by UUID (NVML's index order is not
    CUDA's), in the plan's order, so CUDA's device k is the plan's GPU k. Nothing where no
    GPU is hidden or the user set the variable."""
    hidden = hidden_gpus(facts)
    if not hidden:
        return []
    names = ", ".join(f"{g.get('name') or 'GPU ' + str(g.get('index'))} ({capability_text(g)})"
                      for g in hidden)
    why = f"this CUDA {facts.cuda_build.runtime_major} build has no kernels for the {names}"
    if "CUDA_VISIBLE_DEVICES" in inherited:
        return [f"CUDA_VISIBLE_DEVICES={inherited['CUDA_VISIBLE_DEVICES']} kept from your "
                f"environment; {why}."]
    uuids = [g.get("uuid") for g in usable_gpus(facts)]
    if not all(isinstance(u, str) and u.startswith(("GPU-", "MIG-")) for u in uuids):
        return [f"CUDA_VISIBLE_DEVICES not set, as NVML gave no UUID to name the GPUs by; "
                f"{why}: set it to the others."]
    env["CUDA_VISIBLE_DEVICES"] = ",".join(uuids)
    return [f"CUDA_VISIBLE_DEVICES names the GPUs to use: {why}"
            + (", so llama-server runs on the CPU." if not uuids else ".")]


# -- printing and handing off ---------------------------------------------------------------------

def _prlimit_value(value: int) -> str:
    return "unlimited" if value == UNLIMITED else str(value)


def shell_command(plan: LaunchPlan) -> str:
    """The plan as one shell line: env, prlimit, taskset, then llama-server, all quoted
    (a control character in a path or an argument in bash's ``$'...'`` form). Secrets
    included: it is the command to run (``--print``, a unit file)."""
    return shell_line(_shell_parts(plan))


def shown_command(plan: LaunchPlan) -> str:
    """The same line with its secrets blanked (``--api-key``...): what launch announces on
    stderr before it execs, which a service manager keeps in its log."""
    from q3cn_doctor.host.redact import redact_cmdline

    return shell_line(redact_cmdline(_shell_parts(plan)))


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
    """Become llama-server: raise the limits (as root, before the drop), take the
    affinity, drop to the planned user, set the environment, exec. Returns only by
    raising OSError (the program could not be started, or privileges not dropped)."""
    import resource

    for name, (soft, hard) in plan.rlimits.items():
        number = getattr(resource, "RLIMIT_" + name)
        try:
            resource.setrlimit(number, tuple(resource.RLIM_INFINITY if v == UNLIMITED else v
                                             for v in (soft, hard)))
        except ValueError as exc:  # above the hard limit, without CAP_SYS_RESOURCE
            raise PermissionError(f"RLIMIT_{name}: {exc}") from exc
    if plan.affinity:
        os.sched_setaffinity(0, plan.affinity)
    identity = RunAs.from_json(plan.user) if plan.user else RunAs(None, None, None)
    identity.become()
    env = identity.environ(dict(os.environ))
    env.update(plan.env)
    os.execvpe(plan.argv[0], plan.argv, env)

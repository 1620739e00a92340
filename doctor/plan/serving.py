"""How llama-server serves, for the way it is used: ``--for agent`` (the default), ``chat``
or ``batch``.

A coding agent sends one long, growing prompt every turn. What makes it fast is reusing
what the server already computed: one slot (``-np 1``: every extra slot holds its own
recurrent state, and the automatic count is 4 in recent builds), the prompt cache in RAM
(``--cache-ram``), KV chunks shifted into place (``--cache-reuse``, where the model's
memory can shift), context checkpoints for models whose memory cannot be rolled back
(hybrid/recurrent and sliding-window layers: without one, a prompt that diverges before
the end is re-processed in full, "forcing full prompt re-processing", llama.cpp
#19794, #21831), and a physical batch large enough for prompt processing when the experts
sit in RAM (a gpt-oss-120b ubatch sweep on an RTX 3090: pp 380 t/s at 512, 1113 at 2048,
1682 at 4096, generation unchanged).

The plan is data, derived once a run: the placement counts its RAM (the prompt cache and
the checkpoints) in memory.fit and re-fits the VRAM for its compute buffer; the launch
writes it in the build's own flags. The user's own ``-np``, ``--cache-ram``, ``-ub``...
win over the plan's, and are what is counted.
"""

from __future__ import annotations

from msgspec import Struct, field
from q3cn_doctor.facts import Facts
from q3cn_doctor.facts.model import MIB, ModelFacts, cache_bytes_per_value, int_arg
from q3cn_doctor.records import plain
from q3cn_doctor.units import gib

USES = ("agent", "chat", "batch")
DEFAULT_USE = "agent"
SLOTS = {"agent": 1, "chat": 1, "batch": 4}
CACHE_REUSE_CHUNK = 256  # tokens: the chunk size llama.cpp's own examples use (PR #17858)
CHECKPOINTS = 32  # per slot: the 2026 builds' default (-ctxcp); older ones made 3
MIN_CHECKPOINTS = 4
CACHE_RAM_CAP_MIB = {"agent": 16384, "chat": 8192, "batch": 0}
CACHE_RAM_STEP_MIB = 256
MIN_CACHE_RAM_MIB = 512  # below this the cache holds no long prompt: off, and said so
BATCH, UBATCH = 2048, 512  # llama-server's defaults
PROMPT_UBATCHES = {"agent": (4096, 2048), "batch": (4096, 2048), "chat": (2048,)}
MAX_EXPERT_LAYERS_MOVED = 2  # a larger compute buffer may cost this many layers' experts


class ServingPlan(Struct):
    """How llama-server serves its use (agent, chat, batch): slots, context and cache reuse."""
    use: str
    ctx_size: int
    parallel: int  # -np: slots
    cache_reuse: int  # --cache-reuse N (0: not asked for)
    checkpoints: int | None  # context checkpoints per slot; None: not set
    checkpoints_flag: str | None  # --ctx-checkpoints, or --swa-checkpoints in older builds
    cache_ram_mib: int | None  # --cache-ram; None: this build has no prompt cache in RAM
    batch: int
    ubatch: int
    kv_unified: bool  # slots share one KV pool (batch use)
    ram_bytes: int  # RAM beyond the model's: the prompt cache and the checkpoints
    ram_basis: str
    why: dict[str, str] = field(default_factory=dict)  # each setting's reason, by name

    def placement_args(self) -> list[str]:
        """What the placement must know: the physical batch sizes the compute buffer."""
        return ["--ubatch-size", str(self.ubatch)]

    def to_json(self) -> dict:
        return plain(self)


def serving_plan(facts: Facts) -> ServingPlan:
    """This run's serving plan (derived once)."""
    return facts.derived("serving", lambda: plan_serving(facts))


def plan_serving(facts: Facts) -> ServingPlan:
    from q3cn_doctor.plan.placement import place  # the placement reads this plan back

    options = facts.options
    use = getattr(options, "serve_for", None) or DEFAULT_USE
    args = list(options.server_args)
    model = facts.model
    build = _build(facts)
    why: dict[str, str] = {"ctx_size": model.basis.get("ctx_size", "")}
    ctx = model.ctx_size
    base = place(facts, model, args)
    parallel = int_arg(args, "-np", "--parallel")
    why["parallel"] = "yours (-np)" if parallel else _slots_why(use, model)
    parallel = parallel or SLOTS[use]
    cache_reuse, why["cache_reuse"] = _cache_reuse(use, model, args)
    checkpoints, flag, why["checkpoints"] = _checkpoints(use, model, build, args)
    per_checkpoint = checkpoint_bytes(model, UBATCH) * parallel
    spare = _left(facts, base)
    if checkpoints and spare is not None and flag and not _given(args, flag):
        affordable = max(0, spare) // 2 // max(1, per_checkpoint)
        if affordable < checkpoints:
            checkpoints = affordable if affordable >= MIN_CHECKPOINTS else 0
            why["checkpoints"] += (f"; {checkpoints} per slot: what half the spare RAM holds"
                                   if checkpoints else "; none: no RAM to spare for them "
                                   "(free RAM, or a prompt that diverges is re-processed)")
    checkpoint_ram = (checkpoints or 0) * per_checkpoint
    left = None if spare is None else spare - checkpoint_ram
    cache_ram, why["cache_ram"] = _cache_ram(use, build, args, left)
    ubatch, batch, why["batch"] = _batches(facts, model, base, args, use)
    kv_unified = use == "batch" and parallel > 1 and (build is None or build.knows(
        "--kv-unified"))
    if kv_unified:
        why["kv_unified"] = (f"{parallel} slots share one KV pool: any slot can use the whole "
                             "context while the others are idle")
    ram = checkpoint_ram + max(0, cache_ram or 0) * MIB
    ram_basis = (f"prompt cache --cache-ram {cache_ram} MiB" if cache_ram else
                 "no prompt cache in RAM") + (
        f" + {checkpoints} context checkpoints x {parallel} slot(s) x "
        f"{gib(per_checkpoint // parallel)} each" if checkpoint_ram else "")
    return ServingPlan(use, ctx, parallel, cache_reuse, checkpoints, flag, cache_ram, batch,
                       ubatch, kv_unified, ram, ram_basis, why)


def _left(facts: Facts, base) -> int | None:
    """RAM left beside the model: of the total, less the model and the OS headroom; of
    what is available now, less the model (other programs keep theirs)."""
    memory = facts.get("memory")
    total = getattr(memory, "total_bytes", None)
    if total is None:
        return None
    left = total - base.ram_needed_bytes
    available = getattr(memory, "available_bytes", None)
    if available is not None:
        left = min(left, available - base.ram_bytes)
    return left


def _build(facts: Facts):
    server = facts.get("server")
    return server.build() if server is not None and server.path else None


def _given(args: list[str], *names: str) -> bool:
    return any(arg.partition("=")[0] in names for arg in args)


def _slots_why(use: str, model: ModelFacts) -> str:
    if use == "batch":
        return ("4 slots: independent requests decode together (continuous batching); each "
                "holds its own share of the KV cache")
    state = (f" and its own {gib(model.recurrent_state_bytes)} of recurrent state"
             if model.recurrent_state_bytes else "")
    return (f"one slot: a {'coding agent' if use == 'agent' else 'chat'} sends one "
            f"conversation at a time, and every extra slot (4 by default in recent builds, "
            f"-np -1) holds its own KV cell range{state} and splits the batch")


def _cache_reuse(use: str, model: ModelFacts, args: list[str]) -> tuple[int, str]:
    given = int_arg(args, "--cache-reuse")
    if given is not None:
        return given, "yours (--cache-reuse)"
    if use == "batch":
        return 0, "not asked for: independent prompts share no chunks to shift"
    if recurrent(model):
        return 0, ("not asked for: a recurrent layer's state cannot be shifted to a new "
                   "position; context checkpoints restore it instead")
    if model.sliding_window_tokens:
        return 0, ("not asked for: llama.cpp cannot shift a sliding-window cache (it "
                   "disables --cache-reuse unless --swa-full)")
    return CACHE_REUSE_CHUNK, (
        f"chunks of {CACHE_REUSE_CHUNK}+ tokens found again later in the prompt (an edited "
        "file, a re-sent tool result) are shifted into place instead of re-computed "
        "(llama.cpp PRs #9866, #17858)")


def recurrent(model: ModelFacts) -> bool:
    """Layers that keep a state instead of a KV cache (read from a file, or, for a profile,
    the layers that are neither full attention nor sliding-window)."""
    if model.recurrent_layers is not None:
        return model.recurrent_layers > 0
    return model.layers > model.full_attention_layers and not model.sliding_window_tokens


def checkpoint_bytes(model: ModelFacts, ubatch: int) -> int:
    """One context checkpoint: the memory that cannot be rolled back, copied to RAM (the
    recurrent state, the sliding-window cache of window + ubatch cells)."""
    window = model.sliding_window_tokens or 0
    layers = model.sliding_window_layers
    if layers is None:
        layers = model.layers - model.full_attention_layers if window else 0
    per_value = cache_bytes_per_value(model.cache_type)
    swa = int(layers * 2 * model.kv_heads * model.head_dim * (window + ubatch) * per_value) \
        if window else 0
    return model.recurrent_state_bytes + swa


def _checkpoints(use: str, model: ModelFacts, build, args: list[str]
                 ) -> tuple[int | None, str | None, str]:
    """Checkpoints per slot for models whose memory cannot be rolled back."""
    given = int_arg(args, "-ctxcp", "--ctx-checkpoints", "--swa-checkpoints")
    hybrid, windowed = recurrent(model), bool(model.sliding_window_tokens)
    if not hybrid and not windowed:
        return None, None, "none needed: every layer's KV cache can be rolled back"
    flag = None
    if build is None or build.knows("--ctx-checkpoints"):
        flag = "--ctx-checkpoints"
    elif windowed and build.knows("--swa-checkpoints"):
        flag = "--swa-checkpoints"
    if given is not None:
        return given, flag, "yours"
    kind = "hybrid/recurrent" if hybrid else "sliding-window"
    if flag is None:
        return None, None, (f"this build makes no context checkpoints for a {kind} model: a "
                            "prompt that changes before its end is re-processed in full; a "
                            "newer llama.cpp has --ctx-checkpoints")
    if use == "batch":
        return None, flag, "the build's default: independent prompts are rarely re-sent"
    return CHECKPOINTS, flag, (
        f"a {kind} model's memory cannot be rolled back: without a checkpoint near where "
        "the next turn's prompt diverges, llama-server re-processes the whole prompt "
        "(\"forcing full prompt re-processing\", llama.cpp #19794, #21831; checkpoints: "
        "PR #15293)")


def _cache_ram(use: str, build, args: list[str], left: int | None
               ) -> tuple[int | None, str]:
    given = int_arg(args, "-cram", "--cache-ram")
    if given is not None:
        return given, "yours (--cache-ram)"
    if build is not None and not build.knows("--cache-ram"):
        return None, "this build keeps no prompt cache in RAM (--cache-ram arrived in PR #16391)"
    cap = CACHE_RAM_CAP_MIB[use]
    if cap == 0:
        return 0, "off: independent prompts share no prefix worth keeping"
    if left is None:
        default = _default(build, "--cache-ram") or 8192
        return min(cap, default), "RAM size unknown: the build's default size"
    size = min(cap, max(0, left) // 2 // MIB) // CACHE_RAM_STEP_MIB * CACHE_RAM_STEP_MIB
    if size < MIN_CACHE_RAM_MIB:
        return 0, (f"off: RAM has {gib(max(0, left))} left beside the model and its "
                   "headroom, too little to cache a long prompt")
    return size, (f"half the {gib(left)} of RAM left beside the model and its headroom (at "
                  f"most {cap} MiB): earlier prompts (another session, a sub-agent) stay "
                  "cached, and counted in memory.fit")


def _default(build, flag: str) -> int | None:
    spec = build.spec(flag) if build is not None else None
    head = (spec.default or "").split(",")[0].strip() if spec else ""
    return int(head) if head.lstrip("-").isdecimal() else None


def _batches(facts: Facts, model: ModelFacts, base, args: list[str], use: str
             ) -> tuple[int, int, str]:
    from q3cn_doctor.plan.placement import place

    ubatch = int_arg(args, "-ub", "--ubatch-size")
    batch = int_arg(args, "-b", "--batch-size")
    if ubatch or batch:
        ubatch = ubatch or min(UBATCH, batch or UBATCH)
        return ubatch, max(batch or BATCH, ubatch), "yours (-b/-ub)"
    experts_in_ram = base.gpus and model.experts and base.n_cpu_moe > 0
    if not experts_in_ram:
        return UBATCH, BATCH, ("llama-server's defaults: " + (
            "everything sits in RAM" if not base.gpus else "the experts sit on the GPU"))
    for size in PROMPT_UBATCHES[use]:
        wider = place(facts, model, ["--ubatch-size", str(size)] + args)
        if (wider.dense_fits_gpu or not base.dense_fits_gpu) and (
                wider.fits_ram is not False or base.fits_ram is False) and (
                wider.n_cpu_moe - base.n_cpu_moe <= MAX_EXPERT_LAYERS_MOVED):
            moved = (f"; the larger compute buffer leaves --n-cpu-moe {wider.n_cpu_moe} "
                     f"(was {base.n_cpu_moe})" if wider.n_cpu_moe != base.n_cpu_moe else "")
            return size, max(BATCH, size), (
                f"-ub {size}: with experts in RAM each physical batch streams them to the "
                "GPU once, so prompt processing gains 3-4x over -ub 512 (gpt-oss-120b on an "
                f"RTX 3090: 380, 1113, 1682 t/s at 512, 2048, 4096){moved}")
    return UBATCH, BATCH, ("-ub 512: a larger physical batch's compute buffer would push "
                           "attention layers off the GPU, more than "
                           f"{MAX_EXPERT_LAYERS_MOVED} layers' experts to RAM, or beyond "
                           "what RAM holds")

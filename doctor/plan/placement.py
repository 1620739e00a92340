"""Where the model goes on this machine: the one placement every figure quotes.

memory.fit, memory.swap, memory.hugepages, memory.memlock, gpu.vram, model.speed, the
CPU plan's NUMA choice and the launch all read the same ``Placement``, built once a run
from the model, GPU and RAM facts the way llama-server's ``--fit`` (or ``--n-cpu-moe N``)
would place it: every layer's non-expert weights, the KV cache and the compute buffer on
the GPUs first, then as many layers' routed experts as fit in what is left after each
GPU's ``--fit-target`` margin; the rest stays in RAM.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from q3cn_doctor.facts import Facts
from q3cn_doctor.facts.model import (
    GIB,
    MIB,
    ModelFacts,
    cache_bytes_per_value,
    fit_targets_arg,
    int_arg,
    kv_cache_bytes,
)

FIT_TARGET_MIB = 1024  # llama-server's --fit-target default, per device: the plan's too
DESKTOP_MIN_FIT_TARGET_MIB = 1024  # below this a desktop's own growth (a browser) hits OOM
DESKTOP_PROCESSES = ("Xorg", "X", "Xwayland", "gnome-shell", "kwin_wayland", "kwin_x11",
                     "plasmashell", "sway", "Hyprland", "mutter", "cinnamon", "xfwm4", "weston",
                     "labwc", "wayfire", "gamescope", "cosmic-comp", "niri", "river")
UBATCH_TOKENS = 512  # the plan's --ubatch-size (llama-server's default too)
COMPUTE_BASE_BYTES = 256 * MIB  # CUDA compute buffer beside the logits, measured order
OS_HEADROOM_BYTES = 4 * GIB  # kernel, desktop and page cache for everything else
CTX_STEP = 1024  # a context offered instead is a whole multiple of this


@dataclass
class Placement:
    """Where the model goes on this machine, as --fit (or --n-cpu-moe N) would place it."""

    ctx_size: int
    gpus: int  # usable NVIDIA GPUs
    desktop_gpus: list[int]  # indexes of GPUs that also drive a desktop
    fit_target_mib: list[int]  # the margin left free on each GPU
    vram_free_bytes: int
    vram_usable_bytes: int  # free less the margins
    resident_bytes: int  # non-expert weights a GPU takes first (not the embedding table)
    expert_layer_bytes: int  # one layer's routed experts: what --fit moves between the two
    compute_buffer_bytes: int
    kv_cache_bytes: int
    gpu_layers: int  # layers whose attention/dense weights and KV sit on a GPU (-ngl)
    expert_layers_on_gpu: int  # layers whose routed experts also fit there
    n_cpu_moe: int  # --n-cpu-moe: the first N layers keep their experts in RAM
    gpu_bytes: int  # weights, KV cache and compute buffers on the GPUs
    ram_bytes: int  # weights (and KV of layers left on the CPU) in RAM
    ram_needed_bytes: int  # ram_bytes plus the OS headroom
    dense_fits_gpu: bool  # every layer's non-expert part and KV fit the GPUs
    fits_ram: bool | None  # ram_needed_bytes within MemTotal; None where RAM is unknown
    ram_bytes_per_token: int  # what one generated token reads from RAM
    gpu_bytes_per_token: int  # and from VRAM
    basis: str = ""  # how ram_bytes was reached (the OS headroom is not in it)
    serving_ram_bytes: int = 0  # the prompt cache and context checkpoints (plan/serving.py)
    serving_basis: str = ""

    @property
    def headroom_bytes(self) -> int:
        return self.ram_needed_bytes - self.ram_bytes - self.serving_ram_bytes

    @property
    def needed_basis(self) -> str:
        """How ram_needed_bytes was reached: the basis plus the serving RAM and the OS
        headroom."""
        serving = (f"; plus {self.serving_ram_bytes / GIB:.1f} GiB for serving "
                   f"({self.serving_basis})" if self.serving_ram_bytes else "")
        return f"{self.basis}{serving}; plus {self.headroom_bytes // GIB} GiB for the OS"

    @property
    def dense_need_bytes(self) -> int:
        """What every layer's attention on the GPUs takes: weights, KV cache, compute."""
        return self.resident_bytes + self.kv_cache_bytes + self.compute_buffer_bytes

    def to_json(self) -> dict:
        return asdict(self)


def placement(facts: Facts) -> Placement:
    """This run's placement (built once; FactsError where the model facts failed), as the
    serving plan runs it: its physical batch, its RAM counted."""
    return facts.derived("placement", lambda: served(facts))


def desktop_gpu(device: dict) -> bool:
    """NVML lists a display server or compositor among the GPU's processes."""
    processes = device.get("processes")
    if not isinstance(processes, list):
        return False
    return any(str(p.get("name") or "").rsplit("/", 1)[-1] in DESKTOP_PROCESSES
               for p in processes if isinstance(p, dict))


def usable_gpus(facts: Facts) -> list[dict]:
    """The GPUs NVML read without error and whose free VRAM it reported."""
    return [g for g in facts.get("gpus", []) if "error" not in g
            and isinstance(g.get("memory_free_bytes"), int)]


def compute_buffer_bytes(model: ModelFacts, ubatch: int = UBATCH_TOKENS) -> int:
    """The CUDA compute buffer: a base plus the logits of one micro-batch."""
    vocab = model.vocab_size or 152_000
    return COMPUTE_BASE_BYTES + vocab * ubatch * 4


def at_ctx(model: ModelFacts, ctx_size: int) -> ModelFacts:
    """The same model with its KV cache at another context."""
    per_value = cache_bytes_per_value(model.cache_type)
    return replace(model, ctx_size=ctx_size,
                   kv_cache_bytes=kv_cache_bytes(asdict(model), ctx_size, per_value))


def largest_ctx_on_gpu(facts: Facts, model: ModelFacts, args: list[str]) -> int:
    """The largest multiple of CTX_STEP up to ``model.ctx_size`` at which every layer's
    attention and KV cache fit the GPUs by this same placement; 0 where none does."""
    low, high = 0, max(model.ctx_size, CTX_STEP) // CTX_STEP
    while low < high:
        middle = (low + high + 1) // 2
        if place(facts, at_ctx(model, middle * CTX_STEP), args).dense_fits_gpu:
            low = middle
        else:
            high = middle - 1
    return low * CTX_STEP


def _experts(model: ModelFacts, layers_on_gpu: int, expert_layers: int) -> int:
    """The routed-expert bytes of ``layers_on_gpu`` whole layers (all of them: every byte)."""
    return model.routed_bytes * layers_on_gpu // expert_layers if expert_layers else 0


def _targets(gpus: list[dict], args: list[str]) -> list[int]:
    given = fit_targets_arg(args)
    return [given[min(index, len(given) - 1)] if given else FIT_TARGET_MIB
            for index in range(len(gpus))]


def place(facts: Facts, model: ModelFacts, args: list[str] | None = None) -> Placement:
    """Place ``model``: the dense part first, then whole layers of routed experts."""
    args = list(args or [])
    gpus = usable_gpus(facts)
    ubatch = int_arg(args, "-ub", "--ubatch-size") or UBATCH_TOKENS
    targets = _targets(gpus, args)
    free = sum(int(g["memory_free_bytes"]) for g in gpus)
    usable = sum(max(0, int(g["memory_free_bytes"]) - t * MIB) for g, t in zip(gpus, targets))
    layers = max(1, model.layers)
    expert_layers = model.expert_layers or (layers if model.experts else 0)
    per_layer_experts = model.routed_bytes // expert_layers if expert_layers else 0
    # llama.cpp keeps the token embedding table in RAM (a token reads one row of it).
    embeddings = (model.tensor_bytes or {}).get("embeddings", 0)
    resident = max(0, model.file_bytes - model.routed_bytes - embeddings)
    kv = model.kv_cache_bytes
    compute = compute_buffer_bytes(model, ubatch) if gpus else 0
    if not gpus:
        gpu_layers = experts_on_gpu = gpu_bytes = 0
    elif resident + kv + compute <= usable:
        gpu_layers = layers
        room = usable - resident - kv - compute
        experts_on_gpu = min(expert_layers, room // per_layer_experts) if per_layer_experts \
            else 0
        gpu_bytes = resident + kv + compute + _experts(model, experts_on_gpu, expert_layers)
    else:  # not even the dense part fits: whole layers stay on the CPU
        per_layer = (resident + kv) / layers
        gpu_layers = max(0, min(layers, int((usable - compute) // per_layer))) \
            if per_layer else layers
        experts_on_gpu = 0
        gpu_bytes = int(gpu_layers * per_layer) + compute if gpu_layers else 0
    cpu_share = (layers - gpu_layers) / layers
    ram = (model.routed_bytes - _experts(model, experts_on_gpu, expert_layers) + embeddings
           + int((resident + kv) * cpu_share))
    routed_cpu_share = (expert_layers - experts_on_gpu) / expert_layers if expert_layers else 0
    if gpu_layers < layers:
        routed_cpu_share = max(routed_cpu_share, cpu_share)
    total = getattr(facts.get("memory"), "total_bytes", None)
    basis = f"{model.name} at ctx {model.ctx_size}: " + (
        f"{len(gpus)} GPU(s): {free / GIB:.1f} GiB free less --fit-target "
         f"{'/'.join(str(t) for t in targets)} MiB; non-expert weights "
         f"{resident / GIB:.1f} GiB, KV cache {kv / GIB:.1f} GiB and compute buffer "
         f"{compute / GIB:.2f} GiB first, then whole layers of routed experts "
         f"({per_layer_experts / GIB:.2f} GiB each)" if gpus else
        "no usable NVIDIA GPU: everything in RAM")
    return Placement(
        ctx_size=model.ctx_size, gpus=len(gpus),
        desktop_gpus=[int(g.get("index", i)) for i, g in enumerate(gpus) if desktop_gpu(g)],
        fit_target_mib=targets, vram_free_bytes=free, vram_usable_bytes=usable,
        resident_bytes=resident, expert_layer_bytes=per_layer_experts,
        compute_buffer_bytes=compute, kv_cache_bytes=kv, gpu_layers=gpu_layers,
        expert_layers_on_gpu=experts_on_gpu,
        n_cpu_moe=layers - experts_on_gpu if expert_layers else 0,
        gpu_bytes=gpu_bytes, ram_bytes=ram, ram_needed_bytes=ram + OS_HEADROOM_BYTES,
        dense_fits_gpu=bool(gpus) and gpu_layers == layers,
        fits_ram=None if total is None else ram + OS_HEADROOM_BYTES <= total,
        ram_bytes_per_token=int(model.routed_bytes_per_token * routed_cpu_share
                                + model.dense_bytes_per_token * cpu_share),
        gpu_bytes_per_token=int(model.routed_bytes_per_token * (1 - routed_cpu_share)
                                + model.dense_bytes_per_token * (1 - cpu_share)),
        basis=basis)


# -- the serving plan's part (plan/serving.py) ----------------------------------------------------

def served(facts: Facts) -> Placement:
    """The placement at the serving plan's ubatch (the compute buffer), with the RAM its
    prompt cache and context checkpoints take added to what RAM must hold."""
    from q3cn_doctor.plan.serving import serving_plan

    serving = serving_plan(facts)
    plan = place(facts, facts.model,
                 serving.placement_args() + list(facts.options.server_args))
    if not serving.ram_bytes:
        return plan
    needed = plan.ram_needed_bytes + serving.ram_bytes
    total = getattr(facts.get("memory"), "total_bytes", None)
    return replace(plan, ram_needed_bytes=needed, serving_ram_bytes=serving.ram_bytes,
                   serving_basis=serving.ram_basis,
                   fits_ram=None if total is None else needed <= total)

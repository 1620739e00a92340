"""Where the model goes on this machine: the one placement every figure quotes.

memory.fit, memory.swap, memory.hugepages, memory.memlock, gpu.vram, model.speed, the
CPU plan's NUMA choice and the launch all read the same ``Placement``, built once a run
from the model, GPU and RAM facts. Where the user's arguments place the model (-ngl,
--n-cpu-moe, --cpu-moe, -ot: plan/placement_flags.py) it follows them; otherwise it
places it the way llama-server's ``--fit`` (or ``--n-cpu-moe N``) would: every layer's
non-expert weights, the KV cache and the compute buffer on the GPUs first, then as many
layers' routed experts as fit in what is left after each GPU's ``--fit-target`` margin;
the rest stays in RAM. Either way the result is a per-layer map (which part of each layer
sits on a GPU), from which the bytes, the bytes each token reads on each side and the
CPU<->GPU transitions of a token follow.
"""

from __future__ import annotations

from msgspec import Struct, field
from msgspec.structs import asdict, replace
from q3cn_doctor.facts import Facts
from q3cn_doctor.facts.gpu import too_old_for
from q3cn_doctor.facts.model import (
    GIB,
    MIB,
    ModelFacts,
    cache_bytes_per_value,
    fit_targets_arg,
    int_arg,
    kv_cache_bytes,
)
from q3cn_doctor.plan.placement_flags import (
    PlacementFlags,
    gpu_shares,
    output_on_gpu,
    parse_flags,
)
from q3cn_doctor.records import plain

FIT_TARGET_MIB = 1024  # llama-server's --fit-target default, per device: the plan's too
DESKTOP_MIN_FIT_TARGET_MIB = 1024  # below this a desktop's own growth (a browser) hits OOM
DESKTOP_PROCESSES = ("Xorg", "X", "Xwayland", "gnome-shell", "kwin_wayland", "kwin_x11",
                     "plasmashell", "sway", "Hyprland", "mutter", "cinnamon", "xfwm4", "weston",
                     "labwc", "wayfire", "gamescope", "cosmic-comp", "niri", "river")
UBATCH_TOKENS = 512  # the plan's --ubatch-size (llama-server's default too)
COMPUTE_BASE_BYTES = 256 * MIB  # CUDA compute buffer beside the logits, measured order
OS_HEADROOM_BYTES = 4 * GIB  # kernel, desktop and page cache for everything else
CTX_STEP = 1024  # a context offered instead is a whole multiple of this


class Placement(Struct):
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
    gpu_shares: list[float] = field(default_factory=list)  # each GPU's share of the VRAM part
    split_mode: str = "layer"  # llama.cpp --split-mode: layers one GPU after another, or rows
    transitions: int = 0  # CPU<->GPU hand-overs in one token's graph
    kv_gpu_share: float = 0.0  # share of the KV cache (attention layers) on the GPUs
    flags: str = ""  # the user's placement flags it follows ("": the fit-style plan)
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
        return plain(self)


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
    """The GPUs NVML read without error and whose free VRAM it reported, less those the
    build has no kernels for (``hidden_gpus``); where NVML reads none, the AMD or Intel
    GPUs a Vulkan, HIP or SYCL build can use, with their VRAM from sysfs."""
    nvidia = _nvidia_gpus(facts)
    if nvidia:
        hidden = hidden_gpus(facts)
        return [g for g in nvidia if g not in hidden]
    return [g for g in facts.get("sysfs_gpus", []) if isinstance(g.get("memory_free_bytes"), int)]


def cgroup_memory_limit(facts: Facts) -> int | None:
    """The memory limit of the cgroup llama-server would start in (this process's), in
    bytes; None where there is none or it is unknown. Locked pages past it are killed."""
    own = getattr(facts.get("cgroup"), "own", None)
    return getattr(own, "memory_max_bytes", None)


def no_room_to_lock(facts: Facts, part: int) -> tuple[str, int] | None:
    """What cannot hold ``part`` bytes of the model locked beside the OS headroom, and its
    size: ("RAM", MemTotal) or ("its cgroup's memory limit", the limit). Launch maps the
    model there; None where both hold it (or are unknown)."""
    total = getattr(facts.get("memory"), "total_bytes", None)
    if total is not None and part + OS_HEADROOM_BYTES > total:
        return "RAM", total
    limit = cgroup_memory_limit(facts)
    if limit is not None and part + OS_HEADROOM_BYTES > limit:
        return "its cgroup's memory limit", limit
    return None


def hidden_gpus(facts: Facts) -> list[dict]:
    """The NVIDIA GPUs llama-server's CUDA runtime has no kernels for (older than its
    CUDA builds for): no plan counts them, and launch hides them from it."""
    build = facts.get("cuda_build")
    return too_old_for(build, _nvidia_gpus(facts)) if build is not None else []


def _nvidia_gpus(facts: Facts) -> list[dict]:
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


def _targets(gpus: list[dict], args: list[str]) -> list[int]:
    given = fit_targets_arg(args)
    return [given[min(index, len(given) - 1)] if given else FIT_TARGET_MIB
            for index in range(len(gpus))]


class _Layers(Struct):
    """Which share of each layer sits on the GPUs: its always-active part (attention,
    shared expert), its routed experts and its KV cache; and the output head."""

    dense: list[float]
    experts: list[float]
    kv: list[float]
    output: bool


class _Shape(Struct):
    """The model's bytes, per layer where llama.cpp places whole layers."""

    layers: int
    expert_layers: int
    resident: int  # non-expert weights, without the embedding table (its copy where tied)
    output: int  # the output head (part of ``resident``)
    embeddings: int
    kv: int
    routed: int
    shared_expert: bool = False

    @classmethod
    def of(cls, model: ModelFacts) -> _Shape:
        layers = max(1, model.layers)
        tensors = model.tensor_bytes or {}
        embeddings = model.embedding_bytes or tensors.get("embeddings", 0)
        resident = max(0, model.file_bytes - model.routed_bytes - embeddings)
        # No output tensor: the embedding table doubles as the output head (tied), and
        # llama.cpp copies it to the output's device, where every token reads it whole.
        tied = bool(tensors) and not tensors.get("output") and embeddings > 0
        if tied:
            resident += embeddings
        output = embeddings if tied else min(tensors.get("output", 0), resident)
        return cls(layers=layers,
                   expert_layers=model.expert_layers or (layers if model.experts else 0),
                   resident=resident, output=output, embeddings=embeddings,
                   kv=model.kv_cache_bytes, routed=model.routed_bytes,
                   shared_expert=bool(model.shared_experts))

    def has_experts(self, layer: int) -> bool:
        """Leading layers are the dense ones (DeepSeek's first 3, GLM-4.5's first)."""
        return layer >= self.layers - self.expert_layers

    @property
    def per_layer_experts(self) -> int:
        return self.routed // self.expert_layers if self.expert_layers else 0


def _fit_layers(shape: _Shape, usable: int, compute: int, gpus: int) -> _Layers:
    """--fit's placement: every layer's dense part and KV first, then the routed experts
    of whole layers, the last layers first (--n-cpu-moe N keeps layers 0..N-1 in RAM)."""
    layers = shape.layers
    if not gpus:
        return _Layers([0.0] * layers, [0.0] * layers, [0.0] * layers, False)
    if shape.resident + shape.kv + compute <= usable:
        room = usable - shape.resident - shape.kv - compute
        on_gpu = min(shape.expert_layers, room // shape.per_layer_experts) \
            if shape.per_layer_experts else 0
        experts = [1.0 if i >= layers - on_gpu else 0.0 for i in range(layers)]
        return _Layers([1.0] * layers, experts, [1.0] * layers, True)
    per_layer = (shape.resident + shape.kv) / layers  # whole layers' attention, the last ones
    count = max(0, min(layers, int((usable - compute) // per_layer))) if per_layer else layers
    dense = [1.0 if i >= layers - count else 0.0 for i in range(layers)]
    return _Layers(dense, [0.0] * layers, list(dense), False)


def _flag_layers(shape: _Shape, flags: PlacementFlags, gpus: int) -> _Layers:
    """The user's own placement: -ot patterns, --cpu-moe/--n-cpu-moe, then -ngl."""
    layers = shape.layers
    if not gpus or flags.no_gpu:
        return _Layers([0.0] * layers, [0.0] * layers, [0.0] * layers, False)
    shares = [gpu_shares(flags, i, layers, shape.shared_expert) for i in range(layers)]
    offloaded = layers if flags.gpu_layers is None else min(layers, flags.gpu_layers)
    kv = [1.0 if i >= layers - offloaded else 0.0 for i in range(layers)]
    return _Layers([d for d, _ in shares],
                   [e if shape.has_experts(i) else 0.0 for i, (_, e) in enumerate(shares)],
                   kv, output_on_gpu(flags, layers))


def _transitions(shape: _Shape, map_: _Layers, gpus: int, split_mode: str) -> int:
    """CPU<->GPU hand-overs in one token's graph: each time the next part of a layer runs
    on the other side, twice more for a part split between them; GPU-to-GPU hand-overs
    with several GPUs (every layer with --split-mode row)."""
    if not gpus or not any(map_.dense) and not any(map_.experts):
        return 0
    count, side = 0, None
    for layer in range(shape.layers):
        parts = [map_.dense[layer]] + ([map_.experts[layer]] if shape.has_experts(layer)
                                       else [])
        for share in parts:
            here = share >= 0.5
            count += 2 if 0 < share < 1 else 0
            if side is not None and here != side:
                count += 1
            side = here
    if gpus > 1:
        count += shape.layers if split_mode == "row" else gpus - 1
    return count


def _gpu_split(gpus: list[dict], flags: PlacementFlags, targets: list[int]) -> list[float]:
    """Each GPU's share of the VRAM part: -ts where given, one GPU with --split-mode none,
    else in proportion to what each has free beyond its margin (llama.cpp's default)."""
    if not gpus:
        return []
    if flags.split_mode == "none":
        main = min(flags.main_gpu, len(gpus) - 1)
        return [1.0 if i == main else 0.0 for i in range(len(gpus))]
    weights = (flags.tensor_split or [])[:len(gpus)]
    weights += [0.0] * (len(gpus) - len(weights))
    if not flags.tensor_split or not sum(weights):
        weights = [max(0, int(g["memory_free_bytes"]) - t * MIB) for g, t in zip(gpus, targets)]
    total = sum(weights) or 1
    return [w / total for w in weights]


def place(facts: Facts, model: ModelFacts, args: list[str] | None = None,
          gpus: list[dict] | None = None) -> Placement:
    """Place ``model`` on this machine (``gpus`` replaces its usable GPUs: a what-if)."""
    return layout(model, usable_gpus(facts) if gpus is None else gpus, args,
                  getattr(facts.get("memory"), "total_bytes", None))


def layout(model: ModelFacts, gpus: list[dict], args: list[str] | None = None,
           memory_total: int | None = None) -> Placement:
    """Place ``model`` on ``gpus`` (NVML device dicts with ``memory_free_bytes``) as the
    user's flags ask, else the dense part first, then whole layers of routed experts."""
    args = list(args or [])
    flags = parse_flags(args)
    if flags.no_gpu:
        gpus = []
    ubatch = int_arg(args, "-ub", "--ubatch-size") or UBATCH_TOKENS
    targets = _targets(gpus, args)
    free = sum(int(g["memory_free_bytes"]) for g in gpus)
    usable = sum(max(0, int(g["memory_free_bytes"]) - t * MIB) for g, t in zip(gpus, targets))
    shape = _Shape.of(model)
    compute = compute_buffer_bytes(model, ubatch) if gpus else 0
    map_ = (_flag_layers(shape, flags, len(gpus)) if flags.explicit
            else _fit_layers(shape, usable, compute, len(gpus)))
    return _placement(model, shape, map_, flags, gpus, targets, (free, usable, compute),
                      memory_total)


def _placement(model: ModelFacts, shape: _Shape, map_: _Layers, flags: PlacementFlags,
               gpus: list[dict], targets: list[int], vram: tuple[int, int, int],
               total: int | None) -> Placement:
    """The byte counts of a per-layer map (``vram``: free, usable, compute buffer)."""
    free, usable, compute = vram
    layers = shape.layers
    dense_layer = (shape.resident - shape.output) / layers
    dense_share = sum(map_.dense) / layers
    kv_share = sum(map_.kv) / layers
    experts_on_gpu = sum(map_.experts)
    expert_share = experts_on_gpu / shape.expert_layers if shape.expert_layers else 0.0
    output = shape.output if map_.output else 0
    gpu_bytes = (int(dense_layer * sum(map_.dense)) + output + int(shape.kv * kv_share)
                 + int(shape.routed * expert_share) + compute) if gpus else 0
    ram = (shape.routed - int(shape.routed * expert_share) + shape.embeddings
           + int(dense_layer * (layers - sum(map_.dense))) + (shape.output - output)
           + shape.kv - int(shape.kv * kv_share))
    if not gpus:
        ram = shape.routed + shape.embeddings + shape.resident + shape.kv
    dense_tokens = max(0, model.dense_bytes_per_token - shape.output)
    gpu_per_token = (model.routed_bytes_per_token * expert_share + dense_tokens * dense_share
                     + (shape.output if map_.output else 0)) if gpus else 0
    gpu_layers = sum(1 for share in map_.dense if share >= 0.5)
    experts_whole = round(experts_on_gpu)
    basis = f"{model.name} at ctx {model.ctx_size}: " + (
        f"{len(gpus)} GPU(s): {free / GIB:.1f} GiB free; the user's placement "
        f"{flags.describe()}" if flags.explicit and gpus else
        f"{len(gpus)} GPU(s): {free / GIB:.1f} GiB free less --fit-target "
        f"{'/'.join(str(t) for t in targets)} MiB; non-expert weights "
        f"{shape.resident / GIB:.1f} GiB, KV cache {shape.kv / GIB:.1f} GiB and compute "
        f"buffer {compute / GIB:.2f} GiB first, then whole layers of routed experts "
        f"({shape.per_layer_experts / GIB:.2f} GiB each)" if gpus else
        "no usable NVIDIA GPU: everything in RAM")
    return Placement(
        ctx_size=model.ctx_size, gpus=len(gpus),
        desktop_gpus=[int(g.get("index", i)) for i, g in enumerate(gpus) if desktop_gpu(g)],
        fit_target_mib=targets, vram_free_bytes=free, vram_usable_bytes=usable,
        resident_bytes=shape.resident, expert_layer_bytes=shape.per_layer_experts,
        compute_buffer_bytes=compute, kv_cache_bytes=shape.kv, gpu_layers=gpu_layers,
        expert_layers_on_gpu=experts_whole,
        n_cpu_moe=layers - experts_whole if shape.expert_layers else 0,
        gpu_bytes=gpu_bytes, ram_bytes=ram, ram_needed_bytes=ram + OS_HEADROOM_BYTES,
        dense_fits_gpu=bool(gpus) and gpu_layers == layers and gpu_bytes <= usable + MIB,
        fits_ram=None if total is None else ram + OS_HEADROOM_BYTES <= total,
        ram_bytes_per_token=int(model.routed_bytes_per_token + model.dense_bytes_per_token
                                - gpu_per_token),
        gpu_bytes_per_token=int(gpu_per_token), basis=basis,
        gpu_shares=_gpu_split(gpus, flags, targets), split_mode=flags.split_mode,
        transitions=_transitions(shape, map_, len(gpus), flags.split_mode),
        kv_gpu_share=kv_share if gpus else 0.0, flags=flags.describe() if flags.explicit
        else "")


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

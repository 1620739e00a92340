"""The model section: the embedded profile, or the real GGUF given with ``--model``,
and what follows from it on this machine: the KV cache, the memory plan (what the GPUs
hold after their --fit-target margin, what stays in RAM) and the expected speed.

``--model PATH`` is read through the host by doctor/gguf_model.py (the ``gguf``
package, imported only there); a snapshot replays the parsed facts from its
``model.json``. A file that cannot be read leaves the profile in its place and says
why in ``error`` (the ``model.file`` check fails on it).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from q3cn_doctor.host.base import Host
from q3cn_doctor.options import Options
from q3cn_doctor.profiles import PROFILES

if TYPE_CHECKING:
    from . import Facts

KV_BYTES_PER_VALUE = 2  # f16, llama-server's default cache type
MIB = 1024**2
GIB = 1024**3

# Bytes per cached value of each --cache-type-k/-v llama-server offers (ggml block sizes).
CACHE_TYPE_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32,
                    "q4_1": 20 / 32, "iq4_nl": 18 / 32, "q5_0": 22 / 32, "q5_1": 24 / 32}

FIT_TARGET_MIB = 1024  # llama-server's --fit-target default, per device: the plan's too
DESKTOP_MIN_FIT_TARGET_MIB = 1024  # below this a desktop's own growth (a browser) hits OOM
DESKTOP_PROCESSES = ("Xorg", "X", "Xwayland", "gnome-shell", "kwin_wayland", "kwin_x11",
                     "plasmashell", "sway", "Hyprland", "mutter", "cinnamon", "xfwm4", "weston",
                     "labwc", "wayfire", "gamescope", "cosmic-comp", "niri", "river")
UBATCH_TOKENS = 512  # the plan's --ubatch-size (llama-server's default too)
COMPUTE_BASE_BYTES = 256 * MIB  # CUDA compute buffer beside the logits, measured order
OS_HEADROOM_BYTES = 4 * GIB  # kernel, desktop and page cache for everything else

# The roofline: a token reads the CPU part of the weights from RAM and the GPU part from
# VRAM, one after the other (each layer's experts wait for its attention). Each side
# reaches a share of its peak bandwidth. The two shares are fitted to the guide's own
# figures on its machine (i5-12600K, RTX 4070 12 GB, dual-channel DDR5-6000 = 96 GB/s,
# ctx 131072): about 40 tok/s for Qwen3-Coder-Next MXFP4 and 30 for gpt-oss-120b MXFP4.
# tests/test_launch_plan.py holds the estimate to those figures.
RAM_EFFICIENCY = 0.68
GPU_EFFICIENCY = 0.95
ASSUMED_GPU_BANDWIDTH = 400e9

# Memory bandwidth of common cards (bytes/s, the vendors' specifications), by the name
# NVML gives; longest match wins ("RTX 4070 Ti SUPER" before "RTX 4070").
GPU_BANDWIDTH = {
    "RTX 3050": 224e9, "RTX 3060 Laptop": 336e9, "RTX 3060": 360e9, "RTX 3060 Ti": 448e9,
    "RTX 3070 Laptop": 448e9, "RTX 3070": 448e9, "RTX 3070 Ti": 608e9, "RTX 3080": 760e9,
    "RTX 3080 Ti": 912e9, "RTX 3090": 936e9, "RTX 3090 Ti": 1008e9,
    "RTX 4060 Laptop": 256e9, "RTX 4060": 272e9, "RTX 4060 Ti": 288e9,
    "RTX 4070 Laptop": 256e9, "RTX 4070": 504e9, "RTX 4070 SUPER": 504e9,
    "RTX 4070 Ti": 504e9, "RTX 4070 Ti SUPER": 672e9, "RTX 4080": 717e9,
    "RTX 4080 SUPER": 736e9, "RTX 4090": 1008e9, "RTX 5060": 448e9, "RTX 5060 Ti": 448e9,
    "RTX 5070": 672e9, "RTX 5070 Ti": 896e9, "RTX 5080": 960e9, "RTX 5090": 1792e9,
    "RTX 4000 Ada": 360e9, "RTX 5000 Ada": 576e9, "RTX 6000 Ada": 960e9, "RTX A4000": 448e9,
    "RTX A5000": 768e9, "RTX A6000": 768e9, "L4": 300e9, "L40S": 864e9, "L40": 864e9,
    "A10": 600e9, "A100-SXM4-40GB": 1555e9, "A100-PCIE-40GB": 1555e9, "A100": 1935e9,
    "H100 PCIe": 2000e9, "H100": 3350e9, "GH200": 4000e9, "H200": 4800e9,
}


@dataclass
class MemoryPlan:
    """Where the model goes on this machine, as --fit (or --n-cpu-moe N) would place it."""

    gpus: int  # usable NVIDIA GPUs
    desktop_gpus: list[int]  # indexes of GPUs that also drive a desktop
    fit_target_mib: list[int]  # the margin left free on each GPU
    vram_free_bytes: int
    vram_usable_bytes: int  # free less the margins
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
    basis: str = ""


@dataclass
class ModelFacts:
    profile: str
    name: str
    architecture: str
    file_bytes: int
    layers: int
    full_attention_layers: int
    kv_heads: int
    head_dim: int
    sliding_window_tokens: int | None
    experts: int
    experts_used: int
    shared_experts: int
    expert_ffn: int
    hidden: int
    routed_bytes_per_token: int
    ctx_size: int
    kv_cache_bytes: int
    source: str
    basis: dict[str, str] = field(default_factory=dict)
    # -- from a real file (--model) ------------------------------------------------------------
    path: str | None = None  # the --model file (the first of a split set as given)
    files: list[str] = field(default_factory=list)
    file_type: str | None = None
    context_length: int | None = None  # what the model was trained for
    value_dim: int | None = None
    recurrent_layers: int | None = None
    sliding_window_layers: int | None = None
    expert_layers: int | None = None
    vocab_size: int | None = None
    tensor_bytes: dict[str, int] | None = None
    tensor_types: dict[str, str] | None = None
    error: str | None = None  # why --model could not be read (the profile stands in)
    # -- on this machine ----------------------------------------------------------------------
    routed_bytes: int = 0  # all routed experts
    dense_bytes_per_token: int = 0  # everything else a token reads (not the embedding table)
    cache_type: str = "f16"
    memory_plan: MemoryPlan | None = None
    expected_tok_s: float | None = None
    expected_tok_s_rated: float | None = None  # with the RAM at its rated speed
    ram_bytes_per_s: float | None = None  # the RAM bandwidth the estimate used
    gpu_bytes_per_s: float | None = None
    speed_basis: str | None = None

    @property
    def ram_read_per_token(self) -> int:
        """What one generated token reads from RAM on this machine: the memory plan's
        figure (all the GPU cannot hold), else the routed experts alone (the guide's)."""
        plan = self.memory_plan
        if plan is not None and plan.ram_bytes_per_token:
            return plan.ram_bytes_per_token
        return self.routed_bytes_per_token


def kv_cache_bytes(profile: dict, ctx_size: int, bytes_per_value: float = KV_BYTES_PER_VALUE
                   ) -> int:
    """K and V for every full-attention layer over the context; sliding-window
    layers hold only their window, recurrent layers hold none."""
    per_token = 2 * profile["kv_heads"] * profile["head_dim"] * bytes_per_value
    full = profile["full_attention_layers"] * per_token * ctx_size
    window = profile["sliding_window_tokens"]
    windowed = profile.get("sliding_window_layers")
    if windowed is None:
        windowed = profile["layers"] - profile["full_attention_layers"] if window else 0
    return int(full + windowed * per_token * min(window or 0, ctx_size))


def cache_bytes_per_value(cache_type: str) -> float:
    """Mean bytes per cached value of ``model.cache_type`` (``q8_0``, or ``q8_0/f16`` where
    K and V differ); a type llama-server does not list counts as f16."""
    types = cache_type.split("/")
    return sum(CACHE_TYPE_BYTES.get(kind, 2.0) for kind in types) / len(types)


def server_arg(args: list[str], *names: str) -> str | None:
    """The value the last of ``names`` takes in a llama-server argument list (``-c 8192``
    or ``--ctx-size=8192``), or None."""
    found = None
    for index, arg in enumerate(args):
        flag, eq, inline = arg.partition("=")
        if eq and flag in names:
            found = inline
        elif arg in names and index + 1 < len(args):
            found = args[index + 1]
    return found


def _int_arg(args: list[str], *names: str) -> int | None:
    value = server_arg(args, *names)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def fit_targets_arg(args: list[str]) -> list[int] | None:
    """--fit-target MiB0,MiB1,... from llama-server arguments (one value is broadcast)."""
    value = server_arg(args, "--fit-target", "-fitt")
    if value is None:
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        return None


def gather(host: Host, options: Options, facts: Facts) -> ModelFacts:
    args = list(getattr(options, "server_args", None) or [])
    ctx_size = _int_arg(args, "-c", "--ctx-size") or options.ctx_size
    cache_type = (server_arg(args, "-ctk", "--cache-type-k") or "f16").lower()
    value_type = (server_arg(args, "-ctv", "--cache-type-v") or cache_type).lower()
    model = _from_profile(options, ctx_size)
    if options.model:
        _from_file(host, options.model, model)
    model.cache_type = cache_type if value_type == cache_type else f"{cache_type}/{value_type}"
    per_value = cache_bytes_per_value(model.cache_type)
    model.kv_cache_bytes = kv_cache_bytes(asdict(model), ctx_size, per_value)
    model.basis["kv_cache_bytes"] = (
        f"2 x {model.full_attention_layers} full-attention layers x {model.kv_heads} KV heads x "
        f"head dim {model.head_dim} x ctx {ctx_size} x {per_value:g} bytes ({model.cache_type})"
        + (f" + {_windowed_layers(model)} sliding-window layers over "
           f"{model.sliding_window_tokens} tokens" if model.sliding_window_tokens else "")
        + ("; recurrent layers keep a fixed state instead" if model.recurrent_layers else ""))
    model.ctx_size = ctx_size
    model.basis["ctx_size"] = "-c in the server arguments" if _int_arg(
        args, "-c", "--ctx-size") else "--ctx-size"
    try:  # the plan needs GPU and RAM facts: a failure there must not lose the model's
        model.memory_plan = memory_plan(facts, model, args)
        _speed(facts, model)
    except Exception as exc:  # noqa: BLE001 - said in the basis; model.speed skips on it
        model.basis["memory_plan"] = f"failed: {type(exc).__name__}: {exc}"
        model.speed_basis = model.speed_basis or model.basis["memory_plan"]
    return model


def _windowed_layers(model: ModelFacts) -> int:
    if model.sliding_window_layers is not None:
        return model.sliding_window_layers
    return model.layers - model.full_attention_layers if model.sliding_window_tokens else 0


def _from_profile(options: Options, ctx_size: int) -> ModelFacts:
    profile = PROFILES[options.profile]
    fields = {key: profile[key] for key in profile}
    model = ModelFacts(
        profile=options.profile,
        ctx_size=ctx_size,
        kv_cache_bytes=0,
        basis={"profile": "--profile" if options.profile else "default profile"},
        **fields,
    )
    experts, used = model.experts, max(1, model.experts_used)
    model.routed_bytes = model.routed_bytes_per_token * experts // used
    model.dense_bytes_per_token = max(0, model.file_bytes - model.routed_bytes)
    model.basis["routed_bytes"] = "routed bytes per token x experts / experts used"
    model.basis["dense_bytes_per_token"] = "the file less its routed experts (profile)"
    return model


def _from_file(host: Host, path: str, model: ModelFacts) -> None:
    """Replace the profile's shape with the file's; on failure keep it and say why."""
    from q3cn_doctor.facts.model_file import read_model  # numpy and gguf: only with --model
    from q3cn_doctor.parsers.gguf_file import GgufError

    try:
        found = read_model(host, path)
    except (GgufError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        model.error = f"{path}: {reason}"
        model.path = path
        model.basis["error"] = f"--model could not be read; profile {model.profile} stands in"
        return
    model.path = path
    model.files = [f.path for f in found.files]
    model.name = found.name or path.rsplit("/", 1)[-1]
    model.architecture = found.architecture
    model.file_bytes = found.file_bytes
    model.file_type = found.file_type
    model.layers = found.layers
    model.full_attention_layers = found.full_attention_layers
    model.sliding_window_layers = found.sliding_window_layers
    model.recurrent_layers = found.recurrent_layers
    model.kv_heads = found.kv_heads
    model.head_dim = (found.head_dim + found.value_dim) // 2
    model.value_dim = found.value_dim
    model.sliding_window_tokens = found.sliding_window_tokens
    model.experts = found.experts
    model.experts_used = found.experts_used
    model.shared_experts = found.shared_experts
    model.expert_ffn = found.expert_ffn or 0
    model.expert_layers = found.expert_layers
    model.hidden = found.hidden or 0
    model.context_length = found.context_length
    model.vocab_size = found.vocab_size
    model.tensor_bytes = dict(found.tensor_bytes)
    model.tensor_types = dict(found.tensor_types)
    model.routed_bytes = found.routed_bytes
    model.routed_bytes_per_token = found.routed_bytes_per_token
    model.dense_bytes_per_token = found.dense_bytes_per_token
    model.source = f"GGUF {path}" + (f" ({len(found.files)} split files)"
                                     if len(found.files) > 1 else "")
    model.basis.update({f"gguf.{key}": value for key, value in found.basis.items()})
    model.basis.update({
        "profile": "unused: --model given",
        "file_bytes": "the GGUF file sizes" + (", summed over the split files"
                                               if len(found.files) > 1 else ""),
        "routed_bytes_per_token": "routed expert tensors x experts used / experts",
        "dense_bytes_per_token": "every other tensor but the token embedding table",
    })


# -- the memory plan ----------------------------------------------------------------------------

def desktop_gpu(device: dict) -> bool:
    """NVML lists a display server or compositor among the GPU's processes."""
    processes = device.get("processes")
    if not isinstance(processes, list):
        return False
    return any(str(p.get("name") or "").rsplit("/", 1)[-1] in DESKTOP_PROCESSES
               for p in processes if isinstance(p, dict))


def _usable_gpus(facts: Facts) -> list[dict]:
    from . import FactsError

    try:
        gpus = facts.gpus
    except FactsError:
        return []
    return [g for g in gpus if "error" not in g and isinstance(g.get("memory_free_bytes"), int)]


def compute_buffer_bytes(model: ModelFacts, ubatch: int = UBATCH_TOKENS) -> int:
    """The CUDA compute buffer: a base plus the logits of one micro-batch."""
    vocab = model.vocab_size or 152_000
    return COMPUTE_BASE_BYTES + vocab * ubatch * 4


def memory_plan(facts: Facts, model: ModelFacts, args: list[str] | None = None) -> MemoryPlan:
    """Place the model: attention, shared expert, recurrent and output weights, the KV cache
    and the compute buffer on the GPUs first, then as many layers' routed experts as fit
    in what is left after each GPU's --fit-target margin; the rest stays in RAM."""
    from . import FactsError

    args = list(args or [])
    gpus = _usable_gpus(facts)
    ubatch = _int_arg(args, "-ub", "--ubatch-size") or UBATCH_TOKENS
    given_targets = fit_targets_arg(args)
    targets = [given_targets[min(index, len(given_targets) - 1)] if given_targets
               else FIT_TARGET_MIB for index in range(len(gpus))]
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
        gpu_layers = experts_on_gpu = 0
        gpu_bytes = 0
    elif resident + kv + compute <= usable:
        gpu_layers = layers
        room = usable - resident - kv - compute
        experts_on_gpu = min(expert_layers, room // per_layer_experts) if per_layer_experts \
            else 0
        gpu_bytes = resident + kv + compute + experts_on_gpu * per_layer_experts
    else:  # not even the dense part fits: whole layers stay on the CPU
        per_layer = (resident + kv) / layers
        gpu_layers = max(0, min(layers, int((usable - compute) // per_layer))) \
            if per_layer else layers
        experts_on_gpu = 0
        gpu_bytes = int(gpu_layers * per_layer) + compute if gpu_layers else 0
    n_cpu_moe = layers - experts_on_gpu if expert_layers else 0
    cpu_share = (layers - gpu_layers) / layers
    ram = (model.routed_bytes - experts_on_gpu * per_layer_experts + embeddings
           + int((resident + kv) * cpu_share))
    total = None
    with contextlib.suppress(FactsError):
        total = facts.memory.total_bytes
    routed_cpu_share = (expert_layers - experts_on_gpu) / expert_layers if expert_layers else 0
    if gpu_layers < layers:
        routed_cpu_share = max(routed_cpu_share, cpu_share)
    ram_per_token = int(model.routed_bytes_per_token * routed_cpu_share
                        + model.dense_bytes_per_token * cpu_share)
    gpu_per_token = int(model.routed_bytes_per_token * (1 - routed_cpu_share)
                        + model.dense_bytes_per_token * (1 - cpu_share))
    desktops = [int(g.get("index", i)) for i, g in enumerate(gpus) if desktop_gpu(g)]
    basis = (
        (f"{len(gpus)} GPU(s): {free / GIB:.1f} GiB free less --fit-target "
         f"{'/'.join(str(t) for t in targets)} MiB; non-expert weights "
         f"{resident / GIB:.1f} GiB, KV cache {kv / GIB:.1f} GiB and compute buffer "
         f"{compute / GIB:.2f} GiB first, then whole layers of routed experts "
         f"({per_layer_experts / GIB:.2f} GiB each)" if gpus else
         "no usable NVIDIA GPU: everything in RAM")
        + f"; plus {OS_HEADROOM_BYTES // GIB} GiB RAM for the OS")
    return MemoryPlan(
        gpus=len(gpus), desktop_gpus=desktops, fit_target_mib=targets, vram_free_bytes=free,
        vram_usable_bytes=usable, compute_buffer_bytes=compute, kv_cache_bytes=kv,
        gpu_layers=gpu_layers, expert_layers_on_gpu=experts_on_gpu, n_cpu_moe=n_cpu_moe,
        gpu_bytes=gpu_bytes, ram_bytes=ram, ram_needed_bytes=ram + OS_HEADROOM_BYTES,
        dense_fits_gpu=bool(gpus) and gpu_layers == layers,
        fits_ram=None if total is None else ram + OS_HEADROOM_BYTES <= total,
        ram_bytes_per_token=ram_per_token, gpu_bytes_per_token=gpu_per_token, basis=basis)


# -- the expected speed --------------------------------------------------------------------------

def gpu_bandwidth(device: dict) -> tuple[float, str]:
    """A GPU's memory bandwidth by its name, or an assumption saying so."""
    name = str(device.get("name") or "")
    matches = [key for key in GPU_BANDWIDTH if key.lower() in name.lower()]
    if matches:
        key = max(matches, key=len)
        return GPU_BANDWIDTH[key], f"{key}: {GPU_BANDWIDTH[key] / 1e9:.0f} GB/s (specification)"
    return ASSUMED_GPU_BANDWIDTH, (f"{name or 'unknown GPU'}: bandwidth unknown, "
                                   f"{ASSUMED_GPU_BANDWIDTH / 1e9:.0f} GB/s assumed")


def ram_bandwidth(facts: Facts) -> tuple[float | None, float | None, str]:
    """(the RAM read bandwidth to expect now, the same at the modules' rated speed, basis).

    Measured where --measure ran, else the theoretical peak of the configured speed; the
    rated figure scales either by rated / configured MT/s. The one place the memory facts
    plug into the speed estimate.
    """
    from . import FactsError

    try:
        memory = facts.memory
    except FactsError as exc:
        return None, None, str(exc)
    measured = (getattr(memory, "measured", None) or {}).get("bytes_per_s")
    theoretical = getattr(memory, "theoretical_bytes_per_s", None)
    configured = getattr(memory, "configured_mts", None)
    rated = getattr(memory, "rated_mts", None)
    now = measured or theoretical
    if not now:
        return None, None, "RAM bandwidth unknown (no module listing and not measured)"
    basis = (f"measured {measured / 1e9:.1f} GB/s" if measured else
             f"theoretical {theoretical / 1e9:.1f} GB/s "
             f"({memory.basis.get('theoretical_bytes_per_s', 'configured speed x channels')})")
    at_rated = None
    if rated and configured and rated > configured:
        at_rated = now * rated / configured
        basis += f"; x {rated}/{configured} MT/s at the rated speed"
    return float(now), at_rated, basis


def estimate_tok_s(plan: MemoryPlan, ram_bytes_per_s: float | None,
                   gpu_bytes_per_s: float | None) -> float | None:
    """Generation tokens/s: the RAM part and the VRAM part of a token, read one after the
    other, each at its calibrated share of peak bandwidth."""
    seconds = 0.0
    if plan.ram_bytes_per_token:
        if not ram_bytes_per_s:
            return None
        seconds += plan.ram_bytes_per_token / (ram_bytes_per_s * RAM_EFFICIENCY)
    if plan.gpu_bytes_per_token:
        seconds += plan.gpu_bytes_per_token / ((gpu_bytes_per_s or ASSUMED_GPU_BANDWIDTH)
                                               * GPU_EFFICIENCY)
    return 1 / seconds if seconds > 0 else None


def expected_tok_s_at(facts: Facts, ram_bytes_per_s: float) -> float | None:
    """The expected tokens/s if the RAM gave ``ram_bytes_per_s``: what a memory or CPU
    finding quotes for the speed it costs (e.g. at the rated RAM speed, or with the
    bandwidth an E-core-bound thread team reaches)."""
    model = facts.model
    if model.memory_plan is None:
        return None
    return estimate_tok_s(model.memory_plan, ram_bytes_per_s, model.gpu_bytes_per_s)


def _speed(facts: Facts, model: ModelFacts) -> None:
    plan = model.memory_plan
    if plan is None:
        model.speed_basis = "no memory plan"
        return
    now, rated, ram_basis = ram_bandwidth(facts)
    gpus = _usable_gpus(facts)
    gpu_basis = ""
    if gpus:  # layers spread over the GPUs: the slowest one sets the pace of its share
        readings = [gpu_bandwidth(g) for g in gpus]
        model.gpu_bytes_per_s = min(r[0] for r in readings)
        gpu_basis = "; ".join(r[1] for r in readings)
    model.ram_bytes_per_s = now
    model.expected_tok_s = _round(estimate_tok_s(plan, now, model.gpu_bytes_per_s))
    model.expected_tok_s_rated = _round(estimate_tok_s(plan, rated, model.gpu_bytes_per_s)) \
        if rated else None
    model.speed_basis = (
        f"{plan.ram_bytes_per_token / 1e9:.2f} GB from RAM ({ram_basis}) at "
        f"{RAM_EFFICIENCY:.0%} of peak + {plan.gpu_bytes_per_token / 1e9:.2f} GB from VRAM"
        + (f" ({gpu_basis})" if gpu_basis else "")
        + f" at {GPU_EFFICIENCY:.0%} of peak per token (efficiencies fitted to the guide's "
          "~40 tok/s Qwen3-Coder-Next and ~30 tok/s gpt-oss-120b on an i5-12600K, RTX 4070 "
          "and dual-channel DDR5-6000)")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)



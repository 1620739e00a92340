"""The placement a user asks llama-server for: -ngl, --n-cpu-moe, --cpu-moe, -ot, -ts,
--split-mode, read from their arguments (config ``args`` or launch's extras).

llama.cpp decides each tensor's buffer in this order: the user's ``-ot`` patterns (the
first that matches a tensor's name wins), then the patterns ``--cpu-moe`` and
``--n-cpu-moe N`` add (the routed experts of layers 0..N-1 in RAM), then ``-ngl N`` (the
last N layers on the GPUs; N above the layer count takes the output head too). Where the
user sets none of these, ``--fit`` places the model and so does the plan
(plan/placement.py). A layer's weights are computed where they live, so these also say
where each part of a token runs.
"""

from __future__ import annotations

import re

from msgspec import Struct, field
from q3cn_doctor.facts.model import server_arg, without_args

GPU_LAYER_FLAGS = ("-ngl", "--n-gpu-layers", "--gpu-layers")
N_CPU_MOE_FLAGS = ("-ncmoe", "--n-cpu-moe")
CPU_MOE_FLAGS = ("-cmoe", "--cpu-moe")
OVERRIDE_FLAGS = ("-ot", "--override-tensor")
SPLIT_FLAGS = ("-ts", "--tensor-split")
SPLIT_MODE_FLAGS = ("-sm", "--split-mode")
MAIN_GPU_FLAGS = ("-mg", "--main-gpu")
DEVICE_FLAGS = ("-dev", "--device")
NUMA_FLAGS = ("--numa",)
THREAD_FLAGS = ("-t", "--threads")
PLACEMENT_FLAGS = (GPU_LAYER_FLAGS + N_CPU_MOE_FLAGS + OVERRIDE_FLAGS + SPLIT_FLAGS
                   + SPLIT_MODE_FLAGS + MAIN_GPU_FLAGS + DEVICE_FLAGS)
ALL_LAYERS = 10_000  # "-ngl 999", "all", "auto" and -1: every layer and the output head

# Names a layer's tensors carry in llama.cpp (the routed experts' three matrices, and the
# always-active part: attention and the shared expert), matched against -ot patterns.
EXPERT_TENSORS = ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")
ATTENTION_TENSORS = ("attn_q", "attn_k", "attn_v", "attn_output")
SHARED_TENSORS = ("ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp")


class PlacementFlags(Struct):
    """The placement flags found in one argument list (None: not given)."""

    gpu_layers: int | None = None
    n_cpu_moe: int | None = None
    cpu_moe: bool = False
    overrides: list[tuple[str, str]] = field(default_factory=list)  # (regex, buffer type)
    tensor_split: list[float] | None = None
    split_mode: str = "layer"  # llama.cpp's default: whole layers per GPU, one after another
    main_gpu: int = 0
    no_gpu: bool = False  # --device none

    @property
    def explicit(self) -> bool:
        """The user placed the model themselves: the fit-style plan does not apply."""
        return (self.gpu_layers is not None or self.n_cpu_moe is not None or self.cpu_moe
                or bool(self.overrides))

    def describe(self) -> str:
        parts = []
        if self.gpu_layers is not None:
            parts.append(f"-ngl {'all' if self.gpu_layers >= ALL_LAYERS else self.gpu_layers}")
        if self.cpu_moe:
            parts.append("--cpu-moe")
        if self.n_cpu_moe is not None:
            parts.append(f"--n-cpu-moe {self.n_cpu_moe}")
        parts += [f"-ot {pattern}={buffer}" for pattern, buffer in self.overrides]
        if self.tensor_split:
            parts.append("-ts " + ",".join(f"{share:g}" for share in self.tensor_split))
        if self.split_mode != "layer":
            parts.append(f"--split-mode {self.split_mode}")
        if self.no_gpu:
            parts.append("--device none")
        return " ".join(parts)


def parse_flags(args: list[str]) -> PlacementFlags:
    """The placement flags of a llama-server argument list; values it cannot read are
    left unset (llama-server itself would refuse them)."""
    flags = PlacementFlags()
    layers = server_arg(args, *GPU_LAYER_FLAGS)
    if layers is not None:
        flags.gpu_layers = _layer_count(layers)
    moe = server_arg(args, *N_CPU_MOE_FLAGS)
    if moe is not None and moe.lstrip("-").isdecimal():
        flags.n_cpu_moe = max(0, int(moe))
    flags.cpu_moe = any(arg in CPU_MOE_FLAGS for arg in args)
    flags.overrides = [pair for value in _all_values(args, OVERRIDE_FLAGS)
                       for pair in _overrides(value)]
    split = server_arg(args, *SPLIT_FLAGS)
    if split:
        shares = [_float(part) for part in re.split(r"[,/]", split)]
        if shares and all(s is not None and s >= 0 for s in shares) and sum(shares) > 0:
            flags.tensor_split = [float(s) for s in shares]  # type: ignore[arg-type]
    mode = (server_arg(args, *SPLIT_MODE_FLAGS) or "layer").lower()
    flags.split_mode = mode if mode in ("none", "layer", "row") else "layer"
    main = server_arg(args, *MAIN_GPU_FLAGS)
    flags.main_gpu = int(main) if main and main.isdecimal() else 0
    flags.no_gpu = (server_arg(args, *DEVICE_FLAGS) or "").lower() == "none"
    return flags


def without_placement(args: list[str]) -> list[str]:
    """``args`` less every placement flag (and its value): what a what-if with other
    placement flags starts from."""
    return without_args(args, PLACEMENT_FLAGS, CPU_MOE_FLAGS)


def tensor_on_gpu(flags: PlacementFlags, name: str, layer: int, layers: int,
                  expert: bool) -> bool:
    """Whether llama.cpp puts tensor ``name`` of ``layer`` in a GPU buffer."""
    for pattern, buffer in flags.overrides:
        try:
            if re.search(pattern, name):
                return not buffer.upper().startswith("CPU")
        except re.error:
            continue
    if expert and (flags.cpu_moe or (flags.n_cpu_moe is not None and layer < flags.n_cpu_moe)):
        return False
    gpu_layers = ALL_LAYERS if flags.gpu_layers is None else flags.gpu_layers
    return layer >= layers - gpu_layers


def gpu_shares(flags: PlacementFlags, layer: int, layers: int,
               shared_expert: bool = False) -> tuple[float, float]:
    """(share of the layer's always-active weights, share of its routed experts) that
    llama.cpp puts on the GPUs under ``flags``, counted by tensor."""
    def share(names: tuple[str, ...], expert: bool) -> float:
        on = [tensor_on_gpu(flags, f"blk.{layer}.{name}.weight", layer, layers, expert)
              for name in names]
        return sum(on) / len(on)
    dense = ATTENTION_TENSORS + (SHARED_TENSORS if shared_expert else ())
    return share(dense, False), share(EXPERT_TENSORS, True)


def output_on_gpu(flags: PlacementFlags, layers: int) -> bool:
    """The output head goes to a GPU with -ngl above the layer count (or -ot output.)."""
    for pattern, buffer in flags.overrides:
        try:
            if re.search(pattern, "output.weight"):
                return not buffer.upper().startswith("CPU")
        except re.error:
            continue
    return flags.gpu_layers is None or flags.gpu_layers > layers


def _layer_count(text: str) -> int | None:
    if text.lower() in ("all", "auto", "max"):
        return ALL_LAYERS
    try:
        value = int(text)
    except ValueError:
        return None
    return ALL_LAYERS if value < 0 else value


def _all_values(args: list[str], names: tuple[str, ...]) -> list[str]:
    values = []
    for index, arg in enumerate(args):
        flag, eq, inline = arg.partition("=")
        if eq and flag in names:
            values.append(inline)
        elif arg in names and index + 1 < len(args):
            values.append(args[index + 1])
    return values


def _overrides(value: str) -> list[tuple[str, str]]:
    """``-ot`` takes ``pattern=buffer`` pairs, several separated by commas."""
    pairs = []
    for part in value.split(","):
        pattern, eq, buffer = part.rpartition("=")
        if eq and pattern:
            pairs.append((pattern, buffer.strip()))
    return pairs


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None

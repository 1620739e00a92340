"""The model section: the embedded profile, or the real GGUF given with ``--model``,
and its KV cache at the planned context. Where it goes on this machine (plan/placement)
and how fast it runs (plan/speed) are derived from these facts, not part of them.

``--model PATH`` is read through the host by facts/model_file.py (the ``gguf``
package, imported only there); a snapshot replays the parsed facts from its
``model.json``. A file that cannot be read leaves the profile in its place and says
why in ``error`` (the ``model.file`` check fails on it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgspec import Struct, field
from msgspec.structs import asdict
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


class ModelFacts(Struct):
    """The model to plan for: its shape and bytes per token, from the GGUF where one is
    given, else from the profile; ``basis`` says which."""
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
    embedding_bytes: int = 0  # the token embedding table: stays in RAM, a row read per token
    cache_type: str = "f16"
    # -- the model's own recommendations -----------------------------------------------------
    sampling: dict = field(default_factory=dict)  # temp, top_k... (general.sampling.* names)
    sampling_source: str | None = None  # where they came from; None: llama-server's defaults
    recurrent_state_bytes: int = 0  # one sequence's recurrent state (hybrid/recurrent models)


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


def without_args(args: list[str], valued: tuple[str, ...] | set[str] | frozenset[str],
                 bare: tuple[str, ...] | set[str] | frozenset[str] = ()) -> list[str]:
    """``args`` less the flags in ``valued`` with their values (``--port 8080`` or
    ``--port=8080``) and the flags in ``bare``, which take none."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        flag, eq, _ = arg.partition("=")
        if arg in bare:
            continue
        if flag in valued:
            skip = not eq
            continue
        kept.append(arg)
    return kept


def int_arg(args: list[str], *names: str) -> int | None:
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
    ctx_size = int_arg(args, "-c", "--ctx-size") or options.ctx_size
    chosen = int_arg(args, "-c", "--ctx-size") is not None or options.ctx_chosen
    cache_type = (server_arg(args, "-ctk", "--cache-type-k") or "f16").lower()
    value_type = (server_arg(args, "-ctv", "--cache-type-v") or cache_type).lower()
    model = _from_profile(options, ctx_size)
    if options.model:
        _from_file(host, options.model, model)
    trained = model.context_length
    capped = not chosen and bool(trained) and ctx_size > trained
    if capped:
        ctx_size = trained
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
    model.basis["ctx_size"] = (
        f"the model's trained context ({trained}): the default {options.ctx_size} is beyond it"
        if capped else "-c in the server arguments" if int_arg(args, "-c", "--ctx-size")
        else "--ctx-size" if chosen else f"the default, within the trained context {trained}"
        if trained else "the default")
    return model


def _windowed_layers(model: ModelFacts) -> int:
    if model.sliding_window_layers is not None:
        return model.sliding_window_layers
    return model.layers - model.full_attention_layers if model.sliding_window_tokens else 0


def _from_profile(options: Options, ctx_size: int) -> ModelFacts:
    profile = PROFILES[options.profile]
    known = ModelFacts.__struct_fields__
    fields = {key: profile[key] for key in profile if key in known}
    model = ModelFacts(
        profile=options.profile,
        ctx_size=ctx_size,
        kv_cache_bytes=0,
        basis={"profile": "--profile" if options.profile else "default profile"},
        **fields,
    )
    experts, used = model.experts, max(1, model.experts_used)
    model.routed_bytes = model.routed_bytes_per_token * experts // used
    embeddings = profile.get("embedding_bytes", 0)
    model.dense_bytes_per_token = max(0, model.file_bytes - model.routed_bytes - embeddings)
    model.embedding_bytes = embeddings
    model.basis["routed_bytes"] = "routed bytes per token x experts / experts used"
    model.basis["dense_bytes_per_token"] = ("the file less its routed experts and the token "
                                            "embedding table (profile)")
    model.sampling = dict(profile.get("sampling") or {})
    model.sampling_source = f"profile {options.profile}" if model.sampling else None
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
    model.embedding_bytes = found.tensor_bytes.get("embeddings", 0)
    model.routed_bytes_per_token = found.routed_bytes_per_token
    model.dense_bytes_per_token = found.dense_bytes_per_token
    model.recurrent_state_bytes = found.recurrent_state_bytes
    _sampling(model, found, path)
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


def _sampling(model: ModelFacts, found, path: str) -> None:
    """The file's own general.sampling.*; else the profile of that very model; else none
    (llama-server's defaults): one model's sampling never goes to another."""
    if found.sampling:
        model.sampling = dict(found.sampling)
        model.sampling_source = "the GGUF's general.sampling.* metadata"
        return
    from q3cn_doctor.facts.model_search import profile_of

    profile = profile_of(found.architecture, found.name, path.rsplit("/", 1)[-1])
    model.sampling = dict(PROFILES[profile].get("sampling") or {}) if profile else {}
    model.sampling_source = f"profile {profile} (the same model)" if model.sampling else None

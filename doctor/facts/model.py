"""The model section: the embedded profile (or, with the launch work, a real GGUF)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..host import Host
from ..options import Options
from ..profiles import PROFILES

if TYPE_CHECKING:
    from . import Facts

KV_BYTES_PER_VALUE = 2  # f16, llama-server's default cache type


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


def kv_cache_bytes(profile: dict, ctx_size: int) -> int:
    """K and V for every full-attention layer over the context; sliding-window
    layers hold only their window, recurrent layers hold none."""
    per_token = 2 * profile["kv_heads"] * profile["head_dim"] * KV_BYTES_PER_VALUE
    full = profile["full_attention_layers"] * per_token * ctx_size
    window = profile["sliding_window_tokens"]
    windowed_layers = profile["layers"] - profile["full_attention_layers"] if window else 0
    return full + windowed_layers * per_token * min(window or 0, ctx_size)


def gather(host: Host, options: Options, facts: Facts) -> ModelFacts:
    profile = PROFILES[options.profile]
    fields = {key: profile[key] for key in profile}
    return ModelFacts(
        profile=options.profile,
        ctx_size=options.ctx_size,
        kv_cache_bytes=kv_cache_bytes(profile, options.ctx_size),
        basis={
            "profile": "--profile" if options.profile else "default profile",
            "kv_cache_bytes": "2 x full-attention layers x KV heads x head dim x ctx x 2 bytes"
                              " (+ sliding-window layers over their window)",
            "ctx_size": "--ctx-size",
        },
        **fields,
    )

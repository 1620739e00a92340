"""Embedded model profiles: what the checks assume when no --model file is given.

Every number names its source. ``routed_bytes_per_token`` is what generation
reads from RAM per token when the experts live there; the rest of the file less
``embedding_bytes`` (the token embedding table, of which a token reads one row) is
what it reads of the always-active weights.
"""

from __future__ import annotations

GIB = 1024**3
DEFAULT_PROFILE = "qwen3-coder-next-mxfp4"
DEFAULT_CTX_SIZE = 131072  # the guide's context length

PROFILES: dict[str, dict] = {
    "qwen3-coder-next-mxfp4": {
        "name": "Qwen3-Coder-Next (80B-A3B) MXFP4",
        "architecture": "qwen3next",
        # Model card: 262,144 tokens native context. Sampling: the guide's (the model
        # card's temperature 1.0, top_p 0.95, top_k 40, with unsloth's min_p 0.01).
        "context_length": 262144,
        "sampling": {"temp": 1.0, "top_p": 0.95, "top_k": 40, "min_p": 0.01},
        # 36 Gated DeltaNet layers x (3 x (4096 + 2 x 16 x 128) conv + 128 x 4096 state)
        # f32 values (ssm.conv_kernel 4, inner_size 4096, group_count 16, state_size 128).
        "recurrent_state_bytes": 36 * (3 * (4096 + 2 * 16 * 128) + 128 * 4096) * 4,
        # File size of the MXFP4 GGUF the guide runs (44.73 GiB).
        "file_bytes": round(44.73 * GIB),
        # Model card / GGUF metadata: 48 blocks, every 4th full attention (12), the
        # other 36 Gated DeltaNet (recurrent: no KV cache).
        "layers": 48,
        "full_attention_layers": 12,
        "kv_heads": 2,
        "head_dim": 256,
        "sliding_window_tokens": None,
        "experts": 512,
        "experts_used": 10,
        "shared_experts": 1,
        "expert_ffn": 512,
        "hidden": 2048,
        # 10 experts x 3 matrices x 2048 x 512 x 48 layers = 1.51 G params at
        # MXFP4's 4.25 bits: about 0.8 GB read per generated token.
        "routed_bytes_per_token": 800_000_000,
        # The token embedding table (151936 x 2048 at Q8_0): a token reads one row of it.
        "embedding_bytes": 330_000_000,
        "source": "Qwen3-Coder-Next model card and GGUF metadata; file size of the MXFP4 GGUF",
    },
    "gpt-oss-120b-mxfp4": {
        "name": "gpt-oss-120b MXFP4",
        "architecture": "gpt-oss",
        # Model card: 131,072 tokens; OpenAI's recommended sampling: temperature 1.0, top_p 1.0.
        "context_length": 131072,
        "sampling": {"temp": 1.0, "top_p": 1.0},
        "file_bytes": round(59.02 * GIB),  # the ggml-org MXFP4 GGUF (59.02 GiB)
        # Model card: 36 layers alternating 128-token sliding window and full
        # attention; 8 KV heads of 64; 128 experts, 4 active.
        "layers": 36,
        "full_attention_layers": 18,
        "kv_heads": 8,
        "head_dim": 64,
        "sliding_window_tokens": 128,
        "experts": 128,
        "experts_used": 4,
        "shared_experts": 0,
        "expert_ffn": 2880,
        "hidden": 2880,
        # 4 experts x 3 x 2880 x 2880 x 36 layers = 3.58 G params at 4.25 bits.
        "routed_bytes_per_token": 1_900_000_000,
        # The token embedding table (201088 x 2880 at Q8_0): a token reads one row of it.
        "embedding_bytes": 615_000_000,
        "source": "gpt-oss-120b model card; file size of the ggml-org MXFP4 GGUF",
    },
}

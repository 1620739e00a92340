"""Small GGUF files written with the gguf package's own writer, shaped like the real models.

``write_qwen3next`` lays out a Qwen3-Next header and tensor table (every 4th layer full
attention, the others Gated DeltaNet ``ssm_*`` layers, routed experts in MXFP4, a shared
expert) at a tiny size; ``split=N`` writes it as N files ``*-0000i-of-0000N.gguf`` the way
``llama-gguf-split`` does. ``write_tiny_llama`` writes a llama model with a byte-level
tokenizer and random weights that a real llama-server loads (the end-to-end test).
``write_vocabulary_model`` writes a one-layer model with a Qwen-size vocabulary (the fast
reader's test, and bench/bench_parsers.py).
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType

QWEN_SHAPE = dict(layers=8, interval=4, hidden=64, heads=4, kv_heads=2, head_dim=16,
                  experts=16, experts_used=2, expert_ffn=32, shared_ffn=32, vocab=256,
                  context=262144)
VOCABULARY = 151_936  # Qwen3's: the largest metadata arrays a real model carries


def _mxfp4(shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
    """Zero bytes of an MXFP4 tensor of element shape ``shape`` (numpy order)."""
    byte_shape = gguf.quant_shape_to_byte_shape(shape, GGMLQuantizationType.MXFP4)
    return np.zeros(byte_shape, dtype=np.uint8), shape


def qwen3next_tensors(shape: dict = QWEN_SHAPE) -> list[tuple[str, np.ndarray, object]]:
    """(name, array, raw dtype or None) of a Qwen3-Next-shaped model."""
    h, v, e, f = shape["hidden"], shape["vocab"], shape["experts"], shape["expert_ffn"]
    q = shape["heads"] * shape["head_dim"]
    kv = shape["kv_heads"] * shape["head_dim"]
    f16 = np.float16
    tensors: list[tuple[str, np.ndarray, object]] = [
        ("token_embd.weight", np.zeros((v, h), dtype=f16), None),
    ]
    for layer in range(shape["layers"]):
        b = f"blk.{layer}."
        tensors.append((b + "attn_norm.weight", np.ones(h, dtype=np.float32), None))
        if (layer + 1) % shape["interval"] == 0:  # full attention
            tensors += [
                (b + "attn_q.weight", np.zeros((2 * q, h), dtype=f16), None),
                (b + "attn_k.weight", np.zeros((kv, h), dtype=f16), None),
                (b + "attn_v.weight", np.zeros((kv, h), dtype=f16), None),
                (b + "attn_output.weight", np.zeros((h, q), dtype=f16), None),
                (b + "attn_q_norm.weight", np.ones(shape["head_dim"], dtype=np.float32), None),
                (b + "attn_k_norm.weight", np.ones(shape["head_dim"], dtype=np.float32), None),
            ]
        else:  # Gated DeltaNet
            tensors += [
                (b + "ssm_in.weight", np.zeros((4 * q, h), dtype=f16), None),
                (b + "ssm_ba.weight", np.zeros((2 * shape["heads"], h), dtype=f16), None),
                (b + "ssm_conv1d.weight", np.zeros((3 * q, 4), dtype=np.float32), None),
                (b + "ssm_dt.bias", np.zeros(shape["heads"], dtype=np.float32), None),
                (b + "ssm_a", np.zeros(shape["heads"], dtype=np.float32), None),
                (b + "ssm_norm.weight", np.ones(shape["head_dim"], dtype=np.float32), None),
                (b + "ssm_out.weight", np.zeros((h, q), dtype=f16), None),
            ]
        tensors.append((b + "post_attention_norm.weight", np.ones(h, dtype=np.float32), None))
        tensors.append((b + "ffn_gate_inp.weight", np.zeros((e, h), dtype=np.float32), None))
        for name, dims in (("ffn_gate_exps", (e, f, h)), ("ffn_up_exps", (e, f, h)),
                           ("ffn_down_exps", (e, h, f))):
            data, raw = _mxfp4(dims)
            tensors.append((b + name + ".weight", data, raw))
        s = shape["shared_ffn"]
        tensors += [
            (b + "ffn_gate_inp_shexp.weight", np.zeros((1, h), dtype=f16), None),
            (b + "ffn_gate_shexp.weight", np.zeros((s, h), dtype=f16), None),
            (b + "ffn_up_shexp.weight", np.zeros((s, h), dtype=f16), None),
            (b + "ffn_down_shexp.weight", np.zeros((h, s), dtype=f16), None),
        ]
    tensors += [
        ("output_norm.weight", np.ones(h, dtype=np.float32), None),
        ("output.weight", np.zeros((v, h), dtype=f16), None),
    ]
    return tensors


def write_qwen3next(path: Path, split: int = 0, shape: dict = QWEN_SHAPE,
                    name: str = "Qwen3-Coder-Next-Tiny") -> list[Path]:
    """Write the model; with ``split`` > 1, as that many files. Returns the files written."""
    tensors = qwen3next_tensors(shape)
    per_file = -(-len(tensors) // split) if split > 1 else 0
    writer = gguf.GGUFWriter(str(path), "qwen3next", split_max_tensors=per_file)
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_MXFP4_MOE)
    writer.add_block_count(shape["layers"])
    writer.add_context_length(shape["context"])
    writer.add_embedding_length(shape["hidden"])
    writer.add_head_count(shape["heads"])
    writer.add_head_count_kv(shape["kv_heads"])
    writer.add_key_length(shape["head_dim"])
    writer.add_value_length(shape["head_dim"])
    writer.add_full_attention_interval(shape["interval"])
    writer.add_expert_count(shape["experts"])
    writer.add_expert_used_count(shape["experts_used"])
    writer.add_expert_feed_forward_length(shape["expert_ffn"])
    writer.add_expert_shared_feed_forward_length(shape["shared_ffn"])
    writer.add_ssm_conv_kernel(4)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"t{i}".encode() for i in range(shape["vocab"])])
    writer.add_token_types([1] * shape["vocab"])
    for tensor_name, data, raw in tensors:
        if raw is None:
            writer.add_tensor(tensor_name, data)
        else:
            writer.add_tensor(tensor_name, data, raw_dtype=GGMLQuantizationType.MXFP4)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if split > 1:
        stem = str(path)[: -len(".gguf")]
        return [Path(f"{stem}-{n:05d}-of-{split:05d}.gguf") for n in range(1, split + 1)]
    return [path]


def expected_bytes(shape: dict = QWEN_SHAPE) -> dict[str, int]:
    """The tensor bytes by class that ``write_qwen3next`` writes."""
    found: dict[str, int] = {}
    routed_prefixes = ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")
    for name, data, _raw in qwen3next_tensors(shape):
        rest = name.split(".", 2)[2] if name.startswith("blk.") else name
        if rest.startswith(routed_prefixes):
            group = "routed_experts"
        elif "_shexp" in rest:
            group = "shared_expert"
        elif rest.startswith("ssm_"):
            group = "recurrent"
        elif rest.startswith("attn_") and rest != "attn_norm.weight":
            group = "attention"
        elif rest == "attn_norm.weight":
            layer = int(name.split(".")[1])
            group = "attention" if (layer + 1) % shape["interval"] == 0 else "recurrent"
        elif name.startswith("token_embd"):
            group = "embeddings"
        elif name.startswith("output"):
            group = "output"
        else:
            group = "other"
        found[group] = found.get(group, 0) + data.nbytes
    return found


def write_vocabulary_model(path: Path, tokens: int = VOCABULARY) -> Path:
    """A one-layer llama whose metadata holds a real-size token list, types and scores."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_token_list([f"tok{i}" for i in range(tokens)])
    writer.add_token_types([1] * tokens)
    writer.add_token_scores([0.5] * tokens)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_tiny_llama(path: Path, layers: int = 2, hidden: int = 64, heads: int = 4,
                     ffn: int = 128, context: int = 512, seed: int = 0) -> Path:
    """A llama model with a byte-level (gpt2) tokenizer and random f32 weights: small enough
    to write in a test, real enough for llama-server to load and answer /health."""
    rng = np.random.default_rng(seed)
    # gpt2 byte-level BPE: every byte is a token, spelt as GPT-2's printable characters;
    # one merge ("a b" -> "ab") because llama.cpp requires the merges array.
    table = _byte_encoder()
    vocab = [table[b] for b in range(256)] + ["ab", "<|endoftext|>"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama-test")
    writer.add_block_count(layers)
    writer.add_context_length(context)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(vocab)
    writer.add_token_types([1] * 257 + [3])
    writer.add_token_merges(["a b"])
    writer.add_bos_token_id(257)
    writer.add_eos_token_id(257)
    writer.add_add_bos_token(False)
    n_vocab = len(vocab)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer.add_tensor("token_embd.weight", weights(n_vocab, hidden))
    for layer in range(layers):
        b = f"blk.{layer}."
        writer.add_tensor(b + "attn_norm.weight", np.ones(hidden, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(b + name + ".weight", weights(hidden, hidden))
        writer.add_tensor(b + "ffn_norm.weight", np.ones(hidden, dtype=np.float32))
        writer.add_tensor(b + "ffn_gate.weight", weights(ffn, hidden))
        writer.add_tensor(b + "ffn_up.weight", weights(ffn, hidden))
        writer.add_tensor(b + "ffn_down.weight", weights(hidden, ffn))
    writer.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    writer.add_tensor("output.weight", weights(n_vocab, hidden))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _byte_encoder() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (as its tokenizer defines it)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars)}

"""A GGUF model file as the plan needs it, read through the host with llama.cpp's
own reader (the ``gguf`` package, imported here and nowhere else).

What is kept is small: the architecture and its shape (layers, experts, which layers
hold a KV cache), the total size over every split file, and the bytes of each class
of tensor (routed experts, shared expert, attention, recurrent, embeddings, output),
which is what decides what the GPU can hold and what each token reads from RAM.

A snapshot never copies a model: ``RecordingHost`` keeps these parsed facts in the
snapshot's ``model.json`` (path -> facts) and a replay reads them from there.
"""

from __future__ import annotations

import math
import re
import struct
import sys
from collections import Counter
from typing import Any

from msgspec import Struct, field
from q3cn_doctor.records import plain

RECORD = "model"
"""The top-level snapshot file holding parsed GGUF facts by model path."""

MAGIC = b"GGUF"
SPLIT_NAME = re.compile(r"^(?P<prefix>.+)-(?P<number>\d{5})-of-(?P<count>\d{5})\.gguf$")

# Tensor classes, in the order the report lists them.
ROUTED, SHARED, ATTENTION, RECURRENT, EMBEDDINGS, OUTPUT, OTHER = (
    "routed_experts", "shared_expert", "attention", "recurrent", "embeddings", "output", "other")
TENSOR_CLASSES = (ROUTED, SHARED, ATTENTION, RECURRENT, EMBEDDINGS, OUTPUT, OTHER)

# Sliding-window layouts llama.cpp sets in code for architectures whose GGUF does not
# say (src/llama-model.cpp, hparams.set_swa_pattern): every Nth layer is full attention.
SWA_PATTERN = {"gpt-oss": 2, "gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4,
               "llama4": 4, "exaone4": 4}

_BLOCK = re.compile(r"^blk\.(\d{1,6})\.(.+)$")
SAMPLING_KEYS = ("sequence", "top_k", "top_p", "min_p", "xtc_probability", "xtc_threshold",
                 "temp", "penalty_last_n", "penalty_repeat", "mirostat", "mirostat_tau",
                 "mirostat_eta")
"""The general.sampling.* keys llama.cpp reads (src/llama-arch.cpp, LLM_KV_GENERAL_SAMPLING_*)."""
STATE_BYTES = 4  # llama.cpp keeps recurrent state in f32 (type_r, type_s)
MAX_LAYERS = 4096  # far beyond any model; a larger block_count is a damaged header
# What a real model's header holds, with room to spare; more is a damaged or hostile file,
# refused before the reader walks it (a sparse file of zeros is 2^30 empty strings).
MAX_TENSORS = 65536  # a 1T-parameter MoE has about 1,300 (experts stack into one tensor)
MAX_KEYS = 65536  # metadata keys: a model carries about 50
MAX_STRINGS = 1 << 22  # one string array: the largest vocabulary (gemma3) is 262,144
MAX_COUNT = 65536  # heads, KV heads, experts, dimensions per head
MAX_CONTEXT = 1 << 31
MAX_RECURRENT_STATE = 2**36  # one sequence's recurrent state: ~75 MiB in Qwen3-Next
MAX_SAMPLING_TEXT = 256  # general.sampling.sequence names a handful of samplers
MAX_KV_BYTES_PER_TOKEN = 64 * 2**20  # f16 K and V of every layer for one token: ~0.5 MiB
# in Llama-3-405B, 2.5 MiB in the old 65B: a header giving more gives an absurd KV cache


class GgufError(ValueError):
    """Not a GGUF file, a split set with a part missing, or metadata the plan needs is absent."""


class GgufFile(Struct):
    """One file of a (possibly split) GGUF model."""
    path: str
    size_bytes: int
    tensors: int


class GgufModel(Struct):
    """The parsed facts of one model (all its split files together)."""

    path: str
    files: list[GgufFile]
    file_bytes: int  # every split file's size, summed
    name: str | None
    architecture: str
    file_type: str | None  # general.file_type as llama.cpp names it (MOSTLY_MXFP4_MOE)
    layers: int
    context_length: int | None  # what the model was trained for
    hidden: int | None
    heads: int | None
    kv_heads: int  # of a full-attention layer
    head_dim: int  # key length
    value_dim: int  # value length
    full_attention_layers: int  # layers holding a KV cache over the whole context
    sliding_window_layers: int  # layers holding a KV cache over the window only
    recurrent_layers: int  # layers holding a fixed-size state instead (Gated DeltaNet, Mamba)
    sliding_window_tokens: int | None
    experts: int
    experts_used: int
    shared_experts: int
    expert_ffn: int | None
    expert_layers: int  # layers with routed experts (--n-cpu-moe counts these)
    vocab_size: int | None
    tensor_bytes: dict[str, int] = field(default_factory=dict)  # by class, TENSOR_CLASSES
    tensor_types: dict[str, str] = field(default_factory=dict)  # by class, the largest type
    basis: dict[str, str] = field(default_factory=dict)
    # The model's own recommended sampling (general.sampling.*: temp, top_k, ...), as given.
    sampling: dict[str, Any] = field(default_factory=dict)
    # One sequence's recurrent state over every recurrent layer (f32 conv + SSM state, as
    # llama.cpp's llama_hparams::n_embd_r/n_embd_s size it): what each extra slot and each
    # context checkpoint of a hybrid model holds.
    recurrent_state_bytes: int = 0

    @property
    def routed_bytes(self) -> int:
        return self.tensor_bytes.get(ROUTED, 0)

    @property
    def routed_bytes_per_token(self) -> int:
        """What one token reads of the routed experts: the used share of them."""
        if not self.experts:
            return 0
        return self.routed_bytes * self.experts_used // self.experts

    @property
    def dense_bytes_per_token(self) -> int:
        """What one token reads of everything else: all of it but the routed experts and
        the embedding table (a token reads one row of that), unless the model has no output
        tensor: then the embedding table is also the output head, read whole every token."""
        tied = not self.tensor_bytes.get(OUTPUT)
        return sum(size for name, size in self.tensor_bytes.items()
                   if name != ROUTED and (name != EMBEDDINGS or tied))

    def to_json(self) -> dict:
        return plain(self)

    @classmethod
    def from_json(cls, record: Any) -> GgufModel:
        """The facts a recording kept (a snapshot's model.json: anybody's file), held to
        the same types and bounds as facts read from a GGUF (``validated``)."""
        if not isinstance(record, dict):
            raise GgufError("the recorded model facts are not an object")
        try:
            values = dict(record)
            files = values.get("files") or []
            if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
                raise TypeError("files is not a list of objects")
            values["files"] = [GgufFile(**entry) for entry in files]
            return validated(cls(**values))
        except TypeError as exc:
            raise GgufError(f"the recorded model facts do not match this version: {exc}") from exc


_TEXTS = ("path", "architecture")
_OPTIONAL_TEXTS = ("name", "file_type")
# Each count and its bound: a negative one, or one beyond any model, is refused.
_BOUNDS = {"layers": MAX_LAYERS, "full_attention_layers": MAX_LAYERS,
           "sliding_window_layers": MAX_LAYERS, "recurrent_layers": MAX_LAYERS,
           "expert_layers": MAX_LAYERS, "kv_heads": MAX_COUNT, "head_dim": MAX_COUNT,
           "value_dim": MAX_COUNT, "experts": MAX_COUNT, "experts_used": MAX_COUNT,
           "shared_experts": MAX_COUNT, "file_bytes": 2**62,
           "recurrent_state_bytes": MAX_RECURRENT_STATE}
_OPTIONAL_BOUNDS = {"context_length": MAX_CONTEXT, "hidden": 1 << 24, "heads": MAX_COUNT,
                    "sliding_window_tokens": MAX_CONTEXT, "expert_ffn": 1 << 24,
                    "vocab_size": MAX_STRINGS}


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sampling_value(value: Any) -> bool:
    """A value llama-server can take as a flag: a finite number, or a short printable
    text (a NaN temperature or a text with control characters is a damaged header)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < 2**31
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and len(value) <= MAX_SAMPLING_TEXT and value.isprintable()


def validated(model: GgufModel) -> GgufModel:
    """``model`` where every value has its type and lies within what a real model has;
    GgufError naming the first that does not (-512 experts, a head dimension of 2^40, a
    KV cache of exabytes per token, a layer count that is a string)."""
    def bad(name: str, value: Any, why: str = "") -> GgufError:
        return GgufError(f"{model.path if isinstance(model.path, str) else 'the model'}: "
                         f"{name} {value!r} is not valid{why}")

    for name in _TEXTS + _OPTIONAL_TEXTS:
        value = getattr(model, name)
        if not isinstance(value, str) and not (value is None and name in _OPTIONAL_TEXTS):
            raise bad(name, value)
    for name, most in list(_BOUNDS.items()) + list(_OPTIONAL_BOUNDS.items()):
        value = getattr(model, name)
        if value is None and name in _OPTIONAL_BOUNDS:
            continue
        if not _whole(value) or not 0 <= value <= most:
            raise bad(name, value, f" (a whole number from 0 to {most})")
    if model.experts and model.experts_used > model.experts:
        raise bad("experts_used", model.experts_used, f": more than its {model.experts} experts")
    for name, table, kind in (("tensor_bytes", model.tensor_bytes, _whole),
                              ("tensor_types", model.tensor_types, lambda v: isinstance(v, str)),
                              ("basis", model.basis, lambda v: isinstance(v, str))):
        if not isinstance(table, dict) or not all(
                isinstance(key, str) and kind(value) for key, value in table.items()):
            raise bad(name, table)
    if not isinstance(model.sampling, dict) or not all(
            key in SAMPLING_KEYS and _sampling_value(value)
            for key, value in model.sampling.items()):
        raise bad("sampling", model.sampling, ": not the general.sampling.* keys and values")
    if any(size < 0 or size > model.file_bytes for size in model.tensor_bytes.values()):
        raise bad("tensor_bytes", model.tensor_bytes, ": more than the file holds")
    for file in model.files:
        if not isinstance(file.path, str) or not all(
                _whole(v) and v >= 0 for v in (file.size_bytes, file.tensors)):
            raise bad("files", file)
    per_token = 2 * model.kv_heads * (model.head_dim + model.value_dim) * (
        model.full_attention_layers + model.sliding_window_layers)
    if per_token > MAX_KV_BYTES_PER_TOKEN:
        raise bad("KV cache per token", per_token,
                  f": more than {MAX_KV_BYTES_PER_TOKEN >> 20} MiB, far beyond any model")
    return model


def split_parts(path: str) -> list[str]:
    """Every file of a split model (``*-00001-of-00003.gguf``), or just ``path``."""
    match = SPLIT_NAME.match(path)
    if not match:
        return [path]
    count = int(match.group("count"))
    return [f"{match.group('prefix')}-{number:05d}-of-{count:05d}.gguf"
            for number in range(1, count + 1)]


_READER: Any = None


def reader_class():
    """gguf's GGUFReader, made fast on the metadata arrays it would otherwise split into
    one numpy array per element (a 150k-token vocabulary takes seconds that way)."""
    global _READER
    if _READER is not None:
        return _READER
    import numpy as np
    from gguf import GGUFReader, GGUFValueType

    class FastArrayReader(GGUFReader):
        def _get_field_parts(self, orig_offs, raw_type):  # noqa: ANN001 - gguf's signature
            if GGUFValueType(raw_type) != GGUFValueType.ARRAY:
                return super()._get_field_parts(orig_offs, raw_type)
            raw_itype = self._get(orig_offs, np.uint32)
            alen = self._get(orig_offs + 4, np.uint64)
            offs = orig_offs + 12
            sub = GGUFValueType(raw_itype[0])
            types = [GGUFValueType.ARRAY, sub]
            scalar = self.gguf_scalar_to_np.get(sub)
            if scalar is not None:  # one array for all elements
                values = self._get(offs, scalar, alen[0])
                return 12 + int(values.nbytes), [raw_itype, alen, values], [2], types
            count = int(alen[0])
            if sub == GGUFValueType.STRING:  # skipped, counted: the plan needs no token text
                if count > MAX_STRINGS or count * 8 > len(self.data) - offs:
                    raise ValueError(f"an array declares {count} strings (a vocabulary holds "
                                     f"at most a few hundred thousand)")
                order = ">" if self.byte_order == "S" else "<"
                buffer = memoryview(self.data)
                for _ in range(count):
                    (length,) = struct.unpack_from(order + "Q", buffer, offs)
                    offs += 8 + length
                return offs - orig_offs, [raw_itype, alen], [], types
            if sub == GGUFValueType.ARRAY:  # llama.cpp's gguf.cpp refuses them too
                raise ValueError("an array of arrays, which llama.cpp does not read")
            return super()._get_field_parts(orig_offs, raw_type)

    _READER = FastArrayReader
    return _READER


def check_header(view: Any, path: str) -> None:
    """Refuse a header declaring more tensors or keys than any model has (MAX_TENSORS,
    MAX_KEYS) or than the file can hold, before gguf's reader walks them one by one."""
    if len(view) < 24:
        raise GgufError(f"{path} is too short for a GGUF header")
    (version,) = struct.unpack_from("<I", view, 4)
    order = ">" if version & 0xFFFF == 0 else "<"  # a file of the other byte order
    (version,) = struct.unpack_from(order + "I", view, 4)
    counts = struct.unpack_from(order + ("II" if version == 1 else "QQ"), view, 8)
    for count, what, most, least in ((counts[0], "tensors", MAX_TENSORS, 24),
                                     (counts[1], "metadata keys", MAX_KEYS, 13)):
        if count > most or count * least > len(view):
            raise GgufError(f"{path} declares {count} {what}: no model has more than "
                            f"{most}, nor more than the file can hold")


def metadata_value(reader, key: str) -> Any:
    """A metadata value: a number, a string, or a list of numbers (string arrays are
    skipped by the reader and read as None). Read from the field's parts directly, the
    layout every gguf release shares (``ReaderField.contents`` is recent)."""
    from gguf import GGUFValueType

    found = reader.fields.get(key)
    if found is None or not found.types or not found.data:
        return None
    try:
        if found.types[0] == GGUFValueType.ARRAY:
            if found.types[-1] == GGUFValueType.STRING:
                return None
            return [item for index in found.data for item in found.parts[index].tolist()]
        part = found.parts[found.data[0]]
        if found.types[0] == GGUFValueType.STRING:
            return bytes(part).decode("utf-8", errors="replace")
        return part.tolist()[0]
    except (ValueError, IndexError, TypeError):
        return None


def _array_length(reader, key: str) -> int | None:
    found = reader.fields.get(key)
    if found is None or len(found.types) < 2:
        return None
    return int(found.parts[4][0])  # key length, key, value type, item type, then the count


def architecture_names() -> list[str]:
    """Every architecture name the installed gguf package knows (llama.cpp's list).

    Read from gguf's ``constants`` module on its own: importing the package runs its
    ``__init__``, which loads the reader, the writer and numpy (about 0.15 s), and only
    ``--model`` needs those. The server facts ask for these names on every run that
    finds a llama-server."""
    loaded = sys.modules.get("gguf.constants")
    if loaded is None:
        import importlib.util

        package = importlib.util.find_spec("gguf")  # finds, does not import, the package
        folder = package.submodule_search_locations if package else None
        spec = importlib.util.spec_from_file_location(
            "q3cn_doctor._gguf_constants", f"{list(folder)[0]}/constants.py") if folder else None
        if spec is None or spec.loader is None:  # an unusual install: import it the usual way
            from gguf import constants as loaded
        else:
            loaded = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(loaded)
    return sorted(set(loaded.MODEL_ARCH_NAMES.values()))


# -- shaping the facts -------------------------------------------------------------------------

def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return int(value)
    return None


def _per_layer(value: Any, layers: int) -> list[int] | None:
    """A per-layer metadata value (an int, or an array of one per layer)."""
    if isinstance(value, list):
        return [int(v) for v in value][:layers] or None
    number = _int(value)
    return None if number is None else [number] * layers


def classify(name: str, recurrent_blocks: set[int]) -> str:
    """The class of a tensor by its llama.cpp name."""
    if "_exps" in name:
        return ROUTED
    if "_shexp" in name:
        return SHARED
    if name.startswith(("token_embd", "per_layer_token_embd")):
        return EMBEDDINGS
    if name.startswith(("output.", "output_norm")) or name == "output":
        return OUTPUT
    block = _BLOCK.match(name)
    if block:
        number, rest = int(block.group(1)), block.group(2)
        if rest.startswith("ssm_") or (rest.startswith("attn_") and number in recurrent_blocks):
            return RECURRENT
        if rest.startswith("attn_"):
            return ATTENTION
    return OTHER


def model_of(path: str, files: list[GgufFile], reader, tensors: list[tuple[str, int, str]]
           ) -> GgufModel:
    arch = str(metadata_value(reader, "general.architecture"))
    basis: dict[str, str] = {}

    def key(name: str) -> Any:
        return metadata_value(reader, f"{arch}.{name}")

    blocks = {int(m.group(1)) for name, _, _ in tensors if (m := _BLOCK.match(name))}
    layers = _int(key("block_count")) or (max(blocks) + 1 if blocks else 0)
    if not 0 <= layers <= MAX_LAYERS:  # per-layer lists are built below: refuse, not hang
        raise GgufError(f"{path}: {arch}.block_count {layers} is not a layer count")
    basis["layers"] = f"{arch}.block_count"
    heads = _int(key("attention.head_count")) if not isinstance(
        key("attention.head_count"), list) else max(key("attention.head_count"))
    hidden = _int(key("embedding_length"))
    head_dim = _int(key("attention.key_length")) or (hidden // heads if hidden and heads else 0)
    value_dim = _int(key("attention.value_length")) or head_dim
    kv_per_layer = _per_layer(key("attention.head_count_kv"), layers) or (
        [heads] * layers if heads else [0] * layers)

    # Which layers keep what: recurrent layers (ssm_* tensors, or no KV heads) keep a
    # fixed state; sliding-window layers keep the window; the rest the whole context.
    recurrent = {n for name, _, _ in tensors
                 if (m := _BLOCK.match(name)) and m.group(2).startswith("ssm_")
                 for n in [int(m.group(1))]}
    recurrent |= {n for n, kv in enumerate(kv_per_layer) if kv == 0}
    interval = _int(key("full_attention_interval"))
    if not recurrent and interval and arch.startswith("qwen3next"):
        recurrent = {n for n in range(layers) if (n + 1) % interval}
    basis["recurrent_layers"] = ("layers with ssm_* tensors or no KV heads"
                                 + (f"; {arch}.full_attention_interval" if interval else ""))
    window = _int(key("attention.sliding_window"))
    swa: set[int] = set()
    if window:
        pattern = key("attention.sliding_window_pattern")
        if isinstance(pattern, list):
            swa = {n for n, flag in enumerate(pattern) if flag}
            basis["sliding_window_layers"] = f"{arch}.attention.sliding_window_pattern"
        else:
            every = _int(pattern) or SWA_PATTERN.get(arch)
            if every:
                swa = {n for n in range(layers) if (n + 1) % every}
                basis["sliding_window_layers"] = (
                    f"{arch}.attention.sliding_window_pattern" if _int(pattern) else
                    f"every {every}th layer full attention (llama.cpp's pattern for {arch})")
            else:
                swa = set(range(layers))
                basis["sliding_window_layers"] = "every layer (no pattern given)"
        swa -= recurrent
    full = [n for n in range(layers) if n not in recurrent and n not in swa]
    kv_heads = max((kv_per_layer[n] for n in full), default=max(kv_per_layer, default=0))

    by_class: dict[str, int] = dict.fromkeys(TENSOR_CLASSES, 0)
    types: dict[str, Counter] = {name: Counter() for name in TENSOR_CLASSES}
    expert_blocks: set[int] = set()
    for name, size, kind in tensors:
        group = classify(name, recurrent)
        by_class[group] += size
        types[group][kind] += size
        if group == ROUTED and (m := _BLOCK.match(name)):
            expert_blocks.add(int(m.group(1)))
    basis["tensor_bytes"] = ("tensor sizes from the GGUF tensor table of every split file, "
                             "by name: *_exps routed experts, *_shexp shared expert, "
                             "ssm_* recurrent, attn_* attention, token_embd, output")
    file_type = _int(metadata_value(reader, "general.file_type"))
    experts = _int(key("expert_count")) or 0
    name = metadata_value(reader, "general.name")
    return validated(GgufModel(
        path=path,
        files=files,
        file_bytes=sum(f.size_bytes for f in files),
        name=name if isinstance(name, str) else None,
        architecture=arch,
        file_type=_file_type_name(file_type),
        layers=layers,
        context_length=_int(key("context_length")),
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        value_dim=value_dim,
        full_attention_layers=len(full),
        sliding_window_layers=len(swa),
        recurrent_layers=len(recurrent),
        sliding_window_tokens=window if swa else None,
        experts=experts,
        experts_used=_int(key("expert_used_count")) or 0,
        shared_experts=_int(key("expert_shared_count")) or (1 if by_class[SHARED] else 0),
        expert_ffn=_int(key("expert_feed_forward_length")),
        expert_layers=len(expert_blocks),
        vocab_size=_array_length(reader, "tokenizer.ggml.tokens") or _int(key("vocab_size")),
        tensor_bytes=by_class,
        tensor_types={group: counter.most_common(1)[0][0] for group, counter in types.items()
                      if counter},
        basis=basis,
        sampling=sampling_of(reader),
        recurrent_state_bytes=_recurrent_state(key, len(recurrent)),
    ))


def sampling_of(reader) -> dict[str, Any]:
    """The general.sampling.* values present, by their short name (``temp``, ``top_k``)."""
    found = {}
    for name in SAMPLING_KEYS:
        value = metadata_value(reader, f"general.sampling.{name}")
        if _sampling_value(value):  # a NaN or a control character is left to the defaults
            found[name] = value
    return found


def _recurrent_state(key, layers: int) -> int:
    """Bytes of one sequence's recurrent state: per layer (conv_kernel - 1) x (inner +
    2 x groups x state) conv values plus state x inner SSM values (Mamba-2 and Gated
    DeltaNet layouts, llama_hparams::n_embd_r/n_embd_s), in f32."""
    if not layers:
        return 0
    conv, inner = _int(key("ssm.conv_kernel")) or 0, _int(key("ssm.inner_size")) or 0
    state, groups = _int(key("ssm.state_size")) or 0, _int(key("ssm.group_count")) or 0
    per_layer = max(0, conv - 1) * (inner + 2 * groups * state) + state * inner
    return layers * per_layer * STATE_BYTES


def _file_type_name(value: int | None) -> str | None:
    if value is None:
        return None
    from gguf import LlamaFileType

    try:
        return LlamaFileType(value).name
    except ValueError:
        return f"file type {value}"

"""GGUF models read through the host (doctor/gguf_model.py) and the model facts built on
them (doctor/facts/model.py), on small files written by the gguf package's own writer
(tests/gguf_files.py): a Qwen3-Next-shaped header and tensor table, the same split in
three files, a gpt-oss-shaped sliding-window model, and a snapshot that keeps the parsed
facts (model.json), never the file.
"""

from __future__ import annotations

import errno
import json
import os
import tracemalloc
from pathlib import Path

import gguf
import numpy as np
import pytest
from conftest import run_cli
from gguf_files import (
    QWEN_SHAPE,
    VOCABULARY,
    expected_bytes,
    qwen3next_tensors,
    write_qwen3next,
    write_vocabulary_model,
)
from msgspec import to_builtins
from q3cn_doctor.checking.findings import FAIL, PASS, SKIP
from q3cn_doctor.checking.runner import available_checks, run_checks, select
from q3cn_doctor.facts import Facts
from q3cn_doctor.facts.model import CACHE_TYPE_BYTES
from q3cn_doctor.facts.model_file import read_model
from q3cn_doctor.host.live import LiveHost
from q3cn_doctor.host.snapshot import RecordingHost, SnapshotHost
from q3cn_doctor.options import Options
from q3cn_doctor.parsers.gguf_file import GgufError, split_parts
from test_no_back_door import only_inside


@pytest.fixture(scope="module")
def qwen(tmp_path_factory) -> Path:
    return write_qwen3next(tmp_path_factory.mktemp("qwen") / "Qwen3-Coder-Next-Tiny.gguf")[0]


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> list[Path]:
    return write_qwen3next(tmp_path_factory.mktemp("split") / "Qwen3-Tiny.gguf", split=3)


def test_qwen3next_shape(qwen):
    model = read_model(LiveHost(), str(qwen))
    shape = QWEN_SHAPE
    assert model.architecture == "qwen3next"
    assert model.name == "Qwen3-Coder-Next-Tiny"
    assert model.file_type == "MOSTLY_MXFP4_MOE"
    assert model.layers == shape["layers"]
    # every 4th layer is full attention; the others Gated DeltaNet (ssm_* tensors)
    assert (model.full_attention_layers, model.recurrent_layers) == (2, 6)
    assert model.sliding_window_layers == 0 and model.sliding_window_tokens is None
    assert (model.kv_heads, model.head_dim, model.value_dim) == (2, 16, 16)
    assert (model.experts, model.experts_used, model.shared_experts) == (16, 2, 1)
    assert model.expert_layers == 8 and model.expert_ffn == 32
    assert model.context_length == 262144 and model.hidden == 64
    assert model.vocab_size == shape["vocab"]
    assert model.file_bytes == qwen.stat().st_size
    assert [f.path for f in model.files] == [str(qwen)]


def test_bytes_by_tensor_class(qwen):
    model = read_model(LiveHost(), str(qwen))
    expected = expected_bytes()
    assert {k: v for k, v in model.tensor_bytes.items() if v} == expected
    assert model.tensor_types["routed_experts"] == "MXFP4"
    assert model.tensor_types["attention"] == "F16"
    assert model.routed_bytes == expected["routed_experts"]
    assert model.routed_bytes_per_token == expected["routed_experts"] * 2 // 16
    assert model.dense_bytes_per_token == sum(expected.values()) - expected[
        "routed_experts"] - expected["embeddings"]
    # every tensor's bytes are counted once, and they fit inside the file
    assert sum(model.tensor_bytes.values()) == sum(d.nbytes for _, d, _ in qwen3next_tensors())
    assert sum(model.tensor_bytes.values()) < model.file_bytes


def test_split_files_are_summed(split, qwen):
    assert [p.exists() for p in split] == [True, True, True]
    single = read_model(LiveHost(), str(qwen))
    for part in split:  # any part names the whole set
        model = read_model(LiveHost(), str(part))
        assert [f.path for f in model.files] == [str(p) for p in split]
        assert model.file_bytes == sum(p.stat().st_size for p in split)
        assert sum(f.tensors for f in model.files) == len(qwen3next_tensors())
        assert model.tensor_bytes == single.tensor_bytes
        assert (model.layers, model.full_attention_layers, model.experts) == (8, 2, 16)


def test_split_names():
    assert split_parts("/m/x-00002-of-00003.gguf") == [
        "/m/x-00001-of-00003.gguf", "/m/x-00002-of-00003.gguf", "/m/x-00003-of-00003.gguf"]
    assert split_parts("/m/x.gguf") == ["/m/x.gguf"]


def test_missing_split_part_is_named(tmp_path):
    parts = write_qwen3next(tmp_path / "m.gguf", split=3)
    parts[2].unlink()
    with pytest.raises(GgufError, match="m-00003-of-00003.gguf is missing"):
        read_model(LiveHost(), str(parts[0]))


def test_not_a_gguf(tmp_path):
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"\x7fELF" + bytes(64))
    with pytest.raises(GgufError, match="not a GGUF"):
        read_model(LiveHost(), str(bogus))
    with pytest.raises(FileNotFoundError):
        read_model(LiveHost(), str(tmp_path / "absent.gguf"))


def test_truncated_gguf(tmp_path, qwen):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(qwen.read_bytes()[:200])
    with pytest.raises(GgufError):
        read_model(LiveHost(), str(cut))


def test_damaged_length_field_is_a_gguf_error(tmp_path, qwen):
    """A string length in the vocabulary overwritten with garbage points past any offset
    the reader can take (OverflowError inside gguf): reported, never a traceback."""
    data = qwen.read_bytes()
    first_token = (2).to_bytes(8, "little") + b"t0"
    at = data.index(first_token)
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(data[:at] + (2**64 - 16).to_bytes(8, "little") + data[at + 8:])
    with pytest.raises(GgufError, match="damaged.gguf"):
        read_model(LiveHost(), str(damaged))


def _llama_with(path: Path, **metadata) -> Path:
    """A one-tensor llama GGUF with extra metadata keys (arrays as given)."""
    writer = gguf.GGUFWriter(str(path), "llama")
    for key, value in metadata.items():
        if isinstance(value, np.ndarray):
            writer.add_array(f"llama.{key}", value.tolist())
        else:
            writer.add_uint64(f"llama.{key}", value)
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((4, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_malformed_metadata_is_a_gguf_error(tmp_path):
    """Metadata of the wrong shape (a per-layer head count that is not a number, a layer
    count no model has) is a GgufError: never a traceback, never a hang building
    per-layer lists."""
    nan_heads = _llama_with(tmp_path / "nan.gguf", block_count=2,
                            **{"attention.head_count_kv": np.array([np.nan, 1.0],
                                                                   np.float32)})
    with pytest.raises(GgufError, match="malformed"):
        read_model(LiveHost(), str(nan_heads))
    huge = _llama_with(tmp_path / "huge.gguf", block_count=2**40)
    tracemalloc.start()
    try:
        with pytest.raises(GgufError, match="block_count"):
            read_model(LiveHost(), str(huge))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"{peak} bytes: per-layer lists were built before the refusal"


def test_injected_fault_goes_through_the_host(qwen):
    host = LiveHost()
    host.faults[str(qwen)] = errno.EACCES
    with pytest.raises(PermissionError):
        read_model(host, str(qwen))


def _gpt_oss(path: Path) -> Path:
    """A gpt-oss-shaped model: sliding window 128, no pattern key (llama.cpp's code sets
    every other layer full attention), 8 KV heads of 64."""
    writer = gguf.GGUFWriter(str(path), "gpt-oss")
    writer.add_block_count(4)
    writer.add_embedding_length(64)
    writer.add_head_count(8)
    writer.add_head_count_kv(8)
    writer.add_key_length(64)
    writer.add_value_length(64)
    writer.add_sliding_window(128)
    writer.add_expert_count(4)
    writer.add_expert_used_count(2)
    writer.add_context_length(131072)
    for layer in range(4):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{layer}.{name}.weight", np.zeros((8, 64), np.float16))
        writer.add_tensor(f"blk.{layer}.ffn_up_exps.weight", np.zeros((4, 8, 64), np.float16))
    writer.add_tensor("token_embd.weight", np.zeros((16, 64), np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_sliding_window_layers(tmp_path):
    model = read_model(LiveHost(), str(_gpt_oss(tmp_path / "oss.gguf")))
    assert (model.full_attention_layers, model.sliding_window_layers) == (2, 2)
    assert model.sliding_window_tokens == 128 and model.recurrent_layers == 0
    assert "llama.cpp's pattern for gpt-oss" in model.basis["sliding_window_layers"]


@pytest.mark.slow  # gguf's own reader parses the 151,936-token vocabulary element by element
def test_fast_reader_agrees_with_gguf(tmp_path):
    """The reader skips per-element parsing of metadata arrays: the values it keeps are
    gguf's own (how fast it reads is bench/bench_parsers.py's business)."""
    path = write_vocabulary_model(tmp_path / "vocab.gguf")
    model = read_model(LiveHost(), str(path))
    assert model.vocab_size == VOCABULARY
    from q3cn_doctor.parsers.gguf_file import metadata_value, reader_class

    fast = reader_class()(str(path))
    plain = gguf.GGUFReader(str(path))
    assert metadata_value(fast, "tokenizer.ggml.token_type") == plain.fields[
        "tokenizer.ggml.token_type"].contents()
    assert metadata_value(fast, "llama.block_count") == 1
    assert [t.name for t in fast.tensors] == [t.name for t in plain.tensors]
    assert fast.data_offset == plain.data_offset


# -- the model facts -------------------------------------------------------------------------

def model_facts(host, path: str, **options):
    return Facts(host, Options(model=path, **options)).model


def test_model_facts_from_the_file(qwen):
    model = model_facts(LiveHost(), str(qwen), ctx_size=8192)
    assert model.path == str(qwen) and model.error is None
    assert model.source == f"GGUF {qwen}"
    assert model.architecture == "qwen3next" and model.layers == 8
    # only the 2 full-attention layers hold a KV cache: 2 x 2 layers x 2 heads x 16 x ctx x 2
    assert model.kv_cache_bytes == 2 * 2 * 2 * 16 * 8192 * 2
    assert model.recurrent_layers == 6
    assert model.tensor_bytes["routed_experts"] == expected_bytes()["routed_experts"]


def test_kv_cache_type_from_server_arguments(qwen):
    f16 = model_facts(LiveHost(), str(qwen), ctx_size=8192)
    q8 = model_facts(LiveHost(), str(qwen), ctx_size=8192,
                     server_args=["-ctk", "q8_0", "-ctv", "q8_0", "-c", "4096"])
    assert q8.ctx_size == 4096 and q8.cache_type == "q8_0"
    assert q8.kv_cache_bytes == int(f16.kv_cache_bytes / 2 * CACHE_TYPE_BYTES["q8_0"] / 2)


def test_unreadable_model_keeps_the_profile_and_fails_model_file(tmp_path):
    missing = str(tmp_path / "gone.gguf")
    facts = Facts(LiveHost(), Options(model=missing))
    model = facts.model
    assert model.error and "gone.gguf" in model.error
    assert model.architecture == "qwen3next" and model.layers == 48  # the profile's
    specs, _ = available_checks(plugins=False)
    found = {f.id: f for f in run_checks(facts, select(specs, ["model.file"], []))}
    assert found["model.file"].status == FAIL


def test_model_file_check(qwen):
    specs, _ = available_checks(plugins=False)
    facts = Facts(LiveHost(), Options(model=str(qwen), ctx_size=4096))
    found = {f.id: f for f in run_checks(facts, select(specs, ["model.file"], []))}
    assert found["model.file"].status == PASS
    assert "48 layers" not in found["model.file"].observed
    assert "8 layers (2 full attention, 6 recurrent)" in found["model.file"].observed
    facts = Facts(LiveHost(), Options())
    found = {f.id: f for f in run_checks(facts, select(specs, ["model.file"], []))}
    assert found["model.file"].status == SKIP


# -- snapshots keep parsed facts, never the file ------------------------------------------------

def test_recording_keeps_facts_not_the_file(tmp_path, split):
    directory = tmp_path / "snap"
    host = RecordingHost(str(directory))
    live = model_facts(host, str(split[0]), ctx_size=4096)
    host.finish()
    record = json.loads((directory / "model.json").read_text())
    assert list(record) == [str(split[0])]
    assert record[str(split[0])]["file_bytes"] == live.file_bytes
    for part in split:  # presence only: an empty placeholder, never the bytes
        stored = directory / "fs" / str(part).lstrip("/")
        assert stored.exists() and stored.stat().st_size == 0
    assert sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) < 64 * 1024
    with only_inside(str(directory)) as refused:
        replayed = model_facts(SnapshotHost(str(directory)), str(split[0]), ctx_size=4096)
    assert refused == []
    assert to_builtins(replayed) == to_builtins(live)


def test_snapshot_command_records_model_json(tmp_path, qwen):
    directory = tmp_path / "snap"
    result = run_cli("snapshot", str(directory), "--model", str(qwen), "--no-plugins",
                     env={"XDG_CONFIG_HOME": str(tmp_path / "noconfig"),
                          "XDG_CACHE_HOME": str(tmp_path / "cache")}, timeout=120)
    assert result.returncode == 0, result.stderr
    record = json.loads((directory / "model.json").read_text())
    assert record[str(qwen)]["architecture"] == "qwen3next"
    assert os.path.getsize(directory / "fs" / str(qwen).lstrip("/")) == 0
    replay = run_cli("check", "--snapshot", str(directory), "--model", str(qwen), "--json",
                     "--only", "model", env={"XDG_CONFIG_HOME": str(tmp_path / "noconfig")})
    document = json.loads(replay.stdout)
    assert document["facts"]["model"]["architecture"] == "qwen3next"
    assert document["facts"]["model"]["file_bytes"] == qwen.stat().st_size
    statuses = {f["id"]: f["status"] for f in document["findings"]}
    assert statuses["model.file"] == PASS

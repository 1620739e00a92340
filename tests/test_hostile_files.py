"""Hostile model and binary files (issue 18, items 7, 9, 11, 16): GGUF headers that declare
2^30 strings or 2^40 tensors, 5000 nested arrays, negative or absurd metadata, recorded
facts of the wrong types, FIFOs given as --model, mutated ELF files. Each is refused with
a reason (model.file, the ELF reader's error, the launch's message), in bounded time."""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import gguf
import numpy as np
import pytest
from launch_fixtures import QWEN_PATH, guide_machine
from q3cn_doctor.facts.model_file import read_model
from q3cn_doctor.host.live import LiveHost
from q3cn_doctor.parsers import elf
from q3cn_doctor.parsers.gguf_file import MAX_STRINGS, GgufError, GgufModel
from test_cli import as_json, cli, make_root
from test_elf import make_elf

STRING, ARRAY, UINT8 = 8, 9, 0


def _text(value: str) -> bytes:
    data = value.encode()
    return struct.pack("<Q", len(data)) + data


def raw_gguf(path: Path, values: list[bytes], tensors: int = 0, size: int = 0) -> str:
    """A GGUF v3 header by hand: general.architecture = llama, then ``values`` (each a
    key and its typed value); ``size`` extends the file with zeros (sparse: no disk)."""
    fields = [_text("general.architecture") + struct.pack("<I", STRING) + _text("llama")]
    fields += values
    with open(path, "wb") as out:
        out.write(b"GGUF" + struct.pack("<IQQ", 3, tensors, len(fields)) + b"".join(fields))
        if size:
            out.truncate(size)
    return str(path)


def string_array(key: str, count: int) -> bytes:
    return _text(key) + struct.pack("<IIQ", ARRAY, STRING, count)


def model_file_finding(path: str, *args: str) -> dict:
    done = cli("check", "--model", path, "--only", "model.file", "--json", "--no-plugins",
               *args, timeout=60)
    return as_json(done)["findings"][0]


# -- GGUF headers that would walk forever or recurse ---------------------------------------------
def test_two_to_the_thirty_token_strings_are_refused_at_once(tmp_path):
    """A sparse file of zeros holds 2^30 empty strings: walking them took over a minute."""
    path = raw_gguf(tmp_path / "vocab.gguf", [string_array("tokenizer.ggml.tokens", 2**30)],
                    size=2**33 + 4096)
    started = time.monotonic()
    with pytest.raises(GgufError, match="1073741824 strings"):
        read_model(LiveHost(), path)
    assert time.monotonic() - started < 5


@pytest.mark.slow  # a large file, walked against a real time limit
def test_the_largest_string_array_allowed_is_walked_in_bounded_time(tmp_path):
    path = raw_gguf(tmp_path / "vocab.gguf",
                    [string_array("tokenizer.ggml.tokens", MAX_STRINGS)],
                    size=MAX_STRINGS * 8 + 4096)
    started = time.monotonic()
    assert read_model(LiveHost(), path).vocab_size == MAX_STRINGS
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("tensors, keys", [(2**40, 1), (0, 2**40), (70000, 1)])
def test_a_header_declaring_more_than_any_model_is_refused(tmp_path, tensors, keys):
    path = tmp_path / "counts.gguf"
    raw_gguf(path, [], size=2**34)
    with open(path, "r+b") as out:
        out.seek(8)
        out.write(struct.pack("<QQ", tensors, keys))
    started = time.monotonic()
    with pytest.raises(GgufError, match="declares"):
        read_model(LiveHost(), str(path))
    assert time.monotonic() - started < 5


def test_five_thousand_nested_arrays_are_refused_not_recursed(tmp_path):
    nested = (_text("llama.nested") + struct.pack("<I", ARRAY)
              + struct.pack("<IQ", ARRAY, 1) * 5000 + struct.pack("<IQ", UINT8, 1) + b"\x01")
    path = raw_gguf(tmp_path / "nested.gguf", [nested])
    with pytest.raises(GgufError, match="array of arrays"):
        read_model(LiveHost(), path)
    finding = model_file_finding(path)
    assert finding["status"] == "fail"
    assert "array of arrays" in finding["observed"]


def test_a_tensor_past_the_end_of_its_file_is_refused(tmp_path):
    path = tmp_path / "short.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((64, 64), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.truncate(path, os.path.getsize(path) - 1024)
    with pytest.raises(GgufError):
        read_model(LiveHost(), str(path))


# -- negative and absurd metadata (item 16) ------------------------------------------------------
def _llama(path: Path, **metadata: int) -> str:
    """A one-layer llama with signed metadata as given (-512 experts is writable)."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("hostile")
    writer.add_block_count(1)
    writer.add_head_count(8)
    for key, value in metadata.items():
        writer.add_int64(f"llama.{key}", value)
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((8, 8), np.float32))
    writer.add_tensor("blk.0.ffn_up_exps.weight", np.zeros((2, 8, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)


@pytest.mark.parametrize("metadata, says", [
    ({"expert_count": -512, "expert_used_count": 8}, "experts -512"),
    ({"expert_count": 8, "expert_used_count": -1}, "experts_used -1"),
    ({"expert_count": 8, "expert_used_count": 9}, "more than its 8 experts"),
    ({"context_length": -4096}, "context_length -4096"),
    ({"attention.head_count_kv": 4096, "attention.key_length": 65536,
      "attention.value_length": 65536}, "KV cache per token"),
    ({"attention.key_length": 2**40}, "head_dim"),
])
def test_negative_or_absurd_metadata_fails_model_file_saying_why(tmp_path, metadata, says):
    path = _llama(tmp_path / "bad.gguf", **metadata)
    with pytest.raises(GgufError, match=says):
        read_model(LiveHost(), path)
    finding = model_file_finding(path)
    assert finding["status"] == "fail"
    assert says in finding["observed"]


def test_a_sane_model_of_the_same_shape_reads(tmp_path):
    model = read_model(LiveHost(), _llama(tmp_path / "good.gguf", expert_count=8,
                                          expert_used_count=2, context_length=4096))
    assert (model.experts, model.experts_used, model.context_length) == (8, 2, 4096)


# -- recorded facts in a snapshot: model.json and elf.json -----------------------------------------
@pytest.mark.parametrize("changes, says", [
    ({"experts": -512}, "experts -512"),
    ({"layers": "48"}, "layers '48'"),
    ({"context_length": float("nan")}, "context_length nan"),
    ({"head_dim": float("inf")}, "head_dim inf"),
    ({"tensor_bytes": {"routed_experts": -1}}, "tensor_bytes"),
    ({"files": "all of them"}, "files is not a list"),
    ({"name": ["x"]}, "name ['x']"),
    # found by the fuzz test: a hybrid model's recurrent state left out broke six checks
    ({"recurrent_state_bytes": None}, "recurrent_state_bytes None"),
    ({"sampling": {"temp": float("nan")}}, "sampling"),
    ({"sampling": {"--exec": 1}}, "sampling"),
])
def test_recorded_model_facts_of_the_wrong_types_fail_model_file(tmp_path, changes, says):
    root = guide_machine(tmp_path / "guide")
    models = json.loads((root / "model.json").read_text())
    models[QWEN_PATH].update(changes)
    (root / "model.json").write_text(json.dumps(models))  # NaN and Infinity as JSON allows
    done = cli("check", "--snapshot", str(root), "--model", QWEN_PATH, "--json",
               "--no-plugins")
    document = json.loads(done.stdout, parse_constant=lambda name: pytest.fail(name))
    findings = {f["id"]: f for f in document["findings"]}
    assert findings["model.file"]["status"] == "fail"
    assert says in findings["model.file"]["observed"]
    assert [f for f in findings.values() if f["status"] == "error"] == []
    launched = cli("launch", "--snapshot", str(root), "--model", QWEN_PATH, "--print",
                   "--no-plugins")
    assert launched.returncode == 1
    assert "cannot read the model" in launched.stderr


def test_from_json_refuses_what_is_not_a_model():
    with pytest.raises(GgufError):
        GgufModel.from_json([1, 2])
    with pytest.raises(GgufError):
        GgufModel.from_json({"path": "/m.gguf"})


WRONG_ELF_RECORDS = [
    {"needed": ["libllama.so"], "rpath": 1.5},
    {"needed": ["libllama.so"], "rpath": "$ORIGIN"},
    {"needed": ["libllama.so"], "runpath": [1.5]},
    {"needed": "libllama.so"},
    {"needed": [None]},
    {"needed": [], "soname": ["libx.so"]},
    {"needed": [], "bits": "64"},
    [],
]


@pytest.mark.parametrize("record", WRONG_ELF_RECORDS)
def test_recorded_elf_facts_of_the_wrong_types_are_an_elf_error(record):
    with pytest.raises(elf.ElfError):
        elf.ElfInfo.from_json(record)


@pytest.mark.slow  # a sweep: a launch and a check per malformed record
@pytest.mark.parametrize("record", WRONG_ELF_RECORDS)
def test_recorded_elf_facts_of_the_wrong_types_error_no_launch_or_check(tmp_path, record):
    root = guide_machine(tmp_path / "guide")
    (root / "elf.json").write_text(json.dumps({"/usr/local/bin/llama-server": record}))
    done = cli("launch", "--snapshot", str(root), "--model", QWEN_PATH, "--print",
               "--no-plugins")
    assert done.returncode in (0, 1)
    checked = as_json(cli("check", "--snapshot", str(root), "--json", "--no-plugins"))
    assert [f["id"] for f in checked["findings"] if f["status"] == "error"] == []


# -- mutated ELF files: ElfError, never OverflowError ---------------------------------------------
@pytest.mark.parametrize("bits", [32, 64])
def test_offsets_past_any_possible_offset_are_an_elf_error(bits):
    data = bytearray(make_elf(["libcudart.so.12"], bits=bits))
    at = 32 if bits == 64 else 28  # e_phoff
    width = 8 if bits == 64 else 4
    data[at:at + width] = b"\xff" * width
    with pytest.raises(elf.ElfError):
        elf.parse(bytes(data))


def test_every_byte_of_a_real_elf_mutated_gives_info_or_an_elf_error():
    original = make_elf(["libcudart.so.12", "libggml.so"], runpath="$ORIGIN")
    for at in range(len(original)):
        for value in (0x00, 0x7F, 0x80, 0xFF):
            data = bytearray(original)
            data[at] = value
            try:
                info = elf.parse(bytes(data))
            except elf.ElfError:
                continue
            assert isinstance(info, elf.ElfInfo) and all(isinstance(n, str) for n in info.needed)


# -- FIFOs given as the model (item 7) -----------------------------------------------------------
def test_a_fifo_as_model_is_refused_in_check_and_launch(tmp_path):
    root = make_root(tmp_path / "root")
    (root / "models").mkdir()
    os.mkfifo(root / "models/m.gguf")
    started = time.monotonic()
    finding = model_file_finding("/models/m.gguf", "--root", str(root))
    assert finding["status"] == "fail"
    assert "not a regular file" in finding["observed"]
    launched = cli("launch", "--root", str(root), "--model", "/models/m.gguf", "--print",
                   "--no-plugins", timeout=60)
    assert launched.returncode == 1
    assert time.monotonic() - started < 30


# -- a facts section that fails never escapes launch (item 11) ------------------------------------
def test_launch_with_a_model_of_5000_nested_arrays_says_why(tmp_path):
    root = guide_machine(tmp_path / "guide")
    nested = (_text("llama.nested") + struct.pack("<I", ARRAY)
              + struct.pack("<IQ", ARRAY, 1) * 5000 + struct.pack("<IQ", UINT8, 1) + b"\x01")
    (root / "fs/models").mkdir(parents=True, exist_ok=True)
    raw_gguf(root / "fs/models/nested.gguf", [nested])
    done = cli("launch", "--snapshot", str(root), "--model", "/models/nested.gguf", "--print",
               "--no-plugins")
    assert done.returncode == 1
    assert "array of arrays" in done.stderr


def test_launch_turns_a_failed_facts_section_into_its_message(tmp_path, monkeypatch):
    from conftest import snapshot_facts
    from q3cn_doctor import facts as facts_module
    from q3cn_doctor.launch.launcher import LaunchError, build_plan

    root = guide_machine(tmp_path / "guide")
    facts = snapshot_facts(root, model=QWEN_PATH)

    def broken(host, options, facts):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setitem(facts_module.SECTIONS, "model", broken)
    with pytest.raises(LaunchError, match="could not gather model facts: RecursionError"):
        build_plan(facts, facts.options)


# -- hooks.json of the wrong types (item 11) ------------------------------------------------------
@pytest.mark.parametrize("entry", [
    {"kind": "service", "unit": ["llama-server.service"], "sha256": "0" * 64},
    {"kind": "service", "unit": {"a": 1}},
    {"kind": ["service"], "unit": "x.service"},
    {"kind": "service", "unit": "x.service", "created_dirs": "/etc"},
    "not an entry",
])
def test_hook_status_refuses_a_hand_edited_record_with_a_reason(tmp_path, entry):
    from test_hook import ROOT_ENV

    root = make_root(tmp_path / "root")
    state = root / "var/lib/q3cn-doctor"
    state.mkdir(parents=True)
    (state / "hooks.json").write_text(json.dumps({"format": 1, "hooks": {
        "/etc/systemd/system/x.service.d/95-q3cn-doctor-guard.conf": entry}}))
    done = cli("hook", "status", "--root", str(root), env=ROOT_ENV)  # no traceback
    assert done.returncode == 2
    assert "is not one q3cn-doctor wrote" in done.stderr

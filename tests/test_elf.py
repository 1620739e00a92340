"""doctor/elf.py: the NEEDED list of ELF files, built here byte by byte and real ones."""

from __future__ import annotations

import json
import os
import struct
import sys

import pytest
from conftest import host_fixture
from q3cn_doctor.facts.gpu import read_elf
from q3cn_doctor.host.live import RootHost
from q3cn_doctor.host.snapshot import LEGACY_ELF_SUFFIX, SnapshotHost
from q3cn_doctor.parsers.elf import ElfError, ElfInfo, parse

BASE = 0x400000


def make_elf(needed: list[str], soname: str | None = None, runpath: str | None = None,
             rpath: str | None = None, bits: int = 64, little: bool = True,
             dynamic: bool = True) -> bytes:
    """A minimal ELF image (header, PT_LOAD + PT_DYNAMIC, .dynstr, .dynamic): what the
    loader and doctor/elf.py read to know which libraries a file needs."""
    order = "<" if little else ">"
    word = "Q" if bits == 64 else "I"
    ehsize, phentsize = (64, 56) if bits == 64 else (52, 32)
    phnum = 2 if dynamic else 1
    strtab_off = ehsize + phnum * phentsize
    strings = b"\0"
    offsets = {}
    for text in [*needed, soname, runpath, rpath]:
        if text is not None and text not in offsets:
            offsets[text] = len(strings)
            strings += text.encode() + b"\0"
    dyn_off = (strtab_off + len(strings) + 7) // 8 * 8
    entries = [(1, offsets[name]) for name in needed]
    if soname is not None:
        entries.append((14, offsets[soname]))
    if runpath is not None:
        entries.append((29, offsets[runpath]))
    if rpath is not None:
        entries.append((15, offsets[rpath]))
    entries += [(5, BASE + strtab_off), (10, len(strings)), (0, 0)]
    dynamic_bytes = b"".join(struct.pack(order + word * 2, tag, val) for tag, val in entries)
    total = dyn_off + (len(dynamic_bytes) if dynamic else 0)
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1 if little else 2, 1]) + bytes(9)
    if bits == 64:
        header = ident + struct.pack(order + "HHIQQQIHHHHHH", 3, 62, 1, 0, ehsize, 0, 0,
                                     ehsize, phentsize, phnum, 64, 0, 0)
        load = struct.pack(order + "IIQQQQQQ", 1, 5, 0, BASE, BASE, total, total, 0x1000)
        dyn = struct.pack(order + "IIQQQQQQ", 2, 6, dyn_off, BASE + dyn_off, BASE + dyn_off,
                          len(dynamic_bytes), len(dynamic_bytes), 8)
    else:
        header = ident + struct.pack(order + "HHIIIIIHHHHHH", 3, 3, 1, 0, ehsize, 0, 0,
                                     ehsize, phentsize, phnum, 40, 0, 0)
        load = struct.pack(order + "IIIIIIII", 1, 0, BASE, BASE, total, total, 5, 0x1000)
        dyn = struct.pack(order + "IIIIIIII", 2, dyn_off, BASE + dyn_off, BASE + dyn_off,
                          len(dynamic_bytes), len(dynamic_bytes), 6, 4)
    image = header + load + (dyn if dynamic else b"")
    assert len(image) == strtab_off
    image += strings + bytes(dyn_off - strtab_off - len(strings))
    return image + (dynamic_bytes if dynamic else b"")


CUDA_LIB = ["libcudart.so.12", "libcublas.so.12", "libcuda.so.1", "libggml-base.so",
            "libstdc++.so.6", "libc.so.6"]


@pytest.mark.parametrize("bits", [64, 32])
@pytest.mark.parametrize("little", [True, False])
def test_needed_soname_and_runpath_in_every_class_and_byte_order(bits, little):
    image = make_elf(CUDA_LIB, soname="libggml-cuda.so", runpath="$ORIGIN:/opt/cuda/lib64",
                     rpath="/old", bits=bits, little=little)
    info = parse(image)
    assert info.needed == CUDA_LIB
    assert info.soname == "libggml-cuda.so"
    assert info.runpath == ["$ORIGIN", "/opt/cuda/lib64"]
    assert info.rpath == ["/old"]
    assert info.bits == bits
    assert info.machine == ("x86_64" if bits == 64 else "i386")
    assert info.dynamic and info.source == "elf"


def test_static_binary_needs_nothing():
    info = parse(make_elf([], dynamic=False))
    assert info.dynamic is False and info.needed == []


@pytest.mark.parametrize("data, message", [
    (b"#!/bin/sh\nexec /opt/llama/llama-server \"$@\"\n", "not an ELF file"),
    (b"", "not an ELF file"),
    (b"\x7fELF\x03\x01" + bytes(10), "unknown ELF class"),
])
def test_not_elf_is_an_error_not_a_crash(data, message):
    with pytest.raises(ElfError, match=message):
        parse(data)


def test_truncated_file_is_an_error():
    image = make_elf(CUDA_LIB)
    with pytest.raises(ElfError):
        parse(image[:200])  # the dynamic section is cut off


def test_string_offset_outside_table_is_an_error():
    image = bytearray(make_elf(["libc.so.6"]))
    dyn_at = image.rfind(struct.pack("<QQ", 10, len(b"\0libc.so.6\0")))
    struct.pack_into("<QQ", image, dyn_at, 10, 1)  # DT_STRSZ ends before the name (offset 1)
    with pytest.raises(ElfError, match="outside the string table"):
        parse(bytes(image))


def test_real_interpreter_binary():
    """The Python running this test is a real dynamically linked ELF: its NEEDED list
    names the C library (or libpython), as readelf -d shows."""
    path = os.path.realpath(sys.executable)
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:4] != b"\x7fELF":
        pytest.skip("not an ELF platform")
    info = parse(data)
    assert info.needed, "a dynamically linked interpreter needs at least one library"
    assert any(name.startswith(("libc.", "libpython", "libm.", "libpthread"))
               for name in info.needed), info.needed


def test_real_cuda_runtime_soname():
    """Where a CUDA toolkit is installed (this build machine has 13.0), its runtime's
    SONAME is the libcudart.so.N that builds link."""
    candidates = [os.path.join("/usr/local/cuda/lib64", n) for n in
                  sorted(os.listdir("/usr/local/cuda/lib64"))
                  if n.startswith("libcudart.so.")] if os.path.isdir(
                      "/usr/local/cuda/lib64") else []
    real = [c for c in candidates if not os.path.islink(c)]
    if not real:
        pytest.skip("no CUDA toolkit here")
    with open(real[0], "rb") as handle:
        info = parse(handle.read())
    assert info.soname is not None and info.soname.startswith("libcudart.so.")
    assert "libc.so.6" in info.needed


def test_read_elf_through_a_root_host(tmp_path):
    target = tmp_path / "usr/local/bin"
    target.mkdir(parents=True)
    (target / "llama-server").write_bytes(make_elf(["libllama.so", "libc.so.6"]))
    host = RootHost(str(tmp_path))
    with host.tracing() as trace:
        info = read_elf(host, "/usr/local/bin/llama-server")
    assert info.needed == ["libllama.so", "libc.so.6"]
    assert "/usr/local/bin/llama-server" in trace  # evidence names the file


def test_recorded_list_wins_over_the_placeholder(tmp_path):
    """A snapshot keeps a large binary as its parsed facts beside an empty placeholder."""
    fs = tmp_path / "fs/opt/llama/bin"
    fs.mkdir(parents=True)
    (fs / "libggml-cuda.so").write_bytes(b"")
    record = ElfInfo(needed=["libcudart.so.13", "libcublas.so.13"], soname="libggml-cuda.so")
    (fs / ("libggml-cuda.so" + LEGACY_ELF_SUFFIX)).write_text(json.dumps(record.to_json()))
    info = read_elf(SnapshotHost(str(tmp_path)), "/opt/llama/bin/libggml-cuda.so")
    assert info.needed == ["libcudart.so.13", "libcublas.so.13"]
    assert info.source == "recorded"
    assert ElfInfo.from_json(record.to_json()).to_json() == record.to_json()


def test_bad_record_is_an_elf_error(tmp_path):
    fs = tmp_path / "fs/bin"
    fs.mkdir(parents=True)
    (fs / ("llama-server" + LEGACY_ELF_SUFFIX)).write_text('{"soname": "x"}')
    with pytest.raises(ElfError, match="no 'needed' list"):
        read_elf(SnapshotHost(str(tmp_path)), "/bin/llama-server")


def test_missing_file_raises_oserror():
    host = SnapshotHost(host_fixture("build-machine-kvm"))
    with pytest.raises(OSError):
        read_elf(host, "/usr/local/bin/llama-server")


def test_fixture_binaries_parse():
    """The ELF files in the GPU fixtures are what their README says they link."""
    rtx4070 = os.path.join(host_fixture("gpu-rtx4070-desktop"), "fs/usr/local/lib")
    with open(os.path.join(rtx4070, "libggml-cuda.so"), "rb") as handle:
        assert parse(handle.read()).needed[:2] == ["libcudart.so.12", "libcublas.so.12"]


def test_snapshot_records_a_binary_as_its_elf_facts_not_its_bytes(tmp_path):
    """A snapshot must not carry a 500 MB libggml-cuda.so: it keeps the parsed record."""
    import os

    from q3cn_doctor.host.snapshot import RecordingHost, SnapshotHost

    binary = os.path.realpath("/bin/true")  # a real dynamically linked ELF on this machine
    recorder = RecordingHost(str(tmp_path / "snap"))
    live = read_elf(recorder, binary)
    stored = tmp_path / "snap" / "fs" / binary.lstrip("/")
    assert stored.exists() and stored.stat().st_size == 0
    assert not (stored.parent / (stored.name + LEGACY_ELF_SUFFIX)).exists()
    recorder.finish()
    assert binary in json.loads((tmp_path / "snap" / "elf.json").read_text())
    replayed = read_elf(SnapshotHost(str(tmp_path / "snap")), binary)
    assert replayed.needed == live.needed and "libc.so.6" in live.needed
    assert replayed.source == "recorded"

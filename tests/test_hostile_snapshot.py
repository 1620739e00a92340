"""Hostile snapshots, built here from real fixture hosts (issue 18, items 7, 8, 11, 12):
a snapshot is anybody's file. Each is replayed as a user would (``check --snapshot``):
no traceback, a clear reason, a bounded run, and one bad value costs its own value
only, never a whole facts section."""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import json
import os
import re
import resource
import shutil
import tarfile
import time
from pathlib import Path

import pytest
from conftest import HOSTS, copy_fixture, snapshot_facts, snapshot_findings
from q3cn_doctor.host import nvml
from q3cn_doctor.host.base import read_limit
from q3cn_doctor.host.snapshot import (
    ARCHIVE_BYTES,
    ARCHIVE_MEMBERS,
    SnapshotHost,
    _safe_extract,
)
from test_cli import as_json, cli, make_root

GPU_HOST = "gpu-rtx4090-desktop"
MEMORY_HOST = "001-hp-elitebook-840g10-i7-1370p-disk-swap"
BIG = "9" * 5000


def errors_in(document: dict) -> dict[str, str]:
    return {f["id"]: f["observed"] for f in document["findings"] if f["status"] == "error"}


def replay(directory: Path, *args: str, timeout: float = 60):
    """``check --snapshot DIR --json``: it must end, without a traceback (``cli``)."""
    return cli("check", "--snapshot", str(directory), "--no-plugins", *args, timeout=timeout)


def edit_meta(directory: Path, **changes) -> None:
    path = directory / "snapshot.json"
    meta = json.loads(path.read_text()) if path.exists() else {}
    meta.update(changes)
    path.write_text(json.dumps(meta))


# -- snapshot.json and nvml.json are validated at the door (items 11, 12) -------------------------
@pytest.mark.parametrize("changes", [
    {"errors": ["/proc/meminfo", "EACCES"]},
    {"errors": 5},
    {"errors": {"/proc/meminfo": 13, "/proc/cpuinfo": ["EIO"], "/proc/swaps": "ENOSUCH"}},
    {"listings": None},
    {"listings": {"/sys/class/drm": "card1", "/proc": [1, None], "/sys": [".."]}},
    {"processes": "llama-server", "environ": ["PATH"], "rlimits": {"MEMLOCK": "unlimited"},
     "euid": "0", "capabilities": 1.5, "user": ["root"]},
    {"processes": [{"pid": "1"}, {"pid": 2, "cmdline": "x", "affinity": "0-3", "threads": []}]},
])
def test_snapshot_json_of_the_wrong_types_reads_as_unknown(tmp_path, changes):
    snapshot = copy_fixture(GPU_HOST, tmp_path)
    edit_meta(snapshot, **changes)
    done = replay(snapshot, "--json")
    assert done.returncode in (0, 1), done.stderr
    assert errors_in(as_json(done)) == {}


def test_recorded_errors_replay_by_name_and_damaged_ones_as_eio(tmp_path):
    snapshot = copy_fixture(MEMORY_HOST, tmp_path)
    edit_meta(snapshot, errors={"/proc/meminfo": "EACCES", "/proc/swaps": 13,
                                "/proc/cpuinfo": "NOT_AN_ERRNO"})
    host = SnapshotHost(str(snapshot))
    for path, code in (("/proc/meminfo", "EACCES"), ("/proc/swaps", "EIO"),
                       ("/proc/cpuinfo", "EIO")):
        with pytest.raises(OSError) as raised:
            host.read_bytes(path)
        assert raised.value.errno == getattr(errno, code)


@pytest.mark.parametrize("text, says", [
    ("[1, 2]", "holds a list, not an object"),
    ('"snapshot"', "holds a str, not an object"),
    ("[" * 100000, "not a readable snapshot.json"),
])
def test_snapshot_json_that_is_not_an_object_is_a_clear_usage_error(tmp_path, text, says):
    snapshot = copy_fixture(GPU_HOST, tmp_path)
    (snapshot / "snapshot.json").write_text(text)
    done = replay(snapshot)
    assert done.returncode == 2
    assert says in done.stderr


def test_fs_as_a_link_to_itself_is_a_clear_usage_error(tmp_path):
    snapshot = tmp_path / "loop"
    snapshot.mkdir()
    (snapshot / "fs").symlink_to("fs")
    (snapshot / "snapshot.json").write_text("{}")
    done = replay(snapshot)
    assert done.returncode == 2
    assert "Too many levels of symbolic links" in done.stderr


def test_link_loops_inside_fs_and_cmd_read_as_absent(tmp_path):
    snapshot = copy_fixture(MEMORY_HOST, tmp_path)
    shutil.rmtree(snapshot / "fs/sys", ignore_errors=True)
    (snapshot / "fs/sys").symlink_to("sys")
    shutil.rmtree(snapshot / "cmd", ignore_errors=True)
    (snapshot / "cmd").symlink_to("../cmd")
    done = replay(snapshot, "--json")
    assert done.returncode in (0, 1)
    assert errors_in(as_json(done)) == {}


def test_nvml_json_of_the_wrong_types_reads_as_unknown(tmp_path):
    snapshot = copy_fixture(GPU_HOST, tmp_path)
    readings = json.loads((snapshot / "nvml.json").read_text())
    device = readings["devices"][0]
    wrong = {str: 12, int: "12", bool: "yes", list: {"a": 1}, dict: [1], type(None): []}
    for key, item in list(device.items()):
        device[key] = wrong[type(item)]
    device["memory_total_bytes"] = -1
    device["power_limit_mw"] = 1e400  # Infinity in the file
    readings.update(driver_version=580, cuda_driver_version="13.0")
    readings["devices"].append("not a device")
    (snapshot / "nvml.json").write_text(json.dumps(readings))
    done = replay(snapshot, "--json")
    document = as_json(done)
    assert errors_in(document) == {}
    gpus = document["facts"]["gpus"]
    assert gpus[0]["name"] == {"error": nvml.INVALID}
    assert gpus[1] == {"index": 1, "error": nvml.INVALID}


def test_conform_keeps_every_field_of_a_real_reading():
    for host in sorted(HOSTS.iterdir()):
        path = host / "nvml.json"
        if path.exists():
            readings = json.loads(path.read_text())
            assert nvml.conform(readings) == readings, host.name


# -- one bad value costs that value (item 12) --------------------------------------------------
@pytest.mark.parametrize("relative", ["proc/meminfo", "proc/swaps", "proc/sys/vm/swappiness",
                                      "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"])
def test_a_5000_digit_number_costs_its_value_not_the_memory_checks(tmp_path, relative):
    root = make_root(tmp_path / "root", disk_swap=True)
    target = root / relative
    target.write_text(re.sub(r"\b\d+\b", BIG, target.read_text(), count=1))
    done = cli("check", "--root", str(root), "--only", "memory", "--json", "--no-plugins")
    assert errors_in(as_json(done)) == {}
    memory = as_json(done)["facts"]["memory"]
    if relative == "proc/meminfo":  # the first line (MemTotal) is lost, the rest is kept
        assert memory["total_bytes"] is None and memory["available_bytes"] > 0
    else:
        assert memory["total_bytes"] == 128 * 1024**3


def _every_number_huge(name: str, tmp_path: Path) -> Path:
    snapshot = copy_fixture(name, tmp_path)
    for path in (snapshot / "fs").rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            path.write_text(re.sub(r"\d+", BIG, text))
    return snapshot


@pytest.mark.parametrize("name", [MEMORY_HOST, "cpu-epyc7451-2s-8numa",
                                  "cpu-i5-12600k-guide-constructed", "gpu-rtx4070-desktop"])
def test_every_number_of_a_machine_5000_digits_long_errors_no_check(tmp_path, name):
    found = snapshot_findings(_every_number_huge(name, tmp_path))
    assert {i: f.observed for i, f in found.items() if f.status == "error"} == {}


@pytest.mark.slow  # a sweep: every fixture host, each checked in full
def test_every_number_5000_digits_long_on_every_fixture_host(tmp_path):
    for host in sorted(os.listdir(HOSTS)):
        found = snapshot_findings(_every_number_huge(host, tmp_path / host))
        assert {i: f.observed for i, f in found.items() if f.status == "error"} == {}, host


# -- FIFOs and oversized files (items 7, 8) -----------------------------------------------------
def test_a_fifo_in_a_snapshot_is_refused_not_waited_on(tmp_path):
    snapshot = copy_fixture(MEMORY_HOST, tmp_path)
    os.unlink(snapshot / "fs/proc/meminfo")
    os.mkfifo(snapshot / "fs/proc/meminfo")
    os.mkfifo(snapshot / "nvml.json")
    os.makedirs(snapshot / "cmd", exist_ok=True)
    os.mkfifo(snapshot / "cmd/dmidecode_-t_memory.out")
    started = time.monotonic()
    done = replay(snapshot, "--json", timeout=30)
    assert time.monotonic() - started < 20
    memory = as_json(done)["facts"]["memory"]
    assert memory["total_bytes"] is None
    assert errors_in(as_json(done)) == {}
    text = replay(snapshot, "--only", "memory.fit", "-v", timeout=30).stdout
    assert "/proc/meminfo" in text


def test_a_fifo_as_snapshot_json_is_a_clear_error(tmp_path):
    snapshot = copy_fixture(GPU_HOST, tmp_path)
    os.unlink(snapshot / "snapshot.json")
    os.mkfifo(snapshot / "snapshot.json")
    done = replay(snapshot, timeout=30)
    assert done.returncode == 2
    assert "not a regular file" in done.stderr


def test_a_fifo_under_root_is_refused(tmp_path):
    root = make_root(tmp_path / "root")
    os.unlink(root / "proc/meminfo")
    os.mkfifo(root / "proc/meminfo")
    done = cli("check", "--root", str(root), "--only", "memory", "--json", timeout=30)
    assert as_json(done)["facts"]["memory"]["total_bytes"] is None


def test_a_3_gib_sparse_meminfo_costs_64_kib(tmp_path):
    snapshot = copy_fixture(MEMORY_HOST, tmp_path)
    meminfo = snapshot / "fs/proc/meminfo"
    with open(meminfo, "r+b") as handle:
        handle.truncate(3 * 1024**3)
    host = SnapshotHost(str(snapshot))
    with pytest.raises(OSError) as raised:
        host.read_bytes("/proc/meminfo")
    assert "larger than 64 KiB" in str(raised.value)
    assert read_limit("/proc/meminfo") == 64 * 1024
    facts = snapshot_facts(snapshot)
    assert facts.memory.total_bytes is None
    assert facts.memory.swap  # /proc/swaps still read


def test_an_oversized_command_output_reads_as_absent(tmp_path):
    snapshot = copy_fixture("mem-ddr5-6400kit-at-4800-dmidecode-only", tmp_path)
    output = snapshot / "cmd/dmidecode_-t_memory.out"
    with open(output, "r+b") as handle:
        handle.truncate(2 * 1024**3)
    host = SnapshotHost(str(snapshot))
    assert host.run(["dmidecode", "-t", "memory"]).state == "absent"



# -- snapshot archives: caps on size, members and depth (items 8, 11) ----------------------------
def _tar_header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info.tobuf(tarfile.GNU_FORMAT)


def _sparse_header(name: str, stored: int, real: int) -> bytes:
    """A GNU sparse member: ``stored`` bytes in the archive stand for ``real`` bytes."""
    header = bytearray(_tar_header(name, stored, tarfile.GNUTYPE_SPARSE))
    header[386:398] = tarfile.itn(0, 12, tarfile.GNU_FORMAT)  # one chunk at offset 0
    header[398:410] = tarfile.itn(stored, 12, tarfile.GNU_FORMAT)
    header[483:495] = tarfile.itn(real, 12, tarfile.GNU_FORMAT)  # the file's real size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def _zeros_gz(path: Path, head: bytes, zeros: int, tail: bytes = b"\0" * 1024) -> str:
    """A .tar.gz of ``head`` then ``zeros`` zero bytes: concatenated gzip members, each a
    MiB of zeros in about a KiB, so a GiB of data is an archive of about a MiB."""
    mib = gzip.compress(b"\0" * 2**20, 9)
    with open(path, "wb") as out:
        out.write(gzip.compress(head))
        for _ in range(zeros // 2**20):
            out.write(mib)
        out.write(gzip.compress(b"\0" * (zeros % 2**20) + tail))
    return str(path)


def _written(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("kind", ["one GiB of real data", "a sparse GiB", "a declared 10 GiB"])
def test_an_archive_bomb_writes_and_holds_little(tmp_path, kind):
    if kind == "one GiB of real data":
        archive = _zeros_gz(tmp_path / "bomb.tar.gz", _tar_header("fs/proc/meminfo", 2**30),
                            2**30)
    elif kind == "a sparse GiB":
        archive = _zeros_gz(tmp_path / "bomb.tar.gz",
                            _sparse_header("fs/proc/meminfo", 512, 2**30) + b"M" * 512, 0)
    else:
        archive = _zeros_gz(tmp_path / "bomb.tar.gz", _tar_header("fs/proc/meminfo", 10 * 2**30),
                            2**20)
    assert os.path.getsize(archive) < 2 * 2**20
    destination = tmp_path / "out"
    destination.mkdir()
    before, started = _peak_rss_mib(), time.monotonic()
    with contextlib.suppress(tarfile.TarError):
        _safe_extract(archive, str(destination))
    assert time.monotonic() - started < 15
    assert _written(destination) <= ARCHIVE_BYTES
    assert _peak_rss_mib() - before < 200
    done = replay(Path(archive), timeout=60)
    assert done.returncode in (0, 1, 2)


@pytest.mark.slow  # a large file: 32,778 members, each unpacked before the refusal
def test_an_archive_of_too_many_members_is_refused_quickly(tmp_path):
    archive = tmp_path / "many.tar.gz"
    with tarfile.open(archive, "w:gz") as packed:
        for number in range(ARCHIVE_MEMBERS + 10):
            packed.addfile(tarfile.TarInfo(f"fs/m/{number}"), io.BytesIO(b""))
    started = time.monotonic()
    done = replay(archive, timeout=120)
    assert time.monotonic() - started < 60
    assert done.returncode == 2
    assert f"more than {ARCHIVE_MEMBERS} members" in done.stderr


def test_a_member_3000_folders_deep_is_refused(tmp_path):
    archive = tmp_path / "deep.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as packed:
        packed.addfile(tarfile.TarInfo("fs/" + "a/" * 3000 + "meminfo"), io.BytesIO(b""))
    done = replay(archive)
    assert done.returncode == 2
    assert "deeper than" in done.stderr


def test_an_xz_archive_is_refused_with_a_reason(tmp_path):
    archive = tmp_path / "snap.tar.xz"
    with tarfile.open(archive, "w:xz") as packed:
        packed.addfile(tarfile.TarInfo("snapshot.json"), io.BytesIO(b""))
    done = replay(archive)
    assert done.returncode == 2
    assert ".tar.gz" in done.stderr


def test_a_bzip2_or_plain_archive_still_replays(tmp_path):
    source = copy_fixture(GPU_HOST, tmp_path)
    for mode, name in (("w:bz2", "snap.tar.bz2"), ("w", "snap.tar")):
        with tarfile.open(tmp_path / name, mode) as packed:
            for part in sorted(os.listdir(source)):
                packed.add(source / part, arcname=part)
        assert replay(tmp_path / name).returncode in (0, 1)


def test_a_fifo_in_sysctl_d_does_not_stall_fix_under_root(tmp_path):
    root = make_root(tmp_path / "root", swappiness=60, disk_swap=True, no_mmap=True)
    (root / "etc/sysctl.d").mkdir(parents=True)
    os.mkfifo(root / "etc/sysctl.d/50-planted.conf")
    started = time.monotonic()
    done = cli("fix", "--root", str(root), "--no-plugins", timeout=60)
    assert time.monotonic() - started < 30
    assert done.returncode == 0
    assert "vm.swappiness" in done.stdout


def test_a_refused_archive_names_its_members_escaped(tmp_path):
    from hostile import unsafe_in

    archive = tmp_path / "names.tar.gz"
    with tarfile.open(archive, "w:gz") as packed:
        member = tarfile.TarInfo("snap\x1b]0;owned\x07/snapshot.json")  # one folder: its
        member.size = 3  # name is part of every path the replay reports
        packed.addfile(member, io.BytesIO(b"[1]"))
    done = replay(archive)
    assert done.returncode == 2
    assert "\\x1b]0;owned" in done.stderr
    assert unsafe_in(done.stdout + done.stderr) == []

"""model.storage: the model's filesystem from real mountinfo files (prometheus/procfs's NFS
machine, WSL2's drvfs, tests/fixtures/storage/SOURCE.txt) on the guide's machine; the read
probe on a real temporary file."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import FIXTURES, snapshot_facts, snapshot_findings, write_fs
from launch_fixtures import guide_machine, model_record
from q3cn_doctor.facts.storage import mount_of, parse_mountinfo
from q3cn_doctor.host.storage import measure_read

STORAGE = FIXTURES / "storage"


def machine(tmp_path: Path, mountinfo: str, model: str, kernel: str | None = None) -> Path:
    root = guide_machine(tmp_path / "g")
    write_fs(root, "/proc/self/mountinfo", (STORAGE / mountinfo).read_text())
    write_fs(root, "/sys/block/sda/queue/rotational", (
        FIXTURES / "hosts/procfs-prometheus-mixed/fs/sys/block/sda/queue/rotational").read_text())
    write_fs(root, "/sys/block/sdc/queue/rotational", "0\n")
    if kernel:
        write_fs(root, "/proc/sys/kernel/osrelease", kernel + "\n")
    records = json.loads((root / "model.json").read_text())
    records[model] = model_record("qwen", model)
    (root / "model.json").write_text(json.dumps(records))
    return root


def test_mountinfo_longest_prefix():
    mounts = parse_mountinfo((STORAGE / "mountinfo-procfs-nfs").read_text())
    assert mount_of(mounts, "/mnt/nfs/test/m.gguf").fstype == "nfs"  # the last mounted wins
    assert mount_of(mounts, "/mnt/nfs/testing/m.gguf").fstype == "ext4"
    assert mount_of(mounts, "/models/m.gguf").source == "/dev/sda1"


def test_nfs_model_warns(tmp_path):
    model = "/mnt/nfs/test/Qwen3-Coder-Next-MXFP4_MOE.gguf"
    root = machine(tmp_path, "mountinfo-procfs-nfs", model)
    finding = snapshot_findings(root, "model.storage", model=model)["model.storage"]
    assert finding.status == "warn" and finding.title == "The model is on a network filesystem"
    assert "nfs from 192.168.1.1:/srv/test" in finding.observed
    assert "--measure" in finding.recommended


def test_spinning_disk_is_info_when_ram_holds_the_model(tmp_path):
    model = "/models/Qwen3-Coder-Next-MXFP4_MOE.gguf"
    root = machine(tmp_path, "mountinfo-procfs-nfs", model)
    storage = snapshot_facts(root, model=model).storage
    assert (storage.kind, storage.mount.device, storage.mount.rotational) == (
        "rotational", "sda", True)
    finding = snapshot_findings(root, "model.storage", model=model)["model.storage"]
    assert (finding.status, finding.title) == ("info", "The model is on a spinning disk")
    assert finding.cost_tok_s is None  # RAM holds it: tokens do not wait for the disk


def test_wsl2_windows_drive(tmp_path):
    model = "/mnt/c/Users/me/models/Qwen3-Coder-Next-MXFP4_MOE.gguf"
    root = machine(tmp_path, "mountinfo-wsl2", model,
                   kernel="5.15.167.4-microsoft-standard-WSL2")
    finding = snapshot_findings(root, "model.storage", model=model)["model.storage"]
    assert finding.status == "warn" and "WSL2's 9p" in finding.title
    assert "9p from drvfs" in finding.observed and "ext4" in finding.recommended
    # the distribution's own disk is fine
    model = "/home/me/Qwen3-Coder-Next-MXFP4_MOE.gguf"
    root = machine(tmp_path / "home", "mountinfo-wsl2", model,
                   kernel="5.15.167.4-microsoft-standard-WSL2")
    finding = snapshot_findings(root, "model.storage", model=model)["model.storage"]
    assert (finding.status, finding.title) == ("pass", "The model is on solid state storage")


def test_no_model_file_skips(tmp_path):
    root = guide_machine(tmp_path / "g")
    assert snapshot_findings(root, "model.storage")["model.storage"].status == "skip"


def test_read_probe_reads_a_real_file(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\x01" * (8 * 2**20))
    result = measure_read(str(path), limit_bytes=4 * 2**20)
    assert result.bytes_read == 4 * 2**20 and result.bytes_per_s > 0
    assert "first 4 MiB" in result.method

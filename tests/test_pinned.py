"""gpu.pinned on the guide's machine (CUDA build, RTX 4070, 64 GB): its experts go into
pinned CUDA_Host buffers; GGML_CUDA_NO_PINNED, WSL2 and a Vulkan build change that."""

from __future__ import annotations

import json

from conftest import snapshot_findings, write_fs
from launch_fixtures import QWEN_PATH, guide_machine, vulkan_machine


def test_guide_machine_pins_its_experts(tmp_path):
    finding = snapshot_findings(guide_machine(tmp_path / "g"), "gpu.pinned",
                                model=QWEN_PATH)["gpu.pinned"]
    assert finding.status == "pass" and "pinned CUDA host buffers" in finding.title


def test_no_pinned_variable_and_wsl2_warn(tmp_path):
    root = guide_machine(tmp_path / "g")
    meta = json.loads((root / "snapshot.json").read_text())
    meta["environ"]["GGML_CUDA_NO_PINNED"] = "1"
    (root / "snapshot.json").write_text(json.dumps(meta))
    finding = snapshot_findings(root, "gpu.pinned", model=QWEN_PATH)["gpu.pinned"]
    assert finding.status == "warn" and "GGML_CUDA_NO_PINNED" in finding.title
    root = guide_machine(tmp_path / "w")
    write_fs(root, "/proc/sys/kernel/osrelease", "5.15.167.4-microsoft-standard-WSL2\n")
    finding = snapshot_findings(root, "gpu.pinned", model=QWEN_PATH)["gpu.pinned"]
    assert finding.status == "warn" and "WSL2" in finding.title


def test_a_vulkan_build_has_no_cuda_host_buffers(tmp_path):
    finding = snapshot_findings(vulkan_machine(tmp_path / "v"), "gpu.pinned",
                                model=QWEN_PATH)["gpu.pinned"]
    assert finding.status == "skip"

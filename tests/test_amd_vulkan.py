"""AMD GPUs and Vulkan builds: the sysfs facts of a real Radeon RX Vega (prometheus/procfs),
its VRAM in the placement, gpu.present, and a launch plan the real Vulkan build's --help
accepts (tests/launch_fixtures.py: vulkan_machine)."""

from __future__ import annotations

import shlex

from conftest import FIXTURES, snapshot_facts, snapshot_findings
from launch_fixtures import QWEN_PATH, VULKAN_SERVER, vulkan_machine
from q3cn_doctor.facts.gpu import parse_dpm
from q3cn_doctor.parsers.server_help import Build
from q3cn_doctor.plan.placement import placement, usable_gpus
from test_launch_plan import printed

GIB = 1024**3


def test_dpm_levels_of_the_real_card():
    text = "0: 852Mhz *\n1: 991Mhz \n2: 1084Mhz \n7: 1630Mhz \n"
    assert parse_dpm(text) == (852, 1630)
    assert parse_dpm("garbage") == (None, None)


def test_the_vulkan_build_and_the_amd_card_are_seen(tmp_path):
    facts = snapshot_facts(vulkan_machine(tmp_path / "v"), model=QWEN_PATH)
    assert facts.cuda_build.backends == ["vulkan"]
    (gpu,) = facts.get("sysfs_gpus")
    assert (gpu["vendor"], gpu["driver"], gpu["name"], gpu["backend"]) == (
        "AMD", "amdgpu", "Radeon RX Vega 56/64", "vulkan")
    assert (gpu["memory_total_bytes"], gpu["memory_used_bytes"]) == (8573157376, 1490378752)
    assert (gpu["sclk_max_mhz"], gpu["mclk_max_mhz"]) == (1630, 945)
    assert gpu["pcie"]["width_current"] == 16 and gpu["pci_bus_id"] == "0000:09:00.0"
    assert usable_gpus(facts) == [gpu]
    plan = placement(facts)
    assert plan.gpus == 1 and plan.vram_free_bytes == 8573157376 - 1490378752


def test_gpu_present_passes_for_the_amd_card_with_a_vulkan_build(tmp_path):
    found = snapshot_findings(vulkan_machine(tmp_path / "v"), "gpu.present", "gpu.vram",
                              model=QWEN_PATH)
    present = found["gpu.present:0"]
    assert present.status == "pass"
    assert "Radeon RX Vega 56/64" in present.title and "vulkan" in present.observed
    assert found["gpu.vram:fit"].status in ("pass", "warn")


def test_launch_plan_for_the_vulkan_build(tmp_path):
    command = printed(vulkan_machine(tmp_path / "v"))
    args = shlex.split(command)
    assert args[0] == VULKAN_SERVER
    assert Build.from_help((FIXTURES / "llama-server/help-vulkan-2026-08-commit-7e4c0a9.txt")
                           .read_text()).unknown(args[1:]) == []
    assert "--fit on --fit-target 1024" in command and "-fa on" in command
    assert "--load-mode mlock" in command
    assert "GGML_CUDA_GRAPH_OPT" not in command


def test_every_check_runs_on_the_vulkan_machine(tmp_path):
    found = snapshot_findings(vulkan_machine(tmp_path / "v"), model=QWEN_PATH)
    assert "error" not in {f.status for f in found.values()}, [
        (f.id, f.observed) for f in found.values() if f.status == "error"]
    assert found["server.build"].status == "pass" and "vulkan" in found["server.build"].title


def _with_vulkaninfo(tmp_path, name: str):
    from launch_fixtures import record_command

    root = vulkan_machine(tmp_path / "v")
    record_command(root, ["vulkaninfo", "--summary"],
                   (FIXTURES / "vulkaninfo" / name).read_text())
    return snapshot_findings(root, "gpu.present", model=QWEN_PATH)["gpu.present:0"]


def test_vulkaninfo_parser_on_real_pastes():
    from q3cn_doctor.parsers.vulkaninfo import parse_summary, software

    two = parse_summary((FIXTURES / "vulkaninfo/summary-devices-rx6700xt-radv-and-amdvlk.txt")
                        .read_text())
    assert [(d["index"], d["driverName"]) for d in two] == [
        ("0", "radv"), ("1", "AMD proprietary driver")]
    assert two[0]["deviceID"] == "0x73df" and two[1]["driverInfo"] == ""
    grep = parse_summary((FIXTURES / "vulkaninfo/summary-grep-radv-llvmpipe-nvidia.txt")
                         .read_text())
    assert [software(d) for d in grep] == [False, True, False]


def test_a_card_listed_by_one_driver_passes(tmp_path):
    # the RX 6600 XT paste lists one AMD device on AMD's driver: the Vega's vendor is listed once
    finding = _with_vulkaninfo(tmp_path, "summary-devices-rx6600xt-amdvlk.txt")
    assert finding.status == "pass"


def test_two_drivers_for_one_card_warn(tmp_path):
    finding = _with_vulkaninfo(tmp_path, "summary-devices-rx6700xt-radv-and-amdvlk.txt")
    assert finding.status == "warn" and "GGML_VK_VISIBLE_DEVICES=0" in finding.recommended


def test_only_llvmpipe_and_another_vendor_fails_and_is_priced(tmp_path):
    """The grep paste without its RADV line: llvmpipe and an NVIDIA card, no AMD driver."""
    from launch_fixtures import record_command

    root = vulkan_machine(tmp_path / "v")
    lines = (FIXTURES / "vulkaninfo/summary-grep-radv-llvmpipe-nvidia.txt").read_text()
    record_command(root, ["vulkaninfo", "--summary"], "\n".join(lines.splitlines()[3:]) + "\n")
    finding = snapshot_findings(root, "gpu.present", model=QWEN_PATH)["gpu.present:0"]
    assert finding.status == "fail" and "no driver for the AMD" in finding.title
    assert "RADV" in finding.recommended and "llvmpipe" in finding.observed
    assert finding.cost_tok_s and finding.cost_tok_s > 0  # the speed model, CPU-only vs GPU

"""One placement model: every check and the launch quote the same figures for a machine.

memory.fit once said 39.2 GiB where model.speed said 39.7 for the same model, and
gpu.vram:fit's suggested --ctx-size still left attention on the CPU by the launch's plan:
three pieces of arithmetic. Now they all read plan.placement; this holds them to it on
every GPU fixture and on the guide's machine, launch included.
"""

from __future__ import annotations

import pytest
from conftest import host_fixture, snapshot_facts, snapshot_findings
from launch_fixtures import QWEN_PATH, guide_machine
from q3cn_doctor.facts import Facts
from q3cn_doctor.host.snapshot import SnapshotHost
from q3cn_doctor.launch.launcher import build_plan
from q3cn_doctor.options import Options
from q3cn_doctor.plan.placement import placement
from q3cn_doctor.plan.speed import gpu_bandwidth
from q3cn_doctor.units import gib
from test_gpu_checks import GPU_FIXTURES

IDS = ("memory.fit", "gpu.vram", "model.speed")


def quoted(findings: dict, plan) -> None:
    """memory.fit, gpu.vram:fit and model.speed quote the placement's own GiB figures."""
    fit = findings["memory.fit"]
    if fit.status != "skip":
        assert f"the model needs {gib(plan.ram_bytes)} in RAM" in fit.observed
        assert f"= {gib(plan.ram_needed_bytes)}" in fit.observed
    speed = findings["model.speed"]
    assert f"{gib(plan.ram_bytes)}" in speed.observed
    if plan.gpus:
        assert f"{gib(plan.kv_cache_bytes)} of KV cache" in speed.observed
        assert f"--n-cpu-moe {plan.n_cpu_moe}" in speed.observed
        vram = findings["gpu.vram:fit"]
        assert f"{gib(plan.vram_usable_bytes)} usable" in vram.observed
        assert f"+ {gib(plan.kv_cache_bytes)} KV cache" in vram.observed
        assert f"= {gib(plan.dense_need_bytes)}" in vram.observed
        assert (vram.status == "pass") == plan.dense_fits_gpu
        if plan.dense_fits_gpu:
            layers = plan.expert_layers_on_gpu
            assert (f"room for {layers} expert layer" in vram.title) == bool(layers)
    else:
        assert "gpu.vram:fit" not in findings


@pytest.mark.parametrize("name", GPU_FIXTURES)
@pytest.mark.parametrize("ctx_size", [32768, 131072, 262144])
def test_checks_quote_one_placement(name, ctx_size):
    directory = host_fixture(name)
    plan = placement(snapshot_facts(directory, ctx_size=ctx_size))
    quoted(snapshot_findings(directory, *IDS, ctx_size=ctx_size), plan)


@pytest.mark.parametrize("ctx_size", [65536, 262144])
def test_the_launch_places_the_model_as_the_checks_do(tmp_path, ctx_size):
    root = guide_machine(tmp_path / "g")
    options = Options(snapshot=str(root), model=QWEN_PATH, ctx_size=ctx_size)
    plan = placement(Facts(SnapshotHost(str(root)), options))
    launch = build_plan(Facts(SnapshotHost(str(root)), options), options)
    assert launch.model["memory_plan"] == plan.to_json()
    quoted(snapshot_findings(root, *IDS, model=QWEN_PATH, ctx_size=ctx_size), plan)


def test_following_the_vram_advice_keeps_attention_on_the_gpu(tmp_path):
    """The guide's RTX 4070 at ctx 262144: gpu.vram:fit offers a context; at that context
    the launch (a build without --fit, so the plan's own -ngl) keeps every layer's
    attention on the GPU, where at 262144 it leaves some on the CPU."""
    root = guide_machine(tmp_path / "g", "2025-08")
    found = snapshot_findings(root, "gpu.vram", model=QWEN_PATH, ctx_size=262144)
    vram = found["gpu.vram:fit"]
    assert vram.status == "warn"
    offered = int(vram.recommended.split("--ctx-size ")[1].split()[0])
    options = Options(snapshot=str(root), model=QWEN_PATH, ctx_size=offered)
    launch = build_plan(Facts(SnapshotHost(str(root)), options), options)
    assert launch.model["memory_plan"]["dense_fits_gpu"]
    assert _layers(launch.argv) == "999"  # every layer on the GPU
    asked = Options(snapshot=str(root), model=QWEN_PATH, ctx_size=262144)
    assert int(_layers(build_plan(Facts(SnapshotHost(str(root)), asked), asked).argv)) < 48


def _layers(argv: list[str]) -> str:
    return argv[argv.index("--n-gpu-layers") + 1]


@pytest.mark.parametrize(("device", "gb_s"), [
    # NVML's bus width and maximum memory clock: MHz x 2 transfers x bits / 8.
    ({"name": "NVIDIA GeForce RTX 4090", "memory_bus_width_bits": 384,
      "memory_clock_max_mhz": 10501}, 1008),
    ({"name": "NVIDIA A100-SXM4-40GB", "memory_bus_width_bits": 5120,
      "memory_clock_max_mhz": 1215}, 1555),
    # Without them, the table: a laptop part never reads as its desktop namesake.
    ({"name": "NVIDIA GeForce RTX 4090 Laptop GPU"}, 576),
    ({"name": "NVIDIA GeForce RTX 4090"}, 1008),
    ({"name": "NVIDIA GeForce RTX 3060 Laptop GPU"}, 336),
    ({"name": "NVIDIA RTX PRO 6000 Blackwell Workstation Edition"}, 1792),
    ({"name": "NVIDIA GeForce RTX 2080 Ti"}, 616),
    ({"name": "NVIDIA GeForce RTX 4070 Ti SUPER"}, 672),
    # Turing laptops: the plain name is the desktop's memory, Max-Q parts run it slower
    ({"name": "NVIDIA GeForce RTX 2070 with Max-Q Design"}, 384),
    ({"name": "NVIDIA GeForce RTX 2070"}, 448),
    ({"name": "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition"}, 1792),
    ({"name": "NVIDIA GeForce RTX 5070 Laptop GPU"}, 384),
    ({"name": "Tesla P40"}, 347),
    ({"name": "AMD Radeon RX 7900 XTX"}, 960),
    ({"name": "NVIDIA L40S"}, 864),
    # names from public nvidia-smi dumps (telegraf and netdata test data, a GRID guest),
    # where a vGPU or an old driver gives no bus width or memory clock
    ({"name": "GRID V100D-32Q"}, 900),
    ({"name": "Tesla V100S-PCIE-32GB"}, 1134),
    ({"name": "Tesla P100-PCIE-12GB"}, 549),
    ({"name": "GRID P4-1Q"}, 192),
    ({"name": "Quadro P400"}, 32),
    ({"name": "NVIDIA GeForce GT 1030"}, 48),
    ({"name": "NVIDIA RTX PRO 4000 Blackwell SFF Edition"}, 432),
    ({"name": "NVIDIA GH200 144G HBM3e"}, 4900),
    ({"name": "NVIDIA RTX A2000 12GB"}, 288),  # never the A2 inside it
    ({"name": "Some Future GPU"}, 400),  # assumed, and the basis says so
])
def test_gpu_bandwidth_from_nvml_then_the_table(device, gb_s):
    rate, basis = gpu_bandwidth(device)
    assert round(rate / 1e9) == gb_s
    assert ("assumed" in basis) == (device["name"] == "Some Future GPU")

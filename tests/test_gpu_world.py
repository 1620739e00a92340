"""The GPU checks on real GPUs nobody wrote the rules from: public nvidia-smi dumps
(telegraf's and netdata's test data, captured runs), converted into the NVML layout in
tests/fixtures/nvml-world/ (README.md there says how; SOURCES.tsv where each is from).

Every dump runs on the same host (the RTX 4070 desktop fixture, its PCI sysfs removed),
so only the GPU varies. Each expected verdict is the public fact that decides it; a rule
change that breaks one is fitting the fixtures, not the world.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import REPO, copy_fixture, snapshot_findings, write_fs
from q3cn_doctor.checking.findings import FAIL, INFO, PASS, SKIP, WARN

WORLD = REPO / "tests" / "fixtures" / "nvml-world"

# The findings that are not a pass, per dump; every other gpu finding passes.
EXPECTED = {
    # Max memory clock N/A in a vGPU guest: no PCIe link either; 900 GB/s by the V100D name
    "corpus-001-grid-v100d-vgpu": {"gpu.pcie:0": SKIP},
    # Driver 515 supports CUDA 11.7, the host's llama-server links libcudart.so.12; a
    # laptop's x8 is wired; a 6 GB card cannot hold attention and shared weights (6.3 GiB)
    "netdata-rtx-3060": {"gpu.cuda": FAIL, "gpu.pcie:0": INFO, "gpu.power:0": INFO,
                         "gpu.vram:fit": WARN},
    "netdata-rtx-4090-driver-535": {"gpu.pcie:0": WARN},  # a Gen4 card capped at Gen3
    "netdata-tesla-p100": {"gpu.cuda": FAIL, "gpu.power:0": INFO},  # driver 510: CUDA 11.6
    # Idle at P8 with the SW power cap bit and 35 W of 350: nothing to report
    "telegraf-3090-v13": {},
    # An AWS guest: the host sets the link (x8) and the VM has no slot to move
    "telegraf-a10g": {"gpu.cuda": FAIL, "gpu.pcie:0": INFO, "gpu.power:0": INFO},
    # Two cards on a desktop CPU's 16 lanes: x8/x8 is the split, not a fault
    "telegraf-dual_2070-v13": {"gpu.pcie:0": INFO, "gpu.pcie:1": INFO},
    # Xorg holds 547 MiB of a 2 GiB card, and the rest cannot hold the model's dense part
    "telegraf-gt-1030": {"gpu.cuda": FAIL, "gpu.power:0": INFO, "gpu.vram:0": WARN,
                         "gpu.vram:fit": WARN},
    "telegraf-rtx-3090-v12": {"gpu.power:0": WARN},  # 200 W of its default 350 W
    # Windows' driver: 13 processes listed with no per-process figure hold 807 MiB; power
    # and PCIe readings N/A in the guest
    "telegraf-tesla_p4": {"gpu.cuda": FAIL, "gpu.pcie:0": SKIP, "gpu.power:0": SKIP,
                          "gpu.vram:0": WARN, "gpu.vram:fit": WARN},
    # One 4060 Ti at x4 of its x8 beside one at x8: possibly a chipset slot, worth a look
    "thamada-RTX4060Ti_smi": {"gpu.pcie:0": WARN, "gpu.power:0": INFO, "gpu.power:1": INFO},
    # Idle at 24 W of 575 W with the SW power cap bit: no limit; a single card at x8
    "thamada-RTX5090_smi": {"gpu.pcie:0": WARN},
}
IN_A_VM = {"telegraf-a10g": {"/sys/class/dmi/id/sys_vendor": "Amazon EC2\n",
                             "/sys/class/dmi/id/product_name": "g5.xlarge\n"}}


def world_host(name: str, tmp_path: Path) -> Path:
    root = copy_fixture("gpu-rtx4070-desktop", tmp_path)
    shutil.rmtree(root / "fs" / "sys" / "bus" / "pci", ignore_errors=True)
    shutil.copy(WORLD / f"{name}.json", root / "nvml.json")
    for path, text in IN_A_VM.get(name, {}).items():
        write_fs(root, path, text)
    return root


def test_every_dump_has_its_verdicts_and_its_source():
    dumps = {path.stem for path in WORLD.glob("*.json")}
    assert dumps == set(EXPECTED)
    listed = {line.split("\t")[0] for line in (WORLD / "SOURCES.tsv").read_text().splitlines()[1:]}
    assert listed == {f"{name}.json" for name in dumps}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_gpu_verdicts_on_real_dumps(name, tmp_path):
    found = snapshot_findings(world_host(name, tmp_path), "gpu")
    statuses = {fid: finding.status for fid, finding in found.items()}
    assert statuses == {fid: EXPECTED[name].get(fid, PASS) for fid in statuses}, name
    assert not any(f.status == "error" for f in found.values())

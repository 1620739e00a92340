"""The nvml and gpus sections, from one NVML reading (live, or a snapshot's nvml.json),
and the CUDA side of the llama-server build (which runtime it links, nvcc).

The checks in checks/gpu.py judge these; here they are only read and shaped.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from msgspec import Struct, field
from q3cn_doctor.host.base import Host
from q3cn_doctor.options import Options
from q3cn_doctor.parsers.patterns import LazyPattern
from q3cn_doctor.records import plain

if TYPE_CHECKING:
    from q3cn_doctor.parsers.elf import ElfInfo

    from . import Facts

NVIDIA, AMD, INTEL = "0x10de", "0x1002", "0x8086"
VENDORS = {NVIDIA: "NVIDIA", AMD: "AMD", INTEL: "Intel"}
WSL_MARKERS = ("/dev/dxg", "/usr/lib/wsl/lib/libnvidia-ml.so.1")
"""WSL2 reaches the Windows GPU driver through /dev/dxg and ships NVML in /usr/lib/wsl/lib."""

GPU_IS_LOST = "NVML_ERROR_GPU_IS_LOST"
ABSENT = "absent"  # init where the host has no NVML reading (--root, a snapshot without one)

# Clock-event reasons (nvmlClocksEventReason*, NVML API reference "NvmlClocksEventReasons").
CLOCK_EVENTS = {
    0x1: "GPU idle",
    0x2: "applications clocks setting",
    0x4: "SW power cap",
    0x8: "HW slowdown",
    0x10: "sync boost",
    0x20: "SW thermal slowdown",
    0x40: "HW thermal slowdown",
    0x80: "HW power brake slowdown",
    0x100: "display clock setting",
}
IDLE = 0x1
SW_POWER_CAP = 0x4
SLOWDOWNS = 0x8 | 0x20 | 0x40 | 0x80  # thermal, HW slowdown and power brake: always a finding


class DrmGpu(Struct):
    """A display adapter the kernel has a DRM driver for (/sys/class/drm/cardN)."""

    card: str
    vendor: str  # PCI vendor id as sysfs writes it: 0x10de, 0x1002, 0x8086
    vendor_name: str
    device: str | None
    driver: str | None


class NvmlFacts(Struct):
    """What NVML says of the NVIDIA GPUs and driver, or why it could not say."""
    init: str  # "ok", the NVML error name (NVML_ERROR_DRIVER_NOT_LOADED...), "timed-out",
    # or "absent" where this host has no NVML reading (--root, a snapshot without nvml.json)
    reason: str | None
    driver_version: str | None
    cuda_driver_version: int | None  # as NVML gives it: 12080 is CUDA 12.8
    device_count: int | None  # devices NVML listed (lost ones too); None where unknown
    devices_error: str | None  # the NVML error where the device count itself failed
    wsl: bool  # WSL2's GPU paravirtualisation is present
    wsl_markers: list[str]
    drm_gpus: list[DrmGpu]
    basis: dict[str, str] = field(default_factory=dict)
    # NVML's device readings, which the gpus section is made of; left out of this
    # section's JSON, where they would be said twice
    devices: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        document = plain(self)
        del document["devices"]
        return document


def error_of(reading: Any) -> str | None:
    """The NVML error name stored in a value's place, else None."""
    if isinstance(reading, dict) and "error" in reading:
        return str(reading["error"])
    return None


def value(reading: Any) -> Any:
    """A stored ``{"error": name}`` reads as unknown."""
    return None if error_of(reading) is not None else reading


def cuda_version_text(version: int | None) -> str:
    """NVML's integer CUDA version for people: 12080 -> ``12.8``."""
    if not isinstance(version, int) or version <= 0:
        return "unknown"
    return f"{version // 1000}.{version % 1000 // 10}"


def clock_events(mask: int) -> list[str]:
    """The named reasons set in a clocks-event bit mask, lowest bit first."""
    names = [name for bit, name in CLOCK_EVENTS.items() if mask & bit]
    unknown = mask & ~sum(CLOCK_EVENTS)
    if unknown:
        names.append(f"other ({unknown:#x})")
    return names


def _drm_gpus(host: Host) -> list[DrmGpu]:
    found = []
    try:
        cards = [n for n in host.listdir("/sys/class/drm") if re.fullmatch(r"card\d+", n)]
    except OSError:
        return []
    for card in cards:
        base = f"/sys/class/drm/{card}/device"
        vendor = (host.cat(base + "/vendor") or "").lower()
        if not vendor:
            continue
        uevent = host.cat(base + "/uevent") or ""
        driver = next((line.split("=", 1)[1] for line in uevent.splitlines()
                       if line.startswith("DRIVER=")), None)
        found.append(DrmGpu(card, vendor, VENDORS.get(vendor, f"vendor {vendor}"),
                            host.cat(base + "/device"), driver))
    return found


def _not_read(host: Host, readings: dict) -> bool:
    """A host that has no NVML reading at all (a --root tree, a snapshot without
    nvml.json) says nothing about the GPU: that is unknown, not "no driver"."""
    if readings.get("init") == ABSENT or host.kind == "root":
        return True
    return host.kind == "snapshot" and readings.get("reason") == "not in this snapshot"


def gather_nvml(host: Host, options: Options, facts: Facts) -> NvmlFacts:
    host.note("NVML")
    readings = host.nvml()
    devices = readings.get("devices")
    markers = [path for path in WSL_MARKERS if host.exists(path)]
    init = str(readings.get("init", "unknown"))
    if _not_read(host, readings):
        init = ABSENT
    result = NvmlFacts(
        init=init,
        reason=readings.get("reason"),
        driver_version=value(readings.get("driver_version")),
        cuda_driver_version=value(readings.get("cuda_driver_version")),
        device_count=len(devices) if isinstance(devices, list) else None,
        devices_error=error_of(devices),
        wsl=bool(markers),
        wsl_markers=markers,
        drm_gpus=_drm_gpus(host),
        devices=devices if isinstance(devices, list) else [],
        basis={
            "init": "nvmlInit",
            "driver_version": "nvmlSystemGetDriverVersion",
            "cuda_driver_version": "nvmlSystemGetCudaDriverVersion_v2",
            "device_count": "nvmlDeviceGetCount",
            "wsl": "presence of " + " or ".join(WSL_MARKERS),
            "drm_gpus": "/sys/class/drm/card*/device/{vendor,device,uevent}",
        },
    )
    return result


def gather_gpus(host: Host, options: Options, facts: Facts) -> list[dict]:
    """One dict per GPU in the nvml.json device layout; empty where NVML is unusable."""
    nvml = facts.nvml
    if nvml.init != "ok":
        return []
    return [device for device in nvml.devices if isinstance(device, dict)]


def device_lost(device: dict) -> bool:
    """NVML said "GPU is lost" for this device, for its handle or any reading."""
    readings = list(device.values())
    if isinstance(device.get("pcie"), dict):
        readings += list(device["pcie"].values())
    return device.get("error") == GPU_IS_LOST or any(
        error_of(reading) == GPU_IS_LOST for reading in readings)


# -- the llama-server build's CUDA side ---------------------------------------------------

SERVER_NAME = "llama-server"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_OWN_LIBRARIES = ("libggml", "libllama", "libmtmd")  # followed; system libraries are not
_BACKEND_MODULES = {  # ggml backends a GGML_BACKEND_DL build loads at run time
    "libggml-cuda.so": "cuda", "libggml-vulkan.so": "vulkan",
    "libggml-hip.so": "hip", "libggml-sycl.so": "sycl",
}
_BACKEND_LINKS = (  # what a library links, and the backend that says
    (LazyPattern(r"^lib(?:cudart|cublas|cublasLt)\.so\.\d+$|^libcuda\.so\.1$"), "cuda"),
    (LazyPattern(r"^libvulkan\.so\.\d+$"), "vulkan"),
    (LazyPattern(r"^lib(?:amdhip64|hipblas|rocblas)\.so\.\d+$"), "hip"),
    (LazyPattern(r"^libsycl\.so\.\d+$"), "sycl"),
)
_RUNTIME = LazyPattern(r"^libcudart\.so\.(\d{1,4})$")
_CUBLAS = LazyPattern(r"^libcublas\.so\.(\d{1,4})$")
_NVCC_RELEASE = LazyPattern(r"release (\d{1,4})\.(\d{1,4})\b")
_SYSTEM_LIB_DIRS = ("/usr/local/lib", "/usr/local/lib64", "/usr/lib", "/usr/lib64",
                    "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu")
_MAX_FILES = 16


class CudaBuild(Struct):
    """Which CUDA runtime the llama-server build links."""

    server: str | None  # path of llama-server, None where not found
    found_by: str  # "--server", "PATH" or where it was looked for
    libraries: dict[str, list[str]]  # path -> its DT_NEEDED names
    unread: dict[str, str]  # path -> why its dependencies could not be read
    recorded: list[str]  # paths whose dependency list came from a snapshot's record
    backends: list[str]  # "cuda", "vulkan", "hip", "sycl"; empty: a CPU-only build
    runtime_library: str | None  # libcudart.so.12, or libcublas.so.12 where cudart is static
    runtime_major: int | None
    basis: dict[str, str] = field(default_factory=dict)


# The oldest GPU each CUDA major still builds kernels and libraries (cuBLAS) for, as
# (major, minor) compute capability: 11.0 dropped sm_30, 12.0 the rest of Kepler, 13.0
# Maxwell, Pascal and Volta (below 7.5; NVIDIA, "Navigating GPU Architecture Support",
# developer.nvidia.com/blog, 2025). A build of that CUDA cannot run on an older GPU under
# any driver: "no kernel image is available for execution on the device".
CUDA_OLDEST_GPU = {11: (3, 5), 12: (5, 0), 13: (7, 5)}
ARCHITECTURES = {3: "Kepler", 5: "Maxwell", 6: "Pascal", 7: "Volta"}


def too_old_for(build: CudaBuild, gpus: list[dict]) -> list[dict]:
    """The NVIDIA GPUs that ``build``'s CUDA runtime has no kernels for; empty where it
    runs on all of them or either side is unknown."""
    oldest = CUDA_OLDEST_GPU.get(build.runtime_major) if "cuda" in build.backends else None
    if oldest is None:
        return []
    return [gpu for gpu in gpus if _capability(gpu) is not None and _capability(gpu) < oldest]


def _capability(gpu: dict) -> tuple[int, int] | None:
    reading = value(gpu.get("compute_capability"))
    if (isinstance(reading, list) and len(reading) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) for n in reading)):
        return reading[0], reading[1]
    return None


def capability_text(gpu: dict) -> str:
    """"compute 6.1, Pascal" for a GPU with a known compute capability."""
    major, minor = _capability(gpu) or (0, 0)
    family = ARCHITECTURES.get(major) if (major, minor) < (7, 5) else None
    return f"compute {major}.{minor}" + (f", {family}" if family else "")


class Nvcc(Struct):
    """The local CUDA compiler, a section of its own: only a known driver version makes
    its release worth a command (~5 ms) in the preflight."""

    path: str | None  # where nvcc is, None where absent
    release: str | None  # "12.8", from nvcc --version
    reason: str | None  # why nvcc gave no release


def find_server(host: Host, options: Options) -> tuple[str | None, str]:
    """llama-server from --server (or the config file), else the first on PATH."""
    if options.server:
        path = options.server if host.kind == "snapshot" else os.path.abspath(options.server)
        return (path if host.exists(path) else None), "--server"
    for directory in _search_path(host):
        candidate = directory.rstrip("/") + "/" + SERVER_NAME
        if host.exists(candidate) and not host.is_dir(candidate):
            return candidate, f"PATH ({directory})"
    return None, "PATH"


def _search_path(host: Host) -> list[str]:
    path = host.environ().get("PATH") or DEFAULT_PATH
    return [d for d in path.split(":") if d.startswith("/")]


def _library_dirs(host: Host, server: str, owner: str,
                  runpaths: list[str]) -> tuple[list[str], list[str]]:
    """Where the loader would look for a library of ``owner`` (llama-server or one of its
    own libraries): its RPATH/RUNPATH ($ORIGIN expanded), beside llama-server and in its
    ../lib (the near ones, returned first on their own), then LD_LIBRARY_PATH and the
    system directories."""
    origin = os.path.dirname(owner)
    here = os.path.dirname(server)
    near = _absolute([p.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)
                      for p in runpaths] + [here, here + "/../lib", here + "/../lib64"])
    extra = (host.environ().get("LD_LIBRARY_PATH") or "").split(":")
    return near, _absolute(near + extra + list(_SYSTEM_LIB_DIRS))


def _absolute(directories: list[str]) -> list[str]:
    unique: list[str] = []
    for directory in directories:
        if directory.startswith("/"):
            directory = os.path.normpath(directory)
            if directory not in unique:
                unique.append(directory)
    return unique


def _locate(host: Host, name: str, directories: list[str]) -> str | None:
    for directory in directories:
        candidate = f"{directory}/{name}"
        if host.exists(candidate):
            return candidate
    return None


def gather_cuda_section(host: Host, options: Options, facts: Facts) -> CudaBuild:
    """The ``cuda_build`` facts section: read once a run, shared by gpu.cuda,
    server.build and the server facts (it walks every library's ELF headers)."""
    return gather_cuda_build(host, options)


def gather_cuda_build(host: Host, options: Options) -> CudaBuild:
    """Read llama-server's and its own libraries' dynamic sections (doctor/elf.py), and
    any ggml backend module beside it, to tell which GPU runtime the build uses."""
    server, found_by = find_server(host, options)
    build = CudaBuild(server, found_by, {}, {}, [], [], None, None,
                      basis={"server": "--server, else the first llama-server on PATH",
                             "libraries": "DT_NEEDED of llama-server and its libggml*/"
                                          "libllama* libraries (ELF dynamic section)",
                             "runtime_major": "the N of libcudart.so.N (else libcublas.so.N)"})
    if server is not None:
        _walk(host, server, build)
    _derive(build)
    return build


def _walk(host: Host, server: str, build: CudaBuild) -> None:
    from q3cn_doctor.parsers.elf import ElfError  # only where a llama-server was found

    pending = [server]
    seen: set[str] = set()
    while pending and len(seen) < _MAX_FILES:
        path = pending.pop(0)
        if path in seen:
            continue
        seen.add(path)
        try:
            info = read_elf(host, path)
        except (ElfError, OSError) as exc:
            build.unread[path] = exc.strerror if isinstance(exc, OSError) and exc.strerror \
                else str(exc)
            continue
        build.libraries[path] = list(info.needed)
        if info.source == "recorded":
            build.recorded.append(path)
        near, directories = _library_dirs(host, server, path, info.runpath + info.rpath)
        for name in info.needed:
            if name.startswith(_OWN_LIBRARIES):
                located = _locate(host, name, directories)
                if located is not None:
                    pending.append(located)
        if path == server:  # backend modules loaded at run time sit beside the binary
            for module in _BACKEND_MODULES:
                located = _locate(host, module, near)
                if located is not None:
                    pending.append(located)


def _derive(build: CudaBuild) -> None:
    names = [name for needed in build.libraries.values() for name in needed]
    backends = {kind for path in build.libraries for module, kind in _BACKEND_MODULES.items()
                if os.path.basename(path) == module}
    for name in names:
        for pattern, kind in _BACKEND_LINKS:
            if pattern.match(name):
                backends.add(kind)
    build.backends = sorted(backends)
    for pattern in (_RUNTIME, _CUBLAS):
        for name in names:
            match = pattern.match(name)
            if match:
                build.runtime_library, build.runtime_major = name, int(match.group(1))
                return


def gather_nvcc(host: Host, options: Options, facts: Facts) -> Nvcc:
    """The ``nvcc`` facts section: the first nvcc on PATH (else CUDA's default place) and
    the release its --version names."""
    candidates = [d.rstrip("/") + "/nvcc" for d in _search_path(host)] + [
        "/usr/local/cuda/bin/nvcc"]
    path = next((c for c in candidates if host.exists(c)), None)
    if path is None:
        return Nvcc(None, None, None)
    result = host.run([path, "--version"])
    match = _NVCC_RELEASE.search(result.stdout) if result.ok else None
    if match:
        return Nvcc(path, f"{match.group(1)}.{match.group(2)}", None)
    return Nvcc(path, None, result.reason() if not result.ok else "no release line in its output")


def read_elf(host: Host, path: str) -> ElfInfo:
    """The dynamic section of ``path`` through the host: a recording's reading where it
    kept one (it keeps no 500 MB CUDA library), else the file's own headers. ElfError or
    OSError say why not."""
    from q3cn_doctor.parsers.elf import RECORD as ELF_RECORD
    from q3cn_doctor.parsers.elf import ElfError, ElfInfo, parse

    record = host.recorded(ELF_RECORD, path)
    if record is not None:
        host.note(f"{ELF_RECORD}.json:{path}")
        try:
            return ElfInfo.from_json(record)
        except (ValueError, TypeError) as exc:
            raise ElfError(f"{path}: the recorded dependency list: {exc}") from exc
    with host.mapped(path) as data:  # only the headers' pages are read
        info = parse(data)
    host.record(ELF_RECORD, path, info.to_json())
    return info


# -- AMD and Intel GPUs, from the kernel's sysfs ---------------------------------------------

# Names by PCI device id where the driver gives none (amdgpu's product_name is often empty):
# one id covers the sibling cards of one chip.
DEVICE_NAMES = {
    (AMD, "0x687f"): "Radeon RX Vega 56/64", (AMD, "0x73bf"): "Radeon RX 6800/6900 XT",
    (AMD, "0x73df"): "Radeon RX 6700/6750 XT", (AMD, "0x744c"): "Radeon RX 7900 XT/XTX/GRE",
    (AMD, "0x7480"): "Radeon RX 7600/7600 XT", (INTEL, "0x56a0"): "Arc A770",
    (INTEL, "0x56a1"): "Arc A750", (INTEL, "0xe20b"): "Arc B580",
}
# A backend of the build -> the vendors whose GPUs it drives.
BACKEND_VENDORS = {"vulkan": (AMD, INTEL, NVIDIA), "hip": (AMD,), "sycl": (INTEL,)}
_DPM_LEVEL = LazyPattern(r"^\s*(\d+):\s*(\d+)\s*Mhz\s*(\*)?", re.MULTILINE | re.IGNORECASE)


def parse_dpm(text: str | None) -> tuple[int | None, int | None]:
    """amdgpu's ``pp_dpm_sclk``/``pp_dpm_mclk`` (``0: 852Mhz *`` per level): (the level in
    use, marked ``*``, and the highest level) in MHz."""
    levels = [(int(m.group(2)), bool(m.group(3))) for m in _DPM_LEVEL.finditer(text or "")]
    if not levels:
        return None, None
    current = next((mhz for mhz, chosen in levels if chosen), None)
    return current, max(mhz for mhz, _ in levels)


def _number(host: Host, path: str) -> int | None:
    text = host.cat(path)
    return int(text) if text and text.isdecimal() else None


def _sysfs_device(host: Host, card: DrmGpu, index: int) -> dict:
    """One AMD or Intel GPU in the nvml.json device layout, from sysfs (``source: sysfs``)."""
    base = f"/sys/class/drm/{card.card}/device"
    name = (host.cat(base + "/product_name") or "").strip()
    name = name or DEVICE_NAMES.get((card.vendor, card.device or ""),
                                    f"{card.vendor_name} GPU {card.device or '?'}")
    total = _number(host, base + "/mem_info_vram_total")  # amdgpu
    used = _number(host, base + "/mem_info_vram_used")
    if total is None:  # Intel xe: the first tile's VRAM
        total = _number(host, base + "/tile0/vram0/total_bytes") or _number(
            host, base + "/lmem_total_bytes")
    device: dict[str, Any] = {
        "index": index, "source": "sysfs", "card": card.card, "vendor": card.vendor_name,
        "vendor_id": card.vendor, "device_id": card.device,
        "driver": card.driver, "name": name, "memory_total_bytes": total,
        "memory_used_bytes": used,
        "memory_free_bytes": total - used if total is not None and used is not None else None,
        "pcie": {"speed_current": host.cat(base + "/current_link_speed"),
                 "speed_max": host.cat(base + "/max_link_speed"),
                 "width_current": _number(host, base + "/current_link_width"),
                 "width_max": _number(host, base + "/max_link_width")},
        "performance_level": host.cat(base + "/power_dpm_force_performance_level"),
    }
    for clock in ("sclk", "mclk"):
        now, top = parse_dpm(host.cat(f"{base}/pp_dpm_{clock}"))
        device[f"{clock}_mhz"], device[f"{clock}_max_mhz"] = now, top
    uevent = host.cat(base + "/uevent") or ""
    slot = next((line.split("=", 1)[1] for line in uevent.splitlines()
                 if line.startswith("PCI_SLOT_NAME=")), None)
    device["pci_bus_id"] = slot
    return device


def gather_sysfs_gpus(host: Host, options: Options, facts: Facts) -> list[dict]:
    """The AMD and Intel GPUs (and NVIDIA ones without NVML) a Vulkan, HIP or SYCL build of
    llama-server can use, with their VRAM from sysfs; empty where NVML's GPUs answer (CUDA
    drives them) or the build has no such backend."""
    if facts.get("gpus"):
        return []
    build = facts.get("cuda_build")
    backends = set(getattr(build, "backends", []) or []) & set(BACKEND_VENDORS)
    nvml = facts.get("nvml")
    cards = getattr(nvml, "drm_gpus", None)
    if cards is None:
        cards = _drm_gpus(host)
    devices = []
    for card in cards:
        usable = [b for b in sorted(backends) if card.vendor in BACKEND_VENDORS[b]]
        if not usable or card.vendor == NVIDIA and "vulkan" not in usable:
            continue
        device = _sysfs_device(host, card, len(devices))
        device["backend"] = usable[0] if len(usable) == 1 else (
            "hip" if "hip" in usable else "sycl" if "sycl" in usable else usable[0])
        devices.append(device)
    return devices


class VulkanDevices(Struct):
    """What the Vulkan loader lists (``vulkaninfo --summary``), for a Vulkan build only."""

    state: str  # "ran", "not-run" (no Vulkan build), or why vulkaninfo gave nothing
    devices: list[dict] = field(default_factory=list)
    reason: str | None = None


def gather_vulkan(host: Host, options: Options, facts: Facts) -> VulkanDevices:
    build = facts.get("cuda_build")
    if "vulkan" not in (getattr(build, "backends", None) or []):
        return VulkanDevices("not-run", reason="the llama-server build has no Vulkan backend")
    result = host.run(["vulkaninfo", "--summary"])
    if not result.ok:
        return VulkanDevices(result.state, reason=result.reason())
    from q3cn_doctor.parsers.vulkaninfo import parse_summary

    return VulkanDevices("ran", parse_summary(result.stdout))

"""The NVIDIA GPU: driver, CUDA compatibility, VRAM budget, PCIe link and power.

The GPU holds attention, the shared expert and as many expert layers as fit;
the rest stream from RAM. Each check reports one item per GPU
(``gpu.vram:0``); ``gpu.vram:fit`` judges all GPUs together against the model.
"""

from __future__ import annotations

from typing import Any

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import FAIL, INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.facts import FactsError
from q3cn_doctor.facts.gpu import (
    ABSENT,
    AMD,
    CUDA_OLDEST_GPU,
    IDLE,
    INTEL,
    NVIDIA,
    SLOWDOWNS,
    SW_POWER_CAP,
    CudaBuild,
    Nvcc,
    capability_text,
    clock_events,
    cuda_version_text,
    device_lost,
    error_of,
    too_old_for,
    value,
)
from q3cn_doctor.parsers.procfs import bounded_int
from q3cn_doctor.plan.placement import (
    CTX_STEP,
    MIB,
    UBATCH_TOKENS,
    Placement,
    largest_ctx_on_gpu,
    placement,
    usable_gpus,
)
from q3cn_doctor.plan.speed import compare, difference, speed, what_if
from q3cn_doctor.units import gib

# The oldest driver branch each CUDA major version runs on (NVIDIA's minor version
# compatibility table, docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html).
MIN_DRIVER_BRANCH = {11: 450, 12: 525, 13: 580}

BUSY_PROCESS_BYTES = 300 * MIB
"""A process holding more VRAM than this is worth naming: --fit leaves its share in RAM."""
MOSTLY_USED = 0.5
"""VRAM used beyond this share with no process listed for most of it: held out of sight."""

# Usable bytes per second per lane after line coding, by PCIe generation.
PCIE_LANE_BYTES_S = {1: 0.25e9, 2: 0.5e9, 3: 0.985e9, 4: 1.969e9, 5: 3.938e9, 6: 7.563e9}


_CPU_ONLY_ARGS = {("-ngl", "0"), ("--n-gpu-layers", "0"), ("--gpu-layers", "0"),
                  ("-dev", "none"), ("--device", "none")}


def _plan_offloads(ctx: Context) -> bool:
    """Whether the plan puts part of the model on a GPU: the guide's setup always does,
    unless the user's llama-server arguments (config `args`, launch's extras) ask for
    CPU only with ``-ngl 0`` or ``--device none``."""
    args = ctx.options.server_args
    pairs = set(zip(args, args[1:]))
    pairs |= {tuple(arg.split("=", 1)) for arg in args if "=" in arg}
    return not pairs & _CPU_ONLY_ARGS


# -- small helpers ------------------------------------------------------------------------------

def _label(device: dict) -> str:
    name = value(device.get("name"))
    return f"GPU {device.get('index')}" + (f" ({name})" if name else "")


def _mib(size: int | None) -> str:
    return "unknown" if size is None else f"{size / MIB:,.0f} MiB"


def _devices(ctx: Context) -> list[dict]:
    return ctx.facts.gpus


def _no_gpu(ctx: Context):
    nvml = ctx.facts.nvml
    why = nvml.init if nvml.init != "ok" else "NVML lists no GPU"
    return ctx.finding(SKIP, "No NVIDIA GPU to check", observed=f"NVML: {why} (see gpu.present)")


def _unreadable(ctx: Context, device: dict, what: str, readings: dict):
    """SKIP for a lost GPU or one whose readings NVML refused; None when all is there."""
    index = device.get("index")
    if device_lost(device) or "error" in device:
        why = error_of(device) or "NVML_ERROR_GPU_IS_LOST"
        return ctx.finding(SKIP, f"{_label(device)}: {what} unknown",
                           observed=f"NVML: {why} (see gpu.present:{index})", item=str(index))
    failed = {name: error_of(reading) for name, reading in readings.items()
              if error_of(reading) is not None or reading is None}
    if len(failed) == len(readings):
        detail = ", ".join(f"{name}: {err or 'not recorded'}" for name, err in failed.items())
        return ctx.finding(SKIP, f"{_label(device)}: {what} unknown", observed=f"NVML: {detail}",
                           item=str(index))
    return None


# -- gpu.present --------------------------------------------------------------------------------

_INIT_TITLE = {
    "NVML_ERROR_LIBRARY_NOT_FOUND": "No NVIDIA driver is installed",
    "NVML_ERROR_DRIVER_NOT_LOADED": "The NVIDIA driver is installed but not loaded",
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": "The NVIDIA driver's library and kernel module differ",
    "NVML_ERROR_NO_PERMISSION": "This user may not open the NVIDIA GPU",
    "NVML_ERROR_GPU_IS_LOST": "The NVIDIA GPU is lost",
    "timed-out": "The NVIDIA driver did not answer in time",
}
_INIT_MEANING = {
    "NVML_ERROR_LIBRARY_NOT_FOUND": "libnvidia-ml.so.1 cannot be loaded",
    "NVML_ERROR_DRIVER_NOT_LOADED": (
        "its kernel module is not running: a kernel update without a rebuilt module, "
        "Secure Boot refusing an unsigned module, or nouveau holding the GPU"),
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": "the driver was updated without a reboot",
    "NVML_ERROR_NO_PERMISSION": "/dev/nvidia* is not open to this user",
    "NVML_ERROR_GPU_IS_LOST": "a GPU has fallen off the bus",
    "timed-out": "a hung GPU or driver",
}
_INIT_FIX = {
    "NVML_ERROR_LIBRARY_NOT_FOUND": "Install the NVIDIA proprietary driver (570 or newer for "
                                    "CUDA 12.8 builds), then reboot.",
    "NVML_ERROR_DRIVER_NOT_LOADED": "Load the module (`sudo modprobe nvidia`); if that fails, "
                                    "rebuild it for this kernel (DKMS) or enroll its Secure Boot "
                                    "key, then reboot.",
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": "Reboot, so the new kernel module matches the library.",
    "NVML_ERROR_NO_PERMISSION": "Add the user to the group owning /dev/nvidia* (often video).",
    "NVML_ERROR_GPU_IS_LOST": "Reboot; if it recurs, check the card's seating, power cables "
                              "and `dmesg` for Xid 79.",
    "timed-out": "Run `nvidia-smi`; if it hangs too, check `dmesg` for Xid errors and reboot.",
}


def _cpu_only_cost(ctx: Context) -> str:
    """What this run does without the GPU: the speed model's CPU-only estimate."""
    try:
        estimate, name = speed(ctx.facts), ctx.facts.model.name
    except FactsError:
        return "CPU-only, generation reads every active weight from RAM at a fraction of GPU speed."
    expects = (f"the speed model expects {estimate.text()} for {name}" if estimate.tok_s
               else f"the speed model cannot put a figure on {name}")
    return (f"CPU-only, {expects} ({estimate.basis.split(';')[0]}), and prompt processing "
            "runs on the CPU at a small fraction of GPU speed; what this GPU would add is "
            "unknown until its driver answers.")


def _with_gpu(ctx: Context) -> tuple[str, float | None]:
    """The speed model with the GPU this build or driver cannot use, and without it."""
    try:
        now, then = speed(ctx.facts), what_if(ctx.facts, cpu_only=False)
    except FactsError:
        return "", None
    return " " + compare(now, then, "with the GPU"), difference(now, then)


@check("gpu.present", "An NVIDIA GPU whose driver answers, or what was found instead")
def present(ctx: Context):
    nvml = ctx.facts.nvml
    devices = _devices(ctx)
    driver = (f"driver {nvml.driver_version or 'unknown'}, supports CUDA "
              f"{cuda_version_text(nvml.cuda_driver_version)}")
    wsl = " through WSL2 (/usr/lib/wsl/lib)" if nvml.wsl else ""
    if devices:
        findings = []
        for device in devices:
            index = str(device.get("index"))
            if device_lost(device):
                findings.append(ctx.finding(
                    FAIL, f"GPU {index} is lost: it stopped answering the driver",
                    observed=f"NVML: NVML_ERROR_GPU_IS_LOST for {_label(device)}; {driver}",
                    recommended=_INIT_FIX["NVML_ERROR_GPU_IS_LOST"],
                    impact="A lost GPU holds no layers, so the model's share planned for it runs "
                           "from RAM, or llama-server fails to start.",
                    manual=[_INIT_FIX["NVML_ERROR_GPU_IS_LOST"]], action=f"reseat GPU {index}",
                    item=index))
            elif "error" in device:
                findings.append(ctx.finding(
                    WARN, f"GPU {index} could not be opened",
                    observed=f"NVML: {device['error']}; {driver}",
                    recommended="Run `nvidia-smi -i " + index + "` to see what the driver says.",
                    impact="A GPU the driver cannot open holds no layers.", item=index))
            else:
                total = value(device.get("memory_total_bytes"))
                capability = value(device.get("compute_capability"))
                cc = ".".join(str(part) for part in capability) if capability else "unknown"
                findings.append(ctx.finding(
                    PASS, f"{_label(device)} answers{wsl}",
                    observed=f"{value(device.get('name')) or 'unknown name'}, {gib(total)} VRAM, "
                             f"compute capability {cc}; {driver}",
                    item=index))
        return findings
    others = _sysfs_present(ctx)
    if others:
        return others
    if nvml.init == ABSENT:
        return ctx.finding(
            SKIP, "GPU unknown: this host has no NVML reading",
            observed=f"NVML: {nvml.reason or 'not read'}",
            recommended="Run on the machine itself, or replay a snapshot that has nvml.json.")
    # No usable NVIDIA GPU: say what is there instead.
    others = [g for g in nvml.drm_gpus if g.vendor != NVIDIA]
    nvidia_cards = [g for g in nvml.drm_gpus if g.vendor == NVIDIA]
    seen = "; ".join(f"{g.vendor_name} GPU {g.card} ({g.vendor}:{g.device or '?'}, driver "
                     f"{g.driver or 'none'})" for g in nvml.drm_gpus) or "no GPU in /sys/class/drm"
    if nvml.init == "ok":
        status_line = (f"NVML works ({driver}) but lists no GPU"
                       + (f": {nvml.devices_error}" if nvml.devices_error else ""))
        title = "The NVIDIA driver sees no GPU"
        meaning = "in a container, the GPU must be passed in"
        fix = ("Check `nvidia-smi -L`; in a container pass the GPU in (--gpus all, or the "
               "NVIDIA container toolkit).")
    else:
        status_line = f"NVML: {nvml.init}" + (f" ({nvml.reason})" if nvml.reason else "")
        title = _INIT_TITLE.get(nvml.init, f"The NVIDIA driver does not answer ({nvml.init})")
        meaning = _INIT_MEANING.get(nvml.init, "")
        fix = _INIT_FIX.get(nvml.init, "Install or repair the NVIDIA driver, then reboot.")
    observed = f"{status_line}" + (f", likely {meaning}" if meaning else "") + f"; {seen}" + (
        f"; WSL2 GPU support present ({', '.join(nvml.wsl_markers)})" if nvml.wsl else "")
    if (nvml.init in ("NVML_ERROR_LIBRARY_NOT_FOUND", "ok") and others and not nvidia_cards
            and not nvml.wsl):
        names = ", ".join(f"{g.vendor_name} ({g.card}, {g.driver or 'no driver'})"
                          for g in others)
        vendors = {g.vendor for g in others}
        tools = " and ".join(
            label for vendor, label in ((AMD, "ROCm/HIP or Vulkan"), (INTEL, "SYCL or Vulkan"))
            if vendor in vendors) or "Vulkan"
        return ctx.finding(
            INFO, f"No NVIDIA GPU; found {names}", observed=observed,
            recommended=f"This tool checks NVIDIA/CUDA setups only: a {tools} build of "
                        "llama-server can use this GPU, but its speed is not judged here.",
            impact="What the GPU adds depends on a backend this tool does not check yet.")
    if nvml.wsl and nvml.init != "ok":
        title = "WSL2 exposes a GPU, but NVIDIA's library does not answer"
        fix = ("Install or update the NVIDIA driver on Windows (never a Linux NVIDIA driver "
               "inside WSL), run `wsl --update`, and make sure /usr/lib/wsl/lib is on the "
               "loader path (`ldconfig -p | grep libnvidia-ml`).")
    elif nvidia_cards and nvml.init != "ok":
        if "nouveau" in {g.driver for g in nvidia_cards}:
            fix = ("The open-source nouveau driver holds the GPU and has no CUDA: install "
                   "NVIDIA's driver, which blacklists nouveau, then reboot.")
    elif nvml.init == "NVML_ERROR_LIBRARY_NOT_FOUND":
        title = "No NVIDIA GPU or driver found"
    if not _plan_offloads(ctx):
        return ctx.finding(INFO, title + "; the plan runs CPU-only anyway", observed=observed,
                           impact=_cpu_only_cost(ctx))
    # No software fix: `fix` lists the driver install as a manual step.
    return ctx.finding(FAIL, title + ": the model would run CPU-only", observed=observed,
                       recommended=fix, impact=_cpu_only_cost(ctx), manual=[fix],
                       action="a working NVIDIA driver")


def _sysfs_present(ctx: Context) -> list:
    """AMD or Intel GPUs (from sysfs) that this Vulkan, HIP or SYCL build can use."""
    findings = []
    for device in ctx.facts.get("sysfs_gpus", []):
        index = str(device["index"])
        total, used = device.get("memory_total_bytes"), device.get("memory_used_bytes")
        link = device.get("pcie") or {}
        observed = (f"{device['vendor']} {device['name']} ({device['card']}, driver "
                    f"{device.get('driver') or 'none'}, PCI {device.get('pci_bus_id') or '?'}): "
                    f"{gib(total)} VRAM, {gib(used)} used; PCIe {link.get('speed_current')} "
                    f"x{link.get('width_current')} of {link.get('speed_max')} "
                    f"x{link.get('width_max')}; llama-server's {device['backend']} backend "
                    "drives it")
        if total is None:
            findings.append(ctx.finding(
                INFO, f"{device['vendor']} {device['name']}: VRAM unknown", observed=observed,
                recommended="The plan keeps the model in RAM: this driver does not report "
                            "VRAM in sysfs.", item=index))
            continue
        loader = _vulkan_loader(ctx, device) if device["backend"] == "vulkan" else None
        if loader is not None:
            findings.append(ctx.finding(loader[0], loader[1], observed=f"{observed}; {loader[2]}",
                                        recommended=loader[3], impact=loader[4],
                                        item=index, cost_tok_s=loader[5]))
            continue
        findings.append(ctx.finding(
            PASS, f"{device['vendor']} {device['name']} with {gib(total)} VRAM for the "
                  f"{device['backend']} build", observed=observed, item=index))
    return findings


VULKAN_DRIVERS = {"AMD": "Mesa's RADV (mesa-vulkan-drivers on Debian, Ubuntu and Fedora, "
                         "vulkan-radeon on Arch)",
                  "Intel": "Mesa's ANV (mesa-vulkan-drivers on Debian, Ubuntu and Fedora, "
                           "vulkan-intel on Arch)",
                  "NVIDIA": "the NVIDIA driver's Vulkan ICD (it ships with the driver)"}
_VENDOR_WORDS = {"AMD": ("amd", "radeon", "radv"), "Intel": ("intel", "arc"),
                 "NVIDIA": ("nvidia", "geforce", "rtx", "quadro")}


def _vulkan_loader(ctx: Context, device: dict) -> tuple | None:
    """What `vulkaninfo --summary` says of this card: no driver of its own (the build runs
    on the CPU), or two drivers (llama.cpp sees the card twice); None where all is well."""
    from q3cn_doctor.parsers.vulkaninfo import software

    vulkan = ctx.facts.get("vulkan")
    if vulkan is None or vulkan.state != "ran":
        return None
    words = _VENDOR_WORDS.get(device["vendor"], ())
    listed = [d for d in vulkan.devices if not software(d) and (
        d.get("vendorID", "").lower() == str(device.get("vendor_id")) if "vendorID" in d
        else any(w in d.get("deviceName", "").lower() for w in words))]
    names = "; ".join(f"GPU{d['index']}: {d.get('deviceName', '?')} "
                      f"({d.get('driverName') or d.get('driverInfo') or 'driver ?'})"
                      for d in vulkan.devices) or "no device"
    seen = f"vulkaninfo --summary lists {names}"
    if not listed:
        now, cpu = speed(ctx.facts), what_if(ctx.facts, cpu_only=True)
        gain = difference(cpu, now)
        return (FAIL, f"The Vulkan loader finds no driver for the {device['vendor']} "
                      f"{device['name']}", seen,
                f"Install {VULKAN_DRIVERS.get(device['vendor'], 'its Vulkan driver')}, then "
                "check `vulkaninfo --summary` lists the card.",
                "llama-server's Vulkan backend finds no GPU and runs on the CPU. "
                + compare(cpu, now, "with the driver"), gain)
    if len(listed) > 1:
        return (WARN, f"Two Vulkan drivers list the {device['name']}", seen,
                f"Keep one driver (remove the other ICD), or start llama-server with "
                f"GGML_VK_VISIBLE_DEVICES={listed[0]['index']}.",
                "llama.cpp sees the one card as two devices and splits the model between "
                "them, or fails (llama.cpp issue #9516).", None)
    return None


# -- gpu.cuda -----------------------------------------------------------------------------------

_GPU_LIBRARIES = ("libcu", "libvulkan", "libamdhip", "libhip", "librocblas", "libggml-cuda",
                  "libggml-vulkan", "libggml-hip", "libggml-sycl")


def _build_observed(build: CudaBuild, nvcc: Nvcc | None) -> str:
    parts = []
    if build.server:
        parts.append(f"llama-server at {build.server} (by {build.found_by})")
    for path, needed in build.libraries.items():
        relevant = [n for n in needed if n.startswith(_GPU_LIBRARIES)]
        if relevant or path == build.server:
            how = " (recorded)" if path in build.recorded else ""
            parts.append(f"{path}{how} links {', '.join(relevant) or 'no GPU library'}")
    for path, why in build.unread.items():
        parts.append(f"{path}: {why}")
    if nvcc is not None and nvcc.path:
        parts.append(f"nvcc {nvcc.release or '?'} at {nvcc.path}"
                     + (f" ({nvcc.reason})" if nvcc.reason else ""))
    return "; ".join(parts)


def _nvcc_finding(ctx: Context, nvcc: Nvcc | None, driver_version: int | None):
    if nvcc is None or not nvcc.release or not isinstance(driver_version, int):
        return None
    major, minor = (int(part) for part in nvcc.release.split("."))
    driver_major = driver_version // 1000
    observed = (f"nvcc {nvcc.release} at {nvcc.path}; the driver supports CUDA "
                f"{cuda_version_text(driver_version)}")
    if major > driver_major:
        return ctx.finding(
            WARN,
            f"nvcc {nvcc.release} is newer than the driver's CUDA "
            f"{cuda_version_text(driver_version)}",
            observed=observed,
            recommended=f"Update the driver to one supporting CUDA {major}.x before building "
                        f"llama.cpp here, or build with a CUDA {driver_major}.x toolkit.",
            impact="A llama.cpp built with this nvcc stops at start-up with \"CUDA driver version "
                   "is insufficient for CUDA runtime version\" and generates nothing.",
            manual=[_driver_step(major, driver_major)], action=_driver_action(major),
            item="nvcc")
    if (major, minor) > (driver_major, driver_version % 1000 // 10):
        return ctx.finding(
            INFO,
            f"nvcc {nvcc.release} is a newer minor release than the driver's CUDA "
            f"{cuda_version_text(driver_version)}",
            observed=observed,
            recommended="Builds run through CUDA minor-version compatibility; build for this "
                        "GPU's own architecture (the default, native) so no PTX needs the driver "
                        "to compile it.",
            impact="PTX from a newer nvcc fails to load on an older driver; native code runs at "
                   "full speed.",
            item="nvcc")
    return None


_CUDA_BUILD_STEP = ("Install a CUDA build of llama-server: build llama.cpp with "
                    "`cmake -B build -DGGML_CUDA=ON`, or take a CUDA release or container.")


def _driver_action(cuda_major: int) -> str:
    branch = MIN_DRIVER_BRANCH.get(cuda_major)
    return f"NVIDIA driver {branch}+" if branch else f"a driver for CUDA {cuda_major}"


def _driver_step(cuda_major: int, driver_major: int) -> str:
    """The by-hand step for a CUDA runtime newer than the driver: a newer driver, or a
    build for the CUDA the driver has."""
    branch = MIN_DRIVER_BRANCH.get(cuda_major)
    newer = (f"the NVIDIA driver {branch} or newer" if branch
             else f"an NVIDIA driver that supports CUDA {cuda_major}.x")
    return (f"Install {newer}, then reboot; or use a llama-server built with CUDA "
            f"{driver_major}.x.")


def _too_old(ctx: Context, build: CudaBuild, old: list[dict], every: bool, observed: str):
    """A CUDA runtime with no kernels for these GPUs: a build of an older CUDA runs on
    them, a newer driver never does (it is the toolkit that dropped them)."""
    names = ", ".join(f"{g.get('name') or 'GPU ' + str(g.get('index'))} ({capability_text(g)})"
                      for g in old)
    oldest = min(tuple(value(g.get("compute_capability"))) for g in old)
    runs = [major for major, floor in CUDA_OLDEST_GPU.items() if floor <= oldest]
    if runs:
        step = f"Use a llama-server built with CUDA {max(runs)}.x, which still builds for it"
        action = f"a CUDA {max(runs)} build"
    else:
        step = "Use a Vulkan build of llama.cpp: no CUDA release this tool knows builds for it"
        action = "a Vulkan build"
    if not every:
        step += ("; or hide it from llama-server with CUDA_VISIBLE_DEVICES set to the "
                 "other GPUs, as `q3cn-doctor launch` does")
    priced, cost = _with_gpu(ctx) if every else ("", None)
    return ctx.finding(
        FAIL, f"llama-server's CUDA {build.runtime_major} runtime has no kernels for the {names}",
        observed=f"{observed}; CUDA {build.runtime_major} builds for compute "
                 f"{'.'.join(map(str, CUDA_OLDEST_GPU[build.runtime_major]))} and newer",
        recommended=step + ".",
        impact="It stops with \"no kernel image is available for execution on the device\"; "
               "no driver changes that." + priced,
        manual=[step + "."], action=action,
        what_if={"cpu_only": False} if every else None, cost_tok_s=cost)


def _cpu_only_build(ctx: Context, observed: str, gpus: bool):
    """A CPU-only llama-server: a problem only where a GPU sits idle beside it."""
    priced, cost = _with_gpu(ctx) if gpus else ("", None)
    return ctx.finding(
        WARN if gpus else INFO,
        "llama-server is a CPU-only build" + (" on a machine with an NVIDIA GPU" if gpus else ""),
        observed=observed,
        recommended="Use a CUDA build (cmake -DGGML_CUDA=ON, or a CUDA release/container)."
                    if gpus else "",
        impact=("A CPU-only build leaves the GPU idle: attention and prompt processing run "
                "on the CPU, several times slower." + priced if gpus
                else "Nothing is offloaded either way."),
        manual=[_CUDA_BUILD_STEP] if gpus else [],
        action="a CUDA build of llama-server" if gpus else "",
        what_if={"cpu_only": False} if gpus else None, cost_tok_s=cost)


@check("gpu.cuda", "The llama-server build's CUDA runtime is one the driver supports")
def cuda(ctx: Context):
    nvml = ctx.facts.nvml
    build = ctx.facts.cuda_build
    driver_version = nvml.cuda_driver_version if nvml.init == "ok" else None
    driver = cuda_version_text(driver_version)
    # The local nvcc only matters against a known driver: no command otherwise.
    nvcc = ctx.facts.get("nvcc") if isinstance(driver_version, int) else None
    observed = _build_observed(build, nvcc)
    findings = []
    nvcc_finding = _nvcc_finding(ctx, nvcc, driver_version)
    if nvcc_finding is not None:
        findings.append(nvcc_finding)
    if build.server is None:
        where = build.found_by if build.found_by != "PATH" else "the PATH"
        findings.insert(0, ctx.finding(
            SKIP, "llama-server not found, so its CUDA runtime is unknown",
            observed=f"no llama-server on {where}" + (f"; {observed}" if observed else ""),
            recommended="Give its path with --server (or `server` in the config file)."))
        return findings
    if build.server in build.unread:
        findings.insert(0, ctx.finding(
            SKIP, "Cannot read which libraries llama-server links", observed=observed,
            recommended="Give the real binary with --server (not a wrapper script)."))
        return findings
    gpus = ctx.facts.gpus
    if not build.backends:
        findings.insert(0, _cpu_only_build(ctx, observed, bool(gpus)))
        return findings
    if "cuda" not in build.backends:
        findings.insert(0, ctx.finding(
            INFO, f"llama-server is a {'/'.join(build.backends)} build, not CUDA",
            observed=observed,
            recommended="This tool judges CUDA builds; on an NVIDIA GPU a CUDA build is usually "
                        "faster.",
            impact="Its GPU speed is not judged here."))
        return findings
    if driver_version is None:
        findings.insert(0, ctx.finding(SKIP,
                                       "A CUDA build, but the driver's CUDA version is unknown",
                                       observed=f"{observed}; NVML: {nvml.init}",
                                       recommended="See gpu.present."))
        return findings
    if build.runtime_major is None:
        findings.insert(0, ctx.finding(
            INFO, "A CUDA build whose runtime version is built in", observed=observed,
            recommended="If it fails with \"CUDA driver version is insufficient\", update the "
                        "driver.",
            impact="Nothing to judge: a static CUDA runtime does not show its version."))
        return findings
    old = too_old_for(build, gpus)
    if old:
        findings.insert(0, _too_old(ctx, build, old, len(old) == len(gpus), observed))
        return findings
    needs = f"CUDA {build.runtime_major}.x ({build.runtime_library})"
    if build.runtime_major > driver_version // 1000:
        priced, cost = _with_gpu(ctx)
        findings.insert(0, ctx.finding(
            FAIL, f"llama-server needs {needs}; the driver supports only CUDA {driver}",
            observed=f"{observed}; driver {nvml.driver_version or 'unknown'} supports CUDA "
                     f"{driver}",
            recommended=f"Update the NVIDIA driver to one supporting CUDA {build.runtime_major}.x, "
                        f"or use a llama-server built with CUDA {driver_version // 1000}.x.",
            impact="It stops at start-up with \"CUDA driver version is insufficient for CUDA "
                   "runtime version\", or falls back to the CPU at a fraction of the speed."
                   + priced,
            manual=[_driver_step(build.runtime_major, driver_version // 1000)],
            action=_driver_action(build.runtime_major), what_if={"cpu_only": False},
            cost_tok_s=cost))
        return findings
    findings.insert(0, ctx.finding(
        PASS, f"llama-server's {needs} runs on the driver's CUDA {driver}",
        observed=f"{observed}; driver {nvml.driver_version or 'unknown'} supports CUDA {driver}"))
    return findings


# -- gpu.vram -----------------------------------------------------------------------------------

def _freed_vram(ctx: Context, device: dict, held: int) -> list[int]:
    """Each usable GPU's free VRAM (in the speed model's order) with ``held`` back on
    ``device``: the speed model's input once those programs are closed."""
    return [int(g["memory_free_bytes"]) + (held if g.get("index") == device.get("index") else 0)
            for g in usable_gpus(ctx.facts)]


def _other_processes(device: dict) -> tuple[list[dict], str]:
    processes = device.get("processes")
    if error_of(processes) or not isinstance(processes, list):
        return [], f"processes unknown ({error_of(processes) or 'not recorded'})"
    big = [p for p in processes
           if isinstance(p.get("used_bytes"), int) and p["used_bytes"] > BUSY_PROCESS_BYTES]
    unknown = [p for p in processes if p.get("used_bytes") is None]
    small = len(processes) - len(big) - len(unknown)
    parts = [f"{p.get('name') or 'unknown'} (pid {p.get('pid')}) {_mib(p['used_bytes'])}"
             for p in big]
    if small:
        parts.append(f"{small} more under {_mib(BUSY_PROCESS_BYTES)}")
    if unknown:
        parts.append(f"{len(unknown)} with no per-process figure")
    return big, "processes: " + (", ".join(parts) if parts else "none")


def _unseen_use(device: dict) -> int | None:
    """VRAM in use that no listed process accounts for, where the GPU is mostly used:
    processes of another container or PID namespace, or of another user, that NVML does
    not show here. None where nothing worth a warning is unaccounted for."""
    total, used = value(device.get("memory_total_bytes")), value(device.get("memory_used_bytes"))
    processes = device.get("processes")
    if not (isinstance(total, int) and isinstance(used, int) and isinstance(processes, list)):
        return None
    listed = sum(p["used_bytes"] for p in processes if isinstance(p.get("used_bytes"), int))
    unseen = used - listed
    if used > total * MOSTLY_USED and unseen > used * MOSTLY_USED:
        return unseen
    return None


def _unseen_holders(device: dict, unseen: int) -> tuple[str, str]:
    """Who holds VRAM no process figure accounts for: listed processes whose share the
    driver does not report (Windows' driver, under WSL2 too, gives none), else processes
    this view of the machine does not list."""
    processes = device.get("processes") if isinstance(device.get("processes"), list) else []
    silent = sorted({str(p.get("name") or f"pid {p.get('pid')}") for p in processes
                     if p.get("used_bytes") is None})
    if silent:
        names = ", ".join(silent[:5]) + (f" and {len(silent) - 5} more" if len(silent) > 5
                                         else "")
        return (f"{gib(unseen)} of VRAM is held by {len(silent)} listed processes whose "
                "share the driver does not report",
                f"Close what you do not need of {names} before starting llama-server.")
    return (f"{gib(unseen)} of VRAM is held by processes not listed here",
            "Find what holds it on the host: `nvidia-smi` there (or in the other container, "
            "or as the other user; a container sees only its own processes), and stop it "
            "before starting llama-server.")


@check("gpu.vram", "Free VRAM, other programs holding it, and room for attention + KV cache")
def vram(ctx: Context):
    devices = _devices(ctx)
    if not devices and ctx.facts.get("sysfs_gpus"):
        return _sysfs_vram(ctx)
    if not devices:
        return _no_gpu(ctx)
    plan = placement(ctx.facts)
    layer_bytes = plan.expert_layer_bytes
    findings = []
    counted = []
    for device in devices:
        index = str(device.get("index"))
        skipped = _unreadable(ctx, device, "VRAM", {
            "memory_free_bytes": device.get("memory_free_bytes")})
        if skipped is not None:
            findings.append(skipped)
            continue
        free = value(device.get("memory_free_bytes"))
        total = value(device.get("memory_total_bytes"))
        used = value(device.get("memory_used_bytes"))
        counted.append(index)
        big, listing = _other_processes(device)
        observed = (f"{gib(free)} free of {gib(total)} (used {gib(used)}, "
                    f"{device.get('memory_api', 'v2')} memory API); {listing}")
        unseen = _unseen_use(device)
        if not big and unseen:
            title, step = _unseen_holders(device, unseen)
            findings.append(ctx.finding(
                WARN, f"{_label(device)}: {title}", observed=observed, recommended=step,
                impact=f"--fit places about one expert layer fewer per "
                       f"{gib(int(layer_bytes))} held, and each layer left in RAM adds its "
                       "weights to what every token reads at RAM speed.",
                item=index))
            continue
        if not big:
            findings.append(ctx.finding(PASS, f"{_label(device)}: {gib(free)} VRAM free",
                                        observed=observed, item=index))
            continue
        held = sum(p["used_bytes"] for p in big)
        names = ", ".join(sorted({str(p.get("name") or f"pid {p.get('pid')}") for p in big}))
        running_server = any("llama-server" in str(p.get("name")) for p in big)
        step = (("Stop the running llama-server before launching another; close"
                 if running_server else "Close")
                + f" or move {names} off this GPU before starting llama-server "
                "(browsers: turn off hardware acceleration; a desktop on the integrated "
                "GPU frees the NVIDIA one).")
        priced, cost = _priced_freed(ctx, device, held)
        findings.append(ctx.finding(
            WARN, f"{_label(device)}: other programs hold {_mib(held)} of VRAM ({names})",
            observed=observed, recommended=step, manual=[step], action=f"close {names}",
            what_if={"vram_free_bytes": _freed_vram(ctx, device, held)},
            impact=f"--fit places about one expert layer fewer per {gib(int(layer_bytes))} held, "
                   "and each layer left in RAM adds its weights to what every token reads at RAM "
                   "speed." + priced,
            item=index, cost_tok_s=cost))
    if counted:
        findings.append(_fit(ctx, plan, counted))
    return findings


def _sysfs_vram(ctx: Context) -> list:
    """Free VRAM of AMD or Intel GPUs as sysfs reports it (no per-process figures there),
    then the same fit judgement as for NVIDIA GPUs."""
    plan = placement(ctx.facts)
    findings, counted = [], []
    for device in ctx.facts.get("sysfs_gpus", []):
        index = str(device["index"])
        free = device.get("memory_free_bytes")
        if free is None:
            findings.append(ctx.finding(SKIP, f"GPU {index} ({device['name']}): VRAM unknown",
                                        observed=f"{device['card']}: no VRAM figures in sysfs",
                                        item=index))
            continue
        counted.append(index)
        findings.append(ctx.finding(
            PASS, f"GPU {index} ({device['name']}): {gib(free)} VRAM free",
            observed=f"{gib(free)} free of {gib(device.get('memory_total_bytes'))} "
                     f"({device['card']} mem_info_vram_total/used; sysfs names no processes)",
            item=index))
    if counted:
        findings.append(_fit(ctx, plan, counted))
    return findings


def _priced_freed(ctx: Context, device: dict, held: int) -> tuple[str, float | None]:
    """The speed model with ``held`` bytes more free on this GPU."""
    try:
        free = _freed_vram(ctx, device, held)
        now, then = speed(ctx.facts), what_if(ctx.facts, vram_free_bytes=free)
    except (FactsError, KeyError, TypeError):
        return "", None
    return " " + compare(now, then, "with that VRAM free"), difference(now, then)


def _fit(ctx: Context, plan: Placement, counted: list[str]):
    """Every layer's attention and KV cache on the GPUs, by the run's placement."""
    model = ctx.facts.model
    need = plan.dense_need_bytes
    gpus = f"GPU {counted[0]}" if len(counted) == 1 else f"GPUs {', '.join(counted)} together"
    margins = "/".join(str(m) for m in plan.fit_target_mib)
    observed = (f"{gpus}: {gib(plan.vram_usable_bytes)} usable (free less the {margins} MiB "
                f"--fit-target margin each); {model.name} needs {gib(plan.resident_bytes)} of "
                "attention and shared weights (the file less its routed experts and the embedding "
                f"table, which stays in RAM) + {gib(plan.kv_cache_bytes)} KV cache at ctx "
                f"{model.ctx_size} + {gib(plan.compute_buffer_bytes)} compute buffer = {gib(need)}")
    if plan.dense_fits_gpu:
        layers = plan.expert_layers_on_gpu
        room = (f"with room for {layers} expert layer{'' if layers == 1 else 's'}"
                if layers else "but with no room for expert layers: every expert stays in RAM")
        return ctx.finding(
            PASS, f"Attention + KV cache at ctx {model.ctx_size} fit, {room}",
            observed=observed + f"; expert layers are {gib(plan.expert_layer_bytes)} each",
            item="fit")
    fits = largest_ctx_on_gpu(ctx.facts, model, list(ctx.options.server_args))
    if fits >= CTX_STEP:
        try:
            now, then = speed(ctx.facts), what_if(ctx.facts, ctx_size=fits)
            priced, cost = " " + compare(now, then, f"at ctx {fits}"), difference(now, then)
        except FactsError:
            priced, cost = "", None
        return ctx.finding(
            WARN, f"Attention + KV cache at ctx {model.ctx_size} do not fit; ctx {fits} does",
            observed=observed,
            recommended=f"Run with --ctx-size {fits} (or free VRAM, or a quantized KV cache "
                        "such as -ctk q8_0 -ctv q8_0).",
            impact="What does not fit leaves attention layers in RAM, which every token then "
                   "computes on the CPU at a fraction of GPU speed." + priced,
            manual=[f"Launch with `q3cn-doctor launch --ctx-size {fits}` (or `ctx_size = {fits}` "
                    "in the config file), or free VRAM, or add `-- -ctk q8_0 -ctv q8_0` for a "
                    "quantized KV cache."],
            action=f"--ctx-size {fits}", item="fit", cost_tok_s=cost)
    return ctx.finding(
        WARN,
        f"Attention and shared weights alone ({gib(plan.resident_bytes)}) do not fit in "
        f"{gib(plan.vram_usable_bytes)} of usable VRAM",
        observed=observed,
        recommended="Free VRAM, use a GPU with more memory, or a smaller quant of the model.",
        impact="llama-server keeps part of the always-active weights in RAM, so every token "
               "waits on the CPU for them.",
        manual=["Free VRAM (close what holds it), use a GPU with more memory, or a smaller quant "
                "of the model."],
        action="more free VRAM or a smaller quant", item="fit")


# -- gpu.pcie -----------------------------------------------------------------------------------

def _n(number: int | None) -> str:
    return "?" if number is None else str(number)


def _bytes_s(gen: int | None, width: int | None) -> float | None:
    if not isinstance(gen, int) or not isinstance(width, int) or gen not in PCIE_LANE_BYTES_S:
        return None
    return PCIE_LANE_BYTES_S[gen] * width


def _slot_width(ctx: Context, device: dict) -> int | None:
    """The GPU's own lane count from sysfs (its PCIe capability), where the bus id is known."""
    bus = value(device.get("pci_bus_id"))
    if not isinstance(bus, str) or ":" not in bus:
        return None
    domain, rest = bus.split(":", 1)
    text = ctx.host.cat(f"/sys/bus/pci/devices/{domain[-4:].lower()}:{rest.lower()}/max_link_width")
    return bounded_int(text)


@check("gpu.pcie", "PCIe link as wide and as fast as the GPU and slot allow")
def pcie(ctx: Context):
    devices = _devices(ctx)
    if not devices:
        return _no_gpu(ctx)
    routed = ctx.facts.model.routed_bytes
    findings = []
    for device in devices:
        index = str(device.get("index"))
        link = device.get("pcie") if isinstance(device.get("pcie"), dict) else {}
        skipped = _unreadable(ctx, device, "PCIe link", {
            "width_current": link.get("width_current"), "gen_max": link.get("gen_max")})
        if skipped is not None:
            findings.append(skipped)
            continue
        gen_now, gen_max, gen_gpu = (value(link.get(k)) for k in
                                     ("gen_current", "gen_max", "gen_gpu_max"))
        width_now, width_max = value(link.get("width_current")), value(link.get("width_max"))
        sysfs_width = _slot_width(ctx, device)
        lanes = max([w for w in (width_max, sysfs_width) if isinstance(w, int)], default=None)
        problems = []
        if isinstance(width_now, int) and isinstance(lanes, int) and width_now < lanes:
            problems.append(f"runs x{width_now} of its x{lanes} lanes")
        if isinstance(gen_max, int) and isinstance(gen_gpu, int) and gen_max < gen_gpu:
            problems.append(f"the slot or riser caps it at Gen{gen_max} (the GPU can do "
                            f"Gen{gen_gpu})")
        observed = (f"link Gen{_n(gen_max)} x{_n(width_now)} (slot and GPU together); GPU "
                    f"capable of Gen{_n(gen_gpu)} x{_n(lanes)}"
                    + (f" (sysfs max_link_width {sysfs_width})" if sysfs_width else "")
                    + f"; now Gen{_n(gen_now)} (a lower generation at idle is power saving, "
                      "not a fault)")
        if not problems:
            findings.append(ctx.finding(PASS,
                                        f"{_label(device)}: PCIe Gen{_n(gen_max)} x{_n(width_now)}",
                                        observed=observed, item=index))
            continue
        now = _bytes_s(gen_max, width_now)
        best = _bytes_s(max(gen_max or 0, gen_gpu or 0) or None, lanes)
        cost = ""
        if now and best:
            cost = (f"Prompt processing copies the experts held in RAM (up to {gib(routed)}) "
                    f"to the GPU for every {UBATCH_TOKENS}-token batch: about "
                    f"{routed / now:.1f} s per batch at {now / 1e9:.1f} GB/s instead of "
                    f"{routed / best:.1f} s at {best / 1e9:.1f} GB/s.")
        impact = (cost or "Prompt processing streams experts over PCIe, so a slower link "
                          "slows it.") + GENERATION_OVER_PCIE
        title = f"{_label(device)}: PCIe link {' and '.join(problems)}"
        unchangeable = _fixed_link(ctx, device, devices, width_only=len(problems) == 1
                                   and problems[0].startswith("runs x"))
        if unchangeable:  # nothing a person can change: a note, not a warning
            findings.append(ctx.finding(INFO, title, observed=observed, impact=impact,
                                        item=index, recommended=unchangeable))
            continue
        step = ("Move the GPU to the CPU's x16 slot (usually the top one), drop bifurcation or "
                "risers that force fewer lanes or a lower generation, and set the slot to "
                "Auto/Gen4+ in the BIOS.")
        findings.append(ctx.finding(
            WARN, title, observed=observed, recommended=step, impact=impact, manual=[step],
            action="GPU in the x16 slot", item=index))
    return findings


DESKTOP_GPU_LANES = 16
"""The CPU lanes a desktop board gives its graphics slots: two cards split them x8/x8."""


def _fixed_link(ctx: Context, device: dict, devices: list[dict], width_only: bool
                ) -> str | None:
    """Why this GPU's narrow or slow link is nothing to change, or None where a slot,
    riser or BIOS setting can: a laptop wires its lanes, a VM's host sets its link, and
    GPUs that share a desktop CPU's 16 lanes each get a share."""
    if "laptop" in str(value(device.get("name")) or "").lower():
        return ("A laptop wires its GPU's lanes; nothing to change, but expect slower prompt "
                "processing.")
    system = ctx.facts.get("system")
    if system is not None and system.virtualization.in_vm:
        return ("A virtual machine's host sets the link of a GPU passed to it; nothing to "
                "change inside the VM.")
    widths = [value((g.get("pcie") or {}).get("width_current")) for g in devices
              if isinstance(g.get("pcie"), dict)]
    # An even split only (x8/x8): a card at x4 beside one at x8 may sit in a chipset slot
    if (width_only and len(devices) > 1 and all(isinstance(w, int) for w in widths)
            and len(set(widths)) == 1 and sum(widths) <= DESKTOP_GPU_LANES):
        shares = "/".join(f"x{w}" for w in widths)
        return (f"The GPUs share the CPU's {DESKTOP_GPU_LANES} graphics lanes ({shares}), as a "
                "desktop board wires two cards; nothing to change on a desktop CPU. A "
                "workstation CPU with more lanes can give each GPU x16 in slots wired to it.")
    return None


# Generation crosses the link only at the CPU<->GPU hand-overs, a few kilobytes of hidden
# state each: the speed model's per-hand-over cost is the synchronisation, not the copy.
GENERATION_OVER_PCIE = (" Token generation barely changes: it sends only a few kilobytes "
                        "across the link at each CPU<->GPU hand-over.")


# -- gpu.power ----------------------------------------------------------------------------------

AT_LIMIT = 0.9
"""A draw at this share of the power limit or above is running at the limit."""


def _power_cap(usage: Any, limit: Any, parts: list[str]) -> list[str]:
    """What the power-cap event bit means at this draw: NVML also sets it on idle GPUs (a
    5090 at 24 W of 575 W), so only a draw near the limit says the GPU is at it."""
    if isinstance(usage, int) and isinstance(limit, int) and limit:
        if usage >= limit * AT_LIMIT:
            return [f"running at its power limit ({usage / 1000:.0f} of {limit / 1000:.0f} W; "
                    "normal under full load)"]
        parts.append(f"the power-cap bit is set at {usage / 1000:.0f} of {limit / 1000:.0f} W "
                     "(no load to cap)")
    else:
        parts.append("the power-cap bit is set; the draw is unknown")
    return []


@check("gpu.power", "Power limit at default, no clock throttling, persistence mode")
def power(ctx: Context):
    devices = _devices(ctx)
    if not devices:
        return _no_gpu(ctx)
    findings = []
    for device in devices:
        index = str(device.get("index"))
        skipped = _unreadable(ctx, device, "power and clocks", {
            "power_limit_mw": device.get("power_limit_mw"),
            "clocks_event_reasons": device.get("clocks_event_reasons"),
            "persistence_mode": device.get("persistence_mode")})
        if skipped is not None:
            findings.append(skipped)
            continue
        limit, default = value(device.get("power_limit_mw")), value(
            device.get("power_default_limit_mw"))
        events = value(device.get("clocks_event_reasons"))
        persistence = value(device.get("persistence_mode"))
        parts, warns, infos, fixes = [], [], [], []
        if isinstance(limit, int):
            parts.append(f"power limit {limit / 1000:.0f} W"
                         + (f" of default {default / 1000:.0f} W" if isinstance(default, int)
                            else " (default unknown)"))
            if isinstance(default, int) and limit < default:
                warns.append(f"power limit {limit / 1000:.0f} W is below the default "
                             f"{default / 1000:.0f} W")
                fixes.append(f"restore it: `sudo nvidia-smi -i {index} -pl {default // 1000}`")
        if isinstance(events, int):
            names = clock_events(events)
            parts.append(f"clock events {events:#x} ({', '.join(names) or 'none'})")
            slow = clock_events(events & SLOWDOWNS)
            if slow:
                warns.append("clocks held down by " + ", ".join(slow))
                fixes.append("improve cooling and airflow, check the power cables and PSU")
            lowered = isinstance(default, int) and isinstance(limit, int) and limit < default
            if events & SW_POWER_CAP and events & IDLE:
                # Both bits at once: NVML reports the cap while the GPU idles at its lowest
                # clocks; it draws a few watts, far from any limit.
                parts.append("the power-cap bit is set while idle (no load to cap)")
            elif events & SW_POWER_CAP and not lowered:
                infos += _power_cap(value(device.get("power_usage_mw")), limit, parts)
        if persistence is False:
            parts.append("persistence mode off")
            infos.append("persistence mode is off")
        elif persistence is True:
            parts.append("persistence mode on")
        observed = "; ".join(parts) + ("; idle" if isinstance(events, int) and events & IDLE
                                       else "")
        if warns:
            advice = "; ".join(fixes).capitalize() + "."
            findings.append(ctx.finding(
                WARN, f"{_label(device)}: {'; '.join(warns)}", observed=observed,
                recommended=advice, manual=[advice], action="GPU power and cooling",
                impact="Prompt processing is bound by the GPU's clocks and slows about in "
                       "proportion; generation, bound by RAM, loses less.",
                item=index))
        elif infos:
            findings.append(ctx.finding(
                INFO, f"{_label(device)}: {'; '.join(infos)}", observed=observed,
                recommended="Turn persistence on (`sudo nvidia-smi -pm 1`, or the "
                            "nvidia-persistenced service) so the driver stays initialised between "
                            "runs."
                            if persistence is False else "",
                impact="No cost to tokens/s: without persistence each llama-server start waits a "
                       "second or two while the driver initialises the GPU."
                       if persistence is False else
                       "Power capping under full load is expected; at light load it would mean the "
                       "limit is too low.",
                item=index))
        else:
            findings.append(ctx.finding(PASS, f"{_label(device)}: no power limit or throttling",
                                        observed=observed, item=index))
    return findings

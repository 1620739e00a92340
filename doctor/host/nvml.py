"""NVML readings, gathered once into the nvml.json layout that snapshots store.

This is the live side: the only code that imports ``pynvml`` (the
``nvidia-ml-py`` package), and only when a GPU check asks. Layout, shared by
snapshots, fixtures and the device snapshot::

    {"init": "ok" | NVML error name | "timed-out", "reason": str (when not ok),
     "driver_version": str, "cuda_driver_version": int (12080 = CUDA 12.8),
     "devices": [{"index", "name", "uuid", "pci_bus_id",
                  "memory_total_bytes", "memory_used_bytes", "memory_free_bytes",
                  "memory_reserved_bytes", "memory_api": "v2" | "v1",
                  "memory_bus_width_bits", "memory_clock_max_mhz",
                  "compute_capability": [major, minor],
                  "pcie": {"gen_current", "gen_max", "gen_gpu_max",
                           "width_current", "width_max"},
                  "persistence_mode": bool, "power_limit_mw", "power_default_limit_mw",
                  "power_usage_mw" (the draw when read),
                  "clocks_event_reasons": int (bit mask), "cpu_affinity": [cpu ids],
                  "numa_node", "processes": [{"pid", "name", "used_bytes"}]}]}

A call that failed is stored as ``{"error": "<NVML error name>"}`` in its
value's place (a device whose handle could not be had is ``{"index", "error"}``),
so a replay gives the same finding as the live run.

``conform`` holds this layout to its types at the door: an nvml.json from a snapshot
is anybody's file, so a value of the wrong type (a name that is a number, a byte
count that is a string, NaN, a negative size) becomes ``{"error": "invalid-reading"}``
(unknown, as a failed call is), a key the layout lacks is dropped, and the checks
see only the types above. A field added to the layout is added to ``_DEVICE`` too.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable

NVML_TIMEOUT_S = 10.0
"""A wedged driver can hang nvmlInit forever; the preflight must still finish."""

WSL_NVML = "/usr/lib/wsl/lib/libnvidia-ml.so.1"
"""Where WSL2 exposes the Windows driver's NVML; not always on the loader's path."""

NVML_LIBRARY = "libnvidia-ml.so.1"
"""The name pynvml loads NVML by on Linux."""

LIBRARY_NOT_FOUND_REASON = "NVML Shared Library Not Found"
"""pynvml's text for NVML_ERROR_LIBRARY_NOT_FOUND, as str(NVMLError) gives it."""

_stuck: threading.Thread | None = None  # a reading that never came back


INVALID = "invalid-reading"
"""The error stored in place of a value of the wrong type (a damaged or hand-made nvml.json)."""
MAX_VALUE = 2**63 - 1  # no count, size, clock or id NVML gives comes near it


def _count(item: Any) -> bool:
    return isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= MAX_VALUE


def _signed(item: Any) -> bool:  # a NUMA node id: -1 where NVML knows none
    return isinstance(item, int) and not isinstance(item, bool) and -1 <= item <= MAX_VALUE


def _text_value(item: Any) -> bool:
    return isinstance(item, str)


def _flag(item: Any) -> bool:
    return isinstance(item, bool)


def _capability(item: Any) -> bool:
    return isinstance(item, list) and len(item) == 2 and all(_count(part) for part in item)


def _cpu_ids(item: Any) -> bool:
    return isinstance(item, list) and all(_count(cpu) and cpu < 2**20 for cpu in item)


def _pcie(item: Any) -> dict | None:
    if not isinstance(item, dict):
        return None
    return {key: _checked(item[key], _count) for key in _PCIE if key in item}


def _process_list(item: Any) -> list | None:
    if not isinstance(item, list):
        return None
    return [{"pid": entry["pid"],
             "name": entry.get("name") if isinstance(entry.get("name"), str) else None,
             "used_bytes": entry.get("used_bytes") if _count(entry.get("used_bytes")) else None}
            for entry in item if isinstance(entry, dict) and _count(entry.get("pid"))]


_PCIE = ("gen_current", "gen_max", "gen_gpu_max", "width_current", "width_max")
# Each device field and its test: the value is kept where it passes, else INVALID.
_DEVICE: dict[str, Any] = {
    "index": _count, "name": _text_value, "uuid": _text_value, "pci_bus_id": _text_value,
    "memory_total_bytes": _count, "memory_used_bytes": _count, "memory_free_bytes": _count,
    "memory_reserved_bytes": lambda item: item is None or _count(item),
    "memory_api": _text_value, "memory_bus_width_bits": _count,
    "memory_clock_max_mhz": _count, "compute_capability": _capability,
    "persistence_mode": _flag, "power_limit_mw": _count, "power_default_limit_mw": _count,
    "power_usage_mw": _count,
    "clocks_event_reasons": _count, "cpu_affinity": _cpu_ids, "numa_node": _signed,
}
# Fields of several values: a shaper gives the conformed value, None for the wrong shape.
_SHAPED = {"pcie": _pcie, "processes": _process_list}


def _stored_error(item: Any) -> bool:
    return isinstance(item, dict) and set(item) == {"error"}


def _checked(item: Any, test: Any) -> Any:
    """``item`` where it passes ``test``; a stored NVML error as it is; else INVALID."""
    if _stored_error(item):
        return {"error": item["error"] if isinstance(item["error"], str) else INVALID}
    return item if test(item) else {"error": INVALID}


def _conform_device(position: int, device: Any) -> dict:
    if not isinstance(device, dict):
        return {"index": position, "error": INVALID}
    found = {key: _checked(device[key], test) for key, test in _DEVICE.items()
             if key in device}
    for key, shape in _SHAPED.items():
        if key in device:
            shaped = None if _stored_error(device[key]) else shape(device[key])
            found[key] = _checked(device[key], lambda _: False) if shaped is None else shaped
    if "error" in device:  # the handle itself failed: the error name, not a value
        found["error"] = device["error"] if isinstance(device["error"], str) else INVALID
    if not _count(found.get("index")):
        found["index"] = position
    return found


def conform(readings: Any) -> dict:
    """NVML readings held to the layout above (see the module's docstring)."""
    if not isinstance(readings, dict):
        return {"init": INVALID, "reason": "the NVML readings are not an object"}
    init = readings.get("init")
    found: dict[str, Any] = {"init": init if isinstance(init, str) else INVALID}
    reason = readings.get("reason")
    if isinstance(reason, str):
        found["reason"] = reason
    elif not isinstance(init, str):
        found["reason"] = "the NVML readings have no valid init"
    for key, test in (("driver_version", _text_value), ("cuda_driver_version", _count)):
        if key in readings:
            found[key] = _checked(readings[key], test)
    if "devices" in readings:
        devices = readings["devices"]
        if isinstance(devices, list):
            found["devices"] = [_conform_device(n, d) for n, d in enumerate(devices)]
        else:
            found["devices"] = _checked(devices, lambda _: False)
    return found


def read_nvml(timeout: float = NVML_TIMEOUT_S) -> dict:
    """Everything NVML says, or ``{"init": <why not>}``; never raises, never hangs.

    The reading runs in a daemon thread with a time limit: a call stuck in the
    driver is left behind (it cannot be cancelled), and later readings in this
    process report the same instead of queueing behind it.
    """
    global _stuck
    if _stuck is not None and _stuck.is_alive():
        return {"init": "timed-out", "reason": "an earlier NVML call has not returned"}
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = _gather()
        except Exception as exc:  # a binding bug must not become a traceback
            box["result"] = {"init": _error_name(exc), "reason": str(exc) or type(exc).__name__}

    worker = threading.Thread(target=work, name="nvml", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        _stuck = worker
        return {"init": "timed-out", "reason": f"NVML did not answer within {timeout:g} s"}
    return box["result"]


def _error_name(exc: BaseException) -> str:
    """NVML's symbolic name for an error (NVML_ERROR_DRIVER_NOT_LOADED...)."""
    try:
        import pynvml

        if isinstance(exc, pynvml.NVMLError):
            value = getattr(exc, "value", None)
            for name in dir(pynvml):
                if name.startswith("NVML_ERROR_") and getattr(pynvml, name) == value:
                    return name
    except ImportError:
        pass
    return type(exc).__name__


def _guard(call: Callable[[], Any]) -> Any:
    """One NVML call: its value, or ``{"error": name}`` in its place."""
    try:
        return call()
    except Exception as exc:
        return {"error": _error_name(exc)}


def _failed(value: Any) -> bool:
    return isinstance(value, dict) and "error" in value


def _text(value: Any) -> Any:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _preload_wsl() -> None:
    """On WSL2 libnvidia-ml.so.1 lives in /usr/lib/wsl/lib, which the loader may
    not search; loading it by path first lets pynvml's load by name find it."""
    if not os.path.exists(WSL_NVML):
        return
    try:
        import ctypes

        ctypes.CDLL(WSL_NVML, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
    except OSError:
        pass


def _library_missing() -> bool:
    """Whether libnvidia-ml.so.1 cannot be loaded, asked before pynvml is imported: on a
    machine without the NVIDIA driver, importing pynvml (~10 ms) only to hear that from
    nvmlInit is most of this reading's cost. pynvml's own load is the same dlopen by
    name (after the WSL preload, done first), so the answer is the one nvmlInit would
    give. Where pynvml is already imported there is nothing to save: it answers."""
    if "pynvml" in sys.modules:
        return False
    import importlib.util

    if importlib.util.find_spec("pynvml") is None:
        return False  # the import below says so
    import ctypes

    try:
        ctypes.CDLL(NVML_LIBRARY)
    except OSError:
        return True
    return False


def _gather() -> dict:
    _preload_wsl()
    if _library_missing():
        return {"init": "NVML_ERROR_LIBRARY_NOT_FOUND", "reason": LIBRARY_NOT_FOUND_REASON}
    try:
        import pynvml
    except ImportError:
        return {"init": "NVML_ERROR_LIBRARY_NOT_FOUND", "reason": "nvidia-ml-py is not installed"}
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        return {"init": _error_name(exc), "reason": str(exc) or type(exc).__name__}
    try:
        readings: dict[str, Any] = {
            "init": "ok",
            "driver_version": _text(_guard(pynvml.nvmlSystemGetDriverVersion)),
            # _v2: v1 invents a version when libcuda is missing.
            "cuda_driver_version": _guard(pynvml.nvmlSystemGetCudaDriverVersion_v2),
        }
        count = _guard(pynvml.nvmlDeviceGetCount)
        if _failed(count):
            readings["devices"] = count
            return readings
        readings["devices"] = [_device(pynvml, index) for index in range(int(count))]
        return readings
    finally:
        _guard(pynvml.nvmlShutdown)


def _device(nv: Any, index: int) -> dict:
    handle = _guard(lambda: nv.nvmlDeviceGetHandleByIndex(index))
    if _failed(handle):
        return {"index": index, **handle}
    device: dict[str, Any] = {
        "index": index,
        "name": _text(_guard(lambda: nv.nvmlDeviceGetName(handle))),
        "uuid": _text(_guard(lambda: nv.nvmlDeviceGetUUID(handle))),
        "pci_bus_id": _guard(lambda: _text(nv.nvmlDeviceGetPciInfo(handle).busId)),
    }
    device.update(_memory(nv, handle))
    # Bus width and the memory clock's maximum give the card's peak bandwidth exactly,
    # for cards no table knows (plan/speed.py).
    device["memory_bus_width_bits"] = _guard(lambda: nv.nvmlDeviceGetMemoryBusWidth(handle))
    device["memory_clock_max_mhz"] = _guard(
        lambda: nv.nvmlDeviceGetMaxClockInfo(handle, nv.NVML_CLOCK_MEM))
    capability = _guard(lambda: nv.nvmlDeviceGetCudaComputeCapability(handle))
    device["compute_capability"] = capability if _failed(capability) else list(capability)
    device["pcie"] = {
        "gen_current": _guard(lambda: nv.nvmlDeviceGetCurrPcieLinkGeneration(handle)),
        # The link's maximum: the lower of what the GPU and the slot (or riser) can do.
        "gen_max": _guard(lambda: nv.nvmlDeviceGetMaxPcieLinkGeneration(handle)),
        "gen_gpu_max": _guard(lambda: nv.nvmlDeviceGetGpuMaxPcieLinkGeneration(handle)),
        "width_current": _guard(lambda: nv.nvmlDeviceGetCurrPcieLinkWidth(handle)),
        "width_max": _guard(lambda: nv.nvmlDeviceGetMaxPcieLinkWidth(handle)),
    }
    persistence = _guard(lambda: nv.nvmlDeviceGetPersistenceMode(handle))
    device["persistence_mode"] = persistence if _failed(persistence) else bool(persistence)
    device["power_limit_mw"] = _guard(lambda: nv.nvmlDeviceGetPowerManagementLimit(handle))
    device["power_default_limit_mw"] = _guard(
        lambda: nv.nvmlDeviceGetPowerManagementDefaultLimit(handle))
    # The draw: the power-cap event bit alone does not say the GPU is at its limit (NVML
    # sets it on idle GPUs drawing a tenth of it).
    device["power_usage_mw"] = _guard(lambda: nv.nvmlDeviceGetPowerUsage(handle))
    # The clocks-event call: nvmlDeviceGetCurrentClocksThrottleReasons is deprecated.
    device["clocks_event_reasons"] = _guard(
        lambda: nv.nvmlDeviceGetCurrentClocksEventReasons(handle))
    device["cpu_affinity"] = _guard(lambda: _cpu_affinity(nv, handle))
    device["numa_node"] = _guard(lambda: nv.nvmlDeviceGetNumaNodeId(handle))
    device["processes"] = _processes(nv, handle)
    return device


def _memory(nv: Any, handle: Any) -> dict:
    """VRAM through the v2 API where the driver has it: v1 counts reserved memory as used."""
    api = "v2"
    try:
        info = nv.nvmlDeviceGetMemoryInfo(handle, version=nv.nvmlMemory_v2)
    except Exception:
        api = "v1"
        info = _guard(lambda: nv.nvmlDeviceGetMemoryInfo(handle))
    if _failed(info):
        return {"memory_total_bytes": info, "memory_used_bytes": info, "memory_free_bytes": info,
                "memory_api": api}
    reserved = getattr(info, "reserved", None) if api == "v2" else None
    return {
        "memory_total_bytes": int(info.total),
        "memory_used_bytes": int(info.used),
        "memory_free_bytes": int(info.free),
        "memory_reserved_bytes": int(reserved) if isinstance(reserved, int) else None,
        "memory_api": api,
    }


def _cpu_affinity(nv: Any, handle: Any) -> list[int]:
    """The CPUs nearest the GPU (its NUMA node's), from NVML's 64-bit mask words."""
    words = 16  # 16 x 64 bits: room for 1024 CPUs
    mask = nv.nvmlDeviceGetCpuAffinity(handle, words)
    return [word_index * 64 + bit for word_index, word in enumerate(mask)
            for bit in range(64) if int(word) >> bit & 1]


def _processes(nv: Any, handle: Any) -> list[dict] | dict:
    """Compute and graphics processes holding VRAM on this GPU, named through psutil.

    Where both lists fail, the first error stands in for the list; where one
    fails (graphics processes are often unsupported), the other is kept.
    """
    seen: dict[int, dict] = {}
    errors = []
    for getter in (nv.nvmlDeviceGetComputeRunningProcesses,
                   nv.nvmlDeviceGetGraphicsRunningProcesses):
        listed = _guard(lambda getter=getter: getter(handle))
        if _failed(listed):
            errors.append(listed)
            continue
        for process in listed or []:
            pid = getattr(process, "pid", None)
            if not isinstance(pid, int):
                continue
            used = getattr(process, "usedGpuMemory", None)  # None under WDDM (WSL2)
            entry = seen.setdefault(pid, {"pid": pid, "name": _process_name(pid),
                                          "used_bytes": None})
            if isinstance(used, int):
                entry["used_bytes"] = max(entry["used_bytes"] or 0, used)
    if len(errors) == 2:
        return errors[0]
    return sorted(seen.values(), key=lambda entry: entry["pid"])


def _process_name(pid: int) -> str | None:
    try:
        import psutil

        return psutil.Process(pid).name()
    except Exception:
        return None

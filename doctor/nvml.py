"""NVML readings, gathered once into the nvml.json layout that snapshots store.

Layout: ``{"init": "ok" | NVML error name, "driver_version", "cuda_driver_version"
(int, 12080 = 12.8), "devices": [{"index", "name", "uuid", "memory_total_bytes",
"memory_used_bytes", "memory_free_bytes", "compute_capability", "pcie": {...},
"persistence_mode", "power_limit_mw", "power_default_limit_mw",
"clocks_event_reasons", "cpu_affinity", "numa_node", "processes": [...]}]}``.
A call that failed is stored as ``{"error": "<NVML error name>"}`` in its place,
so a replay gives the same finding as the live run.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

NVML_TIMEOUT_S = 10.0
"""A wedged driver can hang nvmlInit forever; the preflight must still finish."""


def read_nvml(timeout: float = NVML_TIMEOUT_S) -> dict:
    """Everything NVML says, or ``{"init": <why not>}``; never raises, never hangs."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = _gather()
        except Exception as exc:  # a binding bug must not become a traceback
            box["result"] = {"init": _error_name(exc), "reason": str(exc)}

    worker = threading.Thread(target=work, name="nvml", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return {"init": "timed-out", "reason": f"NVML did not answer within {timeout:g} s"}
    return box["result"]


def _error_name(exc: BaseException) -> str:
    """NVML's symbolic name for an error (NVML_ERROR_DRIVER_NOT_LOADED...)."""
    try:
        import pynvml

        if isinstance(exc, pynvml.NVMLError):
            for name in dir(pynvml):
                if name.startswith("NVML_ERROR_") and getattr(pynvml, name) == exc.value:
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


def _text(value: Any) -> Any:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _gather() -> dict:
    try:
        import pynvml
    except ImportError:
        return {"init": "NVML_ERROR_LIBRARY_NOT_FOUND", "reason": "nvidia-ml-py is not installed"}
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        return {"init": _error_name(exc), "reason": str(exc)}
    try:
        readings: dict[str, Any] = {
            "init": "ok",
            "driver_version": _text(_guard(pynvml.nvmlSystemGetDriverVersion)),
            # _v2: v1 invents a version when libcuda is missing.
            "cuda_driver_version": _guard(pynvml.nvmlSystemGetCudaDriverVersion_v2),
        }
        count = _guard(pynvml.nvmlDeviceGetCount)
        if isinstance(count, dict):
            readings["devices"] = count
            return readings
        readings["devices"] = [_device(pynvml, index) for index in range(count)]
        return readings
    finally:
        _guard(pynvml.nvmlShutdown)


def _device(nv: Any, index: int) -> dict:
    handle = _guard(lambda: nv.nvmlDeviceGetHandleByIndex(index))
    if isinstance(handle, dict):
        return {"index": index, **handle}
    device: dict[str, Any] = {
        "index": index,
        "name": _text(_guard(lambda: nv.nvmlDeviceGetName(handle))),
        "uuid": _text(_guard(lambda: nv.nvmlDeviceGetUUID(handle))),
    }
    memory = _memory(nv, handle)
    if "error" in memory:
        device.update(memory_total_bytes=memory, memory_used_bytes=memory, memory_free_bytes=memory)
    else:
        device.update(memory)
    capability = _guard(lambda: nv.nvmlDeviceGetCudaComputeCapability(handle))
    device["compute_capability"] = capability if isinstance(capability, dict) else list(capability)
    device["pcie"] = {
        "gen_current": _guard(lambda: nv.nvmlDeviceGetCurrPcieLinkGeneration(handle)),
        "gen_max": _guard(lambda: nv.nvmlDeviceGetMaxPcieLinkGeneration(handle)),
        "gen_gpu_max": _guard(lambda: nv.nvmlDeviceGetGpuMaxPcieLinkGeneration(handle)),
        "width_current": _guard(lambda: nv.nvmlDeviceGetCurrPcieLinkWidth(handle)),
        "width_max": _guard(lambda: nv.nvmlDeviceGetMaxPcieLinkWidth(handle)),
    }
    device["persistence_mode"] = _guard(lambda: nv.nvmlDeviceGetPersistenceMode(handle))
    device["power_limit_mw"] = _guard(lambda: nv.nvmlDeviceGetPowerManagementLimit(handle))
    device["power_default_limit_mw"] = _guard(
        lambda: nv.nvmlDeviceGetPowerManagementDefaultLimit(handle)
    )
    device["clocks_event_reasons"] = _guard(
        lambda: nv.nvmlDeviceGetCurrentClocksEventReasons(handle)
    )
    device["cpu_affinity"] = _guard(lambda: _cpu_affinity(nv, handle))
    device["numa_node"] = _guard(lambda: nv.nvmlDeviceGetNumaNodeId(handle))
    device["processes"] = _guard(lambda: _processes(nv, handle))
    return device


def _memory(nv: Any, handle: Any) -> dict:
    """VRAM through the v2 API where the driver has it: v1 counts reserved memory as used."""
    try:
        info = nv.nvmlDeviceGetMemoryInfo(handle, version=nv.nvmlMemory_v2)
    except Exception:
        info = _guard(lambda: nv.nvmlDeviceGetMemoryInfo(handle))
        if isinstance(info, dict):
            return info
    return {
        "memory_total_bytes": int(info.total),
        "memory_used_bytes": int(info.used),
        "memory_free_bytes": int(info.free),
    }


def _cpu_affinity(nv: Any, handle: Any) -> list[int]:
    words = 16  # 16 x 64 bits: room for 1024 CPUs
    mask = nv.nvmlDeviceGetCpuAffinity(handle, words)
    return [word_index * 64 + bit for word_index, word in enumerate(mask)
            for bit in range(64) if int(word) >> bit & 1]


def _processes(nv: Any, handle: Any) -> list[dict]:
    seen: dict[int, dict] = {}
    for getter in (nv.nvmlDeviceGetComputeRunningProcesses,
                   nv.nvmlDeviceGetGraphicsRunningProcesses):
        for process in _guard(lambda getter=getter: getter(handle)) or []:
            if isinstance(process, str) or not hasattr(process, "pid"):
                continue
            used = getattr(process, "usedGpuMemory", None)
            seen[process.pid] = {
                "pid": int(process.pid),
                "name": _process_name(process.pid),
                "used_bytes": int(used) if isinstance(used, int) else None,
            }
    return sorted(seen.values(), key=lambda entry: entry["pid"])


def _process_name(pid: int) -> str | None:
    try:
        import psutil

        return psutil.Process(pid).name()
    except Exception:
        return None

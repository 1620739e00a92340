"""The nvml and gpus sections, from one NVML reading (live, or a snapshot's nvml.json).

The GPU work (CUDA compatibility, VRAM budget, PCIe) judges these; here they
are only read and shaped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..host import Host
from ..options import Options

if TYPE_CHECKING:
    from . import Facts


@dataclass
class NvmlFacts:
    init: str  # "ok", or the NVML error name (NVML_ERROR_DRIVER_NOT_LOADED...) / "timed-out"
    reason: str | None
    driver_version: str | None
    cuda_driver_version: int | None  # as NVML gives it: 12080 is CUDA 12.8
    basis: dict[str, str] = field(default_factory=dict)


def _value(reading: object) -> object:
    """A stored ``{"error": name}`` reads as unknown."""
    return None if isinstance(reading, dict) and "error" in reading else reading


def gather_nvml(host: Host, options: Options, facts: Facts) -> NvmlFacts:
    host.note("NVML")
    readings = host.nvml()
    return NvmlFacts(
        init=str(readings.get("init", "unknown")),
        reason=readings.get("reason"),
        driver_version=_value(readings.get("driver_version")),  # type: ignore[arg-type]
        cuda_driver_version=_value(readings.get("cuda_driver_version")),  # type: ignore[arg-type]
        basis={"init": "nvmlInit", "cuda_driver_version": "nvmlSystemGetCudaDriverVersion_v2"},
    )


def gather_gpus(host: Host, options: Options, facts: Facts) -> list[dict]:
    """One dict per GPU in the nvml.json device layout; empty where NVML is unusable."""
    if facts.nvml.init != "ok":
        return []
    devices = host.nvml().get("devices", [])
    return [device for device in devices if isinstance(device, dict)] if isinstance(
        devices, list) else []

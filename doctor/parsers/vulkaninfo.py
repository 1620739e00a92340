"""``vulkaninfo --summary``: the devices the Vulkan loader finds, one block per GPU.

A Vulkan build of llama-server uses the devices the loader lists, through whatever
drivers (ICDs) are installed: a card with no driver of its own is absent (only Mesa's
``llvmpipe`` CPU device may be there), and a card with two drivers (Mesa's RADV and
AMD's proprietary one) is listed twice.
"""

from __future__ import annotations

import re

_BLOCK = re.compile(r"^GPU(\d+):\s*$")
_FIELD = re.compile(r"^\s+(\w+)\s*=\s*(.*?)\s*$")
CPU_TYPE = "PHYSICAL_DEVICE_TYPE_CPU"


def parse_summary(text: str) -> list[dict[str, str]]:
    """Each ``GPUn:`` block as {field: value} with its ``index``; lines outside blocks
    (the instance and layer lists, warnings, shell prompts) are skipped."""
    devices: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in text.splitlines():
        block = _BLOCK.match(line.strip()) if not line.startswith((" ", "\t")) else None
        if block:
            current = {"index": block.group(1)}
            devices.append(current)
            continue
        field = _FIELD.match(line)
        if field and current is not None:
            current[field.group(1)] = field.group(2)
        elif line.strip() and not line.startswith((" ", "\t")):
            current = None
    return devices


def software(device: dict[str, str]) -> bool:
    """A CPU implementation (llvmpipe, lavapipe, SwiftShader), not a GPU."""
    name = device.get("deviceName", "").lower()
    return device.get("deviceType") == CPU_TYPE or any(
        word in name for word in ("llvmpipe", "lavapipe", "swiftshader"))

"""How fast the model generates on this machine: the one tok/s estimate.

A calibrated roofline over the placement (plan/placement.py): a token reads the CPU part
of the weights from RAM and the GPU part from VRAM, one after the other. model.speed and
the launch quote it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from q3cn_doctor.facts import Facts, FactsError
from q3cn_doctor.plan.placement import Placement, placement, usable_gpus

# The roofline: a token reads the CPU part of the weights from RAM and the GPU part from
# VRAM, one after the other (each layer's experts wait for its attention). Each side
# reaches a share of its peak bandwidth. The two shares are fitted to the guide's own
# figures on its machine (i5-12600K, RTX 4070 12 GB, dual-channel DDR5-6000 = 96 GB/s,
# ctx 131072): about 40 tok/s for Qwen3-Coder-Next MXFP4 and 30 for gpt-oss-120b MXFP4.
# tests/test_launch_plan.py holds the estimate to those figures.
RAM_EFFICIENCY = 0.68
GPU_EFFICIENCY = 0.95
ASSUMED_GPU_BANDWIDTH = 400e9

# Memory bandwidth of cards (bytes/s, the vendors' specifications), by the name NVML
# gives, used only where NVML does not give the bus width and memory clock. A laptop
# part shares its desktop sibling's name but not its memory (an "RTX 4090 Laptop GPU" is
# a 256-bit 4080-class chip), so laptop names are matched only against laptop keys.
GPU_BANDWIDTH = {
    # Turing
    "GTX 1650": 128e9, "GTX 1650 SUPER": 192e9, "GTX 1660": 192e9, "GTX 1660 SUPER": 336e9,
    "GTX 1660 Ti": 288e9, "RTX 2060": 336e9, "RTX 2060 SUPER": 448e9, "RTX 2070": 448e9,
    "RTX 2070 SUPER": 448e9, "RTX 2080": 448e9, "RTX 2080 SUPER": 496e9,
    "RTX 2080 Ti": 616e9, "TITAN RTX": 672e9, "Quadro RTX 4000": 416e9,
    "Quadro RTX 5000": 448e9, "Quadro RTX 6000": 672e9, "Quadro RTX 8000": 672e9, "T4": 320e9,
    # Ampere
    "RTX 3050": 224e9, "RTX 3060": 360e9, "RTX 3060 Ti": 448e9, "RTX 3070": 448e9,
    "RTX 3070 Ti": 608e9, "RTX 3080": 760e9, "RTX 3080 Ti": 912e9, "RTX 3090": 936e9,
    "RTX 3090 Ti": 1008e9, "RTX A2000": 288e9, "RTX A4000": 448e9, "RTX A4500": 640e9,
    "RTX A5000": 768e9, "RTX A5500": 768e9, "RTX A6000": 768e9, "A10": 600e9, "A10G": 600e9,
    "A40": 696e9,
    "A100-SXM4-40GB": 1555e9, "A100-PCIE-40GB": 1555e9, "A100 80GB PCIe": 1935e9,
    "A100": 2039e9,
    # Ada Lovelace
    "RTX 4060": 272e9, "RTX 4060 Ti": 288e9, "RTX 4070": 504e9, "RTX 4070 SUPER": 504e9,
    "RTX 4070 Ti": 504e9, "RTX 4070 Ti SUPER": 672e9, "RTX 4080": 717e9,
    "RTX 4080 SUPER": 736e9, "RTX 4090": 1008e9, "RTX 4090 D": 1008e9,
    "RTX 2000 Ada": 224e9, "RTX 4000 SFF Ada": 280e9, "RTX 4000 Ada": 360e9,
    "RTX 4500 Ada": 432e9, "RTX 5000 Ada": 576e9, "RTX 6000 Ada": 960e9, "L4": 300e9,
    "L40": 864e9, "L40S": 864e9,
    # Hopper and Blackwell
    "H100 PCIe": 2000e9, "H100": 3350e9, "H100 NVL": 3900e9, "GH200": 4000e9, "H200": 4800e9,
    "B200": 8000e9, "RTX 5050": 320e9, "RTX 5060": 448e9, "RTX 5060 Ti": 448e9,
    "RTX 5070": 672e9, "RTX 5070 Ti": 896e9, "RTX 5080": 960e9, "RTX 5090": 1792e9,
    "RTX PRO 4000 Blackwell": 672e9, "RTX PRO 4500 Blackwell": 896e9,
    "RTX PRO 5000 Blackwell": 1344e9, "RTX PRO 6000 Blackwell": 1792e9,
    # Laptops ("... Laptop GPU"; Turing laptops are named like desktops and use NVML's figure)
    "RTX 3050 Laptop": 192e9, "RTX 3050 Ti Laptop": 192e9, "RTX 3060 Laptop": 336e9,
    "RTX 3070 Laptop": 448e9, "RTX 3070 Ti Laptop": 448e9, "RTX 3080 Laptop": 448e9,
    "RTX 3080 Ti Laptop": 512e9, "RTX 4050 Laptop": 192e9, "RTX 4060 Laptop": 256e9,
    "RTX 4070 Laptop": 256e9, "RTX 4080 Laptop": 432e9, "RTX 4090 Laptop": 576e9,
    "RTX 5090 Laptop": 896e9,
}
MOBILE_WORDS = ("laptop", "max-q", "mobile")


@dataclass
class SpeedEstimate:
    """Generation tokens/s now, with the RAM at its rated speed, and how it was reached."""

    tok_s: float | None
    tok_s_rated: float | None  # with the RAM at its rated speed (None: no faster rating)
    ram_bytes_per_s: float | None  # the RAM bandwidth the estimate used
    gpu_bytes_per_s: float | None
    basis: str

    def to_json(self) -> dict:
        return asdict(self)


def speed(facts: Facts) -> SpeedEstimate:
    """This run's estimate (built once; FactsError where the model facts failed)."""
    return facts.derived("speed", lambda: _estimate(facts, placement(facts)))


def gpu_bandwidth(device: dict) -> tuple[float, str]:
    """A GPU's peak memory bandwidth: from NVML's bus width and maximum memory clock
    (GDDR and HBM move two transfers per clock, so MHz x 2 x bits / 8), else the table by
    name, else an assumption saying so."""
    bits, mhz = device.get("memory_bus_width_bits"), device.get("memory_clock_max_mhz")
    if isinstance(bits, int) and isinstance(mhz, int) and bits > 0 and mhz > 0:
        rate = mhz * 1e6 * 2 * bits / 8
        return rate, (f"{bits}-bit bus at {mhz} MHz (NVML): {rate / 1e9:.0f} GB/s")
    name = str(device.get("name") or "")
    key = table_key(name)
    if key:
        return GPU_BANDWIDTH[key], f"{key}: {GPU_BANDWIDTH[key] / 1e9:.0f} GB/s (specification)"
    return ASSUMED_GPU_BANDWIDTH, (f"{name or 'unknown GPU'}: bandwidth unknown, "
                                   f"{ASSUMED_GPU_BANDWIDTH / 1e9:.0f} GB/s assumed")


def table_key(name: str) -> str | None:
    """The longest table name found in ``name`` as whole words, a laptop part only among
    the laptop keys: "RTX 4090 Laptop GPU" must never read as the desktop RTX 4090."""
    mobile = any(word in name.lower() for word in MOBILE_WORDS)
    matches = [key for key in GPU_BANDWIDTH
               if ("laptop" in key.lower()) == mobile
               and re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", name, re.I)]
    return max(matches, key=len) if matches else None


def ram_bandwidth(facts: Facts) -> tuple[float | None, float | None, str]:
    """(the RAM read bandwidth to expect now, the same at the modules' rated speed, basis).

    Measured where --measure ran, else the theoretical peak of the configured speed; the
    rated figure scales either by rated / configured MT/s. The one place the memory facts
    plug into the speed estimate.
    """
    try:
        memory = facts.memory
    except FactsError as exc:
        return None, None, str(exc)
    measured = (getattr(memory, "measured", None) or {}).get("bytes_per_s")
    theoretical = getattr(memory, "theoretical_bytes_per_s", None)
    configured = getattr(memory, "configured_mts", None)
    rated = getattr(memory, "rated_mts", None)
    now = measured or theoretical
    if not now:
        return None, None, "RAM bandwidth unknown (no module listing and not measured)"
    basis = (f"measured {measured / 1e9:.1f} GB/s" if measured else
             f"theoretical {theoretical / 1e9:.1f} GB/s "
             f"({memory.basis.get('theoretical_bytes_per_s', 'configured speed x channels')})")
    at_rated = None
    if rated and configured and rated > configured:
        at_rated = now * rated / configured
        basis += f"; x {rated}/{configured} MT/s at the rated speed"
    return float(now), at_rated, basis


def estimate_tok_s(plan: Placement, ram_bytes_per_s: float | None,
                   gpu_bytes_per_s: float | None) -> float | None:
    """Generation tokens/s: the RAM part and the VRAM part of a token, read one after the
    other, each at its calibrated share of peak bandwidth."""
    seconds = 0.0
    if plan.ram_bytes_per_token:
        if not ram_bytes_per_s:
            return None
        seconds += plan.ram_bytes_per_token / (ram_bytes_per_s * RAM_EFFICIENCY)
    if plan.gpu_bytes_per_token:
        seconds += plan.gpu_bytes_per_token / ((gpu_bytes_per_s or ASSUMED_GPU_BANDWIDTH)
                                               * GPU_EFFICIENCY)
    return 1 / seconds if seconds > 0 else None


def _estimate(facts: Facts, plan: Placement) -> SpeedEstimate:
    now, rated, ram_basis = ram_bandwidth(facts)
    gpus = usable_gpus(facts)
    gpu_rate, gpu_basis = None, ""
    if gpus:  # layers spread over the GPUs: the slowest one sets the pace of its share
        readings = [gpu_bandwidth(g) for g in gpus]
        gpu_rate = min(r[0] for r in readings)
        gpu_basis = "; ".join(r[1] for r in readings)
    basis = (
        f"{plan.ram_bytes_per_token / 1e9:.2f} GB from RAM ({ram_basis}) at "
        f"{RAM_EFFICIENCY:.0%} of peak + {plan.gpu_bytes_per_token / 1e9:.2f} GB from VRAM"
        + (f" ({gpu_basis})" if gpu_basis else "")
        + f" at {GPU_EFFICIENCY:.0%} of peak per token (efficiencies fitted to the guide's "
          "~40 tok/s Qwen3-Coder-Next and ~30 tok/s gpt-oss-120b on an i5-12600K, RTX 4070 "
          "and dual-channel DDR5-6000)")
    return SpeedEstimate(
        tok_s=_round(estimate_tok_s(plan, now, gpu_rate)),
        tok_s_rated=_round(estimate_tok_s(plan, rated, gpu_rate)) if rated else None,
        ram_bytes_per_s=now, gpu_bytes_per_s=gpu_rate, basis=basis)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)

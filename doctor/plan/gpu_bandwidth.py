"""GPU memory bandwidth: from NVML where it answers, else the vendors' figures by name.

The speed model (plan/speed.py) reads each GPU's VRAM part of a token at this peak
times its calibrated fraction.
"""

from __future__ import annotations

import re

ASSUMED_GPU_BANDWIDTH = 400e9  # a card neither NVML nor the table knows: said so in the basis

# Memory bandwidth of cards (bytes/s, the vendors' specifications), by the name NVML
# gives, used only where NVML does not give the bus width and memory clock. A laptop
# part shares its desktop sibling's name but not its memory (an "RTX 4090 Laptop GPU" is
# a 256-bit 4080-class chip), so laptop names are matched only against laptop keys.
GPU_BANDWIDTH = {
    # Kepler and Maxwell
    "GTX 680": 192e9, "K80": 240e9, "M40": 288e9,
    # Pascal and Volta (still common second-hand cards)
    "GT 1030": 48e9, "GTX 1050": 112e9, "GTX 1050 Ti": 112e9,
    "GTX 1060": 192e9, "GTX 1070": 256e9, "GTX 1070 Ti": 256e9, "GTX 1080": 320e9,
    "GTX 1080 Ti": 484e9, "TITAN X (Pascal)": 480e9, "TITAN Xp": 548e9, "P4": 192e9,
    "P40": 347e9, "P100": 732e9, "P100-PCIE-12GB": 549e9, "Quadro P400": 32e9,
    "Quadro P2000": 140e9, "Quadro P4000": 243e9, "Quadro P5000": 288e9,
    "Quadro P6000": 432e9, "V100": 900e9, "V100D": 900e9, "V100S": 1134e9, "TITAN V": 653e9,
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
    "A40": 696e9, "A2": 200e9, "A30": 933e9,
    "A100-SXM4-40GB": 1555e9, "A100-PCIE-40GB": 1555e9, "A100 80GB PCIe": 1935e9,
    "A100": 2039e9, "A800": 2039e9,
    # Ada Lovelace
    "RTX 4060": 272e9, "RTX 4060 Ti": 288e9, "RTX 4070": 504e9, "RTX 4070 SUPER": 504e9,
    "RTX 4070 Ti": 504e9, "RTX 4070 Ti SUPER": 672e9, "RTX 4080": 717e9,
    "RTX 4080 SUPER": 736e9, "RTX 4090": 1008e9, "RTX 4090 D": 1008e9,
    "RTX 2000 Ada": 224e9, "RTX 4000 SFF Ada": 280e9, "RTX 4000 Ada": 360e9,
    "RTX 4500 Ada": 432e9, "RTX 5000 Ada": 576e9, "RTX 6000 Ada": 960e9, "L4": 300e9,
    "L20": 864e9, "L40": 864e9, "L40S": 864e9,
    # Hopper and Blackwell
    "H100 PCIe": 2000e9, "H100": 3350e9, "H100 NVL": 3900e9, "H800": 3350e9, "H20": 4000e9,
    "GH200": 4000e9, "GH200 144G": 4900e9, "H200": 4800e9,
    "B200": 8000e9, "RTX 5050": 320e9, "RTX 5060": 448e9, "RTX 5060 Ti": 448e9,
    "RTX 5070": 672e9, "RTX 5070 Ti": 896e9, "RTX 5080": 960e9, "RTX 5090": 1792e9,
    "RTX PRO 4000 Blackwell": 672e9, "RTX PRO 4000 Blackwell SFF": 432e9,
    "RTX PRO 4500 Blackwell": 896e9,
    "RTX PRO 5000 Blackwell": 1344e9, "RTX PRO 6000 Blackwell": 1792e9,
    # Laptops ("... Laptop GPU"; Turing laptops are named like desktops, their Max-Q parts
    # "... with Max-Q Design", with slower memory)
    "GTX 1650 with Max-Q": 128e9, "GTX 1660 Ti with Max-Q": 288e9,
    "RTX 2060 with Max-Q": 264e9, "RTX 2070 with Max-Q": 384e9,
    "RTX 2070 Super with Max-Q": 352e9, "RTX 2080 with Max-Q": 384e9,
    "RTX 2080 Super with Max-Q": 352e9,
    "RTX PRO 6000 Blackwell Max-Q": 1792e9,  # a 300 W workstation card, the same memory
    "RTX 3050 Laptop": 192e9, "RTX 3050 Ti Laptop": 192e9, "RTX 3060 Laptop": 336e9,
    "RTX 3070 Laptop": 448e9, "RTX 3070 Ti Laptop": 448e9, "RTX 3080 Laptop": 448e9,
    "RTX 3080 Ti Laptop": 512e9, "RTX 4050 Laptop": 192e9, "RTX 4060 Laptop": 256e9,
    "RTX 4070 Laptop": 256e9, "RTX 4080 Laptop": 432e9, "RTX 4090 Laptop": 576e9,
    "RTX 5060 Laptop": 384e9, "RTX 5070 Laptop": 384e9, "RTX 5070 Ti Laptop": 672e9,
    "RTX 5080 Laptop": 896e9, "RTX 5090 Laptop": 896e9,
    # AMD Radeon (ROCm/Vulkan builds)
    "RX 6800": 512e9, "RX 6800 XT": 512e9, "RX 6900 XT": 512e9, "RX 7600": 288e9,
    "RX 7800 XT": 624e9, "RX 7900 XT": 800e9, "RX 7900 XTX": 960e9, "RX 9070": 640e9,
    "RX 9070 XT": 640e9, "Radeon VII": 1024e9,
}
MOBILE_WORDS = ("laptop", "max-q", "mobile")


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
    mobile = _mobile(name)
    matches = [key for key in GPU_BANDWIDTH
               if _mobile(key) == mobile
               and re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", name, re.I)]
    return max(matches, key=len) if matches else None


def _mobile(name: str) -> bool:
    return any(word in name.lower() for word in MOBILE_WORDS)

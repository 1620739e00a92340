"""Hostile inputs built in the tests: a snapshot whose every value a person would see
carries terminal control sequences, and helpers that say whether output is clean.

The machine is the guide's (tests/launch_fixtures.py, real fixtures put together); only
the values are poisoned, the way a snapshot attached to a bug report could be.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from launch_fixtures import QWEN_PATH, guide_machine

# A window-title set, a clear-screen, a carriage return and a forged line, a one-byte
# CSI (C1), DEL, a right-to-left override and a lone surrogate.
POISON = ("\x1b]0;owned\x07\x1b[2J\r  [pass] forged: all good\n  [pass] forged too"
          "\x9b31m\x7f\u202etxt.exe\ud800")
FILE_POISON = POISON.replace("\ud800", "")  # a file holds bytes: no surrogate to write
# What must never reach a terminal: every C0 control but the newline (the layout's own
# newlines are the only ones), DEL, C1, bidi controls and surrogates.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e"
                    "\u2066-\u2069\ud800-\udfff]")


def unsafe_in(text: str) -> list[str]:
    """The unsafe characters found in ``text`` (empty when it is clean)."""
    return UNSAFE.findall(text)


def poisoned_machine(root: Path) -> Path:
    """The guide's machine with POISON in the GPU's name, a process's name and command
    line, a CPU governor, the CPU model, the DMI product name and the model's name."""
    guide_machine(root)
    nvml = json.loads((root / "nvml.json").read_text())
    nvml["devices"][0]["name"] = "NVIDIA GeForce RTX 4070" + POISON
    nvml["devices"][0]["processes"].append(
        {"pid": 777, "name": "firefox" + POISON, "used_bytes": 3 * 1024**3})
    (root / "nvml.json").write_text(json.dumps(nvml))
    meta = json.loads((root / "snapshot.json").read_text())
    server = next(p for p in meta["processes"] if p["name"] == "llama-server")
    server["cmdline"][-1] = "8080" + POISON
    server["name"] = "llama-server"
    (root / "snapshot.json").write_text(json.dumps(meta))
    governors = sorted(root.glob("fs/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor"))
    for governor in governors[:2]:
        governor.write_text("powersave" + FILE_POISON + "\n")
    cpuinfo = root / "fs/proc/cpuinfo"
    cpuinfo.write_text(cpuinfo.read_text().replace(
        "model name\t: ", "model name\t: \x1b[2J\x1b]0;cpu\x07"))
    product = root / "fs/sys/class/dmi/id/product_name"
    product.parent.mkdir(parents=True, exist_ok=True)
    product.write_text("KVM" + FILE_POISON + "\n")
    models = json.loads((root / "model.json").read_text())
    models[QWEN_PATH]["name"] = "Qwen3" + POISON
    (root / "model.json").write_text(json.dumps(models))
    return root

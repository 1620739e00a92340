"""How much RAM the model needs on this machine: what the GPU cannot hold.

A first estimate shared by the hugepage and swap checks; the launch work
replaces it with a full memory plan from the real GGUF and the llama-server build.
"""

from __future__ import annotations

from dataclasses import dataclass

from .facts import Facts, FactsError

GIB = 1024**3
FIT_TARGET_BYTES = 1024 * 1024**2  # llama-server --fit-target default: 1024 MiB per device
OS_HEADROOM_BYTES = 4 * GIB  # kernel, desktop and page cache for everything else


@dataclass
class RamBudget:
    model_bytes: int  # weights + KV cache
    vram_usable_bytes: int
    ram_for_model_bytes: int
    headroom_bytes: int
    basis: str

    @property
    def ram_needed_bytes(self) -> int:
        return self.ram_for_model_bytes + self.headroom_bytes


def ram_budget(facts: Facts) -> RamBudget:
    model = facts.model
    total = model.file_bytes + model.kv_cache_bytes
    try:
        gpus = facts.gpus
    except FactsError:
        gpus = []
    usable = 0
    for gpu in gpus:
        free = gpu.get("memory_free_bytes")
        if isinstance(free, int):
            usable += max(0, free - FIT_TARGET_BYTES)
    basis = (
        f"{model.name} weights + KV cache at ctx {model.ctx_size}"
        + (f", minus {len(gpus)} GPU(s) free VRAM less the 1 GiB --fit-target margin" if gpus
           else ", all in RAM (no usable NVIDIA GPU)")
        + ", plus 4 GiB for the OS"
    )
    return RamBudget(total, usable, max(0, total - usable), OS_HEADROOM_BYTES, basis)


def gib(value: int | None) -> str:
    """Bytes for people: ``44.7 GiB``."""
    return "unknown" if value is None else f"{value / GIB:.1f} GiB"

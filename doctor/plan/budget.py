"""How much RAM the model needs on this machine: what the GPU cannot hold.

A first estimate shared by the hugepage and swap checks; the launch work
replaces it with a full memory plan from the real GGUF and the llama-server build.
"""

from __future__ import annotations

from dataclasses import dataclass

from q3cn_doctor.facts import Facts, FactsError
from q3cn_doctor.facts.model import FIT_TARGET_MIB, GIB, MIB, OS_HEADROOM_BYTES

FIT_TARGET_BYTES = FIT_TARGET_MIB * MIB  # llama-server --fit-target default, per device


@dataclass
class RamBudget:
    model_bytes: int  # weights + KV cache
    vram_usable_bytes: int
    ram_for_model_bytes: int
    headroom_bytes: int
    basis: str  # how ram_for_model_bytes was reached (the OS headroom is not in it)

    @property
    def ram_needed_bytes(self) -> int:
        return self.ram_for_model_bytes + self.headroom_bytes

    @property
    def needed_basis(self) -> str:
        """How ram_needed_bytes was reached: the basis plus the OS headroom."""
        return f"{self.basis}, plus {self.headroom_bytes // GIB} GiB for the OS"


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
    )
    return RamBudget(total, usable, max(0, total - usable), OS_HEADROOM_BYTES, basis)


def gib(value: int | None) -> str:
    """Bytes for people: ``44.7 GiB``."""
    return "unknown" if value is None else f"{value / GIB:.1f} GiB"

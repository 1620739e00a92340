"""Pinned host memory for the experts in RAM.

Where a CUDA build reads the model into RAM (--no-mmap, --load-mode mlock), llama.cpp puts
the CPU layers' weights in CUDA_Host buffers: page-locked memory from cudaMallocHost,
which the GPU copies from at full PCIe speed when prompt processing moves experts to it.
Where that allocation fails, llama.cpp warns "failed to allocate ... MiB of pinned
memory" and falls back to pageable memory (llama.cpp PR #1233; WSL2 limits pinned memory,
issue #1230); ``GGML_CUDA_NO_PINNED`` turns it off on purpose.
"""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.plan.placement import OS_HEADROOM_BYTES, placement
from q3cn_doctor.units import gib

NOT_PRICED = ("Not priced in tok/s: generation reads the experts in place on the CPU; "
              "pinning speeds the prompt's copies of them to the GPU.")


@check("gpu.pinned", "The experts in RAM can sit in pinned (page-locked) CUDA host memory")
def pinned(ctx: Context):
    build = ctx.facts.get("cuda_build")
    if not ctx.facts.get("gpus") or build is None or "cuda" not in build.backends:
        return ctx.finding(SKIP, "No CUDA build on an NVIDIA GPU: no CUDA host buffers",
                           observed="backends: " + (", ".join(getattr(build, "backends", []))
                                                    or "none"))
    plan = placement(ctx.facts)
    if not plan.ram_bytes:
        return ctx.finding(PASS, "The model fits in VRAM: no weights in host memory",
                           observed=plan.basis)
    total = ctx.facts.memory.total_bytes
    read_in = plan.fits_ram is not False
    observed = (f"the model's RAM part {gib(plan.ram_bytes)} of {gib(total)} RAM; the plan "
                + ("reads it into RAM (CUDA_Host buffers)" if read_in else
                   "maps it from its file (it does not fit RAM with headroom)"))
    if not read_in:
        return ctx.finding(INFO, "The experts stay mapped from the file: pageable memory",
                           observed=observed, impact=NOT_PRICED)
    environ = ctx.host.environ()
    if environ.get("GGML_CUDA_NO_PINNED"):
        return ctx.finding(
            WARN, "GGML_CUDA_NO_PINNED turns pinned host memory off",
            observed=f"{observed}; GGML_CUDA_NO_PINNED={environ['GGML_CUDA_NO_PINNED']}",
            recommended="Unset GGML_CUDA_NO_PINNED unless pinned allocations fail here.",
            impact="Prompt processing copies the experts to the GPU from pageable memory, "
                   "through a staging buffer. " + NOT_PRICED)
    system = ctx.facts.get("system")
    if system is not None and system.virtualization.kind == "wsl":
        return ctx.finding(
            WARN, f"WSL2 may refuse {gib(plan.ram_bytes)} of pinned memory",
            observed=observed,
            recommended="If llama-server logs \"failed to allocate ... MiB of pinned "
                        "memory\", it has fallen back to pageable memory: raise the WSL2 VM's "
                        "memory in .wslconfig, or run on Linux directly.",
            impact="WSL2 limits page-locked memory (llama.cpp issue #1230). " + NOT_PRICED)
    if total is not None and plan.ram_bytes + OS_HEADROOM_BYTES > total:
        return ctx.finding(
            WARN, "Too little RAM to pin the experts", observed=observed,
            recommended="Free RAM, or let llama.cpp fall back (GGML_CUDA_NO_PINNED=1 skips the "
                        "failing attempt).",
            impact="cudaMallocHost fails and llama.cpp falls back to pageable memory. "
                   + NOT_PRICED)
    return ctx.finding(
        PASS, f"The {gib(plan.ram_bytes)} in RAM go into pinned CUDA host buffers",
        observed=observed)

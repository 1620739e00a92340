"""Instruction sets: AVX2 and the rest of what llama.cpp's CPU kernels are written for.

Without AVX2, ggml's quantised dot products fall back to 128-bit AVX/SSE code,
several times slower. A build with all CPU variants (GGML_CPU_ALL_VARIANTS:
``libggml-cpu-haswell.so``, ``-skylakex``, ``-alderlake``...) loads the best one
the CPU can run; a build that ships fewer variants may leave features unused.
"""

from __future__ import annotations

import re

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.facts.cpu import CpuFacts
from q3cn_doctor.facts.gpu import find_server
from q3cn_doctor.host.base import Host

X86_LABELS = (("avx", "AVX"), ("avx2", "AVX2"), ("fma", "FMA"), ("f16c", "F16C"),
              ("avx_vnni", "AVX-VNNI"), ("avx512f", "AVX-512F"), ("avx512_vnni", "AVX512-VNNI"),
              ("avx512_bf16", "AVX512-BF16"), ("amx", "AMX"))
ARM_LABELS = (("neon", "NEON"), ("dotprod", "dot product"), ("i8mm", "I8MM"), ("fp16", "FP16"),
              ("sve", "SVE"), ("sve2", "SVE2"))

# ggml-cpu's x86 variants (ggml/src/CMakeLists.txt, ggml_add_cpu_backend_variant) and the
# weight each feature adds to the loader's score (cpu-feats.cpp): the best that runs wins.
_FEATURES = {  # ggml name -> (facts.cpu.isa keys, score weight)
    "FMA": (("fma",), 1), "F16C": (("f16c",), 2), "SSE42": (("sse4_2",), 4),
    "BMI2": (("bmi2",), 8), "AVX": (("avx",), 16), "AVX2": (("avx2",), 32),
    "AVX_VNNI": (("avx_vnni",), 64),
    "AVX512": (("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"), 128),
    "AVX512_VBMI": (("avx512vbmi",), 256), "AVX512_BF16": (("avx512_bf16",), 512),
    "AVX512_VNNI": (("avx512_vnni",), 1024), "AMX_INT8": (("amx",), 2048),
}
_HASWELL = ("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2")
_SKYLAKEX = _HASWELL + ("AVX512",)
VARIANTS = {
    "x64": (), "sse42": ("SSE42",), "sandybridge": ("SSE42", "AVX"),
    "ivybridge": ("SSE42", "AVX", "F16C"), "piledriver": ("SSE42", "AVX", "F16C", "FMA"),
    "haswell": _HASWELL, "alderlake": _HASWELL + ("AVX_VNNI",), "skylakex": _SKYLAKEX,
    "cannonlake": _SKYLAKEX + ("AVX512_VBMI",), "cascadelake": _SKYLAKEX + ("AVX512_VNNI",),
    "icelake": _SKYLAKEX + ("AVX512_VBMI", "AVX512_VNNI"),
    "cooperlake": _SKYLAKEX + ("AVX512_VNNI", "AVX512_BF16"),
    "zen4": _SKYLAKEX + ("AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16"),
    "sapphirerapids": _SKYLAKEX + ("AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "AMX_INT8"),
}


def _has(cpu: CpuFacts, feature: str) -> bool:
    return all(cpu.isa.get(key) for key in _FEATURES[feature][0])


def score(cpu: CpuFacts, variant: str) -> int:
    """The loader's score of a variant on this CPU: 0 where it cannot run."""
    needed = VARIANTS[variant]
    if not all(_has(cpu, feature) for feature in needed):
        return 0
    return 1 + sum(_FEATURES[feature][1] for feature in needed)


def best_variant(cpu: CpuFacts, variants: list[str]) -> str | None:
    scored = [(score(cpu, v), v) for v in variants if v in VARIANTS]
    scored = [pair for pair in scored if pair[0] > 0]
    return max(scored)[1] if scored else None


def build_variants(host: Host, server: str) -> list[str]:
    """The ggml-cpu variants beside llama-server (and in its ../lib): none for a build with
    one CPU backend, whose ISA was fixed when it was compiled."""
    here = server.rsplit("/", 1)[0] or "/"
    found = set()
    for directory in (here, here + "/../lib", here + "/../lib64"):
        for path in host.glob(directory + "/libggml-cpu-*.so"):
            match = re.search(r"libggml-cpu-([\w.]+)\.so$", path)
            if match:
                found.add(match.group(1))
    return sorted(found)


@check("cpu.isa", "AVX2 and the other instruction sets llama.cpp uses; the build's CPU backends")
def isa(ctx: Context):
    cpu = ctx.facts.cpu
    if cpu.arch == "arm":
        return _arm(ctx, cpu)
    if cpu.arch != "x86":
        return ctx.finding(
            SKIP, "Instruction sets not checked",
            observed=f"this check knows x86 and ARM; this CPU is {cpu.arch or 'unknown'}")
    if cpu.isa.get("avx2") is None:
        return ctx.finding(SKIP, "Instruction sets unknown",
                           observed="/proc/cpuinfo has no flags line")
    have = [label for key, label in X86_LABELS if cpu.isa.get(key)]
    lacking = [label for key, label in X86_LABELS if cpu.isa.get(key) is False]
    observed = f"has {', '.join(have) or 'none of them'}; lacks {', '.join(lacking) or 'none'}"
    findings = []
    if not cpu.isa.get("avx2"):
        advice = ("Keep as many layers as possible on the GPU; on the CPU side, a CPU with "
                  "AVX2 (Intel Haswell, 2013, and later; AMD Excavator, 2015, and Zen) runs "
                  "llama.cpp several times faster.")
        system = ctx.facts.get("system")
        if system is not None and system.virtualization.in_vm:
            advice = ("This is a VM: pass the host CPU model through (QEMU/libvirt "
                      "`-cpu host` or host-passthrough, Proxmox CPU type 'host'); a "
                      "generic virtual CPU hides AVX2 even where the host has it. " + advice)
        findings.append(ctx.finding(
            WARN, "The CPU lacks AVX2", observed=observed, recommended=advice, manual=[advice],
            action="host CPU passthrough" if system is not None and system.virtualization.in_vm
            else "a CPU with AVX2",
            impact="ggml's quantised dot products fall back to 128-bit AVX/SSE code without AVX2: "
                   "prompt processing and CPU-side generation run several times slower."))
    else:
        findings.append(ctx.finding(PASS,
                                    "AVX2 and FMA present" if cpu.isa.get("fma")
                                    else "AVX2 present",
                                    observed=observed))
    build = _build(ctx, cpu)
    if build is not None:
        findings.append(build)
    return findings


def _arm(ctx: Context, cpu: CpuFacts):
    if cpu.isa.get("neon") is None:
        return ctx.finding(SKIP, "Instruction sets unknown",
                           observed="/proc/cpuinfo has no Features line")
    have = [label for key, label in ARM_LABELS if cpu.isa.get(key)]
    observed = f"has {', '.join(have) or 'none of them'}"
    if not cpu.isa.get("dotprod"):
        return ctx.finding(
            INFO, "The CPU has no dot-product instructions (Armv8.0)", observed=observed,
            recommended="Offload to a GPU where there is one; Armv8.2 cores and later "
                        "(Cortex-A55/A76 on) run llama.cpp's quantised kernels much faster.",
            impact="Without SDOT/UDOT, ggml's int8 dot products take several NEON instructions "
                   "each.")
    return ctx.finding(PASS, "NEON and dot-product instructions present", observed=observed)


def _build(ctx: Context, cpu: CpuFacts):
    server, _ = find_server(ctx.host, ctx.options)
    if server is None:
        return None
    variants = build_variants(ctx.host, server)
    if not variants:
        return None  # one CPU backend: its ISA is fixed at build time and not visible here
    known = [v for v in variants if v in VARIANTS]
    loaded = best_variant(cpu, known)
    possible = best_variant(cpu, list(VARIANTS))
    observed = (f"{server}: CPU backends {', '.join(variants)}; on this CPU ggml loads "
                f"{'libggml-cpu-' + loaded + '.so' if loaded else 'none of them'}")
    if known and loaded is None:
        return ctx.finding(
            WARN, "None of llama-server's CPU backends runs on this CPU", observed=observed,
            recommended="Install a build with all CPU variants (the release archives, or "
                        "-DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON), or build on this "
                        "machine with -DGGML_NATIVE=ON.",
            impact="llama-server stops with 'no CPU backend found' before it loads the model.",
            item="build")
    if loaded and possible and score(cpu, possible) > score(cpu, loaded):
        missing = [f for f in VARIANTS[possible] if f not in VARIANTS[loaded]]
        names = ", ".join(missing)
        return ctx.finding(
            INFO, f"llama-server's CPU backends leave {names} unused",
            observed=observed
                     + f"; this CPU could run libggml-cpu-{possible}.so",
            recommended=f"Add libggml-cpu-{possible}.so (a build with -DGGML_CPU_ALL_VARIANTS=ON "
                        "ships it) or build on this machine with -DGGML_NATIVE=ON.",
            impact="Wider or fused instructions speed up prompt processing most; token generation "
                   "is bound by memory bandwidth and gains less.",
            item="build")
    return ctx.finding(PASS, f"llama-server loads its best CPU backend for this CPU ({loaded})",
                       observed=observed, item="build")

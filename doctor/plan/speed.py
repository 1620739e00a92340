"""How fast the model generates on this machine: the one tok/s estimate.

Every tok/s the doctor quotes comes from here. ``speed(facts)`` is this run's estimate;
``what_if(facts, **changes)`` is the same model with named inputs changed, and
``cost(facts, **changes)`` the difference, the tok/s a problem costs. The time per token
is plan/roofline.py's formula over the run as it will really be:

- the placement (plan/placement.py): the user's -ngl/--n-cpu-moe/-ot/-ts where given,
  else the fit-style plan; each GPU's share and the CPU<->GPU hand-overs of a token;
- CPU-only where the build cannot use the GPU (a CPU build, a CUDA runtime newer than the
  driver supports, no usable GPU, ``--device none``): everything read from RAM;
- disk-bound where the weights and KV cache exceed RAM: with mmap the part that does not
  fit is read from storage for every token (an estimate where the storage's read speed
  is known, else "far below");
- the RAM's theoretical peak (one NUMA node's unless llama.cpp spreads over all, a
  measured figure where --measure ran), the generation threads (SMT siblings at part
  pace), each GPU's peak from NVML or the table (plan/gpu_bandwidth.py);
- the context depth: tok/s at an empty context, and at the planned one (the KV cache read
  per token).
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct, field
from msgspec.structs import asdict, replace
from q3cn_doctor.facts import Facts, FactsError
from q3cn_doctor.facts.gpu import capability_text
from q3cn_doctor.facts.model import ModelFacts, cache_bytes_per_value, int_arg, kv_cache_bytes
from q3cn_doctor.plan.gpu_bandwidth import gpu_bandwidth
from q3cn_doctor.plan.placement import Placement, at_ctx, hidden_gpus, place, usable_gpus
from q3cn_doctor.plan.placement_flags import (
    NUMA_FLAGS,
    THREAD_FLAGS,
    parse_flags,
    without_placement,
)
from q3cn_doctor.plan.roofline import RANGE_ERROR, SMT_PACE, Work, token_ms
from q3cn_doctor.records import plain
from q3cn_doctor.units import gib

GPU, CPU_ONLY, DISK_BOUND = "gpu", "cpu-only", "disk-bound"
PROBE_SHARE = 0.8  # a multi-threaded read probe reaches about this share of the peak
DEFAULT_THREADS = 8  # where the CPU facts are missing
FAST_STORAGE_BYTES_S = 7e9  # a PCIe 4.0 NVMe drive: the best a disk-bound run can hope for

# The inputs what_if takes (an unknown one is a TypeError: a programming error).
WHAT_IF_KEYS = {
    "ram_mts": "the RAM's configured speed in MT/s (e.g. its rated speed)",
    "ram_channels": "64-bit memory channels in use",
    "ram_bytes_per_s": "a measured RAM read bandwidth (bytes/s) instead of the facts'",
    "threads": "generation threads (e.g. a CPU quota's CPUs)",
    "smt_threads": "threads sharing a core with another thread",
    "cpu_only": "True: the build cannot use the GPU; False: it can",
    "vram_free_bytes": "free VRAM: one int for all GPUs (spread by their share) or a list",
    "numa_policy": "llama.cpp --numa: None, 'distribute', 'isolate' or 'numactl'",
    "swap_bound": "True: the model pages from disk; False: it stays in RAM",
    "storage_bytes_per_s": "the model file's storage read speed (bytes/s)",
    "ctx_depth": "tokens already in the context when the token is generated",
    "ctx_size": "the planned context (--ctx-size): the KV cache the placement makes room for",
    "placement_args": "the user's placement flags (-ngl, --n-cpu-moe, -ot, -ts...)",
}


class SpeedEstimate(Struct):
    """Generation tokens/s, its range, what the run is bound by, and where the time goes."""

    tok_s: float | None  # None: unknown (no RAM figure, or paging from a disk of unknown speed)
    low: float | None  # the range from the cross-validated error of the calibration
    high: float | None
    mode: str  # "gpu", "cpu-only" or "disk-bound"
    ms: dict[str, float]  # per token: {"ram", "vram", "fixed", "transitions"} (+ "disk")
    basis: str
    ctx_depth: int = 0  # the depth tok_s is for
    ctx_size: int = 0  # the planned context
    tok_s_at_ctx: float | None = None  # at a context filled to ctx_size
    ram_bytes_per_s: float | None = None  # the RAM peak the estimate used
    gpu_bytes_per_s: list[float] = field(default_factory=list)  # each GPU's peak

    def to_json(self) -> dict:
        return plain(self)

    def text(self) -> str:
        """``~37 tok/s (31-43)``, or what is known instead."""
        if self.tok_s is None:
            return ("far below the RAM-bound speed: pages from disk" if self.mode == DISK_BOUND
                    else "unknown")
        return f"~{tok(self.tok_s)} tok/s ({tok(self.low)}-{tok(self.high)})"


def tok(value: float | None) -> str:
    """A tok/s figure as the report prints it: one decimal below 10, whole above."""
    if value is None:
        return "?"
    return f"{value:.1f}" if abs(value) < 10 else f"{value:.0f}"


def speed(facts: Facts) -> SpeedEstimate:
    """This run's estimate (built once; FactsError where the model facts failed)."""
    return facts.derived("speed", lambda: _estimate(facts, {}))


def what_if(facts: Facts, **changes: Any) -> SpeedEstimate:
    """The same model with the named inputs changed (WHAT_IF_KEYS)."""
    unknown = sorted(set(changes) - set(WHAT_IF_KEYS))
    if unknown:
        raise TypeError(f"what_if() got unknown inputs {unknown}; it takes "
                        f"{sorted(WHAT_IF_KEYS)}")
    return _estimate(facts, changes)


def cost(facts: Facts, **changes: Any) -> float | None:
    """``what_if(facts, **changes).tok_s - speed(facts).tok_s``: the tok/s a problem costs
    (positive: fixing it gains that much); None where either is unknown."""
    try:
        return difference(speed(facts), what_if(facts, **changes))
    except FactsError:
        return None


def difference(now: SpeedEstimate, then: SpeedEstimate) -> float | None:
    """``then.tok_s - now.tok_s``, None where either is unknown."""
    if now.tok_s is None or then.tok_s is None:
        return None
    return round(then.tok_s - now.tok_s, 1)


def compare(now: SpeedEstimate, then: SpeedEstimate, how: str, as_is: str = "now") -> str:
    """One sentence a finding quotes: ``The speed model expects ~30 tok/s (25-36) now and
    ~37 at 6000 MT/s: 7 tok/s lost (33 ms per token: ...)``; ``as_is`` names the first run."""
    gained = difference(now, then)
    if gained is None:
        return (f"The speed model cannot price this: {as_is} {now.text()}, {how} "
                f"{then.text()}.")
    if gained >= 0.1:
        verdict = f"{tok(gained)} tok/s lost"
    elif gained <= -0.1:
        verdict = f"it would be {tok(-gained)} tok/s slower"
    else:
        verdict = "no measurable difference"
    return (f"The speed model expects {now.text()} {as_is} and ~{tok(then.tok_s)} {how}: "
            f"{verdict} ({now.basis.split(';')[0]}).")


# -- the run as it will be ------------------------------------------------------------------

def cpu_only_reason(facts: Facts, args: list[str]) -> str | None:
    """Why this run cannot use a GPU, or None where it can."""
    if parse_flags(args).no_gpu:
        return "--device none"
    hidden = hidden_gpus(facts)
    if hidden and not usable_gpus(facts):
        return (f"the build's CUDA {facts.cuda_build.runtime_major} runtime has no kernels "
                f"for {capability_text(hidden[0])}")
    if not usable_gpus(facts):
        return "no usable NVIDIA GPU"
    build = facts.get("cuda_build")
    if build is None or build.server is None or build.server in build.unread:
        return None
    if not build.backends:
        return f"{build.server} is a CPU-only build"
    nvml = facts.get("nvml")
    driver = getattr(nvml, "cuda_driver_version", None) if nvml is not None else None
    if ("cuda" in build.backends and build.runtime_major and isinstance(driver, int)
            and build.runtime_major > driver // 1000):
        return (f"the build needs CUDA {build.runtime_major}.x; the driver supports only CUDA "
                f"{driver // 1000}.{driver % 1000 // 10}")
    return None


def _args(facts: Facts, changes: dict) -> list[str]:
    args = list(facts.options.server_args)
    if "placement_args" in changes:
        args = without_placement(args) + list(changes["placement_args"] or [])
    return args


def _gpus(facts: Facts, changes: dict) -> list[dict]:
    gpus = usable_gpus(facts)
    free = changes.get("vram_free_bytes")
    if free is None or not gpus:
        return gpus
    if isinstance(free, (list, tuple)):
        values = [int(v) for v in free] + [int(g["memory_free_bytes"]) for g in gpus[len(free):]]
    else:
        now = sum(int(g["memory_free_bytes"]) for g in gpus) or 1
        values = [int(free * int(g["memory_free_bytes"]) / now) for g in gpus]
    return [{**g, "memory_free_bytes": v} for g, v in zip(gpus, values)]


def _ram_peak(facts: Facts, changes: dict) -> tuple[float | None, str]:
    """The peak the CPU side reads at, before NUMA: the configured speed x channels (as the
    what-if changes them), lowered where a measured read falls short of it."""
    memory = facts.get("memory")
    mts = getattr(memory, "configured_mts", None)
    channels = getattr(memory, "channels", None)
    theoretical = getattr(memory, "theoretical_bytes_per_s", None)
    measured = changes.get("ram_bytes_per_s") or (
        (getattr(memory, "measured", None) or {}).get("bytes_per_s"))
    if theoretical and mts and changes.get("ram_mts"):
        theoretical *= changes["ram_mts"] / mts
        mts = changes["ram_mts"]
    if theoretical and channels and changes.get("ram_channels"):
        theoretical *= changes["ram_channels"] / channels
        channels = changes["ram_channels"]
    if measured and (not theoretical or measured < theoretical * PROBE_SHARE):
        peak = measured / PROBE_SHARE
        return peak, (f"measured {measured / 1e9:.1f} GB/s read (taken as {PROBE_SHARE:.0%} "
                      f"of a {peak / 1e9:.0f} GB/s peak)")
    if not theoretical:
        return None, "RAM bandwidth unknown (no module listing and not measured)"
    how = (f"{mts} MT/s x {channels} channel(s) x 8 bytes" if mts and channels
           else "theoretical")
    return float(theoretical), f"{theoretical / 1e9:.1f} GB/s peak ({how})"


def _numa(facts: Facts, args: list[str], changes: dict) -> tuple[int, str | None]:
    """(NUMA nodes the CPU plan spans, llama.cpp's --numa policy: the what-if's, else the
    user's arguments'; llama.cpp sets none by itself)."""
    cpu = facts.get("cpu")
    nodes = len({frozenset(n.cpus) for n in getattr(cpu, "numa", []) if n.cpus}) or 1
    if "numa_policy" in changes:
        return nodes, changes["numa_policy"]
    given = [args[i + 1] for i, a in enumerate(args[:-1]) if a in NUMA_FLAGS]
    return nodes, given[-1] if given else None


def _threads(facts: Facts, args: list[str], changes: dict) -> tuple[float, str]:
    """(effective generation threads, basis): the user's -t, else the CPU plan's."""
    from q3cn_doctor.plan.cpu import plan_for

    cores = planned = None
    try:
        plan = plan_for(facts)
        if plan.cpus:  # without known CPUs the plan sets no threads: llama.cpp picks
            planned, cores = plan.threads, len(plan.generation_cpus) or None
    except (FactsError, ValueError, AttributeError):
        pass
    planned = planned or getattr(facts.get("cpu"), "physical_cores", None)
    threads = changes.get("threads") or int_arg(args, *THREAD_FLAGS) or planned \
        or DEFAULT_THREADS
    smt = changes.get("smt_threads")
    if smt is None:
        smt = max(0, threads - cores) if cores else 0
    effective = effective_threads(threads, cores, smt)
    if smt:
        return effective, (f"{threads} threads, {smt} sharing a core (the team waits for "
                           f"those, at {SMT_PACE:.0%} pace)")
    return effective, f"{threads} threads"


def _depth_bytes(model: ModelFacts, depth: int) -> int:
    """The KV cache one token reads at ``depth`` tokens of context."""
    if depth <= 0:
        return 0
    return kv_cache_bytes(asdict(model), depth, cache_bytes_per_value(model.cache_type))


def token_work(plan: Placement, model: ModelFacts, depth: int, ram_peak: float | None,
               threads: float, gpu_peaks: list[float]) -> Work:
    """What one token does under ``plan`` at ``depth`` tokens of context: the weights each
    side reads, the KV cache where its attention layers sit, each GPU's share."""
    kv = _depth_bytes(model, depth)
    on_gpu = kv * plan.kv_gpu_share
    gpu_total = plan.gpu_bytes_per_token + on_gpu
    return Work(ram_bytes=plan.ram_bytes_per_token + kv - on_gpu, ram_peak=ram_peak,
                threads=threads, gpu_bytes=[gpu_total * share for share in plan.gpu_shares],
                gpu_peaks=gpu_peaks, row_split=plan.split_mode == "row",
                transitions=plan.transitions)


def effective_threads(threads: int, cores: int | None, smt: int | None = None) -> float:
    """Generation threads as the memory sees them: llama.cpp gives each thread an equal
    share and waits for the last, so once any thread shares a core (``smt`` of them; by
    default those beyond ``cores``) the whole team runs at that thread's pace."""
    if smt is None:
        smt = max(0, threads - cores) if cores else 0
    return threads * SMT_PACE if smt else float(threads)


class _Run(Struct):
    """The run as it will be: the placement, the machine's rates, what binds it."""

    model: ModelFacts
    plan: Placement
    mode: str
    why: str  # why CPU-only or disk-bound ("" for a GPU run)
    ram_peak: float | None
    ram_basis: str
    threads: float
    threads_basis: str
    gpu_peaks: list[float]
    gpu_basis: str
    storage: float | None  # bytes/s, where a disk-bound run's storage speed is known
    memory_total: int | None  # MemTotal

    def work(self, depth: int) -> Work:
        return token_work(self.plan, self.model, depth, self.ram_peak, self.threads,
                          self.gpu_peaks)

    def disk_ms(self) -> float | None:
        """Milliseconds a token waits on storage for the RAM part that does not fit:
        with mmap, the page cache keeps what fits and every token reads the rest."""
        if self.mode != DISK_BOUND or not self.storage:
            return None
        excess = self.plan.ram_needed_bytes - (self.memory_total or 0)
        short = min(1.0, max(0.0, excess / max(1, self.plan.ram_bytes)))
        return 1e3 * short * self.plan.ram_bytes_per_token / self.storage


def _run(facts: Facts, changes: dict) -> _Run:
    model = facts.model
    if changes.get("ctx_size"):
        model = at_ctx(model, int(changes["ctx_size"]))
    args = _args(facts, changes)
    if "cpu_only" in changes:
        why = "CPU-only (as asked)" if changes["cpu_only"] else None
    else:
        why = cpu_only_reason(facts, args)
    plan = place(facts, model, args, gpus=[] if why else _gpus(facts, changes))
    mode, note = (CPU_ONLY, why or "nothing placed on a GPU") if not plan.gpu_bytes_per_token \
        else (GPU, "")
    swap = changes.get("swap_bound", plan.fits_ram is False)
    memory = facts.get("memory")
    if swap:
        mode = DISK_BOUND
        mapped = "--no-mmap" not in args and "--mlock" not in args
        note = (f"the model's RAM part ({gib(plan.ram_needed_bytes)} with the OS) exceeds the "
                f"RAM ({gib(getattr(memory, 'total_bytes', None))}): "
                + ("with mmap, what does not fit is read from disk for every token" if mapped
                   else "without mmap it goes to swap, read back for every token, or the load "
                        "fails"))
    peak, ram_basis = _ram_peak(facts, changes)
    nodes, policy = _numa(facts, args, changes)
    if peak and nodes > 1 and policy != "distribute":
        peak /= nodes
        ram_basis += f"; one of {nodes} NUMA nodes' share (--numa {policy or 'not set'})"
    threads, threads_basis = _threads(facts, args, changes)
    readings = [gpu_bandwidth(g) for g in usable_gpus(facts)] if plan.gpus else []
    return _Run(model=model, plan=plan, mode=mode, why=note, ram_peak=peak,
                ram_basis=ram_basis, threads=threads, threads_basis=threads_basis,
                gpu_peaks=[r[0] for r in readings],
                gpu_basis="; ".join(r[1] for r in readings),
                storage=changes.get("storage_bytes_per_s"),
                memory_total=getattr(memory, "total_bytes", None))


def _tok_s(run: _Run, depth: int) -> tuple[float | None, dict[str, float]]:
    work = run.work(depth)
    ms = token_ms(work)
    if not work.known():
        return None, ms
    if run.mode == DISK_BOUND:
        disk = run.disk_ms()
        if disk is None:
            return None, ms
        ms["disk"] = disk
    return round(1e3 / sum(ms.values()), 1), ms


def _estimate(facts: Facts, changes: dict) -> SpeedEstimate:
    run = _run(facts, changes)
    depth = int(changes.get("ctx_depth") or 0)
    tok_s, ms = _tok_s(run, depth)
    at_ctx, _ = _tok_s(run, run.model.ctx_size)
    high = None
    if tok_s is None and run.mode == DISK_BOUND:
        ceiling, _ = _tok_s(replace(run, mode=GPU if run.plan.gpus else CPU_ONLY), depth)
        high = ceiling
    return SpeedEstimate(
        tok_s=tok_s,
        low=round(tok_s / (1 + RANGE_ERROR), 1) if tok_s else None,
        high=round(tok_s * (1 + RANGE_ERROR), 1) if tok_s else high,
        mode=run.mode, ms={k: round(v, 2) for k, v in ms.items()},
        basis=_basis(run, ms, tok_s, depth), ctx_depth=depth, ctx_size=run.model.ctx_size,
        tok_s_at_ctx=at_ctx, ram_bytes_per_s=run.ram_peak, gpu_bytes_per_s=run.gpu_peaks)


def _basis(run: _Run, ms: dict[str, float], tok_s: float | None, depth: int) -> str:
    """``23 ms per token: 12 from RAM, 9 from VRAM, 2 fixed`` and how each was reached."""
    names = {"ram": "from RAM", "vram": "from VRAM", "fixed": "fixed",
             "transitions": f"in {run.plan.transitions} CPU<->GPU hand-overs",
             "disk": "from disk"}
    parts = ", ".join(f"{value:.0f} {names[key]}" for key, value in
                      sorted(ms.items(), key=lambda kv: -kv[1]) if value >= 0.5)
    work = run.work(depth)
    lines = [f"{sum(ms.values()):.0f} ms per token: {parts}" if tok_s else
             "the RAM bandwidth is unknown" if not work.known() else
             "the disk's read speed is unknown: far below the RAM-bound speed"]
    if run.why:
        lines.append(f"{run.mode}: {run.why}")
    if work.ram_bytes:
        lines.append(f"RAM: {work.ram_bytes / 1e9:.2f} GB per token ({run.ram_basis}; "
                     f"{run.threads_basis})")
    if any(work.gpu_bytes):
        lines.append(f"VRAM: {sum(work.gpu_bytes) / 1e9:.2f} GB per token ({run.gpu_basis})")
    if run.plan.flags:
        lines.append(f"placement as the arguments ask: {run.plan.flags}")
    if depth:
        lines.append(f"at {depth} tokens of context (the KV cache read per token)")
    return "; ".join(lines)

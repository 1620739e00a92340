"""The time one generated token takes, from the work it does: the one formula behind every
tok/s the doctor quotes (plan/speed.py feeds it a machine; bench/bench_speed_model.py
feeds it the calibration table).

A token reads its weights once (and the KV cache up to its depth), layer by layer, on the
side each part sits on; the parts run one after another (each layer's experts wait for its
attention), so the times add:

    ms = RAM bytes / (RAM peak x RAM_FRACTION) + RAM bytes / (threads x THREAD_BYTES_S)
       + sum over GPUs of VRAM bytes / (VRAM peak x VRAM_FRACTION)
       + FIXED_MS + transitions x TRANSITION_MS

- RAM_FRACTION: the share of the RAM's theoretical peak (MT/s x 8 bytes x channels, one
  NUMA node's unless llama.cpp spreads over all) that a token's reads reach;
- THREAD_BYTES_S: what one generation thread decodes per second (dequantise and dot
  product): few threads cannot keep the memory busy;
- VRAM_FRACTION: the same for the GPU's memory (NVML's bus width x memory clock);
- FIXED_MS: every token's own cost: sampling, the graph's launch, the scheduler;
- TRANSITION_MS: each hand-over between CPU and GPU in a token's graph (--n-cpu-moe puts
  two in every layer whose experts stay in RAM): a synchronisation and a small copy.

The time is linear in the five constants' inverses, so they are fitted by least squares on
the relative error over measured runs (bench/speed_calibration.tsv, fitted and
cross-validated by bench/bench_speed_model.py; tests/test_speed_model.py holds the
constants to that fit).
"""

from __future__ import annotations

from msgspec import Struct, field

# Fitted by bench/bench_speed_model.py on bench/speed_calibration.tsv (see its header for
# the points); tests/test_speed_model.py checks these equal the fit.
RAM_FRACTION = 0.847
THREAD_BYTES_S = 24.8e9
VRAM_FRACTION = 0.782
FIXED_MS = 0.900
TRANSITION_MS = 0.1197
# The cross-validated error: 80% of the calibration points fall within this share of
# their prediction (bench/bench_speed_model.py prints it); the range quoted is that wide.
RANGE_ERROR = 0.18

SMT_PACE = 0.55  # a thread sharing its core with another runs at about this share of it


class Constants(Struct, frozen=True):
    """The speed model's fitted constants, each with a physical meaning."""
    ram_fraction: float = RAM_FRACTION
    thread_bytes_s: float = THREAD_BYTES_S
    vram_fraction: float = VRAM_FRACTION
    fixed_ms: float = FIXED_MS
    transition_ms: float = TRANSITION_MS

    @classmethod
    def from_inverse(cls, inverse: list[float]) -> Constants:
        """From the fitted coefficients of ``Work.features`` (each a time per unit)."""
        a, b, c, d, e = inverse
        return cls(ram_fraction=1 / a if a else float("inf"),
                   thread_bytes_s=1 / b if b else float("inf"),
                   vram_fraction=1 / c if c else float("inf"),
                   fixed_ms=d * 1e3, transition_ms=e * 1e3)


class Work(Struct):
    """What one token does on one machine."""

    ram_bytes: float  # read from RAM (weights on the CPU side and their KV cache)
    ram_peak: float | None  # bytes/s: the theoretical peak the CPU side can read
    threads: float  # effective generation threads (SMT siblings count at SMT_PACE)
    gpu_bytes: list[float] = field(default_factory=list)  # read from each GPU's VRAM
    gpu_peaks: list[float] = field(default_factory=list)  # bytes/s, each GPU's peak
    row_split: bool = False  # --split-mode row: the GPUs read their shares at once
    transitions: int = 0

    def features(self) -> list[float]:
        """The five quantities each constant's inverse multiplies (seconds per unit)."""
        ram = self.ram_bytes / self.ram_peak if self.ram_bytes and self.ram_peak else 0.0
        threads = self.ram_bytes / self.threads if self.ram_bytes and self.threads else 0.0
        reads = [b / p for b, p in zip(self.gpu_bytes, self.gpu_peaks) if b and p]
        vram = (max(reads) if self.row_split else sum(reads)) if reads else 0.0
        return [ram, threads, vram, 1.0, float(self.transitions)]

    def known(self) -> bool:
        """The RAM side's bandwidth is known wherever the RAM side has work."""
        return not self.ram_bytes or bool(self.ram_peak)


FITTED = Constants()  # the constants bench/bench_speed_model.py fitted


def token_ms(work: Work, constants: Constants = FITTED) -> dict[str, float]:
    """Milliseconds per token by term: {"ram", "vram", "fixed", "transitions"} (the
    threads' decode time counts with RAM: both are the CPU side's)."""
    ram, threads, vram, _, transitions = work.features()
    return {
        "ram": 1e3 * (ram / constants.ram_fraction + threads / constants.thread_bytes_s),
        "vram": 1e3 * vram / constants.vram_fraction,
        "fixed": constants.fixed_ms,
        "transitions": transitions * constants.transition_ms,
    }

"""``q3cn-doctor bench memory``: this machine's RAM read bandwidth, beside its theory.

The measurement is doctor/bandwidth.py's (threads scanning a large buffer with libc
memchr); this module adds the theoretical figure from the memory facts, the tok/s the
speed model expects at the measured figure, and optionally sysbench run the same way for
comparison.
"""

from __future__ import annotations

import re

from msgspec import Struct, field
from q3cn_doctor.host.base import Host

MIB = 2**20
AGREEMENT = 0.15  # the doctor's figure and sysbench's must agree within this share
SYSBENCH_TIMEOUT_S = 120.0
_SYSBENCH_RATE = re.compile(r"([\d.]+)\s*MiB transferred\s*\(\s*([\d.]+)\s*MiB/sec\)")


def sysbench_argv(threads: int, sysbench: str = "sysbench") -> list[str]:
    """sysbench reading 512 MiB blocks (RAM, not cache) with one thread per CPU.

    ``--memory-scope=local`` gives each thread its own block, as our measurement gives
    each thread its own slice (and llama.cpp's threads read their own rows); sysbench's
    default global scope has every thread read one shared block, which swung from 47 to
    63 GB/s between runs on the build machine while local held at 43-45.
    """
    return [sysbench, "memory", "--memory-oper=read", "--memory-block-size=512M",
            "--memory-total-size=16G", "--memory-scope=local", f"--threads={threads}", "run"]


def parse_sysbench(text: str) -> float | None:
    """Bytes/s from sysbench memory's ``16384.00 MiB transferred (8130.53 MiB/sec)``."""
    match = _SYSBENCH_RATE.search(text or "")
    return float(match.group(2)) * MIB if match else None


class MemoryBench(Struct):
    """A RAM bandwidth measurement beside what the DIMMs should give."""
    measured: dict
    theoretical_bytes_per_s: float | None
    theoretical_basis: str
    configured_mts: int | None
    channels: int | None
    tokens_per_s: float | None
    model: str
    sysbench_bytes_per_s: float | None = None
    sysbench_note: str | None = None
    notes: list[str] = field(default_factory=list)
    under_load: dict = field(default_factory=dict)  # clocks, throttling, temperatures

    @property
    def agreement(self) -> float | None:
        """Our figure over sysbench's."""
        if not self.sysbench_bytes_per_s:
            return None
        return self.measured["bytes_per_s"] / self.sysbench_bytes_per_s

    def to_json(self) -> dict:
        return {
            "measured": self.measured,
            "theoretical_bytes_per_s": self.theoretical_bytes_per_s,
            "theoretical_basis": self.theoretical_basis,
            "configured_mts": self.configured_mts,
            "channels": self.channels,
            "model": self.model,
            "tokens_per_s_ceiling": self.tokens_per_s,
            "sysbench_bytes_per_s": self.sysbench_bytes_per_s,
            "sysbench_note": self.sysbench_note,
            "agreement": self.agreement,
            "under_load": self.under_load,
        }

    def text(self) -> str:
        measured = self.measured["bytes_per_s"]
        lines = [f"Measured read bandwidth: {measured / 1e9:.1f} GB/s "
                 f"({self.measured['method']}; {self.measured['seconds']:.1f} s)"]
        passes = ", ".join(f"{rate / 1e9:.1f}" for rate in self.measured["pass_bytes_per_s"])
        lines.append(f"  passes (GB/s): {passes}")
        if self.theoretical_bytes_per_s:
            lines.append(f"Theoretical: {self.theoretical_bytes_per_s / 1e9:.1f} GB/s "
                         f"({self.theoretical_basis}); measured is "
                         f"{measured / self.theoretical_bytes_per_s:.0%} of it")
        else:
            lines.append(f"Theoretical: unknown ({self.theoretical_basis})")
        if self.tokens_per_s:
            lines.append(f"At this bandwidth the speed model expects about "
                         f"{self.tokens_per_s:.0f} tok/s for {self.model}")
        if self.sysbench_bytes_per_s:
            agreement = self.agreement or 0
            verdict = "agree" if abs(agreement - 1) <= AGREEMENT else "DISAGREE"
            lines.append(f"sysbench memory read: {self.sysbench_bytes_per_s / 1e9:.1f} GB/s; "
                         f"ours/sysbench = {agreement:.2f} ({verdict} within "
                         f"{AGREEMENT:.0%})")
        elif self.sysbench_note:
            lines.append(f"sysbench: {self.sysbench_note}")
        lines.extend(self.notes)
        return "\n".join(lines)


def _under_load(facts, watched: dict) -> str:
    """One line on the CPUs during the measurement (cpu.clocks and cpu.thermal judge it under
    `check --measure`)."""
    from q3cn_doctor.host.sampler import clock_share

    thermal = facts.get("thermal")
    share = clock_share(watched, thermal.max_khz if thermal else {})
    events = sum(n for n in watched.get("throttle_delta", {}).values() if n > 0)
    hottest = max(watched.get("zone_peak_mc", {}).values(), default=None)
    parts = [f"clocks at {share:.0%} of their maximum" if share is not None else
             "clocks not readable", f"{events} thermal-throttle events"]
    if hottest:
        parts.append(f"hottest zone {hottest / 1000:.0f} C")
    return "Under this load: " + ", ".join(parts) + "."


def run_memory_bench(host: Host, facts, threads: int | None = None,
                     buffer_bytes: int | None = None, sysbench: bool = False) -> MemoryBench:
    """Measure this machine (a live host), with the facts for the theoretical figure."""
    from q3cn_doctor.facts import FactsError
    from q3cn_doctor.host import bandwidth
    from q3cn_doctor.plan.speed import DISK_BOUND, what_if

    threads = threads or bandwidth.plan_threads(host)
    buffer_bytes = buffer_bytes or bandwidth.plan_buffer_bytes(host)
    from q3cn_doctor.host.sampler import watch_load

    result, watched = watch_load(lambda: bandwidth.measure_read_bandwidth(buffer_bytes,
                                                                         threads))
    notes: list[str] = [_under_load(facts, watched)]
    try:
        memory = facts.memory
        theoretical, configured, channels = (memory.theoretical_bytes_per_s,
                                             memory.configured_mts, memory.channels)
        basis = memory.basis.get("theoretical_bytes_per_s", "unknown")
        if memory.source == "none":
            notes.append("RAM modules unknown: run `sudo q3cn-doctor bench memory` for the "
                         "theoretical figure.")
    except FactsError as exc:
        theoretical, configured, channels, basis = None, None, None, str(exc)
    try:  # the speed model at the measured bandwidth, as model.speed would quote it
        estimate = what_if(facts, ram_bytes_per_s=result.bytes_per_s)
        if estimate.tok_s is None and estimate.mode == DISK_BOUND:
            estimate = what_if(facts, ram_bytes_per_s=result.bytes_per_s, swap_bound=False)
            notes.append("The model does not fit in this machine's RAM: the tok/s above are "
                         "what it would reach in RAM; it pages from disk here, far slower.")
        tokens, name = estimate.tok_s, facts.model.name
    except FactsError:
        tokens, name = None, "the model"
    bench = MemoryBench(result.to_json(), theoretical, basis, configured, channels,
                        tokens, name, notes=[note for note in notes if note])
    bench.under_load = watched
    if sysbench:
        answer = host.run(sysbench_argv(result.threads), timeout=SYSBENCH_TIMEOUT_S,
                          budgeted=False)
        if answer.ok:
            bench.sysbench_bytes_per_s = parse_sysbench(answer.stdout)
            if bench.sysbench_bytes_per_s is None:
                bench.sysbench_note = "could not read its MiB/sec line"
        else:
            bench.sysbench_note = answer.reason() + (
                " (install it: `sudo apt-get install sysbench`)"
                if answer.state == "not-installed" else "")
    return bench

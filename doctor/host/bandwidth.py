"""Measured memory read bandwidth, and the theoretical peak to hold it against.

Token generation streams every weight from RAM once per token, so its ceiling is
the machine's multi-threaded *read* bandwidth (the theoretical peak it is held
against is ``facts.memory.theoretical_bandwidth``). This measures it in about a second
without numpy or a compiler:

- one buffer, several times the size of the last-level cache (512 MiB by default),
  so the passes read DRAM and not cache;
- one Python thread per CPU, each pinned to its CPU, each filling (first touch,
  so the pages land on its own NUMA node) and then scanning its own slice;
- the scan is libc ``memchr`` looking for a byte the buffer does not hold. It reads
  every byte exactly once, writes nothing and cannot stop early, so bytes scanned
  are bytes read; it is the C library's vectorised streaming read, and ctypes
  releases the GIL for the call, so the threads run in parallel. (``memcmp`` of two
  equal buffers reads two streams per byte compared: it needs twice the memory, and
  its figure is only honest if both streams are counted; ``memchr`` leaves no doubt.)
- the best of a few timed passes is kept, as sysbench and STREAM report.

The measurement runs in this process on this machine: only call it for a live
host. Sizing it (``plan_buffer_bytes``, ``plan_threads``) reads the machine through
the Host like everything else.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import mmap
import os
import threading
import time

from msgspec import Struct
from q3cn_doctor.host.base import Host, parse_cpu_list
from q3cn_doctor.parsers.procfs import cache_size_bytes, parse_meminfo

MIB = 2**20
DEFAULT_BUFFER_BYTES = 512 * MIB
CACHE_MULTIPLE = 4  # the buffer is at least this many times the total last-level cache
AVAILABLE_FRACTION = 4  # and at most a quarter of MemAvailable
MIN_PASS_S = 0.05  # shorter passes are repeated scans, so timer and wake-up noise stay small
FILL, NEEDLE = 0x01, 0x00  # the buffer holds FILL; memchr looks for NEEDLE, never there
BARRIER_TIMEOUT_S = 60.0  # a stuck worker must not hang the doctor


class BandwidthResult(Struct, frozen=True):
    """A read-bandwidth measurement and how it was taken."""

    bytes_per_s: float  # the best pass
    pass_bytes_per_s: tuple[float, ...]  # every timed pass, in order
    threads: int
    buffer_bytes: int
    seconds: float  # wall time of the whole measurement, allocation included
    method: str

    @property
    def gb_per_s(self) -> float:
        return self.bytes_per_s / 1e9

    def to_json(self) -> dict:
        """The facts' ``measured`` object (and ``bench memory``'s)."""
        return {"bytes_per_s": self.bytes_per_s, "pass_bytes_per_s": list(self.pass_bytes_per_s),
                "threads": self.threads, "buffer_bytes": self.buffer_bytes,
                "seconds": self.seconds, "method": self.method}


def plan_buffer_bytes(host: Host) -> int:
    """512 MiB, or 4x the total last-level cache if more, but at most 1/4 of MemAvailable."""
    size = max(DEFAULT_BUFFER_BYTES, CACHE_MULTIPLE * last_level_cache_bytes(host))
    available = parse_meminfo(host.cat("/proc/meminfo") or "").get("MemAvailable")
    if available:
        size = min(size, available // AVAILABLE_FRACTION)
    return size // MIB * MIB


def plan_threads(host: Host) -> int:
    """One thread per online CPU."""
    try:
        online = parse_cpu_list(host.cat("/sys/devices/system/cpu/online") or "")
    except ValueError:  # not a CPU list: fall back to what the OS reports
        online = []
    return len(online) or os.cpu_count() or 1


def last_level_cache_bytes(host: Host) -> int:
    """The total L3 over all its instances (one per CCD, or per socket), 0 if unknown."""
    instances: dict[str, int] = {}
    for directory in host.glob("/sys/devices/system/cpu/cpu*/cache/index3"):
        if host.cat(directory + "/level") != "3":
            continue
        size = cache_size_bytes(host.cat(directory + "/size"))
        shared = host.cat(directory + "/shared_cpu_list") or directory
        if size:
            instances[shared] = size
    return sum(instances.values())


def measure_read_bandwidth(buffer_bytes: int = DEFAULT_BUFFER_BYTES, threads: int = 1,
                           passes: int = 5, budget_s: float = 1.0) -> BandwidthResult:
    """Read bandwidth of this machine, in bytes/s, from ``passes`` timed passes.

    Timed passes stop early once ``budget_s`` is spent (at least one always runs).
    Raises OSError or MemoryError if the buffer cannot be had.
    """
    started = time.perf_counter()
    cpus = sorted(os.sched_getaffinity(0))
    threads = max(1, min(threads, len(cpus)))
    slice_bytes = max(mmap.PAGESIZE, buffer_bytes // threads // mmap.PAGESIZE * mmap.PAGESIZE)
    total = slice_bytes * threads
    libc = _libc()
    buffer = mmap.mmap(-1, total, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        with contextlib.suppress(OSError):
            buffer.madvise(mmap.MADV_HUGEPAGE)  # fewer TLB misses: the DRAM ceiling shows
    view = ctypes.c_char.from_buffer(buffer)
    try:
        rates, scans = _timed_passes(libc, ctypes.addressof(view), slice_bytes,
                                     [cpus[i % len(cpus)] for i in range(threads)],
                                     passes, budget_s)
    finally:
        del view
        buffer.close()
    return BandwidthResult(
        bytes_per_s=max(rates),
        pass_bytes_per_s=tuple(rates),
        threads=threads,
        buffer_bytes=total,
        seconds=time.perf_counter() - started,
        method=(f"{threads} threads, one pinned per CPU, each memchr-scanning its own "
                f"{slice_bytes // MIB} MiB slice of a {total // MIB} MiB buffer (reads only, "
                f"every byte once per scan); best of {len(rates)} passes of {scans} scan"
                f"{'s' if scans > 1 else ''}"),
    )


def _timed_passes(libc: ctypes.CDLL, address: int, slice_bytes: int, cpus: list[int],
                  passes: int, budget_s: float) -> tuple[list[float], int]:
    """Run the workers; return each pass's bytes/s and the scans per pass."""
    barrier = threading.Barrier(len(cpus) + 1, timeout=BARRIER_TIMEOUT_S)
    control = {"scans": 1, "stop": False}

    def worker(index: int) -> None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpus[index]})  # 0 is the calling thread on Linux
        start = address + index * slice_bytes
        libc.memset(start, FILL, slice_bytes)
        barrier.wait()
        while True:
            barrier.wait()
            if control["stop"]:
                return
            for _ in range(control["scans"]):
                libc.memchr(start, NEEDLE, slice_bytes)
            barrier.wait()

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(cpus))]
    for thread in workers:
        thread.start()
    rates: list[float] = []
    try:
        barrier.wait()  # every slice filled
        deadline = time.perf_counter() + budget_s
        while len(rates) < max(1, passes) and (not rates or time.perf_counter() < deadline):
            begin = time.perf_counter()
            barrier.wait()
            barrier.wait()
            elapsed = time.perf_counter() - begin
            if not rates and elapsed < MIN_PASS_S:  # too short to time well: scan more
                control["scans"] = math.ceil(MIN_PASS_S / max(elapsed, 1e-6))
                begin = time.perf_counter()
                barrier.wait()
                barrier.wait()
                elapsed = time.perf_counter() - begin
            rates.append(slice_bytes * len(cpus) * control["scans"] / elapsed)
    finally:
        control["stop"] = True
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        for thread in workers:
            thread.join(BARRIER_TIMEOUT_S)
    return rates, control["scans"]


def _libc() -> ctypes.CDLL:
    """The C library already loaded in this process (no search on disk)."""
    libc = ctypes.CDLL(None)
    libc.memchr.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
    libc.memchr.restype = ctypes.c_void_p
    libc.memset.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
    libc.memset.restype = ctypes.c_void_p
    return libc


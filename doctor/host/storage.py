"""How fast the model's storage reads: the first GiB of the file, timed.

With mmap, weights the kernel evicted are read back from the model's file for every
token that needs them, and every start reads the whole file: a slow or remote
filesystem (WSL2's /mnt/c, NFS, a spinning disk) shows in both. The probe drops the
range from the page cache first (``posix_fadvise(DONTNEED)``: clean pages nobody has
mapped are dropped; pages a running llama-server maps stay, and the figure is then
the page cache's, which ``cached_share`` reports from a second look with ``mincore``),
then reads it in large chunks within a time limit.

It reads the live machine's file in this process: call it for a live host only.
"""

from __future__ import annotations

import os
import time

from msgspec import Struct
from q3cn_doctor.records import plain

CHUNK_BYTES = 16 * 2**20
PROBE_BYTES = 2**30  # the first GiB
TIME_LIMIT_S = 5.0  # a spinning disk or a network share: stop early, the rate is known


class ReadResult(Struct, frozen=True):
    """A timed read of a file: bytes and seconds, and whether the page cache was
    dropped first (a cold read)."""
    bytes_read: int
    seconds: float
    dropped_cache: bool  # posix_fadvise(DONTNEED) was accepted before reading
    method: str

    @property
    def bytes_per_s(self) -> float:
        return self.bytes_read / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        return dict(plain(self), bytes_per_s=self.bytes_per_s)


def measure_read(path: str, limit_bytes: int = PROBE_BYTES,
                 time_limit_s: float = TIME_LIMIT_S) -> ReadResult:
    """Read up to ``limit_bytes`` of ``path`` from its start; OSError where it cannot."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = min(os.fstat(fd).st_size, limit_bytes)
        dropped = False
        if hasattr(os, "posix_fadvise"):
            try:
                os.posix_fadvise(fd, 0, size, os.POSIX_FADV_DONTNEED)
                os.posix_fadvise(fd, 0, size, os.POSIX_FADV_SEQUENTIAL)
                dropped = True
            except OSError:
                dropped = False
        done = 0
        start = time.perf_counter()
        while done < size and time.perf_counter() - start < time_limit_s:
            chunk = os.read(fd, min(CHUNK_BYTES, size - done))
            if not chunk:
                break
            done += len(chunk)
        seconds = time.perf_counter() - start
    finally:
        os.close(fd)
    how = (f"read the first {done / 2**20:.0f} MiB in {CHUNK_BYTES // 2**20} MiB chunks"
           + (" after dropping them from the page cache (posix_fadvise DONTNEED)" if dropped
              else " (the page cache could not be dropped: it may be the cache's speed)")
           + f", at most {time_limit_s:g} s")
    return ReadResult(done, seconds, dropped, how)

#!/usr/bin/env python3
"""The doctor's read-bandwidth measurement beside sysbench's, on this machine.

Not a test: a script to run by hand and read. Each round runs, back to back:

- ``q3cn_doctor.host.bandwidth.measure_read_bandwidth`` sized as the doctor sizes it
  (``plan_buffer_bytes``, ``plan_threads``);
- ``sysbench memory --memory-oper=read --memory-block-size=512M
  --memory-total-size=16G --memory-scope=local --threads=$(nproc)`` (512 MiB blocks:
  the default 1 KiB blocks measure cache, not RAM; local scope: each thread reads its
  own block, as the doctor's threads do);

and prints every figure, the median of each, and whether the medians agree within
15%. The doctor reports its best pass, sysbench an average over its run, so on a
machine shared with noisy neighbours the doctor's mean over its passes is printed
too. sysbench counts MiB (2^20 bytes); everything is printed in GB (10^9 bytes)/s.

If sysbench is missing and this runs as root on a Debian-like system, it runs
``apt-get update`` and ``apt-get install -y sysbench`` first (never do that in CI)::

    .venv/bin/python bench/bench_memory.py            # 3 rounds
    .venv/bin/python bench/bench_memory.py --rounds 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys

from q3cn_doctor.host.bandwidth import measure_read_bandwidth, plan_buffer_bytes, plan_threads
from q3cn_doctor.host.live import LiveHost
from q3cn_doctor.measure.memory import parse_sysbench, sysbench_argv

AGREEMENT = 0.15
MIB = 2**20


def ensure_sysbench() -> str:
    """The sysbench path, installing it with apt-get when that is possible."""
    found = shutil.which("sysbench")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit("sysbench is not installed: install it (apt-get install sysbench) and rerun")
    print("sysbench is missing: apt-get update && apt-get install -y sysbench", flush=True)
    subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "sysbench"], check=True,
                   stdout=subprocess.DEVNULL)
    return shutil.which("sysbench") or sys.exit("apt-get did not install sysbench")


def sysbench_read(sysbench: str, threads: int) -> float:
    """sysbench's 512 MiB-block read bandwidth in bytes/s (the doctor's own command line)."""
    done = subprocess.run(sysbench_argv(threads, sysbench), capture_output=True, text=True,
                          check=True)
    rate = parse_sysbench(done.stdout)
    if rate is None:
        sys.exit("no MiB/sec figure in sysbench's output:\n" + done.stdout)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    sysbench = ensure_sysbench()
    host = LiveHost()
    buffer_bytes, threads = plan_buffer_bytes(host), plan_threads(host)
    nproc = len(os.sched_getaffinity(0))  # what $(nproc) says
    print(f"doctor: {buffer_bytes // MIB} MiB buffer, {threads} threads; "
          f"sysbench: --threads={nproc}")

    ours, our_means, theirs = [], [], []
    for round_number in range(1, args.rounds + 1):
        result = measure_read_bandwidth(buffer_bytes, threads)
        ours.append(result.bytes_per_s)
        our_means.append(statistics.mean(result.pass_bytes_per_s))
        theirs.append(sysbench_read(sysbench, nproc))
        print(f"round {round_number}: doctor {ours[-1] / 1e9:7.2f} GB/s "
              f"(mean of passes {our_means[-1] / 1e9:6.2f}, in {result.seconds:.2f} s)   "
              f"sysbench {theirs[-1] / 1e9:7.2f} GB/s")
    print(f"doctor method: {result.method}")

    doctor, reference = statistics.median(ours), statistics.median(theirs)
    gap = abs(doctor - reference) / reference
    print(f"median: doctor {doctor / 1e9:.2f} GB/s (mean of passes "
          f"{statistics.median(our_means) / 1e9:.2f}), sysbench {reference / 1e9:.2f} GB/s, "
          f"doctor/sysbench = {doctor / reference:.3f}")
    print(f"agree within {AGREEMENT:.0%}: {'yes' if gap <= AGREEMENT else 'no'} "
          f"(they differ by {gap:.1%})")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""How fast the doctor's hot parsers read real-size input, against their targets.

Not a test: a script to run by hand (or in a perf job) and read. Timing asserts in the
test suite failed on loaded CI machines without saying anything about the parsers, so
the figures live here. It times, best and median of ``--rounds``:

- ``read_model`` on a GGUF with a Qwen-size vocabulary (151,936 tokens, their types and
  scores), written once with the gguf package's writer (tests/gguf_files.py). Target:
  under 2 s (the reader skips per-element parsing of metadata arrays; gguf's own reader
  takes several seconds);
- ``parse_cpuinfo`` on the 96-CPU EPYC's real /proc/cpuinfo (133 kB) from the test
  fixtures. Target: under 50 ms.
- ``platform_of`` on a CPU name the platform table lacks (this KVM guest's "Intel(R)
  Xeon(R) Processor"), with re's cache emptied first, as in a fresh ``check``: it
  compiles only the patterns whose literal prefix the name holds. Beside it, for
  comparison, compiling every pattern of the table, which it did before. Target: 3 ms.

Run it with the venv's interpreter::

    .venv/bin/python bench/bench_parsers.py            # --rounds 5 by default; --json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))  # the test suite's GGUF writer and fixture hosts

from fixture_hosts import EPYC  # noqa: E402
from gguf_files import VOCABULARY, write_vocabulary_model  # noqa: E402
from q3cn_doctor.facts.cpu import parse_cpuinfo  # noqa: E402
from q3cn_doctor.facts.model_file import read_model  # noqa: E402
from q3cn_doctor.host.live import LiveHost  # noqa: E402
from q3cn_doctor.parsers.platforms import _TABLE, platform_of  # noqa: E402

GGUF_TARGET_S = 2.0
CPUINFO_TARGET_S = 0.050
PLATFORM_TARGET_S = 0.003
UNKNOWN_CPU = "Intel(R) Xeon(R) Processor"


def timed(work: Callable[[], object], rounds: int) -> list[float]:
    """Wall-clock seconds of ``rounds`` calls of ``work``."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    cpuinfo = (TESTS / "fixtures" / "hosts" / EPYC / "fs/proc/cpuinfo").read_text()
    with tempfile.TemporaryDirectory(prefix="q3cn-bench-gguf-") as folder:
        model = str(write_vocabulary_model(Path(folder) / "vocab.gguf"))

        def read_vocabulary() -> None:
            if read_model(LiveHost(), model).vocab_size != VOCABULARY:
                sys.exit("read_model did not see the whole vocabulary")

        def read_cpuinfo() -> None:
            if len(parse_cpuinfo(cpuinfo)) != 96:
                sys.exit("parse_cpuinfo did not see the EPYC's 96 CPUs")

        def unknown_platform() -> None:
            re.purge()  # a fresh process's regex cache
            if platform_of(UNKNOWN_CPU) is not None:
                sys.exit(f"platform_of found a platform for {UNKNOWN_CPU!r}")

        def every_pattern() -> None:
            re.purge()
            for pattern, _ in _TABLE:
                re.compile(pattern)

        runs = {"gguf vocabulary": (timed(read_vocabulary, args.rounds), GGUF_TARGET_S),
                "cpuinfo (96 CPUs)": (timed(read_cpuinfo, args.rounds), CPUINFO_TARGET_S),
                "platform (unknown)": (timed(unknown_platform, args.rounds),
                                       PLATFORM_TARGET_S),
                "every platform re": (timed(every_pattern, args.rounds), None)}

    figures = {name: {"median_s": statistics.median(times), "min_s": min(times),
                      "target_s": target,
                      "met": None if target is None else statistics.median(times) < target}
               for name, (times, target) in runs.items()}
    if args.json:
        print(json.dumps({"rounds": args.rounds, "parsers": figures}, indent=2))
        return 0
    print(f"{args.rounds} rounds")
    print(f"{'parser':<20}{'median':>10}{'min':>10}{'target':>10}")
    for name, figure in figures.items():
        target = ("       -  (for comparison)" if figure["target_s"] is None else
                  f"{figure['target_s'] * 1000:>8.0f}ms  {'met' if figure['met'] else 'MISS'}")
        print(f"{name:<20}{figure['median_s'] * 1000:>8.1f}ms{figure['min_s'] * 1000:>8.1f}ms"
              f"{target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

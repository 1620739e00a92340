#!/usr/bin/env python3
"""Whole-process startup times of q3cn-doctor, against a reference Python CLI.

Not a test: a script to run by hand (or in a perf job) and read. It times, in
one interleaved round-robin loop so that machine noise hits every command
alike:

- ``q3cn-doctor --help``
- ``q3cn-doctor check`` (report to /dev/null; its exit status is not judged)
- shell completion: ``_Q3CN_DOCTOR_COMPLETE=bash_complete COMP_WORDS="q3cn-doctor ch"
  COMP_CWORD=1 q3cn-doctor``
- the reference ``python -m pyperf system show`` (a small stdlib-heavy CLI)

and prints a table: each command's median, 90th percentile, and its ratio to
the reference (median over median). Targets: ``check`` no slower than the
reference (ratio <= 1.0); ``--help`` at most 60 ms; completion under 150 ms.
This machine is noisy: keep 20 rounds or more and judge by the median.

Bytecode: an editable install runs from the source tree, whose .pyc files are
only written if Python may write them. Where PYTHONDONTWRITEBYTECODE is set
(some CI images and containers set it), every run would compile the project
from source (~15-20 ms) while pip-installed packages such as pyperf ship
compiled, which is not what a user's install does. So by default the timed
processes run without PYTHONDONTWRITEBYTECODE and with PYTHONPYCACHEPREFIX
pointing at a private temporary folder: the warm-up round compiles everything
once, every timed round reads .pyc, and the source tree is left untouched.
``--as-is`` runs them in the environment exactly as given instead.

``--breakdown`` says instead where ``check``'s start goes: the bare interpreter, then
site, click, the command-line module, ``--help``, every module a check run loads
(imported, nothing run: the floor no work inside the checks can lower) and ``check``,
each row adding one step, and, from inside a check run, how long compiling its regular
expressions took.

Run it with the interpreter of the environment to measure; the commands are
taken from that interpreter's folder (the venv's bin/)::

    .venv/bin/pip install -e '.[bench]'      # pyperf, the reference
    .venv/bin/python bench/bench_startup.py  # --rounds 20 by default
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HELP_TARGET_S = 0.060
COMPLETION_TARGET_S = 0.150
REFERENCE = "pyperf"


def commands(bindir: str, python: str) -> list[tuple[str, list[str], dict[str, str]]]:
    """(name, argv, extra environment) for every timed command."""
    doctor = os.path.join(bindir, "q3cn-doctor")
    completion = {"_Q3CN_DOCTOR_COMPLETE": "bash_complete",
                  "COMP_WORDS": "q3cn-doctor ch", "COMP_CWORD": "1"}
    return [
        ("help", [doctor, "--help"], {}),
        ("check", [doctor, "check"], {}),
        ("completion", [doctor], completion),
        ("pyperf", [python, "-m", "pyperf", "system", "show"], {}),
    ]


def breakdown_commands(bindir: str, python: str, modules: list[str]
                       ) -> list[tuple[str, list[str], dict[str, str]]]:
    """The steps of check's start, each adding one thing to the step above it;
    ``modules`` are those a check run loads (``modules_check_loads``)."""
    doctor = os.path.join(bindir, "q3cn-doctor")
    return [
        ("interpreter -S", [python, "-S", "-c", "pass"], {}),
        ("+ site", [python, "-c", "pass"], {}),
        ("+ click", [python, "-c", "import click"], {}),
        # re too: the console script pip writes imports it before the doctor
        ("+ cli module", [python, "-c", "import re, q3cn_doctor.app.cli"], {}),
        ("+ --help", [doctor, "--help"], {}),
        # instead of the help: every module a check run loads, imported and nothing run
        ("+ check imports", [python, "-c", IMPORT_ALL, *modules], {}),
        ("check", [doctor, "check"], {}),  # the same imports, and the run
    ]


# A check run inside a child script, its report to /dev/null.
RUN_CHECK = """
sys.argv = ["q3cn-doctor", "check"]
with open(os.devnull, "w") as report, contextlib.redirect_stdout(report):
    try:
        from q3cn_doctor.app.cli import main
        main()
    except SystemExit:
        pass
"""

# Run in a child: times check's pattern compilation from inside. It wraps a private
# function (re._compiler.compile), so on a Python without it that part is left out
# rather than guessed.
INSIDE_CHECK = """
import contextlib, json, os, re, sys, time
spent = {}
def timed(owner, name, kind):
    function = getattr(owner, name, None)
    if function is None:
        return
    spent[kind] = [0.0, 0]
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[kind][0] += time.perf_counter() - started
            spent[kind][1] += 1
    setattr(owner, name, wrapper)
timed(getattr(re, "_compiler", None), "compile", "patterns")
started = time.perf_counter()
""" + RUN_CHECK + """spent["imports and run"] = [time.perf_counter() - started, 1]
print("SPENT", json.dumps(spent))
"""


# Imports the modules named in argv, in that order; a name that cannot be imported on its
# own (an alias such as typing.io) is passed over.
IMPORT_ALL = """
import importlib, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception:
        pass
"""

# Runs a check and prints the modules it loaded, in the order they were first imported.
LOADED_BY_CHECK = """
import sys
before = set(sys.modules)
import contextlib, json, os
""" + RUN_CHECK + """print("LOADED", json.dumps([name for name in sys.modules
                            if name not in before and not name.startswith("__")]))
"""


def modules_check_loads(python: str, env: dict[str, str]) -> list[str]:
    """The modules one check run imports, beyond the bare interpreter's."""
    done = subprocess.run([python, "-c", LOADED_BY_CHECK], capture_output=True, text=True,
                          env=env, stdin=subprocess.DEVNULL, check=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith("LOADED "))
    return json.loads(line.removeprefix("LOADED "))


def inside_check(python: str, env: dict[str, str], rounds: int) -> dict[str, tuple[float, int]]:
    """Median seconds and count of each part INSIDE_CHECK times, over ``rounds`` runs."""
    runs = []
    for _ in range(rounds):
        done = subprocess.run([python, "-c", INSIDE_CHECK], capture_output=True, text=True,
                              env=env, stdin=subprocess.DEVNULL, check=True)
        line = next(line for line in done.stdout.splitlines() if line.startswith("SPENT "))
        runs.append(json.loads(line.removeprefix("SPENT ")))
    return {kind: (statistics.median(run[kind][0] for run in runs), runs[0][kind][1])
            for kind in runs[0]}


def print_breakdown(times: dict[str, list[float]], inside: dict[str, tuple[float, int]],
                    rounds: int) -> None:
    print(f"where check's start goes ({rounds} interleaved rounds, medians; "
          "each row adds one step to the row above; check is the cli module and a check)")
    print(f"{'step':<16}{'median':>10}{'added':>10}")
    previous = None
    for name, values in times.items():
        median = statistics.median(values)
        added = "" if previous is None else f"{(median - previous) * 1000:+8.1f}ms"
        print(f"{name:<16}{median * 1000:>8.1f}ms{added:>10}")
        previous = median
    print("inside check's process (instrumented, medians):")
    for kind, (seconds, count) in inside.items():
        if not count:  # this Python no longer goes through the wrapped function
            print(f"  {kind:<24}not measured")
            continue
        counted = f" ({count})" if kind != "imports and run" else ""
        print(f"  {kind + counted:<24}{seconds * 1000:>8.1f}ms")


def p90(values: list[float]) -> float:
    """The 90th percentile (inclusive method: never beyond the slowest run)."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def run_once(argv: list[str], base_env: dict[str, str],
             extra_env: dict[str, str]) -> tuple[float, float, int]:
    """Wall-clock seconds of one whole process, the CPU seconds it and its children used
    (user + system, from wait4: far less swayed by other load on a shared machine than
    the wall clock), and its exit status."""
    env = dict(base_env, **extra_env)
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return elapsed, usage.ru_utime + usage.ru_stime, child.returncode


def measure(todo, base_env: dict[str, str], warmup: int, rounds: int
            ) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, set[int]]]:
    """Every command once per round, round-robin; the warm-up rounds are not kept."""
    times: dict[str, list[float]] = {name: [] for name, _, _ in todo}
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in todo}
    codes: dict[str, set[int]] = {name: set() for name, _, _ in todo}
    for round_index in range(warmup + rounds):
        # Rotate who goes first, so no command always runs right after the same one.
        shift = round_index % len(todo)
        for name, argv, extra_env in todo[shift:] + todo[:shift]:
            elapsed, cpu_s, code = run_once(argv, base_env, extra_env)
            if round_index >= warmup:
                times[name].append(elapsed)
                cpu[name].append(cpu_s)
                codes[name].add(code)
    return times, cpu, codes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (default 20)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed rounds first, to warm caches and write .pyc (default 1)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--breakdown", action="store_true",
                        help="where check's start goes, step by step, instead of the ratios")
    parser.add_argument("--as-is", action="store_true",
                        help="keep the environment's bytecode settings (PYTHONDONTWRITEBYTECODE, "
                             "PYTHONPYCACHEPREFIX) instead of caching .pyc in a temporary folder")
    args = parser.parse_args()
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be at least 1 and --warmup at least 0")
    if args.breakdown and args.json:
        parser.error("--breakdown prints a table only; leave out --json")

    # The venv's folder, not the resolved interpreter: bin/python is a symlink
    # to the base Python, whose folder holds no q3cn-doctor.
    python = os.path.abspath(sys.executable)
    bindir = os.path.dirname(python)
    todo = commands(bindir, python)
    if not os.path.exists(todo[0][1][0]):
        sys.exit(f"no q3cn-doctor in {bindir}: run this with the venv's python "
                 "(.venv/bin/python bench/bench_startup.py)")
    probe = subprocess.run([python, "-c", "import pyperf"], capture_output=True, check=False)
    if probe.returncode != 0 and not args.breakdown:
        sys.exit(f"pyperf is not installed for {python}: pip install -e '.[bench]'")

    base_env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="q3cn-bench-pyc-") as pyc_dir:
        if not args.as_is:
            base_env.pop("PYTHONDONTWRITEBYTECODE", None)
            base_env["PYTHONPYCACHEPREFIX"] = pyc_dir
        bytecode = ("environment as given" if args.as_is
                    else ".pyc cached in a temporary PYTHONPYCACHEPREFIX")
        if args.breakdown:
            steps = breakdown_commands(bindir, python, modules_check_loads(python, base_env))
            times, _, codes = measure(steps, base_env, args.warmup, args.rounds)
            failed = [name for name, seen in codes.items() if name != "check" and seen != {0}]
            if failed:  # a step that did not run would be timed as if it had
                sys.exit(f"these steps failed: {', '.join(failed)}")
            print_breakdown(times, inside_check(python, base_env, args.rounds), args.rounds)
            return 0
        times, cpu, codes = measure(todo, base_env, args.warmup, args.rounds)

    reference = statistics.median(times[REFERENCE])
    cpu_reference = statistics.median(cpu[REFERENCE])
    figures = {
        name: {"median_s": statistics.median(values), "p90_s": p90(values),
               "min_s": min(values),
               "ratio_to_pyperf": statistics.median(values) / reference,
               "cpu_median_s": statistics.median(cpu[name]),
               "cpu_ratio_to_pyperf": statistics.median(cpu[name]) / cpu_reference,
               "exit_status": sorted(codes[name])}
        for name, values in times.items()
    }
    ratio = figures["check"]["ratio_to_pyperf"]
    verdicts = {
        "check <= 1.0x pyperf (median)": ratio <= 1.0,
        f"help <= {HELP_TARGET_S * 1000:.0f} ms (median)":
            figures["help"]["median_s"] <= HELP_TARGET_S,
        f"completion < {COMPLETION_TARGET_S * 1000:.0f} ms (median)":
            figures["completion"]["median_s"] < COMPLETION_TARGET_S,
    }
    if args.json:
        print(json.dumps({"python": python, "rounds": args.rounds, "bytecode": bytecode,
                          "commands": figures, "ratio_check_pyperf_median": ratio,
                          "targets": verdicts}, indent=2))
        return 0

    print(f"{args.rounds} rounds (+{args.warmup} warm-up), interleaved; commands from {bindir}")
    print(f"bytecode: {bytecode}")
    print(f"{'command':<12}{'median':>10}{'p90':>10}{'x pyperf':>10}"
          f"{'cpu':>10}{'x pyperf':>10}  exit")
    for name, figure in figures.items():
        exit_text = ",".join(str(code) for code in figure["exit_status"])
        print(f"{name:<12}{figure['median_s'] * 1000:>8.1f}ms{figure['p90_s'] * 1000:>8.1f}ms"
              f"{figure['ratio_to_pyperf']:>9.2f}x{figure['cpu_median_s'] * 1000:>8.1f}ms"
              f"{figure['cpu_ratio_to_pyperf']:>9.2f}x  {exit_text}")
    for label, ok in verdicts.items():
        print(f"  {'met ' if ok else 'MISS'}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

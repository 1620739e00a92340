#!/usr/bin/env python3
"""The launch plan against llama-server's defaults, and the plan with one of its flags
left out, served and timed through /completion in ABBA rounds: which flag, if any,
makes the plan slower or faster than the defaults on this machine.

Not a test: a script to run by hand and read (minutes). It uses the real parts
(scripts/real-parts) as bench_tune.py does, and the untuned plan (no saved tune)::

    .venv/bin/python bench/bench_launch_flags.py --rounds 12 --drop strict
    .venv/bin/python bench/bench_launch_flags.py --rounds 4 --drop strict prio fa
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

from bench_tune import options_for, real_parts
from q3cn_doctor.app.measure_command import interruptible
from q3cn_doctor.facts import Facts
from q3cn_doctor.host.live import LiveHost
from q3cn_doctor.launch.launcher import build_plan
from q3cn_doctor.launch.run_as import run_as
from q3cn_doctor.measure.processes import Program
from q3cn_doctor.measure.setting import Setting
from q3cn_doctor.measure.trials import ServerMeasurer

# What each variant leaves out of the plan: flag -> how many values follow it.
DROPS = {"strict": {"--cpu-strict": 1, "--cpu-range": 1}, "prio": {"--prio": 1},
         "fa": {"-fa": 1}}


def without(argv: list[str], flags: dict[str, int]) -> list[str]:
    """``argv`` less each flag in ``flags`` and its values."""
    kept, index = [], 0
    while index < len(argv):
        if argv[index] in flags:
            index += 1 + flags[argv[index]]
            continue
        kept.append(argv[index])
        index += 1
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user", default="nobody" if os.geteuid() == 0 else None)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--drop", nargs="*", choices=sorted(DROPS), default=["strict"])
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="q3cn-bench-flags-")
    os.chmod(scratch, 0o755)  # the parts inside are read by the user llama.cpp runs as
    os.environ["XDG_STATE_HOME"] = f"{scratch}/state"  # no saved tune: the plan as made
    os.environ["XDG_CONFIG_HOME"] = f"{scratch}/config"
    parts = real_parts(f"{scratch}/parts")
    options = options_for(parts, args.user, no_tune=True)
    facts = Facts(LiveHost(), options)
    plan = build_plan(facts, options)
    who, build = run_as(args.user), facts.server.build()
    print("plan:", " ".join(plan.argv))
    variants = {"plan": Program(plan.argv, who, dict(plan.env), plan.affinity)}
    for name in args.drop:
        variants[f"no-{name}"] = variants["plan"].with_argv(without(plan.argv, DROPS[name]))
    variants["defaults"] = Program([parts["llama-server"], "-m", parts["model"]], who)
    measurers = {name: ServerMeasurer(program, build) for name, program in variants.items()}
    samples: dict[str, list[float]] = {name: [] for name in measurers}
    per_round: list[dict[str, float]] = []
    names = list(measurers)
    for number in range(1, args.rounds + 1):
        row = {}
        for name in names if number % 2 else names[::-1]:  # ABBA: no side always first
            trial = measurers[name].measure(Setting(), args.repeats)
            if not trial.ok:
                raise SystemExit(f"{name} failed: {trial.error}")
            samples[name] += trial.tg.samples
            row[name] = trial.tg.mean
            print(f"round {number:>2}: {name:<10} tg {trial.tg.text()} tok/s", flush=True)
        per_round.append(row)
    print()
    for name, values in samples.items():
        ratios = [row["plan"] / row[name] for row in per_round]
        print(f"{name:<10} median tg {statistics.median(values):6.1f} tok/s; plan / it per "
              f"round {min(ratios):.2f}-{max(ratios):.2f} (median {statistics.median(ratios):.3f})")


if __name__ == "__main__":
    with interruptible():  # Ctrl-C or SIGTERM: every llama.cpp process is stopped first
        main()

#!/usr/bin/env python3
"""`tune` against the exhaustive grid of its own space, and the tuned launch against
llama-server's defaults, on this machine with the real parts (scripts/real-parts).

Not a test: a script to run by hand and read (minutes). In one run:

1. the grid: every point of ``search_space`` (the same dimensions and values ``tune``
   searches) measured with llama-bench, in a shuffled order so that a drift in the
   machine's load is not read as a dimension's effect;
2. the tune: ``Search`` from the plan's starting point under ``--budget``, with the same
   measurer; then the winner's tg *as the grid measured it* against the grid's best
   point (the target: within 5%), and its trials against the grid's (at most a third);
   and, since a grid's best point on a shared machine may be a lucky moment, the two
   measured again side by side, interleaved (``--confirm`` rounds);
3. the launch: ``launch``'s plan with that tune saved beside ``llama-server -m MODEL``
   (its own defaults), both served and timed through /completion, interleaved round by
   round (the target: tuned/defaults >= 1.0).

llama.cpp runs as ``--user`` (default ``nobody`` when this runs as root)::

    .venv/bin/python bench/bench_tune.py --out tests/fixtures/tune/grid.json
    .venv/bin/python bench/bench_tune.py --grid-from tests/fixtures/tune/grid.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from q3cn_doctor.app.measure_command import (
    interruptible,
    keep_tune,
    parse_duration,
    tune_table,
)
from q3cn_doctor.facts import Facts
from q3cn_doctor.host.live import LiveHost
from q3cn_doctor.launch.launcher import build_plan
from q3cn_doctor.launch.run_as import run_as
from q3cn_doctor.measure.processes import Program
from q3cn_doctor.measure.rig import make_rig
from q3cn_doctor.measure.setting import Setting
from q3cn_doctor.measure.trials import ServerMeasurer, Trial
from q3cn_doctor.measure.tune import grid, run_search, search_space
from q3cn_doctor.options import Options
from q3cn_doctor.parsers.llama_speed import Rate

REPO = Path(__file__).resolve().parent.parent
WITHIN = 0.05  # the tune's winner within 5% of the grid's best tg
STEADY = 0.20  # a grid point whose runs spread more than this was measured through a change
CTX = 2048


def real_parts(folder: str) -> dict[str, str]:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "real-parts"),
                           "--link-into", folder], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"scripts/real-parts failed ({done.returncode}):\n{done.stderr}")
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def options_for(parts: dict[str, str], user: str, no_tune: bool) -> Options:
    return Options(model=parts["model"], server=parts["llama-server"], user=user,
                   ctx_size=CTX, measure=True, no_tune=no_tune)


def run_grid(measurer, start: Setting, dims, repeats: int, seed: int) -> list[Trial]:
    points = grid(start, dims)
    random.Random(seed).shuffle(points)
    # One measurement thrown away first: the first llama-bench of a run meets the model
    # file and the CPUs cold (tg 70.5 +- 19.6 tok/s here, 89 once warm), and would be read
    # as that point's speed.
    measurer.measure(points[0], 1)
    trials = []
    for number, setting in enumerate(points, 1):
        trial = measurer.measure(setting, repeats)
        trials.append(trial)
        tg = trial.tg.text() if trial.tg else trial.error
        pp = trial.pp.text() if trial.pp else "-"
        print(f"grid {number:>3}/{len(points)}  {setting.label():<36} pp {pp:>14}  tg {tg}",
              flush=True)
    return trials


def load_grid(path: Path) -> list[Trial]:
    """A grid recorded by an earlier run (its ``grid``), as trials."""
    trials = []
    for item in json.loads(path.read_text())["grid"]:
        pp = Rate.of(item["pp"]["samples"]) if item["pp"] else None
        tg = Rate.of(item["tg"]["samples"]) if item["tg"] else None
        trials.append(Trial(Setting.from_json(item["setting"]), pp, tg, item["seconds"],
                            item["error"]))
    return trials


def confirm(measurer, a: Setting, b: Setting, rounds: int, repeats: int) -> dict:
    """``a`` and ``b`` measured again, alternately: their tg means over every run."""
    samples: dict[str, list[float]] = {"a": [], "b": []}
    for number in range(1, rounds + 1):
        for name, setting in (("a", a), ("b", b)):
            trial = measurer.measure(setting, repeats)
            if trial.ok:
                samples[name] += trial.tg.samples
            print(f"confirm round {number}: {setting.label():<36} tg "
                  f"{trial.tg.text() if trial.tg else trial.error}", flush=True)
    means = {k: statistics.fmean(v) if v else None for k, v in samples.items()}
    return {"winner": a.to_json(), "grid_best": b.to_json(), "samples": samples,
            "winner_tg": means["a"], "grid_best_tg": means["b"],
            "share": means["a"] / means["b"] if means["a"] and means["b"] else None}


def best_tg(trials: list[Trial], steady: bool = False) -> Trial:
    """The grid's best point by mean tg; ``steady``: among points whose runs agree
    (spread under 20%): on a shared machine a point measured as its load changed (runs of
    70, 91 and 6 tok/s) has a mean that no setting gives."""
    return max((t for t in trials if t.ok and (not steady or t.tg.spread < STEADY)),
               key=lambda t: t.tg.mean)


def compare_launch(parts: dict[str, str], user: str, rounds: int, repeats: int) -> dict:
    """The tuned launch plan and llama-server's defaults, interleaved (ABBA), tg each
    round."""
    options = options_for(parts, user, no_tune=False)
    facts = Facts(LiveHost(), options)
    plan = build_plan(facts, options)
    who = run_as(user)
    build = facts.server.build()
    tuned = ServerMeasurer(Program(plan.argv, who, dict(plan.env), plan.affinity), build)
    defaults = ServerMeasurer(Program([parts["llama-server"], "-m", parts["model"]], who),
                              build)
    samples: dict[str, list[float]] = {"tuned": [], "defaults": []}
    pair = (("tuned", tuned), ("defaults", defaults))
    for number in range(1, rounds + 1):
        # ABBA: who goes first alternates, so a drift within a round (a warming CPU, a
        # page cache filling) does not favour one side every round.
        for name, measurer in pair if number % 2 else pair[::-1]:
            trial = measurer.measure(Setting(), repeats)
            if not trial.ok:
                sys.exit(f"{name} failed: {trial.error}")
            samples[name] += trial.tg.samples
            print(f"launch round {number}: {name:<8} tg {trial.tg.text()} tok/s", flush=True)
    tuned_tg, default_tg = (statistics.median(samples[k]) for k in ("tuned", "defaults"))
    return {"tuned_command": tuned.command(Setting(), 0),
            "defaults_command": defaults.command(Setting(), 0), "samples": samples,
            "tuned_median_tg": tuned_tg, "defaults_median_tg": default_tg,
            "ratio": tuned_tg / default_tg}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user", default="nobody" if os.geteuid() == 0 else None)
    parser.add_argument("--budget", default="2m")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4, help="launch comparison rounds")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--skip-grid", action="store_true")
    parser.add_argument("--grid-from", type=Path, help="reuse a grid recorded with --out")
    parser.add_argument("--confirm", type=int, default=3,
                        help="rounds of the winner against the grid's best, interleaved")
    parser.add_argument("--out", type=Path, help="write every figure here (JSON)")
    args = parser.parse_args()
    budget = parse_duration(args.budget)
    scratch = tempfile.mkdtemp(prefix="q3cn-bench-tune-")
    os.chmod(scratch, 0o755)  # the parts inside are read by the user llama.cpp runs as
    os.environ["XDG_STATE_HOME"] = f"{scratch}/state"  # the saved tune stays in here
    os.environ["XDG_CONFIG_HOME"] = f"{scratch}/config"
    parts = real_parts(f"{scratch}/parts")
    options = options_for(parts, args.user, no_tune=True)
    rig = make_rig(Facts(LiveHost(), options), options, run_as(args.user))
    start, dims, prompt = search_space(rig)
    measurer = rig.measurer("bench", pp_tokens=prompt)
    size = 1
    for dim in dims:
        size *= len(dim.values)
        print(f"space: {dim.name}: {dim.values} ({dim.objective}; {dim.why})")
    print(f"grid: {size} points; start {start.label()}; prompt {prompt}, tg "
          f"{measurer.tg_tokens} tokens, {args.repeats} runs each", flush=True)
    report: dict = {"machine": rig.facts.cpu.model_name, "cpus": rig.facts.cpu.logical,
                    "model": parts["model"].rsplit("/", 1)[-1], "grid_size": size,
                    "space": [d.to_json() for d in dims], "start": start.to_json(),
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if args.grid_from:
        grid_trials = load_grid(args.grid_from)
        report["grid_from"] = str(args.grid_from)
    elif args.skip_grid:
        grid_trials = []
    else:
        grid_trials = run_grid(measurer, start, dims, args.repeats, args.seed)
    report["grid"] = [t.to_json() for t in grid_trials]

    result = run_search(measurer, start, dims, prompt, budget, args.repeats,
                        lambda text: print(text, flush=True))
    best = result.best
    print(tune_table(result))
    report["tune"] = result.to_json()
    if grid_trials:
        top = best_tg(grid_trials)
        by_key = {t.setting.key(): t for t in grid_trials}
        mine = by_key[best.setting.key()]
        share = mine.tg.mean / top.tg.mean
        print(f"\ngrid best: {top.setting.label()} tg {top.tg.text()}; the tune's winner "
              f"{best.setting.label()} measured by the grid: tg {mine.tg.text()} = "
              f"{share:.1%} of the best ({'within' if share >= 1 - WITHIN else 'NOT within'}"
              f" {WITHIN:.0%}); trials {result.runs} of the grid's {size} "
              f"({result.runs / size:.0%}; a third is {size / 3:.0f})")
        steady = best_tg(grid_trials, steady=True)
        steady_share = mine.tg.mean / steady.tg.mean
        print(f"among steady points (spread < {STEADY:.0%}): grid best "
              f"{steady.setting.label()} tg {steady.tg.text()}; the winner = "
              f"{steady_share:.1%}")
        report["comparison"] = {"grid_best": top.to_json(), "winner_in_grid": mine.to_json(),
                                "share_of_best": share, "tune_runs": result.runs,
                                "grid_best_steady": steady.to_json(),
                                "share_of_steady_best": steady_share}
        if args.confirm and top.setting.key() != best.setting.key():
            again = confirm(measurer, best.setting, top.setting, args.confirm, args.repeats)
            print(f"side by side: winner tg {again['winner_tg']:.1f}, grid best "
                  f"{again['grid_best_tg']:.1f} tok/s = {again['share']:.1%}")
            report["confirmed"] = again
    keep_tune(rig, result, options, save=False)
    launch = compare_launch(parts, args.user, args.rounds, args.repeats)
    print(f"\nlaunch, tuned: {' '.join(launch['tuned_command'])}\n"
          f"defaults: {' '.join(launch['defaults_command'])}\n"
          f"median tg tuned {launch['tuned_median_tg']:.1f} / defaults "
          f"{launch['defaults_median_tg']:.1f} tok/s = {launch['ratio']:.3f}")
    report["launch"] = launch
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"written to {args.out}")


if __name__ == "__main__":
    try:
        with interruptible():  # Ctrl-C or SIGTERM: every llama.cpp process is stopped first
            main()
    except KeyboardInterrupt:
        sys.exit("interrupted: llama.cpp stopped, nothing left running")

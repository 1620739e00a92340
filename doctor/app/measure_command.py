"""``bench speed``, ``tune``, and the speed measurements of ``check --measure`` and
``fix --apply --measure``: the commands that run llama.cpp on this machine.

Progress goes to stderr: a rich progress display on a terminal, plain lines otherwise.
Ctrl-C (or SIGTERM) stops the measurement: every llama.cpp process it started is
stopped and reaped (measure/processes.py) before the command exits 130.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import time
from collections.abc import Iterator
from typing import Callable

import click
from msgspec.structs import replace
from q3cn_doctor.options import Options

EXIT_INTERRUPTED = 130
SHORT_PP, SHORT_TG, SHORT_REPEATS = 128, 32, 2
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds from "90", "90s", "2m", "1.5m", "1h"."""
    match = _DURATION.match(text or "")
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration such as 90s, 2m or 1h",
                                 param_hint="--budget")
    unit = (match.group(2) or "s").lower()[0]
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[unit]


# -- progress ---------------------------------------------------------------------------

@contextlib.contextmanager
def progress(title: str, total_s: float | None = None) -> Iterator[Callable[[str], None]]:
    """A step reporter: rich's progress bar (over ``total_s`` seconds where given) on a
    terminal, else one plain line per step on stderr."""
    started = time.monotonic()
    if not sys.stderr.isatty():
        click.echo(f"{title}...", err=True)
        yield lambda text: click.echo(f"  [{time.monotonic() - started:5.0f} s] {text}",
                                      err=True)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total_s:
        columns.append(BarColumn())
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(title, total=total_s)

        def step(text: str) -> None:
            bar.update(task, description=f"{title}: {text}",
                       completed=min(time.monotonic() - started, total_s or 0))
            bar.console.print(f"  {text}", highlight=False)

        yield step


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C and SIGTERM end a measurement as KeyboardInterrupt, so every ``finally``
    that stops a llama.cpp process runs. SIGINT is set too: a command started in the
    background of a script inherits it ignored, and could not be stopped with it."""
    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, raise_interrupt)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- the rig --------------------------------------------------------------------------------

def resolve_model(options: Options, host) -> None:
    """--model, else the config's model, else the profile's file in the usual places;
    a usage error saying where it looked."""
    if options.model:
        return
    import os
    import pwd

    from q3cn_doctor.facts.model_search import find_profile_model

    homes = []
    with contextlib.suppress(KeyError, TypeError):
        homes.append(pwd.getpwnam(options.user).pw_dir)
    if os.environ.get("HOME"):
        homes.append(os.environ["HOME"])
    found = find_profile_model(host, options.profile, homes)
    if found.path is None:
        raise click.UsageError(found.reason(options.profile))
    click.echo(f"Model: {found.path} (the {options.profile} profile's file)", err=True)
    options.model = found.path


def make_rig(options: Options, allow_root: bool):
    """Facts of this machine (never a snapshot or --root tree: the commands that measure
    take neither), with its RAM bandwidth measured for the prediction, and the rig; a
    ClickException saying why there is none."""
    from q3cn_doctor.facts import Facts
    from q3cn_doctor.host.live import LiveHost
    from q3cn_doctor.launch.run_as import RunAsError, run_as
    from q3cn_doctor.measure.processes import MeasureError
    from q3cn_doctor.measure.rig import make_rig as rig_for

    host = LiveHost()
    resolve_model(options, host)
    options.measure = True
    try:
        who = run_as(options.user, allow_root)
        return rig_for(Facts(host, options), options, who)
    except (RunAsError, MeasureError) as exc:
        raise click.ClickException(str(exc)) from exc


# -- bench speed ------------------------------------------------------------------------------

def run_bench_speed(options: Options, method: str, repeats: int, allow_root: bool,
                    as_json: bool) -> int:
    import json

    from q3cn_doctor.measure.processes import MeasureError
    from q3cn_doctor.measure.speed_bench import remember, run_speed_bench

    rig = make_rig(options, allow_root)
    try:
        with interruptible(), progress("Measuring speed") as step:
            step(f"{rig.model.rsplit('/', 1)[-1]} as {rig.run_as.name}: "
                 f"{rig.setting.label()}")
            result = run_speed_bench(rig, method, repeats)
    except KeyboardInterrupt:
        click.echo("Interrupted: llama.cpp stopped, nothing left running.", err=True)
        return EXIT_INTERRUPTED
    except MeasureError as exc:
        raise click.ClickException(str(exc)) from exc
    remember(rig.facts.host, result)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(result.text())
        _time_per_token(rig.facts, result)
    return 0 if result.trial.ok else 1


def _time_per_token(facts, result) -> None:
    """Where the time of one token goes, by the speed model, with the measured figure."""
    from q3cn_doctor.facts import FactsError
    from q3cn_doctor.plan.speed import speed
    from q3cn_doctor.report.picture import print_time_per_token

    try:
        estimate = speed(facts)
    except FactsError:
        return
    click.echo()
    print_time_per_token(estimate, sys.stdout,
                         result.trial.tg.mean if result.trial.ok else None)


def short_measurement(options: Options) -> dict:
    """``check --measure``'s speed line: a short llama-bench (or server) run of the plan,
    or why none was made. Never raises (Ctrl-C excepted)."""
    from q3cn_doctor.measure.processes import MeasureError
    from q3cn_doctor.measure.speed_bench import remember, run_speed_bench

    measured = replace(options, measure=True)
    try:
        rig = make_rig(measured, allow_root=False)
        with interruptible():
            result = run_speed_bench(rig, "auto", SHORT_REPEATS, pp_tokens=SHORT_PP,
                                     tg_tokens=SHORT_TG)
    except click.ClickException as exc:
        return {"text": f"Speed not measured: {exc.format_message()}", "error": True}
    except MeasureError as exc:
        return {"text": f"Speed not measured: {exc}", "error": True}
    remember(rig.facts.host, result)
    return {"text": result.short(), "result": result.to_json()}


# -- tune -----------------------------------------------------------------------------------

def run_tune(options: Options, budget: float, repeats: int, method: str, save: bool,
             allow_root: bool, as_json: bool) -> int:
    import json

    from q3cn_doctor.measure.processes import MeasureError
    from q3cn_doctor.measure.tune import TuneFailed, tune

    options.no_tune = True  # the search starts from the plan's prediction, not an old tune
    rig = make_rig(options, allow_root)
    try:
        with interruptible(), progress(f"Tuning (budget {budget:.0f} s)", budget) as step:
            result = tune(rig, budget, repeats, method, step)
    except KeyboardInterrupt:
        click.echo("Interrupted: llama.cpp stopped, nothing left running; nothing saved.",
                   err=True)
        return EXIT_INTERRUPTED
    except (TuneFailed, MeasureError) as exc:
        raise click.ClickException(str(exc)) from exc
    where = keep_tune(rig, result, options, save)
    from q3cn_doctor.report.ledger import remember_measured

    remember_measured(rig.facts.host, round(result.best.tg.mean, 1),
                      f"tune ({result.setting.label()})")
    if as_json:
        click.echo(json.dumps({**result.to_json(), "saved": where}, indent=2))
    else:
        click.echo(tune_table(result))
        for path in where:
            click.echo(f"Saved to {path}: `q3cn-doctor launch` uses it.")
    return 0


def keep_tune(rig, result, options: Options, save: bool) -> list[str]:
    """Keep the winner in the state folder (and with ``save`` the config file): where
    it was written."""
    from q3cn_doctor.app.config import user_config_path, write_tune
    from q3cn_doctor.plan.tuned import SavedTune, fingerprint, store_state

    build = rig.facts.server.build()
    tune = SavedTune(fingerprint(rig.facts), result.setting.to_json(),
                     result.setting.server_args(build) if build else [],
                     measured={"tg": result.best.tg.to_json(),
                               "pp": result.best.pp.to_json() if result.best.pp else None,
                               "method": result.method, "trials": len(result.trials),
                               "seconds": round(result.seconds)},
                     time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    where = [store_state(rig.facts.host, tune)]
    if save:
        path = options.config or user_config_path(options.user)
        if path is None:
            raise click.ClickException("no config file to save into: give --config PATH")
        write_tune(path, tune.to_json())
        where.append(path)
    return where


def tune_table(result) -> str:
    """What the search tried, in order, with each trial's spread; the winner marked."""
    lines = [f"Tuned with {result.method}: {result.runs} trials in "
             f"{result.seconds:.0f} s ({result.stopped}); prompt {result.prompt_tokens} "
             "tokens", "",
             f"  {'#':>2}  {'setting':<38} {'pp tok/s':>15} {'tg tok/s':>13}  note"]
    for number, trial in enumerate(result.trials, 1):
        mark = []
        if trial.setting.key() == result.start.setting.key():
            mark.append("start (the plan)")
        if trial.setting.key() == result.best.setting.key():
            mark.append("BEST")
        if trial.slow:
            mark.append(f"slower: stopped after {trial.seconds:.0f} s")
        elif trial.error:
            mark.append(f"failed: {trial.error[:60]}")
        pp = trial.pp.text() if trial.pp else "-"
        tg = trial.tg.text() if trial.tg else "-"
        lines.append(f"  {number:>2}  {trial.setting.label():<38} {pp:>15} {tg:>13}  "
                     f"{', '.join(mark)}")
    lines += ["", f"Winner: {result.setting.label()}"
              + (f", threads-batch {result.threads_batch}" if result.threads_batch else "")]
    lines += [f"  {note}" for note in result.notes]
    lines.append("Spread: ± is the standard deviation over each trial's runs; a point wins "
                 "only by more than twice the standard error of the difference.")
    return "\n".join(lines)

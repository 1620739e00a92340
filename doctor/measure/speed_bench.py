"""``q3cn-doctor bench speed``: this machine's real pp and tg tokens/s for the user's own
model, run as ``launch`` would run it, beside the speed model's prediction and range.

The two answer different questions. The measurement is what this machine does now,
with this build, this model and whatever else is running; the prediction
(plan/speed.py) is what the hardware should give with the plan. Where the measured tg
falls inside the prediction's range they agree. Below it, believe the measurement:
something on the machine costs speed, and the checks name what they can. Above it,
believe the measurement too: the model is conservative here (a model small enough to
sit partly in the CPU caches reads less than every weight from RAM per token).
"""

from __future__ import annotations

import time

from msgspec import Struct, field
from q3cn_doctor.facts import FactsError
from q3cn_doctor.measure.rig import Rig
from q3cn_doctor.measure.setting import Setting
from q3cn_doctor.measure.trials import PP_TOKENS, REPEATS, TG_TOKENS, Trial
from q3cn_doctor.plan.speed import speed
from q3cn_doctor.report.ledger import remember_measured

ASSUMED_RANGE = 0.25  # where the estimate carries no range: the model's usual error


class Prediction(Struct):
    """The speed model's estimate for a measured run, with its range."""
    tok_s: float | None
    low: float | None
    high: float | None
    basis: str
    range_basis: str = ""

    def text(self) -> str:
        if self.tok_s is None:
            return f"none ({self.basis})"
        return f"~{self.tok_s:.0f} tok/s ({self.low:.0f}-{self.high:.0f}{self.range_basis})"

    def to_json(self) -> dict:
        return {"tok_s": self.tok_s, "low": self.low, "high": self.high, "basis": self.basis,
                "range_basis": self.range_basis}


def prediction(facts) -> Prediction:
    """The speed model's generation estimate and its range (plan/speed.py)."""
    try:
        estimate = speed(facts)
    except FactsError as exc:
        return Prediction(None, None, None, str(exc))
    tok_s = estimate.tok_s
    if tok_s is None:
        return Prediction(None, None, None, estimate.basis)
    low, high = getattr(estimate, "low", None), getattr(estimate, "high", None)
    if low is not None and high is not None:
        return Prediction(tok_s, low, high, estimate.basis)
    return Prediction(tok_s, tok_s * (1 - ASSUMED_RANGE), tok_s * (1 + ASSUMED_RANGE),
                      estimate.basis, f"; ±{ASSUMED_RANGE:.0%} assumed")


def verdict(measured: float | None, predicted: Prediction) -> str:
    """Which figure to believe, in one or two sentences."""
    if measured is None:
        return "Nothing was measured: see the error above."
    if predicted.tok_s is None:
        return ("Only the measurement: the speed model has no estimate here. Believe the "
                "measurement.")
    if predicted.low <= measured <= predicted.high:
        return ("They agree: the measured tg is inside the predicted range. The plan gets "
                "what the hardware allows.")
    if measured < predicted.low:
        return (f"Measured tg is {1 - measured / predicted.tok_s:.0%} below the prediction: "
                "believe the measurement, it is what this machine does now. Something costs "
                "speed here (other programs on the CPUs, throttling, swap, a fault "
                "`q3cn-doctor check` names).")
    return (f"Measured tg is {measured / predicted.tok_s - 1:.0%} above the prediction: "
            "believe the measurement. The speed model is conservative here (it reads every "
            "weight from RAM per token; a model this size partly stays in the CPU caches).")


class SpeedBench(Struct):
    """A measured prompt and generation speed beside the prediction, and which to believe."""
    model: str
    method: str
    command: list[str]
    trial: Trial
    predicted: Prediction
    pp_tokens: int
    tg_tokens: int
    run_as: str
    notes: list[str] = field(default_factory=list)

    def verdict(self) -> str:
        return verdict(self.trial.tg.mean if self.trial.tg else None, self.predicted)

    def to_json(self) -> dict:
        return {"model": self.model, "method": self.method, "command": self.command,
                "run_as": self.run_as, "pp_tokens": self.pp_tokens,
                "tg_tokens": self.tg_tokens, "measured": self.trial.to_json(),
                "predicted": self.predicted.to_json(), "verdict": self.verdict(),
                "notes": self.notes, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def short(self) -> str:
        """One line: ``check --measure``'s form."""
        trial = self.trial
        if not trial.ok:
            return f"Speed not measured: {trial.error}"
        pp = f", pp {trial.pp.mean:.0f}" if trial.pp else ""
        return (f"Measured speed ({self.method}): tg {trial.tg.mean:.1f} tok/s{pp}; predicted "
                f"{self.predicted.text()}")

    def text(self) -> str:
        trial = self.trial
        lines = [f"Speed of {self.model} ({self.method}, as {self.run_as}):",
                 f"  setting: {trial.setting.label()}"]
        if trial.ok:
            if trial.pp:
                lines.append(f"  pp (prompt, {self.pp_tokens} tokens): {trial.pp.text()} tok/s"
                             f" (spread {trial.pp.spread:.1%}, {len(trial.pp.samples)} runs)")
            lines.append(f"  tg (generation, {self.tg_tokens} tokens): {trial.tg.text()} "
                         f"tok/s (spread {trial.tg.spread:.1%}, {len(trial.tg.samples)} runs)")
        else:
            lines.append(f"  not measured: {trial.error}")
        lines.append(f"  predicted tg: {self.predicted.text()}; pp is not modelled")
        lines.append(f"  {self.verdict()}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def run_speed_bench(rig: Rig, method: str = "auto", repeats: int = REPEATS,
                    setting: Setting | None = None, pp_tokens: int = PP_TOKENS,
                    tg_tokens: int = TG_TOKENS) -> SpeedBench:
    """Measure the plan's setting (or ``setting``) once, with its repeats."""
    measurer = rig.measurer(method, pp_tokens, tg_tokens)
    chosen = setting or rig.setting
    trial = measurer.measure(chosen, repeats)
    notes = []
    if rig.plan.affinity:
        notes.append(f"CPU affinity {rig.plan.affinity} as the launch sets it.")
    return SpeedBench(model=rig.model, method=measurer.method,
                      command=measurer.command(chosen, repeats),
                      trial=trial, predicted=prediction(rig.facts),
                      pp_tokens=measurer.pp_tokens, tg_tokens=measurer.tg_tokens,
                      run_as=rig.run_as.name, notes=notes)


def remember(host, bench: SpeedBench) -> None:
    """Keep the measured tg where the next report quotes it beside the estimate."""
    if bench.trial.ok:
        remember_measured(host, round(bench.trial.tg.mean, 1),
                          f"{bench.method} ({bench.trial.setting.label()})")

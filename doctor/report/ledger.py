"""The headline of every report: how fast the model generates here now, after
`sudo q3cn-doctor fix --apply`, and after the steps only a person can take.

Every figure is the speed model's (plan/speed.py: ``speed`` and ``what_if``); this
module only chooses which changes to ask it about: those of the findings the fix plan
cures, then those of the findings with a step by hand. A measured figure (``bench
speed``, ``tune``) stands beside the estimate where one was recorded on this machine.
"""

from __future__ import annotations

import time
from typing import Any

from msgspec import Struct, field
from q3cn_doctor.checking.findings import ERROR, FAIL, INFO, WARN, Finding
from q3cn_doctor.facts import Facts, FactsError
from q3cn_doctor.host.base import Host

MEASURED_CACHE = "measured-speed.json"  # what `bench speed` / `tune` last measured here
PROBLEM_STATUSES = (FAIL, ERROR, WARN)
NOTICEABLE_TOK_S = 0.5  # a gain below this rounds away in "~N tok/s"
FIX_COMMAND = "sudo q3cn-doctor fix --apply"


def is_problem(finding: Finding) -> bool:
    """A finding the report details: a failure or warning, or a note that costs speed."""
    if finding.status in PROBLEM_STATUSES:
        return True
    return finding.status == INFO and (finding.cost_tok_s or 0) >= NOTICEABLE_TOK_S


class Step(Struct):
    """One step by hand the ledger counts: the finding it cures and what it gains."""

    finding: str
    action: str
    gain_tok_s: float | None

    def to_json(self) -> dict[str, Any]:
        return {"finding": self.finding, "action": self.action, "gain_tok_s": self.gain_tok_s}


class Ledger(Struct):
    """The speed now and after the fixes, and what each finding's action is worth: the
    report's first lines."""
    model: str
    now: Any = None  # SpeedEstimate | None
    after_fix: Any = None
    after_manual: Any = None
    fixed_by_software: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    measured_tok_s: float | None = None
    measured_by: str = ""
    error: str = ""

    def figures(self) -> list[tuple[str, float]]:
        """(label, tok/s) of now and each stage that gains, for bars and tables."""
        rows = [("now", _tok_s(self.now))]
        if self.fixed_by_software:
            rows.append((f"after `{FIX_COMMAND}`", _tok_s(self.after_fix)))
        if self.steps:
            rows.append((f"after {_count(self.steps)} by hand", _tok_s(self.after_manual)))
        return [(label, value) for label, value in rows if value is not None]

    def text(self) -> str:
        """One sentence: "<model> here: ~20 tok/s now -> ~33 after ... -> ~40 after ..."."""
        now = _tok_s(self.now)
        if now is None and self.now is None:
            return f"{self.model} here: speed unknown ({self.error or 'no estimate'})"
        # No figure, but a reason (paging from disk): the report's first line says it, as
        # model.speed does, rather than "unknown".
        parts = [f"{self.model} here: "
                 + (f"~{now:.0f} tok/s now" if now is not None else self.now.text())]
        after_fix, after_manual = _tok_s(self.after_fix), _tok_s(self.after_manual)
        if self.fixed_by_software and after_fix is not None:
            parts.append(f"~{after_fix:.0f} after `{FIX_COMMAND}`")
        if self.steps and after_manual is not None:
            names = ", ".join(step.action for step in self.steps)
            parts.append(f"~{after_manual:.0f} after {_count(self.steps)} by hand ({names})")
        line = " -> ".join(parts)
        if self.measured_tok_s is not None:
            line += f" [measured: {self.measured_tok_s:.1f} tok/s by {self.measured_by}]"
        return line

    def to_json(self) -> dict[str, Any]:
        if self.error and self.now is None:
            return {"error": self.error}
        breakdown = getattr(self.now, "ms", None)
        return {
            "model": self.model, "now_tok_s": _tok_s(self.now),
            "after_fix_tok_s": _tok_s(self.after_fix),
            "after_manual_tok_s": _tok_s(self.after_manual),
            "fixed_by_software": list(self.fixed_by_software),
            "steps_by_hand": [step.to_json() for step in self.steps],
            "measured_tok_s": self.measured_tok_s,
            "breakdown_ms": dict(breakdown) if isinstance(breakdown, dict) else None,
            "text": self.text(),
        }


def _count(steps: list[Step]) -> str:
    return "1 step" if len(steps) == 1 else f"{len(steps)} steps"


def _tok_s(estimate: Any) -> float | None:
    value = getattr(estimate, "tok_s", None)
    return round(float(value), 1) if isinstance(value, (int, float)) else None


def merge_changes(findings: list[Finding]) -> dict[str, Any]:
    """The speed model's inputs with every one of these problems gone. Two findings
    naming one input ask for the better value of it: the larger number (more VRAM free,
    faster RAM; per GPU for a list), else the costlier finding's."""
    merged: dict[str, Any] = {}
    for finding in sorted(findings, key=lambda f: f.cost_tok_s or 0):
        for key, value in finding.what_if.items():
            merged[key] = _better(merged.get(key), value)
    return merged


def _better(old: Any, new: Any) -> Any:
    """The larger of two numbers, each GPU's larger free VRAM, else the newer value."""
    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if number(old) and number(new):
        return max(old, new)
    if (isinstance(old, list) and isinstance(new, list) and len(old) == len(new)
            and all(map(number, old + new))):
        return [max(a, b) for a, b in zip(old, new)]
    return new


def build_ledger(facts: Facts, findings: list[Finding], cured: set[str],
                 model: str) -> Ledger:
    """The ledger for this run. ``cured`` holds the ids of the findings `fix --apply`
    would cure here (the app asks the fix plan). The steps by hand are taken greedily,
    each on top of the ones before (the one that gains most next), and counted where it
    gains: a browser's VRAM costs nothing while the driver keeps the GPU idle, and much
    once it does not."""
    from q3cn_doctor.plan.speed import speed, what_if

    ledger = Ledger(model)
    problems = [f for f in findings if is_problem(f)]
    software = [f for f in problems if f.id in cured]
    by_hand = [f for f in problems if f.id not in cured and f.manual and f.what_if]
    try:
        ledger.now = speed(facts)
        changes = merge_changes(software)
        ledger.after_fix = what_if(facts, **changes) if changes else ledger.now
        ledger.after_manual, taken = ledger.after_fix, list(software)
        while by_hand:  # the step that gains most next, on top of those taken
            trials = [(what_if(facts, **merge_changes(taken + [f])), f) for f in by_hand]
            gains = [(_gain(ledger.after_manual, trial) or 0.0, trial, f) for trial, f in trials]
            gain, trial, finding = max(gains, key=lambda item: item[0])
            if gain < NOTICEABLE_TOK_S:
                break
            ledger.steps.append(Step(finding.id, finding.action or finding.check, gain))
            ledger.after_manual, taken = trial, taken + [finding]
            by_hand.remove(finding)
    except FactsError as exc:
        ledger.error = str(exc)
        ledger.now = ledger.after_fix = ledger.after_manual = None
        return ledger
    ledger.fixed_by_software = [f.id for f in software]
    return ledger


def _gain(before: Any, after: Any) -> float | None:
    old, new = _tok_s(before), _tok_s(after)
    return None if old is None or new is None else round(new - old, 1)


def remember_measured(host: Host, tok_s: float, command: str) -> None:
    """For `bench speed` and `tune`: keep what they measured, so the next report quotes
    it beside the estimate (this machine only: the host's own cache)."""
    host.store_cache(MEASURED_CACHE, {"tok_s": tok_s, "command": command,
                                      "time": int(time.time())})


def add_measured(ledger: Ledger, host: Host) -> None:
    """The last figure `bench speed` or `tune` measured on this machine, where there is one."""
    record = host.load_cache(MEASURED_CACHE)
    value = record.get("tok_s")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ledger.measured_tok_s = float(value)
        ledger.measured_by = str(record.get("command") or "a benchmark")

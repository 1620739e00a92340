"""The ``fix`` command: plan (dry run), --apply, --revert and --status, in text or JSON.

Exit status: 0 done, or nothing to do; 1 a fix was refused, did not verify, or the
command refused to act (not root, no terminal to confirm on and no --yes, a
read-only snapshot); 2 usage error (click).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import click
from q3cn_doctor.checking.findings import Finding
from q3cn_doctor.fixing.engine import (
    DONE,
    FAILED_OUTCOME,
    UNCHANGED,
    WOULD_CHANGE,
    Engine,
    Outcome,
    needs_root,
)
from q3cn_doctor.fixing.journal import LEFT, REVERTED, JournalError
from q3cn_doctor.fixing.plan import (
    ALREADY,
    CHANGE,
    EFFECTS,
    REFUSED,
    FixOptions,
    Plan,
    UnknownFix,
    build_plan,
)
from q3cn_doctor.report.output import json_text, printable, write_plain
from q3cn_doctor.version import __version__

SCHEMA_VERSION = 1
EXIT_OK, EXIT_FAILED = 0, 1

_MARKS = {DONE: "ok", ALREADY: "already", WOULD_CHANGE: "would change", FAILED_OUTCOME: "FAILED",
          REFUSED: "REFUSED", REVERTED: "restored", UNCHANGED: "unchanged", LEFT: "LEFT ALONE"}


def _host(options) -> Any:
    """The host to plan for and change (its own function so tests can inject faults)."""
    from q3cn_doctor.app.session import make_host

    return make_host(options)


def _document(mode: str, host, **parts: Any) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "tool": {"name": "q3cn-doctor",
                                                      "version": __version__},
            "mode": mode, "host": {"description": host.describe(), "kind": host.kind,
                                   "euid": host.euid()}, **parts}


def _print_json(document: dict[str, Any]) -> None:
    sys.stdout.write(json_text(document) + "\n")


def _say(text: str, err: bool = False) -> None:
    """One line for people; what the machine or the journal said is escaped in it."""
    click.echo(printable(text), err=err)


def _refuse(message: str, as_json: bool, host, mode: str, **parts: Any) -> int:
    if as_json:
        _print_json(_document(mode, host, refused=message, **parts))
    _say(f"q3cn-doctor: {message}", err=True)
    return EXIT_FAILED


def _confirm(question: str, yes: bool) -> str | None:
    """None to go ahead, else why not: --yes, or a terminal where the user said yes."""
    if yes:
        return None
    if not sys.stdin.isatty():
        return ("refusing to change this machine without confirmation: no terminal to ask "
                "on; add --yes to go ahead. Nothing was changed.")
    if click.confirm(printable(question), default=False, err=True):
        return None
    return "not confirmed. Nothing was changed."


def _measure_speed(options) -> dict:
    """This machine's tokens/s now, for fix --apply --measure: the short measurement of
    the launch plan (app/measure_command.py) on the live machine, whatever host the fixes
    go to. Its own function so tests can stub it where the host cannot run llama.cpp."""
    from msgspec.structs import replace
    from q3cn_doctor.app.measure_command import short_measurement

    live = replace(options, root=None, snapshot=None)
    answer = short_measurement(live)
    result = answer.get("result") or {}
    measured = result.get("measured") or {}
    return {"tg": (measured.get("tg") or {}).get("mean"),
            "pp": (measured.get("pp") or {}).get("mean"),
            "method": result.get("method"), "text": answer["text"],
            "error": measured.get("error") or (answer["text"] if answer.get("error") else None)}


def run_fix(options, fix_options: FixOptions, *, apply: bool, revert: bool, status: bool,
            yes: bool, as_json: bool, plugins: bool, measure: bool = False) -> int:
    from q3cn_doctor.options import unit_name_problem

    problem = unit_name_problem(fix_options.service) if fix_options.service is not None else None
    if problem:
        raise click.BadParameter(problem, param_hint="--service")
    host = _host(options)
    if status:
        return _status(host, as_json)
    if revert:
        return _revert(host, yes, as_json)
    from q3cn_doctor.checking.runner import available_checks, run_checks
    from q3cn_doctor.facts import Facts

    facts = Facts(host, options)
    specs, _ = available_checks(plugins)
    findings = run_checks(facts, specs)
    try:
        plan = build_plan(facts, findings, fix_options)
    except UnknownFix as exc:
        raise click.UsageError(str(exc)) from exc
    if not apply:
        if as_json:
            _print_json(_document("plan", host, plan=plan.to_json()))
        else:
            from q3cn_doctor.app.reporting import make_ledger

            print_plan(plan, host, sys.stdout, ledger=make_ledger(facts, findings, options, plan))
        return EXIT_OK
    return _apply(host, options, facts, findings, plan, specs, yes, as_json, measure)


# -- apply ------------------------------------------------------------------------------------
def _apply(host, options, facts, findings: list[Finding], plan: Plan, specs, yes: bool,
           as_json: bool, measure: bool = False) -> int:
    # A refused fix, or one named with --only that cannot run here, fails the command.
    refused = [p for p in plan.fixes if p.status == REFUSED
               or (p.requested and p.status == "unavailable")]
    todo = plan.pending_changes()
    if host.kind not in ("live", "root"):
        return _refuse(f"{host.describe()} is read-only: a snapshot gives a plan, never "
                       "changes.", as_json, host, "apply", plan=plan.to_json())
    if not todo:
        if refused:
            message = "Nothing was changed: " + "; ".join(_why_not(p) for p in refused) + "."
        elif any(p.status == ALREADY for p in plan.fixes):
            message = "Nothing to change: every planned fix is already applied."
        else:
            message = "Nothing to change: no finding calls for a fix that can run here."
        if as_json:
            _print_json(_document("apply", host, plan=plan.to_json(), results=[],
                                  message=message))
        else:
            print_plan(plan, host, sys.stdout, applying=True)
            _say(message)
        return EXIT_FAILED if refused else EXIT_OK
    denied = needs_root(todo, host)
    if denied:
        names = "; ".join(f"{c.what} ({c.target.path})" for c in denied)
        return _refuse(f"--apply needs root for: {names}. Run it with sudo. Nothing was "
                       "changed.", as_json, host, "apply", plan=plan.to_json())
    if not as_json:
        print_plan(plan, host, sys.stdout, applying=True)
    why_not = _confirm(f"Apply {len(todo)} change(s) to {host.describe()}?", yes)
    if why_not:
        return _refuse(why_not, as_json, host, "apply", plan=plan.to_json())
    engine = Engine(host)
    before = _announce_measure(options, "before") if measure else None
    try:
        outcomes = engine.apply(plan)
    except JournalError as exc:
        made = engine.journal_entries_of_this_run()
        tail = (f" Stopped after {made} journalled change(s): `q3cn-doctor fix --status` "
                "lists them, `--revert` undoes them." if made else " Nothing was changed.")
        return _refuse(f"{exc}.{tail}", as_json, host, "apply", plan=plan.to_json())
    checks = _recheck(host, options, findings, plan, specs)
    measured = _record_measure(engine, options, plan, before) if measure else None
    failed = [o for o in outcomes if o.result in (FAILED_OUTCOME, REFUSED)]
    if as_json:
        _print_json(_document("apply", host, plan=plan.to_json(),
                              results=[o.to_json() for o in outcomes], checks=checks,
                              **({"measured": measured} if measured else {})))
    else:
        print_outcomes("Applied", outcomes, sys.stdout)
        print_checks(checks, sys.stdout)
        if measured:
            sys.stdout.write(f"\nMeasured: {measurement_text(measured)}\n")
        if failed:
            _say("Some fixes did not take: see above. `q3cn-doctor fix --revert` undoes "
                       "what was applied.")
    return EXIT_FAILED if failed or refused else EXIT_OK


def _announce_measure(options, when: str) -> dict:
    click.echo(f"Measuring speed {when} the changes...", err=True)
    return _measure_speed(options)


def _record_measure(engine: Engine, options, plan: Plan, before: dict) -> dict:
    """Measure after the changes and keep before/after in the journal."""
    after = _announce_measure(options, "after")
    fixes = [p.fix_id for p in plan.fixes
             if p.selected and any(c.status == CHANGE for c in p.changes)]
    fields = {"run": engine.run_id, "fixes": fixes, "before": before, "after": after}
    try:
        return engine.journal.record_measurement(**fields)
    except JournalError as exc:
        click.echo(f"q3cn-doctor: the measurement was not kept: {exc}", err=True)
        return fields


def measurement_text(measured: dict) -> str:
    """"tg 61.0 -> 74.2 tok/s (+13.2, +21.6%)", or why it is missing."""
    before, after = measured.get("before") or {}, measured.get("after") or {}
    old, new = before.get("tg"), after.get("tg")
    fixes = ", ".join(measured.get("fixes") or []) or "the run's fixes"
    if old is None or new is None:
        why = before.get("error") or after.get("error") or "not measured"
        return f"{fixes}: no before/after ({why})"
    return (f"{fixes}: tg {old:.1f} -> {new:.1f} tok/s ({new - old:+.1f}, "
            f"{new / old - 1:+.1%}; {after.get('method') or 'measured'})")


def _why_not(fix_plan) -> str:
    if fix_plan.status == REFUSED:
        reasons = [c.reason for c in fix_plan.changes if c.status == REFUSED]
        return f"{fix_plan.fix_id} is refused ({'; '.join(reasons)})"
    return f"{fix_plan.fix_id} cannot run here: {fix_plan.reason}"


def _recheck(host, options, findings: list[Finding], plan: Plan, specs) -> list[dict]:
    """Re-run the checks the applied fixes answer, and set their findings side by side."""
    from q3cn_doctor.checking.runner import run_checks
    from q3cn_doctor.facts import Facts

    wanted = {c for p in plan.fixes if p.selected for c in p.checks}
    wanted |= {f.check for p in plan.fixes if p.selected for f in p.findings}
    if not wanted:
        return []
    host.forget()
    after = run_checks(Facts(host, options), [s for s in specs if s.id in wanted])
    before = {f.id: f for f in findings if f.check in wanted}
    rows = []
    for finding in after:
        old = before.get(finding.id)
        rows.append({"id": finding.id, "before": old.status if old else None,
                     "after": finding.status, "title": finding.title})
    return rows


# -- revert and status --------------------------------------------------------------------------
def _revert(host, yes: bool, as_json: bool) -> int:
    try:
        engine = Engine(host)
        preview = engine.revert(simulate=True)
    except JournalError as exc:
        return _refuse(str(exc), as_json, host, "revert")
    if not preview:
        if host.kind in ("live", "root") and host.euid() == 0:
            try:
                engine.revert()  # takes the lock: removes what a killed run left behind
            except JournalError as exc:
                return _refuse(str(exc), as_json, host, "revert")
        if as_json:
            _print_json(_document("revert", host, results=[], message="Nothing to revert."))
        else:
            _say("Nothing to revert: the journal holds no change still in effect.")
        return EXIT_OK
    if host.kind not in ("live", "root"):
        return _refuse(f"{host.describe()} is read-only.", as_json, host, "revert")
    acting = [o for o in preview if o.result == WOULD_CHANGE]
    denied = engine.revert_needs_root() if acting else []
    if denied:
        return _refuse(f"--revert needs root for: {'; '.join(denied)}. Run it with sudo. "
                       "Nothing was changed.", as_json, host, "revert")
    if not as_json:
        print_outcomes("To revert (newest first)", preview, sys.stdout)
    if acting:
        why_not = _confirm(f"Revert {len(acting)} change(s) on {host.describe()}?", yes)
        if why_not:
            return _refuse(why_not, as_json, host, "revert")
    try:
        outcomes = engine.revert()
    except JournalError as exc:
        return _refuse(str(exc), as_json, host, "revert")
    bad = [o for o in outcomes if o.result in (FAILED_OUTCOME, LEFT)]
    if as_json:
        _print_json(_document("revert", host, results=[o.to_json() for o in outcomes]))
    else:
        print_outcomes("Reverted", outcomes, sys.stdout)
        if any(o.result == LEFT for o in outcomes):
            _say("Left alone: changed by someone else since q3cn-doctor wrote it; "
                       "review those by hand.")
    return EXIT_FAILED if bad else EXIT_OK


def _status(host, as_json: bool) -> int:
    try:
        rows = Engine(host).status()
    except JournalError as exc:
        return _refuse(str(exc), as_json, host, "status")
    measurements = Engine(host).journal.measurements
    if as_json:
        _print_json(_document("status", host, journal=rows, measurements=measurements))
        return EXIT_OK
    for measured in measurements:
        click.echo(f"Measured {measured.get('time', '')}: {measurement_text(measured)}")
    if not rows:
        _say("No change by q3cn-doctor is in effect.")
        return EXIT_OK
    _say(f"Changes by q3cn-doctor on {host.describe()} (newest first):")
    for row in rows:
        _say(f"  #{row['seq']} {row['time']}  {row['fix']}: {row['what']}: "
                   f"{row['before']} -> {row['after']}  [{row['state']}; {row['now']}]")
    _say("`q3cn-doctor fix --revert` restores the values and files as they were.")
    return EXIT_OK


# -- text ---------------------------------------------------------------------------------------
# Every line goes out through write_plain or layout.write_lines: a value the machine or the
# journal gave (a governor, a file's old contents, a reason) is escaped there.
def _gain(value: float | None) -> str:
    return f" (gains ~{value:.0f} tok/s)" if value and value >= 0.5 else ""


def _print_ledger(ledger, out: TextIO) -> None:
    """The headline and its before/after bars: what the plan and the steps by hand gain."""
    from q3cn_doctor.report.layout import wrap, write_lines
    from q3cn_doctor.report.picture import speed_bar_lines
    from q3cn_doctor.report.terminal import use_colour, width_of

    width = width_of(out)
    lines = [(text, "bold") for text in wrap(ledger.text(), width, "", "    ")]
    write_lines(lines + speed_bar_lines(ledger.figures(), width,
                                        "█" if use_colour(out) else "#"), out)


def print_plan(plan: Plan, host, out: TextIO, applying: bool = False, ledger=None) -> None:
    head = f"q3cn-doctor {__version__} fix plan for {host.describe()}"
    if not applying:
        head += " (dry run: nothing is changed; add --apply to apply)"
    write_plain(out, [head])
    if ledger is not None:
        write_plain(out, [""])
        _print_ledger(ledger, out)
    write_plain(out, plan_lines(plan, host, applying, ledger, out))


def plan_lines(plan: Plan, host, applying: bool, ledger, out: TextIO) -> list[str]:
    """The plan for people after its headline, one line each."""
    lines: list[str] = []
    unavailable = [p for p in plan.fixes if p.status == "unavailable"]
    shown = [p for p in plan.fixes_by_gain() if p.status != "unavailable"]
    if not shown:
        lines += ["", "No fix to make: no failing or warning finding offers one."]
    for fix_plan in shown:
        label = {CHANGE: "", ALREADY: " (already applied)", REFUSED: " (REFUSED)",
                 "optional": " (optional: only informational findings ask for it; "
                             f"apply with --only {fix_plan.fix_id})"}[fix_plan.status]
        lines += ["", f"{fix_plan.fix_id}: {fix_plan.title}{label}{_gain(fix_plan.gain_tok_s)}"]
        for finding in fix_plan.findings:
            lines.append(f"  cures {finding.id} [{finding.status}]: {finding.title}")
        if fix_plan.requested and not fix_plan.findings:
            lines.append("  asked for with --only (no finding calls for it)")
        for change in fix_plan.changes:
            target = change.target
            root = ", needs root" if change.needs_root else ""
            state = {ALREADY: "  [already so]", REFUSED: f"  [REFUSED: {change.reason}]",
                     CHANGE: ""}[change.status]
            lines.append(f"  - {change.what} [{target.kind}]: {target.show(change.current)} -> "
                         f"{target.show(change.new)}; takes effect {EFFECTS[change.effect]}"
                         f"{root}{state}")
        lines += [f"  note: {note}" for note in fix_plan.notes]
        lines += [f"  by hand: {step}" for step in fix_plan.manual]
    if unavailable:
        lines += ["", "Not available here:"]
        lines += [f"  {fix_plan.fix_id}: {fix_plan.reason}" for fix_plan in unavailable]
    if plan.manual:
        lines += ["", "Manual steps (software cannot do these), costliest problem first:"]
        lines += _manual_lines(plan, ledger, out)
    if not applying and plan.pending_changes() and host.euid() != 0:
        lines += ["", "Not running as root: --apply will need sudo."]
    return lines


def _manual_lines(plan: Plan, ledger, out: TextIO) -> list[str]:
    """Each finding's steps by hand under its id, with what it gains: first the steps the
    ledger counts, in its order and at its price (each on top of those before), then the
    others by their own cost."""
    from q3cn_doctor.report.layout import wrap
    from q3cn_doctor.report.terminal import width_of

    counted = ledger.steps if ledger else []
    gains = {step.finding: step.gain_tok_s for step in counted}
    steps: dict[str, list[str]] = {step.finding: [] for step in counted}  # the ledger's order
    for finding_id, step in plan.manual_by_gain():
        steps.setdefault(finding_id, []).append(step)
    width = width_of(out)
    lines: list[str] = []
    for finding_id, texts in steps.items():
        if not texts:
            continue
        head = f"  {finding_id}{_gain(gains.get(finding_id, plan.gains.get(finding_id)))}:"
        if len(texts) == 1:
            lines += wrap(texts[0], width, head + " ", "      ")
            continue
        lines.append(head)
        for text in texts:
            lines += wrap(text, width, "    - ", "      ")
    return lines


def print_outcomes(title: str, outcomes: list[Outcome], out: TextIO) -> None:
    lines = ["", f"{title}:"]
    for outcome in outcomes:
        values = (f": {outcome.before} -> {outcome.after}"
                  if outcome.before or outcome.after else "")
        detail = f" ({outcome.detail})" if outcome.detail else ""
        lines.append(f"  [{_MARKS.get(outcome.result, outcome.result)}] {outcome.fix}: "
                     f"{outcome.what}{values}{detail}")
    write_plain(out, lines)


def print_checks(rows: list[dict], out: TextIO) -> None:
    if not rows:
        return
    write_plain(out, ["", "Checks, before -> after:"] + [
        f"  {row['id']}: {row['before'] or '-'} -> {row['after']}  {row['title']}"
        for row in rows])

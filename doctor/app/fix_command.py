"""The ``fix`` command: plan (dry run), --apply, --revert and --status, in text or JSON.

Exit status: 0 done, or nothing to do; 1 a fix was refused, did not verify, or the
command refused to act (not root, no terminal to confirm on and no --yes, a
read-only snapshot); 2 usage error (click).
"""

from __future__ import annotations

import json
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
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def _refuse(message: str, as_json: bool, host, mode: str, **parts: Any) -> int:
    if as_json:
        _print_json(_document(mode, host, refused=message, **parts))
    click.echo(f"q3cn-doctor: {message}", err=True)
    return EXIT_FAILED


def _confirm(question: str, yes: bool) -> str | None:
    """None to go ahead, else why not: --yes, or a terminal where the user said yes."""
    if yes:
        return None
    if not sys.stdin.isatty():
        return ("refusing to change this machine without confirmation: no terminal to ask "
                "on; add --yes to go ahead. Nothing was changed.")
    if click.confirm(question, default=False, err=True):
        return None
    return "not confirmed. Nothing was changed."


def run_fix(options, fix_options: FixOptions, *, apply: bool, revert: bool, status: bool,
            yes: bool, as_json: bool, plugins: bool) -> int:
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
    return _apply(host, options, facts, findings, plan, specs, yes, as_json)


# -- apply ------------------------------------------------------------------------------------
def _apply(host, options, facts, findings: list[Finding], plan: Plan, specs, yes: bool,
           as_json: bool) -> int:
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
            click.echo(message)
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
    try:
        outcomes = engine.apply(plan)
    except JournalError as exc:
        made = engine.journal_entries_of_this_run()
        tail = (f" Stopped after {made} journalled change(s): `q3cn-doctor fix --status` "
                "lists them, `--revert` undoes them." if made else " Nothing was changed.")
        return _refuse(f"{exc}.{tail}", as_json, host, "apply", plan=plan.to_json())
    checks = _recheck(host, options, findings, plan, specs)
    failed = [o for o in outcomes if o.result in (FAILED_OUTCOME, REFUSED)]
    if as_json:
        _print_json(_document("apply", host, plan=plan.to_json(),
                              results=[o.to_json() for o in outcomes], checks=checks))
    else:
        print_outcomes("Applied", outcomes, sys.stdout)
        print_checks(checks, sys.stdout)
        if failed:
            click.echo("Some fixes did not take: see above. `q3cn-doctor fix --revert` undoes "
                       "what was applied.")
    return EXIT_FAILED if failed or refused else EXIT_OK


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
            click.echo("Nothing to revert: the journal holds no change still in effect.")
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
            click.echo("Left alone: changed by someone else since q3cn-doctor wrote it; "
                       "review those by hand.")
    return EXIT_FAILED if bad else EXIT_OK


def _status(host, as_json: bool) -> int:
    try:
        rows = Engine(host).status()
    except JournalError as exc:
        return _refuse(str(exc), as_json, host, "status")
    if as_json:
        _print_json(_document("status", host, journal=rows))
        return EXIT_OK
    if not rows:
        click.echo("No change by q3cn-doctor is in effect.")
        return EXIT_OK
    click.echo(f"Changes by q3cn-doctor on {host.describe()} (newest first):")
    for row in rows:
        click.echo(f"  #{row['seq']} {row['time']}  {row['fix']}: {row['what']}: "
                   f"{row['before']} -> {row['after']}  [{row['state']}; {row['now']}]")
    click.echo("`q3cn-doctor fix --revert` restores the values and files as they were.")
    return EXIT_OK


# -- text ---------------------------------------------------------------------------------------
def _gain(value: float | None) -> str:
    return f" (gains ~{value:.0f} tok/s)" if value and value >= 0.5 else ""


def _print_ledger(ledger, out: TextIO) -> None:
    """The headline and its before/after bars: what the plan and the steps by hand gain."""
    from q3cn_doctor.report.layout import use_colour, width_of, wrap, write_lines
    from q3cn_doctor.report.picture import speed_bar_lines

    width = width_of(out)
    lines = [(text, "bold") for text in wrap(ledger.text(), width, "", "    ")]
    write_lines(lines + speed_bar_lines(ledger.figures(), width,
                                        "█" if use_colour(out) else "#"), out)


def print_plan(plan: Plan, host, out: TextIO, applying: bool = False, ledger=None) -> None:
    head = f"q3cn-doctor {__version__} fix plan for {host.describe()}"
    if not applying:
        head += " (dry run: nothing is changed; add --apply to apply)"
    out.write(head + "\n")
    if ledger is not None:
        out.write("\n")
        _print_ledger(ledger, out)
    euid = host.euid()
    unavailable = [p for p in plan.fixes if p.status == "unavailable"]
    shown = [p for p in plan.fixes_by_gain() if p.status != "unavailable"]
    if not shown:
        out.write("\nNo fix to make: no failing or warning finding offers one.\n")
    for fix_plan in shown:
        label = {CHANGE: "", ALREADY: " (already applied)", REFUSED: " (REFUSED)",
                 "optional": " (optional: only informational findings ask for it; "
                             f"apply with --only {fix_plan.fix_id})"}[fix_plan.status]
        out.write(f"\n{fix_plan.fix_id}: {fix_plan.title}{label}{_gain(fix_plan.gain_tok_s)}\n")
        for finding in fix_plan.findings:
            out.write(f"  cures {finding.id} [{finding.status}]: {finding.title}\n")
        if fix_plan.requested and not fix_plan.findings:
            out.write("  asked for with --only (no finding calls for it)\n")
        for change in fix_plan.changes:
            target = change.target
            root = ", needs root" if change.needs_root else ""
            state = {ALREADY: "  [already so]", REFUSED: f"  [REFUSED: {change.reason}]",
                     CHANGE: ""}[change.status]
            out.write(f"  - {change.what} [{target.kind}]: {target.show(change.current)} -> "
                      f"{target.show(change.new)}; takes effect {EFFECTS[change.effect]}"
                      f"{root}{state}\n")
        for note in fix_plan.notes:
            out.write(f"  note: {note}\n")
        for step in fix_plan.manual:
            out.write(f"  by hand: {step}\n")
    if unavailable:
        out.write("\nNot available here:\n")
        for fix_plan in unavailable:
            out.write(f"  {fix_plan.fix_id}: {fix_plan.reason}\n")
    if plan.manual:
        out.write("\nManual steps (software cannot do these), costliest problem first:\n")
        _print_manual(plan, ledger, out)
    if not applying and plan.pending_changes() and euid != 0:
        out.write("\nNot running as root: --apply will need sudo.\n")


def _print_manual(plan: Plan, ledger, out: TextIO) -> None:
    """Each finding's steps by hand under its id, with what it gains: first the steps the
    ledger counts, in its order and at its price (each on top of those before), then the
    others by their own cost."""
    from q3cn_doctor.report.layout import width_of, wrap

    counted = ledger.steps if ledger else []
    gains = {step.finding: step.gain_tok_s for step in counted}
    steps: dict[str, list[str]] = {step.finding: [] for step in counted}  # the ledger's order
    for finding_id, step in plan.manual_by_gain():
        steps.setdefault(finding_id, []).append(step)
    width = width_of(out)
    for finding_id, texts in steps.items():
        if not texts:
            continue
        head = f"  {finding_id}{_gain(gains.get(finding_id, plan.gains.get(finding_id)))}:"
        if len(texts) == 1:
            out.write("\n".join(wrap(texts[0], width, head + " ", "      ")) + "\n")
            continue
        out.write(head + "\n")
        for text in texts:
            out.write("\n".join(wrap(text, width, "    - ", "      ")) + "\n")


def print_outcomes(title: str, outcomes: list[Outcome], out: TextIO) -> None:
    out.write(f"\n{title}:\n")
    for outcome in outcomes:
        values = (f": {outcome.before} -> {outcome.after}"
                  if outcome.before or outcome.after else "")
        detail = f" ({outcome.detail})" if outcome.detail else ""
        out.write(f"  [{_MARKS.get(outcome.result, outcome.result)}] {outcome.fix}: "
                  f"{outcome.what}{values}{detail}\n")


def print_checks(rows: list[dict], out: TextIO) -> None:
    if not rows:
        return
    out.write("\nChecks, before -> after:\n")
    for row in rows:
        out.write(f"  {row['id']}: {row['before'] or '-'} -> {row['after']}  {row['title']}\n")

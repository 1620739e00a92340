"""What `check` and `report` print once the checks have run: the ledger (which needs the
fix plan, so it is put together here, above the report and fixing layers), then the text,
the JSON document or the HTML page."""

from __future__ import annotations

import sys
from typing import Any

import click
from q3cn_doctor.checking.findings import Finding
from q3cn_doctor.facts import Facts
from q3cn_doctor.options import Options
from q3cn_doctor.profiles import PROFILES
from q3cn_doctor.report.ledger import Ledger
from q3cn_doctor.version import __version__


def model_label(facts: Facts, options: Options) -> str:
    model = facts.get("model")
    if model is not None:
        return model.name
    return options.model.rsplit("/", 1)[-1] if options.model else PROFILES[options.profile]["name"]


def header(facts: Facts, options: Options, with_model: bool = True) -> str:
    """``q3cn-doctor 0.1: <machine>, <model>, ctx N``; the text report leaves the model
    to its ledger, which names it."""
    model = f", {model_label(facts, options)}" if with_model else ""
    return f"q3cn-doctor {__version__}: {facts.host.describe()}{model}, ctx {options.ctx_size}"


def fix_plan(facts: Facts, findings: list[Finding]) -> Any:
    """The plan `fix` would make for these findings (None where no finding offers a fix)."""
    if not any(f.fixes for f in findings):
        return None
    from q3cn_doctor.fixing.plan import FixOptions, build_plan

    return build_plan(facts, findings, FixOptions())


def cured_by(plan: Any) -> set[str]:
    """Ids of the findings `fix --apply` would cure: those of every fix it would run."""
    if plan is None:
        return set()
    return {f.id for fix in plan.fixes if fix.selected and fix.cures for f in fix.findings}


def make_ledger(facts: Facts, findings: list[Finding], options: Options,
                plan: Any) -> Ledger:
    from q3cn_doctor.report.ledger import add_measured, build_ledger

    label = model_label(facts, options)
    try:
        ledger = build_ledger(facts, findings, cured_by(plan), label)
    except Exception as exc:  # noqa: BLE001 - the headline must never cost the report
        ledger = Ledger(label, error=f"{type(exc).__name__}: {exc}")
    add_measured(ledger, facts.host)
    return ledger


def emit(facts: Facts, findings: list[Finding], options: Options, *, as_json: bool,
         verbose: bool, html_path: str | None) -> None:
    """Print the report (text or JSON) and, with ``html_path``, write the page too."""
    plan = fix_plan(facts, findings)
    ledger = make_ledger(facts, findings, options, plan)
    if html_path:
        write_html(html_path, facts, findings, options, ledger, plan)
    if as_json:
        from q3cn_doctor.report.document import json_document, print_json

        print_json(json_document(findings, facts, ledger.to_json(), verbose))
        return
    from q3cn_doctor.report.text import print_text

    evidence = sections = None
    if verbose:
        from q3cn_doctor.report.document import cite, fold_paths

        facts.to_json()  # every section gathered, so each one's sources are known
        sections = facts.sources()
        evidence = {f.id: cite(f.evidence, sections) for f in findings}
        sections = {name: fold_paths(found) for name, found in sections.items() if found}
    print_text(findings, header(facts, options, with_model=ledger.now is None), ledger, verbose,
               sys.stdout, evidence, sections)


def write_html(path: str, facts: Facts, findings: list[Finding], options: Options,
               ledger: Ledger, plan: Any) -> None:
    from q3cn_doctor.report.document import facts_document
    from q3cn_doctor.report.html import html_page

    page = html_page(findings, header(facts, options), ledger,
                     plan.to_json() if plan is not None else None,
                     facts_document(facts, verbose=False), facts.sources())
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(page)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc
    click.echo(f"Report written to {path}.", err=True)

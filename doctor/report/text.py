"""Reports for people (text, coloured on a terminal) and for programs (JSON).

Plain text needs no rich: piped output, NO_COLOR and CI logs get no escape
codes and no box drawing, and the preflight does not pay rich's import.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from q3cn_doctor.checking.findings import (
    AREAS,
    ERROR,
    FAIL,
    STATUSES,
    WARN,
    Finding,
    count_statuses,
)
from q3cn_doctor.checking.registry import CheckSpec
from q3cn_doctor.version import __version__

SCHEMA_VERSION = 1
_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "error": "bold magenta",
          "skip": "dim", "info": "cyan"}
_LABEL_WIDTH = 13


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never under NO_COLOR (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()


def _lines(findings: list[Finding], header: str, verbose: bool) -> list[tuple[str, str | None]]:
    """The report as (text, style) pairs; style is None for plain text."""
    lines: list[tuple[str, str | None]] = [(header, "bold"), ("", None)]
    order = {status: index for index, status in enumerate(STATUSES)}
    for area in AREAS:
        rows = sorted((f for f in findings if f.area == area), key=lambda f: order[f.status])
        if not rows:
            continue
        lines.append((area.upper(), "bold"))
        for finding in rows:
            lines.append((f"  [{finding.status}] {finding.id}: {finding.title}",
                          _STYLE[finding.status]))
            details = [("observed", finding.observed)]
            if finding.status != "pass" or verbose:
                details += [("recommended", finding.recommended), ("why", finding.impact)]
                if finding.cost_tok_s:
                    details.append(("costs", f"{finding.cost_tok_s:g} tok/s (the speed model's "
                                             "difference: fixing it gains that)"))
                if finding.fixes:
                    details.append(("fix", "q3cn-doctor fix --only " + ",".join(finding.fixes)))
                details += [("manual", step) for step in finding.manual]
            if verbose and finding.evidence:
                details.append(("evidence", ", ".join(finding.evidence)))
            for label, text in details:
                if text:
                    lines.append((f"      {label + ':':<{_LABEL_WIDTH}}{text}", None))
        lines.append(("", None))
    lines.append((summary_line(findings), "bold"))
    return lines


def summary_line(findings: list[Finding]) -> str:
    counts = count_statuses(findings)
    parts = [f"{counts[status]} {status}" for status in STATUSES if counts[status]]
    verdict = ("action needed" if counts[FAIL] else
               "some checks could not finish" if counts[ERROR] else
               "worth a look" if counts[WARN] else "nothing blocks a fast launch")
    return f"Summary: {', '.join(parts) or 'no findings'} ({verdict})"


def print_text(findings: list[Finding], header: str, verbose: bool, stream: TextIO) -> None:
    lines = _lines(findings, header, verbose)
    if not use_colour(stream):
        stream.write("\n".join(text for text, _ in lines) + "\n")
        return
    from rich.console import Console  # ~65 ms: only for a person at a terminal
    from rich.text import Text

    console = Console(file=stream, highlight=False, soft_wrap=True)
    for text, style in lines:
        console.print(Text(text, style=style or ""))


def print_check_list(specs: list[CheckSpec], stream: TextIO) -> None:
    width = max((len(spec.id) for spec in specs), default=0)
    for spec in specs:
        origin = "" if spec.origin == "built-in" else f"  [{spec.origin}]"
        stream.write(f"{spec.id:<{width}}  {spec.description}{origin}\n")


def json_document(findings: list[Finding], facts_json: dict, plan_json: dict,
                  host_summary: dict) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "q3cn-doctor", "version": __version__},
        "host": host_summary,
        "facts": facts_json,
        "plan": plan_json,
        "findings": [finding.to_json() for finding in findings],
        "summary": count_statuses(findings),
    }


def print_json(document: dict, stream: TextIO = sys.stdout) -> None:
    import json

    stream.write(json.dumps(document, indent=2, sort_keys=False) + "\n")

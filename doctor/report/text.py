"""The report for a person: the speed ledger first, then the problems ranked by what
they cost in tok/s, then one line per area for what passed; -v shows every finding in
full, where each value came from, and where the time of a token goes."""

from __future__ import annotations

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
from q3cn_doctor.report.layout import Line, wrap, write_lines
from q3cn_doctor.report.ledger import NOTICEABLE_TOK_S, Ledger, is_problem
from q3cn_doctor.report.output import write_plain
from q3cn_doctor.report.picture import time_per_token_lines
from q3cn_doctor.report.terminal import use_colour, width_of

STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "error": "bold magenta",
         "skip": "dim", "info": "cyan"}
_ORDER = {status: index for index, status in enumerate(STATUSES)}
DETAIL = " " * 4  # where a finding's details start


def rank(findings: list[Finding]) -> list[Finding]:
    """Costliest first (an unknown cost counts as none), then worst status first."""
    return sorted(findings, key=lambda f: (-(f.cost_tok_s or 0.0), _ORDER[f.status]))


def cost_label(finding: Finding) -> str:
    cost = finding.cost_tok_s
    if cost is None or cost <= 0:
        return ""
    return f" (costs ~{cost:.0f} tok/s)" if cost >= NOTICEABLE_TOK_S else " (costs <1 tok/s)"


def fix_command(finding: Finding) -> str:
    return "sudo q3cn-doctor fix --apply --only " + ",".join(finding.fixes)


def _short_name(finding: Finding) -> str:
    return finding.id.split(".", 1)[1]


def _title(finding: Finding, width: int) -> list[Line]:
    """``  [fail] memory.speed: RAM runs at ... (costs ~8 tok/s)``, wrapped under the id."""
    return [(text, STYLE[finding.status] if index == 0 else None)
            for index, text in enumerate(wrap(
                f"{finding.id}: {finding.title}{cost_label(finding)}", width,
                f"  [{finding.status}] ", DETAIL))]


def _problem(finding: Finding, width: int, verbose: bool) -> list[Line]:
    lines = _title(finding, width)
    details: list[tuple[str, str]] = []
    if verbose:
        advice = "" if [finding.recommended] == finding.manual else finding.recommended
        details += [("observed", finding.observed), ("recommended", advice),
                    ("why", finding.impact)]
    if finding.fixes:
        details.append(("fix", fix_command(finding)))
    steps = finding.manual if verbose or not finding.fixes else []
    if steps and not verbose:
        more = len(steps) - 1
        tail = f" (+{more} more in `q3cn-doctor fix`)" if more else ""
        details.append(("by hand", steps[0] + tail))
    else:
        details += [("by hand", step) for step in steps]
    if not finding.fixes and not steps and finding.recommended and not verbose:
        details.append(("advice", finding.recommended))
    for name, text in details:
        if text:
            lines += [(line, None) for line in wrap(text, width, f"{DETAIL}{name}: ",
                                                    DETAIL + "  ")]
    return lines


def _folded(findings: list[Finding], width: int) -> list[Line]:
    """One line per area: what passed, was noted or skipped, by short id."""
    lines: list[Line] = []
    for area in AREAS:
        rows = [f for f in findings if f.area == area]
        if not rows:
            continue
        groups = []
        for status in ("info", "skip", "pass"):
            names = [_short_name(f) for f in rows if f.status == status]
            if names:
                groups.append(f"{status}: {', '.join(names)}")
        lines += [(text, "dim") for text in wrap("; ".join(groups), width, f"  {area:<8}",
                                                 " " * 12)]
    return lines


def _full(finding: Finding, width: int, evidence: list[str]) -> list[Line]:
    """A finding that is no problem, as -v shows it: title, what was seen, where from."""
    lines = _title(finding, width)
    for name, text in (("observed", finding.observed), ("recommended", finding.recommended),
                       ("why", finding.impact), ("evidence", ", ".join(evidence))):
        if text:
            lines += [(line, None) for line in wrap(text, width, f"{DETAIL}{name}: ",
                                                    DETAIL + "  ")]
    return lines


def report_lines(findings: list[Finding], header: str, ledger: Ledger | None, verbose: bool,
                 width: int, solid: str = "#",
                 evidence: dict[str, list[str]] | None = None,
                 sections: dict[str, list[str]] | None = None) -> list[Line]:
    """The whole text report as (text, style) lines. With -v, ``evidence`` holds each
    finding's cited sources and ``sections`` each facts section's, as --json lists them."""
    lines: list[Line] = [(text, "bold") for text in wrap(header, width, "", "    ")]
    lines.append(("", None))
    if ledger is not None:
        lines += [(text, "bold") for text in wrap(ledger.text(), width, "", "    ")]
        if verbose and ledger.now is not None:
            lines += [("", None)] + time_per_token_lines(ledger.now, width, solid,
                                                         ledger.measured_tok_s)
        lines.append(("", None))
    ranked = rank(findings)
    problems = [f for f in ranked if is_problem(f)]
    if problems:
        lines.append((f"{len(problems)} problem{'s' if len(problems) > 1 else ''}, "
                      "costliest first:", "bold"))
        for finding in problems:
            lines += _problem(finding, width, verbose)
        lines.append(("", None))
    rest = [f for f in ranked if not is_problem(f)]
    if rest and verbose:
        lines.append(("Everything else:", "bold"))
        for finding in rest:
            lines += _full(finding, width, (evidence or {}).get(finding.id, finding.evidence))
        lines.append(("", None))
    elif rest:
        lines += _folded(rest, width)
    if verbose and sections:
        lines.append(("Sources of each facts section (cited as facts.<section>):", "bold"))
        for name, sources in sections.items():
            lines += [(text, "dim") for text in wrap(", ".join(sources), width,
                                                    f"  facts.{name}: ", "    ")]
        lines.append(("", None))
    summary = summary_line(findings) + ("" if verbose else "; -v shows every finding")
    return lines + [(text, "bold") for text in wrap(summary, width, "", "    ")]


def summary_line(findings: list[Finding]) -> str:
    counts = count_statuses(findings)
    parts = [f"{counts[status]} {status}" for status in STATUSES if counts[status]]
    verdict = ("action needed" if counts[FAIL] else
               "some checks could not finish" if counts[ERROR] else
               "worth a look" if counts[WARN] else "nothing blocks a fast launch")
    return f"Summary: {', '.join(parts) or 'no findings'} ({verdict})"


def print_text(findings: list[Finding], header: str, ledger: Ledger | None, verbose: bool,
               stream: TextIO, evidence: dict[str, list[str]] | None = None,
               sections: dict[str, list[str]] | None = None) -> None:
    solid = "█" if use_colour(stream) else "#"
    write_lines(report_lines(findings, header, ledger, verbose, width_of(stream), solid,
                             evidence, sections), stream)


def print_check_list(specs: list[CheckSpec], stream: TextIO) -> None:
    width = max((len(spec.id) for spec in specs), default=0)
    write_plain(stream, (f"{spec.id:<{width}}  {spec.description}"
                         + ("" if spec.origin == "built-in" else f"  [{spec.origin}]")
                         for spec in specs))

"""The report as one self-contained HTML page: the speed ledger, the problems ranked by
cost, the fix plan (software changes and steps by hand), every other finding, and the
facts. Inline CSS only: no script, no font, no image, no link to load, so the file can
be attached to a bug report or a forum post and read offline."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from q3cn_doctor.checking.findings import Finding, count_statuses
from q3cn_doctor.report.ledger import Ledger, is_problem
from q3cn_doctor.report.text import cost_label, fix_command, rank, summary_line

CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;
color:#1b1b1b;background:#fff}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ccc}
.ledger{font-size:1.15em;font-weight:600;background:#f3f6fb;padding:.7em 1em;
border-left:4px solid #2a62c9}
.bars div{display:flex;align-items:center;gap:.6em;margin:.2em 0}
.bars span.label{width:21em}.bars span.bar{height:1em;background:#2a62c9}
.bars span.bar.ram{background:#c98a1b}.bars span.bar.vram{background:#2e9a4a}
.bars span.bar.fixed{background:#2a9ab0}.bars span.bar.transitions{background:#9a3fb0}
article{border:1px solid #ddd;border-radius:6px;padding:.5em .9em;margin:.6em 0}
.status{display:inline-block;min-width:3.5em;font-weight:700;text-transform:uppercase}
.fail,.error{color:#b3261e}.warn{color:#9a6700}.info{color:#1f6feb}.pass{color:#1a7f37}
.skip{color:#777}dt{font-weight:600;margin-top:.3em}dd{margin-left:1.2em}
code,pre{font:13px/1.35 ui-monospace,monospace}pre{white-space:pre-wrap;background:#f6f6f6;
padding:.6em}table{border-collapse:collapse;width:100%}td{border-top:1px solid #eee;
padding:.25em .4em;vertical-align:top}
"""


def _bars(rows: list[tuple[str, float, str]], unit: str) -> str:
    best = max((value for _, value, _ in rows), default=0) or 1.0
    return '<div class="bars">' + "".join(
        f'<div><span class="label">{escape(label)}</span><span class="bar {kind}" '
        f'style="width:{max(1, round(30 * value / best))}em"></span>'
        f"<span>{value:.1f} {unit}</span></div>" for label, value, kind in rows) + "</div>"


def _ledger(ledger: Ledger | None) -> str:
    if ledger is None:
        return ""
    parts = [f'<p class="ledger" id="ledger">{escape(ledger.text())}</p>']
    figures = ledger.figures()
    if len(figures) > 1:
        parts.append(_bars([(label, value, "") for label, value in figures], "tok/s"))
    breakdown = getattr(ledger.now, "ms", None)
    if isinstance(breakdown, dict):
        rows = [(key.upper() if key in ("ram", "vram") else key, float(value), key)
                for key, value in breakdown.items()
                if isinstance(value, (int, float)) and value > 0]
        if rows:
            parts.append("<h2>Where the time of one token goes</h2>" + _bars(rows, "ms"))
    return "".join(parts)


def _finding(finding: Finding) -> str:
    details = [("observed", finding.observed), ("recommended", finding.recommended),
               ("why", finding.impact)]
    if finding.fixes:
        details.append(("fix", fix_command(finding)))
    details += [("by hand", step) for step in finding.manual]
    body = "".join(f"<dt>{name}</dt><dd>{escape(text)}</dd>" for name, text in details if text)
    return (f'<article><span class="status {finding.status}">{finding.status}</span> '
            f"<code>{escape(finding.id)}</code> {escape(finding.title)}"
            f"<strong>{escape(cost_label(finding))}</strong><dl>{body}</dl></article>")


def _plan(plan: dict[str, Any] | None, costs: dict[str, float]) -> str:
    if not plan:
        return "<p>No finding calls for a software fix.</p>"
    rows = []
    for fix in plan.get("fixes", []):
        if fix.get("status") != "change":
            continue
        changes = "; ".join(f"{c['what']}: {c['current']} -> {c['new']}"
                            for c in fix.get("changes", []) if c.get("status") == "change")
        rows.append(f"<tr><td><code>{escape(fix['id'])}</code></td><td>{escape(fix['title'])}"
                    f"</td><td>{escape(changes)}</td></tr>")
    manual = sorted(plan.get("manual", []), key=lambda m: -costs.get(m["finding"], 0))
    steps = "".join(f"<li><code>{escape(m['finding'])}</code>: {escape(m['step'])}</li>"
                    for m in manual)
    software = (f"<p>`sudo q3cn-doctor fix --apply` makes these changes:</p><table>"
                f"{''.join(rows)}</table>" if rows else "<p>No software change to make.</p>")
    return software + (f"<p>Steps by hand:</p><ol>{steps}</ol>" if steps else "")


def html_page(findings: list[Finding], header: str, ledger: Ledger | None,
              plan: dict[str, Any] | None, facts: dict[str, Any],
              evidence: dict[str, list[str]]) -> str:
    ranked = rank(findings)
    problems = [f for f in ranked if is_problem(f)]
    others = [f for f in ranked if not is_problem(f)]
    costs = {f.id: f.cost_tok_s or 0.0 for f in findings}
    facts_html = "".join(
        f"<details><summary><code>facts.{escape(name)}</code></summary><pre>"
        f"{escape(json.dumps(value, indent=1))}</pre>"
        + (f"<p>Read from: {escape(', '.join(evidence.get(name, [])))}</p>"
           if evidence.get(name) else "") + "</details>"
        for name, value in facts.items())
    counts = count_statuses(findings)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(header)}</title><style>{CSS}</style></head><body>"
        f"<h1>{escape(header)}</h1>{_ledger(ledger)}"
        f"<h2>Problems, costliest first ({len(problems)})</h2>"
        + ("".join(_finding(f) for f in problems) or "<p>None.</p>")
        + f"<h2>The fix plan</h2>{_plan(plan, costs)}"
        + f"<h2>Everything else ({len(others)})</h2>"
        + "<table>" + "".join(
            f'<tr><td class="status {f.status}">{f.status}</td><td><code>{escape(f.id)}'
            f"</code></td><td>{escape(f.title)}</td></tr>" for f in others) + "</table>"
        + f"<h2>Facts</h2>{facts_html}"
        + f"<p>{escape(summary_line(findings))}; "
        + escape(json.dumps(counts)) + "</p></body></html>\n")

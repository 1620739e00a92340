"""The --json document: one object per run, described by report.schema.json.

Evidence is listed once per facts section (``evidence``) and a finding names the
sections it used (``facts.memory``) beside what it read itself, instead of repeating
the same few hundred paths in every finding; llama-server's parsed --help and each
section's ``basis`` (where every value came from) stay out of the facts unless -v asks.
"""

from __future__ import annotations

import re
import sys
from typing import Any, TextIO

from q3cn_doctor.checking.findings import Finding, count_statuses
from q3cn_doctor.facts import Facts
from q3cn_doctor.report.summary import host_summary, plan_json
from q3cn_doctor.version import __version__

SCHEMA_VERSION = 2
SECTION_REFERENCE = "facts."
HELP_FIELDS = ("options", "flags")  # the parsed --help: with -v only
# A finding's optional parts, left out where empty: most findings have no fix, step or
# cost, and a pass no advice (the guide machine's document is a fifth smaller for it).
OMITTED_WHEN_EMPTY = ("observed", "recommended", "impact", "fixes", "manual", "action",
                      "what_if", "cost_tok_s")


# A whole number written as itself: a run of digits with no leading zero. "0000:01:00.0"
# (a PCI address, hexadecimal and zero-padded) stays text, so folding never rewrites it.
_NUMBER = re.compile(r"(?<!\d)([1-9]\d*|0)(?!\d)")


def _ranges(numbers: list[int]) -> str:
    """0,1,2,3,5 -> "0-3,5" (the kernel's cpulist style)."""
    numbers = sorted(set(numbers))
    spans: list[list[int]] = []
    for number in numbers:
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _fold_group(parts: list[str], rows: list[tuple[int, ...]]) -> list[str]:
    """Paths of one shape (``parts``, the text between the numbers) folded on the number
    that varies: cpu[0-15]/topology/core_id. Where two numbers vary, split on the last."""
    varying = [i for i in range(len(rows[0])) if len({row[i] for row in rows}) > 1]
    if not varying:
        return ["".join(_join(parts, [str(n) for n in rows[0]]))]
    if len(varying) == 1:
        index = varying[0]
        numbers = [str(n) for n in rows[0]]
        numbers[index] = f"[{_ranges([row[index] for row in rows])}]"
        return ["".join(_join(parts, numbers))]
    last = varying[-1]
    folded: list[str] = []
    for value in sorted({row[last] for row in rows}):
        folded += _fold_group(parts, [row for row in rows if row[last] == value])
    return folded


def _join(parts: list[str], numbers: list[str]) -> list[str]:
    joined = [parts[0]]
    for number, text in zip(numbers, parts[1:]):
        joined += [number, text]
    return joined


def fold_paths(sources: list[str]) -> list[str]:
    """Sources that differ only in a number, as one pattern with a range in brackets
    (/sys/devices/system/cpu/cpu[0-15]/cpufreq/scaling_governor), in first-seen order."""
    groups: dict[tuple[str, ...], list[tuple[int, ...]]] = {}
    for source in sources:
        pieces = _NUMBER.split(source)
        groups.setdefault(tuple(pieces[0::2]), []).append(
            tuple(int(n) for n in pieces[1::2]))
    folded: list[str] = []
    for parts, rows in groups.items():
        folded += _fold_group(list(parts), rows) if len(rows) > 1 else [
            "".join(_join(list(parts), [str(n) for n in rows[0]]))]
    return _brace(folded)


def _brace(paths: list[str]) -> list[str]:
    """Files of one folder as one brace pattern, at the place of the first
    (/sys/devices/system/cpu/cpu[0-15]/cache/index3/{level,size}); commands stay as run."""
    by_folder: dict[str, list[str]] = {}
    order: list[str] = []
    for path in paths:
        folder, _, name = path.rpartition("/")
        if not path.startswith("/") or not folder or any(c in name for c in "{},"):
            order.append(path)
            continue
        if folder not in by_folder:
            order.append(folder + "/")
        by_folder.setdefault(folder, []).append(name)
    return [entry if not entry.endswith("/") else
            (f"{entry}{by_folder[entry[:-1]][0]}" if len(by_folder[entry[:-1]]) == 1 else
             f"{entry}{{{','.join(by_folder[entry[:-1]])}}}") for entry in order]


def cite(evidence: list[str], sections: dict[str, list[str]]) -> list[str]:
    """``evidence`` with every facts section it holds whole named as ``facts.<name>``
    (largest first, so a section gathered inside another is not named twice), then the
    sources no cited section covers, in their order."""
    read = set(evidence)
    covered: set[str] = set()
    cited = []
    for name, sources in sorted(sections.items(), key=lambda item: -len(item[1])):
        found = set(sources)
        if found and found <= read and not found <= covered:
            cited.append(SECTION_REFERENCE + name)
            covered |= found
    return cited + fold_paths([source for source in evidence if source not in covered])


def facts_document(facts: Facts, verbose: bool) -> dict[str, Any]:
    document = facts.to_json()
    server = document.get("server")
    if isinstance(server, dict) and "error" not in server:
        server["options_count"] = len(server.get("options") or [])
        if not verbose:
            for name in HELP_FIELDS:
                server.pop(name, None)
    if not verbose:
        for section in document.values():
            if isinstance(section, dict):
                section.pop("basis", None)
    cpu = document.get("cpu")
    if isinstance(cpu, dict) and isinstance(cpu.get("frequency_policies"), list):
        cpu["frequency_policies"] = fold_policies(cpu["frequency_policies"])
    return document


def fold_policies(policies: list[Any]) -> list[Any]:
    """Frequency policies that differ only in their name and CPUs as one entry (a desktop
    has one policy a CPU, all alike): "policy0..policy15" with every CPU of them."""
    folded: list[dict[str, Any]] = []
    last: list[str] = []
    for policy in policies:
        if not isinstance(policy, dict):
            return policies
        same = {k: v for k, v in policy.items() if k not in ("name", "cpus")}
        if folded and same == {k: v for k, v in folded[-1].items() if k not in ("name", "cpus")}:
            folded[-1]["cpus"] = list(folded[-1]["cpus"]) + list(policy.get("cpus") or [])
            last[-1] = str(policy.get("name"))
            continue
        folded.append(dict(policy))
        last.append(str(policy.get("name")))
    for entry, final in zip(folded, last):
        if final != entry.get("name"):
            entry["name"] = f"{entry.get('name')}..{final}"
    return folded


def json_document(findings: list[Finding], facts: Facts, ledger: dict[str, Any],
                  verbose: bool = False) -> dict[str, Any]:
    facts_json = facts_document(facts, verbose)  # gathers every section: sources complete
    sections = facts.sources()
    listed = []
    for finding in findings:
        entry = finding.to_json()
        entry["evidence"] = cite(finding.evidence, sections)
        for name in OMITTED_WHEN_EMPTY:
            if entry.get(name) in ("", [], {}, None):  # a cost of 0.0 is kept: it says so
                entry.pop(name, None)
        listed.append(entry)
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "q3cn-doctor", "version": __version__},
        "host": host_summary(facts),
        "ledger": ledger,
        "facts": facts_json,
        "evidence": {name: fold_paths(sources) for name, sources in sections.items()
                     if sources},
        "plan": plan_json(facts),
        "findings": listed,
        "summary": count_statuses(findings),
    }


def print_json(document: dict[str, Any], stream: TextIO = sys.stdout) -> None:
    stream.write(dumps(document) + "\n")


def dumps(document: dict[str, Any]) -> str:
    """Indented JSON (one space a level) with every array of plain values on one line (a
    CPU list is one line, not sixteen, and so is a list of paths). Strict
    (``output.strict``): no NaN, Infinity or lone surrogate, whatever a snapshot held."""
    from q3cn_doctor.report.output import strict

    return _dump(strict(document), 0)


def _dump(value: Any, level: int) -> str:
    import json

    plain = (str, int, float, bool, type(None))

    def flat(item: Any) -> bool:
        return isinstance(item, plain) or (isinstance(item, list)
                                           and all(isinstance(v, plain) for v in item))

    if isinstance(value, dict) and value and all(flat(v) for v in value.values()):
        # A record of plain values and lists of them (a finding, a module, a ledger step)
        # is one line: a document of findings reads, greps and diffs a finding a line.
        return json.dumps(value, allow_nan=False)
    if isinstance(value, dict) and value:
        inner = " " * (level + 1)
        # Keys as json.dumps writes them: a number or null key becomes its string.
        items = [f"{inner}{json.dumps(key if isinstance(key, str) else json.dumps(key))}: "
                 f"{_dump(item, level + 1)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * level + "}"
    if isinstance(value, list) and value and not all(isinstance(v, plain) for v in value):
        inner = " " * (level + 1)
        items = [inner + _dump(item, level + 1) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * level + "]"
    return json.dumps(value, allow_nan=False)

"""Runs the selected checks against one host and collects their findings.

One broken check never stops the others: a crash becomes an ``error`` finding.
"""

from __future__ import annotations

from collections.abc import Iterable

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import AREAS, ERROR, STATUSES, Finding
from q3cn_doctor.checking.registry import PLUGINS_CHECK, CheckSpec, builtin_checks, plugin_checks
from q3cn_doctor.facts import Facts, FactsError


class SelectionError(ValueError):
    """An --only/--skip name that is neither an area nor a known check id."""


def available_checks(plugins: bool) -> tuple[list[CheckSpec], list[Finding]]:
    """Built-in checks plus, unless disabled, plugins and their load failures."""
    specs = builtin_checks()
    failures: list[Finding] = []
    if plugins:
        extra, failures = plugin_checks()
        known = {spec.id for spec in specs}
        for spec in extra:
            if spec.id in known:
                failures.append(_duplicate(spec))
            else:
                specs.append(spec)
                known.add(spec.id)
    return sorted(specs, key=lambda spec: spec.id), failures


def select(specs: list[CheckSpec], only: Iterable[str], skip: Iterable[str]) -> list[CheckSpec]:
    """Filter by ids or areas; an unknown name is a usage error, not a silent no-op."""
    only, skip = _names(only), _names(skip)
    known = {spec.id for spec in specs} | set(AREAS) | {PLUGINS_CHECK}
    unknown = [name for name in only + skip if name.split(":")[0] not in known]
    if unknown:
        raise SelectionError(
            f"unknown check or area: {', '.join(unknown)} (see `q3cn-doctor check --list`)"
        )
    return [spec for spec in specs if _wanted(spec.id, spec.area, only, skip)]


def select_failures(failures: list[Finding], only: Iterable[str],
                    skip: Iterable[str]) -> list[Finding]:
    """Plugin load failures answer to --only/--skip as the pseudo-check system.plugins."""
    only, skip = _names(only), _names(skip)
    return [f for f in failures if _wanted(f.check, f.area, only, skip)]


def _wanted(check_id: str, area: str, only: list[str], skip: list[str]) -> bool:
    def matches(names: list[str]) -> bool:
        return area in names or any(name.split(":")[0] == check_id for name in names)

    return (not only or matches(only)) and not matches(skip)


def _names(values: Iterable[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def run_checks(facts: Facts, specs: list[CheckSpec]) -> list[Finding]:
    """Every spec's findings; the facts are shared, so each source is read once."""
    host, options = facts.host, facts.options
    findings = []
    for spec in specs:
        findings.extend(run_one(Context(host, facts, options, spec)))
    return findings


def run_one(ctx: Context) -> list[Finding]:
    spec = ctx.spec
    assert spec is not None
    with ctx.host.tracing() as trace:
        ctx.evidence = trace
        try:
            result = spec.func(ctx)
            if result is None:
                found: list = []
            elif isinstance(result, (Finding, str, bytes, dict)) or not isinstance(
                    result, Iterable):
                found = [result]
            else:
                found = list(result)
        except FactsError as exc:
            return [_crash(ctx, str(exc), trace)]
        except (Exception, SystemExit) as exc:  # a plugin calling sys.exit() included
            import traceback

            where = traceback.extract_tb(exc.__traceback__)[-1]
            detail = f"{type(exc).__name__}: {exc} (at {where.filename.rsplit('/', 1)[-1]}"
            return [_crash(ctx, detail + f":{where.lineno})", trace)]
        wrong = next((item for item in found if not _well_formed(item)), None)
        if wrong is not None:  # output and exit codes would crash on it later
            return [_crash(ctx, f"it returned {repr(wrong)[:120]}, not a Finding with a known "
                                "area, status and a title (make one with ctx.finding)", trace)]
    return found


def _well_formed(item: object) -> bool:
    return (isinstance(item, Finding) and item.area in AREAS and item.status in STATUSES
            and isinstance(item.title, str) and bool(item.title))


def _crash(ctx: Context, detail: str, trace: list[str]) -> Finding:
    spec = ctx.spec
    assert spec is not None
    return Finding(
        id=spec.id, check=spec.id, area=spec.area, status=ERROR,
        title=f"The {spec.id} check could not finish",
        observed=detail,
        recommended="Report this with a snapshot (`q3cn-doctor snapshot --tar FILE`).",
        impact="What this check looks for is unknown on this machine.",
        evidence=list(trace),
    )


def _duplicate(spec: CheckSpec) -> Finding:
    return Finding(
        id=f"{PLUGINS_CHECK}:{spec.id}", check=PLUGINS_CHECK, area="system", status=ERROR,
        title=f"Plugin check {spec.id} clashes with a check of the same id",
        observed=f"{spec.origin} registers {spec.id}, which is already taken",
        recommended="Rename the plugin's check id.",
        impact="The plugin's check did not run.",
    )

"""Where checks come from: the built-in modules in checks/ and third-party plugins.

A check is a function taking a Context and returning findings, registered with
``@check("area.name", "one-line description")``. Plugins expose such functions
(or modules holding them) through the entry-point group ``q3cn_doctor.checks``.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Union

from q3cn_doctor.checking.findings import AREAS, ERROR, Finding

if TYPE_CHECKING:
    from q3cn_doctor.checking.context import Context

ENTRY_POINT_GROUP = "q3cn_doctor.checks"
PLUGINS_CHECK = "system.plugins"  # the id plugin load failures report under
CheckResult = Union[Finding, Iterable[Finding], None]


@dataclass(frozen=True)
class CheckSpec:
    id: str
    description: str
    func: Callable[[Context], CheckResult]
    origin: str = "built-in"  # or the plugin distribution's entry point

    @property
    def area(self) -> str:
        return self.id.split(".", 1)[0]


_registered: dict[str, CheckSpec] = {}


def check(check_id: str, description: str) -> Callable:
    """Register a function as a check. Ids are ``<area>.<name>``, stable and documented."""
    area, _, name = check_id.partition(".")
    if area not in AREAS or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"check id {check_id!r} must be <area>.<name> with area in {AREAS} "
                         "and a name of letters, digits, '_', '.' and '-'")

    def register(func: Callable[[Context], CheckResult]) -> Callable[[Context], CheckResult]:
        spec = CheckSpec(check_id, description, func, getattr(func, "__module__", "?"))
        func.q3cn_check = spec  # type: ignore[attr-defined]
        _registered[check_id] = spec
        return func

    return register


def builtin_checks() -> list[CheckSpec]:
    """Every module in checks/, imported (which registers its checks)."""
    return _collect("q3cn_doctor.checks", origin="built-in")


def _collect(package_name: str, origin: str) -> list[CheckSpec]:
    package = importlib.import_module(package_name)
    specs = []
    for module in pkgutil.iter_modules(package.__path__):
        loaded = importlib.import_module(f"{package_name}.{module.name}")
        specs.extend(_specs_in(loaded, origin))
    return sorted(specs, key=lambda spec: spec.id)


def _specs_in(obj: object, origin: str) -> list[CheckSpec]:
    """The checks an entry point or module offers."""
    spec = getattr(obj, "q3cn_check", None)
    if isinstance(spec, CheckSpec):
        return [CheckSpec(spec.id, spec.description, spec.func, origin)]
    found = []
    for value in vars(obj).values() if hasattr(obj, "__dict__") else ():
        inner = getattr(value, "q3cn_check", None)
        if isinstance(inner, CheckSpec) and getattr(value, "__module__", None) == getattr(
            obj, "__name__", None
        ):
            found.append(CheckSpec(inner.id, inner.description, inner.func, origin))
    return found


def plugin_checks() -> tuple[list[CheckSpec], list[Finding]]:
    """Third-party checks, and an error finding for each plugin that failed to load."""
    from importlib.metadata import entry_points  # ~65 ms: only on the check path

    try:
        points = entry_points(group=ENTRY_POINT_GROUP)
    except TypeError:  # Python 3.9: entry_points() takes no group
        points = entry_points().get(ENTRY_POINT_GROUP, [])
    specs: list[CheckSpec] = []
    failures: list[Finding] = []
    for point in points:
        origin = f"plugin {point.name} ({point.value})"
        try:
            loaded = point.load()
            found = _specs_in(loaded, origin)
            if not found:
                raise TypeError("it registers no check (use @q3cn_doctor.checking.registry.check)")
        except (Exception, SystemExit) as exc:  # a broken plugin is a finding, never a crash
            failures.append(plugin_failure(point.name, point.value, exc))
            continue
        specs.extend(found)
    return specs, failures


def plugin_failure(name: str, target: str, exc: BaseException) -> Finding:
    return Finding(
        id=f"{PLUGINS_CHECK}:{name}",
        check=PLUGINS_CHECK,
        area="system",
        status=ERROR,
        title=f"Plugin {name} could not be loaded",
        observed=f"{target}: {type(exc).__name__}: {exc}",
        recommended="Update or uninstall the plugin, or run with --no-plugins.",
        impact="Its checks did not run, so what they look for is unknown.",
        evidence=[f"entry point {ENTRY_POINT_GROUP}:{name} = {target}"],
    )

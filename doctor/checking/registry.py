"""Where checks come from: the built-in modules in checks/ and third-party plugins.

A check is a function taking a Context and returning findings, registered with
``@check("area.name", "one-line description")``. Plugins expose such functions
(or modules holding them) through the entry-point group ``q3cn_doctor.checks``.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Callable, Union

from msgspec import Struct
from q3cn_doctor.checking.findings import AREAS, ERROR, Finding

if TYPE_CHECKING:
    from q3cn_doctor.checking.context import Context

ENTRY_POINT_GROUP = "q3cn_doctor.checks"
PLUGINS_CHECK = "system.plugins"  # the id plugin load failures report under
CheckResult = Union[Finding, Iterable[Finding], None]


class CheckSpec(Struct, frozen=True):
    """A registered check: its id, what it judges and the function that does."""
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
    specs: list[CheckSpec] = []
    failures: list[Finding] = []
    for name, value in plugin_index():
        origin = f"plugin {name} ({value})"
        try:
            loaded = _load_entry_point(value)
            found = _specs_in(loaded, origin)
            if not found:
                raise TypeError("it registers no check (use @q3cn_doctor.checking.registry.check)")
        except (Exception, SystemExit) as exc:  # a broken plugin is a finding, never a crash
            failures.append(plugin_failure(name, value, exc))
            continue
        specs.extend(found)
    return specs, failures


# -- the plugin index ---------------------------------------------------------------------
# Finding entry points with importlib.metadata costs 25-30 ms a run with bytecode cached (its
# imports, and reading every distribution's metadata; 65 ms compiling), on a preflight
# that usually finds no plugin at all. So the answer is
# kept in this user's cache with a stamp of what discovery reads: every sys.path entry and,
# in each, the names, mtimes and sizes of every *.dist-info / *.egg-info folder and its
# entry_points.txt. Installing, upgrading or removing a distribution adds, renames or
# removes such a folder (or rewrites its entry_points.txt), so the stamp differs and
# discovery runs again; other files coming and going in those folders do not matter.
# Plugins are this Python environment's, not the checked machine's: the index lives in
# the user's cache whatever host is checked.
PLUGIN_INDEX_CACHE = "plugins.json"
PLUGIN_INDEX_FORMAT = 1
PLUGIN_INDEX_ENVIRONMENTS = 8  # the most recent environments (venvs, PYTHONPATHs) kept
_METADATA_SUFFIXES = (".dist-info", ".egg-info")


def plugin_index() -> list[tuple[str, str]]:
    """(name, target) of every entry point in the group, as importlib.metadata finds them,
    from the cache where nothing it reads has changed since."""
    from q3cn_doctor.host.live import LiveHost

    env = _environment_key()
    if env is None:  # a finder of its own supplies distributions: nothing to stamp
        return _discover()
    cache = LiveHost()
    stamp = _stamp()
    data = cache.load_cache(PLUGIN_INDEX_CACHE)
    environments = data.get("environments") if data.get("format") == PLUGIN_INDEX_FORMAT else None
    if not isinstance(environments, dict):
        environments = {}
    entry = environments.get(env)
    if isinstance(entry, dict) and entry.get("stamp") == stamp:
        points = entry.get("points")
        if isinstance(points, list) and all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(v, str) for v in p)
                for p in points):
            return [(name, value) for name, value in points]
    found = _discover()
    environments.pop(env, None)
    environments[env] = {"stamp": stamp, "points": [list(point) for point in found]}
    while len(environments) > PLUGIN_INDEX_ENVIRONMENTS:
        environments.pop(next(iter(environments)))
    cache.store_cache(PLUGIN_INDEX_CACHE,
                      {"format": PLUGIN_INDEX_FORMAT, "environments": environments})
    return found


def _discover() -> list[tuple[str, str]]:
    """The group's entry points, found by importlib.metadata (the slow path)."""
    from importlib.metadata import entry_points

    try:
        points = entry_points(group=ENTRY_POINT_GROUP)
    except TypeError:  # Python 3.9: entry_points() takes no group
        points = entry_points().get(ENTRY_POINT_GROUP, [])
    return [(point.name, point.value) for point in points]


def _environment_key() -> str | None:
    """What names this environment's discovery: the interpreter and sys.path. None where
    a meta-path finder other than the standard PathFinder offers distributions, as the
    stamp cannot see what such a finder reads."""
    from importlib.machinery import PathFinder

    for finder in sys.meta_path:
        if finder is not PathFinder and hasattr(finder, "find_distributions"):
            return None
    return "\0".join([sys.executable, sys.version] + [_path_entry(p) for p in sys.path])


def _path_entry(entry: str) -> str:
    return os.path.abspath(entry or ".")  # "" is the current folder, as discovery reads it


def _stamp() -> list:
    """mtimes and sizes of what discovery reads, in sys.path order."""
    stamp: list = []
    for entry in map(_path_entry, sys.path):
        try:
            info = os.stat(entry)
        except OSError:
            stamp.append([entry, None])
            continue
        if not os.path.isdir(entry):  # a zip or an egg file
            stamp.append([entry, info.st_mtime_ns, info.st_size])
            continue
        found = []
        try:
            with os.scandir(entry) as children:
                for child in children:
                    low = child.name.lower()
                    if low.endswith(_METADATA_SUFFIXES) or low == "egg-info":
                        found.append([child.name, *_mtime_size(child.path),
                                      *_mtime_size(os.path.join(child.path, "entry_points.txt"))])
        except OSError:
            pass
        stamp.append([entry, sorted(found)])
    return stamp


def _mtime_size(path: str) -> list:
    try:
        info = os.stat(path)
    except OSError:
        return [None, None]
    return [info.st_mtime_ns, info.st_size]


_ENTRY_POINT_VALUE = r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$"


def _load_entry_point(value: str) -> object:
    """What an entry point names, ``module`` or ``module:attr.attr``, as EntryPoint.load()."""
    match = re.match(_ENTRY_POINT_VALUE, value)
    if match is None:
        raise ValueError(f"{value!r} is not module or module:attribute")
    loaded: object = importlib.import_module(match.group("module"))
    for attr in (match.group("attr") or "").split("."):
        if attr:
            loaded = getattr(loaded, attr)
    return loaded


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

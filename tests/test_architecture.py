"""The layout is the pipeline: every import points down it, never back up.

Parses every module of the package (top-level imports and those inside functions, which
is where circles hide) and fails on an arrow from a layer to one above it, or sideways
between two layers on the same rung. docs/architecture.md draws the same ladder.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent

# Lowest first. A layer may import its own modules and any layer on a lower rung.
LADDER: list[tuple[str, ...]] = [
    ("base",),  # version, options, profiles, units: plain values every layer shares
    ("parsers",),  # bytes in, data out
    ("host",),  # the door to the machine
    ("facts",),
    ("plan",),
    ("checking",),
    ("report", "fixing"),
    ("checks", "fixes", "launch"),
    ("measure",),  # runs llama.cpp as the launch plan says
    ("hooks",),
    ("app",),
]
RUNG = {layer: rung for rung, layers in enumerate(LADDER) for layer in layers}
BASE_MODULES = {"version", "options", "profiles", "units", "records", "__init__"}
SOURCE_DIRS = {"doctor": "q3cn_doctor", "checks": "q3cn_doctor.checks",
               "fixes": "q3cn_doctor.fixes"}


def layer_of(module: str) -> str:
    """``q3cn_doctor.host.live`` -> ``host``; the top-level value modules -> ``base``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "base"
    if parts[1] == "__main__":
        return "app"
    return "base" if parts[1] in BASE_MODULES else parts[1]


def modules() -> list[tuple[str, Path]]:
    found = []
    for folder, package in SOURCE_DIRS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO / folder).with_suffix("").parts
            if relative[-1] == "__init__":
                relative = relative[:-1]
            found.append((".".join((package, *relative)), path))
    return found


def imports_of(module: str, path: Path) -> list[tuple[int, str]]:
    """Every q3cn_doctor module this file imports, anywhere in it, resolved to absolute."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # ``from q3cn_doctor.host import live`` imports the module host.live
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names
                      if (REPO / "doctor" / Path(*target.split(".")[1:]) / f"{alias.name}.py"
                          ).exists()]
    return [(line, name) for line, name in found if name.split(".")[0] == "q3cn_doctor"]


def test_every_layer_is_on_the_ladder():
    layers = {layer_of(module) for module, _ in modules()}
    assert layers <= set(RUNG), layers - set(RUNG)


@pytest.mark.parametrize("module,path", modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_point_down_the_pipeline(module, path):
    here = layer_of(module)
    wrong = []
    for line, target in imports_of(module, path):
        there = layer_of(target)
        if there == here or RUNG[there] < RUNG[here]:
            continue
        direction = "up to" if RUNG[there] > RUNG[here] else "sideways to"
        wrong.append(f"{path.relative_to(REPO)}:{line} imports {target} ({here} {direction} "
                     f"{there})")
    assert not wrong, "\n".join(wrong)


def test_the_ladder_catches_an_arrow_back_up(tmp_path):
    """The test itself can fail: a facts module importing the plan is refused."""
    source = tmp_path / "memory.py"
    source.write_text("def f():\n    from ..plan.placement import place\n")
    targets = [t for _, t in imports_of("q3cn_doctor.facts.memory", source)]
    assert targets == ["q3cn_doctor.plan.placement"]
    assert RUNG[layer_of(targets[0])] > RUNG[layer_of("q3cn_doctor.facts.memory")]


def dataclass_imports(path: Path) -> list[int]:
    """Lines of ``path`` that import the dataclasses module."""
    return [node.lineno for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.Import) and any(a.name == "dataclasses" for a in node.names)
            or isinstance(node, ast.ImportFrom) and node.module == "dataclasses"]


def test_records_are_structs_not_dataclasses():
    """One kind of record: msgspec's Struct. Python 3.11's dataclass compiles its
    __init__, __repr__ and __eq__ from source when the class is made (0.5 ms a class
    here, 31 ms for the 55 on check's path); a Struct's are built in C."""
    wrong = [f"{path.relative_to(REPO)}:{line}" for _, path in modules()
             for line in dataclass_imports(path)]
    assert not wrong, "\n".join(wrong)


def test_the_record_rule_can_fail(tmp_path):
    source = tmp_path / "record.py"
    source.write_text("import os\nfrom dataclasses import dataclass\n")
    assert dataclass_imports(source) == [2]

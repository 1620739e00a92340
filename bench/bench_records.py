#!/usr/bin/env python3
"""What making one record class costs: a dataclass against a msgspec Struct.

Not a test: run by hand. Why records are Structs (docs/architecture.md, "Records"): on
Python 3.11 a dataclass compiles its __init__, __repr__ and __eq__ from source text when
its class statement runs, at every start of the program; a Struct's are made in C. Each
kind is timed over the same six-field class body (two required fields, four defaults),
with the bare class statement as the baseline; prints milliseconds per class::

    .venv/bin/python bench/bench_records.py            # --classes 300 by default
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import msgspec

BODY = '''
    """A record."""
    a: "int"
    b: "str"
    c: "float" = 0.0
    d: "list | None" = None
    e: "int" = 3
    f: "int" = 4
'''
KINDS = {
    "class only": ("class C:", lambda cls: cls),
    "dataclass": ("class C:", dataclasses.dataclass),
    "dataclass(frozen=True)": ("class C:", dataclasses.dataclass(frozen=True)),
    "msgspec.Struct": ("class C(msgspec.Struct):", lambda cls: cls),
    "msgspec.Struct(frozen=True)": ("class C(msgspec.Struct, frozen=True):", lambda cls: cls),
}


def per_class_ms(header: str, decorate, classes: int) -> float:
    """Milliseconds to run the class statement and decorate it, per class."""
    code = compile(header + BODY, "<record>", "exec")
    started = time.perf_counter()
    for _ in range(classes):
        namespace = {"msgspec": msgspec}
        exec(code, namespace)
        decorate(namespace["C"])
    return (time.perf_counter() - started) / classes * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=300, help="classes per round (300)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, median kept (5)")
    args = parser.parse_args()
    print(f"{'kind':<30}{'ms per class':>14}")
    for name, (header, decorate) in KINDS.items():
        figure = statistics.median(per_class_ms(header, decorate, args.classes)
                                   for _ in range(args.rounds))
        print(f"{name:<30}{figure:>14.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

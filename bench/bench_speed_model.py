#!/usr/bin/env python3
"""The speed model against public measurements: fit, leave-one-out, and the table.

Not a test: a script to run by hand. It fits doctor/plan/roofline.py's five constants on
every 'fit' row of bench/speed_calibration.tsv, then predicts each row from the constants
fitted on all the other rows (leave-one-out cross-validation), and prints per point the
measured and predicted tok/s and the error, then the cross-validated median absolute error,
the share of points within 25%, and the 80th percentile that sets the range the doctor
quotes (roofline.RANGE_ERROR). Targets: median <= 12%, >= 80% within 25%.

With --by-machine, every run of the same machine is left out together (harder: no sibling
run of the machine helps predict it). The 'disk' rows (weights that do not fit in RAM) are
listed apart: the model says "far below" for them. Run it from the repository root::

    .venv/bin/python bench/bench_speed_model.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from q3cn_doctor.plan import roofline  # noqa: E402
from speed_calibration import (  # noqa: E402 - the path above makes it importable
    errors,
    fit,
    leave_one_out,
    load_points,
    predict,
    summary,
)


def by_machine(points):
    """Leave-one-machine-out: a machine is its CPU, RAM and GPU text."""
    def machine(point):
        row = point.row
        return (row["cpu"], row["ram_mts"], row["gpus"]) if row["cpu"] else (row["id"],)
    pairs = []
    for point in points:
        rest = [p for p in points if machine(p) != machine(point)]
        pairs.append((point, predict(point, fit(rest))))
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--by-machine", action="store_true",
                        help="leave every run of a machine out together")
    options = parser.parse_args()
    points = [p for p in load_points(("fit",)) if p.work is not None]
    constants = fit(points)
    pairs = by_machine(points) if options.by_machine else leave_one_out(points)
    errs = errors(pairs)
    print(f"{'id':5} {'measured':>8} {'predicted':>9} {'error':>7}  run")
    for (point, predicted), err in zip(pairs, errs):
        flag = "  *" if abs(err) > 0.25 else ""
        print(f"{point.id:5} {point.measured:8.1f} {predicted:9.1f} {err:+7.0%}  "
              f"{point.label[:90]}{flag}")
    stats = summary(errs)
    in_sample = summary(errors([(p, predict(p, constants)) for p in points]))
    print()
    print(f"fitted on all {len(points)} points: ram_fraction {constants.ram_fraction:.3f}, "
          f"thread_bytes_s {constants.thread_bytes_s / 1e9:.2f} GB/s, vram_fraction "
          f"{constants.vram_fraction:.3f}, fixed {constants.fixed_ms:.3f} ms, transition "
          f"{constants.transition_ms:.4f} ms")
    print(f"in the code: ram_fraction {roofline.RAM_FRACTION}, thread_bytes_s "
          f"{roofline.THREAD_BYTES_S / 1e9:.2f} GB/s, vram_fraction {roofline.VRAM_FRACTION}, "
          f"fixed {roofline.FIXED_MS} ms, transition {roofline.TRANSITION_MS} ms, "
          f"range {roofline.RANGE_ERROR}")
    print(f"in-sample: median {in_sample['median']:.1%}, within 25% "
          f"{in_sample['within_25']:.0%}")
    how = "leave-one-machine-out" if options.by_machine else "leave-one-out"
    print(f"cross-validated ({how}), {stats['points']} points: median error "
          f"{stats['median']:.1%}, within 25%: {stats['within_25']:.0%}, 80th percentile "
          f"{stats['p80']:.1%} (targets: median <= 12%, within 25% >= 80%)")
    disk = load_points(("disk",))
    if disk:
        print("\npaging from disk (the model says 'far below'; measured):")
        for point in disk:
            print(f"{point.id:5} {point.measured:8.2f}  {point.label[:90]} "
                  f"(bandwidth-bound estimate {predict(point, constants):.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

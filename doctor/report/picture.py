"""Pictures of speed for a terminal: where the time of one token goes (RAM, VRAM, the
fixed cost), and tok/s before and after the fixes, as bars.

`check -v` and `fix` draw them; `bench speed` draws the time per token with
``time_per_token_lines`` (its measured figure beside the estimate). Figures are the
speed model's (a ``SpeedEstimate``'s ``ms`` breakdown, a ``Ledger``'s stages).
"""

from __future__ import annotations

from typing import Any, TextIO

from q3cn_doctor.report.layout import Line, write_lines
from q3cn_doctor.report.terminal import use_colour, width_of

PARTS = {"ram": "RAM", "vram": "VRAM", "fixed": "fixed", "transitions": "transitions"}
STYLES = {"ram": "yellow", "vram": "green", "fixed": "cyan", "transitions": "magenta"}
LABEL_WIDTH = 12


def _bar(share: float, cells: int, solid: str) -> str:
    filled = max(0, min(cells, round(share * cells)))
    return solid * filled + " " * (cells - filled)


def time_per_token_lines(estimate: Any, width: int, solid: str = "#",
                         measured_tok_s: float | None = None) -> list[Line]:
    """Rows of the estimate's ``ms`` breakdown, largest share first, each a bar of its
    share of the token's time; a measured tok/s, where given, beside the total."""
    breakdown = getattr(estimate, "ms", None)
    if not isinstance(breakdown, dict):
        return []
    parts = {key: float(value) for key, value in breakdown.items()
             if isinstance(value, (int, float)) and value > 0}
    total = sum(parts.values())
    if total <= 0:
        return []
    head = f"Time per token: {total:.1f} ms (~{1000 / total:.0f} tok/s estimated"
    if measured_tok_s:
        head += f"; measured {measured_tok_s:.1f} tok/s = {1000 / measured_tok_s:.1f} ms"
    lines: list[Line] = [(head + ")", "bold")]
    cells = max(10, width - LABEL_WIDTH - 20)
    for key, value in sorted(parts.items(), key=lambda item: -item[1]):
        label = PARTS.get(key, key)
        lines.append((f"  {label:<{LABEL_WIDTH}}{_bar(value / total, cells, solid)} "
                      f"{value:6.1f} ms {value / total:4.0%}", STYLES.get(key)))
    return lines


def speed_bar_lines(figures: list[tuple[str, float]], width: int,
                    solid: str = "#") -> list[Line]:
    """tok/s now and after each stage, as bars against the best of them."""
    if len(figures) < 2:
        return []
    best = max(value for _, value in figures) or 1.0
    label_width = max(len(label) for label, _ in figures) + 2
    cells = max(10, width - label_width - 16)
    lines: list[Line] = []
    for index, (label, value) in enumerate(figures):
        style = "red" if index == 0 else "green" if index == len(figures) - 1 else "yellow"
        lines.append((f"  {label:<{label_width}}{_bar(value / best, cells, solid)} "
                      f"~{value:.0f} tok/s", style))
    return lines


def print_time_per_token(estimate: Any, stream: TextIO,
                         measured_tok_s: float | None = None) -> None:
    """For `bench speed`: the picture of one token's time, in colour on a terminal."""
    solid = "█" if use_colour(stream) else "#"
    write_lines(time_per_token_lines(estimate, width_of(stream), solid, measured_tok_s),
                stream)

"""What llama.cpp says about its own speed: ``llama-bench -o json`` records, the
``timings`` of llama-server's ``/completion``, and the flags ``llama-bench --help`` lists.

llama-bench prints one record per test: a prompt-processing test (``n_prompt`` > 0,
``n_gen`` 0) or a generation test (``n_gen`` > 0), each with the mean and standard
deviation of tokens/s over its repetitions and every repetition's figure
(``samples_ts``). llama-server's ``/completion`` answers with ``timings``:
``prompt_per_second`` over the prompt tokens it evaluated (``prompt_n``; ``cache_n``
were reused from its cache) and ``predicted_per_second`` over the tokens it generated.
"""

from __future__ import annotations

import json
import re
import statistics

from msgspec import Struct, field
from q3cn_doctor.parsers.patterns import LazyPattern
from q3cn_doctor.records import plain

_FLAG = LazyPattern(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")


class SpeedOutputError(ValueError):
    """Output that is not what llama-bench or llama-server print."""


class Rate(Struct):
    """Tokens/s over repeated runs: the mean, its spread, and every run's figure."""

    mean: float
    stddev: float
    samples: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, samples: list[float]) -> Rate:
        values = [float(s) for s in samples if s and s > 0]
        if not values:
            raise SpeedOutputError("no positive tokens/s figure")
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), spread, values)

    @property
    def spread(self) -> float:
        """The standard deviation as a share of the mean (0.03: 3%)."""
        return self.stddev / self.mean if self.mean else 0.0

    def merged(self, other: Rate) -> Rate:
        return Rate.of(self.samples + other.samples)

    def text(self) -> str:
        return f"{self.mean:.1f} ± {self.stddev:.1f}"

    def to_json(self) -> dict:
        return {"mean": round(self.mean, 2), "stddev": round(self.stddev, 2),
                "samples": [round(s, 2) for s in self.samples]}


class BenchRecord(Struct):
    """One llama-bench test: what it ran and how fast."""

    n_prompt: int
    n_gen: int
    n_depth: int
    rate: Rate
    n_threads: int | None = None
    n_batch: int | None = None
    n_ubatch: int | None = None
    type_k: str | None = None
    type_v: str | None = None
    build_commit: str | None = None
    build_number: int | None = None
    model_type: str | None = None
    cpu_info: str | None = None
    backends: str | None = None

    @property
    def kind(self) -> str:
        """"pp" for a prompt-processing test, "tg" for a generation test."""
        return "tg" if self.n_gen > 0 else "pp"

    def to_json(self) -> dict:
        document = plain(self)
        document["rate"] = self.rate.to_json()
        return document


def parse_bench_json(text: str) -> list[BenchRecord]:
    """The records of ``llama-bench -o json`` (a JSON array; ``-o jsonl`` is read too)."""
    text = (text or "").strip()
    if not text:
        raise SpeedOutputError("llama-bench printed nothing")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise SpeedOutputError(f"not llama-bench JSON: {exc}") from exc
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise SpeedOutputError("not llama-bench JSON: expected a list of test records")
    return [_record(item) for item in data]


def _record(item: dict) -> BenchRecord:
    try:
        n_prompt, n_gen = int(item.get("n_prompt") or 0), int(item.get("n_gen") or 0)
        samples = item.get("samples_ts") or [item["avg_ts"]]
        rate = Rate.of([float(value) for value in samples])
        if "stddev_ts" in item and len(rate.samples) > 1:
            rate.stddev = float(item["stddev_ts"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SpeedOutputError(f"a llama-bench record without its figures: {exc}") from exc

    def text(name: str) -> str | None:
        value = item.get(name)
        return str(value) if value not in (None, "") else None

    def number(name: str) -> int | None:
        value = item.get(name)
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
            else None

    return BenchRecord(n_prompt=n_prompt, n_gen=n_gen, n_depth=number("n_depth") or 0,
                       rate=rate, n_threads=number("n_threads"), n_batch=number("n_batch"),
                       n_ubatch=number("n_ubatch"), type_k=text("type_k"),
                       type_v=text("type_v"), build_commit=text("build_commit"),
                       build_number=number("build_number"), model_type=text("model_type"),
                       cpu_info=text("cpu_info"), backends=text("backends"))


class CompletionTimings(Struct):
    """One /completion's timings: prompt and generation tokens/s, and the cache reuse."""

    prompt_per_second: float | None
    predicted_per_second: float | None
    prompt_n: int
    predicted_n: int
    cache_n: int

    def to_json(self) -> dict:
        return plain(self)


def parse_completion(text: str | bytes) -> CompletionTimings:
    """The ``timings`` of llama-server's /completion answer."""
    try:
        document = json.loads(text)
        timings = document["timings"]
        prompt_n, predicted_n = int(timings.get("prompt_n") or 0), int(
            timings.get("predicted_n") or 0)
        return CompletionTimings(
            prompt_per_second=_rate(timings.get("prompt_per_second"), prompt_n),
            predicted_per_second=_rate(timings.get("predicted_per_second"), predicted_n),
            prompt_n=prompt_n, predicted_n=predicted_n,
            cache_n=int(timings.get("cache_n") or 0))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SpeedOutputError(f"not a /completion answer with timings: {exc}") from exc


def _rate(value: object, count: int) -> float | None:
    """A tokens/s figure, None where no token was timed (llama-server then prints 0 or a
    huge number from a zero duration)."""
    if count < 1 or not isinstance(value, (int, float)) or value <= 0:
        return None
    return float(value)


def help_flags(text: str) -> set[str]:
    """Every flag name ``llama-bench --help`` (or any --help) lists at a line's start."""
    flags: set[str] = set()
    for line in (text or "").splitlines():
        stripped = line.strip()
        if not stripped.startswith("-"):
            continue
        head = re.split(r"\s{2,}|\s<|\s\[", stripped, maxsplit=1)[0]
        flags.update(_FLAG.findall(head))
    return flags

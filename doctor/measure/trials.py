"""Measuring one setting: prompt processing (pp) and generation (tg) tokens/s.

Two ways, the same answer: ``BenchMeasurer`` runs llama-bench (``-o json``: it loads the
model, warms up, then repeats a pp and a tg test), ``ServerMeasurer`` starts llama-server
on a loopback port and times ``/completion`` (one warm-up request, then repeats; the
prompt cache off so every prompt is processed). Both run llama.cpp as ``Program`` says:
the plan's user, affinity and environment.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

from msgspec import Struct
from q3cn_doctor.measure.processes import (
    MeasureError,
    Program,
    Server,
    TimedOut,
    free_port,
    loopback_argv,
    run_program,
)
from q3cn_doctor.measure.setting import Setting
from q3cn_doctor.parsers.llama_speed import Rate, SpeedOutputError, parse_bench_json
from q3cn_doctor.parsers.server_help import Build

PP_TOKENS = 256  # a second or so of prompt processing on a small CPU
TG_TOKENS = 64
REPEATS = 3
TRIAL_TIMEOUT_S = 900.0
# A prompt of plain words: about one token each in the tokenizers of these models.
_PROSE = ("the model reads every weight once per token so memory bandwidth sets the pace of "
          "generation while prompt processing is bound by compute")


class Trial(Struct):
    """One setting measured: pp and tg tokens/s with their spread, or why not."""

    setting: Setting
    pp: Rate | None
    tg: Rate | None
    seconds: float
    error: str | None = None
    slow: bool = False  # stopped at its time limit: slower than the limit allowed

    @property
    def ok(self) -> bool:
        return self.error is None and self.tg is not None

    def to_json(self) -> dict:
        return {"setting": self.setting.to_json(), "label": self.setting.label(),
                "pp": self.pp.to_json() if self.pp else None,
                "tg": self.tg.to_json() if self.tg else None,
                "seconds": round(self.seconds, 1), "error": self.error, "slow": self.slow}


class Measurer(Protocol):
    method: str
    pp_tokens: int
    tg_tokens: int

    def measure(self, setting: Setting, repeats: int,
                timeout: float = TRIAL_TIMEOUT_S) -> Trial: ...

    def command(self, setting: Setting, repeats: int) -> list[str]: ...


def timed(setting: Setting, work: Callable[[], tuple[Rate | None, Rate | None]]) -> Trial:
    """A trial from ``work``; a failure is a trial with its reason, never an exception
    (KeyboardInterrupt excepted: it stops the whole measurement)."""
    started = time.monotonic()
    try:
        pp, tg = work()
    except TimedOut as exc:
        return Trial(setting, None, None, time.monotonic() - started, str(exc), slow=True)
    except (MeasureError, SpeedOutputError) as exc:
        return Trial(setting, None, None, time.monotonic() - started, str(exc))
    return Trial(setting, pp, tg, time.monotonic() - started)


class BenchMeasurer:
    """llama-bench, one run per setting (it warms up and repeats itself)."""

    method = "llama-bench"

    def __init__(self, program: Program, model: str, flags: set[str],
                 pp_tokens: int = PP_TOKENS, tg_tokens: int = TG_TOKENS) -> None:
        """``program``: llama-bench (after any numactl prefix) and how to run it."""
        self.program, self.model, self.flags = program, model, flags
        self.pp_tokens, self.tg_tokens = pp_tokens, tg_tokens

    def argv(self, setting: Setting, repeats: int) -> list[str]:
        return [*self.program.argv, "-m", self.model, "-p", str(self.pp_tokens), "-n",
                str(self.tg_tokens), "-r", str(repeats), "-o", "json",
                *setting.bench_args(self.flags)]

    def command(self, setting: Setting, repeats: int) -> list[str]:
        return self.argv(setting, repeats)

    def measure(self, setting: Setting, repeats: int,
                timeout: float = TRIAL_TIMEOUT_S) -> Trial:
        why_not = setting.bench_can_run(self.flags)
        if why_not:
            return Trial(setting, None, None, 0.0, why_not)

        def work() -> tuple[Rate | None, Rate | None]:
            program = self.program.with_argv(self.argv(setting, repeats))
            records = parse_bench_json(run_program(program, timeout))
            pp = next((r.rate for r in records if r.kind == "pp"), None)
            tg = next((r.rate for r in records if r.kind == "tg"), None)
            if tg is None:
                raise MeasureError("llama-bench gave no generation figure")
            return pp, tg

        return timed(setting, work)


class ServerMeasurer:
    """llama-server on a loopback port, timed through /completion."""

    method = "llama-server /completion"

    def __init__(self, program: Program, build: Build, pp_tokens: int = PP_TOKENS,
                 tg_tokens: int = TG_TOKENS) -> None:
        self.program, self.build = program, build
        self.pp_tokens, self.tg_tokens = pp_tokens, tg_tokens
        words = _PROSE.split()
        self.prompt = " ".join(words[i % len(words)] for i in range(pp_tokens))

    def command(self, setting: Setting, repeats: int) -> list[str]:
        """llama-server's command (the port a free loopback one at each start)."""
        return self.program.argv + setting.server_args(self.build)

    def argv(self, setting: Setting, port: int) -> list[str]:
        return loopback_argv(self.command(setting, 0), port)

    def measure(self, setting: Setting, repeats: int,
                timeout: float = TRIAL_TIMEOUT_S) -> Trial:
        def work() -> tuple[Rate | None, Rate | None]:
            program = self.program.with_argv(self.argv(setting, free_port()))
            pp_samples, tg_samples = [], []
            deadline = time.monotonic() + timeout
            with Server(program, int(program.argv[-1])) as server:
                server.complete(self.prompt[:200], 8, timeout)  # warm-up
                for _ in range(repeats):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimedOut(f"the runs did not finish in {timeout:.0f} s")
                    timings = server.complete(self.prompt, self.tg_tokens, left)
                    if timings.prompt_per_second:
                        pp_samples.append(timings.prompt_per_second)
                    if timings.predicted_per_second:
                        tg_samples.append(timings.predicted_per_second)
            if not tg_samples:
                raise MeasureError("llama-server timed no generated token")
            return (Rate.of(pp_samples) if pp_samples else None), Rate.of(tg_samples)

        return timed(setting, work)

"""``q3cn-doctor tune``: the best llama-server setting for this machine, found by measuring.

The search starts where the plan predicts the optimum (the launch plan: one thread per
fast core, the VRAM placement, the load mode memlock allows) and measures only its
neighbours, one dimension at a time, moving while a neighbour is better by more than the
noise: a coordinate search that visits a few points of the space where a grid visits
all of them (bench/bench_tune.py runs that grid over the same ``search_space``).

Each dimension is judged by what it changes: threads, the KV cache type, the load mode
and the expert placement by generation (tg); the physical batch by prompt processing
(pp), never at a real cost to tg. "Better" means the difference of the means exceeds
twice its standard error (and 1%); where it is closer the two points are measured again
once and judged on all their runs. Every trial carries its spread. A trial is stopped
once it runs 2.5 times as long as the quickest finished one (the starting point: a third
of the budget): taking that long for the same tokens, it is slower, and waiting for it
would spend the budget on a loser (on a busy 2-vCPU machine, two threads took 99 s where
one took 30).

The space, per machine:
- threads: 1 .. the CPUs the plan may use;
- batch/ubatch: ubatch 64 .. up to the measured prompt (256 tokens CPU-only, 2048 with
  a GPU: longer pieces than the prompt cannot differ), the batch at least the ubatch;
- KV cache type: f16, q8_0, q4_0 (K and V alike);
- load mode: mmap, none (read into RAM), and mlock where the user llama.cpp runs as may
  lock the model (a plan made with root's CAP_IPC_LOCK that runs as a user with an 8 MiB
  memlock limit does not lock: it starts from mmap);
- expert placement where the model has experts and a GPU takes part: --n-cpu-moe
  layers (0 .. every expert layer), or --fit-target MiB where the plan uses --fit.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Callable

from msgspec import Struct, field
from q3cn_doctor.facts import FactsError
from q3cn_doctor.measure.rig import Rig
from q3cn_doctor.measure.setting import Setting
from q3cn_doctor.measure.trials import REPEATS, Measurer, Trial
from q3cn_doctor.parsers.llama_speed import Rate

UBATCHES = (64, 128, 256, 512, 1024, 2048, 4096)
CACHE_TYPES = ("f16", "q8_0", "q4_0")
FIT_TARGETS = (256, 512, 1024, 1536, 2048, 3072)  # MiB left free per GPU
DEFAULT_BATCH = 2048  # llama-server's logical batch
SIGNIFICANCE = 2.0  # standard errors a difference must exceed
MIN_GAIN = 0.01  # and this share of the mean
TG_TOLERANCE = 0.02  # a pp gain may cost tg no more than this share (beyond noise)
MAX_PASSES = 3
FIRST_SHARE = 1 / 3  # the starting point may take at most this share of the budget
SLOW_FACTOR = 2.5  # a trial running this many times the quickest finished one is slower
MIN_TRIAL_S = 20.0
CPU_PROMPT, GPU_PROMPT = 256, 2048  # a CPU processes a prompt at ~100-1000 tok/s


class Dimension(Struct):
    """One knob tune varies: the Setting field and the values it tries."""
    name: str  # the Setting field it varies
    values: list
    ordered: bool  # a ladder (neighbours are the next rungs) or a set of choices
    objective: str  # "tg" or "pp": what it is judged by
    why: str

    def to_json(self) -> dict:
        return {"name": self.name, "values": self.values, "objective": self.objective,
                "why": self.why}


def search_space(rig: Rig) -> tuple[Setting, list[Dimension], int]:
    """(the start, the dimensions, the prompt length to measure) for this machine."""
    start = rig.setting
    cpus = _usable_cpus(rig)
    dims = [Dimension("threads", list(range(1, cpus + 1)), True, "tg",
                      f"1..{cpus}: the CPUs the plan may use")]
    gpu = bool(rig.plan.model.get("memory_plan", {}).get("gpus"))
    prompt = GPU_PROMPT if gpu else CPU_PROMPT
    ubatches = [u for u in UBATCHES if u <= prompt]
    dims.append(Dimension("ubatch", ubatches, True, "pp",
                          f"{ubatches[0]}..{ubatches[-1]} (the measured prompt is {prompt} "
                          "tokens); the batch follows where smaller"))
    dims.append(Dimension("cache_type", list(CACHE_TYPES), False, "tg",
                          "the KV cache's type, K and V alike"))
    modes = ["mmap", "none"] + (["mlock"] if rig.can_lock() else [])
    dims.append(Dimension("load_mode", modes, False, "tg",
                          "mmap, read into RAM" + (", locked" if "mlock" in modes else
                                                   " (mlock: memlock does not allow it)")))
    experts = _expert_layers(rig)
    if gpu and experts:
        if start.fit_target is not None and start.n_cpu_moe is None:
            dims.append(Dimension("fit_target", list(FIT_TARGETS), True, "tg",
                                  "MiB --fit leaves free per GPU"))
        else:
            dims.append(Dimension("n_cpu_moe", list(range(experts + 1)), True, "tg",
                                  f"0..{experts} layers whose experts stay in RAM"))
    start = _normalised(start, dims)
    return start, dims, prompt


def _usable_cpus(rig: Rig) -> int:
    if rig.plan.affinity:
        return len(rig.plan.affinity)
    try:
        return max(1, rig.facts.cpu.logical or 1)
    except FactsError:
        return max(1, rig.setting.threads or 1)


def _expert_layers(rig: Rig) -> int:
    model = rig.facts.model
    return int(model.expert_layers or (model.layers if model.experts else 0) or 0)


def _normalised(start: Setting, dims: list[Dimension]) -> Setting:
    """The start with every searched value set, on a rung of its dimension."""
    defaults = {"threads": dims[0].values[-1], "ubatch": 512, "cache_type": "f16",
                "load_mode": "mmap", "n_cpu_moe": 0, "fit_target": 1024}
    values = {}
    for dim in dims:
        value = getattr(start, dim.name)
        if value is None:
            value = defaults[dim.name]
        if value not in dim.values:
            value = (min(dim.values, key=lambda v: abs(v - value)) if dim.ordered
                     else dim.values[0])
        values[dim.name] = value
    return with_batch(start.changed(**values))


def with_batch(setting: Setting) -> Setting:
    """The logical batch at least the ubatch (llama.cpp would clamp it anyway)."""
    batch = max(setting.batch or DEFAULT_BATCH, setting.ubatch or 0)
    return setting.changed(batch=batch)


def grid(start: Setting, dims: list[Dimension]) -> list[Setting]:
    """Every point of the space (what the exhaustive grid in bench/ measures)."""
    names = [d.name for d in dims]
    return [with_batch(start.changed(**dict(zip(names, combo))))
            for combo in itertools.product(*(d.values for d in dims))]


# -- judging two trials ---------------------------------------------------------------

def _rate(trial: Trial, objective: str) -> Rate | None:
    return trial.tg if objective == "tg" else trial.pp


def margin(a: Rate, b: Rate) -> float:
    """What a difference of means must exceed to be more than noise."""
    error = math.sqrt(a.stddev ** 2 / len(a.samples) + b.stddev ** 2 / len(b.samples))
    return max(SIGNIFICANCE * error, MIN_GAIN * b.mean)


def compare(candidate: Trial, best: Trial, objective: str) -> str:
    """"better", "worse" or "unclear" (within the noise: measure again)."""
    new, old = _rate(candidate, objective), _rate(best, objective)
    if not candidate.ok or new is None:
        return "worse"
    if old is None:
        return "better"
    if objective == "pp" and best.tg is not None and candidate.tg.mean < best.tg.mean - max(
            margin(candidate.tg, best.tg), TG_TOLERANCE * best.tg.mean):
        return "worse"  # prompt speed bought with generation speed
    gain = new.mean - old.mean
    if gain > margin(new, old):
        return "better"
    return "unclear" if gain > 0 else "worse"


# -- the search -----------------------------------------------------------------------

class TuneResult(Struct):
    """What tune found: where it started, the best trial, and every trial it ran."""
    start: Trial
    best: Trial
    trials: list[Trial]
    dims: list[Dimension]
    seconds: float
    stopped: str  # why the search ended
    threads_batch: int | None
    method: str
    prompt_tokens: int
    runs: int  # measurements made (a setting measured again counts again)
    notes: list[str] = field(default_factory=list)

    @property
    def setting(self) -> Setting:
        """The winner, with the prompt's best thread count as --threads-batch."""
        return self.best.setting.changed(threads_batch=self.threads_batch)

    def to_json(self) -> dict:
        return {"start": self.start.to_json(), "best": self.best.to_json(),
                "setting": self.setting.to_json(), "trials": [t.to_json() for t in self.trials],
                "space": [d.to_json() for d in self.dims], "seconds": round(self.seconds, 1),
                "stopped": self.stopped, "method": self.method, "runs": self.runs,
                "prompt_tokens": self.prompt_tokens, "notes": self.notes}


class Search:
    """Coordinate search from ``start`` under a time budget (seconds)."""

    def __init__(self, measurer: Measurer, dims: list[Dimension], budget: float,
                 repeats: int = REPEATS, progress: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.measurer, self.dims, self.budget = measurer, dims, budget
        self.repeats, self.progress, self.clock = repeats, progress or (lambda _: None), clock
        self.trials: dict[tuple, Trial] = {}
        self.order: list[Trial] = []
        self.runs = 0  # measurements made: every setting once, plus the re-measured
        self.started = clock()
        self.out_of_time = False

    def _time_left(self) -> bool:
        spent = self.clock() - self.started
        done = [t.seconds for t in self.order if t.seconds]
        expected = sum(done) / len(done) if done else 0.0
        if spent + expected > self.budget:
            self.out_of_time = True
        return not self.out_of_time

    def _limit(self) -> float:
        """How long the next trial may run before it counts as slower."""
        done = [t.seconds for t in self.order if t.ok]
        if not done:
            return max(MIN_TRIAL_S, self.budget * FIRST_SHARE)
        return max(MIN_TRIAL_S, SLOW_FACTOR * min(done))

    def _bounded(self, setting: Setting) -> Trial:
        """One measurement, stopped at its limit or where the budget runs out (then the
        search ends: the budget is a limit, not a wish)."""
        remaining = self.budget - (self.clock() - self.started)
        limit = self._limit()
        trial = self.measurer.measure(setting, self.repeats, min(limit, remaining))
        if trial.slow and remaining < limit:
            self.out_of_time = True
            trial.error = "stopped: the budget ran out"
        return trial

    def measure(self, setting: Setting) -> Trial | None:
        """The trial of ``setting`` (measured once; None when the budget is spent)."""
        key = setting.key()
        if key in self.trials:
            return self.trials[key]
        if not self._time_left():
            return None
        self.runs += 1
        self.progress(f"trial {self.runs}: {setting.label()}")
        trial = self._bounded(setting)
        self.trials[key] = trial
        self.order.append(trial)
        return trial

    def _again(self, trial: Trial) -> Trial:
        """More runs of a measured setting, merged with its earlier ones."""
        if not self._time_left():
            return trial
        self.runs += 1
        self.progress(f"trial {self.runs}: {trial.setting.label()} again (too close to call)")
        more = self._bounded(trial.setting)
        if not more.ok:
            return trial
        merged = Trial(trial.setting, _merge(trial.pp, more.pp), _merge(trial.tg, more.tg),
                       trial.seconds + more.seconds)
        self.trials[trial.setting.key()] = merged
        self.order[self.order.index(trial)] = merged
        return merged

    def judge(self, candidate: Trial, best: Trial, objective: str) -> tuple[bool, Trial, Trial]:
        """(candidate wins, candidate, best), measuring both again where unclear."""
        verdict = compare(candidate, best, objective)
        if verdict == "unclear":
            candidate, best = self._again(candidate), self._again(best)
            verdict = compare(candidate, best, objective)
        return verdict == "better", candidate, best

    def explore(self, dim: Dimension, best: Trial) -> Trial:
        """The best trial after trying ``dim``'s neighbours of ``best``."""
        if not dim.ordered:
            for value in dim.values:
                if value != getattr(best.setting, dim.name):
                    best, _ = self._step(dim, best, value)
            return best
        for direction in (1, -1):
            moved = False
            while True:
                index = dim.values.index(getattr(best.setting, dim.name)) + direction
                if not 0 <= index < len(dim.values):
                    break
                best, won = self._step(dim, best, dim.values[index])
                if not won:
                    break
                moved = True
            if moved:
                break  # it went up: going down from the new best is where it came from
        return best

    def _step(self, dim: Dimension, best: Trial, value: object) -> tuple[Trial, bool]:
        """(the best trial now, whether the neighbour at ``value`` took its place)."""
        candidate = self.measure(with_batch(best.setting.changed(**{dim.name: value})))
        if candidate is None:
            return best, False
        wins, candidate, best = self.judge(candidate, best, dim.objective)
        return (candidate, True) if wins else (best, False)

    def run(self, start: Setting) -> tuple[Trial, Trial, str]:
        first = self.measure(start)
        if first is None or not (first.ok or first.slow):
            raise TuneFailed(f"the starting point could not be measured: "
                             f"{first.error if first else 'no time in the budget'}")
        best, stopped = first, "no neighbour is better"  # a slow start: any finisher wins
        for _ in range(MAX_PASSES):
            before = best.setting.key()
            for dim in self.dims:
                best = self.explore(dim, self.trials[best.setting.key()])
            if best.setting.key() == before:
                break
        if self.out_of_time:
            stopped = f"the budget ({self.budget:.0f} s) was spent"
        if not self.trials[best.setting.key()].ok:
            raise TuneFailed("no setting finished within its time limit: raise --budget")
        return self.trials[start.key()], self.trials[best.setting.key()], stopped


class TuneFailed(Exception):
    """The search could not start."""


def _merge(a: Rate | None, b: Rate | None) -> Rate | None:
    if a is None or b is None:
        return a or b
    return a.merged(b)


def threads_batch(trials: list[Trial], best: Trial) -> int | None:
    """The thread count with the best prompt speed among trials that differ from the
    winner only in threads (llama-bench times pp and tg with one -t)."""
    others = [t for t in trials if t.ok and t.pp is not None
              and t.setting.changed(threads=best.setting.threads).key() == best.setting.key()]
    if not others or best.pp is None:
        return best.setting.threads
    top = max(others, key=lambda t: t.pp.mean)
    if top is best or top.pp.mean - best.pp.mean <= margin(top.pp, best.pp):
        return best.setting.threads
    return top.setting.threads


def run_search(measurer: Measurer, start: Setting, dims: list[Dimension], prompt: int,
               budget: float, repeats: int = REPEATS,
               progress: Callable[[str], None] | None = None,
               clock: Callable[[], float] = time.monotonic) -> TuneResult:
    """The search from ``start`` with ``measurer``, as a result to print and keep."""
    search = Search(measurer, dims, budget, repeats, progress, clock)
    first, best, stopped = search.run(start)
    result = TuneResult(first, best, list(search.order), dims,
                        search.clock() - search.started, stopped,
                        threads_batch(search.order, best), measurer.method, prompt,
                        search.runs)
    if best.tg and first.tg:
        result.notes.append(f"tg {first.tg.mean:.1f} -> {best.tg.mean:.1f} tok/s "
                            f"({best.tg.mean / first.tg.mean - 1:+.1%}) over the plan's "
                            "starting point")
    return result


def tune(rig: Rig, budget: float, repeats: int = REPEATS, method: str = "auto",
         progress: Callable[[str], None] | None = None) -> TuneResult:
    """Search this machine's space from the plan's setting within ``budget`` seconds."""
    start, dims, prompt = search_space(rig)
    return run_search(rig.measurer(method, pp_tokens=prompt), start, dims, prompt, budget,
                      repeats, progress)

"""The speed model's calibration: measured runs, the model shapes they need, and the fit.

``speed_calibration.tsv`` holds public measured llama.cpp runs, ``speed_models.tsv`` the
architectures they ran. Each row becomes the same ``Work`` the doctor builds for a machine
(doctor/plan/speed.py's ``token_work`` over doctor/plan/placement.py's ``layout`` of the
row's own placement flags), so the fit and the product share one formula. The fit is a
non-negative least squares on the relative error of the time per token, which is linear in
the inverses of doctor/plan/roofline.py's five constants.

Used by bench/bench_speed_model.py (the table, leave-one-out) and tests/test_speed_model.py
(the constants in code equal the fit on this table).
"""

from __future__ import annotations

import csv
import itertools
import shlex
import statistics
from dataclasses import dataclass
from pathlib import Path

from q3cn_doctor.facts.model import ModelFacts
from q3cn_doctor.plan.gpu_bandwidth import gpu_bandwidth
from q3cn_doctor.plan.placement import layout
from q3cn_doctor.plan.roofline import Constants, Work, token_ms
from q3cn_doctor.plan.speed import effective_threads, token_work

HERE = Path(__file__).parent
TABLE = HERE / "speed_calibration.tsv"
MODELS = HERE / "speed_models.tsv"
GIB = 1024**3
DEFAULT_THREADS = 8


@dataclass
class Point:
    """One measured run, as the speed model sees it."""

    id: str
    use: str  # fit, disk or skip
    measured: float  # tok/s
    work: Work | None
    row: dict

    @property
    def label(self) -> str:
        row = self.row
        gpu = row["gpus"].split(":")[0] or "CPU only"
        return f"{row['model']} {row['quant']} | {gpu} | {row['args']}"


def _rows(path: Path) -> list[dict]:
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def load_models() -> dict[str, dict]:
    return {row["key"]: row for row in _rows(MODELS)}


def model_facts(shape: dict, file_gib: float, expert_bpw: float | None,
                depth: int) -> ModelFacts:
    """ModelFacts of a model and quant: the routed experts at ``expert_bpw`` (else the
    file's mean bits per weight), the rest of the file spread over the other weights."""
    file_bytes = int(file_gib * GIB)
    total = float(shape["total_params_b"]) * 1e9
    routed_params = float(shape["routed_params_b"]) * 1e9
    mean_bpw = file_bytes * 8 / total
    routed = int(routed_params * (expert_bpw or mean_bpw) / 8)
    rest_bpw = (file_bytes - routed) * 8 / max(1.0, total - routed_params)
    embeddings = int(float(shape["embed_params_b"]) * 1e9 * rest_bpw / 8)
    output = int(float(shape["output_params_b"]) * 1e9 * rest_bpw / 8)
    experts, used = int(shape["experts"]), int(shape["experts_used"])
    layers = int(shape["layers"])
    tensors = {"routed_experts": routed, "embeddings": embeddings, "output": output,
               "attention": file_bytes - routed - embeddings - output}
    kv_per_token = int(shape["kv_bytes_per_token"])
    swa_layers, swa = int(shape["swa_layers"]), int(shape["swa_tokens"])
    return ModelFacts(
        profile="", name=shape["name"], architecture=shape["key"], file_bytes=file_bytes,
        layers=layers, full_attention_layers=layers - swa_layers,
        kv_heads=1, head_dim=kv_per_token // max(1, 4 * (layers - swa_layers)) or 1,
        sliding_window_tokens=swa or None, experts=experts, experts_used=used,
        shared_experts=int(shape["shared_experts"]), expert_ffn=0, hidden=0,
        routed_bytes_per_token=routed * used // experts if experts else 0,
        ctx_size=max(depth, 512), kv_cache_bytes=0, source="bench/speed_models.tsv",
        sliding_window_layers=swa_layers, expert_layers=int(shape["expert_layers"]) or None,
        tensor_bytes=tensors, routed_bytes=routed,
        dense_bytes_per_token=file_bytes - routed - (embeddings if output else 0))


def gpus_of(text: str) -> list[dict]:
    """``2x RTX 3090:24`` -> two NVML-like devices with that name and VRAM free."""
    if not text:
        return []
    name, _, gb = text.rpartition(":")
    count = 1
    if name[:1].isdigit() and "x " in name[:4]:
        number, _, name = name.partition("x ")
        count = int(number)
    free = int((float(gb) - 0.5) * GIB)
    return [{"name": name, "index": i, "memory_free_bytes": free} for i in range(count)]


def point_of(row: dict, models: dict[str, dict]) -> Point:
    """The Work of a measured run (None where its model is not in speed_models.tsv)."""
    shape = models.get(row["model"])
    measured = float(row["tg_tok_s"])
    if shape is None or not float(row["file_gib"] or 0):
        return Point(row["id"], row["use"], measured, None, row)
    depth = int(row["depth"] or 0)
    model = model_facts(shape, float(row["file_gib"]), float(row["expert_bpw"] or 0) or None,
                        depth)
    gpus = gpus_of(row["gpus"]) if row["backend"] != "cpu" else []
    args = shlex.split(row["args"])
    plan = layout(model, gpus, args)
    mts, channels = int(row["ram_mts"] or 0), int(row["ram_channels"] or 0)
    peak = mts * 1e6 * 8 * channels / max(1, int(row["numa_nodes"] or 1)) or None
    cores = int(row["cores"] or 0) or None
    threads = int(row["threads"] or 0) or cores or DEFAULT_THREADS
    work = token_work(plan, model, depth, peak, effective_threads(threads, cores),
                      [gpu_bandwidth(g)[0] for g in gpus])
    return Point(row["id"], row["use"], measured, work, row)


def load_points(uses: tuple[str, ...] = ("fit",)) -> list[Point]:
    models = load_models()
    return [point_of(row, models) for row in _rows(TABLE) if row["use"] in uses]


def predict(point: Point, constants: Constants) -> float:
    assert point.work is not None
    return 1e3 / sum(token_ms(point.work, constants).values())


def fit(points: list[Point]) -> Constants:
    """Non-negative least squares on the relative error of the time per token: the best
    of every subset of the five coefficients whose unconstrained fit stays non-negative."""
    import numpy as np  # bench only (it ships with gguf)

    usable = [p for p in points if p.work is not None]
    a = np.array([[f * p.measured for f in p.work.features()] for p in usable])
    b = np.ones(len(usable))
    best, best_cost = None, float("inf")
    terms = range(a.shape[1])
    for size in range(1, a.shape[1] + 1):
        for subset in itertools.combinations(terms, size):
            solution, *_ = np.linalg.lstsq(a[:, subset], b, rcond=None)
            if (solution < 0).any():
                continue
            cost = float(np.sum((a[:, subset] @ solution - b) ** 2))
            if cost < best_cost:
                best_cost = cost
                best = np.zeros(a.shape[1])
                best[list(subset)] = solution
    assert best is not None
    return Constants.from_inverse([float(x) for x in best])


def leave_one_out(points: list[Point]) -> list[tuple[Point, float]]:
    """Each point predicted by the constants fitted on all the others."""
    return [(point, predict(point, fit(points[:i] + points[i + 1:])))
            for i, point in enumerate(points)]


def errors(pairs: list[tuple[Point, float]]) -> list[float]:
    """Relative errors, predicted over measured less one."""
    return [predicted / point.measured - 1 for point, predicted in pairs]


def summary(errs: list[float]) -> dict[str, float]:
    """Median absolute error, the share within 25%, and the 80th percentile of the
    absolute error (the half-width of the range the doctor quotes)."""
    absolute = sorted(abs(e) for e in errs)
    return {"median": statistics.median(absolute),
            "within_25": sum(e <= 0.25 for e in absolute) / len(absolute),
            "p80": absolute[min(len(absolute) - 1, int(0.8 * len(absolute)))],
            "points": len(absolute)}

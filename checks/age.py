"""The installed build against known fixes for the model's architecture.

llama.cpp numbers its builds by commit count (``version: 8064 (27b93cbd1)``; a release is
tag ``b8064``). The table lists changes that made a model architecture faster, each with
its pull request and the speedup measured there, and the build from which it is known to
be in (a build number a source ties to the change, never a guess). A build from a source
tarball says "build 1" at any age: its age is unknown.
"""

from __future__ import annotations

from msgspec import Struct
from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import INFO, PASS, SKIP
from q3cn_doctor.checking.registry import check
from q3cn_doctor.plan.speed import speed


class Change(Struct, frozen=True):
    """A llama.cpp change that matters to an architecture, and the first build that has it."""
    architecture: str
    known_in: int  # a build that has it, as the source ties them
    speedup: float  # generation tok/s after / before, as measured in the source
    what: str
    source: str


CHANGES = (
    Change("qwen3next", 7946, 71.88 / 67.14,
           "model: try to improve Qwen3 Next (llama.cpp PR #18683, January 2026)",
           "PR #18683's benchmark on 3x RTX 3090, Q2_K: tg128 67.14 -> 71.88 tok/s; merged "
           "before b7946, the base PR #19375 (2026-02-05) measured against"),
    Change("qwen3next", 8064, 50.39 / 38.02,
           "models: optimizing qwen3next graph (llama.cpp PR #19375, February 2026)",
           "PR #19375's benchmark on an M2 Ultra, Q4_0: tg32 38.02 -> 50.39 tok/s against "
           "b7946; in b8064 (ik_llama.cpp PR #1266 compares that build with it merged)"),
)


@check("server.age", "The llama-server build has the known speedups for the model")
def age(ctx: Context):
    server = ctx.facts.server
    if server.path is None:
        return ctx.finding(SKIP, "llama-server not found (see server.found)",
                           observed=f"looked on {server.found_by}")
    architecture = ctx.facts.model.architecture
    rows = [c for c in CHANGES if c.architecture == architecture]
    number = server.build_number
    version = server.version or "version unknown"
    if not rows:
        return ctx.finding(PASS, f"No known speedups to check for {architecture}",
                           observed=f"{server.path}: {version}; the table lists "
                                    f"{', '.join(sorted({c.architecture for c in CHANGES}))}")
    if number is None or number <= 1:
        return ctx.finding(
            SKIP, "The build's age is unknown (no build number)",
            observed=f"{server.path}: {version}: a build from a source tarball says build 1 "
                     "at any age",
            recommended="Build from a git clone (or use a release) so --version gives the "
                        "build number; the known speedups for " + architecture + " arrived in "
                        + ", ".join(f"b{c.known_in}" for c in rows) + ".")
    missing = [c for c in rows if number < c.known_in]
    observed = f"{server.path}: {version}; " + "; ".join(
        f"{c.what}: in b{c.known_in}" for c in rows)
    if not missing:
        return ctx.finding(PASS, f"Build {number} has the known {architecture} speedups",
                           observed=observed)
    factor = 1.0
    for change in missing:
        factor *= change.speedup
    now = speed(ctx.facts).tok_s
    gain = round(now * (1 - 1 / factor), 1) if now else None
    return ctx.finding(
        INFO, f"Build {number} predates {len(missing)} known {architecture} speedup"
              + ("s" if len(missing) > 1 else ""),
        observed=observed,
        recommended=f"Update llama.cpp to b{max(c.known_in for c in missing)} or later.",
        impact=f"Measured in their pull requests: {factor:.2f}x the generation speed ("
               + "; ".join(c.source for c in missing) + ")."
               + (f" Applied to the speed model's ~{now:.0f} tok/s (which assumes a current "
                  f"build): about {gain:.1f} tok/s." if gain else ""),
        cost_tok_s=gain)

"""The measuring rig: llama.cpp set up exactly as ``launch`` would run it.

The launch plan (launch/launcher.py) gives llama-server's command, environment and
affinity, and a saved tune where one matches; the rig reads the ``Setting`` that
command amounts to, finds llama-bench beside llama-server (else on PATH), and picks how
to measure: llama-bench where installed (``-o json``), else llama-server itself timed
through ``/completion``. Every process runs as ``run_as``: never root unless allowed.
"""

from __future__ import annotations

import os

from msgspec import Struct
from q3cn_doctor.facts import Facts
from q3cn_doctor.host.live import on_path
from q3cn_doctor.launch.launcher import LaunchError, LaunchPlan, build_plan
from q3cn_doctor.launch.run_as import RunAs
from q3cn_doctor.measure.processes import MeasureError, Program
from q3cn_doctor.measure.setting import Setting
from q3cn_doctor.measure.trials import (
    PP_TOKENS,
    TG_TOKENS,
    BenchMeasurer,
    Measurer,
    ServerMeasurer,
)
from q3cn_doctor.options import Options
from q3cn_doctor.parsers.llama_speed import help_flags

BENCH_NAME = "llama-bench"


class Rig(Struct):
    """Everything a measurement runs with: the facts, the launch plan and the setting it
    amounts to, the user it runs as, and llama-bench where found."""
    facts: Facts
    plan: LaunchPlan
    setting: Setting  # what the plan's command amounts to
    run_as: RunAs
    bench: str | None  # llama-bench, where found
    bench_flags: set[str]
    model: str

    @property
    def prefix(self) -> list[str]:
        """What the plan runs llama-server under (numactl), for llama-bench as well."""
        argv = self.plan.argv
        return argv[:argv.index(self.plan.server)] if self.plan.server in argv else []

    def can_lock(self) -> bool:
        """Whether llama.cpp, run as ``run_as``, may lock the model in RAM: root keeps
        CAP_IPC_LOCK, a user needs an RLIMIT_MEMLOCK as large as the model (the child
        inherits this process's limits)."""
        if not self.run_as.switch and os.geteuid() == 0:
            return True
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        return soft == resource.RLIM_INFINITY or soft >= self.facts.model.file_bytes

    def program(self, argv: list[str]) -> Program:
        return Program(argv, self.run_as, dict(self.plan.env), self.plan.affinity)

    def measurer(self, method: str = "auto", pp_tokens: int = PP_TOKENS,
                 tg_tokens: int = TG_TOKENS) -> Measurer:
        if method == "bench" or (method == "auto" and self.bench):
            if not self.bench:
                raise MeasureError(f"no {BENCH_NAME} beside {self.plan.server} or on PATH")
            return BenchMeasurer(self.program(self.prefix + [self.bench]), self.model,
                                 self.bench_flags, pp_tokens, tg_tokens)
        build = self.facts.server.build()
        if build is None:
            raise MeasureError(f"cannot tell what {self.plan.server} accepts")
        return ServerMeasurer(self.program(list(self.plan.argv)), build, pp_tokens, tg_tokens)


def find_bench(facts: Facts, server: str) -> str | None:
    """llama-bench from the same build as llama-server (its folder), else on PATH."""
    beside = os.path.join(os.path.dirname(server), BENCH_NAME)
    if facts.host.exists(beside):
        return beside
    return on_path(BENCH_NAME, facts.host.environ().get("PATH"))


def make_rig(facts: Facts, options: Options, run_as: RunAs) -> Rig:
    """The rig for this machine's plan; MeasureError says why there is none."""
    try:
        plan = build_plan(facts, options)
    except LaunchError as exc:
        raise MeasureError(str(exc)) from exc
    model = facts.model.path or options.model or ""
    for path, what in ((model, "the model"), (plan.server, "llama-server")):
        if not run_as.can_read(path):
            raise MeasureError(f"{run_as.name}, who runs llama.cpp, cannot read {what} "
                               f"{path}: move it where that user can read it, or give "
                               "--user")
    bench = find_bench(facts, plan.server)
    flags: set[str] = set()
    if bench:
        answer = facts.host.run([bench, "--help"], timeout=30)
        flags = help_flags(answer.stdout + answer.stderr) if answer.ok else set()
        if not flags:
            bench = None  # a llama-bench that cannot list its flags is not used
    return Rig(facts, plan, Setting.from_server_args(plan.argv), run_as, bench, flags, model)

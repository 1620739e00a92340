"""The ``host`` object of --json: a few lines that say which machine this was."""

from __future__ import annotations

import contextlib

from q3cn_doctor.facts import Facts, FactsError


def host_summary(facts: Facts) -> dict:
    host = facts.host
    summary: dict = {"source": host.kind, "description": host.describe(), "euid": host.euid()}
    with contextlib.suppress(FactsError):
        system = facts.system
        summary.update(kernel=system.kernel, os=system.os,
                       virtualization=system.virtualization.kind)
    with contextlib.suppress(FactsError):
        summary.update(cpu=facts.cpu.model_name, logical_cpus=facts.cpu.logical)
    with contextlib.suppress(FactsError):
        summary["memory_total_bytes"] = facts.memory.total_bytes
    with contextlib.suppress(FactsError):
        summary["gpu_count"] = len(facts.gpus)
    return summary

"""The ``host`` and ``plan`` objects of --json: which machine this was, what was planned."""

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


def plan_json(facts: Facts) -> dict:
    """The ``plan`` object of --json: the placement and the speed every finding quoted."""
    from q3cn_doctor.plan.placement import placement
    from q3cn_doctor.plan.speed import speed

    document: dict = {}
    for name, derive in (("placement", placement), ("speed", speed)):
        try:
            document[name] = derive(facts).to_json()
        except FactsError as exc:
            document[name] = {"error": str(exc)}
    return document

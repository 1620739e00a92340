"""What a check is handed: the host, the run's facts and options, and a finding maker."""

from __future__ import annotations

from typing import Any

from msgspec import Struct, field
from q3cn_doctor.checking.findings import Finding
from q3cn_doctor.checking.registry import CheckSpec
from q3cn_doctor.facts import Facts
from q3cn_doctor.host.base import Host
from q3cn_doctor.options import Options


class Context(Struct):
    """What a check is given: the host, its facts and options, and the constructors for its
    findings."""
    host: Host
    facts: Facts
    options: Options
    spec: CheckSpec | None = None
    evidence: list[str] = field(default_factory=list)  # what the running check has read

    def finding(
        self,
        status: str,
        title: str,
        *,
        observed: str = "",
        recommended: str = "",
        impact: str = "",
        item: str | None = None,
        evidence: list[str] | None = None,
        fixes: list[str] | tuple[str, ...] = (),
        manual: list[str] | tuple[str, ...] = (),
        action: str = "",
        cost_tok_s: float | None = None,
        what_if: dict[str, Any] | None = None,
    ) -> Finding:
        """A finding of the running check; evidence defaults to every source it read.
        ``what_if`` names the speed model's inputs with the problem gone (``ram_mts=6000``):
        the finding's ``cost_tok_s`` is then plan.speed.cost of them (never computed here),
        and the report's ledger adds them up with the other findings'."""
        assert self.spec is not None, "finding() is for a running check"
        if what_if and cost_tok_s is None:
            from q3cn_doctor.plan.speed import cost

            cost_tok_s = cost(self.facts, **what_if)
        return Finding(
            id=f"{self.spec.id}:{item}" if item is not None else self.spec.id,
            check=self.spec.id,
            area=self.spec.area,
            status=status,
            title=title,
            observed=observed,
            recommended=recommended,
            impact=impact,
            evidence=list(evidence if evidence is not None else self.evidence),
            fixes=list(fixes),
            manual=list(manual),
            action=action,
            cost_tok_s=cost_tok_s,
            what_if=dict(what_if or {}),
        )

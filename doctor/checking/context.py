"""What a check is handed: the host, the run's facts and options, and a finding maker."""

from __future__ import annotations

from dataclasses import dataclass, field

from q3cn_doctor.checking.findings import Finding
from q3cn_doctor.checking.registry import CheckSpec
from q3cn_doctor.facts import Facts
from q3cn_doctor.host.base import Host
from q3cn_doctor.options import Options


@dataclass
class Context:
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
        cost_tok_s: float | None = None,
    ) -> Finding:
        """A finding of the running check; evidence defaults to every source it read.
        ``cost_tok_s`` is what its problem costs, from plan.speed.cost (never computed
        here)."""
        assert self.spec is not None, "finding() is for a running check"
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
            cost_tok_s=cost_tok_s,
        )

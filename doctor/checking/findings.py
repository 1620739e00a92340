"""What a check says: findings, their statuses, and what the statuses add up to."""

from __future__ import annotations

from typing import Any

from msgspec import Struct, field
from q3cn_doctor.records import plain

AREAS = ("memory", "cpu", "gpu", "system", "model", "server")

PASS, WARN, FAIL, SKIP, ERROR, INFO = "pass", "warn", "fail", "skip", "error", "info"
STATUSES = (FAIL, ERROR, WARN, INFO, SKIP, PASS)  # worst first: the report's order

EXIT_OK, EXIT_FAILED, EXIT_CRASHED = 0, 1, 3  # 2 is click's own usage error


class Finding(Struct):
    """One row of the report, and one object of ``findings`` in --json."""

    id: str  # the check id, or "<check id>:<item>" where a check reports several items
    check: str
    area: str
    status: str
    title: str
    observed: str = ""
    recommended: str = ""
    impact: str = ""  # one sentence: why this matters for tokens/s
    evidence: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    manual: list[str] = field(default_factory=list)
    # A few words naming what a person does about it ("XMP in the BIOS"): the report's
    # headline lists the steps by hand by these.
    action: str = ""
    # The tok/s this finding's problem costs (plan.speed.cost: fixing it gains that much);
    # None where the finding prices nothing or the price is unknown. The report ranks by it.
    cost_tok_s: float | None = None
    # The speed model's inputs with this problem gone (what cost() was asked): the
    # report's ledger adds those of several findings up in one what_if().
    what_if: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return plain(self)


def count_statuses(findings: list[Finding]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for finding in findings:
        counts[finding.status] += 1
    return counts


def exit_code(findings: list[Finding], strict: bool = False) -> int:
    """0 nothing failed; 1 a check failed (warnings too with strict); 3 a check crashed.

    1 wins over 3: a real failure is the more useful thing to act on.
    """
    statuses = {finding.status for finding in findings}
    if FAIL in statuses or (strict and WARN in statuses):
        return EXIT_FAILED
    if ERROR in statuses:
        return EXIT_CRASHED
    return EXIT_OK

"""Contracts between the parts: every fix a finding offers exists in the fix engine."""

from __future__ import annotations

import ast

from conftest import HOSTS, REPO, snapshot_findings
from q3cn_doctor.fixing.plan import builtin_fixes


def _fix_ids_written_in_checks() -> dict[str, str]:
    """Every string literal passed as ``fixes=`` in checks/*.py, with where it stands."""
    found: dict[str, str] = {}
    for path in sorted((REPO / "checks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "fixes":
                for literal in ast.walk(node.value):  # the lists and tuples, not conditions
                    if not isinstance(literal, (ast.List, ast.Tuple)):
                        continue
                    for item in literal.elts:
                        if isinstance(item, ast.Constant) and isinstance(item.value, str):
                            found.setdefault(item.value, f"{path.name}:{item.lineno}")
    return found


def test_every_fix_id_a_check_can_offer_is_one_the_engine_has():
    """An orphan fix id is a dead end: the finding says `q3cn-doctor fix --only X` and
    the engine knows no X. Read from the source, so rare branches count too."""
    written = _fix_ids_written_in_checks()
    assert {"sysctl.swappiness", "hugepages.release", "thp.mode", "cpu.governor",
            "memlock.limit", "cpu.affinity"} <= set(written)  # the foundation's contract
    orphans = {fix_id: where for fix_id, where in written.items()
               if fix_id not in builtin_fixes()}
    assert not orphans, orphans


def test_fixes_offered_on_real_machines_are_known():
    """The same, end to end: run every check on every fixture host."""
    known = set(builtin_fixes())
    offered: dict[str, str] = {}
    for host in sorted(path.name for path in HOSTS.iterdir() if path.is_dir()):
        for finding in snapshot_findings(host).values():
            for fix_id in finding.fixes:
                offered.setdefault(fix_id, f"{host}: {finding.id}")
    # sysctl.swappiness is offered only where the model sits in unlocked memory (your
    # --no-mmap on a build that cannot pin it): no fixture host runs that way
    assert {"cpu.governor", "cpu.affinity"} <= set(offered), offered
    assert set(offered) <= known, offered


def test_every_problem_software_cannot_fix_names_its_step_by_hand(tmp_path):
    """A failure or warning with no fix to offer tells the person what to do: `fix`
    lists it and the report's ledger counts it. Every fixture host, and the guide's
    machine as a new user finds it."""
    from launch_fixtures import guide_machine_as_found

    hosts = [HOSTS / path.name for path in HOSTS.iterdir() if path.is_dir()]
    hosts.append(guide_machine_as_found(tmp_path / "guide"))
    missing, seen = [], 0
    for host in sorted(hosts):
        for finding in snapshot_findings(host).values():
            if finding.status in ("fail", "warn") and not finding.fixes:
                seen += 1
                if not finding.manual or not finding.action:
                    missing.append(f"{host.name}: {finding.id} ({finding.title})")
    assert seen >= 20 and not missing, missing

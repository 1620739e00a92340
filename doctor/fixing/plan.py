"""The fix plan: which fixes the findings call for, and what each would change.

A fix is one module in fixes/ that ends with ``FIX = SomeFix()``, an instance of a
``Fix`` subclass. ``builtin_fixes`` finds them and puts them in the order of
``q3cn_doctor.fixes.ORDER`` (the order they are planned, applied and listed in).
For each fix a finding offers, ``build_plan`` hands the fix a ``FixContext`` and the
fix says whether it can run here (``available``) and, if it can, fills in its
``FixPlan`` (``plan``) through the context: ``ctx.kernel`` and ``ctx.file`` for the
usual changes, ``ctx.add`` for any other ``Change``, ``ctx.manual`` for a step a
person has to take, ``ctx.note`` for what the plan should say. Nothing is written
while planning: engine.py applies the plan.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from msgspec import Struct, field
from q3cn_doctor.checking.findings import FAIL, PASS, SKIP, WARN, Finding
from q3cn_doctor.fixing.targets import ConfigFile, KernelValue, Target
from q3cn_doctor.host.base import Host

FIXES_PACKAGE = "q3cn_doctor.fixes"

# When a change takes effect.
NOW = "now"
RELOGIN = "after-relogin"
RESTART = "after-restart"
REBOOT = "after-reboot"
PERSISTENT = "persistent"
EFFECTS = {
    NOW: "now",
    RELOGIN: "after a re-login",
    RESTART: "after a service restart",
    REBOOT: "after a reboot",
    PERSISTENT: "at every boot (persistent)",
}

# Plan statuses of one change.
CHANGE, ALREADY, REFUSED = "change", "already", "refused"
ACTIVE = (FAIL, WARN)  # findings whose fixes the plan applies by default


class Change(Struct):
    """One step of a fix: a target, its state now and the state wanted.

    ``what`` is what a person reads ("vm.swappiness", a path, "governor on CPUs 0-7");
    ``effect`` says when it takes effect (NOW, RELOGIN, RESTART, REBOOT, PERSISTENT);
    ``needs_root`` is False only for a change the user may make (their own process)."""

    fix: str
    target: Target
    what: str
    current: Any
    new: Any
    effect: str = NOW
    needs_root: bool = True
    status: str = CHANGE
    reason: str = ""  # why refused

    def evaluate(self) -> None:
        """Set the status from the planned states: already so, refused, or a change. A
        target off the allow-list (``Target.not_allowed``) is refused whatever a fix says."""
        refusal = self.target.not_allowed()
        if refusal:
            self.status, self.reason = REFUSED, refusal
            return
        if self.target.same(self.current, self.new):
            self.status, self.reason = ALREADY, ""
            return
        refusal = self.target.refusal(self.current)
        self.status, self.reason = (REFUSED, refusal) if refusal else (CHANGE, "")

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.target.kind, "target": self.target.path, "what": self.what,
            "current": self.target.show(self.current), "new": self.target.show(self.new),
            "effect": self.effect, "needs_root": self.needs_root, "status": self.status,
            "reason": self.reason,
        }


class FixOptions(Struct):
    """What the fix command was asked (beyond the shared Options)."""

    only: list[str] = field(default_factory=list)
    persist: bool = True
    service: str | None = None
    pid: int | None = None
    persist_asked: bool = False  # --persist named on the command line: fixes that change the
    #                              running system only by default (spd.driver) persist too


class FixContext(Struct):
    """What a fix is handed when it plans: the host, facts, options, the findings it
    cures, and its own ``FixPlan``, which the methods below fill in. A fix reads the
    machine through ``host`` (never open()) and plans; it never writes."""

    host: Host
    facts: Any
    options: Any
    fix_options: FixOptions
    findings: list[Finding]
    plan: FixPlan

    @property
    def persist(self) -> bool:
        """False with --runtime-only: change the running system, write no boot-time file."""
        return self.fix_options.persist

    def kernel(self, path: str, new: str, what: str, *, kind: str = "sysfs",
               choice: bool = False, key: str | None = None, effect: str = NOW) -> Change:
        """Plan ``new`` into a kernel file: ``kind`` "sysctl" (with its dotted ``key``)
        for /proc/sys, "sysfs" for /sys; ``choice`` for files that list every option
        with the chosen one in brackets (``always [madvise] never``)."""
        target = KernelValue(path, kind, choice, key)
        return self.add(Change(self.plan.fix_id, target, what, target.read(self.host), new,
                               effect))

    def file(self, path: str, text: str, what: str | None = None, *,
             effect: str = PERSISTENT, mode: int = 0o644) -> Change:
        """Plan a whole file of ours under /etc (``text`` starts with ``header()``). The
        engine refuses it where a file without our header, a link or a folder is there."""
        target = ConfigFile(path, mode)
        return self.add(Change(self.plan.fix_id, target, what or path, target.read(self.host),
                               ConfigFile.wanted(text.encode(), mode), effect))

    def add(self, change: Change) -> Change:
        """Plan any change (a thread affinity, a daemon profile): its status is set here."""
        change.evaluate()
        self.plan.changes.append(change)
        return change

    def manual(self, step: str) -> None:
        """A step a person has to take (a file we never edit, a boot option), listed."""
        self.plan.manual.append(step)

    def note(self, text: str) -> None:
        """Something the plan should say that is no change (what lasts how long)."""
        self.plan.notes.append(text)


class Fix:
    """Base of the fixes in fixes/: one subclass per module, its instance in ``FIX``.

    Subclasses set ``id`` (what findings name in ``fixes=`` and ``--only`` takes),
    ``title``, ``checks`` (the checks whose findings it cures: re-run after applying),
    and ``plan``; ``cures = False`` for a fix that only lets a check see more (spd.driver
    reads the modules' rating: the finding's steps by hand still stand, and the ledger
    counts no gain for applying it); ``available`` where the fix cannot run everywhere. Both get a
    ``FixContext``; neither writes anything. A fix whose module is not in
    ``q3cn_doctor.fixes.ORDER`` is planned after every listed one (a test forbids it).
    """

    id = ""
    title = ""
    checks: tuple[str, ...] = ()
    cures = True

    def available(self, ctx: FixContext) -> str | None:
        """None where the fix can run here, else why it cannot (shown to the user)."""
        return None

    def plan(self, ctx: FixContext) -> None:
        """Plan the changes, manual steps and notes through ``ctx``."""
        raise NotImplementedError


class FixPlan(Struct):
    """One fix's part of the plan: what it cures, whether it runs, what it changes."""

    fix_id: str
    title: str
    findings: list[Finding] = field(default_factory=list)
    requested: bool = False  # named with --only
    optional: bool = False  # only informational findings ask for it: needs --only
    available: bool = True
    reason: str = ""
    changes: list[Change] = field(default_factory=list)
    manual: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: tuple[str, ...] = ()
    cures: bool = True  # the fix's own cures: False where it only lets a check see more

    @property
    def status(self) -> str:
        if not self.available:
            return "unavailable"
        if self.optional:
            return "optional"
        if any(c.status == REFUSED for c in self.changes):
            return REFUSED
        if any(c.status == CHANGE for c in self.changes):
            return CHANGE
        return ALREADY

    @property
    def selected(self) -> bool:
        """Whether --apply acts on it: available, not optional, nothing refused."""
        return self.status == CHANGE

    @property
    def gain_tok_s(self) -> float | None:
        """What curing its findings gains: the costliest one's price (None: unpriced, or a
        fix that cures nothing itself)."""
        if not self.cures:
            return None
        costs = [f.cost_tok_s for f in self.findings if f.cost_tok_s is not None]
        return max(costs) if costs else None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.fix_id, "title": self.title, "status": self.status,
            "cures": [{"id": f.id, "status": f.status, "title": f.title} for f in self.findings],
            "gain_tok_s": self.gain_tok_s, "requested": self.requested, "reason": self.reason,
            "changes": [c.to_json() for c in self.changes],
            "manual": list(self.manual), "notes": list(self.notes),
        }


def _by_gain(gain: float | None) -> float:
    return -(gain or 0.0)


class Plan(Struct):
    """What ``fix`` would do: the fixes in apply order and the steps only a person can take."""
    fixes: list[FixPlan]  # in fixes.ORDER: the order they are applied in
    manual: list[tuple[str, str]]  # (finding id, step) software cannot take
    gains: dict[str, float | None] = field(default_factory=dict)  # finding id -> its cost

    def pending_changes(self) -> list[Change]:
        return [c for plan in self.fixes if plan.selected for c in plan.changes
                if c.status == CHANGE]

    def fixes_by_gain(self) -> list[FixPlan]:
        """The fixes as a person reads them: what gains most first (then fix order)."""
        return sorted(self.fixes, key=lambda plan: _by_gain(plan.gain_tok_s))

    def manual_by_gain(self, gains: dict[str, float | None] | None = None
                       ) -> list[tuple[str, str]]:
        """The steps by hand, those of the costliest findings first (by ``gains`` where
        given: the ledger's, each step priced on top of the ones before)."""
        gains = {**self.gains, **(gains or {})}
        return sorted(self.manual, key=lambda item: _by_gain(gains.get(item[0])))

    def to_json(self) -> dict[str, Any]:
        return {"fixes": [plan.to_json() for plan in self.fixes_by_gain()],
                "manual": [{"finding": fid, "step": step, "gain_tok_s": self.gains.get(fid)}
                           for fid, step in self.manual_by_gain()]}


class UnknownFix(ValueError):
    """An --only name that is no fix id."""


# -- discovery ----------------------------------------------------------------------------
def discover_fixes() -> dict[str, Fix]:
    """Every ``FIX`` of a module in fixes/, by id, in no particular order."""
    package = importlib.import_module(FIXES_PACKAGE)
    found: dict[str, Fix] = {}
    for module in pkgutil.iter_modules(package.__path__):
        loaded = importlib.import_module(f"{package.__name__}.{module.name}")
        fix = getattr(loaded, "FIX", None)
        if isinstance(fix, Fix):
            found[fix.id] = fix
    return found


def fix_order() -> list[str]:
    """The fix ids in the order fixes/ lists them (``ORDER`` in its __init__)."""
    return list(getattr(importlib.import_module(FIXES_PACKAGE), "ORDER", ()))


def builtin_fixes() -> dict[str, Fix]:
    """Every fix in fixes/, by id, in ``ORDER``: the order they are planned and applied.
    One missing from ``ORDER`` comes last (alphabetically) rather than not at all."""
    found = discover_fixes()
    rank = {fix_id: index for index, fix_id in enumerate(fix_order())}
    return dict(sorted(found.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))


# -- planning -----------------------------------------------------------------------------
def _requested(fix_options: FixOptions, fixes: dict[str, Fix]) -> list[str]:
    """The fix ids --only names (commas or repeats), refused as a whole if one is unknown."""
    only = [name.strip() for value in fix_options.only for name in value.split(",")
            if name.strip()]
    unknown = [name for name in only if name not in fixes]
    if unknown:
        raise UnknownFix(f"unknown fix: {', '.join(unknown)} (known: {', '.join(fixes)})")
    return only


def plan_fix(fix_id: str, fix: Fix, facts: Any, fix_options: FixOptions,
             cures: list[Finding], requested: bool) -> FixPlan:
    """One fix's plan: whether it can run here and, if so, its changes. A fix that
    raises is reported as unavailable, never a crash of the whole plan."""
    plan = FixPlan(fix_id, fix.title, cures, requested=requested, checks=fix.checks,
                   cures=fix.cures)
    plan.optional = not requested and not any(f.status in ACTIVE for f in cures)
    ctx = FixContext(facts.host, facts, facts.options, fix_options, cures, plan)
    try:
        reason = fix.available(ctx)
    except Exception as exc:  # a fix must never crash the plan
        reason = f"could not tell: {type(exc).__name__}: {exc}"
    if reason:
        plan.available, plan.reason = False, reason
        return plan
    try:
        fix.plan(ctx)
    except Exception as exc:
        plan.available = False
        plan.reason = f"could not plan: {type(exc).__name__}: {exc}"
        plan.changes = []
    return plan


def build_plan(facts: Any, findings: list[Finding], fix_options: FixOptions,
               fixes: dict[str, Fix] | None = None) -> Plan:
    """The plan for these findings: every fix a failing or warning finding offers (or
    those named with --only), in fix order, and the manual steps of findings software
    cannot cure."""
    fixes = fixes if fixes is not None else builtin_fixes()
    only = _requested(fix_options, fixes)
    offered: dict[str, list[Finding]] = {}
    for finding in findings:
        if finding.status in (PASS, SKIP):
            continue
        for fix_id in finding.fixes:
            offered.setdefault(fix_id, []).append(finding)
    wanted = set(only) if only else set(offered)
    plans = [plan_fix(fix_id, fix, facts, fix_options, offered.get(fix_id, []), fix_id in only)
             for fix_id, fix in fixes.items() if fix_id in wanted]
    for fix_id in sorted(set(offered) - set(fixes)):
        if not only:  # a check offers a fix this version does not have
            plans.append(FixPlan(fix_id, fix_id, offered[fix_id], available=False,
                                 reason="no fix of that id in this version of q3cn-doctor; "
                                        "see the finding's advice"))
    # A finding's manual steps, unless a fix that runs here covers it (its steps are the
    # by-hand version of that fix); with --only, only those of the findings the named
    # fixes answer.
    covered = {f.id for p in plans if p.cures and p.status in (CHANGE, ALREADY)
               for f in p.findings}
    manual = [(f.id, step) for f in findings if f.status not in (PASS, SKIP)
              and f.id not in covered and (not only or set(f.fixes) & set(only))
              for step in f.manual]
    return Plan(plans, manual, {f.id: f.cost_tok_s for f in findings})

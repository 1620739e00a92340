"""The fix engine: one code path that simulates, applies, verifies and reverts the changes
of a plan (plan.py), on any target (targets.py), through the journal (journal.py).

The engine treats every change alike, as tuned's plugins do with their ``sim`` flag
and pyperf's operations with show/write (``execute``):

    read the target -> already as wanted?  -> nothing to do (a second apply is a no-op)
                    -> simulating?         -> "would change" (the dry-run plan)
                    -> journal the old state (fsynced) -> write -> read back -> verify

and once every change of a run is made, ``apply`` reads each target back again: a
later change, the kernel or a daemon may have undone an earlier one.

Safety rules, kept here rather than in each fix:

- nothing is written before its previous state is in the journal (journal.py);
- a file is only ever replaced if absent or carrying our header; a link, folder or a
  file without the header at a target is refused, and writes never follow links;
- a value is verified by reading it back: a kernel that refuses or clamps it makes the
  fix fail, never pass silently;
- revert restores the recorded state (a file's bytes, mode and owner), never a default,
  and leaves alone (and reports) anything changed by someone else since q3cn-doctor
  wrote it; a change of several parts stopped half-way (``Target.mixed``) is restored;
- only targets on the allow-list (``Target.not_allowed``) are ever changed or restored,
  and a journal holding anything else is refused before revert starts (entries.py).
"""

from __future__ import annotations

import errno
import os
import time
from typing import Any, Callable

from msgspec import Struct
from q3cn_doctor.fixing.journal import APPLIED, FAILED, LEFT, PENDING, REVERTED, Journal
from q3cn_doctor.fixing.plan import ALREADY, REFUSED, Change, Plan
from q3cn_doctor.fixing.targets import ConfigFile, Target, missing_dirs, target_from_json
from q3cn_doctor.host.base import Host

# Outcomes of simulating, applying or reverting one change.
WOULD_CHANGE, DONE, FAILED_OUTCOME, UNCHANGED = "would-change", "applied", "failed", "unchanged"


class Outcome(Struct):
    """What happened to one change (applying) or one journal entry (reverting)."""

    fix: str
    what: str
    result: str  # would-change, already, applied, failed, refused, reverted, left, unchanged
    detail: str = ""
    before: str = ""
    after: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"fix": self.fix, "what": self.what, "result": self.result,
                "detail": self.detail, "before": self.before, "after": self.after}


def needs_root(changes: list[Change], host: Host) -> list[Change]:
    """The changes this process may not make: it is not root (the host's euid decides)."""
    if host.euid() == 0:
        return []
    return [c for c in changes if c.needs_root]


def _errno_text(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


class Engine:
    """Applies, verifies, reverts and reports changes on one host through its journal."""

    def __init__(self, host: Host, step: Callable[[str], None] | None = None) -> None:
        self.host = host
        self.step = step
        self._journal: Journal | None = None
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            self._journal = Journal(self.host, self.step)
        return self._journal

    def journal_entries_of_this_run(self) -> int:
        if self._journal is None:
            return 0
        return sum(1 for e in self._journal.entries if e.get("run") == self.run_id)

    def execute(self, change: Change, simulate: bool) -> Outcome:
        """Simulate or apply one change: the one code path of dry run, apply and verify."""
        target, host = change.target, self.host
        host.forget()
        current = target.read(host)
        show = target.show
        if target.same(current, change.new):
            return Outcome(change.fix, change.what, ALREADY, "already as wanted",
                           show(current), show(change.new))
        refusal = target.not_allowed() or target.refusal(current)
        if refusal:
            return Outcome(change.fix, change.what, REFUSED, refusal, show(current))
        if change.status == ALREADY or not target.same(current, change.current):
            # It changed between the plan and now: the plan no longer describes it.
            return Outcome(change.fix, change.what, REFUSED,
                           f"changed since the plan was made (now {show(current)})",
                           show(current))
        if simulate:
            return Outcome(change.fix, change.what, WOULD_CHANGE, "", show(current),
                           show(change.new))
        created = missing_dirs(host, target.path) if isinstance(target, ConfigFile) else []
        entry = self.journal.record(run=self.run_id, fix=change.fix, what=change.what,
                                    target=target.to_json(), before=current, after=change.new,
                                    created_dirs=created)
        try:
            for folder in created:
                host.make_dir(folder, 0o755)
            target.write(host, change.new)
        except OSError as exc:
            host.forget()
            now = target.read(host)
            unchanged = target.same(now, current)
            self.journal.mark(entry, FAILED if unchanged else APPLIED, after=now,
                              error=_errno_text(exc))
            return Outcome(change.fix, change.what, FAILED_OUTCOME,
                           f"the write was refused: {_errno_text(exc)}", show(current), show(now))
        self._step(f"change {entry['seq']}")
        host.forget()
        readback = target.read(host)
        if not target.same(readback, change.new):
            # Keep what it reads as: revert recognises it as ours and restores ``before``.
            self.journal.mark(entry, APPLIED, after=readback,
                              error=f"reads back {show(readback)}")
            return Outcome(change.fix, change.what, FAILED_OUTCOME,
                           f"wrote {show(change.new)} but it reads back {show(readback)}",
                           show(current), show(readback))
        self.journal.mark(entry, APPLIED)
        return Outcome(change.fix, change.what, DONE, "", show(current), show(readback))

    def _step(self, name: str) -> None:
        if self.step:
            self.step(name)

    def apply(self, plan: Plan, simulate: bool = False) -> list[Outcome]:
        """Every selected fix's changes, in plan order; refused fixes are reported only."""
        if simulate or not plan.pending_changes():
            return self._apply(plan, simulate)
        with self.journal.locked():
            return self._apply(plan, simulate)

    def _apply(self, plan: Plan, simulate: bool) -> list[Outcome]:
        outcomes: list[Outcome] = []
        done: list[tuple[int, Change]] = []  # the changes made, by their outcome's index
        for fix_plan in plan.fixes:
            if fix_plan.status == REFUSED:
                for change in fix_plan.changes:
                    if change.status == REFUSED:
                        outcomes.append(Outcome(fix_plan.fix_id, change.what, REFUSED,
                                                change.reason))
                continue
            if not fix_plan.selected:
                continue
            for change in fix_plan.changes:
                outcome = self._execute_guarded(change, simulate)
                if outcome.result == DONE:
                    done.append((len(outcomes), change))
                outcomes.append(outcome)
        for index, change in done:
            outcomes[index] = self._still_holds(change, outcomes[index])
        return outcomes

    def _execute_guarded(self, change: Change, simulate: bool) -> Outcome:
        try:
            return self.execute(change, simulate)
        except OSError as exc:  # reading the target's surroundings failed
            return Outcome(change.fix, change.what, FAILED_OUTCOME,
                           f"could not be read: {_errno_text(exc)}")

    def _still_holds(self, change: Change, applied: Outcome) -> Outcome:
        """Read an applied change back once every change of the run is made: a later
        change, the kernel or a daemon may have undone it. Through ``execute`` again,
        simulating: "already as wanted" is the one answer that says it holds. The journal
        keeps the entry as applied: revert restores it, or leaves it to whoever changed it."""
        check = self._execute_guarded(change, simulate=True)
        if check.result == ALREADY:
            return applied
        now = check.before or "(unreadable)"
        return Outcome(change.fix, change.what, FAILED_OUTCOME,
                       f"applied, but no longer holds once every change was made: it reads "
                       f"{now} (undone by a later change or a daemon?)", applied.before, now)

    # -- revert and status ------------------------------------------------------------
    def revert(self, simulate: bool = False,
               only: Callable[[dict[str, Any]], bool] | None = None) -> list[Outcome]:
        """Undo every open journal entry (or those ``only`` selects, as ``launch --unit
        NAME --revert`` does), newest first, to the exact recorded state. Not simulating,
        the lock is taken even with nothing to undo: taking it removes what a killed run
        left (journal.py, ``_recover``)."""
        if simulate:
            return self._revert_all(simulate=True, only=only)
        if not self.journal.open_entries() and self.host.lstat(self.journal.directory) is None:
            return []
        with self.journal.locked():
            return self._revert_all(simulate=False, only=only)

    def _revert_all(self, simulate: bool,
                    only: Callable[[dict[str, Any]], bool] | None = None) -> list[Outcome]:
        # Every target is rebuilt before any is restored: an entry this version cannot
        # read (JournalError) stops the revert before it has changed anything.
        work = [(entry, target_from_json(entry["target"]))
                for entry in self.journal.open_entries() if only is None or only(entry)]
        return [self._revert_one(entry, target, simulate) for entry, target in work]

    def _revert_one(self, entry: dict[str, Any], target: Target, simulate: bool) -> Outcome:
        host = self.host
        before, after = entry["before"], entry.get("after")
        fix, what, show = entry["fix"], entry.get("what", target.path), target.show
        host.forget()
        current = target.read(host)
        if target.gone(current, before):
            if not simulate:
                self.journal.mark(entry, REVERTED, note="gone: nothing to restore")
            return Outcome(fix, what, UNCHANGED, "no longer exists: nothing to restore")
        if target.same(current, before):
            if not simulate:
                self._remove_created(entry)
                self.journal.mark(entry, REVERTED)
            return Outcome(fix, what, UNCHANGED, "already as before", show(current), show(before))
        ours = after is not None and (target.same(current, after)
                                      or target.mixed(current, before, after))
        if not ours:
            if not simulate:
                self.journal.mark(entry, LEFT, note=f"changed since q3cn-doctor wrote it "
                                                    f"(now {show(current)})")
            return Outcome(fix, what, LEFT, "changed since q3cn-doctor wrote it: left alone",
                           show(current), show(before))
        if simulate:
            return Outcome(fix, what, WOULD_CHANGE, "", show(current), show(before))
        try:
            target.write(host, before)
        except OSError as exc:
            return Outcome(fix, what, FAILED_OUTCOME, f"could not restore: {_errno_text(exc)}",
                           show(current), show(before))
        self._step(f"restore {entry['seq']}")
        host.forget()
        readback = target.read(host)
        if not target.same(readback, before):
            return Outcome(fix, what, FAILED_OUTCOME,
                           f"restored {show(before)} but it reads back {show(readback)}",
                           show(current), show(readback))
        self._remove_created(entry)
        self.journal.mark(entry, REVERTED)
        return Outcome(fix, what, REVERTED, "", show(current), show(readback))

    def _remove_created(self, entry: dict[str, Any]) -> None:
        """Folders the change created, innermost first, where still there and empty."""
        for folder in reversed(entry.get("created_dirs") or []):
            found = self.host.lstat(folder)
            if found is None or found.kind != "dir":
                continue
            try:
                if self.host.listdir(folder):
                    continue
                self.host.remove_dir(folder)
            except OSError:
                continue

    def revert_needs_root(self) -> list[str]:
        if self.host.euid() == 0:
            return []
        return [entry.get("what", entry["target"]["path"])
                for entry in self.journal.open_entries()
                if entry["target"]["kind"] != "affinity"]

    def status(self) -> list[dict[str, Any]]:
        """Every journal entry still in effect, with whether the target still holds it."""
        rows = []
        for entry in self.journal.open_entries():
            target = target_from_json(entry["target"])
            self.host.forget()
            current = target.read(self.host)
            after = entry.get("after")
            if entry["state"] == FAILED:
                holds = "failed: " + entry.get("error", "")
            elif target.gone(current, entry["before"]):
                holds = "gone"
            elif after is not None and target.same(current, after):
                holds = "in effect"
            elif target.same(current, entry["before"]):
                holds = "not in effect (reads as before)"
            else:
                holds = f"changed since (now {target.show(current)})"
            rows.append({"seq": entry["seq"], "time": entry["time"], "fix": entry["fix"],
                         "what": entry.get("what", target.path), "state": entry["state"],
                         "before": target.show(entry["before"]),
                         "after": target.show(after), "now": holds,
                         "pending": entry["state"] == PENDING})
        for entry in reversed(self.journal.entries):
            if entry["state"] == LEFT:
                target = target_from_json(entry["target"])
                rows.append({"seq": entry["seq"], "time": entry["time"], "fix": entry["fix"],
                             "what": entry.get("what", target.path), "state": LEFT,
                             "before": target.show(entry["before"]),
                             "after": target.show(entry.get("after")),
                             "now": entry.get("note", "left alone"), "pending": False})
        return rows

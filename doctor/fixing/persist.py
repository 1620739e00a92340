"""Making a fix survive a reboot: the boot-time file a fix plans after its runtime change.

Two kinds, one helper each, so that every fix words its conflicts the same way and
never edits a file it did not write:

- ``persist_sysctl``: a /proc/sys value, through a sysctl.d file of ours named to be
  read after every file that sets the key differently (dropins.py picks the name);
- ``persist_tmpfiles``: sysfs values, through one tmpfiles.d file of ``w`` lines that
  systemd-tmpfiles writes at every boot.

Either plans a manual step instead where a file we cannot beat sets another value,
and a note where the value cannot be kept (--runtime-only, no systemd-tmpfiles).
"""

from __future__ import annotations

from q3cn_doctor.fixing.dropins import (
    effective,
    file_text,
    plan_persistence,
    tmpfiles_line,
    tmpfiles_writes,
)
from q3cn_doctor.fixing.plan import PERSISTENT, FixContext
from q3cn_doctor.fixing.targets import header, is_ours

# Where systemd-tmpfiles is installed, one of these folders exists.
TMPFILES_MARKS = ("/usr/lib/tmpfiles.d", "/lib/tmpfiles.d", "/etc/tmpfiles.d")


def persist_sysctl(ctx: FixContext, key: str, value: str, stem: str) -> None:
    """Plan the sysctl.d file (``99-q3cn-doctor-<stem>.conf`` or a later name) that makes
    ``key = value`` hold at boot, or the manual step where a file we cannot beat sets
    another value, or a note where the files already give the value."""
    host = ctx.host

    def owned(path: str) -> bool:
        try:
            return is_ours(host.read_bytes(path))
        except OSError:
            return False

    text_header = header(ctx.plan.fix_id)
    before = effective(host, key)
    result = plan_persistence(host, key, value, stem, text_header, owned)
    if result.already is not None:
        ctx.note(f"{key} = {value} already holds at boot ({result.already.where()}).")
        return
    if result.conflict is not None:
        ctx.manual(
            f"{result.conflict.where()} sets {key} = {result.conflict.value} and is read after "
            f"any file q3cn-doctor could add, so it wins at boot. q3cn-doctor never edits a "
            f"file it did not create: change that line to `{key} = {value}` (or remove it) "
            "to make the fix survive a reboot.")
        return
    assert result.path is not None
    if before is not None and before.path != result.path:
        ctx.note(f"{result.path} is read after {before.where()} ({key} = {before.value}), "
                 "so its value wins at boot.")
    ctx.file(result.path, file_text(key, value, text_header), f"{result.path} ({key} = {value})",
             effect=PERSISTENT)


def has_tmpfiles(ctx: FixContext) -> bool:
    """Whether systemd-tmpfiles runs at boot here (its folders exist)."""
    return any(ctx.host.is_dir(path) for path in TMPFILES_MARKS)


def persist_tmpfiles(ctx: FixContext, our_file: str, writes: list[tuple[str, str]],
                     label: str) -> None:
    """Plan ``our_file`` under /etc/tmpfiles.d writing each ``(sysfs path, value)`` at boot.

    ``label`` names the setting in what the plan says ("THP madvise"). Nothing is
    planned with --runtime-only (a note says so), nor where another tmpfiles.d file
    writes another value into one of the paths (a manual step names it: it is never
    edited), nor without systemd-tmpfiles (a note)."""
    if not ctx.persist:
        ctx.note("--runtime-only: the boot-time setting comes back at the next reboot.")
        return
    if not writes:
        return
    for path, value in writes:
        others = [w for w in tmpfiles_writes(ctx.host, path, skip=(our_file,))
                  if w.value != value]
        if others:
            ctx.manual(f"{others[0].where()} writes {others[0].value} into {path} at boot: "
                       f"q3cn-doctor does not edit it; change it to {value} to keep {label} "
                       "after a reboot.")
            return
    if not has_tmpfiles(ctx):
        ctx.note("No systemd-tmpfiles here: the boot-time setting comes back at the next "
                 "reboot.")
        return
    text = header(ctx.plan.fix_id) + "".join(tmpfiles_line(p, v) for p, v in writes)
    ctx.file(our_file, text, f"{our_file} ({label} at boot)", effect=PERSISTENT)

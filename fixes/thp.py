"""thp.mode: transparent huge pages back to ``madvise`` where they are ``never``.

Persistent through a tmpfiles.d ``w`` line (systemd-tmpfiles writes it at every boot),
unless the kernel command line sets ``transparent_hugepage=never`` on purpose or
another tmpfiles.d file writes another mode: both are reported, not overridden.
"""

from __future__ import annotations

import re

from q3cn_doctor.fixing.dropins import tmpfiles_line, tmpfiles_writes
from q3cn_doctor.fixing.plan import PERSISTENT, Fix, FixContext
from q3cn_doctor.fixing.targets import header

PATH = "/sys/kernel/mm/transparent_hugepage/enabled"
MODE = "madvise"
OUR_FILE = "/etc/tmpfiles.d/q3cn-doctor-thp.conf"
TMPFILES_MARKS = ("/usr/lib/tmpfiles.d", "/lib/tmpfiles.d", "/etc/tmpfiles.d")


def has_tmpfiles(ctx: FixContext) -> bool:
    return any(ctx.host.is_dir(path) for path in TMPFILES_MARKS)


class ThpMode(Fix):
    id = "thp.mode"
    title = "Transparent huge pages: madvise"
    checks = ("memory.hugepages",)

    def available(self, ctx: FixContext) -> str | None:
        text = ctx.host.cat(PATH)
        if text is None:
            return f"{PATH} is absent (a kernel without transparent huge pages)"
        if MODE not in text.replace("[", " ").replace("]", " ").split():
            return f"this kernel offers no {MODE} mode ({text})"
        return None

    def plan(self, ctx: FixContext) -> None:
        ctx.kernel(PATH, MODE, "transparent huge pages", choice=True)
        if not ctx.persist:
            ctx.note("--runtime-only: the boot-time mode comes back at the next reboot.")
            return
        cmdline = ctx.host.cat("/proc/cmdline") or ""
        boot = re.search(r"\btransparent_hugepage=(\S+)", cmdline)
        if boot and boot.group(1) != MODE:
            ctx.manual(f"The kernel command line sets {boot.group(0)}: remove it in the boot "
                       "loader's configuration and reboot to keep this mode after a reboot.")
            return
        others = [w for w in tmpfiles_writes(ctx.host, PATH, skip=(OUR_FILE,)) if w.value != MODE]
        if others:
            ctx.manual(f"{others[0].where()} writes {others[0].value} into {PATH} at boot: "
                       f"q3cn-doctor does not edit it; change it to {MODE} to keep this mode.")
            return
        if not has_tmpfiles(ctx):
            ctx.note("No systemd-tmpfiles here: the boot-time mode comes back at the next "
                     "reboot.")
            return
        ctx.file(OUR_FILE, header(self.id) + tmpfiles_line(PATH, MODE),
                 f"{OUR_FILE} (THP {MODE} at boot)", effect=PERSISTENT)


FIX = ThpMode()

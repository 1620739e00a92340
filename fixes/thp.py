"""thp.mode: transparent huge pages back to ``madvise`` where they are ``never``.

Persistent through a tmpfiles.d ``w`` line (systemd-tmpfiles writes it at every boot),
unless the kernel command line sets ``transparent_hugepage=never`` on purpose or
another tmpfiles.d file writes another mode: both are reported, not overridden.
"""

from __future__ import annotations

import re

from q3cn_doctor.fixing.persist import persist_tmpfiles
from q3cn_doctor.fixing.plan import Fix, FixContext

PATH = "/sys/kernel/mm/transparent_hugepage/enabled"
MODE = "madvise"
OUR_FILE = "/etc/tmpfiles.d/q3cn-doctor-thp.conf"


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
        cmdline = ctx.host.cat("/proc/cmdline") or ""
        boot = re.search(r"\btransparent_hugepage=(\S+)", cmdline)
        if ctx.persist and boot and boot.group(1) != MODE:
            ctx.manual(f"The kernel command line sets {boot.group(0)}: remove it in the boot "
                       "loader's configuration and reboot to keep this mode after a reboot.")
            return
        persist_tmpfiles(ctx, OUR_FILE, [(PATH, MODE)], f"THP {MODE}")


FIX = ThpMode()

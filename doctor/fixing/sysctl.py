"""``SysctlFix``: a fix that sets one kernel value under /proc/sys, now and at boot.

Generic, as tuned's plugin_sysctl is: a fix names its key and value and the rest
follows (the runtime write, the sysctl.d file that wins at boot, --runtime-only).
"""

from __future__ import annotations

from q3cn_doctor.fixing.persist import persist_sysctl
from q3cn_doctor.fixing.plan import Fix, FixContext


class SysctlFix(Fix):
    """``KEY = VALUE`` now (/proc/sys/...) and in ``/etc/sysctl.d/99-q3cn-doctor-<stem>.conf``.

    Subclasses set ``id``, ``title``, ``checks``, ``KEY`` (dotted, ``vm.swappiness``)
    and ``VALUE``; ``ABSENT`` says why the fix cannot run where the file is missing.
    The file's stem is the key's last part (``numa_balancing`` -> ``numa-balancing``).
    """

    KEY = ""
    VALUE = ""
    ABSENT = "cannot be read"

    @property
    def path(self) -> str:
        return "/proc/sys/" + self.KEY.replace(".", "/")

    @property
    def stem(self) -> str:
        return self.KEY.rsplit(".", 1)[-1].replace("_", "-")

    def available(self, ctx: FixContext) -> str | None:
        if ctx.host.cat(self.path) is None:
            return f"{self.path} {self.ABSENT}"
        return None

    def plan(self, ctx: FixContext) -> None:
        ctx.kernel(self.path, self.VALUE, self.KEY, kind="sysctl", key=self.KEY)
        if ctx.persist:
            persist_sysctl(ctx, self.KEY, self.VALUE, self.stem)
        else:
            ctx.note("--runtime-only: the boot-time value comes back at the next reboot.")

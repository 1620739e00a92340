"""sysctl.swappiness: vm.swappiness = 0 now, and in a sysctl.d file that wins at boot.

Not offered where zram is the only swap: there a high swappiness is intended
(zram-generator distributions such as CachyOS and Fedora ship 100 on purpose).
"""

from __future__ import annotations

from q3cn_doctor.fixing.persist import persist_sysctl
from q3cn_doctor.fixing.plan import Fix, FixContext

KEY = "vm.swappiness"
PATH = "/proc/sys/vm/swappiness"
VALUE = "0"


class Swappiness(Fix):
    id = "sysctl.swappiness"
    title = "Keep the model in RAM: vm.swappiness = 0"
    checks = ("memory.swappiness",)

    def available(self, ctx: FixContext) -> str | None:
        if ctx.host.cat(PATH) is None:
            return f"{PATH} cannot be read"
        memory = ctx.facts.memory
        if memory.swap and not memory.disk_swap:
            return ("zram is the only swap: a high swappiness is intended there (it compresses "
                    "in RAM instead of writing to disk)")
        return None

    def plan(self, ctx: FixContext) -> None:
        ctx.kernel(PATH, VALUE, KEY, kind="sysctl", key=KEY)
        if ctx.persist:
            persist_sysctl(ctx, KEY, VALUE, "swappiness")
        else:
            ctx.note("--runtime-only: the boot-time value comes back at the next reboot.")


FIX = Swappiness()

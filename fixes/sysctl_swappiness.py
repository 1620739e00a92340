"""sysctl.swappiness: vm.swappiness = 0 now, and in a sysctl.d file that wins at boot.

memory.swappiness offers it only where the model sits in unlocked anonymous memory
(--no-mmap without --mlock on a build that cannot pin it), the one place swap can page
it out: a locked or pinned model cannot be swapped, and a mapped one is file pages that a
low swappiness would drop first. Not offered where zram is the only swap: there a high
swappiness is intended (zram-generator distributions such as CachyOS and Fedora ship 100).
"""

from __future__ import annotations

from q3cn_doctor.fixing.plan import FixContext
from q3cn_doctor.fixing.sysctl import SysctlFix


class Swappiness(SysctlFix):
    id = "sysctl.swappiness"
    title = "Keep the model in RAM: vm.swappiness = 0"
    checks = ("memory.swappiness",)
    KEY, VALUE = "vm.swappiness", "0"

    def available(self, ctx: FixContext) -> str | None:
        unreadable = super().available(ctx)
        if unreadable:
            return unreadable
        memory = ctx.facts.memory
        if memory.swap and not memory.disk_swap:
            return ("zram is the only swap: a high swappiness is intended there (it compresses "
                    "in RAM instead of writing to disk)")
        return None


FIX = Swappiness()

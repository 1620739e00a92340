"""sysctl.numa_balancing: automatic NUMA balancing off (``kernel.numa_balancing = 0``)
where llama-server runs with a NUMA policy: llama.cpp warns that balancing moves the
model's pages under it. Now, and in a sysctl.d file that wins at boot."""

from __future__ import annotations

from q3cn_doctor.fixing.persist import persist_sysctl
from q3cn_doctor.fixing.plan import Fix, FixContext

KEY = "kernel.numa_balancing"
PATH = "/proc/sys/kernel/numa_balancing"


class NumaBalancing(Fix):
    id = "sysctl.numa_balancing"
    title = "Automatic NUMA balancing off: kernel.numa_balancing = 0"
    checks = ("cpu.numa",)

    def available(self, ctx: FixContext) -> str | None:
        if ctx.host.cat(PATH) is None:
            return f"{PATH} is absent (a kernel without NUMA balancing)"
        return None

    def plan(self, ctx: FixContext) -> None:
        ctx.kernel(PATH, "0", KEY, kind="sysctl", key=KEY)
        if ctx.persist:
            persist_sysctl(ctx, KEY, "0", "numa-balancing")
        else:
            ctx.note("--runtime-only: the boot-time value comes back at the next reboot.")


FIX = NumaBalancing()

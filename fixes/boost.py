"""cpu.boost: turbo boost back on, through ``intel_pstate/no_turbo = 0`` or
``cpufreq/boost = 1``, kept across reboots by a tmpfiles.d file."""

from __future__ import annotations

from q3cn_doctor.fixing.persist import persist_tmpfiles
from q3cn_doctor.fixing.plan import Fix, FixContext

from .governor import blocking_manager

NO_TURBO = "/sys/devices/system/cpu/intel_pstate/no_turbo"
BOOST = "/sys/devices/system/cpu/cpufreq/boost"
OUR_FILE = "/etc/tmpfiles.d/q3cn-doctor-cpu-boost.conf"


def _switch(ctx: FixContext) -> tuple[str, str] | None:
    """The file and the value that turn boost on, where this machine has one."""
    if ctx.host.cat(NO_TURBO) is not None:
        return NO_TURBO, "0"
    if ctx.host.cat(BOOST) is not None:
        return BOOST, "1"
    return None


class Boost(Fix):
    id = "cpu.boost"
    title = "Turbo boost on"
    checks = ("cpu.governor",)

    def available(self, ctx: FixContext) -> str | None:
        if _switch(ctx) is None:
            return f"neither {NO_TURBO} nor {BOOST} is there to write"
        if ctx.facts.cpu.turbo_pct == 0:
            return ("intel_pstate reports no turbo range on this CPU: the kernel refuses "
                    "no_turbo = 0")
        blocker = blocking_manager(ctx)
        if blocker:
            return (f"{blocker} is running and sets boost itself: turn it on in {blocker}'s "
                    "own configuration")
        return None

    def plan(self, ctx: FixContext) -> None:
        switch = _switch(ctx)
        assert switch is not None
        path, value = switch
        change = ctx.kernel(path, value, "turbo boost (" + path.rsplit("/", 1)[1] + ")")
        if (change.current or "").strip() != value:  # as the governor: keep what was changed
            persist_tmpfiles(ctx, OUR_FILE, [(path, value)], "boost on")


FIX = Boost()

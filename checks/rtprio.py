"""--prio: may the launching user give llama-server's threads a high priority?

At ``--prio 2`` ggml asks for SCHED_FIFO priority 80 on every compute thread
(ggml_thread_apply_priority), which needs CAP_SYS_NICE (root) or an RLIMIT_RTPRIO of 80
or more; without it llama.cpp only warns "failed to set thread priority" and the threads
share their cores with whatever else runs. The launch asks for --prio 2 only where it is
allowed (doctor/launch/launcher.py); rtprio.limit grants it.
"""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import INFO, PASS, SKIP
from q3cn_doctor.checking.registry import check
from q3cn_doctor.checks.memlock import exempt_by, launching_user, limits_conf_value
from q3cn_doctor.host.base import CAP_SYS_NICE, UNLIMITED
from q3cn_doctor.plan.cpu import PRIO_HIGH_RTPRIO as THREAD_PRIORITY


def _number(text: str) -> int | None:
    text = text.strip().lower()
    if text in ("unlimited", "infinity", "-1"):
        return UNLIMITED
    return int(text) if text.isdecimal() else None


def _allows(value: int | None) -> bool:
    return value is not None and (value == UNLIMITED or value >= THREAD_PRIORITY)


def rtprio_limit(ctx: Context) -> tuple[int | None, bool, str]:
    """The launching user's usable RLIMIT_RTPRIO (the hard limit where it is this process's
    own: the launch raises the soft one to it), whether CAP_SYS_NICE (or root) makes it
    moot, and where that came from."""
    user = ctx.options.user
    uid, gid, own, who = launching_user(ctx)
    if own:
        exempt = exempt_by(ctx, CAP_SYS_NICE)
        limits = ctx.host.rlimits().get("RTPRIO")
        if limits is None:
            return None, exempt, f"RLIMIT_RTPRIO of {who}: unknown"
        return limits[1], exempt, (f"RLIMIT_RTPRIO of {who}: soft {limits[0]}, hard "
                                   f"{limits[1]}" + (" (root or CAP_SYS_NICE: not needed)"
                                                     if exempt else ""))
    if uid == 0:
        return UNLIMITED, True, f"{user} is root"
    value, where = limits_conf_value(ctx, user or "", gid, "rtprio", _number)
    if value is not None:
        return value, False, f"pam_limits for {user}: {where}"
    return 0, False, f"no rtprio line for {user} in /etc/security/limits.conf or limits.d"


@check("server.rtprio", "The launching user may run llama-server's threads at --prio 2")
def rtprio(ctx: Context):
    if ctx.facts.server.path is None:
        return ctx.finding(SKIP, "llama-server not found (see server.found)",
                           observed=f"looked on {ctx.facts.server.found_by}")
    limit, exempt, where = rtprio_limit(ctx)
    if limit is None and not exempt:
        return ctx.finding(SKIP, "Real-time priority limit unknown", observed=where)
    observed = (f"{where}; --prio 2 asks for SCHED_FIFO priority {THREAD_PRIORITY} on every "
                "compute thread")
    if exempt or _allows(limit):
        return ctx.finding(PASS, "llama-server may raise its threads' priority (--prio 2)",
                           observed=observed)
    user = ctx.options.user or "the launching user"
    return ctx.finding(
        INFO, "llama-server may not raise its threads' priority: --prio 2 is left out",
        observed=observed,
        recommended=f"Allow {user} rtprio {THREAD_PRIORITY} (fix rtprio.limit writes a "
                    "/etc/security/limits.d entry, in force at the next login; a systemd "
                    f"service needs LimitRTPRIO={THREAD_PRIORITY}). The threads then run "
                    "SCHED_FIFO: on a machine with no spare cores the desktop may stutter "
                    "while a prompt is processed (the kernel still keeps 5% of each second for "
                    "others, kernel.sched_rt_runtime_us).",
        impact="Without it llama.cpp only warns \"failed to set thread priority\": any busy "
               "program preempts a generation thread, and every token waits for the one "
               "that is behind.",
        fixes=["rtprio.limit"])

"""Memlock: can llama-server lock the model's RAM part, as the launch plan asks?"""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.host.base import UNLIMITED
from q3cn_doctor.parsers.procfs import bounded_int
from q3cn_doctor.plan.placement import no_room_to_lock, placement
from q3cn_doctor.units import gib

CAP_IPC_LOCK = 14  # mlock without limit
KIB = 1024
LIMITS_FILES = ("/etc/security/limits.conf", "/etc/security/limits.d/*.conf")


def passwd(ctx: Context) -> dict[str, tuple[int, int]]:
    """user name -> (uid, primary gid), from the host's /etc/passwd."""
    users = {}
    for line in (ctx.host.cat("/etc/passwd") or "").splitlines():
        parts = line.split(":")
        ids = (bounded_int(parts[2]), bounded_int(parts[3])) if len(parts) >= 4 else (None, None)
        if ids[0] is not None and ids[1] is not None:
            users[parts[0]] = (ids[0], ids[1])
    return users


def _groups(ctx: Context, user: str, gid: int | None) -> set[str]:
    groups = set()
    for line in (ctx.host.cat("/etc/group") or "").splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and (user in parts[3].split(",") or
                                (gid is not None and parts[2] == str(gid))):
            groups.add(parts[0])
    return groups


def parse_limit(value: str) -> int | None:
    """A limits.conf memlock value (KiB) in bytes; -1 for unlimited."""
    value = value.strip().lower()
    if value in ("unlimited", "infinity", "-1"):
        return UNLIMITED
    kib = bounded_int(value)
    return None if kib is None else kib * KIB


def limits_conf_value(ctx: Context, user: str, gid: int | None, item: str,
                      parse=parse_limit) -> tuple[int | None, str | None]:
    """The soft limit ``item`` (memlock, rtprio) pam_limits gives ``user``, parsed by
    ``parse``: user lines beat group lines beat ``*``."""
    groups = _groups(ctx, user, gid)
    found: dict[int, tuple[int, str]] = {}  # precedence -> (value, where)
    paths = [LIMITS_FILES[0]] + ctx.host.glob(LIMITS_FILES[1])
    for path in paths:
        for number, line in enumerate((ctx.host.cat(path) or "").splitlines(), 1):
            parts = line.split("#", 1)[0].split()
            if len(parts) != 4 or parts[2].lower() != item or parts[1] not in ("soft", "-"):
                continue
            domain = parts[0]
            if domain == user:
                rank = 0
            elif domain[:1] in "@%" and domain[1:] in groups:
                rank = 1
            elif domain == "*" or domain == "%":
                rank = 2
            else:
                continue
            value = parse(parts[3])
            if value is not None:
                found[rank] = (value, f"{path}:{number} `{' '.join(parts)}`")
    if not found:
        return None, None
    return found[min(found)]


def limits_conf_memlock(ctx: Context, user: str, gid: int | None
                        ) -> tuple[int | None, str | None]:
    """The soft memlock pam_limits gives ``user`` in bytes."""
    return limits_conf_value(ctx, user, gid, "memlock")


def launching_user(ctx: Context) -> tuple[int | None, int | None, bool, str]:
    """The launching user's uid and primary gid (from /etc/passwd, where --user names one),
    whether it is this process's own user (its limits are the ones to read), and its name
    for a finding."""
    user = ctx.options.user
    users = passwd(ctx) if user else {}
    uid, gid = users.get(user, (None, None)) if user else (None, None)
    who = f"user {user}" if user and uid is not None else "the process that ran the doctor"
    return uid, gid, uid is None or uid == ctx.host.euid(), who


def exempt_by(ctx: Context, capability: int) -> bool:
    """Root, or the effective capability that lifts the limit."""
    capabilities = ctx.host.capabilities()
    return ctx.host.euid() == 0 or bool(capabilities and capabilities >> capability & 1)


def memlock_limit(ctx: Context) -> tuple[int | None, bool, str]:
    """Soft RLIMIT_MEMLOCK of the launching user in bytes (-1 unlimited), whether the user
    is exempt (root or CAP_IPC_LOCK), and where that came from."""
    user = ctx.options.user
    limits = ctx.host.rlimits().get("MEMLOCK")
    uid, gid, own, who = launching_user(ctx)
    if own:
        exempt = exempt_by(ctx, CAP_IPC_LOCK)
        if limits is None:
            return None, exempt, f"RLIMIT_MEMLOCK of {who}: unknown"
        return limits[0], exempt, (f"RLIMIT_MEMLOCK of {who} (soft {_show(limits[0])}, hard "
                                   f"{_show(limits[1])})" + (", root or CAP_IPC_LOCK: exempt"
                                                             if exempt else ""))
    if uid == 0:
        return UNLIMITED, True, f"{user} is root: mlock is not limited"
    value, where = limits_conf_memlock(ctx, user or "", gid)
    if value is not None:
        return value, False, f"pam_limits for {user}: {where}"
    if limits is None:
        return None, False, f"no memlock line for {user} in {', '.join(LIMITS_FILES)}"
    return limits[0], False, (f"no memlock line for {user} in {', '.join(LIMITS_FILES)}: "
                              f"the default this session has, soft {_show(limits[0])}")


def _show(value: int) -> str:
    return "unlimited" if value == UNLIMITED else (
        f"{value // KIB} KiB" if value < 2**30 else gib(value))


@check("memory.memlock", "The launching user's RLIMIT_MEMLOCK lets llama-server lock the model")
def memlock(ctx: Context):
    memory = ctx.facts.memory
    if memory.total_bytes is None:
        return ctx.finding(SKIP, "RAM size unknown, so the locking plan is unknown",
                           observed="/proc/meminfo could not be read")
    plan = placement(ctx.facts)
    part = plan.ram_bytes
    limit, exempt, where = memlock_limit(ctx)
    if limit is None:
        return ctx.finding(SKIP, "Memlock limit unknown", observed=where)
    observed = f"{where}; the model's RAM part is {gib(part)} ({plan.basis})"
    if part == 0:
        return ctx.finding(PASS, "The model fits in VRAM: nothing to lock in RAM",
                           observed=observed)
    if exempt or limit == UNLIMITED or limit >= part:
        return ctx.finding(PASS, f"llama-server may lock the model's {gib(part)} in RAM",
                           observed=observed)
    short = no_room_to_lock(ctx.facts, part)
    if short is not None:
        what = short[0]
        return ctx.finding(
            INFO, f"Memlock limit {_show(limit)}: moot, as {what} cannot hold the model's "
                  f"{gib(part)} to lock", observed=observed,
            recommended=f"See {'cpu.quota:memory' if what != 'RAM' else 'memory.fit'}: "
                        "launch maps the model instead of locking it.")
    pressure = bool(memory.disk_swap) or (
        memory.available_bytes is not None and memory.available_bytes < plan.ram_needed_bytes)
    user = ctx.options.user or "the launching user"
    return ctx.finding(
        WARN if pressure else INFO,
        f"Memlock limit {_show(limit)} is far below the model's {gib(part)}: llama-server "
        "cannot lock it",
        observed=observed,
        recommended=f"Raise {user}'s memlock limit to unlimited (fix memlock.limit writes a "
                    "/etc/security/limits.d entry, in force at the next login; a systemd service "
                    "needs LimitMEMLOCK=infinity).",
        impact="llama.cpp then only warns \"failed to mlock\" and runs unlocked: under memory "
               "pressure the kernel can drop or swap out expert weights, and tokens wait for the "
               "disk to read them back."
               + ("" if pressure else " With no disk swap and RAM to spare that is unlikely."),
        fixes=["memlock.limit"])


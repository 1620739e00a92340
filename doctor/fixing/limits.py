"""A resource limit for the user or service that runs llama-server: a pam_limits entry in
/etc/security/limits.d (in force at the next login) and, with ``--service NAME``, a
systemd drop-in ``Limit<NAME>=`` for that service (after a daemon-reload and a restart).

pam_limits reads limits.conf, then limits.d/*.conf by name; an entry naming the user
beats group and ``*`` entries, and among the user's own entries the last one read
wins. systemd drop-ins for one unit are read by name across /etc, /run and /usr/lib
(a name in an earlier folder masks a later one); the last one read wins. So a fix
writes its file late in that order, and where a file we did not write comes later
still with a lower value, it says so as a manual step instead of editing it.
"""

from __future__ import annotations

from q3cn_doctor.fixing.dropins import dropin_files
from q3cn_doctor.fixing.plan import RELOGIN, RESTART, Fix, FixContext
from q3cn_doctor.fixing.targets import header, is_ours
from q3cn_doctor.options import unit_name_problem, user_name_problem

LIMITS_DIR = "/etc/security/limits.d"
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
             "/usr/lib/systemd/system", "/lib/systemd/system")
UNLIMITED = ("unlimited", "infinity", "-1")


def service_unit(name: str) -> str:
    return name if name.endswith(".service") else name + ".service"


def _owned(ctx: FixContext, path: str) -> bool:
    try:
        return is_ours(ctx.host.read_bytes(path))
    except OSError:
        return False


class PamLimitFix(Fix):
    """One pam_limits item (``ITEM``, e.g. memlock) raised to ``VALUE`` for ``--user``, and
    its systemd property (``UNIT_KEY=UNIT_VALUE``) for ``--service``."""

    ITEM = ""  # the limits.conf item: memlock, rtprio
    VALUE = ""  # what the fix writes there
    UNIT_KEY = ""  # the systemd property: LimitMEMLOCK, LimitRTPRIO
    UNIT_VALUE = ""

    def enough(self, value: str) -> bool:
        """Whether a value found in a file we did not write already allows llama-server
        what this fix gives it."""
        return value.lower() in UNLIMITED

    def available(self, ctx: FixContext) -> str | None:
        service = ctx.fix_options.service
        problem = unit_name_problem(service) if service else None
        if problem:
            return problem
        user = ctx.options.user
        if not service and not user:
            return "no user to set the limit for (give --user NAME)"
        problem = user_name_problem(user) if user else None
        if problem:
            return problem
        if not service and not ctx.host.is_dir("/etc/security"):
            return ("no /etc/security here (pam_limits is not installed); give --service NAME "
                    "to set the limit on a systemd service instead")
        return None

    def plan(self, ctx: FixContext) -> None:
        user, service = ctx.options.user, ctx.fix_options.service
        if user and ctx.host.is_dir("/etc/security"):
            self._plan_limits(ctx, user)
        if service:
            self._plan_dropin(ctx, service_unit(service))

    def _user_lines(self, ctx: FixContext, path: str, user: str) -> list[tuple[int, str, str]]:
        found = []
        for number, raw in enumerate((ctx.host.cat(path) or "").splitlines(), 1):
            fields = raw.split("#", 1)[0].split()
            if len(fields) == 4 and fields[0] == user and fields[2] == self.ITEM:
                found.append((number, fields[1], fields[3]))
        return found

    def _plan_limits(self, ctx: FixContext, user: str) -> None:
        files = dropin_files(ctx.host, (LIMITS_DIR,))
        later: list[tuple[str, tuple[int, str, str]]] = []
        names = [f"{LIMITS_DIR}/{pattern.format(item=self.ITEM, user=user)}" for pattern in
                 ("95-q3cn-doctor-{item}-{user}.conf", "zz-q3cn-doctor-{item}-{user}.conf")]
        for path in names:
            if path in files and not _owned(ctx, path):
                continue
            later = [(f, line) for f in files if f > path and not _owned(ctx, f)
                     for line in self._user_lines(ctx, f, user) if not self.enough(line[2])]
            if not later:
                text = (header(self.id) + f"{user}\tsoft\t{self.ITEM}\t{self.VALUE}\n"
                        f"{user}\thard\t{self.ITEM}\t{self.VALUE}\n")
                ctx.file(path, text, f"{path} ({self.ITEM} {self.VALUE} for {user})",
                         effect=RELOGIN)
                ctx.note(f"{user} gets the new limit at the next login (log out and in, or "
                         "restart the session's services).")
                return
        if not later:  # both names taken by files q3cn-doctor did not write
            ctx.manual(f"{' and '.join(names)} exist and were not written by q3cn-doctor: set "
                       f"`{user} - {self.ITEM} {self.VALUE}` in one of them by hand.")
            return
        file, (number, kind, value) = later[0]
        ctx.manual(f"{file}:{number} sets {user} {kind} {self.ITEM} {value} and is read after "
                   f"any file q3cn-doctor could add: change it to {self.VALUE} by hand.")

    def _plan_dropin(self, ctx: FixContext, unit: str) -> None:
        dirs = tuple(f"{d}/{unit}.d" for d in UNIT_DIRS)
        files = dropin_files(ctx.host, dirs)
        names = {f.rsplit("/", 1)[1]: f for f in files}
        later: list[tuple[str, int, str]] = []
        ours = (f"90-q3cn-doctor-{self.ITEM}.conf", f"zz-q3cn-doctor-{self.ITEM}.conf")
        for name in ours:
            path = f"{dirs[0]}/{name}"
            if name in names and not (names[name] == path and _owned(ctx, path)):
                continue
            later = []
            for other in files:
                if other.rsplit("/", 1)[1] <= name:
                    continue
                for number, raw in enumerate((ctx.host.cat(other) or "").splitlines(), 1):
                    key, _, value = raw.strip().partition("=")
                    if key.strip() == self.UNIT_KEY and not self.enough(value.strip()):
                        later.append((other, number, value.strip()))
            if not later:
                text = header(self.id) + f"[Service]\n{self.UNIT_KEY}={self.UNIT_VALUE}\n"
                ctx.file(path, text, f"{path} ({self.UNIT_KEY}={self.UNIT_VALUE})",
                         effect=RESTART)
                if not any(ctx.host.exists(f"{d}/{unit}") for d in UNIT_DIRS):
                    ctx.note(f"No {unit} is installed yet: the drop-in applies once it is.")
                ctx.manual(f"Run `systemctl daemon-reload && systemctl restart {unit}` for "
                           "the new limit to reach the running service.")
                return
        if not later:  # both names taken by drop-ins q3cn-doctor did not write
            ctx.manual(f"{' and '.join(names[name] for name in ours)} exist and were not "
                       f"written by q3cn-doctor: set {self.UNIT_KEY}={self.UNIT_VALUE} in one "
                       "of them by hand.")
            return
        other, number, value = later[0]
        ctx.manual(f"{other}:{number} sets {self.UNIT_KEY}={value} and is read after any "
                   f"drop-in q3cn-doctor could add: change it to {self.UNIT_VALUE} by hand.")

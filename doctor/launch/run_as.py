"""Who runs llama.cpp: never root unless asked.

llama-server listens on the network, often on every address (the guide's ``--host
0.0.0.0``); run as root, a bug in it, or a model file crafted to hit one, owns the
machine. This machine and CI run the doctor as root, so every llama.cpp process the
doctor starts (``launch``, the measured server, llama-bench) runs as the launching user:
``--user`` or the user behind sudo (``SUDO_USER``). The limits it needs are set while
still root; then the process drops its supplementary groups, its gid and its uid, and
only then execs (``become``; a child of ``subprocess`` gets the same through
``popen_kwargs``). A user who is not root runs it as themself. Running it as root takes
an explicit ``--allow-root``.

On the live machine the account comes from the system's user database (pwd: NSS users
too); on a snapshot or ``--root`` tree from that tree's /etc/passwd and /etc/group, and
nothing is switched (``launch_identity``).
"""

from __future__ import annotations

import os
import pwd

from msgspec import Struct
from q3cn_doctor.host.base import Host
from q3cn_doctor.records import plain

REFUSE_ROOT = ("refusing to run llama.cpp as root: llama-server serves on the network, and a "
               "bug in it would own the machine. Give --user NAME (an unprivileged account; "
               "under sudo the user behind it is the default), or --allow-root if you must.")


class RunAsError(Exception):
    """llama.cpp cannot be run as the user asked for (root refused, an unknown user...)."""


class RunAs(Struct, frozen=True):
    """The unprivileged user llama-server runs as, never root."""
    name: str | None
    uid: int | None
    gid: int | None
    groups: tuple[int, ...] = ()
    home: str | None = None
    switch: bool = False  # this process is root and must become the user in the child
    why: str = ""  # who, and why them (shown in the launch plan)

    @classmethod
    def from_json(cls, data: dict) -> RunAs:
        return cls(**{**data, "groups": tuple(data.get("groups") or ())})

    def to_json(self) -> dict:
        return plain(self)

    def popen_kwargs(self) -> dict:
        """subprocess.Popen's arguments that make its child this user (none if it is us)."""
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def become(self) -> None:
        """Drop to this user in this process: supplementary groups, then gid, then uid
        (after setuid no other change is allowed); root cannot be regained after it."""
        if not self.switch:
            return
        os.setgroups(list(self.groups))
        os.setgid(self.gid)
        os.setuid(self.uid)
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise OSError("root could be regained after dropping privileges")  # pragma: no cover

    def environ(self, base: dict[str, str]) -> dict[str, str]:
        """The child's environment: the user's own HOME, USER and LOGNAME, and no SUDO_*
        variables (they would name a user the child is not)."""
        if not self.switch:
            return dict(base)
        env = {k: v for k, v in base.items() if not k.startswith("SUDO_")}
        env.update(USER=self.name or "", LOGNAME=self.name or "")
        if self.home:
            env["HOME"] = self.home
        return env

    def can_read(self, path: str) -> bool:
        """Whether this user can reach and read ``path`` (every folder on the way, then
        the file): a model under /root cannot be read by the user llama.cpp runs as."""
        if not self.switch:
            return os.access(path, os.R_OK)
        try:
            real = os.path.realpath(path)
            folder = os.path.dirname(real)
            while True:
                if not self._allowed(os.stat(folder), 0o1):
                    return False
                if folder == "/":
                    break
                folder = os.path.dirname(folder)
            return self._allowed(os.stat(real), 0o4)
        except OSError:
            return False

    def _allowed(self, found: os.stat_result, bit: int) -> bool:
        if found.st_uid == self.uid:
            return bool(found.st_mode >> 6 & bit)
        if found.st_gid == self.gid or found.st_gid in self.groups:
            return bool(found.st_mode >> 3 & bit)
        return bool(found.st_mode & bit)


def run_as(user: str | None, allow_root: bool = False) -> RunAs:
    """The identity llama.cpp runs as on this machine. ``user``: --user, else the
    launching user."""
    euid = os.geteuid()
    try:
        entry = pwd.getpwnam(user) if user else pwd.getpwuid(euid)
    except KeyError as exc:
        raise RunAsError(f"there is no user {user!r} to run llama.cpp as (--user)") from exc
    if entry.pw_uid == 0 and not allow_root:
        raise RunAsError(REFUSE_ROOT)
    if euid != 0 and entry.pw_uid != euid:
        raise RunAsError(f"cannot run llama.cpp as {entry.pw_name}: only root can switch "
                         f"users; run the doctor as {entry.pw_name}, or with sudo")
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))))
    switch = euid == 0 and entry.pw_uid != 0
    why = (f"{entry.pw_name}: the plan is made for this user, and llama-server drops root's "
           "groups, gid and uid before it starts" if switch else
           "root, as --allow-root asks" if entry.pw_uid == 0 else "you")
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir,
                 switch=switch, why=why)


def launch_identity(host: Host, user: str | None, allow_root: bool) -> RunAs:
    """Who ``launch`` runs llama-server as. On this machine: ``run_as`` of --user (or
    SUDO_USER, which the options default to), where a SUDO_USER left in a shell that is
    not root is ignored. On a snapshot or --root tree: the recorded user, nothing switched."""
    euid = host.euid()
    sudo_user = host.environ().get("SUDO_USER")
    if euid is None or host.kind != "live":
        return RunAs(user or sudo_user, euid, None,
                     why=f"{user or sudo_user or 'the recorded user'} (another machine's plan: "
                         "nothing is switched)")
    if euid != 0 and user and user == sudo_user:
        user = None  # a sudo-spawned shell's leftover variable: run as whoever runs this
    return run_as(user, allow_root)

"""Who runs llama.cpp: never root unless asked.

llama-server listens on the network; run as root, a bug in it (or a model file crafted
to hit one) owns the machine. This machine and CI run the doctor as root, so every
llama.cpp process the doctor starts (the measured server, llama-bench) runs as the
launching user: ``--user`` or the user behind sudo. Root drops its groups, gid and uid
in the child before exec; a user who is not root runs it as themself. Running it as
root takes an explicit ``--allow-root``.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass


class RunAsError(Exception):
    """llama.cpp cannot be run as the user asked for (root refused, an unknown user...)."""


@dataclass(frozen=True)
class RunAs:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    switch: bool  # this process is root and must become the user in the child

    def popen_kwargs(self) -> dict:
        """subprocess.Popen's arguments that make its child this user (none if it is us)."""
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def environ(self, base: dict[str, str]) -> dict[str, str]:
        """The child's environment: the user's own HOME, USER and LOGNAME."""
        env = dict(base)
        if self.switch:
            env.update(HOME=self.home, USER=self.name, LOGNAME=self.name)
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
    """The identity llama.cpp runs as. ``user``: --user, else the launching user."""
    euid = os.geteuid()
    try:
        entry = pwd.getpwnam(user) if user else pwd.getpwuid(euid)
    except KeyError as exc:
        raise RunAsError(f"there is no user {user!r} to run llama.cpp as (--user)") from exc
    if entry.pw_uid == 0 and not allow_root:
        raise RunAsError(
            "refusing to run llama.cpp as root: llama-server serves on the network, and a "
            "bug in it would own the machine. Give --user NAME (an unprivileged account; "
            "under sudo the user behind it is the default), or --allow-root if you must.")
    if euid != 0 and entry.pw_uid != euid:
        raise RunAsError(f"cannot run llama.cpp as {entry.pw_name}: only root can switch "
                         f"users; run the doctor as {entry.pw_name}, or with sudo")
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))))
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir,
                 switch=euid == 0 and entry.pw_uid != 0)

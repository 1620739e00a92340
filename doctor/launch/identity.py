"""Who llama-server runs as: never root unless asked.

llama-server listens on the network, often on every address (the guide's ``--host
0.0.0.0``); run as root, a bug in it, or a model file crafted to hit one, owns the
machine. So ``sudo q3cn-doctor launch`` plans for, and execs llama-server as, the user
behind sudo (``SUDO_USER``) or ``--user NAME``: the limits it needs are set while still
root, then the process drops its supplementary groups, its gid and its uid, and only
then execs. Root itself is refused unless ``--allow-root``.

On the live machine the account comes from the system's user database (pwd, grp: NSS
users too); on a snapshot or ``--root`` tree from that tree's /etc/passwd and /etc/group.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from q3cn_doctor.host.base import Host


class IdentityError(Exception):
    """llama-server cannot run as the user asked for."""


@dataclass(frozen=True)
class Identity:
    name: str | None
    uid: int | None
    gid: int | None
    groups: tuple[int, ...] = field(default_factory=tuple)
    home: str | None = None
    switch: bool = False  # this process is root and becomes the user before exec
    why: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    def become(self) -> None:
        """Drop to this user: supplementary groups, then gid, then uid (after setuid no
        other change is allowed). Raises OSError; checks that root cannot be regained."""
        if not self.switch:
            return
        os.setgroups(list(self.groups))
        os.setgid(self.gid)
        os.setuid(self.uid)
        if os.getuid() == 0 or os.geteuid() == 0:  # pragma: no cover - setuid failed silently
            raise OSError("still root after setuid")
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise OSError("root could be regained after dropping privileges")  # pragma: no cover

    def can_read(self, path: str) -> bool:
        """Whether this user reaches and reads ``path`` (every folder on the way, then the
        file, by owner, group and other bits): a model under /root is out of reach."""
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
        if found.st_gid in (self.gid, *self.groups):
            return bool(found.st_mode >> 3 & bit)
        return bool(found.st_mode & bit)

    def environ(self, base: dict[str, str]) -> dict[str, str]:
        """The child's environment: the user's own HOME, USER and LOGNAME when switching,
        and no SUDO_* variables (they would name a user llama-server is not)."""
        if not self.switch:
            return dict(base)
        env = {k: v for k, v in base.items() if not k.startswith("SUDO_")}
        env.update(USER=self.name or "", LOGNAME=self.name or "")
        if self.home:
            env["HOME"] = self.home
        return env


def launch_identity(host: Host, user: str | None, allow_root: bool) -> Identity:
    """The identity llama-server runs as. ``user``: --user (or the config file's), else
    SUDO_USER, else whoever runs this."""
    euid = host.euid()
    sudo_user = host.environ().get("SUDO_USER")
    wanted = user or sudo_user
    if euid is None or host.kind != "live":
        return Identity(wanted, euid, None, why=f"{wanted or 'the recorded user'} (another "
                        "machine's plan: nothing is switched)")
    me = _account(host, uid=euid)
    if euid != 0:
        if wanted and wanted not in (me.get("name"), sudo_user):
            raise IdentityError(f"cannot run llama-server as {wanted}: only root can switch "
                                f"users; run the launch as {wanted}, or with sudo")
        return Identity(me.get("name"), euid, me.get("gid"), home=me.get("home"),
                        why="runs as you")
    target = _account(host, name=wanted) if wanted else me
    if wanted and not target:
        raise IdentityError(f"there is no user {wanted!r} to run llama-server as")
    if target.get("uid") == 0:
        if not allow_root:
            raise IdentityError(
                "refusing to run llama-server as root: it serves on the network, and a bug "
                "in it would own the machine. Run the launch with sudo from your own account "
                "(it then runs as you), give --user NAME (an unprivileged account), or "
                "--allow-root if you must.")
        return Identity(target.get("name"), 0, 0, why="root, as --allow-root asks")
    source = "--user" if user else "SUDO_USER"
    return Identity(target["name"], target["uid"], target["gid"],
                    tuple(_groups(host, target["name"], target["gid"])), target.get("home"),
                    switch=True,
                    why=f"{target['name']} ({source}): the plan is made for this user, and "
                        "llama-server drops root's groups, gid and uid before it starts")


def _account(host: Host, name: str | None = None, uid: int | None = None) -> dict:
    """name, uid, gid, home of an account: the live system's database, else the tree's
    /etc/passwd."""
    if host.kind == "live":
        import pwd

        try:
            entry = pwd.getpwnam(name) if name is not None else pwd.getpwuid(uid)
        except KeyError:
            return {}
        return {"name": entry.pw_name, "uid": entry.pw_uid, "gid": entry.pw_gid,
                "home": entry.pw_dir}
    for line in (host.cat("/etc/passwd") or "").splitlines():
        parts = line.split(":")
        if len(parts) >= 6 and parts[2].isdecimal() and parts[3].isdecimal() and (
                parts[0] == name or (name is None and int(parts[2]) == uid)):
            return {"name": parts[0], "uid": int(parts[2]), "gid": int(parts[3]),
                    "home": parts[5]}
    return {}


def _groups(host: Host, name: str, gid: int) -> list[int]:
    """The user's groups: the primary one and every group listing the user."""
    if host.kind == "live":
        return sorted(set(os.getgrouplist(name, gid)))
    groups = {gid}
    for line in (host.cat("/etc/group") or "").splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[2].isdecimal() and name in parts[3].split(","):
            groups.add(int(parts[2]))
    return sorted(groups)

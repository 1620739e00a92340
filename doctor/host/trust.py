"""Who controls a path, and so whose program root would be running.

Root runs programs (llama-server's ``--help``, dmidecode, nvidia-smi) and writes its
cache. A program anyone but root can replace is that person's code: run as root, it is
a privilege escalation. ``controllers`` names every user who can change what a path
leads to (the owners of the file, of each folder above it and of each link on the way);
``run_as`` turns that into whom to run a program as: root where only root controls it,
its one other controller otherwise (the user who could have changed it anyway), and
nobody where several users or everyone can.
"""

from __future__ import annotations

import os
import stat

MAX_LINKS = 40


def _writable_by_others(info: os.stat_result) -> bool:
    """A folder or file others can change; a sticky folder lets them add, not replace."""
    if stat.S_ISLNK(info.st_mode):
        return False  # a link's own mode means nothing
    sticky = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX
    if info.st_mode & stat.S_IWOTH and not sticky:
        return True
    return bool(info.st_mode & stat.S_IWGRP and info.st_gid != 0 and not sticky)


def controllers(path: str) -> set[int] | None:
    """The uids that can change what ``path`` names; None where a group or everyone can
    (or the path cannot be walked)."""
    owners: set[int] = set()
    pending = [part for part in os.path.abspath(path).split("/") if part]
    current, links = "/", 0
    try:
        info = os.lstat("/")
        while True:
            if _writable_by_others(info):
                return None
            owners.add(info.st_uid)
            if not pending:
                return owners
            part = pending.pop(0)
            if part in (".", ".."):
                current = os.path.dirname(current) if part == ".." else current
                info = os.lstat(current)
                continue
            candidate = os.path.join(current, part)
            info = os.lstat(candidate)
            if stat.S_ISLNK(info.st_mode):
                links += 1
                if links > MAX_LINKS:
                    return None
                target = os.readlink(candidate)
                current = "/" if target.startswith("/") else current
                pending = [p for p in target.split("/") if p] + pending
                owners.add(info.st_uid)
                info = os.lstat(current)
                continue
            current = candidate
    except OSError:
        return None


def run_as(path: str) -> tuple[int, int] | str | None:
    """Whom root runs the program at ``path`` as: None for root itself, ``(uid, gid)`` of
    the one other user who controls it, or why it is not run at all."""
    owners = controllers(path)
    if owners is None:
        return (f"{path} can be changed by a group or by every user (it or a folder above "
                "it is writable by them): q3cn-doctor does not run it as root")
    others = owners - {0}
    if not others:
        return None
    if len(others) > 1:
        return (f"{path} can be changed by several users (uids {sorted(others)}): "
                "q3cn-doctor does not run it as root")
    uid = others.pop()
    import pwd

    try:
        gid = pwd.getpwuid(uid).pw_gid
    except KeyError:
        gid = uid  # no passwd entry: the user-private group's number, by convention
    return uid, gid

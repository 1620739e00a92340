"""Which configuration file wins: sysctl.d (and the same drop-in rules elsewhere).

sysctl.d, as systemd-sysctl and procps ``sysctl --system`` read it:

- ``*.conf`` files in /etc/sysctl.d, /run/sysctl.d, /usr/local/lib/sysctl.d,
  /usr/lib/sysctl.d and /lib/sysctl.d; a file name in an earlier folder masks the
  same name in every later one (a link to /dev/null masks it away);
- the remaining files are read sorted by file name, whatever their folder, and a
  later assignment of a key wins over an earlier one;
- procps then reads /etc/sysctl.conf last, so a key set there beats every file.

q3cn-doctor never edits those files. To make a value persistent it picks a file
name of its own that sorts after every file setting the key differently, and
where no such name exists (a later file, or /etc/sysctl.conf) it reports the
conflict instead (persist.py plans that file, or the manual step, into a fix).
"""

from __future__ import annotations

import fnmatch
import os
from typing import Callable

from msgspec import Struct
from q3cn_doctor.host.base import Host

SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d",
               "/usr/lib/sysctl.d", "/lib/sysctl.d")
SYSCTL_CONF = "/etc/sysctl.conf"
OUR_DIR = SYSCTL_DIRS[0]
# Tried in turn: the first name that beats every conflicting file is used.
NAME_CANDIDATES = ("99-q3cn-doctor-{stem}.conf", "zz-q3cn-doctor-{stem}.conf")


class Assignment(Struct, frozen=True):
    """One ``key = value`` line of a sysctl configuration file."""

    key: str
    value: str
    path: str
    line: int

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def dropin_files(host: Host, dirs: tuple[str, ...], suffix: str = ".conf") -> list[str]:
    """The files that count, in reading order: earlier folders mask later ones by name,
    then everything is sorted by file name."""
    chosen: dict[str, str] = {}
    for directory in dirs:
        try:
            names = host.listdir(directory)
        except OSError:
            continue
        for name in names:
            if name.endswith(suffix) and name not in chosen:
                chosen[name] = f"{directory}/{name}"
    return [chosen[name] for name in sorted(chosen)]


def normalize_key(key: str) -> str:
    """``vm/swappiness`` and ``vm.swappiness`` name the same key."""
    return key.strip().lstrip("-").replace("/", ".")


def parse(text: str, path: str) -> list[Assignment]:
    found = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        found.append(Assignment(normalize_key(key), " ".join(value.split()), path, number))
    return found


def _masked_to_nothing(host: Host, path: str) -> bool:
    try:
        return host.readlink(path) == "/dev/null"
    except OSError:
        return False


def assignments(host: Host, key: str, extra: dict[str, str] | None = None,
                dirs: tuple[str, ...] = SYSCTL_DIRS,
                conf: str | None = SYSCTL_CONF) -> list[Assignment]:
    """Every assignment of ``key`` in the order they are applied at boot (the last wins).

    ``extra`` adds (or replaces) files, by path, with the given text: the plan's own file.
    """
    extra = extra or {}
    key = normalize_key(key)
    files = dropin_files(host, dirs)
    names = {os.path.basename(p): p for p in files}
    for path in extra:
        name = os.path.basename(path)
        names[name] = path  # our file sits in /etc/sysctl.d: it masks the same name elsewhere
    ordered = [names[name] for name in sorted(names)]
    if conf:
        ordered.append(conf)
    found = []
    for path in ordered:
        if path in extra:
            text: str | None = extra[path]
        elif _masked_to_nothing(host, path):
            continue
        else:
            text = host.cat(path)
        if text:
            found.extend(a for a in parse(text, path) if a.key == key)
    return found


def effective(host: Host, key: str, **kwargs) -> Assignment | None:
    """The assignment that wins at boot, or None where no file sets the key."""
    found = assignments(host, key, **kwargs)
    return found[-1] if found else None


class Persistence(Struct):
    """How a sysctl value is made to survive a reboot."""

    key: str
    value: str
    path: str | None = None  # our file to write, or None
    already: Assignment | None = None  # the files already give the value at boot
    conflict: Assignment | None = None  # a file we cannot beat sets another value
    masked: list[str] | None = None

    @property
    def ok(self) -> bool:
        return self.conflict is None


def file_text(key: str, value: str, header: str) -> str:
    return f"{header}{key} = {value}\n"


def plan_persistence(host: Host, key: str, value: str, stem: str, header: str,
                     owned: Callable[[str], bool]) -> Persistence:
    """Choose the file that makes ``key = value`` win at boot, or name the conflict.

    ``owned(path)`` says whether a file is ours (carries our header): our own files
    are rewritten freely; a name taken by anyone else is never used.
    """
    key = normalize_key(key)
    ours_now = [p for p in dropin_files(host, (OUR_DIR,))
                if "q3cn-doctor" in os.path.basename(p) and owned(p)]
    present = effective(host, key)
    if present is not None and present.value == value and present.path not in ours_now:
        return Persistence(key, value, already=present)
    taken = {os.path.basename(p) for p in dropin_files(host, SYSCTL_DIRS)}
    last_conflict = None
    for pattern in NAME_CANDIDATES:
        name = pattern.format(stem=stem)
        path = f"{OUR_DIR}/{name}"
        if name in taken and path not in ours_now:
            continue  # someone else's file, or one in another folder we would mask
        # Our other files for this key (an earlier run's name) are left out: the plan
        # writes one file per key.
        extra = {path: file_text(key, value, header)}
        for other in ours_now:
            if other != path:
                extra[other] = ""
        winner = assignments(host, key, extra=extra)
        if winner and winner[-1].path == path:
            return Persistence(key, value, path=path)
        last_conflict = winner[-1] if winner else None
    return Persistence(key, value, conflict=last_conflict)


# -- tmpfiles.d: how a sysfs value is set at every boot ----------------------------------
TMPFILES_DIRS = ("/etc/tmpfiles.d", "/run/tmpfiles.d", "/usr/local/lib/tmpfiles.d",
                 "/usr/lib/tmpfiles.d", "/lib/tmpfiles.d")


def tmpfiles_line(path: str, value: str) -> str:
    """A tmpfiles.d line that writes ``value`` into ``path`` at boot (type ``w``)."""
    return f"w {path} - - - - {value}\n"


def tmpfiles_writes(host: Host, path: str, skip: tuple[str, ...] = ()) -> list[Assignment]:
    """Every tmpfiles.d ``w`` line that writes into ``path`` (globs in the line's path
    included), in the files that count; ``skip`` leaves our own files out."""
    found = []
    for file in dropin_files(host, TMPFILES_DIRS):
        if file in skip or _masked_to_nothing(host, file):
            continue
        for number, raw in enumerate((host.cat(file) or "").splitlines(), 1):
            fields = raw.split(None, 6)
            if len(fields) < 2 or fields[0].startswith("#"):
                continue
            kind = fields[0].rstrip("!-=~^")
            if kind not in ("w", "w+"):
                continue
            if fields[1] == path or fnmatch.fnmatchcase(path, fields[1]):
                value = fields[6].strip() if len(fields) > 6 else ""
                found.append(Assignment(path, value, file, number))
    return found


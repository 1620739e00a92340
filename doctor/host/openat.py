"""Writes that cannot be led out of their tree, and cannot be torn.

Every write of the fix engine, the hooks and the doctor's own cache opens its folder one
component at a time relative to the parent's file descriptor (``openat`` with
``O_NOFOLLOW``): a folder swapped for a symbolic link between a check and the write is
refused (ELOOP or ENOTDIR), never followed out of ``--root`` or into another user's
files. A file is replaced through a temporary in the same folder (created with
``O_EXCL|O_NOFOLLOW``, named ``.q3cn-doctor.<pid>.<random>``) renamed over it, so a kill
at any step leaves the old file or the new one, and at most a temporary that the next
run removes (``remove_temporaries``).

``syscall(op, path)`` is called before each system call: tests kill a step there, or
swap a folder for a link, to prove both claims at every step.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator
from typing import Callable

Syscall = Callable[[str, str], None]

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
TEMP_PREFIX = ".q3cn-doctor."
# Our temporaries: ``.q3cn-doctor.<pid>.<hex>``, and mkstemp's ``.q3cn-doctor.<8 chars>``
# from versions before the pid was part of the name.
_TEMP_NAME = re.compile(r"\.q3cn-doctor\.(?:(\d{1,10})\.[0-9a-f]{12}|[A-Za-z0-9_]{8})\Z")


def _none(op: str, path: str) -> None:
    return None


def split(anchor: str, real: str) -> tuple[list[str], str]:
    """The folders between ``anchor`` and ``real`` (already resolved inside it) and the
    last name: ``("/tree", "/tree/etc/sysctl.d/x.conf")`` -> ``(["etc", "sysctl.d"], "x.conf")``."""
    relative = os.path.relpath(real, anchor)
    parts = [] if relative == "." else relative.split("/")
    if not parts or any(part in ("", ".", "..") for part in parts):
        raise OSError(errno.EINVAL, "not a path inside the tree", real)
    return parts[:-1], parts[-1]


@contextlib.contextmanager
def folder(anchor: str, parts: list[str], path: str, syscall: Syscall = _none,
           create_mode: int | None = None, owner: tuple[int, int] | None = None
           ) -> Iterator[int]:
    """A descriptor of ``anchor/parts...``, each step opened with O_NOFOLLOW relative to
    the one before; a missing folder is made with ``create_mode`` (else FileNotFoundError)."""
    syscall("open", anchor)
    fd = os.open(anchor, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            try:
                syscall("open", path)
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if create_mode is None:
                    raise
                make_folder(fd, part, create_mode, owner, path, syscall)
                syscall("open", path)
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _refused(exc, path) from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _refused(exc: OSError, path: str) -> OSError:
    """ELOOP and ENOTDIR on a folder step: a link or a file where a folder should be."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return OSError(exc.errno, "a symbolic link or a file is where a folder should be; "
                                  "q3cn-doctor does not write through links", path)
    return exc


def _chown_then_chmod(fd: int, mode: int, owner: tuple[int, int] | None,
                      path: str, syscall: Syscall) -> None:
    """Owner first: chown clears the setuid and setgid bits, so the mode comes after it."""
    if owner is not None and (os.geteuid() == 0 or owner[0] == os.geteuid()):
        syscall("fchown", path)
        os.fchown(fd, *owner)
    syscall("fchmod", path)
    os.fchmod(fd, mode)


def _root_owner() -> tuple[int, int] | None:
    return (0, 0) if os.geteuid() == 0 else None


def make_folder(parent: int, name: str, mode: int, owner: tuple[int, int] | None,
                path: str, syscall: Syscall = _none) -> None:
    """One folder, its mode exactly (not narrowed by the umask), root's where we are root."""
    syscall("mkdir", path)
    os.mkdir(name, 0o700, dir_fd=parent)
    syscall("open", path)
    fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    try:
        _chown_then_chmod(fd, mode, owner or _root_owner(), path, syscall)
    finally:
        os.close(fd)
    fsync_folder(parent, path, syscall)


def fsync_folder(fd: int, path: str, syscall: Syscall = _none) -> None:
    """Make a rename, create or unlink in the folder durable."""
    syscall("fsync", path)
    with contextlib.suppress(OSError):  # some filesystems cannot fsync a folder
        os.fsync(fd)


def kind_of(parent: int, name: str) -> str | None:
    """What is at ``name``, the link itself where it is one; None where nothing is."""
    try:
        info = os.lstat(name, dir_fd=parent)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return "link"
    return "dir" if stat.S_ISDIR(info.st_mode) else (
        "file" if stat.S_ISREG(info.st_mode) else "other")


def replace_file(parent: int, name: str, data: bytes, mode: int, path: str,
                 owner: tuple[int, int] | None = None, syscall: Syscall = _none) -> None:
    """Replace ``name`` atomically: a temporary beside it, written, owned, fsynced and
    renamed over it. A link or a folder at ``name`` is refused, never followed."""
    found = kind_of(parent, name)
    if found == "link":
        raise OSError(errno.ELOOP, "a symbolic link is in the way; q3cn-doctor does not "
                                   "write through links", path)
    if found not in (None, "file"):
        raise OSError(errno.EISDIR if found == "dir" else errno.EINVAL,
                      f"a {found} is in the way", path)
    temp = f"{TEMP_PREFIX}{os.getpid()}.{os.urandom(6).hex()}"
    syscall("open", path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=parent)
    try:
        try:
            view = memoryview(data)
            while view:
                syscall("write", path)
                view = view[os.write(fd, view):]
            _chown_then_chmod(fd, mode, owner or _root_owner(), path, syscall)
            syscall("fsync", path)
            os.fsync(fd)
        finally:
            os.close(fd)
        syscall("rename", path)
        os.replace(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        syscall("unlink", path)
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=parent)
        raise
    fsync_folder(parent, path, syscall)


def read_regular(parent: int, name: str, path: str, limit: int,
                 syscall: Syscall = _none) -> tuple[bytes, os.stat_result]:
    """A regular file's bytes (at most ``limit``) and its stat: never a link, never a FIFO
    or device (opened non-blocking, refused unless regular)."""
    syscall("open", path)
    fd = os.open(name, READ_FLAGS, dir_fd=parent)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        chunks, size = [], 0
        while size <= limit:
            syscall("read", path)
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
        return b"".join(chunks), info
    finally:
        os.close(fd)


def rewrite(parent: int, name: str, path: str, change: Callable[[bytes], bytes],
            syscall: Syscall = _none) -> None:
    """Read a file and replace it with ``change(bytes)``, keeping its mode and owner.
    A tree's stand-in for a kernel file: atomic as a kernel's write is, never torn."""
    old, info = read_regular(parent, name, path, 16 * 1024 * 1024, syscall)
    replace_file(parent, name, change(old), stat.S_IMODE(info.st_mode), path,
                 (info.st_uid, info.st_gid), syscall)


def store_value(parent: int, name: str, data: bytes, path: str,
                syscall: Syscall = _none) -> None:
    """``echo value > file`` for a kernel file: opened for writing only (no create, no
    truncate, no link followed), one write, so the kernel's refusal comes back."""
    syscall("open", path)
    fd = os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                 dir_fd=parent)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        syscall("write", path)
        written = os.write(fd, data)  # one write: the kernel parses the whole value
        if written != len(data):
            raise OSError(errno.EIO, f"the kernel took {written} of {len(data)} bytes", path)
    finally:
        os.close(fd)


def remove_file(parent: int, name: str, path: str, syscall: Syscall = _none) -> None:
    """Unlink ``name`` (a link itself, never what it points to)."""
    syscall("unlink", path)
    os.unlink(name, dir_fd=parent)
    fsync_folder(parent, path, syscall)


def remove_folder(parent: int, name: str, path: str, syscall: Syscall = _none) -> None:
    syscall("rmdir", path)
    os.rmdir(name, dir_fd=parent)
    fsync_folder(parent, path, syscall)


def open_lock(parent: int, name: str, path: str, syscall: Syscall = _none) -> int:
    syscall("open", path)
    return os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                   dir_fd=parent)


def _running(pid: int) -> bool:
    """Whether another process with this pid runs. Our own pid's temporaries are stale
    too: this process removes them only between writes, never during one."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, as another user's process
    return True


def remove_temporaries(fd: int, path: str, syscall: Syscall = _none) -> list[str]:
    """Our temporaries left in a folder by a run that was killed (its pid no longer
    runs), regular files of this process's user only: the names removed."""
    removed = []
    for name in sorted(os.listdir(fd)):
        match = _TEMP_NAME.match(name)
        if not match or (match.group(1) and _running(int(match.group(1)))):
            continue
        try:
            info = os.lstat(name, dir_fd=fd)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            continue
        syscall("unlink", f"{path}/{name}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=fd)
            removed.append(name)
    if removed:
        fsync_folder(fd, path, syscall)
    return removed


def private_folder(base: str, name: str, uid: int) -> int | None:
    """A descriptor of ``base/name``, made 0700 if missing, where only ``uid`` can change
    it: ``base`` owned by ``uid`` or root, ``name`` a real folder owned by ``uid`` and
    writable by nobody else. None otherwise (a folder another user controls)."""
    try:
        top = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.fstat(top).st_uid not in (uid, 0):
            return None
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=top)
        fd = os.open(name, DIR_FLAGS, dir_fd=top)
    except OSError:
        return None
    finally:
        os.close(top)
    info = os.fstat(fd)
    if info.st_uid != uid or info.st_mode & 0o022:
        os.close(fd)
        return None
    return fd

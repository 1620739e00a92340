"""The live machine, and the live-like tree under ``--root PREFIX``."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import Any

from q3cn_doctor.host import openat
from q3cn_doctor.host.base import (
    ABSENT,
    BUDGET_SPENT,
    COMMAND_TIMEOUT_S,
    NOT_INSTALLED,
    PERMISSION_DENIED,
    RLIMIT_NAMES,
    TIMED_OUT,
    UNLIMITED,
    CommandResult,
    Host,
    PathInfo,
    Process,
    cpu_list_or_none,
    format_cpu_list,
    read_regular,
    resolve_under,
)

PROCESS_FILE_LIMIT = 8 * 1024**2
"""A process's status or command line (ARG_MAX is 2 MiB by default, a quarter of the
stack limit at most)."""

# Commands print for people; pin the locale so their output parses the same everywhere.
_COMMAND_ENV = {"LC_ALL": "C", "LANG": "C"}


class LiveHost(Host):
    """This machine, read as it is."""

    kind = "live"

    def __init__(self) -> None:
        super().__init__()
        # Commands ``start`` began: argv -> (their thread, where it leaves the result).
        self._started: dict[tuple[str, ...], tuple[Any, dict[str, CommandResult]]] = {}

    def describe(self) -> str:
        return "this machine"

    def cache_dir(self) -> str | None:
        """This user's cache folder (XDG_CACHE_HOME, else ~/.cache), for what the doctor
        derives from files that rarely change (a llama-server's --help); only where no
        other user controls the folder (trust.controllers). Root falls back on its own
        home's: ``sudo -E`` keeps the user's HOME, a folder that user controls."""
        from q3cn_doctor.host import trust

        euid = os.geteuid()
        bases = [os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                   ".cache")]
        if euid == 0:
            bases.append(os.path.join(_home_of(0) or "/root", ".cache"))
        for base in bases:
            if not base.startswith("/"):
                continue
            existing = base
            while not os.path.lexists(existing):  # made when first stored
                existing = os.path.dirname(existing)
            owners = trust.controllers(existing)
            if owners is not None and owners <= {0, euid}:
                return os.path.join(base, "q3cn-doctor")
        return None

    def writer_uid(self) -> int | None:
        return os.geteuid()

    def _path(self, path: str) -> str:
        return path

    def _read_bytes(self, path: str) -> bytes:
        return read_regular(self._path(path), path)

    def _listdir(self, path: str) -> list[str]:
        return os.listdir(self._path(path))

    def _readlink(self, path: str) -> str:
        return os.readlink(self._path(path))

    def _real_path(self, path: str) -> str:
        return self._path(path)

    def _exists(self, path: str) -> bool:
        return os.path.lexists(self._path(path))

    def _is_dir(self, path: str) -> bool:
        return os.path.isdir(self._path(path))

    def start(self, argvs: list[list[str]]) -> None:
        import threading

        for argv in map(tuple, argvs):
            if argv in self._runs or argv in self._started or " ".join(argv) in self.faults:
                continue
            holder: dict[str, CommandResult] = {}

            def one(argv: tuple[str, ...] = argv, holder: dict = holder) -> None:
                holder["result"] = self._execute(argv, COMMAND_TIMEOUT_S)

            thread = threading.Thread(target=one, daemon=True)
            thread.start()
            self._started[argv] = (thread, holder)

    def _run(self, argv: tuple[str, ...], timeout: float) -> CommandResult:
        thread, holder = self._started.pop(argv, (None, {}))
        if thread is None:
            return self._execute(argv, timeout)
        thread.join(timeout)  # what is left of its time limit and the run's budget
        return holder.get("result") or CommandResult(argv, TIMED_OUT)

    def _execute(self, argv: tuple[str, ...], timeout: float) -> CommandResult:
        from q3cn_doctor.host.process import run_command

        env = dict(os.environ, **_COMMAND_ENV)
        if on_path(argv[0], env.get("PATH", os.defpath), executable=False) is None:
            return CommandResult(argv, NOT_INSTALLED)
        identity = _identity(argv[0], env) if os.geteuid() == 0 else {}
        if isinstance(identity, CommandResult):
            return CommandResult(argv, identity.state, stderr=identity.stderr)
        return run_command(argv, timeout, env, **identity)

    def _run_together(self, argvs: list[tuple[str, ...]],
                      timeout: float) -> dict[tuple[str, ...], CommandResult]:
        """Each command from its own thread: the threads only wait on their child (the
        GIL is released), so the commands run side by side."""
        import threading

        results: dict[tuple[str, ...], CommandResult] = {}

        def one(argv: tuple[str, ...]) -> None:
            results[argv] = self._run(argv, timeout)

        threads = [threading.Thread(target=one, args=(argv,), daemon=True) for argv in argvs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    def nvml(self) -> dict:
        from q3cn_doctor.host.nvml import (  # pynvml costs ~50 ms: only when a GPU check asks
            NVML_TIMEOUT_S,
            conform,
            read_nvml,
        )

        return conform(self._within_budget(
            lambda left: read_nvml(min(NVML_TIMEOUT_S, left)),
            {"init": "timed-out", "reason": BUDGET_SPENT}))

    def environ(self) -> dict[str, str]:
        return dict(os.environ)

    def euid(self) -> int | None:
        return os.geteuid()

    def rlimits(self) -> dict[str, tuple[int, int]]:
        import resource

        limits = {}
        for name in RLIMIT_NAMES:
            number = getattr(resource, "RLIMIT_" + name, None)
            if number is None:
                continue
            soft, hard = resource.getrlimit(number)
            limits[name] = tuple(
                UNLIMITED if value == resource.RLIM_INFINITY else value for value in (soft, hard)
            )
        return limits

    def capabilities(self) -> int | None:
        status = self._cat_quiet("/proc/self/status") or ""
        for line in status.splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
        return None

    def _list_processes(self) -> list[Process]:
        return read_processes(self._cat_quiet, self._listdir_quiet)

    # Process listing reads hundreds of /proc files: they are summarised into one
    # list (and snapshot.json), cached as a whole, not traced or recorded one by one.
    def _cat_quiet(self, path: str) -> str | None:
        try:
            return read_regular(self._path(path), path, PROCESS_FILE_LIMIT).decode(
                "utf-8", errors="replace")
        except OSError:
            return None

    def _listdir_quiet(self, path: str) -> list[str]:
        try:
            return os.listdir(self._path(path))
        except OSError:
            return []

    # -- writing (the fix engine) ------------------------------------------------
    # Every write opens its folder step by step from the anchor (``/``, or the tree under
    # --root), relative to each parent's descriptor and with O_NOFOLLOW (openat.py): a
    # folder swapped for a link after the path was resolved is refused, never followed.
    anchor = "/"

    def _target(self, path: str) -> str:
        """The real path of ``path`` itself: links in the folders above it are followed
        (inside the anchor), a link at the last component is not."""
        return resolve_under(self.anchor, path, follow_last=False)

    @contextlib.contextmanager
    def _parent(self, path: str, create: bool = False):
        """The descriptor of the folder holding ``path`` and the name in it; missing
        folders made 0755 where ``create``."""
        folders, name = openat.split(self.anchor, self._target(path))
        with openat.folder(self.anchor, folders, path, self._syscall,
                           0o755 if create else None) as fd:
            yield fd, name

    @contextlib.contextmanager
    def _folder(self, path: str):
        """The descriptor of the folder ``path`` itself."""
        folders, name = openat.split(self.anchor, self._target(path))
        with openat.folder(self.anchor, folders + [name], path, self._syscall) as fd:
            yield fd

    def _lstat(self, path: str) -> PathInfo | None:
        try:
            info = os.lstat(self._target(path))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(info.st_mode):
            kind = "link"
        elif stat.S_ISDIR(info.st_mode):
            kind = "dir"
        elif stat.S_ISREG(info.st_mode):
            kind = "file"
        else:
            kind = "other"
        return PathInfo(kind, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid,
                        info.st_size)

    def _write_bytes(self, path: str, data: bytes, mode: int,
                     owner: tuple[int, int] | None) -> None:
        with self._parent(path, create=True) as (fd, name):
            openat.replace_file(fd, name, data, mode, path, owner, self._syscall)

    def _write_kernel_value(self, path: str, data: bytes) -> None:
        with self._parent(path) as (fd, name):
            openat.store_value(fd, name, data, path, self._syscall)

    def _remove(self, path: str) -> None:
        with self._parent(path) as (fd, name):
            openat.remove_file(fd, name, path, self._syscall)

    def _make_dir(self, path: str, mode: int) -> None:
        with self._parent(path) as (fd, name):
            openat.make_folder(fd, name, mode, None, path, self._syscall)

    def _remove_dir(self, path: str) -> None:
        with self._parent(path) as (fd, name):
            openat.remove_folder(fd, name, path, self._syscall)

    def _remove_temporaries(self, folder: str) -> list[str]:
        try:
            with self._folder(folder) as fd:
                return openat.remove_temporaries(fd, folder, self._syscall)
        except (FileNotFoundError, NotADirectoryError):
            return []

    @contextlib.contextmanager
    def _locked(self, path: str):
        import fcntl

        with self._parent(path) as (parent, name):
            fd = openat.open_lock(parent, name, path, self._syscall)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OSError(errno.EBUSY, "another q3cn-doctor holds it", path) from None
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _set_module_loaded(self, name: str, loaded: bool) -> None:
        argv = ["modprobe", name] if loaded else ["modprobe", "-r", name]
        result = self.run(argv)
        if not result.ok:
            raise OSError(errno.EIO, result.reason(), f"/sys/module/{name}")

    def _set_affinity(self, pid: int, tid: int, cpus: list[int]) -> None:
        if not os.path.isdir(f"/proc/{pid}/task/{tid}"):
            raise ProcessLookupError(errno.ESRCH, f"thread {tid} of process {pid} is gone")
        self._syscall("sched_setaffinity", f"/proc/{pid}/task/{tid}")
        os.sched_setaffinity(tid, cpus)


def _identity(program: str, env: dict[str, str]) -> dict | CommandResult:
    """As root, whom to run ``program`` as (subprocess's user, group, extra_groups): root
    only where only root can change it; else its one other controller, or not at all
    (trust.run_as). The program is found on PATH here, so what was judged is what runs."""
    from q3cn_doctor.host import trust

    path = on_path(program, env.get("PATH"))
    if path is None:
        return CommandResult((program,), NOT_INSTALLED)
    decision = trust.run_as(os.path.abspath(path))
    if isinstance(decision, str):
        return CommandResult((program,), PERMISSION_DENIED, stderr=decision)
    if decision is None:
        return {"executable": path}
    uid, gid = decision
    return {"executable": path, "user": uid, "group": gid, "extra_groups": []}


def on_path(program: str, search: str | None, executable: bool = True) -> str | None:
    """The file exec would run for ``program``: the path as given, else the first file of
    that name in ``search`` (PATH's form; None: this process's PATH) that may be executed,
    as ``shutil.which`` finds it; with ``executable`` False, the first that exists (exec
    then says what is wrong as its own error). A few stat calls: forking only to hear
    ENOENT from every PATH entry costs milliseconds a missing tool, and shutil's import
    (bz2, lzma, zlib) about 10 ms of a preflight that runs before every launch."""
    if "/" in program:
        return program if os.path.exists(program) else None
    if search is None:
        search = os.environ.get("PATH", os.defpath)
    for folder in search.split(os.pathsep) if search else ():
        candidate = os.path.join(folder, program)
        if os.path.isfile(candidate) and (not executable or os.access(candidate, os.X_OK)):
            return candidate
    return None


def _home_of(uid: int) -> str | None:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_dir
    except KeyError:
        return None


def kernel_store(old: bytes, data: bytes, path: str) -> bytes:
    """What a kernel file reads as after ``data`` is written to it (for --root trees).

    A choice file (``always [madvise] never``) moves its brackets to the chosen word
    and refuses a word it does not offer (EINVAL); any other file reads back the value.
    """
    value = data.decode("utf-8", "replace").strip()
    text = old.decode("utf-8", "replace")
    words = text.split()
    if any(word.startswith("[") and word.endswith("]") for word in words):
        choices = [word.strip("[]") for word in words]
        if value not in choices:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
        rebuilt = " ".join(f"[{c}]" if c == value else c for c in choices)
        return (rebuilt + "\n").encode()
    return (value + "\n").encode()


def _with_affinity(status: bytes, cpus: list[int]) -> bytes:
    """A /proc status text with Cpus_allowed and Cpus_allowed_list set to ``cpus``."""
    lines = status.decode("utf-8", "replace").split("\n")
    for number, line in enumerate(lines):
        name, sep, value = line.partition(":")
        if not sep:
            continue
        if name == "Cpus_allowed_list":
            lines[number] = f"{name}:\t{format_cpu_list(cpus)}"
        elif name == "Cpus_allowed":
            groups = value.strip().split(",")
            mask = sum(1 << cpu for cpu in cpus)
            out = []
            for group in reversed(groups):  # the last group holds CPUs 0-31
                out.append(f"{mask & 0xFFFFFFFF:0{len(group)}x}")
                mask >>= 32
            lines[number] = f"{name}:\t" + ",".join(reversed(out))
    return "\n".join(lines).encode()


class RootHost(LiveHost):
    """A live-like host whose every path lies under PREFIX (laid out like a snapshot's fs/).

    It runs no commands and reads no NVML: what it knows is the tree. The process
    identity (euid, limits) is this process's own, so fixes can be applied into a
    temporary tree by tests that must never touch the real machine; ``euid`` overrides
    the identity the fix engine sees (a test of the not-root path, or an image builder).

    Writes stay in the tree. The tree's /proc/sys and /sys files are plain files, so a
    kernel value written there is stored as the kernel would show it (``kernel_store``),
    and re-pinning a thread rewrites its ``Cpus_allowed_list`` in the tree's /proc.
    """

    kind = "root"

    def __init__(self, prefix: str, euid: int | None = None) -> None:
        super().__init__()
        self.prefix = os.path.abspath(prefix)
        self.anchor = self.prefix
        self._euid = euid

    def describe(self) -> str:
        return f"root {self.prefix}"

    def cache_dir(self) -> str | None:
        return None  # the tree is not this machine: its files are read every time

    def _path(self, path: str) -> str:
        return resolve_under(self.prefix, path)

    def euid(self) -> int | None:
        return os.geteuid() if self._euid is None else self._euid

    def _write_kernel_value(self, path: str, data: bytes) -> None:
        with self._parent(path) as (fd, name):
            openat.rewrite(fd, name, path, lambda old: kernel_store(old, data, path),
                           self._syscall)

    def _set_affinity(self, pid: int, tid: int, cpus: list[int]) -> None:
        paths = [f"/proc/{pid}/task/{tid}/status"] + ([f"/proc/{pid}/status"] if tid == pid
                                                        else [])
        if not os.path.isfile(self._target(paths[0])):
            raise ProcessLookupError(errno.ESRCH, f"thread {tid} of process {pid} is gone")
        for path in paths:
            if os.path.isfile(self._target(path)):
                with self._parent(path) as (fd, name):
                    openat.rewrite(fd, name, path, lambda old: _with_affinity(old, cpus),
                                   self._syscall)

    def _set_module_loaded(self, name: str, loaded: bool) -> None:
        """The tree shows what the kernel would: /sys/module/NAME/initstate "live" while a
        loadable module is loaded, no folder once it is unloaded. Nothing is loaded here."""
        folder = f"/sys/module/{name}"
        state = f"{folder}/initstate"
        if loaded:
            if not self._is_dir("/sys/module"):
                raise OSError(errno.ENOENT, "the tree has no /sys/module", "/sys/module")
            if not self._is_dir(folder):
                self._make_dir(folder, 0o755)
            self._write_bytes(state, b"live\n", 0o444, None)
        elif self._exists(state):
            self._remove(state)
            if not self._listdir(folder):
                self._remove_dir(folder)

    def _readlink(self, path: str) -> str:
        return os.readlink(resolve_under(self.prefix, path, follow_last=False))

    def _exists(self, path: str) -> bool:
        return os.path.lexists(resolve_under(self.prefix, path, follow_last=False))

    def _run(self, argv: tuple[str, ...], timeout: float) -> CommandResult:
        return CommandResult(argv, ABSENT, stderr="--root runs no commands")

    def start(self, argvs: list[list[str]]) -> None:
        pass  # a --root tree runs no commands, in the background or otherwise

    def nvml(self) -> dict:
        return {"init": "absent", "reason": "--root reads no NVML"}


def read_processes(cat, listdir) -> list[Process]:
    """Processes from a /proc tree, read through the given file functions."""
    processes = []
    for entry in listdir("/proc"):
        if not entry.isdecimal():
            continue
        status = cat(f"/proc/{entry}/status")
        if status is None:
            continue  # it exited while we looked
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        cmdline = (cat(f"/proc/{entry}/cmdline") or "").split("\0")
        threads = fields.get("Threads", "").strip()
        uid = fields.get("Uid", "").split()
        processes.append(
            Process(
                pid=int(entry),
                name=fields.get("Name", "").strip(),
                cmdline=[arg for arg in cmdline if arg],
                affinity=cpu_list_or_none(fields.get("Cpus_allowed_list")),
                threads=int(threads) if threads.isdecimal() else None,
                uid=int(uid[1]) if len(uid) > 1 and uid[1].isdecimal() else None,
            )
        )
    return processes


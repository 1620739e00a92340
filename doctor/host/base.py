"""The one door to the machine.

Checks, facts and fixes never call open() or subprocess themselves: they ask a
Host. There are three: the live machine, a live-like tree under ``--root``
(tests, chroots, image builders) and a read-only snapshot directory. That is
how the same check runs on a user's machine, on a snapshot they sent us, and
on the real machines in tests/fixtures.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import mmap
import os
import re
import stat as stat_module
import time
from collections.abc import Iterator
from typing import Any, Callable

from msgspec import Struct, field
from q3cn_doctor.host import openat

COMMAND_TIMEOUT_S = 10.0
"""Every command gets a time limit: a hung nvidia-smi must not hang a preflight."""
RUN_BUDGET_S = 60.0
"""And all the commands of a run (the NVML reading too) share one: with every tool hung,
``check`` still ends in about this, not in ten seconds a tool. It leaves room for what is
slow on its own: an uncached ``--help`` and ``--version`` of a CUDA build initialise
every GPU first (facts/server.py allows 30 s each)."""
BUDGET_SPENT = "the run's time for commands is spent"

OUTPUT_CAP = 8 * 1024**2
"""What is kept of a command's stdout, and of its stderr: dmidecode of a large server is
about 1 MiB. A command printing more is stopped (its process group killed)."""

# Command outcomes other than "it ran": the snapshot's .rc files hold these words.
RAN = "ran"
NOT_INSTALLED = "not-installed"
TIMED_OUT = "timed-out"
PERMISSION_DENIED = "permission-denied"
TOO_MUCH_OUTPUT = "too-much-output"  # stopped at OUTPUT_CAP
ABSENT = "absent"  # this host has no answer: --root runs nothing, a snapshot lacks it
COMMAND_STATES = (NOT_INSTALLED, TIMED_OUT, PERMISSION_DENIED, TOO_MUCH_OUTPUT)

# Where a test injects a failure into a command, the errno says which outcome.
_ERRNO_TO_STATE = {
    errno.ENOENT: NOT_INSTALLED,
    errno.ETIMEDOUT: TIMED_OUT,
    errno.EACCES: PERMISSION_DENIED,
    errno.EPERM: PERMISSION_DENIED,
}

RLIMIT_NAMES = ("MEMLOCK", "RTPRIO", "NOFILE")
UNLIMITED = -1
CAP_SYS_NICE = 23  # capabilities() bit: raise priority, real-time scheduling

# Variables llama.cpp, ggml and the CUDA runtime read: the only environment a
# snapshot keeps values of unless --no-redact is given.
ENV_ALLOW = (
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CUDA_MODULE_LOADING", "CUDA_LAUNCH_BLOCKING",
    "GGML_CUDA_ENABLE_UNIFIED_MEMORY", "GGML_CUDA_GRAPH_OPT", "GGML_CUDA_NO_PINNED",
    "GGML_CUDA_FORCE_MMQ", "GGML_CUDA_FORCE_CUBLAS", "GGML_SCHED_MAX_COPIES",
    "LLAMA_ARG_HOST", "LLAMA_ARG_PORT", "LLAMA_ARG_MODEL", "LLAMA_ARG_CTX_SIZE",
    "LLAMA_ARG_N_GPU_LAYERS", "LLAMA_ARG_THREADS", "LLAMA_SET_ROWS", "LLAMA_CACHE",
    "OMP_NUM_THREADS", "OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY",
    "LD_LIBRARY_PATH", "PATH", "SUDO_USER", "SUDO_UID", "USER", "LANG", "NO_COLOR",
    "XDG_CONFIG_HOME", "XDG_STATE_HOME",
)


class CommandResult(Struct, frozen=True):
    """What a command gave: its output and exit status, or why it did not run."""

    argv: tuple[str, ...]
    state: str  # RAN, NOT_INSTALLED, TIMED_OUT, PERMISSION_DENIED, TOO_MUCH_OUTPUT or ABSENT
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.state == RAN and self.returncode == 0

    @property
    def command_line(self) -> str:
        return " ".join(self.argv)

    def reason(self) -> str:
        """One line saying why this command gave nothing useful."""
        if self.state == RAN:
            detail = (self.stderr or self.stdout).strip().splitlines()
            tail = f": {detail[-1]}" if detail else ""
            return f"`{self.command_line}` exited {self.returncode}{tail}"
        return {
            NOT_INSTALLED: f"`{self.argv[0]}` is not installed",
            TIMED_OUT: f"`{self.command_line}` did not answer in time",
            PERMISSION_DENIED: f"`{self.command_line}` was refused permission"
                               + (f": {self.stderr.strip()}" if self.stderr.strip() else ""),
            TOO_MUCH_OUTPUT: f"`{self.command_line}` printed more than "
                             f"{OUTPUT_CAP // 2**20} MiB and was stopped",
        }.get(self.state, f"`{self.command_line}` has no recorded result on this host")


class FileStat(Struct, frozen=True):
    """What checks need of a file's stat: size, mode, owner and modification time."""
    size: int
    mode: int
    uid: int
    mtime_ns: int


class Process(Struct, frozen=True):
    """A running process as the checks need it (llama-server's affinity and threads)."""

    pid: int
    name: str
    cmdline: list[str] = field(default_factory=list)
    affinity: list[int] | None = None
    threads: int | None = None
    uid: int | None = None


def command_slug(argv: list[str] | tuple[str, ...]) -> str:
    """The snapshot file name of a command: ``dmidecode -t memory`` -> ``dmidecode_-t_memory``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", " ".join(argv))


MAX_CPU_ID = 65535
"""The kernel's NR_CPUS tops out at 8192: a larger id is garbage, not a CPU."""


def parse_cpu_list(text: str) -> list[int]:
    """Expand the kernel's CPU list format (``0-3,8,10-11``) into ids.

    Trailing NUL bytes (some sysfs files end in one) are ignored; anything else that is
    not a CPU list, ids beyond MAX_CPU_ID included, raises ValueError.
    """
    cpus: list[int] = []
    for part in text.replace("\x00", "").strip().split(","):
        part = part.strip()
        if not part:
            continue
        low, dash, high = part.partition("-")
        first, last = int(low), int(high) if dash else int(low)
        if last > MAX_CPU_ID:
            raise ValueError(f"CPU id {last} is beyond {MAX_CPU_ID}")
        cpus.extend(range(first, last + 1))
    return cpus


def cpu_list_or_none(text: str | None) -> list[int] | None:
    """A CPU list read from a file; None where it is missing or not a CPU list."""
    try:
        return parse_cpu_list(text) if text else None
    except ValueError:
        return None


KIB, MIB = 1024, 1024**2
# The most bytes a genuine file at each place holds, first match wins: a read of more is
# refused (EFBIG), so a 3 GiB sparse "meminfo" in a snapshot or a tree costs 64 KiB.
# A sysfs attribute is one page (64 KiB on some arm64 kernels); /proc/cpuinfo of 8192
# CPUs is about 16 MiB; the journal and the hooks' memory live in the state folder.
READ_LIMITS: tuple[tuple[str, int], ...] = (
    ("/proc/cpuinfo", 32 * MIB),
    ("/proc/sys/", 64 * KIB),
    ("/proc/meminfo", 64 * KIB),
    ("/proc/swaps", 4 * MIB),
    ("/proc/cmdline", 64 * KIB),
    ("/sys/", 1 * MIB),
    ("/var/lib/q3cn-doctor/", 256 * MIB),
)
DEFAULT_READ_LIMIT = 16 * MIB


def read_limit(path: str) -> int:
    """The most bytes ``path`` may hold here (READ_LIMITS, else DEFAULT_READ_LIMIT)."""
    return next((limit for place, limit in READ_LIMITS if path == place or (
        place.endswith("/") and path.startswith(place))), DEFAULT_READ_LIMIT)


def _size_text(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def open_regular(real: str, path: str) -> int:
    """A descriptor of the regular file at ``real``, opened without blocking: a FIFO,
    a device or a socket where a file belongs is refused (EINVAL), never waited on."""
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat_module.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat_module.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, device or socket)", path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(real: str, path: str, limit: int | None = None) -> bytes:
    """The bytes of the regular file at ``real`` (``path`` as the caller names it), or
    OSError: not a regular file (``open_regular``), or more than ``limit`` bytes (EFBIG,
    by default what a genuine ``path`` holds: ``read_limit``)."""
    limit = read_limit(path) if limit is None else limit
    fd = open_regular(real, path)
    try:
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, min(MIB, limit + 1 - size))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise OSError(errno.EFBIG, f"larger than {_size_text(limit)}, more than a "
                                           "genuine one holds", path)
    finally:
        os.close(fd)


class ReadOnlyHost(OSError):
    """Raised when something tries to change a snapshot."""


STATE_DIR = "/var/lib/q3cn-doctor"
CACHE_LIMIT = 4 * 1024 * 1024  # the --help cache holds 16 entries of ~40 kB


class PathInfo(Struct, frozen=True):
    """What lies at a path, the link itself where it is one (``Host.lstat``)."""

    kind: str  # "file", "dir", "link" or "other"
    mode: int | None = None  # permission bits
    uid: int | None = None
    gid: int | None = None
    size: int | None = None


class Host:
    """Base of every host: tracing of what was read, failure injection, helpers.

    Subclasses supply the primitive operations (``_read_bytes``, ``_listdir``...);
    this class adds what every caller gets for free.
    """

    kind = "abstract"

    def __init__(self) -> None:
        # path, or command line, -> errno: a test makes any read, write or command fail.
        # "write:" + path fails only the write; "affinity:PID/TID" fails a re-pin.
        self.faults: dict[str, int] = {}
        # Called with (operation, path) before each system call of a write primitive: a
        # test kills a step there (raise) or swaps a folder for a link (a race).
        self.syscall_hook: Callable[[str, str], None] | None = None
        # Open traces, innermost last: each its sources in reading order, and the same as a
        # set, since a 500-CPU host reads ~12,000 sysfs files (a list search: 20 s).
        self._traces: list[tuple[list[str], set[str]]] = []
        # Each source is read once per run: several facts and checks share /proc/cpuinfo.
        self._reads: dict[str, bytes | OSError] = {}
        self._runs: dict[tuple[str, ...], CommandResult] = {}
        self._processes: list[Process] | None = None  # the process list, read once too
        self._budget_s = RUN_BUDGET_S  # command time left to this run (RUN_BUDGET_S)

    def forget(self) -> None:
        """Drop remembered reads, so the next read sees the machine as it is now (after a fix)."""
        self._reads.clear()
        self._runs.clear()
        self._processes = None

    # -- bookkeeping -------------------------------------------------------
    def describe(self) -> str:
        return self.kind

    @contextlib.contextmanager
    def tracing(self) -> Iterator[list[str]]:
        """Collect every source read inside the block (the findings' evidence)."""
        trace: list[str] = []
        self._traces.append((trace, set()))
        try:
            yield trace
        finally:
            self._traces.pop()  # blocks nest, so the innermost is last

    def note(self, source: str) -> None:
        for trace, seen in self._traces:
            if source not in seen:
                seen.add(source)
                trace.append(source)

    def _syscall(self, operation: str, path: str) -> None:
        if self.syscall_hook is not None:
            self.syscall_hook(operation, path)

    def _fault(self, key: str) -> None:
        code = self.faults.get(key)
        if code is not None:
            raise OSError(code, os.strerror(code), key)

    # -- reading -----------------------------------------------------------
    def read_bytes(self, path: str) -> bytes:
        self.note(path)
        self._fault(path)
        if path not in self._reads:
            try:
                self._reads[path] = self._read_bytes(path)
            except OSError as exc:
                self._reads[path] = exc
        remembered = self._reads[path]
        if isinstance(remembered, OSError):
            raise remembered
        return remembered

    def read_text(self, path: str) -> str:
        # Firmware writes non-UTF-8 bytes into DMI strings; never let that raise.
        return self.read_bytes(path).decode("utf-8", errors="replace")

    def cat(self, path: str, fallback: str | None = None) -> str | None:
        """The stripped text of a file, or ``fallback`` when it cannot be read."""
        try:
            return self.read_text(path).strip()
        except OSError:
            return fallback

    def listdir(self, path: str) -> list[str]:
        self.note(path)
        self._fault(path)
        return sorted(self._listdir(path))

    def readlink(self, path: str) -> str:
        self.note(path)
        self._fault(path)
        return self._readlink(path)

    @contextlib.contextmanager
    def mapped(self, path: str) -> Iterator[bytes | mmap.mmap]:
        """A file's bytes without reading them all: only the pages touched are read.

        For large binaries (a 500 MB libggml-cuda.so) whose ELF headers are all a
        check needs; a snapshot keeps their parsed facts instead of the file.
        """
        self.note(path)
        self._fault(path)
        fd = open_regular(self._real_path(path), path)
        try:
            try:
                view = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            except ValueError:  # an empty file cannot be mapped
                yield b""
                return
            with view:
                yield view
        finally:
            os.close(fd)

    def stat(self, path: str) -> FileStat:
        """Size, mode, owner and modification time (following links, inside the host)."""
        self.note(path)
        self._fault(path)
        found = os.stat(self._real_path(path))
        return FileStat(found.st_size, found.st_mode, found.st_uid, found.st_mtime_ns)

    def exists(self, path: str) -> bool:
        self.note(path)
        try:
            self._fault(path)
            return self._exists(path)
        except OSError:
            return False

    def is_dir(self, path: str) -> bool:
        self.note(path)
        try:
            self._fault(path)
            return self._is_dir(path)
        except OSError:
            return False

    def glob(self, pattern: str) -> list[str]:
        """Absolute paths matching a pattern whose wildcards sit in path components."""
        self.note(pattern)
        matches = ["/"]
        for part in [p for p in pattern.split("/") if p]:
            found = []
            for base in matches:
                child_base = base.rstrip("/") + "/"
                if any(c in part for c in "*?["):
                    try:
                        names = self._listdir(base)
                    except OSError:
                        continue
                    found.extend(child_base + n for n in sorted(names) if fnmatch.fnmatch(n, part))
                elif self._exists_quiet(child_base + part):
                    found.append(child_base + part)
            matches = found
        return matches

    def _exists_quiet(self, path: str) -> bool:
        try:
            return self._exists(path)
        except OSError:  # a link loop on the way (ELOOP)
            return False

    def sysctl(self, name: str) -> str | None:
        """A kernel tunable by its dotted name (``vm.swappiness``), or None."""
        return self.cat("/proc/sys/" + name.replace(".", "/"))

    def run(self, argv: list[str], timeout: float = COMMAND_TIMEOUT_S,
            budgeted: bool = True) -> CommandResult:
        """Run a command (argv list, never a shell) with a time limit, within the run's
        budget (RUN_BUDGET_S) unless ``budgeted`` is False: a measurement the user asked
        for (``bench memory --sysbench``) has its own limit only."""
        argv_t = tuple(argv)
        line = " ".join(argv_t)
        self.note(line)
        code = self.faults.get(line)
        if code is not None:
            return CommandResult(argv_t, _ERRNO_TO_STATE.get(code, PERMISSION_DENIED))
        if argv_t not in self._runs and not budgeted:
            self._runs[argv_t] = self._run(argv_t, timeout)
        elif argv_t not in self._runs:
            self._runs[argv_t] = self._within_budget(
                lambda left: self._run(argv_t, min(timeout, left)),
                CommandResult(argv_t, TIMED_OUT, stderr=BUDGET_SPENT))
        return self._runs[argv_t]

    def start(self, argvs: list[list[str]]) -> None:
        """Begin commands every run asks for before it asks: a host that can run them does
        so in the background while Python imports the checks, and ``run`` later takes
        their results (systemd-detect-virt's ~20 ms a run is then hidden). A host that
        runs no commands, or cannot overlap them, does nothing."""

    def run_all(self, argvs: list[list[str]],
                timeout: float = COMMAND_TIMEOUT_S) -> list[CommandResult]:
        """Several commands, each as ``run`` gives it; a host that can starts them all at
        once, so a run waits for the slowest rather than for their sum (systemd-detect-virt
        takes ~12 ms a call, and the virtualization fact needs two). Together they are
        charged to the run's budget for the time they took."""
        pending = [tuple(argv) for argv in argvs
                   if tuple(argv) not in self._runs and " ".join(argv) not in self.faults]
        if len(pending) > 1:
            pending = list(dict.fromkeys(pending))
            spent = {argv: CommandResult(argv, TIMED_OUT, stderr=BUDGET_SPENT) for argv in pending}
            self._runs.update(self._within_budget(
                lambda left: self._run_together(pending, min(timeout, left)), spent))
        return [self.run(argv, timeout) for argv in argvs]

    def _within_budget(self, call: Any, spent: Any) -> Any:
        """``call(seconds left)`` charged to the run's budget (RUN_BUDGET_S); ``spent``
        where nothing is left."""
        if self._budget_s <= 0:
            return spent
        started = time.monotonic()
        try:
            return call(self._budget_s)
        finally:
            self._budget_s -= time.monotonic() - started

    # -- primitives every host supplies ------------------------------------
    def _read_bytes(self, path: str) -> bytes:
        raise NotImplementedError

    def _listdir(self, path: str) -> list[str]:
        raise NotImplementedError

    def _readlink(self, path: str) -> str:
        raise NotImplementedError

    def _real_path(self, path: str) -> str:
        """Where ``path`` lies on this machine's filesystem (links followed inside the host)."""
        raise NotImplementedError

    def _exists(self, path: str) -> bool:
        raise NotImplementedError

    def _is_dir(self, path: str) -> bool:
        raise NotImplementedError

    def _run(self, argv: tuple[str, ...], timeout: float) -> CommandResult:
        raise NotImplementedError

    def _run_together(self, argvs: list[tuple[str, ...]],
                      timeout: float) -> dict[tuple[str, ...], CommandResult]:
        """Run several commands; hosts that read files answer them one by one."""
        return {argv: self._run(argv, timeout) for argv in argvs}

    # -- process-level facts -------------------------------------------------
    def nvml(self) -> dict:
        """NVML readings in the nvml.json layout (see host/nvml.py)."""
        raise NotImplementedError

    # -- derived readings and the doctor's own cache ---------------------------------------
    def recorded(self, kind: str, key: str) -> Any:
        """What a recording of the machine kept in place of a large file: ``model`` (a
        GGUF's facts by path), ``server`` (a build's architectures), ``elf`` (a binary's
        dependency list). None where this host has none: the live machine reads the file."""
        return None

    def record(self, kind: str, key: str, value: Any) -> None:
        """Offer a derived reading to a recording (``recorded`` replays it); elsewhere
        nothing is kept."""

    def cache_dir(self) -> str | None:
        """Where the doctor may cache what it derived from this machine's files (the live
        machine only: a tree, a snapshot or a recording must read the sources themselves)."""
        return None

    def load_cache(self, name: str) -> dict:
        """The doctor's cache file ``name``; empty where there is none or no cache at all.
        The doctor's own file, not the machine under test: read directly, never traced."""
        folder = self._cache_folder()
        if folder is None:
            return {}
        try:
            data = json.loads(openat.read_regular(folder, name, name, CACHE_LIMIT)[0])
        except (OSError, ValueError):
            return {}
        finally:
            os.close(folder)
        return data if isinstance(data, dict) else {}

    def store_cache(self, name: str, data: dict) -> None:
        """Replace the cache file ``name`` atomically; a cache that cannot be written is
        only slower next time, never an error."""
        folder = self._cache_folder()
        if folder is None:
            return
        try:
            openat.replace_file(folder, name, json.dumps(data).encode(), 0o600, name,
                                owner=(os.geteuid(), os.getegid()))
        except OSError:
            pass
        finally:
            os.close(folder)

    def _cache_folder(self) -> int | None:
        """A descriptor of ``cache_dir()``, where only this process's user controls it
        (openat.private_folder): never a folder or link another user planted."""
        folder = self.cache_dir()
        if folder is None:
            return None
        base, name = os.path.split(folder.rstrip("/"))
        with contextlib.suppress(OSError):
            os.makedirs(base, 0o700, exist_ok=True)
        return openat.private_folder(base, name, os.geteuid())

    def local_path(self, path: str) -> str:
        """Where ``path`` lies on this machine's own filesystem, for a library that must
        open the file itself (gguf's reader); links are followed inside the host."""
        return self._real_path(path)

    def environ(self) -> dict[str, str]:
        raise NotImplementedError

    def euid(self) -> int | None:
        raise NotImplementedError

    def recorded_user(self) -> str | None:
        """Whom a recording was judged for; None where the machine is live, so the
        caller's own user (or the one behind sudo) is the launching user."""
        return None

    def rlimits(self) -> dict[str, tuple[int, int]]:
        """Soft and hard limits by name (MEMLOCK, RTPRIO...); -1 is unlimited."""
        raise NotImplementedError

    def capabilities(self) -> int | None:
        """The effective capability mask, or None where unknown."""
        raise NotImplementedError

    def processes(self) -> list[Process]:
        """The running processes. Listing them reads hundreds of /proc files and facts,
        plans and checks all ask, so it is read once per run like every other source;
        ``forget`` and ``set_affinity`` drop it (a fix changed what it says)."""
        if self._processes is None:
            self._processes = self._list_processes()
        return list(self._processes)

    def _list_processes(self) -> list[Process]:
        raise NotImplementedError

    # -- writing (the fix engine) --------------------------------------------
    # Only the fix engine writes. Every write primitive honours ``faults`` under the
    # path itself (reads fail too) and under ``"write:" + path`` (only the write fails,
    # e.g. a sysfs value the kernel refuses with EINVAL). None of them follows a
    # symbolic link at the target: a link planted there is refused (ELOOP), never
    # written through.
    state_dir = STATE_DIR
    """Where the fix engine keeps its journal (mapped under the prefix on a RootHost)."""

    def user_state_dir(self) -> str | None:
        """This user's state folder: ``$XDG_STATE_HOME/q3cn-doctor``, default
        ``~/.local/state/q3cn-doctor``; None where neither variable is set."""
        env = self.environ()
        base = env.get("XDG_STATE_HOME", "")
        if not base.startswith("/"):
            home = env.get("HOME", "")
            if not home.startswith("/"):
                return None
            base = home.rstrip("/") + "/.local/state"
        return base.rstrip("/") + "/q3cn-doctor"

    def _write_fault(self, path: str) -> None:
        self._fault(path)
        self._fault("write:" + path)

    def lstat(self, path: str) -> PathInfo | None:
        """What is at ``path`` without following a link there; None when nothing is."""
        self.note(path)
        self._fault(path)
        return self._lstat(path)

    def write_bytes(self, path: str, data: bytes, mode: int = 0o644,
                    owner: tuple[int, int] | None = None) -> None:
        """Replace a regular file atomically: a temporary file in the same folder,
        fsynced, renamed over the target, the folder fsynced. Owned by ``owner`` (uid,
        gid), else by root, where this process may chown; the mode is set after the
        owner, so a setuid bit survives. A symbolic link at the target is refused (ELOOP)."""
        self._write_fault(path)
        self._reads.pop(path, None)
        self._write_bytes(path, data, mode, owner)

    def write_kernel_value(self, path: str, text: str) -> None:
        """Store a value into an existing /proc/sys or sysfs file, as ``echo v > file``.

        Kernel files cannot be renamed over or created: this opens the file for
        writing only (no create, no truncate, no link followed) and writes the text
        in one call, so the kernel's refusal (EINVAL, EBUSY...) comes back as OSError.
        """
        self._write_fault(path)
        self._reads.pop(path, None)
        self._write_kernel_value(path, text.encode())

    def set_module_loaded(self, name: str, loaded: bool) -> None:
        """Load a kernel module (``modprobe NAME``) or unload it (``modprobe -r NAME``);
        the kernel's refusal comes back as OSError."""
        self._write_fault(f"module:{name}")
        self.forget()  # sysfs grows or loses the module's files
        self._set_module_loaded(name, loaded)

    def _set_module_loaded(self, name: str, loaded: bool) -> None:
        raise self._read_only(f"/sys/module/{name}")

    def remove(self, path: str) -> None:
        """Unlink a file (a link itself, never what it points to)."""
        self._write_fault(path)
        self._reads.pop(path, None)
        self._remove(path)

    def make_dir(self, path: str, mode: int = 0o755) -> None:
        """Create one folder (its parent must exist), root-owned where possible."""
        self._write_fault(path)
        self._make_dir(path, mode)

    def remove_dir(self, path: str) -> None:
        """Remove an empty folder."""
        self._write_fault(path)
        self._remove_dir(path)

    def remove_temporaries(self, folder: str) -> list[str]:
        """Remove the ``.q3cn-doctor.*`` temporaries a killed run left in ``folder`` (a
        write renames its temporary over the target; a kill before that leaves it)."""
        self._write_fault(folder)
        return self._remove_temporaries(folder)

    def _remove_temporaries(self, folder: str) -> list[str]:
        return []  # a read-only host has none of ours

    def writer_uid(self) -> int | None:
        """Who owns what this host's writes create (the state folder, the journal): this
        process's user on a live-like host; None where nothing is written."""
        return None

    @contextlib.contextmanager
    def locked(self, path: str) -> Iterator[None]:
        """Hold an exclusive lock on ``path`` (created 0600 if absent) for the block; a lock
        another process holds is EBUSY at once, never a wait."""
        self._write_fault(path)
        with self._locked(path):
            yield

    def _locked(self, path: str) -> contextlib.AbstractContextManager:
        raise self._read_only(path)

    def thread_ids(self, pid: int) -> list[int]:
        """The thread ids of a process (``/proc/PID/task``)."""
        try:
            return sorted(int(name) for name in self.listdir(f"/proc/{pid}/task")
                          if name.isdecimal())
        except OSError:
            return []

    def get_affinity(self, pid: int, tid: int) -> list[int]:
        """The CPUs a thread of a process may run on."""
        path = f"/proc/{pid}/task/{tid}/status"
        for line in self.read_text(path).splitlines():
            if line.startswith("Cpus_allowed_list:"):
                return parse_cpu_list(line.split(":", 1)[1])
        raise OSError(errno.ENOENT, "no Cpus_allowed_list", path)

    def set_affinity(self, pid: int, tid: int, cpus: list[int]) -> None:
        """Pin one thread of a process to ``cpus`` (sched_setaffinity)."""
        self._write_fault(f"affinity:{pid}/{tid}")
        self._reads.pop(f"/proc/{pid}/task/{tid}/status", None)
        self._reads.pop(f"/proc/{pid}/status", None)
        self._processes = None  # their affinity lists
        self._set_affinity(pid, tid, sorted(set(cpus)))

    def _lstat(self, path: str) -> PathInfo | None:
        # Generic answer from the read primitives; live hosts ask the OS.
        try:
            self._readlink(path)
            return PathInfo("link")
        except OSError:
            pass
        if self._is_dir(path):
            return PathInfo("dir")
        if self._exists(path):
            return PathInfo("file")
        return None

    def _read_only(self, path: str) -> OSError:
        return ReadOnlyHost(errno.EROFS, f"{self.describe()} is read-only", path)

    def _write_bytes(self, path: str, data: bytes, mode: int,
                     owner: tuple[int, int] | None) -> None:
        raise self._read_only(path)

    def _write_kernel_value(self, path: str, data: bytes) -> None:
        raise self._read_only(path)

    def _remove(self, path: str) -> None:
        raise self._read_only(path)

    def _make_dir(self, path: str, mode: int) -> None:
        raise self._read_only(path)

    def _remove_dir(self, path: str) -> None:
        raise self._read_only(path)

    def _set_affinity(self, pid: int, tid: int, cpus: list[int]) -> None:
        raise self._read_only(f"/proc/{pid}/task/{tid}")


def resolve_under(root: str, path: str, follow_last: bool = True) -> str:
    """Map an absolute path into ``root`` as if root were ``/``, chroot-style.

    Real sysfs is full of symlinks, some absolute; following them with the OS
    would leave the tree. Here every link is followed inside ``root``.
    """
    pending = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if (pending or follow_last) and os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def format_cpu_list(cpus: list[int]) -> str:
    """The kernel's compact form of a CPU list: [0, 1, 2, 3, 8] -> ``0-3,8``."""
    ranges: list[str] = []
    start = previous = None
    for cpu in sorted(set(cpus)):
        if previous is not None and cpu == previous + 1:
            previous = cpu
            continue
        if start is not None:
            ranges.append(f"{start}-{previous}" if previous != start else f"{start}")
        start = previous = cpu
    if start is not None:
        ranges.append(f"{start}-{previous}" if previous != start else f"{start}")
    return ",".join(ranges)

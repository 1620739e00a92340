"""The live machine, and the live-like tree under ``--root PREFIX``."""

from __future__ import annotations

import contextlib
import os
import subprocess

from .host import (
    ABSENT,
    NOT_INSTALLED,
    PERMISSION_DENIED,
    RAN,
    RLIMIT_NAMES,
    TIMED_OUT,
    UNLIMITED,
    CommandResult,
    Host,
    Process,
    parse_cpu_list,
    resolve_under,
)

# Commands print for people; pin the locale so their output parses the same everywhere.
_COMMAND_ENV = {"LC_ALL": "C", "LANG": "C"}


class LiveHost(Host):
    """This machine, read as it is."""

    kind = "live"

    def describe(self) -> str:
        return "this machine"

    def _path(self, path: str) -> str:
        return path

    def _read_bytes(self, path: str) -> bytes:
        with open(self._path(path), "rb") as handle:
            return handle.read()

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

    def _run(self, argv: tuple[str, ...], timeout: float) -> CommandResult:
        env = dict(os.environ, **_COMMAND_ENV)
        try:
            done = subprocess.run(
                argv, capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
            )
        except FileNotFoundError:
            return CommandResult(argv, NOT_INSTALLED)
        except PermissionError:
            return CommandResult(argv, PERMISSION_DENIED)
        except subprocess.TimeoutExpired:
            return CommandResult(argv, TIMED_OUT)
        except OSError as exc:
            return CommandResult(argv, PERMISSION_DENIED, stderr=str(exc))
        return CommandResult(
            argv,
            RAN,
            done.returncode,
            done.stdout.decode("utf-8", errors="replace"),
            done.stderr.decode("utf-8", errors="replace"),
        )

    def nvml(self) -> dict:
        from .nvml import read_nvml  # pynvml costs ~50 ms: only when a GPU check asks

        return read_nvml()

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

    def processes(self) -> list[Process]:
        return read_processes(self._cat_quiet, self._listdir_quiet)

    # Process listing reads hundreds of /proc files: they are summarised into one
    # list (and snapshot.json), not traced, cached or recorded one by one.
    def _cat_quiet(self, path: str) -> str | None:
        try:
            with open(self._path(path), "rb") as handle:
                return handle.read().decode("utf-8", errors="replace")
        except OSError:
            return None

    def _listdir_quiet(self, path: str) -> list[str]:
        try:
            return os.listdir(self._path(path))
        except OSError:
            return []

    def _write_bytes(self, path: str, data: bytes, mode: int) -> None:
        real = self._path(path)
        directory = os.path.dirname(real)
        os.makedirs(directory, exist_ok=True)
        import tempfile

        handle, temp = tempfile.mkstemp(dir=directory, prefix=".q3cn-doctor.")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, mode)
            os.replace(temp, real)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def _remove(self, path: str) -> None:
        os.unlink(self._path(path))


class RootHost(LiveHost):
    """A live-like host whose every path lies under PREFIX (laid out like a snapshot's fs/).

    It runs no commands and reads no NVML: what it knows is the tree. The process
    identity (euid, limits) is this process's own, so fixes can be applied into a
    temporary tree by tests that must never touch the real machine.
    """

    kind = "root"

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = os.path.abspath(prefix)

    def describe(self) -> str:
        return f"root {self.prefix}"

    def _path(self, path: str) -> str:
        return resolve_under(self.prefix, path)

    def _readlink(self, path: str) -> str:
        return os.readlink(resolve_under(self.prefix, path, follow_last=False))

    def _exists(self, path: str) -> bool:
        return os.path.lexists(resolve_under(self.prefix, path, follow_last=False))

    def _run(self, argv: tuple[str, ...], timeout: float) -> CommandResult:
        return CommandResult(argv, ABSENT, stderr="--root runs no commands")

    def nvml(self) -> dict:
        return {"init": "NVML_ERROR_LIBRARY_NOT_FOUND", "reason": "--root reads no NVML"}

    def processes(self) -> list[Process]:
        return read_processes(self._cat_quiet, self._listdir_quiet)


def read_processes(cat, listdir) -> list[Process]:
    """Processes from a /proc tree, read through the given file functions."""
    processes = []
    for entry in listdir("/proc"):
        if not entry.isdigit():
            continue
        status = cat(f"/proc/{entry}/status")
        if status is None:
            continue  # it exited while we looked
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        cmdline = (cat(f"/proc/{entry}/cmdline") or "").split("\0")
        affinity = fields.get("Cpus_allowed_list")
        threads = fields.get("Threads")
        uid = fields.get("Uid")
        processes.append(
            Process(
                pid=int(entry),
                name=fields.get("Name", "").strip(),
                cmdline=[arg for arg in cmdline if arg],
                affinity=parse_cpu_list(affinity) if affinity else None,
                threads=int(threads) if threads and threads.strip().isdigit() else None,
                uid=int(uid.split()[1]) if uid and len(uid.split()) > 1 else None,
            )
        )
    return processes

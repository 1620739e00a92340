"""``q3cn-doctor hook``: re-check the machine after driver, kernel and llama.cpp updates,
and guard a llama-server service.

Three kinds of hook, each one file:

- pacman (Arch, CachyOS): an ALPM hook, ``/etc/pacman.d/hooks/95-q3cn-doctor.hook``,
  run after a transaction that installs or upgrades the NVIDIA driver, CUDA, a kernel
  or llama.cpp (alpm-hooks(5)). It sorts after the DKMS and initramfs hooks (70-, 90-).
- apt (Debian, Ubuntu): ``/etc/apt/apt.conf.d/99q3cn-doctor``, a ``DPkg::Post-Invoke``
  command. apt cannot run it for some packages only: it runs after every dpkg run, which
  is why ``check --hook`` is quick and prints nothing unless something got worse.
- systemd (``--service NAME``): a drop-in
  ``/etc/systemd/system/NAME.service.d/95-q3cn-doctor-guard.conf`` whose
  ``ExecStartPre=`` runs ``q3cn-doctor check --only <the checks that block a launch>``:
  a failed check exits 1 and systemd does not start the service (warnings do not block).
  ``--warn-only`` prefixes the command with ``-``: systemd logs it and starts anyway.

The files begin with the header every file q3cn-doctor writes (``fixplan.header``) and
are written atomically through the host (``Host.write_bytes``), so ``--root PREFIX``
installs into a tree. What install wrote is recorded, with its SHA-256, in
``<state dir>/hooks.json`` before the file is written; uninstall removes a file only
while it carries the header and still holds those bytes, and reports (and leaves alone)
anything else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import sys
import time
from typing import Any, Callable

from msgspec import Struct, field
from q3cn_doctor.fixing.targets import ConfigFile, header, is_ours, missing_dirs
from q3cn_doctor.host.base import Host
from q3cn_doctor.options import Options

PACMAN, APT, SERVICE = "pacman", "apt", "service"
PACMAN_HOOK = "/etc/pacman.d/hooks/95-q3cn-doctor.hook"
APT_CONF = "/etc/apt/apt.conf.d/99q3cn-doctor"
UNIT_DIR = "/etc/systemd/system"
DROPIN_NAME = "95-q3cn-doctor-guard.conf"
RECORD_NAME = "hooks.json"
RECORD_FORMAT = 1

PACMAN_BIN, APT_BIN = "/usr/bin/pacman", "/usr/bin/apt-get"

# Package names (alpm-hooks(5) Target, fnmatch patterns) whose update can change what
# llama-server finds: the NVIDIA driver (nvidia, nvidia-dkms, nvidia-open, nvidia-utils...),
# CUDA (cuda, cuda-tools), the kernel (linux, linux-lts, linux-zen, linux-cachyos and
# their headers, which DKMS builds the driver against) and llama.cpp (llama.cpp,
# llama.cpp-cuda, llama.cpp-vulkan, llama.cpp-git...).
PACMAN_TARGETS = ("nvidia*", "lib32-nvidia-utils", "opencl-nvidia", "cuda*", "linux",
                  "linux-*", "llama.cpp*", "llama-cpp*")

# The checks whose failure means llama-server cannot start or cannot run as planned:
# the GPU and its driver, the build's CUDA runtime against the driver, RAM for the model,
# hugetlb reservations eating that RAM, the model file, and a build that knows the model
# and uses the GPU. Warnings never block; slowness alone (RAM speed) does not either.
BLOCKING = ("gpu.present", "gpu.cuda", "memory.fit", "memory.hugepages", "model.file",
            "server.build")

# Results of one install or uninstall.
INSTALLED, ALREADY, REPLACED, REMOVED, ABSENT = (
    "installed", "already", "replaced", "removed", "absent")
REFUSED, LEFT, FAILED = "refused", "left", "failed"
_BAD = (REFUSED, LEFT, FAILED)


class HookError(Exception):
    """Something the user must change before a hook can be installed (a usage error)."""


# -- what the files say ----------------------------------------------------------------------
def doctor_argv() -> list[str]:
    """How a hook runs this q3cn-doctor: the installed script, by absolute path."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "q3cn-doctor" and os.path.isfile(argv0):
        return [os.path.abspath(argv0)]
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "q3cn-doctor")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return [beside]
    from q3cn_doctor.host.live import on_path

    found = on_path("q3cn-doctor", None)
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "q3cn_doctor"]


_PLAIN = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")


def _no_newline(arg: str) -> str:
    if "\n" in arg or "\r" in arg or "\0" in arg:
        raise HookError(f"{arg!r}: a path with a line break cannot go into a hook file")
    return arg


def alpm_word(arg: str) -> str:
    """One word of an ALPM ``Exec`` line (split on whitespace, quotes group words)."""
    if _PLAIN.match(_no_newline(arg)):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_word(arg: str) -> str:
    """One word of a systemd command line: specifiers and variables escaped, quoted where
    it holds anything but plain characters (systemd.service(5), "Command lines")."""
    arg = _no_newline(arg).replace("%", "%%").replace("$", "$$")
    if _PLAIN.match(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def apt_command(argv: list[str]) -> str:
    """The shell command apt runs (``sh -c``): skipped if q3cn-doctor is gone, and never
    failing, since a failing Post-Invoke makes apt report an error."""
    quoted = [shlex.quote(_no_newline(a)) for a in argv]
    command = (f"if [ -x {quoted[0]} ]; then {' '.join(quoted)} check --hook </dev/null "
               "|| true; fi")
    if '"' in command:
        raise HookError(f"{argv[0]}: a path with a double quote cannot go into an apt string")
    return command


def service_unit(name: str) -> str:
    from q3cn_doctor.fixes.memlock import service_unit as unit

    return unit(name)


def dropin_path(unit: str) -> str:
    return f"{UNIT_DIR}/{unit}.d/{DROPIN_NAME}"


def hook_path(kind: str, unit: str | None = None) -> str:
    if kind == PACMAN:
        return PACMAN_HOOK
    if kind == APT:
        return APT_CONF
    assert unit
    return dropin_path(unit)


def flag(kind: str, unit: str | None = None) -> str:
    """The command-line flag that names this hook."""
    if kind == SERVICE:
        name = unit or ""
        return "--service " + (name[:-len(".service")] if name.endswith(".service") else name)
    return f"--{kind}"


def blocking_checks() -> list[str]:
    """The BLOCKING checks this version has (an unknown id would make the check a usage
    error, exit 2, and block the service for the wrong reason)."""
    from q3cn_doctor.checking.registry import builtin_checks

    known = {spec.id for spec in builtin_checks()}
    return [check_id for check_id in BLOCKING if check_id in known]


def render(kind: str, argv: list[str], unit: str | None = None, warn_only: bool = False,
           only: list[str] | None = None) -> bytes:
    """The bytes of one hook file."""
    top = header(kind, made_by=f"hook {kind}",
                 removed_by=f"q3cn-doctor hook uninstall {flag(kind, unit)}")
    if kind == PACMAN:
        text = top + (
            "# Re-checks the machine for llama-server after the NVIDIA driver, CUDA, a kernel\n"
            "# or llama.cpp is installed or upgraded; prints only what got worse.\n"
            "[Trigger]\nOperation = Install\nOperation = Upgrade\nType = Package\n"
            + "".join(f"Target = {target}\n" for target in PACMAN_TARGETS)
            + "\n[Action]\nDescription = Re-checking the machine for llama-server "
              "(q3cn-doctor)...\nWhen = PostTransaction\n"
            f"Exec = {' '.join(alpm_word(a) for a in argv)} check --hook\n")
    elif kind == APT:
        text = top + (
            "# Re-checks the machine for llama-server after packages change.\n"
            "# apt cannot run a hook for some packages only: this runs after every dpkg run,\n"
            "# takes at most a few seconds and prints nothing unless a check got worse.\n"
            f'DPkg::Post-Invoke {{ "{apt_command(argv)}"; }};\n')
    elif kind == SERVICE:
        ids = ",".join(only if only is not None else blocking_checks())
        command = " ".join(systemd_word(a) for a in argv) + f" check --only {ids}"
        if warn_only:
            text = top + (
                f"# Before {unit} starts, q3cn-doctor checks what would stop llama-server\n"
                "# from running. Warn-only: a failed check is logged (journalctl -u "
                f"{unit})\n# and the service starts anyway.\n"
                f"[Service]\nExecStartPre=-{command}\n")
        else:
            text = top + (
                f"# Before {unit} starts, q3cn-doctor checks what would stop llama-server\n"
                "# from running: a failed check exits 1 and systemd does not start the\n"
                f"# service (see journalctl -u {unit}); warnings do not block.\n"
                f"[Service]\nExecStartPre={command}\n")
    else:
        raise ValueError(f"unknown hook kind {kind!r}")
    return text.encode()


def exec_line(data: bytes) -> str:
    """The line of a hook file that runs q3cn-doctor (for ``hook status``)."""
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith(("Exec ", "Exec=", "ExecStartPre=", "DPkg::Post-Invoke")):
            return line
    return ""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- choosing the kind -----------------------------------------------------------------------
def detect(host: Host) -> str:
    """The package manager of this host: pacman or apt (its binary exists). Where both
    exist (Debian packages pacman too), os-release's ID and ID_LIKE decide."""
    have = [kind for kind, binary in ((PACMAN, PACMAN_BIN), (APT, APT_BIN))
            if host.exists(binary)]
    if len(have) == 1:
        return have[0]
    if not have:
        raise HookError(f"neither {PACMAN_BIN} nor {APT_BIN} is on {host.describe()}: give "
                        "--pacman, --apt or --service NAME")
    release = (host.cat("/etc/os-release") or host.cat("/usr/lib/os-release") or "").lower()
    ids = set()
    for line in release.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("id", "id_like"):
            ids.update(value.strip().strip("\"'").split())
    if ids & {"arch", "archlinux", "cachyos", "manjaro", "endeavouros"}:
        return PACMAN
    if ids & {"debian", "ubuntu"}:
        return APT
    raise HookError("both pacman and apt-get are installed: give --pacman or --apt")


def chosen(host: Host, pacman: bool, apt: bool, service: str | None, *,
           installing: bool) -> list[tuple[str, str | None]]:
    """(kind, unit) pairs the flags name. Without a flag, install detects the package
    manager; uninstall looks at both package-manager hooks."""
    if sum((pacman, apt, service is not None)) > 1:
        raise HookError("give one of --pacman, --apt and --service NAME")
    if service is not None:
        from q3cn_doctor.options import unit_name_problem

        problem = unit_name_problem(service)
        if problem:
            raise HookError(problem)
        return [(SERVICE, service_unit(service))]
    if pacman:
        return [(PACMAN, None)]
    if apt:
        return [(APT, None)]
    if installing:
        return [(detect(host), None)]
    return [(PACMAN, None), (APT, None)]


# -- the record of what install wrote ----------------------------------------------------------
class Record:
    """``<state dir>/hooks.json``: each file install wrote, with its SHA-256 and the
    folders it had to create."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.path = f"{host.state_dir}/{RECORD_NAME}"
        self.hooks: dict[str, dict[str, Any]] = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        """The record. Refused as a whole (HookError) where the state folder or the file
        is not root's alone, or an entry names a file or folder no hook of ours has
        (uninstall removes what it names); a file that is no record at all is ignored:
        without one, uninstall removes only exact copies of what it writes."""
        from q3cn_doctor.fixing.journal import untrusted

        for path, kind in ((self.host.state_dir, "dir"), (self.path, "file")):
            found = self.host.lstat(path)
            if found is None:
                return {}
            problem = untrusted(self.host, path, found, kind)
            if problem:
                raise HookError(f"{problem}: q3cn-doctor does not trust its record of the hooks "
                                "there; nothing was changed")
        try:
            document = json.loads(self.host.read_bytes(self.path))
        except OSError as exc:
            raise HookError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        except ValueError:
            return {}
        if not isinstance(document, dict) or document.get("format") != RECORD_FORMAT:
            return {}
        hooks = document.get("hooks")
        if not isinstance(hooks, dict):
            return {}
        for path, entry in hooks.items():
            problem = record_problem(path, entry)
            if problem:
                raise HookError(f"{self.path}: the entry for {path!r} is not one q3cn-doctor "
                                f"wrote ({problem}); nothing was changed. Move the file aside")
        return hooks

    def save(self) -> None:
        from q3cn_doctor.hooks.state import make_parents
        from q3cn_doctor.version import __version__

        make_parents(self.host, self.path, self.host.state_dir)
        document = {"format": RECORD_FORMAT, "tool": f"q3cn-doctor {__version__}",
                    "hooks": dict(sorted(self.hooks.items()))}
        self.host.write_bytes(self.path, (json.dumps(document, indent=1, sort_keys=True)
                                          + "\n").encode(), mode=0o600)


_SHA = re.compile(r"[0-9a-f]{64}\Z")
_DROPIN = re.compile(rf"{re.escape(UNIT_DIR)}/(?P<unit>[^/]+)\.d/{re.escape(DROPIN_NAME)}\Z")


def record_problem(path: str, entry: Any) -> str | None:
    """Why a hooks.json entry is not one install wrote: a path no hook has, fields of the
    wrong kind, a created folder that is not above the file (/etc or under it)."""
    if not isinstance(entry, dict):
        return "not an object"
    kind, unit = entry.get("kind"), entry.get("unit")
    dropin = _DROPIN.match(path) if isinstance(path, str) else None
    if dropin:
        from q3cn_doctor.options import unit_name_problem

        if kind != SERVICE or unit != dropin.group("unit") or unit_name_problem(unit):
            return "not the drop-in of the service it names"
    elif (kind, unit) not in ((PACMAN, None), (APT, None)) or path != hook_path(kind):
        return "not a path a hook of q3cn-doctor has"
    if not isinstance(entry.get("warn_only", False), bool):
        return "warn_only is not true or false"
    if not all(isinstance(entry.get(key), str) and _SHA.match(entry[key])
               for key in ("sha256", "replaces") if key in entry or key == "sha256"):
        return "its SHA-256 is not one"
    folders = entry.get("created_dirs") or []
    if not isinstance(folders, list) or not all(
            isinstance(folder, str) and (folder + "/").startswith("/etc/")
            and path.startswith(folder + "/") and ".." not in folder.split("/")
            for folder in folders):
        return "a created folder is not above its file"
    return None


class Row(Struct):
    """What happened to (or what is at) one hook file."""

    kind: str
    path: str
    result: str
    detail: str = ""
    unit: str | None = None
    exec: str = ""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "result": self.result,
                "detail": self.detail, "unit": self.unit, "exec": self.exec,
                "notes": list(self.notes)}


def _not_root(host: Host, verb: str) -> str | None:
    if host.euid() == 0:
        return None
    return (f"{verb} writes under /etc on {host.describe()}: only root may (run it with "
            "sudo). Nothing was changed.")


def _current(host: Host, path: str) -> tuple[dict[str, Any] | None, bytes]:
    state = ConfigFile(path).read(host)
    data = ConfigFile.data(state) if state and state.get("type") == "file" else b""
    return state, data


def _guarded(act: Callable[..., Row], kind: str, unit: str | None, *args: Any) -> Row:
    """An OSError anywhere (the record's folder in the way, a read-only tree) becomes a
    failed row, never a traceback."""
    try:
        return act(*args)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        return Row(kind, hook_path(kind, unit), FAILED, f"{exc.strerror or exc}{where}",
                   unit=unit)


def install(host: Host, kind: str, argv: list[str], unit: str | None = None,
            warn_only: bool = False, record: Record | None = None) -> Row:
    """Write one hook file (and record it first); refuse anything not ours."""
    return _guarded(_install, kind, unit, host, kind, argv, unit, warn_only, record)


def uninstall(host: Host, kind: str, argv: list[str], unit: str | None = None,
              record: Record | None = None) -> Row:
    """Remove one hook file if install wrote it and it is unchanged; else report it."""
    return _guarded(_uninstall, kind, unit, host, kind, argv, unit, record)


def _install(host: Host, kind: str, argv: list[str], unit: str | None,
             warn_only: bool, record: Record | None) -> Row:
    path = hook_path(kind, unit)
    data = render(kind, argv, unit, warn_only)
    row = Row(kind, path, INSTALLED, unit=unit, exec=exec_line(data))
    record = record or Record(host)
    host.forget()
    state, current = _current(host, path)
    target = ConfigFile(path)
    if state is None:
        row.result, row.detail = FAILED, f"{path} cannot be read"
        return row
    if state.get("exists") and state.get("type") == "file" and current == data:
        if path not in record.hooks:
            record.hooks[path] = _entry(kind, unit, warn_only, data, [])
            record.save()
        row.result = ALREADY
        return row
    refusal = target.refusal(state)
    if refusal:
        row.result, row.detail = REFUSED, refusal
        return row
    if state.get("exists"):
        earlier = record.hooks.get(path)
        if earlier and not _as_recorded(earlier, current):
            row.result, row.detail = REFUSED, (
                f"{path} was changed since q3cn-doctor installed it: it is left as it is "
                "(remove it by hand to install it again)")
            return row
        row.result = REPLACED
    created = missing_dirs(host, path)
    before = dict(record.hooks)
    earlier_dirs = (record.hooks.get(path) or {}).get("created_dirs") or []
    record.hooks[path] = _entry(kind, unit, warn_only, data, list(earlier_dirs) + created)
    if row.result == REPLACED:  # until the new bytes are in place, the old ones are ours
        record.hooks[path]["replaces"] = _sha(current)
    record.save()  # recorded before it is written: uninstall always knows what it wrote
    try:
        for folder in created:
            host.make_dir(folder, 0o755)
        host.write_bytes(path, data, mode=0o644)
    except OSError as exc:
        record.hooks = before
        with contextlib.suppress(OSError):
            record.save()
        row.result, row.detail = FAILED, f"cannot write {path}: {exc.strerror or exc}"
        return row
    host.forget()
    _, readback = _current(host, path)
    if readback != data:
        row.result, row.detail = FAILED, f"{path} does not read back as written"
    return row


def _as_recorded(entry: dict[str, Any], data: bytes) -> bool:
    """The file holds what install wrote (or, after a crash mid-replace, what it replaced)."""
    return _sha(data) in (entry.get("sha256"), entry.get("replaces"))


def _entry(kind: str, unit: str | None, warn_only: bool, data: bytes,
           created: list[str]) -> dict[str, Any]:
    return {"kind": kind, "unit": unit, "warn_only": warn_only, "sha256": _sha(data),
            "created_dirs": created, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _uninstall(host: Host, kind: str, argv: list[str], unit: str | None,
               record: Record | None) -> Row:
    path = hook_path(kind, unit)
    row = Row(kind, path, REMOVED, unit=unit)
    record = record or Record(host)
    host.forget()
    state, current = _current(host, path)
    if state is None:
        row.result, row.detail = FAILED, f"{path} cannot be read"
        return row
    earlier = record.hooks.get(path)
    if not state.get("exists"):
        if earlier:
            record.hooks.pop(path)
            record.save()
        row.result = ABSENT
        return row
    row.exec = exec_line(current)
    if state.get("type") != "file" or not is_ours(current):
        reason = ConfigFile(path).refusal(state) or f"{path} is not q3cn-doctor's"
        row.result, row.detail = LEFT, reason.replace("it is never modified",
                                                      "it is left alone")
        return row
    if earlier:
        unchanged = _as_recorded(earlier, current)
    else:  # no record (a lost state folder): only what this version would write
        unchanged = current in {render(kind, argv, unit, warn_only)
                                for warn_only in (False, True)}
    if not unchanged:
        row.result, row.detail = LEFT, (
            f"{path} was changed since q3cn-doctor installed it: left alone (remove it by "
            "hand if it should go)")
        return row
    try:
        host.remove(path)
    except OSError as exc:
        row.result, row.detail = FAILED, f"cannot remove {path}: {exc.strerror or exc}"
        return row
    for folder in reversed((earlier or {}).get("created_dirs") or []):
        try:
            found = host.lstat(folder)
            if found is not None and found.kind == "dir" and not host.listdir(folder):
                host.remove_dir(folder)
        except OSError:
            continue
    if earlier:
        record.hooks.pop(path)
        record.save()
    return row


def status_rows(host: Host) -> list[Row]:
    """Every hook q3cn-doctor knows of here: the two package-manager paths, each service
    drop-in on disk or in the record."""
    record = Record(host)
    places: list[tuple[str, str | None]] = [(PACMAN, None), (APT, None)]
    units = set()
    for path in host.glob(f"{UNIT_DIR}/*.d/{DROPIN_NAME}"):
        units.add(path.split("/")[-2][:-2])
    for entry in record.hooks.values():
        if entry.get("kind") == SERVICE and entry.get("unit"):
            units.add(entry["unit"])
    places += [(SERVICE, unit) for unit in sorted(units)]
    rows = []
    for kind, unit in places:
        path = hook_path(kind, unit)
        row = Row(kind, path, "not installed", unit=unit)
        state, current = _current(host, path)
        earlier = record.hooks.get(path)
        if state is None:
            row.result = "unreadable"
        elif state.get("exists"):
            row.exec = exec_line(current)
            if state.get("type") != "file":
                row.result = f"not q3cn-doctor's (a {state.get('type')})"
            elif not is_ours(current):
                row.result = "not q3cn-doctor's (no header)"
            elif earlier and not _as_recorded(earlier, current):
                row.result = "changed since install (uninstall leaves it alone)"
            else:
                row.result = "installed"
                if kind == SERVICE and earlier and earlier.get("warn_only"):
                    row.result = "installed (warn-only)"
        elif earlier:
            row.result = "removed by someone else since install"
        rows.append(row)
    return rows


# -- the commands ------------------------------------------------------------------------------
def _echo(text: str = "", err: bool = False) -> None:
    """One line for people; the record's and the machine's values are escaped in it."""
    import click
    from q3cn_doctor.report.output import printable

    click.echo(printable(text), err=err)


def _describe(row: Row) -> list[str]:
    lines = []
    if row.kind == PACMAN:
        lines.append("  pacman runs it after installing or upgrading: "
                     + ", ".join(PACMAN_TARGETS))
    elif row.kind == APT:
        lines.append("  apt cannot run a hook for some packages only: it runs after every "
                     "dpkg run and prints nothing unless a check got worse.")
    elif row.kind == SERVICE:
        lines.append(f"  Run `systemctl daemon-reload` for systemd to read it; it runs at "
                     f"every start of {row.unit}.")
    return lines


def _prepare(host: Host, pacman: bool, apt: bool, service: str | None,
             installing: bool) -> tuple[Host, list, list[str], Record] | None:
    """The host, the hooks to act on, our command line and the install record; None
    (having said why) where this user may not change them."""
    kinds = chosen(host, pacman, apt, service, installing=installing)
    denied = _not_root(host, "hook install" if installing else "hook uninstall")
    if denied:
        _echo(f"q3cn-doctor: {denied}", err=True)
        return None
    return host, kinds, doctor_argv(), Record(host)


def _hook_name(kind: str, unit: str | None) -> str:
    return f"the {unit} guard" if kind == SERVICE else f"the {kind} hook"


def run_install(host: Host, pacman: bool, apt: bool, service: str | None, warn_only: bool,
                make_options: Callable[[], Options] | None = None,
                make_host: Callable[[Options], Host] | None = None) -> int:
    """``hook install``: exit 0 installed (or already), 1 refused or failed. With
    ``make_options`` and ``make_host`` (the session's), it remembers the state now."""
    if warn_only and service is None:
        raise HookError("--warn-only is for --service NAME")
    prepared = _prepare(host, pacman, apt, service, installing=True)
    if prepared is None:
        return 1
    host, kinds, argv, record = prepared
    code = 0
    for kind, unit in kinds:
        row = install(host, kind, argv, unit, warn_only, record)
        name = _hook_name(kind, unit)
        if row.result in _BAD:
            _echo(f"q3cn-doctor: {name} was not installed: {row.detail}", err=True)
            code = 1
            continue
        verb = {ALREADY: "is already installed", REPLACED: "updated",
                INSTALLED: "installed"}[row.result]
        _echo(f"q3cn-doctor: {name} {verb}: {row.path}")
        _echo(f"  {row.exec}")
        for line in _describe(row):
            _echo(line)
        if kind == SERVICE and not any(host.exists(f"{d}/{unit}") for d in _unit_dirs()):
            _echo(f"  No {unit} is installed yet: the drop-in applies once it is.")
        if kind != SERVICE and make_options is not None and make_host is not None:
            _baseline(host, make_options, make_host)
    return code


def _unit_dirs() -> tuple[str, ...]:
    from q3cn_doctor.fixes.memlock import UNIT_DIRS

    return UNIT_DIRS


def _baseline(host: Host, make_options: Callable[[], Options],
              make_host: Callable[[Options], Host]) -> None:
    """Remember the state now, so the first update is compared with it (unless a hook
    has already remembered one: that is what the next update is compared with)."""
    from q3cn_doctor.checking.findings import FAIL, WARN
    from q3cn_doctor.hooks.state import HookStateError, hook_check, load_memory, memory_path

    try:
        if load_memory(host, memory_path(host)) is not None:
            return
    except (HookStateError, OSError):
        pass  # hook_check says what is wrong with it
    result = hook_check(make_options, make_host)
    if result.memory is None:
        for line in result.lines:
            _echo(f"  {line}")
        return
    fails = sorted({f.id for f in result.findings if f.status == FAIL})
    warns = sum(1 for f in result.findings if f.status == WARN)
    _echo(f"  The state now is remembered in {result.memory} ({len(result.findings)} "
          f"findings: {len(fails)} fail, {warns} warn); a hook reports what gets worse "
          "from here.")
    if fails:
        _echo(f"  Failing now: {', '.join(fails)} (`q3cn-doctor check` explains each).")


def run_uninstall(host: Host, pacman: bool, apt: bool, service: str | None) -> int:
    """``hook uninstall``: exit 0 removed (or nothing there), 1 something was left alone."""
    prepared = _prepare(host, pacman, apt, service, installing=False)
    if prepared is None:
        return 1
    host, kinds, argv, record = prepared
    code = 0
    for kind, unit in kinds:
        row = uninstall(host, kind, argv, unit, record)
        name = _hook_name(kind, unit)
        if row.result == ABSENT:
            _echo(f"q3cn-doctor: {name} is not installed ({row.path}).")
        elif row.result == REMOVED:
            _echo(f"q3cn-doctor: {name} removed: {row.path}")
            if kind == SERVICE:
                _echo("  Run `systemctl daemon-reload` for systemd to forget it.")
        else:
            _echo(f"q3cn-doctor: {name} left alone: {row.detail}", err=True)
            code = 1
    return code


def run_status(host: Host, as_json: bool) -> int:
    """``hook status``: the hooks and the last post-update check."""
    rows = status_rows(host)
    last = _last_check(host)
    if as_json:
        from q3cn_doctor.report.output import json_text

        sys.stdout.write(json_text({"hooks": [r.to_json() for r in rows],
                                    "last_check": last}) + "\n")
        return 0
    for row in rows:
        name = f"{row.unit} guard" if row.kind == SERVICE else f"{row.kind} hook"
        _echo(f"{name}: {row.result} ({row.path})")
        if row.exec:
            _echo(f"  {row.exec}")
    if last.get("error"):
        _echo(f"Last post-update check: {last['error']}")
    elif last.get("time"):
        counts = ", ".join(f"{n} {s}" for s, n in last["counts"].items() if n)
        _echo(f"Last post-update check: {last['time']} ({counts or 'no findings'}); "
              f"{last['path']}")
    else:
        _echo(f"Last post-update check: none yet ({last['path']})")
    return 0


def _last_check(host: Host) -> dict[str, Any]:
    """The memory of the last ``check --hook`` run by a hook (as root: the state folder)."""
    from q3cn_doctor.checking.findings import STATUSES
    from q3cn_doctor.hooks.state import MEMORY_NAME, HookStateError, load_memory

    path = f"{host.state_dir}/{MEMORY_NAME}"
    try:
        document = load_memory(host, path)
    except (HookStateError, OSError) as exc:
        hint = " (run it with sudo)" if isinstance(exc.__cause__ or exc, PermissionError) else ""
        return {"path": path, "error": f"{exc}{hint}"}
    if document is None:
        return {"path": path}
    counts = dict.fromkeys(STATUSES, 0)
    for entry in document["findings"].values():
        if isinstance(entry, dict) and entry.get("status") in counts:
            counts[entry["status"]] += 1
    return {"path": path, "time": document.get("time"), "counts": counts}

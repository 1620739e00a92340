"""The config file: TOML, the launching user's first, then the system's.

Search order: ``$XDG_CONFIG_HOME/q3cn-doctor/config.toml`` of the launching
user (``~/.config`` by default), then ``/etc/q3cn-doctor/config.toml``. The
user's keys win over the system's, and command-line options win over both.
Keys are the long option names: ``profile``, ``model``, ``server``,
``ctx-size`` (or ``ctx_size``), ``user``, ``only``, ``skip``, ``ram-rated`` (MT/s),
and for ``launch``: ``port``, ``host``, ``alias``, ``seed`` and ``args`` (extra llama-server
arguments, a list of strings; arguments after ``launch --`` come after them and win),
and ``[tune]``, the table ``tune --save`` writes (``write_tune``; plan/tuned.py).

Run as root, the user's file is still read (their model, profile and context are what
is judged), but it cannot make root run their code: the host runs a program such as
``server`` as the one user who controls it, never as root (host/trust.py, SECURITY.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import sys

from q3cn_doctor.host.base import resolve_under

KEYS = ("profile", "model", "server", "ctx_size", "user", "only", "skip", "ram_rated",
        "port", "host", "alias", "args", "seed", "tune")


def _toml():
    """The TOML reader, imported only when a config file exists (most runs have none)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on older Pythons only
        import tomli as tomllib
    return tomllib


class ConfigError(ValueError):
    """A config file that exists but cannot be used."""


def launching_user() -> str | None:
    """Who will run llama-server: the user behind sudo, else whoever runs this."""
    name = os.environ.get("SUDO_USER")
    if name:
        return name
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return None


def user_config_path(user: str | None) -> str | None:
    try:
        entry = pwd.getpwnam(user) if user else pwd.getpwuid(os.getuid())
    except KeyError:
        return None
    base = os.environ.get("XDG_CONFIG_HOME") if entry.pw_uid == os.getuid() else None
    base = base or os.path.join(entry.pw_dir, ".config")
    return os.path.join(base, "q3cn-doctor", "config.toml")


def load(explicit: str | None, user: str | None, root: str = "") -> tuple[dict, list[str]]:
    """Merged settings and the files they came from. Under ``root`` (--root) each path is
    resolved inside the tree, its symlinks too: an absolute link must not lead out of it."""
    if explicit:
        if not os.path.isfile(explicit):
            raise ConfigError(f"config file {explicit} does not exist")
        paths = [explicit]
    else:
        paths = ["/etc/q3cn-doctor/config.toml"]
        user_path = user_config_path(user)
        if user_path:
            paths.append(user_path)  # later wins
        if root:
            paths = [resolve_under(root, path) for path in paths]
    settings: dict = {}
    used = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        tomllib = _toml()
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in KEYS:
                raise ConfigError(f"{path}: unknown key {key!r} (known: {', '.join(KEYS)})")
            settings[name] = _checked(path, key, name, value)
        used.append(path)
    return settings, used


def _checked(path: str, key: str, name: str, value: object) -> object:
    """A value of the right type, or a ConfigError naming the file and key."""
    if name == "ctx_size":
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        want = "a whole number of tokens, 1 or more"
    elif name == "ram_rated":
        ok = isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 20000
        want = "the kit's rated speed in MT/s, a whole number such as 6000"
    elif name == "port":
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535
        want = "a TCP port number, 1 to 65535"
    elif name == "seed":
        ok = isinstance(value, int) and not isinstance(value, bool)
        want = "a whole number (llama-server's --seed)"
    elif name == "args":  # extra llama-server arguments, e.g. ["-ctk", "q8_0"]
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        want = "a list of strings (llama-server arguments)"
    elif name == "tune":
        ok = isinstance(value, dict)
        want = "a table (written by `q3cn-doctor tune --save`)"
    elif name in ("only", "skip"):
        ok = isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(item, str) for item in value))
        want = "a string or a list of strings"
    else:
        ok = isinstance(value, str)
        want = "a string"
    if not ok:
        raise ConfigError(f"{path}: {key} must be {want}, not {value!r}")
    return value


# -- writing the [tune] table ------------------------------------------------------------------

def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value if item is not None) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _toml_table(name: str, table: dict) -> list[str]:
    """``[name]`` with its plain keys, then each sub-table; None values left out (TOML
    has no null: a missing key reads back as None)."""
    lines = [f"[{name}]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()
              if value is not None and not isinstance(value, dict)]
    for key, value in table.items():
        if isinstance(value, dict):
            lines += [""] + _toml_table(f"{name}.{key}", value)
    return lines


def write_tune(path: str, tune: dict) -> None:
    """Replace the config file's ``[tune]`` table (and its sub-tables), keeping every
    other line as it was; the file is created where missing, replaced atomically."""
    try:
        with open(path, encoding="utf-8") as handle:
            old = handle.read().splitlines()
    except FileNotFoundError:
        old = []
    kept, inside = [], False
    for line in old:
        header = line.strip()
        if header.startswith("[") and not header.startswith("[["):
            inside = header == "[tune]" or header.startswith("[tune.")
        if not inside:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    text = "\n".join(kept + ([""] if kept else []) + _toml_table("tune", tune)) + "\n"
    _toml().loads(text)  # what we write must read back
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temp = f"{path}.q3cn-doctor.tmp"
    with open(temp, "w", encoding="utf-8") as handle:
        handle.write(text)
    with contextlib.suppress(FileNotFoundError):
        found = os.stat(path)
        os.chmod(temp, found.st_mode & 0o7777)
        os.chown(temp, found.st_uid, found.st_gid)
    os.replace(temp, path)

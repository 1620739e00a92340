"""The config file: TOML, the launching user's first, then the system's.

Search order: ``$XDG_CONFIG_HOME/q3cn-doctor/config.toml`` of the launching
user (``~/.config`` by default), then ``/etc/q3cn-doctor/config.toml``. The
user's keys win over the system's, and command-line options win over both.
Keys are the long option names: ``profile``, ``model``, ``server``,
``ctx-size`` (or ``ctx_size``), ``user``, ``only``, ``skip``, ``ram-rated`` (MT/s),
and for ``launch``: ``port``, ``host``, ``alias``, ``seed`` and ``args`` (extra llama-server
arguments, a list of strings; arguments after ``launch --`` come after them and win).
"""

from __future__ import annotations

import os
import pwd
import sys

from q3cn_doctor.host.base import resolve_under

KEYS = ("profile", "model", "server", "ctx_size", "user", "only", "skip", "ram_rated",
        "port", "host", "alias", "args", "seed")


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

"""The options every host-reading command shares, after the config file is merged in."""

from __future__ import annotations

import re

from msgspec import Struct, field
from q3cn_doctor.profiles import DEFAULT_CTX_SIZE, DEFAULT_PROFILE


class Options(Struct):
    """What the command line and config file asked for, as one record every layer reads."""
    snapshot: str | None = None
    root: str | None = None
    model: str | None = None
    profile: str = DEFAULT_PROFILE
    server: str | None = None
    ctx_size: int = DEFAULT_CTX_SIZE
    ctx_size_given: bool = False  # chosen by the user: never capped at the trained context
    user: str | None = None
    config: str | None = None
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    plugins: bool = True
    ram_rated: int | None = None  # MT/s the user says the RAM is sold for (--ram-rated)
    measure: bool = False  # --measure: time the RAM's read bandwidth (live machine only)
    port: int | None = None  # llama-server's port (launch --port, or the config file)
    host: str | None = None  # llama-server's --host, from the config file
    alias: str | None = None  # llama-server's --alias, from the config file
    server_args: list[str] = field(default_factory=list)  # config `args`, then launch's extras
    tune: dict | None = None  # the config file's [tune] (tune --save), plan/tuned.py
    no_tune: bool = False  # --no-tune: launch without any saved tune
    seed: int | None = None  # llama-server's --seed, from the config file
    serve_for: str = "agent"  # launch --for: agent, chat or batch (plan/serving.py)
    server_env: dict[str, str] = field(default_factory=dict)  # from an imported command
    affinity: str | None = None  # CPUs of an imported command's taskset -c

    @property
    def ctx_chosen(self) -> bool:
        """The context is the user's (given, or other than the default): never capped."""
        return self.ctx_size_given or self.ctx_size != DEFAULT_CTX_SIZE


# -- names that become file names and lines of configuration files --------------------------
_USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?")
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\-]+(?:@[A-Za-z0-9:_.\\-]*)?")
UNIT_NAME_MAX = 255  # systemd's UNIT_NAME_MAX, less the terminating NUL


def user_name_problem(name: str) -> str | None:
    """Why ``name`` is no user name useradd would create (shadow's is_valid_user_name: at
    most 32 characters of letters, digits, ``_``, ``.`` and ``-``, not starting with ``-``,
    not all digits, a trailing ``$`` for machine accounts); None where it is one. It
    becomes a limits.d file name and a pam_limits line: a line break would split it."""
    if not name or len(name) > 32 or name in (".", "..") or name.isdecimal():
        return f"{name!r} is not a user name"
    if not _USER_NAME.fullmatch(name) or not name.isascii():
        return f"{name!r} is not a user name (letters, digits, _ . - and a final $ only)"
    return None


def unit_name_problem(name: str) -> str | None:
    """Why ``name`` (``.service`` optional) is no systemd service name (unit_name_is_valid:
    letters, digits, ``:_.\\-``, one ``@`` after a non-empty prefix, at most 255
    characters); None where it is one. It becomes a drop-in folder and a unit line."""
    stem = name[:-len(".service")] if name.endswith(".service") else name
    if (not stem or len(stem) + len(".service") > UNIT_NAME_MAX or stem.startswith(("-", "@"))
            or not _UNIT_NAME.fullmatch(stem)):
        return f"{name!r} is not a systemd unit name"
    return None

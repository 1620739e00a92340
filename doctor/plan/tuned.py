"""A saved tune: the llama-server settings ``q3cn-doctor tune`` measured best, and what
they were measured on.

A tune is only true for the build, the model and the machine it was measured on: a new
llama.cpp changes its kernels, another model its shape, another CPU or GPU everything.
So it is kept with a fingerprint of all three, and ``launch`` uses it only where the
fingerprint still matches; where it does not, ``mismatch`` says what changed.

``tune`` keeps the winner in the user's state folder (``tune.json``, see
``Host.user_state_dir``); ``tune --save`` also writes it into the config file as a
``[tune]`` table, which wins over the state folder's.
"""

from __future__ import annotations

import json
import os

from msgspec import Struct, field
from q3cn_doctor.facts import Facts, FactsError
from q3cn_doctor.host.base import Host
from q3cn_doctor.plan.placement import usable_gpus
from q3cn_doctor.units import GIB

FORMAT = 1
STATE_NAME = "tune.json"


class TuneError(Exception):
    """A saved tune that cannot be read, or does not fit this launch."""


class SavedTune(Struct):
    """A tune's winning setting, kept with what it was measured on so another build,
    model or machine does not inherit it."""
    fingerprint: dict  # {"build": ..., "model": ..., "machine": ...}
    setting: dict  # measure.setting.Setting.to_json()
    server_args: list[str]  # the setting in the tuned build's llama-server flags
    measured: dict = field(default_factory=dict)  # tg/pp of the winner, method, trials
    time: str = ""
    source: str = ""  # where it was read from (a path, or "config file")

    def to_json(self) -> dict:
        return {"format": FORMAT, "time": self.time, "fingerprint": self.fingerprint,
                "setting": self.setting, "server_args": self.server_args,
                "measured": self.measured}

    @classmethod
    def from_json(cls, data: object, source: str) -> SavedTune:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise TuneError(f"{source} is not a tune this version can read (format "
                            f"{data.get('format') if isinstance(data, dict) else '?'})")
        try:
            args = data["server_args"]
            if not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
                raise TypeError("server_args must be a list of strings")
            return cls(fingerprint=dict(data["fingerprint"]), setting=dict(data["setting"]),
                       server_args=list(args), measured=dict(data.get("measured") or {}),
                       time=str(data.get("time") or ""), source=source)
        except (KeyError, TypeError, ValueError) as exc:
            raise TuneError(f"{source} is not a tune q3cn-doctor wrote ({exc})") from exc


def fingerprint(facts: Facts) -> dict:
    """The build, model and machine a tune is measured on (what launch compares)."""
    server = facts.server
    model = facts.model
    try:
        cpu = facts.cpu
        cpu_part = {"model": cpu.model_name, "cpus": cpu.logical}
    except FactsError:
        cpu_part = {"model": None, "cpus": None}
    try:
        total = facts.memory.total_bytes
    except FactsError:
        total = None
    gpus = [f"{g.get('name')} {round((g.get('memory_total_bytes') or 0) / GIB)} GiB"
            for g in usable_gpus(facts)]
    return {
        "build": {"version": server.version, "commit": server.commit,
                  "bytes": server.size_bytes, "backends": sorted(server.backends)},
        "model": {"file": os.path.basename(model.path or "") or None,
                  "bytes": model.file_bytes, "architecture": model.architecture,
                  "file_type": model.file_type},
        "machine": {**cpu_part, "ram_gib": round(total / GIB) if total else None,
                    "gpus": gpus},
    }


_WHAT = {"build": "llama-server build", "model": "model", "machine": "machine"}


def mismatch(saved: dict, now: dict) -> list[str]:
    """What differs between a tune's fingerprint and this launch's, one line each."""
    lines = []
    for part, what in _WHAT.items():
        old, new = saved.get(part) or {}, now.get(part) or {}
        changed = [f"{key} {_show(old.get(key))} -> {_show(new.get(key))}"
                   for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
        if changed:
            lines.append(f"{what}: " + "; ".join(changed))
    return lines


def _show(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return "?" if value is None else str(value)


def state_path(host: Host) -> str | None:
    folder = host.user_state_dir()
    return f"{folder}/{STATE_NAME}" if folder else None


def load_state(host: Host) -> SavedTune | None:
    """The tune kept in the state folder; None where there is none."""
    path = state_path(host)
    if path is None or host.lstat(path) is None:
        return None
    try:
        data = json.loads(host.read_bytes(path))
    except (OSError, ValueError) as exc:
        raise TuneError(f"cannot read the saved tune {path}: {exc}") from exc
    return SavedTune.from_json(data, path)


def store_state(host: Host, tune: SavedTune) -> str:
    path = state_path(host)
    if path is None:
        raise TuneError("neither XDG_STATE_HOME nor HOME is set: nowhere to keep the tune")
    host.write_bytes(path, (json.dumps(tune.to_json(), indent=1) + "\n").encode(), 0o644)
    return path


def saved_tune(facts: Facts, config_tune: dict | None) -> SavedTune | None:
    """The tune a launch would use: the config file's ``[tune]``, else the state folder's."""
    if config_tune is not None:
        return SavedTune.from_json(config_tune, "the config file's [tune]")
    return load_state(facts.host)


def check_tune(facts: Facts, tune: SavedTune) -> None:
    """TuneError, saying what changed, where ``tune`` was measured on another build,
    model or machine than this launch's."""
    changes = mismatch(tune.fingerprint, fingerprint(facts))
    if changes:
        raise TuneError(
            f"the saved tune ({tune.source}, {tune.time or 'undated'}) was measured on "
            "another " + " and ".join(line.split(":")[0] for line in changes) + ":\n  "
            + "\n  ".join(changes) + "\nRun `q3cn-doctor tune` again for this one, or "
            "launch without it (--no-tune).")

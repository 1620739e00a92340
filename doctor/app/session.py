"""The session a command runs in: its options (command line over config file) and its host."""

from __future__ import annotations

from typing import Any

import click
from q3cn_doctor.options import Options
from q3cn_doctor.profiles import PROFILES


def build_options(ctx: click.Context, params: dict[str, Any]) -> Options:
    """Command-line values, filled in from the config file where left at their default."""
    from q3cn_doctor.app import config

    root = params.get("root") or ""
    user = params.get("user") or config.launching_user()
    try:
        settings, _ = config.load(params.get("config_path"), user, root.rstrip("/"))
    except config.ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    merged: dict[str, Any] = {}
    for name in config.KEYS:
        value = params.get(name)
        source = ctx.get_parameter_source(name) if name in params else None
        given = source not in (None, click.core.ParameterSource.DEFAULT)
        if not given and name in settings:
            value = settings[name]
            if name in ("only", "skip") and isinstance(value, str):
                value = [value]
        merged[name] = value
    if merged.get("user") is not None or user:
        from q3cn_doctor.options import user_name_problem

        problem = user_name_problem(merged.get("user") or user)
        if problem:
            raise click.BadParameter(problem, param_hint="--user")
    if merged.get("profile") not in PROFILES:
        raise click.UsageError(f"unknown profile {merged.get('profile')!r} in the config file")
    return Options(
        snapshot=params.get("snapshot"),
        root=params.get("root"),
        model=merged["model"],
        profile=merged["profile"],
        server=merged["server"],
        ctx_size=int(merged["ctx_size"]),
        # A snapshot's default user is the recorded one (make_host fills it in), not
        # whoever replays it.
        user=merged["user"] or (None if params.get("snapshot") else user),
        config=params.get("config_path"),
        only=list(merged.get("only") or []),
        skip=list(merged.get("skip") or []),
        ram_rated=merged.get("ram_rated"),
        measure=bool(params.get("measure")),
        port=merged.get("port"),
        host=merged.get("host"),
        alias=merged.get("alias"),
        server_args=list(merged.get("args") or []) + list(params.get("server_args") or ()),
        tune=merged.get("tune"),
        no_tune=bool(params.get("no_tune")),
    )


EUID_ENV = "Q3CN_DOCTOR_EUID"
"""With --root only: the identity the tree's host reports (``RootHost(euid=...)``), so
the fix engine's and the hooks' root and not-root paths can be run whoever runs them
(tests, image builders)."""


def make_host(options: Options):
    """The host the options name: a snapshot, a --root tree, or this machine. A snapshot
    with no --user given sets options.user to the user it recorded."""
    if options.snapshot and options.root:
        raise click.UsageError("--snapshot and --root cannot be combined")
    if options.snapshot:
        from q3cn_doctor.host.snapshot import SnapshotError, open_snapshot

        try:
            host = open_snapshot(options.snapshot)
        except SnapshotError as exc:
            from q3cn_doctor.report.output import printable  # names from the archive

            raise click.BadParameter(printable(exc), param_hint="--snapshot") from exc
        options.user = options.user or host.recorded_user()
        return host
    if options.root:
        import os

        from q3cn_doctor.host.live import RootHost

        euid = os.environ.get(EUID_ENV, "").strip()
        return RootHost(options.root, euid=int(euid) if euid.isdecimal() else None)
    from q3cn_doctor.host.live import LiveHost

    return LiveHost()

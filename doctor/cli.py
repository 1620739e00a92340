"""The command line. Only click is imported up front: ``--help`` and shell
completion must stay fast, so every command imports what it needs when it runs."""

from __future__ import annotations

import sys
from typing import Any, Callable

import click

from .options import DEFAULT_CTX_SIZE, DEFAULT_PROFILE, Options
from .profiles import PROFILES
from .version import __version__

_MODEL_OPTIONS = [
    click.option("--model", type=click.Path(dir_okay=False), help="A GGUF model file to plan for."),
    click.option("--profile", type=click.Choice(sorted(PROFILES)), default=DEFAULT_PROFILE,
                 show_default=True, help="Embedded model profile used when no --model is given."),
    click.option("--server", type=click.Path(dir_okay=False), help="The llama-server binary."),
    click.option("--ctx-size", type=click.IntRange(min=1), default=DEFAULT_CTX_SIZE,
                 show_default=True, help="Context length llama-server will run with."),
    click.option("--user", metavar="NAME",
                 help="User who will run llama-server [default: SUDO_USER, else you]."),
    click.option("--config", "config_path", type=click.Path(dir_okay=False),
                 help="Config file instead of ~/.config and /etc/q3cn-doctor/config.toml."),
]
_SOURCE_OPTIONS = [
    click.option("--snapshot", metavar="DIR|FILE.tar.gz",
                 help="Replay a snapshot instead of reading this machine."),
    click.option("--root", metavar="PREFIX", type=click.Path(exists=True, file_okay=False),
                 help="Read the machine under PREFIX (as laid out in a snapshot's fs/); "
                      "runs no commands."),
]


def _apply(decorators: list[Callable]) -> Callable:
    def decorate(func: Callable) -> Callable:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return decorate


model_options = _apply(_MODEL_OPTIONS)
host_options = _apply(_SOURCE_OPTIONS + _MODEL_OPTIONS)


def build_options(ctx: click.Context, params: dict[str, Any]) -> Options:
    """Command-line values, filled in from the config file where left at their default."""
    from . import config

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
    if merged.get("profile") not in PROFILES:
        raise click.UsageError(f"unknown profile {merged.get('profile')!r} in the config file")
    return Options(
        snapshot=params.get("snapshot"),
        root=params.get("root"),
        model=merged["model"],
        profile=merged["profile"],
        server=merged["server"],
        ctx_size=int(merged["ctx_size"]),
        user=merged["user"] or user,
        config=params.get("config_path"),
        only=list(merged.get("only") or []),
        skip=list(merged.get("skip") or []),
    )


def make_host(options: Options):
    """The host the options name: a snapshot, a --root tree, or this machine."""
    if options.snapshot and options.root:
        raise click.UsageError("--snapshot and --root cannot be combined")
    if options.snapshot:
        from .snapshot import SnapshotError, open_snapshot

        try:
            return open_snapshot(options.snapshot)
        except SnapshotError as exc:
            raise click.BadParameter(str(exc), param_hint="--snapshot") from exc
    if options.root:
        from .live import RootHost

        return RootHost(options.root)
    from .live import LiveHost

    return LiveHost()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="q3cn-doctor")
def main() -> None:
    """Find what slows llama-server on this machine, fix what software can fix,
    and launch it tuned.

    Start with `q3cn-doctor check`. Shell completion: see the README
    (eval "$(_Q3CN_DOCTOR_COMPLETE=bash_source q3cn-doctor)").
    """


@main.command()
@host_options
@click.option("--only", multiple=True, metavar="IDS",
              help="Run only these checks or areas (comma-separated or repeated).")
@click.option("--skip", multiple=True, metavar="IDS", help="Skip these checks or areas.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document to stdout.")
@click.option("--list", "list_checks", is_flag=True, help="List every check and exit.")
@click.option("-v", "--verbose", is_flag=True, help="Show where every value came from.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too.")
@click.option("--no-plugins", is_flag=True, help="Do not load third-party checks.")
@click.pass_context
def check(ctx: click.Context, as_json: bool, list_checks: bool, verbose: bool, strict: bool,
          no_plugins: bool, **params: Any) -> None:
    """Run every check and report what costs tokens/s.

    Exit status: 0 nothing failed (warnings alone exit 0), 1 a check failed
    (with --strict, warnings count), 2 usage error, 3 a check or plugin crashed.
    """
    from .findings import exit_code
    from .output import print_check_list
    from .runner import SelectionError, available_checks, run_checks, select, select_failures

    options = build_options(ctx, params)
    options.plugins = not no_plugins
    specs, plugin_failures = available_checks(options.plugins)
    if list_checks:
        print_check_list(specs, sys.stdout)
        for failure in plugin_failures:
            click.echo(f"{failure.title}: {failure.observed}", err=True)
        return
    try:
        selected = select(specs, options.only, options.skip)
    except SelectionError as exc:
        raise click.UsageError(str(exc)) from exc
    from .facts import Facts

    facts = Facts(make_host(options), options)
    findings = select_failures(plugin_failures, options.only, options.skip) + run_checks(
        facts, selected)
    if as_json:
        from .output import json_document, print_json
        from .summary import host_summary

        print_json(json_document(findings, facts.to_json(), host_summary(facts)))
    else:
        from .output import print_text

        print_text(findings, _header(facts.host, options), verbose, sys.stdout)
    ctx.exit(exit_code(findings, strict))


def _header(host, options: Options) -> str:
    model = PROFILES[options.profile]["name"]
    return f"q3cn-doctor {__version__}: {host.describe()}, {model}, ctx {options.ctx_size}"


@main.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--tar", "tar_path", type=click.Path(dir_okay=False),
              help="Also (or only) pack the snapshot into this .tar.gz.")
@click.option("--no-redact", is_flag=True,
              help="Keep serial numbers, GPU UUIDs, hostname and the full environment.")
@click.option("--no-plugins", is_flag=True, help="Do not run third-party checks while recording.")
@model_options
@click.pass_context
def snapshot(ctx: click.Context, directory: str | None, tar_path: str | None, no_redact: bool,
             no_plugins: bool, **params: Any) -> None:
    """Record everything the checks read on this machine into DIRECTORY.

    Replay it anywhere with `q3cn-doctor check --snapshot DIRECTORY` (or the
    .tar.gz); send it with a bug report.
    """
    import os
    import tempfile

    from .facts import Facts
    from .runner import available_checks, run_checks
    from .snapshot import RecordingHost, write_tar

    if not directory and not tar_path:
        raise click.UsageError("give a DIRECTORY, --tar FILE, or both")
    if directory and os.path.isdir(directory) and os.listdir(directory):
        raise click.UsageError(f"{directory} is not empty: a snapshot needs a new folder")
    options = build_options(ctx, params)
    options.plugins = not no_plugins
    with tempfile.TemporaryDirectory(prefix="q3cn-doctor-") as scratch:
        target = directory or os.path.join(scratch, "snapshot")
        host = RecordingHost(target, redacted=not no_redact)
        specs, _ = available_checks(options.plugins)
        facts = Facts(host, options)
        run_checks(facts, specs)
        facts.to_json()  # every facts section, whether or not a check asked
        host.finish()
        if tar_path:
            write_tar(target, tar_path)
    where = " and ".join(p for p in (directory, tar_path) if p)
    redaction = "kept private data (--no-redact)" if no_redact else (
        "serial numbers, UUIDs, hostname and non-allow-listed environment removed")
    click.echo(f"Snapshot written to {where}; {redaction}.", err=True)

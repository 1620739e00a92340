"""`q3cn-doctor launch`: import the user's command, run the checks, make the plan, then
print it, write it as a systemd unit, or become llama-server."""

from __future__ import annotations

import sys

import click
from msgspec import Struct
from q3cn_doctor.app.session import make_host
from q3cn_doctor.options import Options

PREFIX = "q3cn-doctor launch"


class LaunchRequest(Struct):
    """What ``launch`` was asked to do beyond the plan: print or JSON only, import a
    command, write or revert a unit, go on past failures."""
    print_only: bool = False
    as_json: bool = False
    force: bool = False
    from_file: str | None = None
    allow_root: bool = False
    unit: str | None = None
    revert: bool = False


def say(text: str) -> None:
    """A line of ``launch`` on stderr, escaped: it quotes paths, flags and check titles."""
    note(f"{PREFIX}: {text}")


def note(text: str) -> None:
    from q3cn_doctor.report.output import printable

    click.echo(printable(text), err=True)


def run_launch(options: Options, request: LaunchRequest) -> int:
    """The exit status (where it does not become llama-server)."""
    from q3cn_doctor.checking.findings import FAIL, WARN
    from q3cn_doctor.checking.runner import SelectionError, available_checks, run_checks, select
    from q3cn_doctor.facts import Facts
    from q3cn_doctor.launch.launcher import LaunchError, build_plan
    from q3cn_doctor.launch.run_as import RunAsError, launch_identity
    from q3cn_doctor.options import unit_name_problem

    problem = unit_name_problem(request.unit) if request.unit is not None else None
    if request.unit is not None and not problem and not any(
            word in request.unit for word in ("llama", "q3cn")):
        problem = (f"{request.unit!r}: q3cn-doctor writes only llama-server services, named "
                   "with llama or q3cn in them (llama-server, llama-coder...)")
    if problem:  # it becomes a file under /etc/systemd/system
        raise click.BadParameter(problem, param_hint="--unit")
    specs, _ = available_checks(options.plugins)
    try:
        selected = select(specs, [], options.skip)
    except SelectionError as exc:
        raise click.UsageError(str(exc)) from exc
    showing = request.print_only or request.as_json
    host = make_host(options)
    if host.kind != "live" and not showing and not (request.revert and options.root):
        raise click.UsageError("--snapshot and --root can only show the plan: add --print "
                               "or --json (--root also takes --unit NAME --revert)")
    if request.unit and request.revert:
        return _revert_unit(host, request.unit)
    command = _read_script(request.from_file, options) if request.from_file else None
    facts = Facts(host, options)
    changes = _import(command, facts, options) if command is not None else []
    if not options.model and host.kind == "live":
        found = _find_model(options, host)
        if found is not None:
            say(found)
            return 1
    try:
        identity = launch_identity(host, options.user, request.allow_root)
    except RunAsError as exc:
        if not showing:
            say(str(exc))
            return 1
        say(f"warning: {exc}")
        identity = None
    findings = run_checks(facts, selected)
    failed = [f for f in findings if f.status == FAIL]
    for finding in findings:
        if finding.check == "server.exposure" and finding.status == WARN:
            say(f"warning: {finding.title} ({finding.id}): {finding.recommended}")
    try:
        plan = build_plan(facts, options, identity, changes)
    except LaunchError as exc:
        say(str(exc))
        return 1
    _report(plan, failed, request)
    if request.as_json or request.print_only:
        return _show(plan, request.as_json)
    if failed and not request.force:
        say("not launched: fix the above (`q3cn-doctor check` explains each), skip them "
            "with --skip, or use --force.")
        return 1
    if request.unit:
        return _write_unit(host, plan, request.unit, facts)
    return _exec(plan, identity)


def _read_script(path: str, options: Options):
    """The llama-server command in the user's script (never run, only read)."""
    from q3cn_doctor.parsers.shell_command import CommandError, read_command

    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read(1 << 20)
        command = read_command(text)
    except (OSError, CommandError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--from") from exc
    if not options.server and command.server.startswith("/") and "${" not in command.server:
        import os

        if os.path.isfile(command.server):
            options.server = command.server
    return command


def _import(command, facts, options: Options) -> list[str]:
    """Your command's arguments, translated for this build, become the plan's own extra
    arguments (the config file's `args` and those after `--` still come after them)."""
    from q3cn_doctor.facts import FactsError
    from q3cn_doctor.parsers.server_help import import_args

    build = facts.server.build() if facts.server.path else None
    changes: list[str] = [f"{word}: not expanded (set it, or give the value on the command "
                          "line)" for word in command.unresolved if word != command.server]
    if build is None:
        options.server_args = list(command.args) + list(options.server_args)
        return changes + ["kept as written: what this llama-server accepts is unknown"]
    try:
        gpu = bool(facts.gpus)
    except FactsError:
        gpu = False
    imported = import_args(command.args, build, gpu)
    options.server_args = imported.args + list(options.server_args)
    if imported.model and not options.model:
        options.model = imported.model
    options.server_env = {k: v for k, v in command.env.items() if k != "LLAMA_SET_ROWS"}
    if "LLAMA_SET_ROWS" in command.env:
        changes.append("LLAMA_SET_ROWS dropped: a no-op since llama.cpp PR #15505 (2025-08)")
    if command.cpu_list:
        options.affinity = command.cpu_list
    return imported.changes + changes


def _find_model(options: Options, host) -> str | None:
    """No --model: the profile's file where people keep GGUFs (the Hugging Face cache,
    ~/.cache/llama.cpp, ~/models), set in ``options``; else why not, and where it looked."""
    from q3cn_doctor.app.measure_command import resolve_model

    try:
        resolve_model(options, host)
    except click.UsageError as exc:
        return f"launch needs a model file: {exc.message}"
    return None


def _report(plan, failed: list, request: LaunchRequest) -> None:
    for flag in plan.unknown_extra:
        say(f"warning: this llama-server does not know {flag}")
    if plan.imported:
        say("changes to your command:")
        for change in plan.imported:
            note(f"  {change}")
    if request.print_only:
        for arg in plan.args:
            note(f"  # {' '.join([arg['flag'], *arg['values']])}: {arg['why']}")
    if failed:
        say("failing checks:")
        for finding in failed:
            note(f"  [fail] {finding.id}: {finding.title}")


def _show(plan, as_json: bool) -> int:
    from q3cn_doctor.launch.launcher import shell_command

    if as_json:
        from q3cn_doctor.report.output import json_text

        click.echo(json_text(plan.to_json()))
    else:
        click.echo(shell_command(plan))
    return 0


def _write_unit(host, plan, name: str, facts) -> int:
    from q3cn_doctor.launch.unit import unit_path, write_unit

    if host.euid() != 0:
        say(f"writing {unit_path(name)} needs root: run it with sudo")
        return 1
    outcome = write_unit(host, plan, name, f"llama-server with {facts.model.name}, planned "
                                           "by q3cn-doctor")
    say(f"{unit_path(name)}: {outcome.result}" + (f" ({outcome.detail})" if outcome.detail
                                                   else ""))
    if outcome.result in ("failed", "refused"):
        return 1
    click.echo(f"Next: systemctl daemon-reload && systemctl enable --now {name}; "
               f"`q3cn-doctor hook install --service {name}` checks the machine before "
               "every start.", err=True)
    return 0


def _revert_unit(host, name: str) -> int:
    from q3cn_doctor.launch.unit import revert_unit, unit_path

    if host.euid() != 0:
        say(f"removing {unit_path(name)} needs root: run it with sudo")
        return 1
    outcomes = revert_unit(host, name)
    if not outcomes:
        say(f"{unit_path(name)}: nothing of ours to remove")
        return 0
    for outcome in outcomes:
        say(f"{outcome.what}: {outcome.result}" + (f" ({outcome.detail})" if outcome.detail
                                                   else ""))
    return 1 if any(o.result == "failed" for o in outcomes) else 0


def _exec(plan, identity) -> int:
    from q3cn_doctor.launch.launcher import execute, shown_command

    model = plan.model.get("path")
    if identity is not None and identity.switch and model and not identity.can_read(model):
        say(f"{identity.name} cannot read {model} (llama-server runs as {identity.name}): "
            "move the model where that user can read it, or give --user")
        return 1
    say(shown_command(plan) + (f"  (as {identity.name})" if identity and identity.switch
                               else ""))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        execute(plan)
    except OSError as exc:
        say(f"cannot start {plan.argv[0]}: {exc}")
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return 0  # pragma: no cover - execute returns only by raising

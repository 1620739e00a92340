"""The command line. Only click is imported up front: ``--help`` and shell
completion must stay fast, so every command imports what it needs when it runs (the
session and its Options record too: msgspec, which records are built with, costs
milliseconds to import)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Callable

import click
from q3cn_doctor.profiles import DEFAULT_CTX_SIZE, DEFAULT_PROFILE, PROFILES
from q3cn_doctor.version import __version__

if TYPE_CHECKING:
    from q3cn_doctor.options import Options

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
    click.option("--ram-rated", "ram_rated", type=click.IntRange(100, 20000), metavar="MTS",
                 help="The speed your RAM kit is sold at (DDR5-6000: 6000), where neither its "
                      "SPD nor its part number tells."),
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


class _Context(click.Context):
    """click's, with the terminal measured by the report's own columns_of: click's
    formatter asks shutil, whose import (bz2, lzma, zlib: a few ms) no --help needs."""

    def make_formatter(self) -> click.HelpFormatter:
        from click import formatting
        from q3cn_doctor.report.terminal import columns_of

        max_width = self.max_content_width or 80
        # click's own rule: 2 narrower than the terminal, 80 columns where it has no width
        width = (self.terminal_width or formatting.FORCED_WIDTH
                 or max(min(columns_of(sys.stdout) or 80, max_width) - 2, 50))
        return self.formatter_class(width=width, max_width=max_width)


class _Command(click.Command):
    context_class = _Context


class _Group(click.Group):
    context_class = _Context
    command_class = _Command
    group_class = type  # a subgroup is a _Group too


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--html", "html_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write the report as one self-contained HTML page (for a bug report "
                   "or a forum post).")
@click.option("--list", "list_checks", is_flag=True, help="List every check and exit.")
@click.option("-v", "--verbose", is_flag=True,
              help="Show every finding in full, where each value came from, and where a "
                   "token's time goes (with --json: llama-server's parsed --help too).")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too.")
@click.option("--no-plugins", is_flag=True, help="Do not load third-party checks.")
@click.option("--measure", is_flag=True,
              help="Also time the RAM's read bandwidth and the model file's first GiB, "
                   "sample CPU load, clocks and throttling, and measure the model's speed (a "
                   "short llama-bench run of the plan); seconds, this machine only.")
@click.option("--hook", "hook_mode", is_flag=True,
              help="For a package manager's hook: print only what got worse since the last "
                   "run, one line each; at most 5 s; always exit 0.")
@click.pass_context
def check(ctx: click.Context, as_json: bool, html_path: str | None, list_checks: bool,
          verbose: bool, strict: bool, no_plugins: bool, hook_mode: bool,
          **params: Any) -> None:
    """Run every check and report what costs tokens/s.

    Exit status: 0 nothing failed (warnings alone exit 0), 1 a check failed
    (with --strict, warnings count), 2 usage error, 3 a check or plugin crashed.
    With --hook: always 0 (see `q3cn-doctor hook`).
    """
    if hook_mode:
        from q3cn_doctor.app.hook_command import check_hook

        flags = {"--json": as_json, "--list": list_checks, "--verbose": verbose,
                 "--strict": strict, "--measure": params.get("measure"),
                 "--html": bool(html_path)}
        check_hook(ctx, params, not no_plugins, [name for name, on in flags.items() if on])
        return
    from q3cn_doctor.app import session
    from q3cn_doctor.checking.findings import exit_code

    options = session.build_options(ctx, params)
    options.plugins = not no_plugins
    if list_checks:
        from q3cn_doctor.checking.runner import available_checks
        from q3cn_doctor.report.output import write_plain
        from q3cn_doctor.report.text import print_check_list

        specs, plugin_failures = available_checks(options.plugins)
        print_check_list(specs, sys.stdout)
        write_plain(sys.stderr, [f"{failure.title}: {failure.observed}"
                                 for failure in plugin_failures])
        return
    facts, findings = _run_selected(options)
    measured = _measured_speed(options, facts.host)
    from q3cn_doctor.app.reporting import emit

    emit(facts, findings, options, as_json=as_json, verbose=verbose, html_path=html_path,
         measured=measured)
    ctx.exit(exit_code(findings, strict))


def _measured_speed(options: Options, host) -> dict | None:
    """check --measure on this machine: the short speed measurement (None otherwise)."""
    if not options.measure or host.kind != "live":
        return None
    from q3cn_doctor.app.measure_command import short_measurement

    try:
        return short_measurement(options)
    except KeyboardInterrupt:
        return {"text": "Speed not measured: interrupted (llama.cpp stopped).", "error": True}


def _run_selected(options: Options) -> tuple[Any, list]:
    """The facts and the findings of the checks --only/--skip select (plugins included)."""
    from q3cn_doctor.app import session
    from q3cn_doctor.checking.runner import (
        SelectionError,
        available_checks,
        run_checks,
        select,
        select_failures,
    )
    from q3cn_doctor.facts import Facts

    facts = Facts(session.make_host(options), options)  # first: its commands run as checks load
    specs, plugin_failures = available_checks(options.plugins)
    try:
        selected = select(specs, options.only, options.skip)
    except SelectionError as exc:
        raise click.UsageError(str(exc)) from exc
    return facts, select_failures(plugin_failures, options.only, options.skip) + run_checks(
        facts, selected)


@main.command()
@click.argument("html_path", type=click.Path(dir_okay=False), metavar="FILE.html")
@host_options
@click.option("--only", multiple=True, metavar="IDS",
              help="Run only these checks or areas (comma-separated or repeated).")
@click.option("--skip", multiple=True, metavar="IDS", help="Skip these checks or areas.")
@click.option("--no-plugins", is_flag=True, help="Do not load third-party checks.")
@click.pass_context
def report(ctx: click.Context, html_path: str, no_plugins: bool, **params: Any) -> None:
    """Run every check and write FILE.html: one self-contained page (the speed ledger,
    the problems, the fix plan and the facts; no external files) to attach to a bug
    report or a forum post. Same as `check --html FILE.html`, without the text.
    """
    from q3cn_doctor.app import session

    options = session.build_options(ctx, params)
    options.plugins = not no_plugins
    facts, findings = _run_selected(options)
    from q3cn_doctor.app.reporting import fix_plan, make_ledger, write_html

    plan = fix_plan(facts, findings)
    write_html(html_path, facts, findings, options,
               make_ledger(facts, findings, options, plan), plan)



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

    from q3cn_doctor.checking.runner import available_checks, run_checks
    from q3cn_doctor.facts import Facts
    from q3cn_doctor.host.snapshot import RecordingHost, write_tar

    if not directory and not tar_path:
        raise click.UsageError("give a DIRECTORY, --tar FILE, or both")
    if directory and os.path.isdir(directory) and os.listdir(directory):
        raise click.UsageError(f"{directory} is not empty: a snapshot needs a new folder")
    from q3cn_doctor.app import session

    options = session.build_options(ctx, params)
    options.plugins = not no_plugins
    with tempfile.TemporaryDirectory(prefix="q3cn-doctor-") as scratch:
        target = directory or os.path.join(scratch, "snapshot")
        host = RecordingHost(target, redacted=not no_redact, user=options.user)
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
    from q3cn_doctor.report.output import printable

    click.echo(printable(f"Snapshot written to {where}; {redaction}."), err=True)


@main.group()
def bench() -> None:
    """Measure this machine: `q3cn-doctor bench speed`, `q3cn-doctor bench memory`."""


@bench.command("memory")
@click.option("--threads", type=click.IntRange(min=1),
              help="Reader threads [default: one per online CPU].")
@click.option("--buffer-mib", type=click.IntRange(min=16),
              help="Buffer to scan [default: 512 MiB, or 4x the last-level cache, at most a "
                   "quarter of available RAM].")
@click.option("--sysbench", "with_sysbench", is_flag=True,
              help="Also run `sysbench memory --memory-oper=read` the same way and compare.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document to stdout.")
@model_options
@click.pass_context
def bench_memory(ctx: click.Context, threads: int | None, buffer_mib: int | None,
                 with_sysbench: bool, as_json: bool, **params: Any) -> None:
    """Measure RAM read bandwidth (multi-threaded, about a second) beside its theory.

    Token generation reads the active weights from RAM once per token: this is
    its ceiling. Only this machine can be measured, not a snapshot.
    """
    from q3cn_doctor.app import session
    from q3cn_doctor.facts import Facts
    from q3cn_doctor.host.live import LiveHost
    from q3cn_doctor.measure.memory import run_memory_bench

    options = session.build_options(ctx, params)
    host = LiveHost()
    try:
        bench = run_memory_bench(host, Facts(host, options), threads,
                                 buffer_mib * 2**20 if buffer_mib else None, with_sysbench)
    except (OSError, MemoryError) as exc:
        raise click.ClickException(f"cannot measure: {exc}") from exc
    from q3cn_doctor.report.output import json_text, write_plain

    if as_json:
        click.echo(json_text(bench.to_json()))
    else:
        write_plain(sys.stdout, bench.text().splitlines())


_RUN_OPTIONS = [
    click.option("--method", type=click.Choice(["auto", "bench", "server"]), default="auto",
                 show_default=True,
                 help="llama-bench (-o json), llama-server timed through /completion, or "
                      "auto: llama-bench where installed beside llama-server or on PATH."),
    click.option("--repeats", type=click.IntRange(1, 50), default=3, show_default=True,
                 help="Runs of each measurement (after a warm-up)."),
    click.option("--allow-root", is_flag=True,
                 help="Run llama.cpp as root when the launching user is root (refused "
                      "otherwise: give --user NAME)."),
    click.option("--json", "as_json", is_flag=True, help="Print one JSON document to stdout."),
]


@bench.command("speed")
@_apply(_RUN_OPTIONS)
@click.option("--no-tune", is_flag=True, help="Measure the plan without the saved tune.")
@model_options
@click.pass_context
def bench_speed(ctx: click.Context, method: str, repeats: int, allow_root: bool,
                as_json: bool, no_tune: bool, **params: Any) -> None:
    """Measure prompt (pp) and generation (tg) tokens/s of your model, run as `launch`
    would run it, beside the speed model's prediction and its range.

    The model: --model, the config file's, or the profile's file found in the Hugging
    Face cache, ~/.cache/llama.cpp or ~/models. llama.cpp runs as the launching user
    (--user, or the one behind sudo), never as root unless --allow-root. Ctrl-C stops
    it. Exit status: 0 measured, 1 not measured, 130 interrupted.
    """
    from q3cn_doctor.app.measure_command import run_bench_speed

    params["no_tune"] = no_tune
    from q3cn_doctor.app import session

    options = session.build_options(ctx, params)
    ctx.exit(run_bench_speed(options, method, repeats, allow_root, as_json))


@main.command(short_help="Find the fastest llama-server setting here by measuring.")
@_apply(_RUN_OPTIONS)
@click.option("--budget", default="3m", show_default=True, metavar="DURATION",
              help="Time to spend measuring: 90s, 2m, 5m...")
@click.option("--save", is_flag=True,
              help="Also write the winner into the config file ([tune]).")
@model_options
@click.pass_context
def tune(ctx: click.Context, method: str, repeats: int, allow_root: bool, as_json: bool,
         budget: str, save: bool, **params: Any) -> None:
    """Search threads, batch/ubatch, the KV cache type, the load mode and the expert
    placement, starting from the plan's predicted optimum and measuring its neighbours
    (warm-up and repeats; a point wins only beyond the noise) within --budget.

    Prints what it tried with each trial's spread, and keeps the winner in your state
    folder (~/.local/state/q3cn-doctor/tune.json) for `launch`, with the build, model
    and machine it was measured on: `launch` refuses a tune measured on others.
    Exit status: 0 tuned, 1 the search could not start, 130 interrupted.
    """
    from q3cn_doctor.app.measure_command import parse_duration, run_tune

    seconds = parse_duration(budget)
    from q3cn_doctor.app import session

    options = session.build_options(ctx, params)
    ctx.exit(run_tune(options, seconds, repeats, method, save, allow_root, as_json))


_HOOK_KIND_OPTIONS = [
    click.option("--pacman", is_flag=True, help="The pacman (ALPM) hook in /etc/pacman.d/hooks."),
    click.option("--apt", is_flag=True, help="The apt DPkg::Post-Invoke in /etc/apt/apt.conf.d."),
    click.option("--service", metavar="NAME",
                 help="A systemd drop-in that checks before the llama-server service NAME "
                      "starts."),
    click.option("--root", metavar="PREFIX", type=click.Path(exists=True, file_okay=False),
                 help="Install into the tree under PREFIX instead of this machine."),
]


@main.group(short_help="Re-check after driver, kernel and llama.cpp updates; guard a service.")
def hook() -> None:
    """Re-check this machine after NVIDIA driver, CUDA, kernel and llama.cpp updates
    (pacman or apt hook), or before a llama-server service starts (--service NAME).

    The hook runs `q3cn-doctor check --hook`: it prints only what got worse since
    the last run and never fails an upgrade.
    """


def _hook_call(run: Callable[..., int], *args: Any) -> int:
    from q3cn_doctor.hooks.install import HookError

    try:
        return run(*args)
    except HookError as exc:
        raise click.UsageError(str(exc)) from exc


def _root_host(root: str | None):
    """The machine a hook command changes: this one, or the tree under --root."""
    from q3cn_doctor.app import session
    from q3cn_doctor.options import Options

    return session.make_host(Options(root=root))


@hook.command("install")
@_apply(_HOOK_KIND_OPTIONS)
@click.option("--warn-only", is_flag=True,
              help="With --service: log a failed check and start the service anyway.")
@click.pass_context
def hook_install(ctx: click.Context, pacman: bool, apt: bool, service: str | None,
                 root: str | None, warn_only: bool) -> None:
    """Install a hook; without a flag, the one for this machine's package manager.

    Exit status: 0 installed (or already), 1 refused (not root, or a file there that
    q3cn-doctor did not write), 2 usage error.
    """
    from q3cn_doctor.app import session
    from q3cn_doctor.hooks.install import run_install

    params = {"root": root, "profile": DEFAULT_PROFILE, "ctx_size": DEFAULT_CTX_SIZE}
    ctx.exit(_hook_call(run_install, _root_host(root), pacman, apt, service, warn_only,
                        lambda: session.build_options(ctx, params), session.make_host))


@hook.command("uninstall")
@_apply(_HOOK_KIND_OPTIONS)
@click.pass_context
def hook_uninstall(ctx: click.Context, pacman: bool, apt: bool, service: str | None,
                   root: str | None) -> None:
    """Remove a hook q3cn-doctor installed; without a flag, the pacman and apt ones.

    A file without q3cn-doctor's header, or changed since it was installed, is
    reported and left alone (exit 1).
    """
    from q3cn_doctor.hooks.install import run_uninstall

    ctx.exit(_hook_call(run_uninstall, _root_host(root), pacman, apt, service))


@hook.command("status")
@click.option("--root", metavar="PREFIX", type=click.Path(exists=True, file_okay=False),
              help="Look at the tree under PREFIX instead of this machine.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document to stdout.")
@click.pass_context
def hook_status(ctx: click.Context, root: str | None, as_json: bool) -> None:
    """Show which hooks are installed and the last post-update check."""
    from q3cn_doctor.hooks.install import run_status

    ctx.exit(_hook_call(run_status, _root_host(root), as_json))


@main.command(short_help="Plan the fixes (a dry run), or apply, revert or list them.")
@host_options
@click.option("--apply", "do_apply", is_flag=True,
              help="Make the planned changes (asks first on a terminal; --yes skips that).")
@click.option("--revert", is_flag=True,
              help="Undo every change still in effect, newest first, to the recorded values.")
@click.option("--status", "show_status", is_flag=True, help="Show the changes now in effect.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--persist/--runtime-only", default=None,
              help="Also write the files that keep a fix across reboots (the default; "
                   "spd.driver persists only when --persist is named).")
@click.option("--only", multiple=True, metavar="FIXIDS",
              help="Plan or apply only these fixes (comma-separated or repeated), including "
                   "ones no finding asks for.")
@click.option("--service", metavar="NAME",
              help="The llama-server systemd service (memlock.limit writes its drop-in).")
@click.option("--pid", type=click.IntRange(min=1), help="The llama-server process to re-pin.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document to stdout.")
@click.option("--no-plugins", is_flag=True, help="Do not load third-party checks.")
@click.option("--measure", "measure_speed", is_flag=True,
              help="With --apply: measure the model's speed before and after (a short "
                   "llama-bench run on this machine) and keep the delta in the journal; "
                   "--status shows it.")
@click.pass_context
def fix(ctx: click.Context, do_apply: bool, revert: bool, show_status: bool, yes: bool,
        persist: bool | None, service: str | None, pid: int | None, as_json: bool,
        no_plugins: bool, measure_speed: bool, **params: Any) -> None:
    """Show what software can fix (a dry run), or apply, revert or list the changes.

    Without --apply nothing is changed. Every change is journalled under
    /var/lib/q3cn-doctor before it is made; --revert restores the recorded values and
    files exactly. Exit status: 0 done or nothing to do, 1 a fix was refused or did not
    verify, or the command refused to act (not root, no --yes without a terminal),
    2 usage error.
    """
    from q3cn_doctor.app.fix_command import run_fix
    from q3cn_doctor.fixing.plan import FixOptions

    if sum((do_apply, revert, show_status)) > 1:
        raise click.UsageError("--apply, --revert and --status exclude each other")
    only = list(params.pop("only", ()) or ())
    from q3cn_doctor.app import session

    options = session.build_options(ctx, params)
    options.plugins = not no_plugins
    fix_options = FixOptions(only=only, persist=persist is not False, service=service, pid=pid,
                             persist_asked=persist is True)
    if measure_speed and not do_apply:
        raise click.UsageError("--measure goes with --apply")
    ctx.exit(run_fix(options, fix_options, apply=do_apply, revert=revert, status=show_status,
                     yes=yes, as_json=as_json, plugins=options.plugins, measure=measure_speed))


@main.command(context_settings={"allow_interspersed_args": False})
@host_options
@click.option("--port", type=click.IntRange(1, 65535),
              help="Port llama-server listens on [default: the config file's, else 8080].")
@click.option("--for", "serve_for", type=click.Choice(["agent", "chat", "batch"]),
              default="agent", show_default=True,
              help="How it is used: a coding agent (one slot, prompt cache, checkpoints, "
                   "a prompt-sized batch), a chat, or batch jobs (several slots).")
@click.option("--from", "from_file", type=click.Path(dir_okay=False, exists=True),
              help="Import your own llama-server command (a script like the guide's "
                   "run.sh): its choices are kept, translated for this build, and each "
                   "change printed.")
@click.option("--allow-root", is_flag=True,
              help="Run llama-server as root when the launching user is root (refused "
                   "otherwise: under sudo it runs as you, or give --user NAME).")
@click.option("--unit", metavar="NAME",
              help="Write the plan as the systemd service NAME (User=, limits, affinity, "
                   "ExecStart=) instead of launching; with --revert, remove it.")
@click.option("--revert", is_flag=True, help="With --unit: remove the service written.")
@click.option("--print", "print_only", is_flag=True,
              help="Print the equivalent shell command instead of launching (the reasons "
                   "go to stderr).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON instead.")
@click.option("--force", is_flag=True, help="Launch even when a check fails.")
@click.option("--skip", multiple=True, metavar="IDS",
              help="Skip these checks or areas before launching.")
@click.option("--no-plugins", is_flag=True, help="Do not load third-party checks.")
@click.option("--no-tune", is_flag=True,
              help="Ignore the tune saved by `q3cn-doctor tune` (used where it matches).")
@click.argument("server_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- ARGS...]")
@click.pass_context
def launch(ctx: click.Context, print_only: bool, as_json: bool, force: bool, no_plugins: bool,
           serve_for: str, from_file: str | None, allow_root: bool, unit: str | None,
           revert: bool, **params: Any) -> None:
    """Run the checks, then replace this process with llama-server, tuned for this
    machine, this model and how it is used, and written in the flags its build accepts.

    Arguments after `--` go to llama-server last and win over the plan's; --from imports
    your own command the same way. Under sudo llama-server runs as you (SUDO_USER, or
    --user), never as root unless --allow-root. With --print or --json nothing is launched
    (and --snapshot shows another machine's plan): the plan is shown, failed checks listed
    above it, and the exit is 0. Exit status: 1 a check failed (unless --force) or no plan
    could be made, 2 usage error; once launched, llama-server's own.
    """
    from q3cn_doctor.app.launch_command import LaunchRequest, run_launch

    if revert and not unit:
        raise click.UsageError("--revert goes with --unit NAME")
    from q3cn_doctor.app import session

    options = session.build_options(ctx, params)
    options.plugins = not no_plugins
    options.serve_for = serve_for
    request = LaunchRequest(print_only=print_only, as_json=as_json, force=force,
                            from_file=from_file, allow_root=allow_root, unit=unit,
                            revert=revert)
    ctx.exit(run_launch(options, request))

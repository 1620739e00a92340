"""How llama-server serves: who can reach it, and whether a running one re-processes the
prompts a coding agent sends every turn."""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.facts.model import server_arg
from q3cn_doctor.plan.cpu import running_servers

LOOPBACK = ("127.", "::1", "localhost", "[::1]")
DEFAULT_HOST = "127.0.0.1"  # llama-server's --host default in every build
MIN_TURN_TOKENS = 1024  # a prompt shorter than this costs too little to judge
REUSED_SHARE = 0.5  # less than this share of the turn before taken from the cache: re-processed
LOG_TAIL_BYTES = 4 << 20
JOURNAL_LINES = "20000"


def loopback(host: str) -> bool:
    """Every address of a --host value (comma-separated in newer builds) is loopback or
    a UNIX socket path."""
    parts = [part.strip() for part in host.split(",") if part.strip()]
    return bool(parts) and all(part.startswith(LOOPBACK) or part.startswith("/")
                               or part.endswith(".sock") for part in parts)


def _keyed(args: list[str], environ: dict[str, str]) -> bool:
    return (server_arg(args, "--api-key", "--api-key-file") is not None
            or bool(environ.get("LLAMA_API_KEY")))


@check("server.exposure", "llama-server listens only on this machine, or asks for an API key")
def exposure(ctx: Context):
    try:
        environ = ctx.host.environ()
    except NotImplementedError:
        environ = {}
    args = list(ctx.options.server_args)
    planned = server_arg(args, "--host") or ctx.options.host or environ.get(
        "LLAMA_ARG_HOST") or DEFAULT_HOST
    findings = []
    servers = running_servers(ctx.host)
    if ctx.facts.server.path is None and not servers:
        return ctx.finding(SKIP, "llama-server not found (see server.found)",
                           observed=f"planned --host {planned}")
    if not loopback(planned) and not _keyed(args, environ):
        findings.append(ctx.finding(
            WARN, f"The planned llama-server listens on {planned} without an API key",
            observed=f"--host {planned} (the launch's: config file `host`, your arguments or "
                     "LLAMA_ARG_HOST); no --api-key, --api-key-file or LLAMA_API_KEY",
            recommended="Listen on 127.0.0.1 (reach it through an SSH tunnel or a reverse "
                        "proxy with TLS), or add --api-key-file FILE (a file only the server's "
                        "user reads) to its arguments.",
            impact="Anyone who reaches the port uses the model, reads the prompts held in its "
                   "slots (/slots) and can keep the GPU busy; a bug in the server is then "
                   "exposed to the network.", item="planned"))
    for server in servers:
        cmdline = server.process.cmdline
        host = server_arg(cmdline, "--host") or DEFAULT_HOST
        if loopback(host) or _keyed(cmdline, {}):
            continue
        root = server.process.uid == 0
        findings.append(ctx.finding(
            WARN, f"llama-server pid {server.pid} listens on {host} without an API key"
                  + (", as root" if root else ""),
            observed=" ".join(cmdline[:12]) + (" ..." if len(cmdline) > 12 else ""),
            recommended="Restart it bound to 127.0.0.1 or with --api-key-file; "
                        "`q3cn-doctor launch` runs it as your user, never as root.",
            impact="Reachable by anyone on the network" + (
                "; and a bug in it would run as root" if root else "") + ".",
            item=f"pid-{server.pid}"))
    if findings:
        return findings
    return ctx.finding(PASS, f"llama-server listens on {planned}" + (
        " only (loopback)" if loopback(planned) else " with an API key"),
        observed=f"planned --host {planned}")


def _log_of(ctx: Context, server) -> tuple[str | None, str]:
    """The running server's log: its --log-file, else its systemd journal."""
    cmdline = server.process.cmdline
    path = server_arg(cmdline, "--log-file")
    if path:
        text = ctx.host.cat(path)
        if text is not None:
            return text[-LOG_TAIL_BYTES:], path
    result = ctx.host.run(["journalctl", f"_PID={server.pid}", "--no-pager", "-o", "cat",
                           "-n", JOURNAL_LINES], timeout=5)
    if result.ok and result.stdout.strip():
        return result.stdout, f"journalctl _PID={server.pid}"
    return None, (f"--log-file {path} unreadable" if path else
                  f"no --log-file, and the journal has nothing for pid {server.pid} "
                  f"({result.reason() if not result.ok else 'empty'})")


def judge_turns(turns: list) -> tuple[list, list, float | None]:
    """The long turns after the first, those re-processed, and the seconds lost per
    re-processed turn. A turn is judged by what it could have reused, the turn before
    (an agent's prompt grows by the last answer and tool output): it is re-processed
    when the cache gave less than half of that, not when its new text is long."""
    long_turns, reprocessed, lost = [], [], []
    previous = None
    for turn in turns:
        prompt = turn.prompt
        if previous is not None and prompt and prompt >= MIN_TURN_TOKENS:
            long_turns.append(turn)
            reusable = min(previous.prompt or prompt, prompt)
            cached = turn.cached or 0
            if turn.forced or cached < REUSED_SHARE * reusable:
                reprocessed.append(turn)
                again = min(turn.processed, max(0, reusable - cached))  # computed twice
                if turn.prompt_ms and turn.processed:
                    lost.append(turn.prompt_ms / 1000 * again / turn.processed)
        previous = turn
    return long_turns, reprocessed, (sum(lost) / len(lost) if lost else None)


@check("server.prompt_cache", "A running llama-server reuses the prompt of the turn before")
def prompt_cache(ctx: Context):
    from q3cn_doctor.parsers.server_log import read_turns

    servers = running_servers(ctx.host)
    if not servers:
        return ctx.finding(SKIP, "No llama-server running: nothing to judge yet")
    findings = []
    for server in servers:
        text, source = _log_of(ctx, server)
        item = f"pid-{server.pid}"
        if text is None:
            findings.append(ctx.finding(
                SKIP, f"llama-server pid {server.pid}: its log is not readable here",
                observed=source, recommended="Start it with --log-file FILE, or as a "
                "systemd service (`q3cn-doctor launch --unit NAME`), so its turns can be "
                "judged.", item=item))
            continue
        turns = read_turns(text)
        if not turns and "prompt eval time" in text:
            findings.append(ctx.finding(
                SKIP, f"llama-server pid {server.pid}: its log is in a format this version "
                      "does not read", observed=f"{source}: timings, but no \"task N |\" "
                "lines (2024 builds, ik_llama.cpp)", item=item))
            continue
        findings.append(_judged(ctx, server, turns, source, item))
    return findings


def _judged(ctx: Context, server, turns: list, source: str, item: str):
    long_turns, reprocessed, lost = judge_turns(turns)
    reused = sum(turn.cached or 0 for turn in turns)
    total = sum(turn.prompt or 0 for turn in turns)
    observed = (f"{source}: {len(turns)} turns, {len(long_turns)} of them after the first "
                f"with a prompt of {MIN_TURN_TOKENS}+ tokens; {reused} of {total} prompt "
                "tokens from the cache")
    forced = sum(1 for turn in reprocessed if turn.forced)
    if reprocessed and (forced or len(reprocessed) * 4 >= len(long_turns)):
        per_turn = f"~{lost:.0f} s lost per turn" if lost is not None else "time unknown"
        return ctx.finding(
            WARN, f"llama-server pid {server.pid} re-processes prompts: {len(reprocessed)} "
                  f"of {len(long_turns)} long turns, {per_turn}",
            observed=observed + (f"; {forced} forced (\"forcing full prompt re-processing\")"
                                 if forced else ""),
            recommended="Serve one agent from one slot with context checkpoints and a prompt "
                        "cache: `q3cn-doctor launch` plans -np 1, --ctx-checkpoints, "
                        "--cache-ram and --cache-reuse for the model and build; with a hybrid "
                        "model on an older build, update llama.cpp (llama.cpp #19794, #21831).",
            impact="Every such turn computes again the whole conversation before the first "
                   "new token: tens of seconds per turn at agent prompt lengths.", item=item)
    if not long_turns:
        return ctx.finding(INFO, f"llama-server pid {server.pid}: no long turns to judge yet",
                           observed=observed, item=item)
    return ctx.finding(PASS, f"llama-server pid {server.pid} reuses its prompt cache",
                       observed=observed, item=item)

"""The installed llama-server: found, new enough for the model, started with flags it
accepts, on a free port, and not sharing the machine with another copy of itself.

What a build accepts comes from its ``--help`` (facts.server), never from its version
line: a build from a source tarball prints "build 1" at any age.
"""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import FAIL, INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.facts import FactsError
from q3cn_doctor.facts.gpu import device_lost
from q3cn_doctor.facts.model import fit_targets_arg, server_arg
from q3cn_doctor.host.base import ABSENT, CAP_SYS_NICE
from q3cn_doctor.parsers.procfs import bounded_int
from q3cn_doctor.plan.cpu import running_servers
from q3cn_doctor.plan.placement import DESKTOP_MIN_FIT_TARGET_MIB, desktop_gpu
from q3cn_doctor.plan.server import LLAMA_SERVER_PORT, planned_port
from q3cn_doctor.units import gib

LISTEN = "0A"  # TCP state in /proc/net/tcp
INSTALL = ("Install llama.cpp's llama-server: a release build from "
           "https://github.com/ggml-org/llama.cpp/releases (the CUDA one on an NVIDIA GPU), or "
           "build it: `cmake -B build -DGGML_CUDA=ON && cmake --build build -j --target "
           "llama-server`. Then put it on PATH or give --server PATH (or server = \"PATH\" in "
           "the config file).")
ARCH_ADDED = {"qwen3next": "late 2025 (llama.cpp PR #16095)", "gpt-oss": "August 2025"}


def _server(ctx: Context):
    server = ctx.facts.server
    if server.path is None:
        return server, ctx.finding(SKIP, "llama-server not found (see server.found)",
                                   observed=f"looked on {server.found_by}")
    return server, None


@check("server.found", "llama-server is installed and answers --version")
def found(ctx: Context):
    server = ctx.facts.server
    if server.path is None:
        where = "the path given with --server" if server.found_by == "--server" else (
            "PATH")
        return ctx.finding(SKIP, "llama-server not found", observed=f"no llama-server on {where}",
                           recommended=INSTALL, impact="Nothing to launch until it is installed.")
    version = server.version or "version unknown"
    observed = (f"{server.path} (by {server.found_by}), {version}"
                + (f", {server.compiler}" if server.compiler else "")
                + (f"; {len(server.flags)} options in its --help"
                   + (" (cached)" if server.help_source == "cache" else "")
                   if server.flags else ""))
    if server.build_number == 1:
        observed += ("; build 1 means a build from a source tarball: its age is judged by "
                     "its options, not its number")
    return ctx.finding(PASS, f"llama-server {version} at {server.path}", observed=observed)


@check("server.build", "The llama-server build knows the model and uses the GPU")
def build(ctx: Context):
    server, skipped = _server(ctx)
    if skipped:
        return skipped
    findings = []
    model = ctx.facts.model
    knows = server.knows_architecture(model.architecture)
    arch_line = (f"architectures compiled into {server.architectures_source}: "
                 f"{len(server.architectures)} names" if server.architectures is not None
                 else f"architectures: {server.basis.get('architectures', 'unknown')}")
    if knows is False:
        added = ARCH_ADDED.get(model.architecture)
        findings.append(ctx.finding(
            FAIL, f"This llama-server predates the {model.architecture} architecture",
            observed=f"{server.path} ({server.version or 'version unknown'}); {arch_line}, "
                     f"{model.architecture} not among them",
            recommended=f"Update llama.cpp to a build that knows {model.architecture}"
                        + (f" (added {added})" if added else "") + ".",
            manual=[f"Update llama.cpp to a build that knows {model.architecture}"
                    + (f" (added {added})" if added else "") + "."],
            action="a newer llama.cpp",
            impact=f"llama-server stops at load with \"unknown model architecture: "
                   f"'{model.architecture}'\".",
            item="architecture"))
    try:
        gpus = ctx.facts.gpus
    except FactsError:
        gpus = []
    cuda = ctx.facts.cuda_build
    linked = cuda.server in cuda.libraries
    backends = ", ".join(server.backends) or "none (CPU only)"
    runtime = (f"; CUDA runtime {server.cuda_runtime_major}.x (gpu.cuda judges it against "
               "the driver)" if server.cuda_runtime_major else "")
    if gpus and linked and not server.backends:
        answering = sum(1 for gpu in gpus if "error" not in gpu and not device_lost(gpu))
        findings.append(ctx.finding(
            FAIL, "This llama-server is a CPU-only build on a machine with an NVIDIA GPU",
            observed=f"{server.path} links no GPU backend (ggml-cuda, vulkan...); "
                     + (f"{len(gpus)} NVIDIA GPU(s) answer" if answering == len(gpus) else
                        f"NVML lists {len(gpus)} NVIDIA GPU(s), {answering} of them answering"),
            recommended="Install the CUDA build of llama.cpp, or build with -DGGML_CUDA=ON.",
            manual=["Install the CUDA build of llama.cpp, or build it with "
                    "`cmake -B build -DGGML_CUDA=ON`."],
            action="a CUDA build of llama-server", what_if={"cpu_only": False},
            impact="The GPU holds nothing: attention and every expert run on the CPU, at a "
                   "fraction of the speed.",
            item="backend"))
    if findings:
        return findings
    if knows is None:
        return ctx.finding(
            INFO,
            f"llama-server backends: {backends}; model architecture support unknown",
            observed=f"{arch_line}{runtime}",
            recommended="If llama-server says \"unknown model architecture\", update it.")
    return ctx.finding(PASS, f"llama-server knows {model.architecture}; backends: {backends}",
                       observed=f"{arch_line}{runtime}")


def _spelling(build) -> str:
    """How this build spells the flags that drifted."""
    parts = []
    load = build.spec("--load-mode")
    parts.append("--load-mode " + "|".join(load.choices) if load else "no --load-mode")
    parts.append("--mlock/--no-mmap" if build.knows("--mlock") else "no --mlock/--no-mmap")
    flash = build.spec("-fa")
    parts.append("-fa takes " + (flash.arg if flash and flash.takes_value else "no value")
                 if flash else "no -fa")
    parts.append("--fit/--fit-target" if build.knows("--fit") else
                 "no --fit (the plan gives --n-cpu-moe N)")
    return "; ".join(parts)


@check("server.flags", "The llama-server arguments are ones this build accepts and acts on")
def flags(ctx: Context):
    server, skipped = _server(ctx)
    if skipped:
        return skipped
    build = server.build()
    if build is None and server.help_state == ABSENT:  # a snapshot or --root tree
        return ctx.finding(SKIP, "What this llama-server accepts is unknown here",
                           observed=f"{server.path} --help: {server.help_error}")
    if build is None:
        return ctx.finding(
            WARN, "What this llama-server accepts is unknown",
            observed=f"{server.path} --help: {server.help_error}",
            recommended=f"Run `{server.path} --help` to see why it does not answer; the "
                        "launch needs it to write the command.")
    args = list(ctx.options.server_args)
    spelling = _spelling(build)
    findings = []
    groups = build.split_args(args)
    unknown = [g[0] for g in groups if g[0].startswith("-") and not build.knows(
        g[0].partition("=")[0])]
    stray = [(groups[i - 1][0] if i else None, g[0]) for i, g in enumerate(groups)
             if not g[0].startswith("-")]
    bad_choice = [f"{g[0]} {g[1]}" for g in groups if len(g) > 1 and build.spec(g[0])
                  and build.spec(g[0]).choices and g[1] not in build.spec(g[0]).choices
                  and not build.spec(g[0]).arg.startswith("{")]
    if unknown or stray or bad_choice:
        problems = ([f"{flag} (unknown here)" for flag in unknown]
                    + [f"'{value}' after {flag or 'nothing'} (that flag takes no value here)"
                       for flag, value in stray]
                    + [f"{pair} (not one of its choices)" for pair in bad_choice])
        findings.append(ctx.finding(
            FAIL,
            "llama-server would refuse these arguments: " + ", ".join(
            p.split(" (")[0] for p in problems),
            observed=f"your arguments (config file `args`, launch -- ...): {' '.join(args)}; "
                     f"{'; '.join(problems)}. This build: {spelling}",
            recommended="Remove them, or write them as this build spells them (the launch plan "
                        "already translates its own: `q3cn-doctor launch --print`).",
            impact="llama-server stops at start with \"error: invalid argument\".", item="unknown"))
    if server_arg(args, "--fit-ctx", "-fitc") is not None:
        ctx_given = server_arg(args, "-c", "--ctx-size")
        if ctx_given != "0":
            findings.append(ctx.finding(
                WARN, "--fit-ctx does nothing with a fixed context",
                observed=f"--fit-ctx {server_arg(args, '--fit-ctx', '-fitc')} with -c "
                         f"{ctx_given or ctx.facts.model.ctx_size}",
                recommended="Drop --fit-ctx, or give -c 0 to let --fit choose the context (at "
                            "least --fit-ctx).",
                impact="It only acts when --fit sets the context.", item="fit-ctx"))
    targets = fit_targets_arg(args)
    if targets:
        try:
            gpus = ctx.facts.gpus
        except FactsError:
            gpus = []
        small = [(gpu.get("index", i), targets[min(i, len(targets) - 1)])
                 for i, gpu in enumerate(gpus) if desktop_gpu(gpu)
                 and targets[min(i, len(targets) - 1)] < DESKTOP_MIN_FIT_TARGET_MIB]
        if small:
            findings.append(ctx.finding(
                WARN, "--fit-target is too small for a GPU that also drives the desktop",
                observed="; ".join(f"GPU {index}: --fit-target {mib} MiB, and it runs the display"
                                   for index, mib in small),
                recommended=f"Leave at least {DESKTOP_MIN_FIT_TARGET_MIB} MiB (llama-server's "
                            "default) free on a GPU that drives a desktop.",
                impact="A browser or compositor that grows into the margin makes llama-server fail "
                       "with CUDA out of memory mid-run.",
                item="fit-target"))
    prio = server_arg(args, "--prio")
    level = bounded_int(prio, signed=True)
    if level is not None and level >= 2:
        caps = ctx.host.capabilities()
        try:
            rtprio = ctx.host.rlimits().get("RTPRIO")
        except NotImplementedError:
            rtprio = None
        nice = caps is not None and bool(caps >> CAP_SYS_NICE & 1)
        if not nice and (rtprio is None or rtprio[1] == 0):
            findings.append(ctx.finding(
                WARN, f"--prio {prio} without the right to raise priority",
                observed=f"capabilities {caps if caps is None else hex(caps)}, RLIMIT_RTPRIO "
                         f"{rtprio if rtprio is not None else 'unknown'}",
                recommended="Grant it (LimitRTPRIO=99 or AmbientCapabilities=CAP_SYS_NICE in the "
                            "systemd unit, or an rtprio line in /etc/security/limits.d), or drop "
                            "--prio.",
                impact="llama.cpp only warns \"failed to set thread priority\" and runs at normal "
                       "priority.",
                item="prio"))
    try:
        environ = ctx.host.environ()
    except NotImplementedError:
        environ = {}
    if "LLAMA_SET_ROWS" in environ:
        findings.append(ctx.finding(
            INFO, "LLAMA_SET_ROWS is set but does nothing",
            observed=f"LLAMA_SET_ROWS={environ['LLAMA_SET_ROWS']} in the environment",
            recommended="Remove it from the environment or unit file.",
            impact="A no-op since llama.cpp PR #15505 (2025-08).", item="env"))
    if findings:
        return findings
    return ctx.finding(PASS, "Arguments are ones this build accepts",
                       observed=(f"your arguments: {' '.join(args)}; " if args else "")
                                + f"this build: {spelling}")


def _listening(text: str) -> set[int]:
    ports = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == LISTEN and ":" in fields[1]:
            try:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
            except ValueError:
                continue
    return ports


@check("server.port", "The port llama-server will listen on is free")
def port(ctx: Context):
    wanted = planned_port(ctx.options, ctx.facts)
    texts = [ctx.host.cat(path) for path in ("/proc/net/tcp", "/proc/net/tcp6")]
    if all(text is None for text in texts):
        return ctx.finding(SKIP, f"Port {wanted}: unknown (no /proc/net/tcp on this host)")
    taken = set()
    for text in texts:
        taken |= _listening(text or "")
    if wanted in taken:
        holders = _servers_on(ctx, wanted)
        return ctx.finding(
            FAIL, f"Port {wanted} is already taken",
            observed=f"a socket listens on TCP port {wanted}"
                     + (f": {holders}" if holders else " (/proc/net/tcp)"),
            recommended="Stop what holds it, or launch with --port N (or port = N in the config "
                        "file).",
            impact="llama-server exits at start with \"couldn't bind HTTP server socket\".")
    return ctx.finding(PASS, f"Port {wanted} is free",
                       observed=f"no listening socket on TCP port {wanted} (/proc/net/tcp, tcp6)")


def _servers_on(ctx: Context, wanted: int) -> str:
    names = []
    for process in _llama_servers(ctx):
        value = server_arg(process.cmdline, "--port")
        if value == str(wanted) or (value is None and wanted == LLAMA_SERVER_PORT):
            names.append(f"llama-server pid {process.pid}")
    return ", ".join(names)


def _llama_servers(ctx: Context) -> list:
    """The running llama-server processes (the CPU plan's one way of finding them)."""
    return [server.process for server in running_servers(ctx.host)]


def _rss(ctx: Context, pid: int) -> int | None:
    for line in (ctx.host.cat(f"/proc/{pid}/status") or "").splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            kib = bounded_int(parts[1]) if len(parts) >= 2 else None
            if kib is not None:
                return kib * 1024
    return None


@check("server.running", "No other llama-server already holds VRAM or the model's RAM")
def running(ctx: Context):
    processes = ctx.host.processes()
    if not processes:
        return ctx.finding(SKIP, "Running processes unknown: this host lists none")
    servers = _llama_servers(ctx)
    if not servers:
        return ctx.finding(PASS, "No llama-server is running")
    try:
        gpus = ctx.facts.gpus
    except FactsError:
        gpus = []
    vram: dict[int, int] = {}
    for gpu in gpus:
        for process in gpu.get("processes") or []:
            if isinstance(process, dict) and isinstance(process.get("used_bytes"), int):
                pid = process.get("pid")
                vram[pid] = vram.get(pid, 0) + process["used_bytes"]
    from q3cn_doctor.host.redact import redact_cmdline  # its patterns: only with a server up

    parts = []
    for process in servers:
        rss = _rss(ctx, process.pid)
        parts.append(f"pid {process.pid}: {gib(vram.get(process.pid))} VRAM"
                     f"{'' if process.pid in vram else ' (none listed)'}, {gib(rss)} RAM "
                     f"resident; {' '.join(redact_cmdline(process.cmdline)[:8])}")
    return ctx.finding(
        WARN, f"{len(servers)} llama-server already running", observed="; ".join(parts),
        recommended="Stop it before launching another (systemctl stop <unit>, or kill the pid); to "
                    "judge the running one, these checks already see its placement.",
        manual=["Stop the running llama-server before launching another (`systemctl stop "
                "<unit>`, or `kill` its pid)."],
        action="stop the running llama-server",
        impact="A second copy gets only the VRAM and RAM the first leaves: --fit keeps more "
               "experts in RAM and generation slows, or it does not fit at all.")

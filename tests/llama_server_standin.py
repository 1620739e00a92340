"""A stand-in llama-server for the launch tests.

It answers ``--help`` (stdout) and ``--version`` (stderr, as llama.cpp prints it) with
the real texts of one of the two builds in tests/fixtures/llama-server/, refuses an
argument that build would refuse ("error: invalid argument: X", exit 1), and
otherwise records what it was started with (argv, environment, CPU affinity,
resource limits, pid) as JSON to ``$STANDIN_RECORD`` and exits with
``$STANDIN_EXIT`` (default 0). ``$STANDIN_CALLS``, if set, gets one line per start.

``write_standin(directory, build)`` installs it as an executable ``llama-server``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "llama-server"
BUILDS = {"2025-08": "2025-08-commit-4227c9b", "2026-10": "2026-10-commit-0c1e570"}
RLIMITS = ("MEMLOCK", "RTPRIO", "NOFILE")


def help_text(build: str) -> str:
    return (FIXTURES / f"help-{BUILDS[build]}.txt").read_text()


def version_text(build: str) -> str:
    return (FIXTURES / f"version-{BUILDS[build]}.txt").read_text()


def _options(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (argument, choices), read the way llama.cpp prints them (column 40)."""
    found: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        if not line.startswith("-") or line.startswith("-----"):
            continue
        names = line[:40] if len(line) > 40 and line[38:40] == "  " and line[40] != " " \
            else line
        arg = ""
        tokens = [t.strip() for t in names.strip().split(", ") if t.strip().startswith("-")]
        for token in tokens:
            if " " in token:
                arg = token.split(" ", 1)[1].strip()
        choices = re.split(r"[|,]", arg[1:-1]) if arg[:1] in "[{<" and arg else []
        for token in tokens:
            found[token.split(" ", 1)[0]] = (arg, choices)
    return found


def refused(argv: list[str], text: str) -> str | None:
    """The first argument this build's parser would refuse, as llama.cpp does: an unknown
    word, or a word after a flag that takes none."""
    options = _options(text)
    index = 0
    while index < len(argv):
        word = argv[index]
        index += 1
        if word not in options:
            return word
        arg, choices = options[word]
        if not arg:
            continue
        if arg.startswith("["):  # an optional value: taken only when it is one of them
            if index < len(argv) and argv[index] in choices:
                index += 1
            continue
        if index >= len(argv):
            return word
        if choices and not arg.startswith("{") and argv[index] not in choices:
            return argv[index]
        index += 1
    return None


def main(build: str) -> None:
    argv = sys.argv[1:]
    calls = os.environ.get("STANDIN_CALLS")
    if calls:
        with open(calls, "a") as handle:
            handle.write(" ".join(argv) + "\n")
    if argv[:1] in (["--help"], ["-h"], ["--usage"]):
        sys.stdout.write(help_text(build))
        sys.exit(0)
    if argv[:1] == ["--version"]:
        sys.stderr.write(version_text(build))
        sys.exit(0)
    bad = refused(argv, help_text(build))
    if bad is not None:
        sys.stderr.write(f"error: invalid argument: {bad}\n")
        sys.exit(1)
    import resource

    limits = {}
    for name in RLIMITS:
        soft, hard = resource.getrlimit(getattr(resource, "RLIMIT_" + name))
        limits[name] = [-1 if v == resource.RLIM_INFINITY else v for v in (soft, hard)]
    record = {
        "build": build,
        "argv": argv,
        "executable": sys.argv[0],
        "pid": os.getpid(),
        "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(),
        "groups": sorted(os.getgroups()),
        "environ": dict(os.environ),
        "affinity": sorted(os.sched_getaffinity(0)),
        "rlimits": limits,
    }
    target = os.environ.get("STANDIN_RECORD")
    if target:
        with open(target, "w") as handle:
            json.dump(record, handle, indent=1)
    sys.exit(int(os.environ.get("STANDIN_EXIT", "0")))


def world_python() -> str:
    """An interpreter any user can run: this one, unless it sits in a folder others cannot
    enter (a pyenv under /root), else the system's. The launch drops to an unprivileged
    user when run as root, and the stand-in then runs as that user."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        real = Path(os.path.realpath(candidate))
        if real.exists() and all(folder.stat().st_mode & 0o001 for folder in real.parents):
            return candidate
    return sys.executable


def write_standin(directory: Path, build: str, name: str = "llama-server") -> Path:
    """An executable ``directory/name`` that runs this stand-in as ``build`` (stdlib only:
    it may run under the system's interpreter)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!{world_python()}\n"
                    "import sys\n"
                    f"sys.path.insert(0, {str(HERE)!r})\n"
                    "import llama_server_standin\n"
                    f"llama_server_standin.main({build!r})\n")
    path.chmod(0o755)
    return path

"""The server section: the installed llama-server and what this build can do.

Found by ``--server`` (or the config file's ``server``), else the first on PATH (the
GPU facts' ``find_server``, shared). What the build accepts is read from its
``--help``, never guessed from its version line: a build from a source tarball prints
"build 1" whatever its age. ``--help`` of a CUDA build starts the backends and takes a
second or two, so on the live machine its text is kept in the user's cache directory,
keyed by the binary's path, size and modification time: a rebuilt binary is read again.

Which model architectures the build knows comes from the names compiled into its
``libllama`` (or into llama-server itself where it is linked statically). A snapshot
records those names in its ``server.json`` (library path -> names), never the library.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import TYPE_CHECKING, Any

from msgspec import Struct, field
from q3cn_doctor.host.base import Host
from q3cn_doctor.options import Options
from q3cn_doctor.parsers.patterns import LazyPattern
from q3cn_doctor.parsers.procfs import bounded_int

from .gpu import find_server

if TYPE_CHECKING:
    from q3cn_doctor.parsers.server_help import Build

    from . import Facts

RECORD = "server"
"""The recorded readings (a snapshot's server.json) holding each library's architectures."""
CACHE_FILE = "llama-server.json"
CACHE_ENTRIES = 16
HELP_TIMEOUT_S = 30.0  # a CUDA build initialises every GPU before printing its help
_VERSION = LazyPattern(r"^version:\s*(?P<text>.+?)\s*$", re.MULTILINE)
_BUILD = LazyPattern(r"build (\d+)")
_COMMIT = LazyPattern(r"(?:commit |\()([0-9a-f]{7,40})\)?")
_NUMBER_ONLY = LazyPattern(r"^(\d+) \(")
_COMPILER = LazyPattern(r"^built with (.+?)\s*$", re.MULTILINE)
_SCAN_LIMIT = 4 * 1024**3  # a library larger than this is not scanned for names
MIN_ARCHITECTURES = 8  # fewer names than this: not libllama (a stub, a stripped file)


class ServerFacts(Struct):
    """The llama-server to run: where it is, what its build supports (backends, flags,
    model architectures, CUDA runtime), from its --help, --version and libraries."""
    path: str | None  # llama-server, None where not found
    found_by: str  # "--server", "PATH (/usr/local/bin)" or where it was looked for
    size_bytes: int | None
    mtime_ns: int | None
    version: str | None  # the --version line after "version: "
    build_number: int | None
    commit: str | None
    compiler: str | None
    help_source: str | None  # "ran", "cache" (this user's cache) or None
    help_error: str | None  # why --help gave no options
    help_state: str | None  # how --help ended: ran, not-installed, timed-out, absent...
    options: list[dict]  # each option: names, arg, choices, default, env (doctor/flags.py)
    flags: list[str]  # every name the build accepts
    default_port: int | None
    architectures: list[str] | None  # model architectures compiled in; None where unknown
    architectures_source: str | None  # the library the names were read from
    backends: list[str]  # "cuda", "vulkan"...; empty: a CPU-only build
    cuda_runtime_major: int | None
    basis: dict[str, str] = field(default_factory=dict)

    def build(self) -> Build | None:
        """The build's options for translating a plan; None where --help was not read."""
        if not self.options:
            return None
        from q3cn_doctor.parsers.server_help import Build, FlagSpec

        return Build([FlagSpec(**option) for option in self.options])

    def knows_architecture(self, name: str) -> bool | None:
        if self.architectures is None:
            return None
        return name in self.architectures


def gather(host: Host, options: Options, facts: Facts) -> ServerFacts:
    path, found_by = find_server(host, options)
    server = ServerFacts(
        path=path, found_by=found_by, size_bytes=None, mtime_ns=None, version=None,
        build_number=None, commit=None, compiler=None, help_source=None, help_error=None,
        help_state=None,
        options=[], flags=[], default_port=None, architectures=None,
        architectures_source=None, backends=[], cuda_runtime_major=None,
        basis={
            "path": "--server (or the config file's server), else the first llama-server on "
                    "PATH",
            "options": "`llama-server --help`, read once per binary (path, size, mtime)",
            "version": "`llama-server --version` (a tarball build says build 1 at any age)",
            "architectures": "architecture names compiled into libllama",
            "backends": "the ELF dependencies of llama-server and its libraries (gpu.cuda)",
        })
    if path is None:
        return server
    with contextlib.suppress(OSError):
        found = host.stat(path)
        server.size_bytes, server.mtime_ns = found.size, found.mtime_ns
    texts = _texts(host, path, server)
    server.help_state = texts.get("help_state", "ran")
    _apply_help(server, texts.get("help"), texts.get("help_error"))
    _apply_version(server, texts.get("version"))
    build = facts.cuda_build
    server.backends = list(build.backends)
    server.cuda_runtime_major = build.runtime_major
    libraries = [lib for lib in build.libraries if os.path.basename(lib).startswith("libllama")]
    # libllama.so itself, not a sibling such as libllama-server-impl.so or libllama-common
    library = next((lib for lib in libraries if os.path.basename(lib).startswith(
        "libllama.so")), libraries[0] if libraries else None)
    target = library or path
    server.architectures, why = _architectures(host, target)
    server.architectures_source = target if server.architectures is not None else None
    if why:
        server.basis["architectures"] = why
    return server


# -- --help and --version, cached on the live machine ------------------------------------------

def _texts(host: Host, path: str, server: ServerFacts) -> dict[str, Any]:
    key = f"{path}|{server.size_bytes}|{server.mtime_ns}"
    cache = host.cache_dir() if server.size_bytes is not None else None
    if cache is not None:
        entry = _cached(host, key)
        if entry is not None and isinstance(entry.get("help"), str):
            host.note(f"{cache}/{CACHE_FILE} ({path} --help, --version)")
            server.help_source = "cache"
            return entry
    helped = host.run([path, "--help"], timeout=HELP_TIMEOUT_S)
    versioned = host.run([path, "--version"], timeout=HELP_TIMEOUT_S)
    entry: dict[str, Any] = {"version": (versioned.stdout + versioned.stderr)
                             if versioned.state == "ran" else None}
    if helped.state == "ran" and "--help" in helped.stdout + helped.stderr:
        entry["help"] = helped.stdout if "--help" in helped.stdout else helped.stderr
        server.help_source = "ran"
    else:
        entry["help_error"] = helped.reason()
        entry["help_state"] = helped.state
    if cache is not None and "help" in entry:
        _cache(host, key, entry)
    return entry


def _cached(host: Host, key: str) -> dict | None:
    entry = host.load_cache(CACHE_FILE).get(key)
    return entry if isinstance(entry, dict) else None


def _cache(host: Host, key: str, entry: dict) -> None:
    """Keep ``entry`` under ``key``, the newest last, at most CACHE_ENTRIES of them."""
    data = host.load_cache(CACHE_FILE)
    data.pop(key, None)
    data[key] = entry
    while len(data) > CACHE_ENTRIES:
        data.pop(next(iter(data)))
    host.store_cache(CACHE_FILE, data)


def _apply_help(server: ServerFacts, text: str | None, error: str | None) -> None:
    if not text:
        server.help_error = error or "no --help output"
        return
    from q3cn_doctor.parsers.server_help import parse_help  # only where a server answered

    specs = parse_help(text)
    if not specs:
        server.help_error = "its --help lists no options"
        return
    server.options = [spec.to_json() for spec in specs]
    server.flags = sorted({name for spec in specs for name in spec.names})
    port = next((spec for spec in specs if "--port" in spec.names), None)
    if port is not None and port.default and port.default.isdecimal():
        server.default_port = bounded_int(port.default)


def _apply_version(server: ServerFacts, text: str | None) -> None:
    if not text:
        return
    match = _VERSION.search(text)
    if match:
        server.version = match.group("text")
        build = _BUILD.search(server.version) or _NUMBER_ONLY.search(server.version)
        commit = _COMMIT.search(server.version)
        server.build_number = bounded_int(build.group(1)) if build else None
        server.commit = commit.group(1) if commit else None
    compiler = _COMPILER.search(text)
    server.compiler = compiler.group(1) if compiler else None


# -- architectures compiled in --------------------------------------------------------------------

def _architectures(host: Host, path: str) -> tuple[list[str] | None, str | None]:
    entry = host.recorded(RECORD, path)
    if isinstance(entry, dict) and isinstance(entry.get("architectures"), list):
        host.note(f"{RECORD}.json:{path}")
        return [str(a) for a in entry["architectures"]], None
    key = None
    if host.cache_dir() is not None:
        with contextlib.suppress(OSError):
            found = host.stat(path)
            key = f"architectures|{path}|{found.size}|{found.mtime_ns}"
            entry = _cached(host, key)
            if entry is not None and isinstance(entry.get("architectures"), list):
                return entry["architectures"], None
    try:
        names = scan_architectures(host, path)
    except OSError as exc:
        return None, f"{path}: {exc.strerror or exc}"
    if names is not None:
        host.record(RECORD, path, {"architectures": names})
        if key is not None:
            _cache(host, key, {"architectures": names})
    if names is None:
        return None, f"no architecture names found in {path} (a stripped or placeholder file)"
    return names, None


def scan_architectures(host: Host, path: str) -> list[str] | None:
    """The model architecture names (llama.cpp's LLM_ARCH_NAMES, as the gguf package lists
    them) found as strings in a library; None where too few are there to be libllama.

    A name is matched where it ends a NUL-terminated string, not where one starts: the
    linker stores a string that ends another only once ("bert" inside "nomic-bert").
    """
    from q3cn_doctor.parsers.gguf_file import architecture_names

    known = sorted(architecture_names(), key=len, reverse=True)
    pattern = re.compile(b"(" + b"|".join(re.escape(n.encode()) for n in known) + b")\\x00")
    with host.mapped(path) as view:
        if len(view) > _SCAN_LIMIT:
            return None
        found = {match.group(1).decode() for match in pattern.finditer(view)}
    # a name that ends a longer one may live inside it: count it, rather than miss it
    found |= {name for name in known for longer in found if longer.endswith(name)}
    if len(found) < MIN_ARCHITECTURES:
        return None
    return sorted(found)

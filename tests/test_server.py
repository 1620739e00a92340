"""The installed llama-server: its --help parsed (two real builds, tests/fixtures/llama-server),
facts.server on snapshots and on a stand-in binary (the per-user cache of --help), the
architecture names read from libllama, and the server.* checks.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import FIXTURES
from launch_fixtures import (
    ARCHITECTURES_2026_10,
    LIBLLAMA,
    QWEN_PATH,
    SERVER,
    guide_machine,
    record_command,
)
from llama_server_standin import help_text, refused, version_text, write_standin
from q3cn_doctor.checking.findings import FAIL, INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.runner import available_checks, run_checks, select
from q3cn_doctor.facts import Facts
from q3cn_doctor.facts.server import scan_architectures
from q3cn_doctor.host.live import LiveHost
from q3cn_doctor.host.snapshot import RecordingHost, SnapshotHost
from q3cn_doctor.options import Options
from q3cn_doctor.parsers.server_help import Build, parse_help
from test_elf import make_elf
from test_no_back_door import only_inside

HELP_2025 = help_text("2025-08")
HELP_2026 = help_text("2026-10")


# -- --help parsed ------------------------------------------------------------------------------

def test_fixtures_are_the_corpus_texts():
    source = (FIXTURES / "llama-server" / "SOURCE.txt").read_text()
    for name in ("help-2025-08-commit-4227c9b.txt", "help-2026-10-commit-0c1e570.txt",
                 "version-2025-08-commit-4227c9b.txt", "version-2026-10-commit-0c1e570.txt"):
        assert f"llama-server/{name}\tggml-org/llama.cpp" in source


def test_parse_the_2025_08_build():
    build = Build.from_help(HELP_2025)
    assert build.knows("--mlock") and build.knows("--no-mmap")
    assert not build.knows("--load-mode") and not build.knows("--fit")
    flash = build.spec("-fa")
    assert flash.names == ["-fa", "--flash-attn"] and not flash.takes_value
    assert build.spec("--n-cpu-moe").names == ["--n-cpu-moe", "-ncmoe"]
    assert build.spec("--port").default == "8080"
    assert build.spec("--cpu-strict").choices == ["0", "1"]
    assert build.spec("--numa").choices == ["distribute", "isolate", "numactl"]
    assert build.spec("-ngl").names == ["-ngl", "--gpu-layers", "--n-gpu-layers"]
    # a names line longer than the description column (the description follows below)
    assert build.spec("-ot").arg == "<tensor name pattern>=<buffer type>,..."
    assert build.canonical("-fa") == "--flash-attn"


def test_parse_the_2026_10_build():
    build = Build.from_help(HELP_2026)
    assert not build.knows("--mlock") and not build.knows("--no-mmap")
    load = build.spec("-lm")
    assert load.name == "--load-mode"
    assert load.choices == ["auto", "none", "mmap", "mlock", "mmap+mlock", "dio"]
    assert build.spec("-fa").arg == "[on|off|auto]" and build.spec("-fa").value_optional
    assert build.spec("--fit").choices == ["on", "off"]
    assert build.spec("--fit-target").names == ["-fitt", "--fit-target"]
    assert build.spec("--fit-ctx").names == ["-fitc", "--fit-ctx"]
    assert build.spec("--jinja").names == ["--jinja", "--no-jinja"]
    assert build.spec("--temp").env == "LLAMA_ARG_TEMPERATURE"
    assert len(parse_help(HELP_2026)) > len(parse_help(HELP_2025)) > 150


@pytest.mark.parametrize("args, build, unknown", [
    (["--fit", "on"], HELP_2025, ["--fit"]),
    (["--no-mmap", "--mlock"], HELP_2026, ["--no-mmap", "--mlock"]),
    (["--load-mode", "mlock", "-fa", "on"], HELP_2026, []),
    (["-ctk", "q8_0", "--n-cpu-moe", "30", "-ngl", "999"], HELP_2025, []),
])
def test_unknown_flags(args, build, unknown):
    assert Build.from_help(build).unknown(args) == unknown


def test_bare_fa_swallows_no_value():
    """On the 2025-08 build `-fa on` leaves `on` on its own: what llama.cpp refuses
    ("error: invalid argument: on"), and what the stand-in refuses too."""
    groups = Build.from_help(HELP_2025).split_args(["-fa", "on", "-c", "4096"])
    assert groups == [["-fa"], ["on"], ["-c", "4096"]]
    assert Build.from_help(HELP_2026).split_args(["-fa", "on"]) == [["-fa", "on"]]
    assert refused(["-fa", "on"], HELP_2025) == "on"
    assert refused(["--fit", "on"], HELP_2025) == "--fit"
    assert refused(["--no-mmap"], HELP_2026) == "--no-mmap"
    assert refused(["-fa", "on", "--fit", "on", "--load-mode", "mlock"], HELP_2026) is None


# -- facts.server -------------------------------------------------------------------------------

def server_facts(directory: Path, **options):
    return Facts(SnapshotHost(str(directory)), Options(snapshot=str(directory), **options)).server


def test_facts_on_the_guide_machine(tmp_path):
    server = server_facts(guide_machine(tmp_path / "g", "2026-10"))
    assert server.path == SERVER and server.found_by == "PATH (/usr/local/bin)"
    assert server.version == "0.5.0-dev (build 1, commit 0c1e570)"
    assert (server.build_number, server.commit) == (1, "0c1e570")
    assert server.compiler == "GNU 12.2.0 for Linux x86_64"
    assert server.default_port == 8080
    assert "--load-mode" in server.flags and "--mlock" not in server.flags
    assert server.architectures == ARCHITECTURES_2026_10
    assert server.architectures_source == LIBLLAMA
    assert server.backends == ["cuda"] and server.cuda_runtime_major == 12
    assert server.help_source == "ran"


def test_facts_of_the_2025_build(tmp_path):
    server = server_facts(guide_machine(tmp_path / "g", "2025-08"))
    assert server.version == "1 (4227c9b)"
    assert (server.build_number, server.commit) == (1, "4227c9b")
    assert "qwen3next" not in server.architectures
    assert "--no-mmap" in server.flags and "--fit" not in server.flags


def test_no_server(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "snapshot.json").write_text(json.dumps({"environ": {"PATH": "/usr/bin"}}))
    server = server_facts(tmp_path / "s")
    assert server.path is None and server.flags == [] and server.architectures is None


def test_help_that_fails(tmp_path):
    root = guide_machine(tmp_path / "g")
    record_command(root, [SERVER, "--help"], "", "error while loading shared libraries: "
                   "libcudart.so.12: cannot open shared object file", rc="127")
    server = server_facts(root)
    assert server.flags == [] and server.build() is None
    assert "libcudart.so.12" in server.help_error


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    """A private cache directory and a log of every stand-in start."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls = tmp_path / "calls.log"
    monkeypatch.setenv("STANDIN_CALLS", str(calls))
    return calls


def _live_facts(server: Path):
    return Facts(LiveHost(), Options(server=str(server))).server


def test_help_is_cached_by_path_size_and_mtime(tmp_path, cache_env):
    standin = write_standin(tmp_path / "bin", "2026-10")
    first = _live_facts(standin)
    assert first.help_source == "ran" and "--load-mode" in first.flags
    assert cache_env.read_text().splitlines() == ["--help", "--version"]
    cache = tmp_path / "cache" / "q3cn-doctor" / "llama-server.json"
    assert str(standin) in cache.read_text()
    again = _live_facts(standin)  # a new run: nothing started
    assert again.help_source == "cache" and again.flags == first.flags
    assert again.version == first.version
    assert cache_env.read_text().splitlines() == ["--help", "--version"]
    later = time.time() + 5  # a rebuilt binary is asked again
    os.utime(standin, (later, later))
    assert _live_facts(standin).help_source == "ran"
    assert cache_env.read_text().splitlines().count("--help") == 2


def test_finding_a_server_does_not_import_gguf_or_numpy(tmp_path):
    """gguf and numpy are for --model only: the architecture names the server facts scan
    libllama for come from gguf's constants module alone (a fresh interpreter: tests that
    run the command line fork from a server that imported gguf), and they are gguf's."""
    import subprocess
    import sys

    standin = write_standin(tmp_path / "bin", "2026-10")
    code = ("import sys\n"
            "from q3cn_doctor.facts import Facts\n"
            "from q3cn_doctor.host.live import LiveHost\n"
            "from q3cn_doctor.options import Options\n"
            f"server = Facts(LiveHost(), Options(server={str(standin)!r})).server\n"
            "assert server.flags, server.help_error\n"
            "from q3cn_doctor.parsers.gguf_file import architecture_names\n"
            "names = architecture_names()\n"
            "print(json.dumps([names, [m for m in ('gguf', 'numpy') if m in sys.modules]]))\n")
    done = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True,
                          text=True, timeout=60,
                          env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "c")))
    assert done.returncode == 0, done.stderr
    names, loaded = json.loads(done.stdout)
    from gguf import constants

    assert loaded == []
    assert names == sorted(set(constants.MODEL_ARCH_NAMES.values()))


def test_recording_runs_help_and_replays_it(tmp_path, cache_env):
    """A recording asks the binary itself (never the cache), so the snapshot replays."""
    standin = write_standin(tmp_path / "bin", "2025-08")
    _live_facts(standin)  # warm the cache
    directory = tmp_path / "snap"
    host = RecordingHost(str(directory))
    recorded = Facts(host, Options(server=str(standin))).server
    host.finish()
    assert recorded.help_source == "ran"
    with only_inside(str(directory)) as refused_paths:
        replayed = server_facts(directory, server=str(standin))
    assert refused_paths == []
    assert replayed.flags == recorded.flags and replayed.version == "1 (4227c9b)"


NAMES = b"\0llama\0llama4\0deci\0qwen3\0qwen3moe\0qwen3next\0gpt-oss\0gemma3\0nomic-bert\0"


def test_architecture_names_from_a_library(tmp_path):
    library = tmp_path / "libllama.so"
    library.write_bytes(make_elf(["libggml.so"]) + NAMES + b"not-an-arch\0")
    # "bert" ends "nomic-bert": the linker keeps one copy, so it counts as there
    assert scan_architectures(LiveHost(), str(library)) == [
        "bert", "deci", "gemma3", "gpt-oss", "llama", "llama4", "nomic-bert", "qwen3",
        "qwen3moe", "qwen3next"]
    stub = tmp_path / "stub.so"
    stub.write_bytes(make_elf(["libc.so.6"]) + b"\0qwen3\0llama\0")
    assert scan_architectures(LiveHost(), str(stub)) is None  # too few to be libllama


def test_architectures_are_recorded_not_copied(tmp_path, cache_env):
    """llama-server linking its libllama from ../lib, as cmake --install lays them out: the
    names are read from the library, and a snapshot keeps them in server.json."""
    prefix = tmp_path / "opt"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib").mkdir()
    server = prefix / "bin" / "llama-server"
    server.write_bytes(make_elf(["libllama.so", "libc.so.6"], runpath="$ORIGIN/../lib"))
    library = prefix / "lib" / "libllama.so"
    library.write_bytes(make_elf(["libggml.so"], soname="libllama.so") + NAMES)
    directory = tmp_path / "snap"
    host = RecordingHost(str(directory))
    recorded = Facts(host, Options(server=str(server))).server
    host.finish()
    assert recorded.architectures_source == str(library)
    assert "qwen3next" in recorded.architectures
    record = json.loads((directory / "server.json").read_text())
    assert record == {str(library): {"architectures": recorded.architectures}}
    assert (directory / "fs" / str(library).lstrip("/")).stat().st_size == 0  # not copied
    with only_inside(str(directory)) as refused_paths:
        replayed = server_facts(directory, server=str(server))
    assert refused_paths == []
    assert replayed.architectures == recorded.architectures


# -- the checks ---------------------------------------------------------------------------------

def findings(directory: Path, ids: list[str], **options) -> dict:
    specs, _ = available_checks(plugins=False)
    facts = Facts(SnapshotHost(str(directory)), Options(snapshot=str(directory), **options))
    found = run_checks(facts, select(specs, ids, []))
    return {f.id: f for f in found}


def test_guide_machine_server_checks(tmp_path):
    found = findings(guide_machine(tmp_path / "g"), ["server"], model=QWEN_PATH)
    status = {fid: f.status for fid, f in found.items()}
    assert status == {"server.found": PASS, "server.build": PASS, "server.flags": PASS,
                      "server.port": SKIP, "server.running": WARN, "server.rtprio": INFO,
                      "server.age": SKIP, "server.exposure": PASS,
                      "server.prompt_cache:pid-4242": SKIP}
    assert "build 1 means a build from a source tarball" in found["server.found"].observed
    assert "pid 4242" in found["server.running"].observed
    assert "--fit/--fit-target" in found["server.flags"].observed


def test_build_too_old_for_the_model(tmp_path):
    found = findings(guide_machine(tmp_path / "g", "2025-08"), ["server.build"],
                     model=QWEN_PATH)
    finding = found["server.build:architecture"]
    assert finding.status == FAIL and "qwen3next" in finding.title
    # gpt-oss is known to that build
    found = findings(guide_machine(tmp_path / "h", "2025-08"), ["server.build"],
                     model="/models/gpt-oss-120b-mxfp4.gguf")
    assert found["server.build"].status == PASS


def test_cpu_only_build_on_a_gpu_host(tmp_path):
    root = guide_machine(tmp_path / "g")
    (root / "fs/usr/local/bin/llama-server").write_bytes(
        make_elf(["libllama.so", "libggml.so", "libc.so.6"], runpath="$ORIGIN/../lib"))
    (root / "fs/usr/local/lib/libggml.so").write_bytes(
        make_elf(["libggml-base.so", "libggml-cpu.so"]))
    (root / "fs/usr/local/lib/libggml-cuda.so").unlink()
    found = findings(root, ["server.build"], model=QWEN_PATH)
    assert found["server.build:backend"].status == FAIL
    assert "CPU-only" in found["server.build:backend"].title


def test_no_server_skips(tmp_path):
    root = guide_machine(tmp_path / "g")
    (root / "fs/usr/local/bin/llama-server").unlink()
    found = findings(root, ["server"])
    assert {fid: f.status for fid, f in found.items() if fid != "server.running"} == {
        "server.found": SKIP, "server.build": SKIP, "server.flags": SKIP, "server.port": SKIP,
        "server.rtprio": SKIP, "server.age": SKIP, "server.exposure": PASS,
        "server.prompt_cache:pid-4242": SKIP}
    assert "releases" in found["server.found"].recommended


@pytest.mark.parametrize("build, args, ids", [
    ("2026-10", ["--no-mmap", "--mlock"], {"server.flags:unknown": FAIL}),
    ("2025-08", ["-fa", "on"], {"server.flags:unknown": FAIL}),
    ("2025-08", ["--fit", "on"], {"server.flags:unknown": FAIL}),
    ("2026-10", ["--load-mode", "locked"], {"server.flags:unknown": FAIL}),
    ("2026-10", ["--fit-ctx", "16384"], {"server.flags:fit-ctx": WARN}),
    ("2026-10", ["-c", "0", "--fit-ctx", "16384"], {"server.flags": PASS}),
    ("2026-10", ["--fit-target", "512"], {"server.flags:fit-target": WARN}),
    ("2026-10", ["--fit-target", "2048"], {"server.flags": PASS}),
    ("2026-10", ["--prio", "2"], {"server.flags:prio": WARN}),
    ("2025-08", ["-fa", "--n-cpu-moe", "40", "-ctk", "q8_0"], {"server.flags": PASS}),
])
def test_flags_check(tmp_path, build, args, ids):
    found = findings(guide_machine(tmp_path / "g", build), ["server.flags"], model=QWEN_PATH,
                     server_args=args)
    assert {fid: f.status for fid, f in found.items()} == ids


def test_prio_with_the_right_to_it(tmp_path):
    root = guide_machine(tmp_path / "g", rtprio=(0, 99))
    found = findings(root, ["server.flags"], server_args=["--prio", "2"])
    assert found["server.flags"].status == PASS


def test_set_rows_in_the_environment(tmp_path):
    root = guide_machine(tmp_path / "g")
    meta = json.loads((root / "snapshot.json").read_text())
    meta["environ"]["LLAMA_SET_ROWS"] = "1"
    (root / "snapshot.json").write_text(json.dumps(meta))
    found = findings(root, ["server.flags"])
    assert found["server.flags:env"].status == INFO


TCP_HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
              "  timeout inode\n")


def _tcp(port: int, state: str) -> str:
    return (TCP_HEADER + f"   0: 0100007F:{port:04X} 00000000:0000 {state} 00000000:00000000 "
            "00:00000000 00000000  1000        0 31337 1 0000000000000000 100 0 0 10 0\n")


def test_port_check(tmp_path):
    root = guide_machine(tmp_path / "g")
    (root / "fs/proc/net").mkdir(parents=True)
    (root / "fs/proc/net/tcp").write_text(_tcp(8080, "0A"))
    found = findings(root, ["server.port"])
    assert found["server.port"].status == FAIL
    assert "llama-server pid 4242" in found["server.port"].observed  # its --port 8080
    assert findings(root, ["server.port"], port=8081)["server.port"].status == PASS
    (root / "fs/proc/net/tcp").write_text(_tcp(8080, "01"))  # established, not listening
    assert findings(root, ["server.port"])["server.port"].status == PASS


def test_port_check_follows_a_port_in_the_servers_own_arguments(tmp_path):
    """`launch -- --port 9000` (or the config file's args) is where llama-server listens:
    the check judges that port, not the plan's default."""
    root = guide_machine(tmp_path / "g")
    (root / "fs/proc/net").mkdir(parents=True)
    (root / "fs/proc/net/tcp").write_text(_tcp(9000, "0A"))
    assert findings(root, ["server.port"])["server.port"].status == PASS  # 8080 is free
    taken = findings(root, ["server.port"], server_args=["--port", "9000"])["server.port"]
    assert taken.status == FAIL and taken.title == "Port 9000 is already taken"
    moved = findings(root, ["server.port"], port=9000, server_args=["--port", "9001"])
    assert moved["server.port"].status == PASS


def test_running_server_without_processes(tmp_path):
    found = findings(guide_machine(tmp_path / "g", processes=False), ["server.running"])
    assert found["server.running"].status == SKIP


def test_version_text_is_the_builds():
    assert version_text("2025-08").startswith("version: 1 (4227c9b)")


def test_unrecorded_help_is_unknown_not_a_warning():
    """The GPU fixture records llama-server's libraries but not its --help: a replay cannot
    tell what it accepts, and says so without warning."""
    from conftest import host_fixture

    found = findings(Path(host_fixture("gpu-rtx4070-desktop")), ["server"])
    assert found["server.found"].status == PASS
    assert found["server.flags"].status == SKIP
    assert found["server.build"].status == INFO  # a CUDA build; its libllama is a stub
    assert "backends: cuda" in found["server.build"].title


def test_help_that_fails_warns(tmp_path):
    root = guide_machine(tmp_path / "g")
    record_command(root, [SERVER, "--help"], "", "error while loading shared libraries",
                   rc="127")
    found = findings(root, ["server.flags"])
    assert found["server.flags"].status == WARN

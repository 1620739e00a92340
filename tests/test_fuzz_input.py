"""Fuzzing the untrusted inputs (issue 18, "Done when"): hypothesis mutates a real
snapshot's snapshot.json, nvml.json, elf records and model.json, and the header of a
real GGUF, and ``check`` runs on each as a user runs it (the click command, in this
process so that every file it opens is seen by an audit hook). For every example:

- no traceback: the command exits 0, 1 or 2 (a snapshot refused with a reason), never
  with an exception, and no check reports a crash (status ``error``);
- bounded: each run ends within RUN_LIMIT_S, and the process's peak memory stays under
  PEAK_MIB;
- contained: every file opened or listed lies inside the example's own temporary tree
  or the Python installation and this package's code, nothing is written outside the
  tree, and no program is started.

The fast variants run a few examples each; ``slow`` runs hundreds.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import resource
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO, host_fixture
from gguf_files import write_qwen3next
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from launch_fixtures import QWEN_PATH, guide_machine
from q3cn_doctor.app.cli import main

RUN_LIMIT_S = 20.0  # one check on two shared CPUs takes about a second
PEAK_MIB = 1536
FAST = settings(max_examples=10, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# Random, not derandomized: each CI run tries inputs no earlier run tried (one found the
# null recurrent state). 150 examples a target keeps the five at ~3.5 min of CI's 20.
SLOW = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- what a run may touch ------------------------------------------------------------------------
_WRITE_EVENTS = {"os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.symlink", "os.link",
                 "os.chmod", "os.chown", "os.truncate", "os.utime", "shutil.rmtree",
                 "shutil.move", "shutil.copyfile", "shutil.copytree"}
_RUN_EVENTS = {"subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system",
               "os.fork", "os.forkpty", "pty.spawn"}
_CODE = tuple(os.path.realpath(p) + os.sep for p in {
    sys.prefix, sys.base_prefix, sys.exec_prefix, str(REPO / "doctor"), str(REPO / "checks"),
    str(REPO / "fixes"), *([sys.pycache_prefix] if sys.pycache_prefix else [])})
# (the last: a lazy import's .pyc where PYTHONPYCACHEPREFIX keeps bytecode apart)


class Watch:
    """Collects, while ``active``, what the doctor opens, lists, writes and runs."""

    def __init__(self) -> None:
        self.active = False
        self.seen: list[tuple[str, str, object]] = []

    def __call__(self, event: str, args: tuple) -> None:
        if not self.active:
            return
        if event == "open":
            path, mode, flags = (list(args) + [None, None, None])[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            self.seen.append(("write" if writing else "read", event, path))
        elif event in ("os.listdir", "os.scandir"):
            self.seen.append(("read", event, args[0] if args else None))
        elif event in _WRITE_EVENTS:
            self.seen.append(("write", event, args[0] if args else None))
        elif event in _RUN_EVENTS or event.startswith("subprocess."):
            self.seen.append(("run", event, args[0] if args else None))

    def outside(self, tree: str) -> list[tuple[str, str, object]]:
        """What was touched beyond ``tree`` (reads of Python's own files excepted)."""
        inside = os.path.realpath(tree) + os.sep
        wrong = []
        for kind, event, path in self.seen:
            if isinstance(path, int):  # a descriptor: its opening was seen already
                continue
            real = os.path.realpath(os.fsdecode(path)) if path is not None else ""
            if kind == "run" or not (real + os.sep).startswith(inside) and (
                    kind == "write" or not (real + os.sep).startswith(_CODE)):
                wrong.append((kind, event, path))
        return wrong


WATCH = Watch()
sys.addaudithook(WATCH)  # an audit hook cannot be removed: it idles unless active


def run_doctor(tree: Path, *args: str) -> tuple[int, str, str]:
    """``q3cn-doctor check ARGS`` in this process, its config file an empty one in
    ``tree``, temporary files in ``tree``; asserts it stayed inside the tree and within
    time, and returns (exit code, stdout, stderr)."""
    config = tree / "config.toml"
    config.write_text("")
    runner = CliRunner()
    WATCH.seen.clear()
    started = time.monotonic()
    saved_tmp = tempfile.tempdir
    tempfile.tempdir = str(tree)
    WATCH.active = True
    try:
        result = runner.invoke(main, ["check", "--no-plugins", "--config", str(config), *args],
                               env={"NO_COLOR": "1", "XDG_CONFIG_HOME": str(tree)})
    finally:
        WATCH.active = False
        tempfile.tempdir = saved_tmp
    elapsed = time.monotonic() - started
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{type(result.exception).__name__}: {result.exception}\n"
                             f"{result.stderr}") from result.exception
    assert "Traceback" not in result.stdout + result.stderr
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.stdout[-2000:],
                                           result.stderr[-2000:])
    assert elapsed < RUN_LIMIT_S, f"{elapsed:.1f} s"
    assert WATCH.outside(str(tree)) == []
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert peak < PEAK_MIB, f"peak memory {peak:.0f} MiB"
    return result.exit_code, result.stdout, result.stderr


def crashes(stdout: str) -> dict[str, str]:
    """Findings whose check crashed, from ``--json`` output (none where it is not JSON)."""
    try:
        document = json.loads(stdout, parse_constant=lambda name: pytest.fail(name))
    except ValueError:
        return {}
    return {f["id"]: f["observed"] for f in document["findings"] if f["status"] == "error"}


# -- mutations of a JSON document ----------------------------------------------------------------
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=()), max_size=40) | st.sampled_from(
    ["\x1b]0;x\x07", "\ud800", "9" * 5000, "-1", "NaN", "/proc/meminfo", "", "EACCES", "../..",
     "/" * 300])
_NUMBER = (st.integers(min_value=-(2**70), max_value=2**70)
           | st.sampled_from([0, -1, 1, 2**31, 2**63, 2**64, 10**4000])
           | st.floats(allow_nan=True, allow_infinity=True))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | _NUMBER | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12)


def _paths(value, prefix=()) -> list[tuple]:
    """Every place in a JSON document, the document itself first."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, prefix + (index,))
    return found


# A value of each JSON type, for flipping a field to a type it never has.
WRONG_TYPES = st.sampled_from([None, True, -1, 2**64, 1.5, float("nan"), "x", "\x1b[2J", [],
                               [1, "a"], {}, {"error": 7}])


@st.composite
def mutated(draw, document):
    """``document`` with one to six places replaced: by a value of another type, or by
    an arbitrary JSON document."""
    document = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 6))):
        places = _paths(document)[1:] or [()]
        shallow = [place for place in places if len(place) <= 2]  # as likely as the rest:
        place = draw(st.sampled_from(shallow or places) | st.sampled_from(places))  # lists
        # of processes and CPUs would otherwise hold nearly every place
        value = copy.deepcopy(draw(WRONG_TYPES | JSON_VALUES))  # a sampled [] is shared
        if not place:
            document = value
            continue
        parent = document
        for step in place[:-1]:
            parent = parent[step]
        parent[place[-1]] = value
    return document


def _write_json(path: Path, document) -> None:
    try:
        text = json.dumps(document)
    except ValueError:  # an integer of more digits than Python prints
        text = "9" * 5000
    path.write_text(text, encoding="utf-8", errors="surrogatepass")


# -- the fixtures mutated ------------------------------------------------------------------------
def _guide(tree: Path) -> Path:
    return guide_machine(tree / "snapshot")


RECORDED_KEYS = {"format": 1, "tool_version": "0.1.0", "created": "2026-01-01T00:00:00+00:00",
                 "redacted": True, "euid": 1000, "user": "user", "errors": {
                     "/sys/bus/i2c/drivers/ee1004/0-0050/eeprom": "EACCES"},
                 "listings": {"/sys/class/drm": ["card1", "renderD128"]}, "not_captured": []}


def _json_target(name: str):
    """(build the snapshot in a tree, the file mutated, the original document)."""
    scratch = Path(tempfile.mkdtemp(prefix="q3cn-fuzz-"))
    try:
        if name == "elf":
            source = Path(host_fixture("gpu-rtx4090-desktop"))
            relative = "fs/opt/llama.cpp/bin/llama-server.elf.json"

            def build(tree: Path) -> Path:
                shutil.copytree(source, tree / "snapshot", symlinks=True)
                return tree / "snapshot"
        else:
            source = _guide(scratch)
            relative = f"{name}.json"

            def build(tree: Path) -> Path:
                return _guide(tree)
        original = json.loads((source / relative).read_text())
    finally:
        shutil.rmtree(scratch)
    if name == "snapshot":  # every key a recording writes (RecordingHost.finish)
        original = dict(RECORDED_KEYS, **original)
    return build, relative, original


TARGETS = {name: _json_target(name) for name in ("snapshot", "nvml", "elf", "model")}


def _check_mutated_json(name: str, document) -> None:
    build, relative, _ = TARGETS[name]
    with tempfile.TemporaryDirectory(prefix="q3cn-fuzz-") as folder:
        tree = Path(folder)
        snapshot = build(tree)
        _write_json(snapshot / relative, document)
        extra = ["--model", QWEN_PATH] if name == "model" else []
        code, stdout, _ = run_doctor(tree, "--snapshot", str(snapshot), "--json", *extra)
        assert crashes(stdout) == {}
        if code != 2:
            run_doctor(tree, "--snapshot", str(snapshot), "-v", *extra)  # the text report


def _json_test(name: str, config: settings):
    @config
    @given(document=mutated(TARGETS[name][2]))
    def test(document):
        _check_mutated_json(name, document)

    return test


test_fuzz_snapshot_json = _json_test("snapshot", FAST)
test_fuzz_nvml_json = _json_test("nvml", FAST)
test_fuzz_elf_json = _json_test("elf", FAST)
test_fuzz_model_json = _json_test("model", FAST)
for _name in TARGETS:
    globals()[f"test_fuzz_{_name}_json_long"] = pytest.mark.slow(_json_test(_name, SLOW))


# -- GGUF headers --------------------------------------------------------------------------------
def _real_gguf() -> bytes:
    with tempfile.TemporaryDirectory(prefix="q3cn-fuzz-") as folder:
        return write_qwen3next(Path(folder) / "model.gguf")[0].read_bytes()


_GGUF = _real_gguf()
_HEADER = _GGUF.index(b"blk.0.attn_norm.weight") + 4096  # metadata and the tensor table


@st.composite
def mutated_gguf(draw) -> bytes:
    """The model with one to four runs of its header overwritten: arbitrary bytes, or
    the values that break readers (all ones, a huge count, a negative number)."""
    data = bytearray(_GGUF)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(4, _HEADER))
        chunk = draw(st.binary(min_size=1, max_size=8) | st.sampled_from([
            b"\xff" * 8, struct.pack("<Q", 2**30), struct.pack("<Q", 2**62),
            struct.pack("<q", -512), struct.pack("<I", 9), b"\x00" * 8]))
        data[at:at + len(chunk)] = chunk
    return bytes(data)


def _check_gguf(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="q3cn-fuzz-") as folder:
        tree = Path(folder)
        root = tree / "root"
        (root / "models").mkdir(parents=True)
        (root / "models/m.gguf").write_bytes(data)
        code, stdout, _ = run_doctor(tree, "--root", str(root), "--model", "/models/m.gguf",
                                     "--only", "model", "--json")
        assert code in (0, 1)
        assert crashes(stdout) == {}


@FAST
@given(data=mutated_gguf())
def test_fuzz_gguf_header(data):
    _check_gguf(data)


@pytest.mark.slow  # a fuzz sweep: the long twin of test_fuzz_gguf_header
@SLOW
@given(data=mutated_gguf())
def test_fuzz_gguf_header_long(data):
    _check_gguf(data)


# -- the harness itself sees what it claims to ----------------------------------------------------
def test_the_watch_sees_a_read_outside_the_tree(tmp_path):
    WATCH.seen.clear()
    WATCH.active = True
    try:
        with contextlib.suppress(OSError), open("/etc/hostname", "rb"):
            pass
        os.listdir(tmp_path)
    finally:
        WATCH.active = False
    assert [event for _, event, _ in WATCH.outside(str(tmp_path))] == ["open"]


def test_an_unmutated_snapshot_passes_the_harness(tmp_path):
    snapshot = _guide(tmp_path)
    code, stdout, _ = run_doctor(tmp_path, "--snapshot", str(snapshot), "--json")
    assert code in (0, 1)
    assert crashes(stdout) == {}

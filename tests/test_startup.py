"""What `check` loads at start: only what the machine's inputs need.

`check` runs before every launch and inside package-manager transactions, so its start
is budgeted (bench/bench_startup.py measures it against pyperf). These tests keep the
lazy parts lazy: a machine without dmidecode output, part numbers, a llama-server or a
model file never imports their parsers, and a run with a current plugin index never
imports importlib.metadata.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from q3cn_doctor.parsers.patterns import LazyPattern
from test_cli import NO_XDG, make_root

# Modules a bare machine (no llama-server, no dmidecode, no model file) never needs.
NOT_ON_A_BARE_MACHINE = (
    "importlib.metadata",  # the plugin index answers
    "q3cn_doctor.parsers.partnumbers",  # no module listing, so no part number
    "q3cn_doctor.parsers.spd",  # no SPD EEPROM
    "q3cn_doctor.parsers.elf",  # no llama-server's libraries to read
    "q3cn_doctor.parsers.server_help",  # no llama-server --help
    "q3cn_doctor.parsers.gguf_file",  # no model file
    "gguf",
    "numpy",
    "pynvml",  # --root reads no NVML
    "shutil",  # its import pulls in bz2, lzma and zlib: the report and PATH search need none
)

PROBE = """
import atexit, json, sys
watched = json.loads(sys.argv[1])
atexit.register(lambda: print("LOADED", json.dumps([m for m in watched if m in sys.modules]),
                              file=sys.stderr))
sys.argv = ["q3cn-doctor", *sys.argv[2:]]
from q3cn_doctor.app.cli import main
main()
"""


def loaded_by_check(tmp_path, *args: str) -> list[str]:
    return loaded_by(tmp_path, NOT_ON_A_BARE_MACHINE, "check", *args)


def loaded_by(tmp_path, watched: tuple[str, ...], *args: str) -> list[str]:
    """Which of ``watched`` the command ``args`` imported."""
    env = dict(os.environ, XDG_CONFIG_HOME=NO_XDG, XDG_CACHE_HOME=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(watched), *args],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    match = re.search(r"^LOADED (.*)$", done.stderr, re.MULTILINE)
    assert match, done.stderr
    return json.loads(match.group(1))


def test_check_on_a_bare_machine_loads_no_parser_it_does_not_need(tmp_path):
    root = make_root(tmp_path / "root")
    first = loaded_by_check(tmp_path, "--root", str(root))
    # The first run builds the plugin index: importlib.metadata, and the shutil its
    # zipfile imports.
    assert first == ["importlib.metadata", "shutil"]
    assert loaded_by_check(tmp_path, "--root", str(root)) == []
    assert loaded_by_check(tmp_path, "--root", str(root), "--json") == []


def test_help_builds_no_options_record(tmp_path):
    """--help imports click and the command table only: no session, no Options record
    (msgspec's import costs milliseconds), no facts, and no shutil (click's help would
    ask it for the width; its import loads bz2, lzma and zlib)."""
    watched = ("q3cn_doctor.app.session", "q3cn_doctor.options", "msgspec",
               "q3cn_doctor.facts", "shutil")
    assert loaded_by(tmp_path, watched, "--help") == []
    assert loaded_by(tmp_path, watched, "check", "--help") == []
    assert loaded_by(tmp_path, watched, "hook", "install", "--help") == []  # a subgroup's


def test_a_lazy_pattern_answers_as_the_compiled_one():
    lazy = LazyPattern(r"^(\d+)\s*(kB|MB)\b", re.IGNORECASE)
    compiled = re.compile(r"^(\d+)\s*(kB|MB)\b", re.IGNORECASE)
    for text in ("16 kb", "2MB total", "none", ""):
        found, expected = lazy.match(text), compiled.match(text)
        assert (found and found.groups()) == (expected and expected.groups())
    assert lazy.sub("x", "16 kB") == compiled.sub("x", "16 kB")
    assert lazy.pattern == compiled.pattern and lazy.flags == compiled.flags
    assert lazy.compiled() is lazy.compiled()  # compiled once


def test_a_lazy_pattern_compiles_on_first_use_only():
    broken = LazyPattern("(unclosed")  # importing a module holding it costs nothing
    with pytest.raises(re.error):
        broken.match("x")

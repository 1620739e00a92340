"""Values from the machine or a file never drive the terminal (issue 18, item 6), and
JSON stays strict (item 16): a poisoned snapshot (tests/hostile.py) through every
command that prints, as a user runs them."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import pytest
from hostile import FILE_POISON, POISON, poisoned_machine, unsafe_in
from launch_fixtures import QWEN_PATH
from q3cn_doctor.report.output import json_text, printable, shell_line, strict
from test_cli import cli, make_root
from test_hook import ROOT_ENV


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory) -> Path:
    return poisoned_machine(tmp_path_factory.mktemp("poisoned") / "snapshot")


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as a strict reader does."""
    def refuse(name: str):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_printable_escapes_every_control_format_and_bidi_character():
    assert printable("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert printable("one\ntwo\r\tthree") == "one\\x0atwo\\x0d\\x09three"
    assert printable("\x7f\x9b\u202e\u2066\u200b\ufeff") == (
        "\\x7f\\x9b\\u202e\\u2066\\u200b\\ufeff")
    assert printable("\ud800") == "\\ud800"
    assert printable("caf\udce9") == "caf\\xe9"  # an undecodable byte of a file name
    assert printable("Ryzen™ 9 — “Zen 4” 日本") == "Ryzen™ 9 — “Zen 4” 日本"
    assert unsafe_in(printable(POISON)) == []


def test_shell_line_runs_as_printed_and_is_safe_to_show():
    words = ["/opt/llama server", "it's", "--alias", "x\x1b]0;t\x07\n\u202ey", "a\\b"]
    line = shell_line(words)
    assert unsafe_in(line) == []
    done = subprocess.run(["bash", "-c", 'printf "%s\\0" ' + line], capture_output=True,
                          check=True)
    assert done.stdout.decode().split("\0")[:-1] == words


def test_strict_json_has_no_nan_infinity_or_lone_surrogate():
    document = {"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5],
                "name\ud800": "gpu\ud800", 3: True}
    text = json_text(document)
    assert strict_json(text) == {"a": None, "b": [None, None, 1.5],
                                 "name\ufffd": "gpu\ufffd", "3": True}
    text.encode("utf-8")  # strict UTF-8: no surrogate escapes
    assert strict({"x": (1.0, math.nan)}) == {"x": [1.0, None]}


@pytest.mark.parametrize("args", [[], ["-v"], ["--list"]])
def test_check_report_shows_machine_values_escaped(poisoned, args):
    done = cli("check", "--snapshot", str(poisoned), "--no-plugins", *args)
    assert done.returncode in (0, 1), done.stderr
    assert unsafe_in(done.stdout + done.stderr) == []
    if not args or args == ["-v"]:
        assert "RTX 4070\\x1b]0;owned\\x07\\x1b[2J" in done.stdout
        assert "all good\\x0a" in done.stdout  # the value's newline, shown
        assert not re.findall(r"^  \[pass\] forged", done.stdout, re.M)  # no finding line


def test_check_json_keeps_the_real_values_and_stays_strict(poisoned):
    done = cli("check", "--snapshot", str(poisoned), "--no-plugins", "--json")
    document = strict_json(done.stdout)
    names = [gpu["name"] for gpu in document["facts"]["gpus"]]
    assert names == ["NVIDIA GeForce RTX 4070" + POISON.replace("\ud800", "\ufffd")]


def test_fix_plan_shows_machine_values_escaped(poisoned):
    done = cli("fix", "--snapshot", str(poisoned), "--no-plugins")
    assert done.returncode == 0, done.stderr
    assert "fix plan" in done.stdout
    assert unsafe_in(done.stdout + done.stderr) == []


def test_fix_plan_escapes_a_governor_value(tmp_path):
    root = make_root(tmp_path / "root", governor="powersave" + FILE_POISON)
    done = cli("fix", "--root", str(root), "--no-plugins")
    assert "powersave\\x1b]0;owned" in done.stdout
    assert unsafe_in(done.stdout + done.stderr) == []


def test_launch_print_is_escaped_and_still_runs_as_printed(poisoned):
    alias = "coder\x1b]0;owned\x07\u202e"
    base = ["launch", "--snapshot", str(poisoned), "--no-plugins", "--model", QWEN_PATH,
            "--force"]
    printed = cli(*base, "--print", "--", "--alias", alias)
    assert printed.returncode == 0, printed.stderr
    assert unsafe_in(printed.stdout + printed.stderr) == []
    plan = strict_json(cli(*base, "--json", "--", "--alias", alias).stdout)
    assert plan["model"]["name"] == "Qwen3" + POISON.replace("\ud800", "\ufffd")
    argv = subprocess.run(["bash", "-c", 'printf "%s\\0" ' + printed.stdout.strip()],
                          capture_output=True, check=True).stdout.decode().split("\0")[:-1]
    assert argv[-len(plan["argv"]):] == plan["argv"]
    assert argv[-1] == alias


def test_hook_status_shows_a_planted_hook_file_escaped(tmp_path):
    root = make_root(tmp_path / "root")
    hook = root / "etc/pacman.d/hooks/95-q3cn-doctor.hook"
    hook.parent.mkdir(parents=True)
    hook.write_text("[Action]\nExec = /usr/bin/q3cn" + FILE_POISON + " check --hook\n")
    done = cli("hook", "status", "--root", str(root), env=ROOT_ENV)
    assert done.returncode == 0, done.stderr
    assert "Exec = /usr/bin/q3cn\\x1b]0;owned" in done.stdout
    assert unsafe_in(done.stdout + done.stderr) == []


def test_check_hook_lines_are_escaped(tmp_path):
    from test_hook import POLICY, check_hook

    root = make_root(tmp_path / "root\x1b]0;owned\x07\u202e", governor="performance")
    (root / "var/lib").mkdir(parents=True)
    assert check_hook(root).stdout == ""
    (root / POLICY / "scaling_governor").write_text("powersave\n")
    (root / POLICY / "energy_performance_preference").write_text("balance_power\n")
    done = check_hook(root)
    assert "q3cn-doctor: cpu.governor: pass -> " in done.stdout
    assert "\\x1b" in done.stdout
    assert unsafe_in(done.stdout + done.stderr) == []

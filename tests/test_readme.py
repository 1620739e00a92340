"""The README's commands are what users and CI run: keep them true."""

from __future__ import annotations

import os
import re

from conftest import REPO

README = REPO / "README.md"
CI_RUN = REPO / ".ci" / "run"


def readme_commands(text: str) -> list[str]:
    """Command lines of the README's code blocks (fenced or indented), in order."""
    commands: list[str] = []
    fence: str | None = None
    in_block, previous_blank = False, True
    for line in text.splitlines():
        stripped = line.strip()
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            elif stripped:
                commands.append(stripped.removeprefix("$ "))
            continue
        match = re.match(r"^ {0,3}(`{3,}|~{3,})", line)
        if match:
            fence = match.group(1)
        elif line.startswith(("    ", "\t")) and stripped and (previous_blank or in_block):
            commands.append(stripped.removeprefix("$ "))  # an indented code block
            in_block = True
        elif stripped:
            in_block = False  # indented text right under a paragraph continues it
        previous_blank = not stripped
    return commands


def ci_command_lines() -> list[str]:
    """What .ci/run does, less its shebang, comments, `set` options, `cd` and the system
    packages it installs first (.ci/packages, which the README names)."""
    lines = []
    for line in CI_RUN.read_text().splitlines():
        stripped = line.split(" #", 1)[0].strip()
        if not stripped or stripped.startswith("#") or re.match(r"^(set|cd)\s", stripped):
            continue
        if stripped == ".ci/packages":
            assert ".ci/packages" in README.read_text(), "the README says what CI installs"
            continue
        lines.append(stripped)
    return lines


def test_first_command_sets_up_and_checks_this_machine():
    commands = readme_commands(README.read_text())
    assert commands, "the README has no command block"
    assert "q3cn-doctor check" in commands[0]
    assert "pip install" in commands[0]


def test_second_command_is_what_ci_runs():
    commands = readme_commands(README.read_text())
    assert len(commands) >= 2, commands
    assert ci_command_lines() == [commands[1]]
    assert "pytest" in commands[1] and ".[test]" in commands[1]


def test_ci_script_is_executable_bash():
    text = CI_RUN.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.access(CI_RUN, os.X_OK)


def test_readme_parser_sees_both_block_styles():
    text = ("Intro\n\n    indented one\n\nText\n\n```sh\n$ fenced two\n```\n\n"
            "Inline `not a command` here.\n")
    assert readme_commands(text) == ["indented one", "fenced two"]


def readme_check_table(text: str) -> list[str]:
    """The check ids in the first column of the table under "## What it checks"."""
    section = text.split("\n## What it checks\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)


def test_readme_lists_every_builtin_check_once():
    from q3cn_doctor.checking.registry import builtin_checks

    listed = readme_check_table(README.read_text())
    assert len(listed) == len(set(listed)), "a check is listed twice"
    builtin = {spec.id for spec in builtin_checks()}
    assert sorted(builtin - set(listed)) == [], "built-in checks missing from the README table"
    assert sorted(set(listed) - builtin) == [], "the README table lists checks that do not exist"


def test_check_table_parser_reads_only_that_table():
    text = ("## Commands\n\n| `q3cn-doctor check` | runs |\n\n## What it checks\n\n"
            "| Check id | What |\n|---|---|\n| `cpu.isa` | AVX2 |\n| `gpu.vram` | VRAM |\n\n"
            "## Exit status\n\n| `0` | fine |\n")
    assert readme_check_table(text) == ["cpu.isa", "gpu.vram"]

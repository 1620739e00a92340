"""The command line as a user meets it: the installed console script in a subprocess.

Exit codes and config handling are tested on ``--root`` trees built here, so the
results do not depend on the machine the tests run on; a few tests run against
this machine read-only and assert only what holds everywhere.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli, run_on_terminal
from q3cn_doctor.profiles import PROFILES
from q3cn_doctor.version import __version__

GIB_KB = 1024 * 1024  # kB in a GiB, /proc/meminfo's unit
BUILTIN_IDS = ("memory.swappiness", "memory.swap", "memory.hugepages", "cpu.governor",
               "system.virtualization")
NO_XDG = "/nonexistent-q3cn-doctor-test-xdg"  # keeps the tester's own config out
BOX_DRAWING = re.compile("[\u2500-\u257f]")


def make_root(root: Path, *, mem_gib: int = 128, hugetlb_gib: int = 0, disk_swap: bool = False,
              swappiness: int = 10, governor: str | None = None, no_mmap: bool = False) -> Path:
    """A live-like tree for ``--root``: a bare-metal two-CPU box, consistent throughout.

    The defaults give no fail and no warn: 128 GiB holds either profile, no
    hugetlb reservation, no swap. ``hugetlb_gib`` reserves 1 GiB pages (meminfo's
    Hugetlb agrees with the sysfs pool); ``disk_swap`` adds a swap partition;
    ``no_mmap`` has the config file give llama-server --no-mmap (no --mlock), which
    holds the model in unlocked memory only swap can page out.
    """
    files = {
        "proc/meminfo": (
            f"MemTotal:       {mem_gib * GIB_KB} kB\n"
            f"MemFree:        {(mem_gib - hugetlb_gib) * GIB_KB // 2} kB\n"
            f"MemAvailable:   {(mem_gib - hugetlb_gib) * GIB_KB // 2} kB\n"
            "HugePages_Total:       0\nHugePages_Free:        0\nHugePages_Rsvd:        0\n"
            "HugePages_Surp:        0\nHugepagesize:       2048 kB\n"
            f"Hugetlb:        {hugetlb_gib * GIB_KB} kB\n"
        ),
        "proc/swaps": "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n" + (
            "/dev/nvme0n1p3                          partition\t16777212\t0\t\t-2\n"
            if disk_swap else ""),
        "proc/sys/vm/swappiness": f"{swappiness}\n",
        "proc/sys/kernel/osrelease": "6.8.0-45-generic\n",
        "etc/os-release": 'NAME="Ubuntu"\nPRETTY_NAME="Ubuntu 24.04.1 LTS"\n',
        "proc/cpuinfo": "".join(
            f"processor\t: {n}\nvendor_id\t: AuthenticAMD\n"
            f"model name\t: AMD Ryzen 9 7950X 16-Core Processor\nflags\t\t: fpu sse2 avx2\n\n"
            for n in range(2)),
        "sys/devices/system/cpu/online": "0-1\n",
        "sys/kernel/mm/transparent_hugepage/enabled": "always [madvise] never\n",
    }
    if no_mmap:
        files["etc/q3cn-doctor/config.toml"] = 'args = ["--no-mmap"]\n'
    for size_kb, pages in ((2048, 0), (1048576, hugetlb_gib)):
        pool = f"sys/kernel/mm/hugepages/hugepages-{size_kb}kB/"
        files.update({pool + "nr_hugepages": f"{pages}\n", pool + "free_hugepages": f"{pages}\n",
                      pool + "resv_hugepages": "0\n"})
    if governor:
        policy = "sys/devices/system/cpu/cpufreq/policy0/"
        epp = "performance" if governor == "performance" else "balance_power"
        files.update({
            policy + "affected_cpus": "0 1\n", policy + "scaling_driver": "amd-pstate-epp\n",
            policy + "scaling_governor": f"{governor}\n",
            policy + "scaling_available_governors": "performance powersave\n",
            policy + "energy_performance_preference": f"{epp}\n",
        })
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def cli(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """run_cli with the caller's own config files and colour wishes out of the way."""
    base = {"XDG_CONFIG_HOME": NO_XDG, "NO_COLOR": "1"}
    result = run_cli(*args, env=dict(base, **(env or {})), **kwargs)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


def builtin_ids(area: str | None = None) -> set[str]:
    """Ids of the built-in checks (of one area): the selection tests follow the registry."""
    from q3cn_doctor.checking.registry import builtin_checks

    return {spec.id for spec in builtin_checks() if area in (None, spec.area)}


def as_json(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout)


def statuses(document: dict) -> dict[str, str]:
    return {finding["id"]: finding["status"] for finding in document["findings"]}


@pytest.fixture
def clean_root(tmp_path):
    return make_root(tmp_path / "clean")


@pytest.fixture
def fail_root(tmp_path):
    """64 GiB with 60 GiB in 1 GiB hugetlb pages: the model cannot fit."""
    return make_root(tmp_path / "fail", mem_gib=64, hugetlb_gib=60)


@pytest.fixture
def warn_root(tmp_path):
    """Disk swap with swappiness 60 on a box whose RAM holds the model: one warning."""
    return make_root(tmp_path / "warn", disk_swap=True, swappiness=60, no_mmap=True)


# --- help and version ---------------------------------------------------------------------

def test_version():
    result = cli("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout and "q3cn-doctor" in result.stdout


@pytest.mark.parametrize("command, options", [
    ((), ["check", "snapshot", "--version"]),
    (("check",), ["--only", "--skip", "--json", "--list", "--strict", "--no-plugins",
                  "--root", "--snapshot", "--profile", "--config", "--verbose"]),
    (("snapshot",), ["--tar", "--no-redact", "--profile", "DIRECTORY"]),
])
def test_help(command, options):
    result = cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    for option in options:
        assert option in result.stdout, f"{option} missing from {' '.join(command)} --help"


@pytest.mark.parametrize("columns", ["40", "55", "64", "200", None])
def test_help_is_laid_out_as_clicks_own(columns, monkeypatch):
    """The doctor measures the terminal itself for --help (no shutil); the text is what
    click's own formatter, which asks shutil, lays out: COLUMNS where set, 80 for a pipe."""
    import click
    from q3cn_doctor.app.cli import main

    monkeypatch.setenv("COLUMNS", columns or "80")  # shutil's answer for a pipe
    env = {"COLUMNS": columns} if columns else {}
    for path in ((), ("check",), ("hook", "install")):
        command = main
        context = click.Context(main, info_name="q3cn-doctor", **main.context_settings)
        for name in path:
            command = command.get_command(context, name)
            context = click.Context(command, info_name=name, parent=context,
                                    **command.context_settings)
        assert cli(*path, "--help", env=env).stdout == command.get_help(context) + "\n"


def test_check_help_documents_exit_codes():
    text = " ".join(cli("check", "--help").stdout.split())
    assert "0 nothing failed" in text and "2 usage error" in text and "3 a check" in text


# --- on this machine, read-only -------------------------------------------------------------

@pytest.mark.live
def test_check_on_this_machine():
    result = cli("check", env={"NO_COLOR": ""})
    assert result.returncode in (0, 1), result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[0].startswith(f"q3cn-doctor {__version__}: this machine")
    assert lines[-1].startswith("Summary: ")
    assert "\x1b" not in result.stdout + result.stderr
    assert not BOX_DRAWING.search(result.stdout + result.stderr)


@pytest.mark.live
def test_json_on_this_machine_is_only_json():
    result = cli("check", "--json")
    assert result.returncode in (0, 1), result.stderr
    document = json.loads(result.stdout)  # any stray line on stdout would break this
    assert document["host"]["source"] == "live"
    assert {f["check"] for f in document["findings"]} >= set(BUILTIN_IDS)


def test_list():
    from q3cn_doctor.checking.registry import builtin_checks

    result = cli("check", "--list")
    assert result.returncode == 0
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    for spec in builtin_checks():
        assert spec.description in lines[spec.id]
    assert set(BUILTIN_IDS) <= set(lines)


# --- selection ----------------------------------------------------------------------------

def test_only_area(clean_root):
    document = as_json(cli("check", "--root", str(clean_root), "--only", "memory", "--json"))
    assert {f["area"] for f in document["findings"]} == {"memory"}
    assert {f["check"] for f in document["findings"]} == builtin_ids("memory")
    assert builtin_ids("memory") >= {"memory.swappiness", "memory.swap", "memory.hugepages"}


def test_only_ids_comma_separated(clean_root):
    document = as_json(cli("check", "--root", str(clean_root), "--json",
                           "--only", "cpu.governor,system.virtualization"))
    assert {f["check"] for f in document["findings"]} == {"cpu.governor", "system.virtualization"}


def test_skip(clean_root):
    document = as_json(cli("check", "--root", str(clean_root), "--skip", "cpu.governor", "--json"))
    checks = {f["check"] for f in document["findings"]}
    assert "cpu.governor" not in checks
    assert checks == builtin_ids() - {"cpu.governor"}


@pytest.mark.parametrize("option", ["--only", "--skip"])
def test_unknown_selection_is_a_usage_error(clean_root, option):
    result = cli("check", "--root", str(clean_root), option, "nosuch")
    assert result.returncode == 2
    assert "nosuch" in result.stderr
    assert result.stdout == ""


# --- output -------------------------------------------------------------------------------

def test_verbose_shows_evidence(clean_root):
    quiet = cli("check", "--root", str(clean_root))
    loud = cli("check", "--root", str(clean_root), "-v")
    assert "evidence:" not in quiet.stdout and "facts.memory:" not in quiet.stdout
    evidence = [line for line in loud.stdout.splitlines() if line.strip().startswith("evidence:")]
    assert evidence and any("facts.memory" in line for line in evidence)
    [sources] = [line for line in loud.stdout.splitlines()
                 if line.startswith("  facts.memory: ")]  # each section's sources, once
    assert re.search(r"/proc/(meminfo|\{[^}]*\bmeminfo\b)", sources)  # alone or braced


def test_text_report_names_the_root_and_areas(fail_root):
    result = cli("check", "--root", str(fail_root))
    header = " ".join(result.stdout.split())  # a long temporary path wraps the first line
    assert header.startswith(f"q3cn-doctor {__version__}: root {fail_root}, ")
    folded = [line.split()[0] for line in result.stdout.splitlines()
              if re.match(r"  [a-z]+ +(pass|info|skip): ", line)]
    assert {"memory", "cpu", "system"} <= set(folded)  # one line per area for the rest
    assert "[fail] memory.hugepages:" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("Summary: 1 fail")



def _terminal_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(TERM="xterm-256color", XDG_CONFIG_HOME=NO_XDG, **extra)
    return env


def test_colour_on_a_terminal(fail_root):
    _, output = run_on_terminal(["check", "--root", str(fail_root)], _terminal_env())
    assert b"Summary: 1 fail" in output
    assert b"\x1b[" in output


def test_no_color_on_a_terminal_means_no_escape_codes(fail_root):
    _, output = run_on_terminal(["check", "--root", str(fail_root)],
                                _terminal_env(NO_COLOR="1"))
    assert b"Summary: 1 fail" in output
    assert b"\x1b" not in output  # not even bold


def test_piped_output_is_plain(fail_root):
    env = {"NO_COLOR": "", "TERM": "xterm-256color"}
    result = cli("check", "--root", str(fail_root), "-v", env=env)
    assert "\x1b" not in result.stdout + result.stderr
    assert not BOX_DRAWING.search(result.stdout)


# --- exit codes ---------------------------------------------------------------------------

def test_exit_0_when_nothing_fails(clean_root):
    result = cli("check", "--root", str(clean_root), "--strict")
    assert result.returncode == 0, result.stdout
    assert "[fail]" not in result.stdout and "[warn]" not in result.stdout


def test_exit_1_on_a_failed_check(fail_root):
    result = cli("check", "--root", str(fail_root), "--json")
    assert result.returncode == 1
    document = as_json(result)
    assert statuses(document)["memory.hugepages"] == "fail"
    assert document["summary"]["fail"] == 1
    hugepages = next(f for f in document["findings"] if f["id"] == "memory.hugepages")
    assert hugepages["fixes"] == ["hugepages.release"]


def test_warnings_exit_0_unless_strict(warn_root):
    plain = cli("check", "--root", str(warn_root), "--json")
    assert plain.returncode == 0
    document = as_json(plain)
    assert statuses(document)["memory.swappiness"] == "warn"
    assert "fail" not in statuses(document).values()
    assert cli("check", "--root", str(warn_root), "--strict").returncode == 1


def test_governor_warning_is_a_warning_too(tmp_path):
    root = make_root(tmp_path / "gov", governor="powersave")
    result = cli("check", "--root", str(root), "--json")
    assert result.returncode == 0
    assert statuses(as_json(result))["cpu.governor"] == "warn"
    assert cli("check", "--root", str(root), "--strict").returncode == 1
    fast = make_root(tmp_path / "fast", governor="performance")
    assert statuses(as_json(cli("check", "--root", str(fast), "--json")))["cpu.governor"] == "pass"


def test_snapshot_and_root_together_is_a_usage_error(clean_root, tmp_path):
    result = cli("check", "--snapshot", str(tmp_path), "--root", str(clean_root))
    assert result.returncode == 2
    assert "--snapshot" in result.stderr and "--root" in result.stderr
    assert result.stdout == ""


def test_missing_root_is_a_usage_error(tmp_path):
    result = cli("check", "--root", str(tmp_path / "typo"))
    assert result.returncode == 2
    assert "typo" in result.stderr


def test_missing_snapshot_is_a_usage_error(tmp_path):
    result = cli("check", "--snapshot", str(tmp_path / "nosuch.tar.gz"))
    assert result.returncode == 2
    assert "--snapshot" in result.stderr


# --- config file --------------------------------------------------------------------------

GPT_OSS = "gpt-oss-120b-mxfp4"
QWEN = "qwen3-coder-next-mxfp4"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_config_file_sets_the_profile(clean_root, tmp_path):
    config = _write(tmp_path / "c.toml", f'profile = "{GPT_OSS}"\nctx-size = 32768\n')
    text = cli("check", "--root", str(clean_root), "--config", str(config))
    header, ledger = (" ".join(part.split()) for part in text.stdout.split("\n\n")[:2])
    assert header.endswith(", ctx 32768")
    assert ledger.startswith(f"{PROFILES[GPT_OSS]['name']} here: ")  # the ledger names it
    document = as_json(cli("check", "--root", str(clean_root), "--config", str(config), "--json"))
    assert document["facts"]["model"]["profile"] == GPT_OSS
    assert document["facts"]["model"]["ctx_size"] == 32768


def test_command_line_wins_over_config(clean_root, tmp_path):
    config = _write(tmp_path / "c.toml", f'profile = "{GPT_OSS}"\nctx_size = 32768\n')
    result = cli("check", "--root", str(clean_root), "--config", str(config), "--json",
                 "--profile", QWEN, "--ctx-size", "4096")
    model = as_json(result)["facts"]["model"]
    assert (model["profile"], model["ctx_size"]) == (QWEN, 4096)


def test_config_only_and_skip(clean_root, tmp_path):
    config = _write(tmp_path / "c.toml", 'only = "memory"\nskip = ["memory.swap"]\n')
    document = as_json(cli("check", "--root", str(clean_root), "--config", str(config), "--json"))
    assert {f["check"] for f in document["findings"]} == builtin_ids("memory") - {"memory.swap"}
    overridden = cli("check", "--root", str(clean_root), "--config", str(config), "--json",
                     "--only", "cpu")
    assert {f["check"] for f in as_json(overridden)["findings"]} == builtin_ids("cpu")


@pytest.mark.parametrize("text, message", [
    ("profile = \n", "cannot read config file"),
    ("colour = true\n", "unknown key 'colour'"),
    ('profile = "nosuch"\n', "unknown profile 'nosuch'"),
    ("profile = 3\n", "profile must be a string"),
    ("[profile]\nname = 'x'\n", "profile must be a string"),
    ('ctx-size = "big"\n', "ctx-size must be a whole number"),
    ("ctx-size = 0\n", "ctx-size must be a whole number"),
    ("only = 5\n", "only must be a string or a list of strings"),
    ('only = ["nosuch"]\n', "nosuch"),
])
def test_bad_config_is_a_usage_error(clean_root, tmp_path, text, message):
    config = _write(tmp_path / "bad.toml", text)
    result = cli("check", "--root", str(clean_root), "--config", str(config))
    assert result.returncode == 2, result.stdout
    assert message in result.stderr
    assert result.stdout == ""


def test_missing_explicit_config_is_a_usage_error(clean_root, tmp_path):
    result = cli("check", "--root", str(clean_root), "--config", str(tmp_path / "none.toml"))
    assert result.returncode == 2
    assert "none.toml" in result.stderr


def test_system_config_under_root_is_read(clean_root):
    before = as_json(cli("check", "--root", str(clean_root), "--json", "--only", "memory.swap"))
    assert before["facts"]["model"]["profile"] == QWEN
    _write(clean_root / "etc/q3cn-doctor/config.toml", f'profile = "{GPT_OSS}"\n')
    after = as_json(cli("check", "--root", str(clean_root), "--json", "--only", "memory.swap"))
    assert after["facts"]["model"]["profile"] == GPT_OSS


def test_user_config_wins_over_system_config(clean_root, tmp_path):
    _write(clean_root / "etc/q3cn-doctor/config.toml", f'profile = "{GPT_OSS}"\nctx-size = 8192\n')
    _write(clean_root / "xdg/q3cn-doctor/config.toml", f'profile = "{QWEN}"\n')
    env = {"XDG_CONFIG_HOME": "/xdg", "SUDO_USER": ""}
    model = as_json(cli("check", "--root", str(clean_root), "--json", env=env))["facts"]["model"]
    assert (model["profile"], model["ctx_size"]) == (QWEN, 8192)


def test_user_config_outside_root_is_not_read(clean_root, tmp_path):
    xdg = tmp_path / "xdg"
    _write(xdg / "q3cn-doctor/config.toml", f'profile = "{GPT_OSS}"\n')
    env = {"XDG_CONFIG_HOME": str(xdg), "SUDO_USER": ""}
    inside = as_json(cli("check", "--root", str(clean_root), "--json", env=env))
    assert inside["facts"]["model"]["profile"] == QWEN
    live = as_json(cli("check", "--json", "--only", "memory.swap", env=env))
    assert live["facts"]["model"]["profile"] == GPT_OSS


# --- shell completion ---------------------------------------------------------------------

def test_bash_completion_script():
    result = cli(env={"_Q3CN_DOCTOR_COMPLETE": "bash_source"})
    assert result.returncode == 0
    assert "_q3cn_doctor_completion()" in result.stdout
    assert "complete " in result.stdout and "q3cn-doctor" in result.stdout


@pytest.mark.parametrize("words, cword, expected", [
    ("q3cn-doctor ch", "1", "check"),
    ("q3cn-doctor check --pro", "2", "--profile"),
    ("q3cn-doctor check --profile gpt", "3", GPT_OSS),
])
def test_bash_completion_answers(words, cword, expected):
    result = cli(env={"_Q3CN_DOCTOR_COMPLETE": "bash_complete", "COMP_WORDS": words,
                      "COMP_CWORD": cword})
    assert result.returncode == 0
    assert f"plain,{expected}" in result.stdout.splitlines()

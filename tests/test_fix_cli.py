"""``q3cn-doctor fix`` as a user meets it: the installed command in a subprocess, on
--root trees built in tmp_path (never this machine: the tests may run as root).

``Q3CN_DOCTOR_EUID`` sets the identity a --root host reports, so the root and
not-root paths are both tested whoever runs the tests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import HOSTS, run_on_terminal
from q3cn_doctor.fixing.plan import fix_order
from test_cli import NO_XDG, cli, make_root
from test_fix_engine import STATE, full_root, tree_state

SCHEMA = Path(__file__).parent.parent / "doctor" / "fixing" / "fixplan.schema.json"
ROOT_ENV = {"Q3CN_DOCTOR_EUID": "0"}
USER_ENV = {"Q3CN_DOCTOR_EUID": "1000"}


def validate(document: dict) -> dict:
    import jsonschema

    jsonschema.validate(document, json.loads(SCHEMA.read_text()))
    return document


def fix(root: Path, *args: str, env: dict | None = None):
    return cli("fix", "--root", str(root), "--user", "alice", *args, env=env)


@pytest.fixture
def root(tmp_path):
    return full_root(tmp_path / "root")


def test_plan_is_a_dry_run(root):
    start = tree_state(root, skip=())
    result = fix(root)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "(dry run: nothing is changed; add --apply to apply)" in out
    assert "sysctl.swappiness: Keep the model in RAM" in out
    assert "cures memory.swappiness [warn]" in out
    assert "- vm.swappiness [sysctl]: 60 -> 0; takes effect now, needs root" in out
    assert ("- /etc/sysctl.d/99-q3cn-doctor-swappiness.conf (vm.swappiness = 0) [file]: "
            "vm.swappiness = 5 -> vm.swappiness = 0; takes effect at every boot") in out
    assert "thp.mode: Transparent huge pages: madvise (optional" in out
    assert tree_state(root, skip=()) == start


def test_plan_json_follows_the_schema(root):
    result = fix(root, "--json")
    assert result.returncode == 0, result.stderr
    document = validate(json.loads(result.stdout))
    assert document["mode"] == "plan"
    fixes = {f["id"]: f for f in document["plan"]["fixes"]}
    assert fixes["sysctl.swappiness"]["status"] == "change"
    assert fixes["thp.mode"]["status"] == "optional"
    change = fixes["hugepages.release"]["changes"][0]
    assert (change["kind"], change["current"], change["new"], change["effect"]) == (
        "sysfs", "60", "0", "now")


def test_manual_steps_are_listed(tmp_path):
    short = make_root(tmp_path / "short", mem_gib=16, disk_swap=True, swappiness=60, no_mmap=True)
    result = fix(short)
    assert "Manual steps (software cannot do these), costliest problem first:" in result.stdout
    assert "memory.swap: Add RAM or choose a smaller model" in result.stdout
    document = validate(json.loads(fix(short, "--json").stdout))
    assert {"finding": "memory.swap",
            "step": "Add RAM or choose a smaller model so weights plus KV cache fit in RAM."
            } in [{k: m[k] for k in ("finding", "step")} for m in document["plan"]["manual"]]


def test_apply_without_a_terminal_or_yes_is_refused(root):
    start = tree_state(root, skip=())
    result = fix(root, "--apply", env=ROOT_ENV)
    assert result.returncode == 1
    assert "no terminal to ask on; add --yes" in result.stderr
    assert tree_state(root, skip=()) == start


def test_apply_status_second_apply_and_revert_round_trip(root):
    start = tree_state(root)
    result = fix(root, "--apply", "--yes", env=ROOT_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ok] sysctl.swappiness: vm.swappiness: 60 -> 0" in result.stdout
    assert "Checks, before -> after:" in result.stdout
    assert "memory.swappiness: warn -> pass" in result.stdout
    assert "cpu.governor: warn -> pass" in result.stdout
    assert "memory.memlock: warn -> pass" in result.stdout
    assert (root / "proc/sys/vm/swappiness").read_text() == "0\n"

    again = fix(root, "--apply", "--yes", env=ROOT_ENV)
    assert again.returncode == 0
    assert "Nothing to change" in again.stdout
    assert "[ok]" not in again.stdout

    status = fix(root, "--status")
    assert status.returncode == 0
    assert "sysctl.swappiness: vm.swappiness: 60 -> 0  [applied; in effect]" in status.stdout
    rows = validate(json.loads(fix(root, "--status", "--json").stdout))["journal"]
    # What the findings asked for: every fix but thp.mode and rtprio.limit (offered by
    # informational findings: not applied unless asked for) and sysctl.numa_balancing
    # (offered only where llama-server runs with a NUMA policy).
    assert {r["fix"] for r in rows} == set(fix_order()) - {"thp.mode", "rtprio.limit",
                                                           "sysctl.numa_balancing"}

    back = fix(root, "--revert", "--yes", env=ROOT_ENV)
    assert back.returncode == 0, back.stdout + back.stderr
    assert "[restored] sysctl.swappiness: vm.swappiness: 0 -> 60" in back.stdout
    assert tree_state(root) == start
    nothing = fix(root, "--revert", "--yes", env=ROOT_ENV)
    assert nothing.returncode == 0 and "Nothing to revert" in nothing.stdout
    assert "No change by q3cn-doctor is in effect." in fix(root, "--status").stdout


def test_apply_json_reports_results_and_checks(root):
    result = fix(root, "--apply", "--yes", "--json", "--only", "sysctl.swappiness,thp.mode",
                 env=ROOT_ENV)
    assert result.returncode == 0, result.stderr
    document = validate(json.loads(result.stdout))
    assert document["mode"] == "apply"
    assert {r["result"] for r in document["results"]} == {"applied"}
    checks = {c["id"]: (c["before"], c["after"]) for c in document["checks"]}
    assert checks["memory.swappiness"] == ("warn", "pass")
    reverted = validate(json.loads(fix(root, "--revert", "--yes", "--json",
                                       env=ROOT_ENV).stdout))
    assert {r["result"] for r in reverted["results"]} == {"reverted"}


def test_runtime_only_writes_no_file(root):
    result = fix(root, "--apply", "--yes", "--runtime-only", "--only", "sysctl.swappiness",
                 env=ROOT_ENV)
    assert result.returncode == 0, result.stderr
    assert (root / "etc/sysctl.d/99-q3cn-doctor-swappiness.conf").read_text().endswith(
        "vm.swappiness = 5\n")  # our earlier file, untouched
    assert (root / "proc/sys/vm/swappiness").read_text() == "0\n"


def test_not_root_changes_nothing_and_says_what_needs_root(root):
    start = tree_state(root, skip=())
    plan = fix(root, env=USER_ENV)
    assert plan.returncode == 0
    assert "Not running as root: --apply will need sudo." in plan.stdout
    result = fix(root, "--apply", "--yes", env=USER_ENV)
    assert result.returncode == 1
    assert "--apply needs root for: " in result.stderr
    assert "vm.swappiness (/proc/sys/vm/swappiness)" in result.stderr
    assert "Nothing was changed." in result.stderr
    assert tree_state(root, skip=()) == start
    assert not (root / STATE).exists()
    # Reverting someone else's (root's) changes needs root too.
    assert fix(root, "--apply", "--yes", env=ROOT_ENV).returncode == 0
    applied = tree_state(root, skip=())
    denied = fix(root, "--revert", "--yes", env=USER_ENV)
    assert denied.returncode == 1 and "--revert needs root for" in denied.stderr
    assert tree_state(root, skip=()) == applied


def test_a_refused_fix_exits_1(root):
    (root / "etc/tmpfiles.d").mkdir()
    (root / "etc/tmpfiles.d/q3cn-doctor-thp.conf").write_text("w /x - - - - y\n")
    result = fix(root, "--apply", "--yes", "--only", "thp.mode", env=ROOT_ENV)
    assert result.returncode == 1
    assert "not written by q3cn-doctor (no header)" in result.stdout
    assert (root / "sys/kernel/mm/transparent_hugepage/enabled").read_text() == (
        "always madvise [never]\n")


def test_a_write_the_kernel_refuses_exits_1(root, monkeypatch):
    """EINVAL injected into one sysfs write (in-process: faults cannot cross a subprocess)."""
    import errno

    from click.testing import CliRunner
    from q3cn_doctor.app import fix_command as fixcli
    from q3cn_doctor.app.cli import main
    from q3cn_doctor.host.live import RootHost

    governor = "/sys/devices/system/cpu/cpufreq/policy0/scaling_governor"

    def faulty_host(options):
        host = RootHost(options.root, euid=0)
        host.faults["write:" + governor] = errno.EINVAL
        return host

    monkeypatch.setattr(fixcli, "_host", faulty_host)
    monkeypatch.setenv("XDG_CONFIG_HOME", NO_XDG)
    result = CliRunner().invoke(main, ["fix", "--root", str(root), "--apply", "--yes",
                                       "--only", "cpu.governor"])
    assert result.exit_code == 1, result.output
    assert "[FAILED] cpu.governor: governor on CPUs 0-1" in result.output
    assert "EINVAL" in result.output
    assert (root / governor[1:]).read_text() == "powersave\n"


@pytest.mark.parametrize("args", [["--apply", "--revert"], ["--status", "--apply"],
                                  ["--only", "no.such.fix"], ["--service", "../../etc/x"],
                                  ["--pid", "0"]])
def test_usage_errors_exit_2(root, args):
    start = tree_state(root, skip=())
    result = fix(root, *args, env=ROOT_ENV)
    assert result.returncode == 2, result.stdout + result.stderr
    assert tree_state(root, skip=()) == start


def test_a_damaged_journal_is_a_message_not_a_traceback(root):
    """`cli` fails the test on any traceback; each command names the journal and exits 1."""
    journal = root / STATE / "journal.json"
    journal.parent.mkdir(parents=True)
    journal.write_text(json.dumps({"format": 1, "entries": [{"seq": 1, "state": "applied"}]}))
    start = tree_state(root, skip=())
    for args in (("--status",), ("--revert", "--yes"), ("--apply", "--yes")):
        result = fix(root, *args, env=ROOT_ENV)
        assert result.returncode == 1, (args, result.stdout + result.stderr)
        assert "journal.json: entry 1 is not one q3cn-doctor wrote" in result.stderr
    assert tree_state(root, skip=()) == start


def test_a_snapshot_gives_a_plan_but_cannot_be_changed(tmp_path):
    snapshot = HOSTS / "001-hp-elitebook-840g10-i7-1370p-disk-swap"
    plan = cli("fix", "--snapshot", str(snapshot))
    assert plan.returncode == 0 and "cpu.governor" in plan.stdout
    result = cli("fix", "--snapshot", str(snapshot), "--apply", "--yes")
    assert result.returncode == 1
    assert "read-only" in result.stderr



@pytest.mark.parametrize("answer", [b"n", b"y"])
def test_apply_asks_on_a_terminal(root, answer):
    start = tree_state(root, skip=())
    env = dict(os.environ, XDG_CONFIG_HOME=NO_XDG, NO_COLOR="1", **ROOT_ENV)
    code, output = run_on_terminal(["fix", "--root", str(root), "--apply", "--only",
                                    "sysctl.swappiness", "--runtime-only"], env, answer)
    assert b"Apply 1 change(s) to root " in output
    if answer == b"n":
        assert code == 1 and b"not confirmed. Nothing was changed." in output
        assert tree_state(root, skip=()) == start
    else:
        assert code == 0, output
        assert (root / "proc/sys/vm/swappiness").read_text() == "0\n"


def test_applying_a_fix_that_cannot_run_here_exits_1(tmp_path):
    zram = tmp_path / "zram"
    import shutil

    (source,) = [p for p in HOSTS.iterdir() if p.name.startswith("007")]
    shutil.copytree(source / "fs", zram)
    result = fix(zram, "--apply", "--yes", "--only", "sysctl.swappiness", env=ROOT_ENV)
    assert result.returncode == 1
    assert "sysctl.swappiness cannot run here: zram is the only swap" in result.stdout
    assert (zram / "proc/sys/vm/swappiness").read_text() == "100\n"


def test_apply_measure_keeps_before_and_after_with_the_journal(root, monkeypatch):
    """fix --apply --measure under --root: a tree runs no llama.cpp, so here (and only
    here) the measurement is stubbed; tests/test_measure_e2e.py measures for real."""
    from click.testing import CliRunner
    from q3cn_doctor.app import fix_command
    from q3cn_doctor.app.cli import main

    readings = iter([{"tg": 20.0, "pp": 150.0, "method": "llama-bench", "text": "",
                      "error": None},
                     {"tg": 31.5, "pp": 160.0, "method": "llama-bench", "text": "",
                      "error": None}])
    monkeypatch.setattr(fix_command, "_measure_speed", lambda options: next(readings))
    monkeypatch.setenv("Q3CN_DOCTOR_EUID", "0")
    monkeypatch.setenv("XDG_CONFIG_HOME", NO_XDG)
    runner = CliRunner()
    applied = runner.invoke(main, ["fix", "--root", str(root), "--user", "alice", "--apply",
                                   "--yes", "--only", "sysctl.swappiness", "--measure"])
    assert applied.exit_code == 0, applied.output
    assert "Measured: sysctl.swappiness: tg 20.0 -> 31.5 tok/s (+11.5, +57.5%; llama-bench)" \
        in applied.output
    journal = json.loads((root / STATE / "journal.json").read_text())
    [measured] = journal["measurements"]
    assert measured["fixes"] == ["sysctl.swappiness"] and measured["before"]["tg"] == 20.0
    assert measured["run"] == journal["entries"][0]["run"]
    status = fix(root, "--status")
    assert "sysctl.swappiness: tg 20.0 -> 31.5 tok/s" in status.stdout
    document = validate(json.loads(fix(root, "--status", "--json").stdout))
    assert document["measurements"][0]["after"]["tg"] == 31.5
    reverted = fix(root, "--revert", "--yes", env=ROOT_ENV)
    assert reverted.returncode == 0, reverted.stdout + reverted.stderr
    assert len(json.loads((root / STATE / "journal.json").read_text())["measurements"]) == 1


def test_measure_goes_with_apply(root):
    result = fix(root, "--measure")
    assert result.returncode == 2 and "--measure goes with --apply" in result.stderr


def test_only_limits_the_manual_steps_to_the_named_fixes(tmp_path):
    """`fix --only X` plans X and lists only the steps by hand of the findings X answers."""
    short = make_root(tmp_path / "short", mem_gib=16, disk_swap=True, swappiness=60, no_mmap=True)
    every = validate(json.loads(fix(short, "--json").stdout))["plan"]
    assert any(m["finding"] == "memory.swap" for m in every["manual"])
    only = validate(json.loads(fix(short, "--json", "--only", "sysctl.swappiness").stdout))
    assert [f["id"] for f in only["plan"]["fixes"]] == ["sysctl.swappiness"]
    assert only["plan"]["manual"] == []  # memory.swap's step answers no fix named
    text = fix(short, "--only", "sysctl.swappiness").stdout
    assert "memory.swap:" not in text and "Manual steps" not in text

"""The report a person acts on (issue 15), on the guide's machine as a new user finds it:
the speed ledger first, the problems by what they cost, a step by hand for every problem
no fix cures, a short text, a small JSON document, and `fix` in the order of gain."""

from __future__ import annotations

import json
import re

import pytest
from conftest import REPO, run_cli
from jsonschema import Draft202012Validator
from launch_fixtures import BROWSER, guide_machine, guide_machine_as_found

WIDTH = {"COLUMNS": "100"}
LEDGER = re.compile(r"^(?P<model>.+) here: ~(?P<now>\d+) tok/s now -> ~(?P<fix>\d+) after "
                    r"`sudo q3cn-doctor fix --apply` -> ~(?P<hand>\d+) after (?P<n>\d+) steps? "
                    r"by hand \((?P<steps>.+)\)")


@pytest.fixture(scope="module")
def guide(tmp_path_factory) -> str:
    return str(guide_machine_as_found(tmp_path_factory.mktemp("guide") / "snapshot"))


@pytest.fixture(scope="module")
def text(guide) -> str:
    done = run_cli("check", "--snapshot", guide, env=WIDTH)
    assert done.returncode == 1 and not done.stderr, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def document(guide) -> dict:
    done = run_cli("check", "--snapshot", guide, "--json")
    assert done.returncode == 1, done.stderr
    return json.loads(done.stdout)


def guide_facts(directory: str):
    """The facts the CLI replays, for the user the snapshot recorded (ana)."""
    from q3cn_doctor.facts import Facts
    from q3cn_doctor.host.snapshot import SnapshotHost
    from q3cn_doctor.options import Options

    host = SnapshotHost(directory)
    return Facts(host, Options(snapshot=directory, user=host.recorded_user()))


def ledger_line(text: str) -> str:
    """The ledger as one line: the report's first paragraph after the header."""
    paragraph = text.split("\n\n")[1]
    return " ".join(line.strip() for line in paragraph.splitlines())


# -- the ledger ----------------------------------------------------------------------------


def test_the_report_starts_with_the_ledger_from_the_speed_model(guide, text, document):
    from q3cn_doctor.plan.speed import speed, what_if

    line = ledger_line(text)
    match = LEDGER.match(line)
    assert match, line
    assert match["model"] == "Qwen3-Coder-Next (80B-A3B) MXFP4"
    assert match["steps"] == "NVIDIA driver 580+, close firefox-nightly, XMP/EXPO in the BIOS"
    assert match["n"] == "3"
    # Each figure is the one speed model's, asked about the changes each stage makes.
    facts = guide_facts(guide)
    now = speed(facts).tok_s
    gpu = facts.gpus[0]
    everything = what_if(facts, cpu_only=False, ram_mts=6000,
                         vram_free_bytes=[gpu["memory_free_bytes"] + BROWSER["used_bytes"]])
    assert int(match["now"]) == round(now) and int(match["hand"]) == round(everything.tok_s)
    assert int(match["fix"]) == round(now)  # memlock, governor: no faster here
    assert everything.tok_s > 3 * now  # the GPU back at work
    ledger = document["ledger"]
    assert ledger["text"] == line
    assert (ledger["now_tok_s"], ledger["after_manual_tok_s"]) == (now, everything.tok_s)
    # swappiness cannot page out a model launch pins (a CUDA build): nothing to fix there
    assert sorted(ledger["fixed_by_software"]) == ["cpu.governor", "memory.memlock"]


def test_each_step_gains_on_top_of_the_ones_before(document):
    """The browser's VRAM is worth nothing while the driver keeps the GPU idle: it is
    priced after the driver, not on its own."""
    steps = document["ledger"]["steps_by_hand"]
    assert [s["finding"] for s in steps] == ["gpu.cuda", "gpu.vram:0", "memory.speed"]
    findings = {f["id"]: f for f in document["findings"]}
    assert not findings["gpu.vram:0"]["cost_tok_s"]  # alone: nothing, the GPU is unused
    assert steps[1]["gain_tok_s"] > 1  # once the driver runs the build
    total = document["ledger"]["after_fix_tok_s"] + sum(s["gain_tok_s"] for s in steps)
    assert total == pytest.approx(document["ledger"]["after_manual_tok_s"], abs=0.2)


def test_the_guide_machine_set_up_has_no_steps_in_its_ledger(tmp_path):
    clean = guide_machine(tmp_path / "clean", processes=False)
    done = run_cli("check", "--snapshot", str(clean), "--json")
    ledger = json.loads(done.stdout)["ledger"]
    assert ledger["steps_by_hand"] == [] and ledger["now_tok_s"] > 10
    assert "by hand" not in ledger["text"]
    assert ledger["fixed_by_software"] == ["cpu.governor"]  # its stock powersave


# -- the problems ----------------------------------------------------------------------------


def test_problems_are_ranked_by_cost_then_status(text):
    rows = re.findall(r"^  \[(\w+)\] (\S+): .*?(?:\(costs ~(\d+) tok/s\))?$",
                      "\n".join(line for line in text.splitlines()), re.MULTILINE)
    assert rows[:2] == [("fail", "gpu.cuda", ""), ("fail", "memory.speed", "")] or \
        [r[1] for r in rows[:2]] == ["gpu.cuda", "memory.speed"]
    problems = [line for line in text.splitlines() if re.match(r"  \[(fail|warn)\] ", line)]
    ids = [re.match(r"  \[\w+\] (\S+):", line)[1] for line in problems]
    assert ids[:2] == ["gpu.cuda", "memory.speed"]
    assert {"gpu.pcie:0", "gpu.vram:0", "memory.memlock", "cpu.governor"} <= set(ids)


def test_problems_are_ranked_in_the_json_costs_too(document):
    from q3cn_doctor.checking.findings import STATUSES

    problems = [f for f in document["findings"] if f["status"] in ("fail", "warn")]
    ranked = sorted(problems, key=lambda f: (-(f.get("cost_tok_s") or 0),
                                             STATUSES.index(f["status"])))
    assert ranked[0]["id"] == "gpu.cuda" and ranked[0]["cost_tok_s"] > 1
    assert ranked[1]["id"] == "memory.speed" and ranked[1]["cost_tok_s"] > 0
    assert all("cost_tok_s" not in f for f in document["findings"] if f["status"] == "pass")


def test_every_problem_no_fix_cures_has_a_step_by_hand(guide, document):
    plan = json.loads(run_cli("fix", "--snapshot", guide, "--json").stdout)["plan"]
    cured = {c["id"] for fix in plan["fixes"] if fix["status"] == "change"
             for c in fix["cures"]}
    uncured = [f for f in document["findings"]
               if f["status"] in ("fail", "warn") and f["id"] not in cured]
    assert {f["id"] for f in uncured} >= {"gpu.cuda", "memory.speed", "gpu.pcie:0",
                                          "gpu.vram:0", "gpu.vram:fit"}
    assert all(f["manual"] and f["action"] for f in uncured), uncured
    listed = {m["finding"] for m in plan["manual"]}
    assert {f["id"] for f in uncured} <= listed
    assert cured == {"cpu.governor", "memory.memlock"}


def test_passes_fold_into_one_line_per_area_unless_verbose(guide, text):
    assert "[pass]" not in text and "[info]" not in text
    folded = [line for line in text.splitlines() if re.match(r"  [a-z]+ +(info|skip|pass): ",
                                                             line)]
    assert [line.split()[0] for line in folded] == ["memory", "cpu", "gpu", "system", "model",
                                                    "server"]
    loud = run_cli("check", "--snapshot", guide, "-v", env=WIDTH).stdout
    assert "[pass] memory.channels:" in loud and "[info] cpu.topology:" in loud


# -- size and shape ------------------------------------------------------------------------------


def test_the_text_fits_45_lines_of_100_columns_with_a_hanging_indent(text):
    lines = text.rstrip("\n").splitlines()
    assert len(lines) < 45, text
    assert max(len(line) for line in lines) <= 100
    for before, line in zip(lines, lines[1:]):  # a wrapped title continues under the id
        if before.startswith("  [") and line.strip() and not line.lstrip().startswith(
                ("fix:", "by hand:", "advice:", "[")):
            assert line.startswith(" " * 4), line


def test_the_text_wraps_to_a_narrow_terminal(guide):
    narrow = run_cli("check", "--snapshot", guide, env={"COLUMNS": "72"}).stdout
    assert max(len(line) for line in narrow.splitlines()) <= 72


def test_a_terminal_is_read_for_its_own_width(monkeypatch):
    """Without COLUMNS the width is the terminal's (a real pty's window size), never below
    the report's minimum; a pipe, or a terminal that reports no width, gets the default.
    columns_of gives the terminal's own figure, unclamped (click's help lays out by it)."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    from q3cn_doctor.report.terminal import DEFAULT_WIDTH, MIN_WIDTH, columns_of, width_of

    monkeypatch.delenv("COLUMNS", raising=False)
    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as terminal:
        for columns, own, expected in ((132, 132, 132), (30, 30, MIN_WIDTH),
                                       (0, None, DEFAULT_WIDTH)):
            fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
            assert (columns_of(terminal), width_of(terminal)) == (own, expected)
    os.close(leader)
    reader, writer = os.pipe()
    with os.fdopen(reader) as pipe_end, os.fdopen(writer, "w") as pipe:
        assert (columns_of(pipe), width_of(pipe)) == (None, DEFAULT_WIDTH)
        assert not pipe_end.closed


def test_json_is_under_40_kb_and_cites_each_source_list_once(guide, document):
    size = len(run_cli("check", "--snapshot", guide, "--json").stdout.encode())
    assert size < 40_000, size
    schema = json.loads((REPO / "doctor/report/report.schema.json").read_text())
    Draft202012Validator(schema).validate(document)
    assert "options" not in document["facts"]["server"]  # --help: with -v only
    assert document["facts"]["server"]["options_count"] > 100
    for finding in document["findings"]:
        for source in finding["evidence"]:
            if source.startswith("facts."):
                assert source[len("facts."):] in document["evidence"], source
    cpu = [f for f in document["findings"] if f["area"] == "cpu"]
    # The CPU checks cite the cpu section by name (quota and thermal read other sections).
    assert sum("facts.cpu" in f["evidence"] for f in cpu) >= 5
    assert not any(s.startswith("/sys/devices/system/cpu/cpu1/") for f in cpu
                   for s in f["evidence"])  # the cpu section's paths live in one place


def test_verbose_json_keeps_the_help_and_the_basis(guide):
    loud = json.loads(run_cli("check", "--snapshot", guide, "--json", "-v").stdout)
    assert len(loud["facts"]["server"]["options"]) == loud["facts"]["server"]["options_count"]
    assert loud["facts"]["memory"]["basis"]


# -- the picture and the fix plan ---------------------------------------------------------------


def test_verbose_draws_where_the_time_of_a_token_goes(guide, document):
    loud = run_cli("check", "--snapshot", guide, "-v", env=WIDTH).stdout
    total = sum(document["ledger"]["breakdown_ms"].values())
    assert f"Time per token: {total:.1f} ms" in loud
    [ram] = [line for line in loud.splitlines() if line.startswith("  RAM ")]
    assert "#" * 40 in ram and ram.rstrip().endswith("%")


def test_fix_lists_steps_by_gain_for_the_recorded_user(guide):
    done = run_cli("fix", "--snapshot", guide, env=WIDTH)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "memory.memlock [warn]" in out and "95-q3cn-doctor-memlock-ana.conf" in out
    manual = out.split("Manual steps (software cannot do these), costliest problem first:")[1]
    order = [re.match(r"  (\S+?)(?: \(gains ~\d+ tok/s\))?:( |$)", line)[1]
             for line in manual.splitlines() if re.match(r"  \S", line)]
    assert order[:3] == ["gpu.cuda", "gpu.vram:0", "memory.speed"]  # the ledger's order
    assert "gpu.pcie:0" in order[3:] and len(order) == len(set(order))  # each finding once
    assert "  memory.speed (gains ~" in manual and "\n    - Enter the BIOS/UEFI" in manual
    assert "~" in out.split("\n\n")[1] and "#" in out  # the ledger and its bars come first


# -- the pieces -----------------------------------------------------------------------------------


def test_a_measured_speed_stands_beside_the_estimate(tmp_path, monkeypatch):
    """What `bench speed` or `tune` records on this machine, the next report quotes."""
    from q3cn_doctor.host.live import LiveHost
    from q3cn_doctor.report.ledger import Ledger, add_measured, remember_measured

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    host = LiveHost()
    ledger = Ledger("Qwen3-Coder-Next MXFP4", now=_Estimate(20.4))
    add_measured(ledger, host)
    assert ledger.measured_tok_s is None and "measured" not in ledger.text()
    remember_measured(host, 18.7, "bench speed")
    add_measured(ledger, LiveHost())
    assert ledger.text() == ("Qwen3-Coder-Next MXFP4 here: ~20 tok/s now "
                             "[measured: 18.7 tok/s by bench speed]")
    assert ledger.to_json()["measured_tok_s"] == 18.7


class _Estimate:
    """The two fields of a SpeedEstimate the report reads."""

    def __init__(self, tok_s: float, ms: dict | None = None) -> None:
        self.tok_s, self.ms = tok_s, ms or {}


def test_the_time_per_token_picture_is_to_scale():
    from q3cn_doctor.report.picture import speed_bar_lines, time_per_token_lines

    lines = time_per_token_lines(_Estimate(25.0, {"ram": 30.0, "vram": 8.0, "fixed": 2.0,
                                                  "transitions": 0.0}), 100)
    assert lines[0][0] == "Time per token: 40.0 ms (~25 tok/s estimated)"
    rows = {text.split()[0]: text for text, _ in lines[1:]}
    assert list(rows) == ["RAM", "VRAM", "fixed"]  # largest first; nothing for 0 ms
    bars = {name: text.count("#") for name, text in rows.items()}
    assert bars["RAM"] == pytest.approx(bars["VRAM"] * 30 / 8, rel=0.1)
    assert all(len(text) <= 100 for text, _ in lines)
    assert rows["RAM"].endswith("30.0 ms  75%")
    measured = time_per_token_lines(_Estimate(25.0, {"ram": 40.0}), 100, measured_tok_s=20)
    assert "measured 20.0 tok/s = 50.0 ms" in measured[0][0]
    assert time_per_token_lines(_Estimate(25.0), 100) == []
    before_after = speed_bar_lines([("now", 5.0), ("after 2 steps by hand", 20.0)], 80)
    assert before_after[0][0].count("#") * 4 == pytest.approx(before_after[1][0].count("#"),
                                                              abs=4)
    assert speed_bar_lines([("now", 5.0)], 80) == []


def test_merged_changes_ask_for_the_better_value():
    from q3cn_doctor.checking.findings import Finding
    from q3cn_doctor.report.ledger import merge_changes

    def finding(cost, **changes):
        return Finding("gpu.vram:0", "gpu.vram", "gpu", "warn", "t", cost_tok_s=cost,
                       what_if=changes)

    merged = merge_changes([finding(3, vram_free_bytes=9, cpu_only=False),
                            finding(1, vram_free_bytes=12, ram_mts=6000)])
    assert merged == {"vram_free_bytes": 12, "cpu_only": False, "ram_mts": 6000}
    two_gpus = merge_changes([finding(2, vram_free_bytes=[9, 4]),
                              finding(1, vram_free_bytes=[5, 7])])  # one program on each
    assert two_gpus == {"vram_free_bytes": [9, 7]}


def test_json_layout_keeps_the_document_and_folds_what_repeats():
    """The printed JSON is the document itself (int keys become strings, as json writes
    them); a record of plain values is one line; files of one folder are one brace pattern
    and alike frequency policies one entry."""
    from q3cn_doctor.report.document import dumps, fold_paths, fold_policies

    document = {"max_khz": {0: 4900000, 1: 3600000}, "findings": [
        {"id": "cpu.isa", "evidence": ["facts.cpu"], "cost_tok_s": 0.0}], "nested": {"a": [{}]}}
    text = dumps(document)
    assert json.loads(text) == json.loads(json.dumps(document))
    assert '  {"id": "cpu.isa", "evidence": ["facts.cpu"], "cost_tok_s": 0.0}' in text
    assert fold_paths(["/proc/meminfo", "/proc/swaps", "systemd-detect-virt --vm",
                       "/sys/a/cpu0/x", "/sys/a/cpu1/x", "/sys/a/cpu0/y", "/sys/a/cpu1/y"]) == [
        "/proc/{meminfo,swaps}", "systemd-detect-virt --vm", "/sys/a/cpu[0-1]/{x,y}"]
    # PCI addresses are zero-padded hexadecimal: copied as read, never renumbered
    gpus = [f"/sys/bus/pci/devices/0000:{bus}:00.0/max_link_width" for bus in ("01", "dd")]
    assert fold_paths(gpus) == gpus
    assert fold_paths(["/sys/class/drm/card10/device/vendor", "/sys/class/drm/card9/device/vendor"
                       ]) == ["/sys/class/drm/card[9-10]/device/vendor"]
    alike = {"driver": "intel_pstate", "governor": "powersave"}
    policies = [{"name": f"policy{n}", "cpus": [n], **alike} for n in range(3)]
    policies.append({"name": "policy3", "cpus": [3], **alike, "governor": "performance"})
    assert fold_policies(policies) == [
        {"name": "policy0..policy2", "cpus": [0, 1, 2], **alike},
        {"name": "policy3", "cpus": [3], "driver": "intel_pstate", "governor": "performance"}]

"""server.age: the installed build's number against the table of known speedups (each row's
pull request and measurement in checks/age.py), on the guide's machine with the build number
as a real --version line gives it."""

from __future__ import annotations

from conftest import snapshot_findings
from launch_fixtures import GPT_OSS_PATH, QWEN_PATH, SERVER, guide_machine, record_command


def with_version(tmp_path, number: int, commit: str = "27b93cbd1"):
    root = guide_machine(tmp_path / f"b{number}")
    record_command(root, [SERVER, "--version"], "",
                   f"version: {number} ({commit})\nbuilt with GNU 13.3.0 for Linux x86_64\n")
    return root


def test_a_build_before_both_qwen3next_speedups(tmp_path):
    finding = snapshot_findings(with_version(tmp_path, 7700), "server.age",
                                model=QWEN_PATH)["server.age"]
    assert finding.status == "info"
    assert finding.title == "Build 7700 predates 2 known qwen3next speedups"
    assert "b8064 or later" in finding.recommended
    assert "1.42x" in finding.impact  # 71.88/67.14 x 50.39/38.02
    assert finding.cost_tok_s and finding.cost_tok_s > 0


def test_a_build_between_them_and_one_after(tmp_path):
    between = snapshot_findings(with_version(tmp_path, 8000), "server.age",
                                model=QWEN_PATH)["server.age"]
    assert between.title == "Build 8000 predates 1 known qwen3next speedup"
    after = snapshot_findings(with_version(tmp_path, 8064), "server.age",
                              model=QWEN_PATH)["server.age"]
    assert after.status == "pass"


def test_tarball_builds_and_other_architectures(tmp_path):
    # the real 2026-10 build's --version says build 1 (a tarball)
    root = guide_machine(tmp_path / "g")
    assert snapshot_findings(root, "server.age", model=QWEN_PATH)["server.age"].status == "skip"
    other = snapshot_findings(with_version(tmp_path, 7000), "server.age",
                              model=GPT_OSS_PATH)["server.age"]
    assert other.status == "pass" and "No known speedups" in other.title

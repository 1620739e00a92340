"""report.schema.json: a valid Draft 2020-12 schema that every ``check --json`` satisfies."""

from __future__ import annotations

import copy
import json

import pytest
from conftest import REPO
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from test_cli import cli, make_root

SCHEMA_PATH = REPO / "doctor" / "report" / "report.schema.json"


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


@pytest.fixture(scope="module")
def validator(schema) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=FormatChecker())


@pytest.fixture(scope="module")
def live_report() -> dict:
    result = cli("check", "--json")
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_schema_is_valid_draft_2020_12(schema):
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_installed_schema_is_the_repository_file(schema):
    from importlib.resources import files

    installed = json.loads(files("q3cn_doctor.report").joinpath("report.schema.json").read_text())
    assert installed == schema


@pytest.mark.live
def test_this_machine_validates(validator, live_report):
    validator.validate(live_report)
    assert live_report["host"]["source"] == "live"


@pytest.mark.parametrize("shape", [
    {},
    {"mem_gib": 64, "hugetlb_gib": 60},
    {"disk_swap": True, "swappiness": 60, "governor": "powersave"},
    {"mem_gib": 32, "disk_swap": True, "governor": "performance"},
])
def test_root_trees_validate(validator, tmp_path, shape):
    root = make_root(tmp_path / "root", **shape)
    document = json.loads(cli("check", "--root", str(root), "--json").stdout)
    validator.validate(document)
    assert document["host"]["source"] == "root"
    assert document["facts"]["memory"]["total_bytes"] == shape.get("mem_gib", 128) * 1024**3


def test_empty_root_validates(validator, tmp_path):
    """Nothing to read: every value unknown, every check skipped, still a valid report."""
    empty = tmp_path / "empty"
    empty.mkdir()
    document = json.loads(cli("check", "--root", str(empty), "--json").stdout)
    validator.validate(document)
    assert document["summary"]["skip"] == len(document["findings"]) > 0


def test_other_profile_validates(validator, tmp_path):
    root = make_root(tmp_path / "root")
    document = json.loads(cli("check", "--root", str(root), "--json",
                              "--profile", "gpt-oss-120b-mxfp4", "--ctx-size", "8192").stdout)
    validator.validate(document)
    assert document["facts"]["model"]["ctx_size"] == 8192


def test_recorded_snapshot_validates(validator, tmp_path):
    """Record this machine (read-only), replay the recording, validate the replay."""
    recorded = cli("snapshot", str(tmp_path / "snap"))
    assert recorded.returncode == 0, recorded.stderr
    document = json.loads(cli("check", "--snapshot", str(tmp_path / "snap"), "--json").stdout)
    validator.validate(document)
    assert document["host"]["source"] == "snapshot"


def _errors(validator, document) -> list[str]:
    return [error.message for error in validator.iter_errors(document)]


@pytest.mark.parametrize("break_it, expected", [
    (lambda f: f.pop("title"), "'title' is a required property"),
    (lambda f: f.update(status="bad"), "'bad' is not one of"),
    (lambda f: f.update(area="network"), "'network' is not one of"),
    (lambda f: f.update(id="swap"), "does not match"),
    (lambda f: f.update(title=""), "should be non-empty"),
    (lambda f: f.update(unexpected=1), "Additional properties"),
    (lambda f: f.update(fixes=["Release Them"]), "does not match"),
])
def test_schema_rejects_a_broken_finding(validator, live_report, break_it, expected):
    document = copy.deepcopy(live_report)
    assert document["findings"], "the live report has findings to break"
    break_it(document["findings"][0])
    errors = _errors(validator, document)
    assert any(expected in message for message in errors), errors


@pytest.mark.parametrize("break_it", [
    lambda d: d.pop("summary"),
    lambda d: d.update(schema_version=1),  # a version-1 reader must not take it
    lambda d: d["summary"].update(fail=-1),
    lambda d: d["facts"].pop("memory"),
    lambda d: d["facts"]["memory"].pop("total_bytes"),
    lambda d: d["facts"]["memory"].update(total_bytes="64 GiB"),
    lambda d: d["host"].update(source="laptop"),
])
def test_schema_rejects_a_broken_document(validator, live_report, break_it):
    document = copy.deepcopy(live_report)
    validator.validate(document)
    break_it(document)
    with pytest.raises(ValidationError):
        validator.validate(document)


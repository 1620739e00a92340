"""The memory work from the command line: snapshots holding only a dmidecode listing or only
SPD EEPROMs, --ram-rated and its config key, --measure, and `q3cn-doctor bench memory`."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, host_fixture
from jsonschema import Draft202012Validator
from test_cli import cli
from test_memory_facts import listing, mem_snapshot


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = REPO / "doctor" / "report" / "report.schema.json"
    return Draft202012Validator(json.loads(schema.read_text()))


def findings(document: dict) -> dict[str, dict]:
    return {f["id"]: f for f in document["findings"]}


def test_snapshot_with_only_a_dmidecode_listing(validator):
    result = cli("check", "--snapshot", host_fixture("mem-ddr5-6400kit-at-4800-dmidecode-only"),
                 "--json")
    assert result.returncode == 1, result.stderr  # memory.speed fails
    document = json.loads(result.stdout)
    validator.validate(document)
    memory = document["facts"]["memory"]
    assert memory["source"] == "dmidecode"
    assert (memory["slots"], memory["configured_mts"], memory["rated_mts"],
            memory["rated_source"], memory["channels"]) == (4, 4800, 6400, "part-number", 2)
    assert memory["modules"][0]["part_number"] == "F5-6400J3239G32G"
    assert set(memory["modules"][0]) >= {
        "locator", "bank_locator", "size_bytes", "type", "form_factor", "rank", "data_width",
        "speed_mts", "configured_mts", "manufacturer", "part_number"}
    found = findings(document)
    assert found["memory.speed"]["status"] == "fail"
    assert found["memory.channels"]["status"] == "pass"
    assert found["memory.bandwidth"]["status"] == "info"


def test_snapshot_with_only_spd_eeproms(validator):
    result = cli("check", "--snapshot", host_fixture("mem-ddr5-gskill-6000-spd-only"), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    validator.validate(document)
    memory = document["facts"]["memory"]
    assert (memory["source"], memory["rated_mts"], memory["rated_source"],
            memory["rated_profile"]) == ("spd", 6000, "spd", "EXPO")
    assert [s["path"] for s in memory["spd"]] == [
        "/sys/bus/i2c/drivers/spd5118/1-0051/eeprom", "/sys/bus/i2c/drivers/spd5118/1-0053/eeprom"]
    assert findings(document)["memory.speed"]["status"] == "info"


def test_udev_snapshot_validates(validator):
    result = cli("check", "--snapshot", host_fixture("mem-udev-thinkcentre-m720s-no-root"),
                 "--json")
    document = json.loads(result.stdout)
    validator.validate(document)
    assert document["facts"]["memory"]["source"] == "udev"


def test_ram_rated_option_and_config_key(tmp_path):
    root = mem_snapshot(tmp_path / "s", dmidecode=listing("021"))  # 3700 MT/s, no part numbers
    told = json.loads(cli("check", "--snapshot", str(root), "--json", "--only", "memory.speed",
                          "--ram-rated", "4000").stdout)
    assert told["facts"]["memory"]["rated_source"] == "user"
    assert findings(told)["memory.speed"]["status"] == "fail"
    config = tmp_path / "c.toml"
    config.write_text("ram-rated = 3600\n")
    configured = json.loads(cli("check", "--snapshot", str(root), "--json", "--only",
                                "memory.speed", "--config", str(config)).stdout)
    assert configured["facts"]["memory"]["rated_mts"] == 3600
    assert findings(configured)["memory.speed"]["status"] == "info"  # 3700: above it
    config.write_text('ram_rated = "fast"\n')
    bad = cli("check", "--snapshot", str(root), "--config", str(config))
    assert bad.returncode == 2 and "ram_rated must be" in bad.stderr
    assert cli("check", "--snapshot", str(root), "--ram-rated", "42").returncode == 2


def test_measure_is_refused_on_a_snapshot(tmp_path):
    root = mem_snapshot(tmp_path / "s", dmidecode=listing("012"))
    document = json.loads(cli("check", "--snapshot", str(root), "--json", "--measure",
                              "--only", "memory.bandwidth").stdout)
    assert document["facts"]["memory"]["measured"] is None
    assert "not possible on a snapshot" in findings(document)["memory.bandwidth"]["observed"]


@pytest.mark.slow  # a measurement: this machine's RAM bandwidth
@pytest.mark.live
def test_measure_on_this_machine(validator):
    result = cli("check", "--json", "--measure", "--only", "memory.bandwidth")
    document = json.loads(result.stdout)
    validator.validate(document)
    measured = document["facts"]["memory"]["measured"]
    assert measured["bytes_per_s"] > 1e8 and measured["threads"] >= 1
    assert findings(document)["memory.bandwidth"]["status"] in ("info", "pass", "warn")


@pytest.mark.slow  # two bandwidth measurements of this machine
@pytest.mark.live
def test_bench_memory_runs_here():
    result = cli("bench", "memory", "--json", "--buffer-mib", "64", "--threads", "1")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["measured"]["threads"] == 1
    assert document["measured"]["buffer_bytes"] == 64 * 2**20
    assert document["measured"]["bytes_per_s"] > 1e8
    assert document["tokens_per_s_ceiling"] > 0
    text = cli("bench", "memory", "--buffer-mib", "64")
    assert text.returncode == 0 and "Measured read bandwidth" in text.stdout


def test_help_names_the_new_options():
    assert all(word in cli("check", "--help").stdout for word in ("--measure", "--ram-rated"))
    bench = cli("bench", "memory", "--help").stdout
    assert all(word in bench for word in ("--threads", "--buffer-mib", "--sysbench", "--json"))


def test_sysbench_output_is_read():
    from q3cn_doctor.measure.memory import parse_sysbench, sysbench_argv

    # sysbench 1.0.20 `memory run` summary lines.
    text = ("Total operations: 32 (   15.88 per second)\n\n"
            "16384.00 MiB transferred (8130.53 MiB/sec)\n")
    assert parse_sysbench(text) == pytest.approx(8130.53 * 2**20)
    assert parse_sysbench("nothing") is None
    assert sysbench_argv(16)[:4] == ["sysbench", "memory", "--memory-oper=read",
                                     "--memory-block-size=512M"]

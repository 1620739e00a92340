"""Snapshots: recording this machine, replaying it, redaction, minimal and hostile
snapshots, and the archive's safety."""

from __future__ import annotations

import io
import json
import os
import re
import resource
import tarfile

import pytest
from conftest import HOSTS, run_cli
from q3cn_doctor.host import redact
from q3cn_doctor.host.base import (
    ABSENT,
    ENV_ALLOW,
    NOT_INSTALLED,
    PERMISSION_DENIED,
    RAN,
    TIMED_OUT,
)
from q3cn_doctor.host.snapshot import (
    FORMAT_VERSION,
    ExtractedSnapshot,
    RecordingHost,
    SnapshotError,
    SnapshotHost,
    _safe_extract,
    open_snapshot,
    write_tar,
)
from q3cn_doctor.version import __version__


def write(path, data: str | bytes) -> None:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


# -- record this machine, replay it ----------------------------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """This machine recorded through the CLI (folder and archive), and checked live."""
    base = tmp_path_factory.mktemp("recorded")
    directory, archive = str(base / "snap"), str(base / "snap.tar.gz")
    made = run_cli("snapshot", directory, "--tar", archive)
    assert made.returncode == 0, made.stderr
    live = run_cli("check", "--json")
    assert live.returncode in (0, 1, 3), live.stderr
    return directory, archive, live


# What differs from one run to the next: readings of the moment (load average, CPU pressure,
# clocks, temperatures) and the cgroup the doctor itself runs in (some sandboxes give each
# command its own). Comparisons between two recordings leave them out.
MOMENTARY = {"cpu.contention", "cpu.clocks", "cpu.thermal", "cpu.quota"}


def _same_run(path: str) -> bool:
    """Evidence that names the doctor's own cgroup (the CPU plan reads its quota), which
    differs between runs where each command gets its own."""
    return not (path.startswith("/sys/fs/cgroup") or re.fullmatch(r"/proc/\d+/cgroup", path))


def findings_of(done) -> list[dict]:
    assert "Traceback" not in done.stderr, done.stderr
    return [dict(f, evidence=[e for e in f["evidence"] if _same_run(e)])
            for f in json.loads(done.stdout)["findings"] if f["check"] not in MOMENTARY]


@pytest.mark.live
def test_replay_of_folder_matches_live(recorded):
    directory, _, live = recorded
    replay = run_cli("check", "--json", "--snapshot", directory)
    assert replay.returncode == live.returncode, replay.stderr
    live_findings = findings_of(live)
    assert live_findings  # something was checked
    assert findings_of(replay) == live_findings
    document = json.loads(replay.stdout)
    assert document["host"]["source"] == "snapshot"
    assert directory in document["host"]["description"]


@pytest.mark.live
def test_replay_of_archive_matches_live(recorded):
    _, archive, live = recorded
    replay = run_cli("check", "--json", "--snapshot", archive)
    assert replay.returncode == live.returncode, replay.stderr
    assert findings_of(replay) == findings_of(live)
    assert archive in json.loads(replay.stdout)["host"]["description"]


@pytest.mark.live
def test_archive_only(tmp_path, recorded):
    archive = str(tmp_path / "only.tar.gz")
    made = run_cli("snapshot", "--tar", archive)
    assert made.returncode == 0, made.stderr
    with tarfile.open(archive) as packed:
        names = packed.getnames()
    assert "snapshot.json" in names and "nvml.json" in names
    assert any(name.startswith("fs/") for name in names)
    assert findings_of(run_cli("check", "--json", "--snapshot", archive)) == findings_of(
        recorded[2])


def test_snapshot_refuses_a_non_empty_folder(tmp_path):
    write(tmp_path / "keep.txt", "mine")
    done = run_cli("snapshot", str(tmp_path))
    assert done.returncode == 2
    assert "not empty" in done.stderr
    assert os.listdir(tmp_path) == ["keep.txt"]


@pytest.mark.live
def test_snapshot_json_metadata(recorded):
    directory = recorded[0]
    with open(os.path.join(directory, "snapshot.json")) as handle:
        meta = json.load(handle)
    assert meta["format"] == FORMAT_VERSION
    assert meta["tool_version"] == __version__
    assert meta["euid"] == os.geteuid()
    assert meta["redacted"] is True
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # inherited by the CLI
    unlimited = resource.RLIM_INFINITY
    assert meta["rlimits"]["NOFILE"] == [-1 if soft == unlimited else soft,
                                         -1 if hard == unlimited else hard]
    assert set(meta["rlimits"]) >= {"MEMLOCK", "NOFILE"}
    # This test process was running while the CLI recorded: it is in the list.
    me = [p for p in meta["processes"] if p["pid"] == os.getpid()]
    assert len(me) == 1
    assert me[0]["affinity"] == sorted(os.sched_getaffinity(0))
    assert me[0]["uid"] == os.geteuid()
    assert set(meta["environ"]) <= set(ENV_ALLOW)
    assert isinstance(meta["errors"], dict)
    # Each recorded command has its three files.
    for name in os.listdir(os.path.join(directory, "cmd")):
        stem = name.rsplit(".", 1)[0]
        for ext in (".out", ".err", ".rc"):
            assert os.path.exists(os.path.join(directory, "cmd", stem + ext))


# -- redaction --------------------------------------------------------------------------


PRIVATE = (
    "Handle 0x0040, DMI type 17, 92 bytes\n"
    "Memory Device\n"
    "\tSize: 32 GB\n"
    "\tSerial Number: ABC123\n"
    "\tAsset Tag: TAG-777\n"
    "MEMORY_DEVICE_0_SERIAL_NUMBER=XYZ987\n"
    "E: MEMORY_DEVICE_1_SERIAL_NUMBER=UDEV555\n"
    "E:MEMORY_DEVICE_2_ASSET_TAG=DATA444\n"
    "GPU 0: NVIDIA GeForce RTX 4090 (UUID: GPU-0a1b2c3d-4e5f-6789-abcd-ef0123456789)\n"
)
SECRETS = ("ABC123", "TAG-777", "XYZ987", "UDEV555", "DATA444",
           "GPU-0a1b2c3d-4e5f-6789-abcd-ef0123456789")


def record_private_file(tmp_path, redacted: bool) -> tuple[str, str, str]:
    source = tmp_path / "machine" / "dmidecode.txt"
    write(source, PRIVATE)
    snap = str(tmp_path / ("snap" if redacted else "raw"))
    host = RecordingHost(snap, redacted=redacted)
    assert host.read_text(str(source)) == PRIVATE  # the caller sees the real bytes
    result = host.run(["cat", str(source)])
    assert result.ok and result.stdout == PRIVATE
    with open(os.path.join(snap, "fs") + str(source)) as handle:
        stored_file = handle.read()
    with open(os.path.join(snap, "cmd", "cat_" + str(source).replace("/", "_") + ".out")) as h:
        stored_out = h.read()
    return snap, stored_file, stored_out


def test_recording_redacts_files_and_command_output(tmp_path):
    snap, stored_file, stored_out = record_private_file(tmp_path, redacted=True)
    for stored in (stored_file, stored_out):
        assert stored.count(redact.MARK) == len(SECRETS)
        for secret in SECRETS:
            assert secret not in stored
        assert "\tSize: 32 GB\n" in stored  # the rest is kept as it was
        assert "\tSerial Number: <redacted>\n" in stored
        assert "MEMORY_DEVICE_0_SERIAL_NUMBER=<redacted>\n" in stored
    source = str(tmp_path / "machine" / "dmidecode.txt")
    assert SECRETS[0] not in SnapshotHost(snap).read_text(source)


def test_no_redact_keeps_everything(tmp_path):
    _, stored_file, stored_out = record_private_file(tmp_path, redacted=False)
    assert stored_file == PRIVATE and stored_out == PRIVATE


def test_redact_file_whole_files_and_hostname():
    assert redact.redact_file("/sys/class/dmi/id/product_serial", b"S3R14L\n") == b"<redacted>\n"
    assert redact.redact_file("/sys/devices/virtual/dmi/id/board_asset_tag",
                              b"ASSET-1\n") == b"<redacted>\n"
    assert redact.redact_file("/etc/machine-id", b"0123abcd\n") == b"<redacted>\n"
    assert redact.redact_file("/etc/hostname", b"alice-laptop\n") == b"redacted-host\n"
    meminfo = b"MemTotal: 1024 kB\n"
    assert redact.redact_file("/proc/meminfo", meminfo) == meminfo
    odd = b"Serial Number: \xff\xfeX\nProduct: \xff\n"  # firmware bytes survive the round trip
    assert redact.redact_file("/x", odd) == b"Serial Number: <redacted>\nProduct: \xff\n"


def test_redact_cmdline():
    argv = ["llama-server", "-m", "m.gguf", "--api-key", "sk-secret", "--port", "8080",
            "--api-key=sk-other", "--hf-token", "hf_abc", "-hft", "hf_def", "--api-key-file",
            "/keys/k"]
    cleaned = redact.redact_cmdline(argv)
    assert cleaned == ["llama-server", "-m", "m.gguf", "--api-key", "<redacted>", "--port",
                       "8080", "--api-key=<redacted>", "--hf-token", "<redacted>", "-hft",
                       "<redacted>", "--api-key-file", "/keys/k"]
    assert "sk-secret" in argv  # the input is not changed
    assert redact.redact_cmdline(["llama-server", "--api-key"]) == ["llama-server", "--api-key"]


def test_redact_nvml():
    readings = {"init": "ok", "driver_version": "570.1", "devices": [
        {"index": 0, "uuid": "GPU-1111", "name": "RTX 4090"},
        {"index": 1, "uuid": "GPU-2222", "name": "RTX 3090"},
        {"index": 2, "error": "NVML_ERROR_UNKNOWN"},
    ]}
    cleaned = redact.redact_nvml(readings)
    uuids = [d.get("uuid") for d in cleaned["devices"]]
    assert "GPU-1111" not in json.dumps(cleaned) and "GPU-2222" not in json.dumps(cleaned)
    assert uuids[0] != uuids[1] and all(redact.MARK in u for u in uuids[:2])
    assert uuids[2] is None
    assert [d.get("name") for d in cleaned["devices"]] == ["RTX 4090", "RTX 3090", None]
    assert cleaned["driver_version"] == "570.1"
    assert readings["devices"][0]["uuid"] == "GPU-1111"  # the input is not changed
    assert redact.redact_nvml({"init": "NVML_ERROR_DRIVER_NOT_LOADED"}) == {
        "init": "NVML_ERROR_DRIVER_NOT_LOADED"}


@pytest.mark.parametrize("redacted", [True, False])
def test_environment_outside_allow_list(tmp_path, monkeypatch, redacted):
    monkeypatch.setenv("Q3CN_TEST_SECRET_TOKEN", "hunter2-q3cn")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    directory = RecordingHost(str(tmp_path / "snap"), redacted=redacted).finish()
    with open(os.path.join(directory, "snapshot.json")) as handle:
        text = handle.read()
    meta = json.loads(text)
    assert meta["environ"]["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert meta["redacted"] is redacted
    if redacted:
        assert "Q3CN_TEST_SECRET_TOKEN" not in meta["environ"]
        assert "hunter2-q3cn" not in text
        assert set(meta["environ"]) <= set(ENV_ALLOW)
    else:
        assert meta["environ"]["Q3CN_TEST_SECRET_TOKEN"] == "hunter2-q3cn"
    assert SnapshotHost(directory).environ() == meta["environ"]


# -- minimal and hand-made snapshots -----------------------------------------------------


@pytest.fixture
def minimal(tmp_path):
    directory = tmp_path / "minimal"
    write(directory / "cmd" / "dmidecode_-t_memory.out", "Memory Device\n\tSize: 16 GB\n")
    write(directory / "cmd" / "dmidecode_-t_memory.rc", "0\n")
    return str(directory)


def test_minimal_snapshot_replays(minimal):
    host = SnapshotHost(minimal)
    result = host.run(["dmidecode", "-t", "memory"])
    assert (result.state, result.returncode) == (RAN, 0)
    assert result.stdout == "Memory Device\n\tSize: 16 GB\n" and result.stderr == ""
    for argv in (["dmidecode", "-t", "17"], ["systemd-detect-virt", "--vm"], ["true"]):
        assert host.run(argv).state == ABSENT
    for path in ("/proc/meminfo", "/proc/cpuinfo", "/etc/os-release",
                 "/cmd/dmidecode_-t_memory.rc"):
        with pytest.raises(FileNotFoundError):
            host.read_bytes(path)
    with pytest.raises(FileNotFoundError):
        host.listdir("/sys")
    assert host.glob("/sys/devices/system/cpu/cpufreq/policy*") == []
    assert not host.exists("/proc") and not host.is_dir("/proc")
    assert host.nvml()["init"] != "ok"
    assert host.processes() == [] and host.environ() == {} and host.euid() is None


def test_minimal_snapshot_check(minimal):
    for args in (["check", "--snapshot", minimal], ["check", "--json", "--snapshot", minimal]):
        done = run_cli(*args)
        assert done.returncode in (0, 1), done.stdout + done.stderr
        assert "Traceback" not in done.stderr


def test_minimal_snapshot_is_read_only(minimal):
    host = SnapshotHost(minimal)
    with pytest.raises(OSError):
        host.write_bytes("/etc/new", b"x")
    with pytest.raises(OSError):
        host.remove("/cmd/dmidecode_-t_memory.rc")
    assert sorted(os.listdir(minimal)) == ["cmd"]
    assert len(os.listdir(os.path.join(minimal, "cmd"))) == 2


@pytest.mark.parametrize("word, state", [("timed-out", TIMED_OUT),
                                         ("not-installed", NOT_INSTALLED),
                                         ("permission-denied", PERMISSION_DENIED),
                                         ("garbage", ABSENT)])
def test_rc_words_replay_as_states(tmp_path, word, state):
    write(tmp_path / "cmd" / "nvidia-smi.rc", word + "\n")
    result = SnapshotHost(str(tmp_path)).run(["nvidia-smi"])
    assert result.state == state
    assert result.returncode is None and not result.ok


def test_nonzero_rc_replays(tmp_path):
    write(tmp_path / "cmd" / "systemd-detect-virt_--vm.rc", "1")
    write(tmp_path / "cmd" / "systemd-detect-virt_--vm.out", "none\n")
    result = SnapshotHost(str(tmp_path)).run(["systemd-detect-virt", "--vm"])
    assert (result.state, result.returncode, result.stdout) == (RAN, 1, "none\n")


def test_recorded_read_errors_replay(tmp_path):
    write(tmp_path / "fs" / "x", "would be readable")
    write(tmp_path / "snapshot.json", json.dumps(
        {"format": 1, "errors": {"/x": "EACCES", "/proc/kcore": "EIO", "/d": "EPERM"}}))
    host = SnapshotHost(str(tmp_path))
    with pytest.raises(PermissionError):
        host.read_bytes("/x")
    assert host.cat("/x", fallback="denied") == "denied"
    with pytest.raises(OSError) as caught:
        host.read_bytes("/proc/kcore")
    assert caught.value.errno == 5
    with pytest.raises(PermissionError):
        host.listdir("/d")


def test_bad_snapshot_json_is_a_snapshot_error(tmp_path):
    write(tmp_path / "snapshot.json", "{not json")
    with pytest.raises(SnapshotError):
        open_snapshot(str(tmp_path))
    done = run_cli("check", "--snapshot", str(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_damaged_values_in_snapshot_json_read_as_absent(tmp_path):
    """Hand-edited metadata once made every CPU, memlock and server check an error."""
    write(tmp_path / "snapshot.json", json.dumps({
        "euid": "root", "capabilities": True, "environ": ["PATH"],
        "rlimits": {"MEMLOCK": 5, "NOFILE": [1024, 4096]},
        "processes": ["junk", {"pid": 7, "name": "llama-server", "bogus": 1,
                               "cmdline": "llama-server -t 8", "affinity": [0, "x"]}]}))
    write(tmp_path / "fs/proc/meminfo", "MemTotal:       67108864 kB\n")
    host = SnapshotHost(str(tmp_path))
    assert (host.euid(), host.capabilities(), host.environ()) == (None, None, {})
    assert host.rlimits() == {"NOFILE": (1024, 4096)}
    (process,) = host.processes()
    assert (process.pid, process.name, process.cmdline, process.affinity) == (
        7, "llama-server", [], [0])
    done = run_cli("check", "--snapshot", str(tmp_path), "--json", "--no-plugins")
    errors = [f["id"] for f in json.loads(done.stdout)["findings"] if f["status"] == "error"]
    assert errors == [] and "Traceback" not in done.stderr


def test_symlinked_parts_of_a_snapshot_stay_inside(tmp_path):
    """A crafted snapshot whose fs/ or cmd/ files are links to / must not read the machine."""
    directory = tmp_path / "crafted"
    os.makedirs(directory / "cmd")
    os.symlink("/", directory / "fs")
    os.symlink("/proc/self/status", directory / "cmd" / "true.out")
    write(directory / "cmd" / "true.rc", "0")
    host = SnapshotHost(str(directory))
    assert host.cat("/proc/sys/kernel/osrelease") is None
    assert host.cat("/proc/self/status") is None
    assert host.run(["true"]).stdout == ""


# -- archives ----------------------------------------------------------------------------


def add_file(archive: tarfile.TarFile, name: str, data: bytes = b"data\n") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def add_link(archive: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    archive.addfile(info)


def make_tar(path, build) -> str:
    with tarfile.open(path, "w:gz") as archive:
        build(archive)
    return str(path)


@pytest.mark.parametrize("name", ["/tmp/q3cn-doctor-test-abs", "../q3cn-escape",
                                  "fs/../../q3cn-escape", "fs/a/../../../q3cn-escape"])
def test_safe_extract_refuses_unsafe_names(tmp_path, name):
    archive = make_tar(tmp_path / "bad.tar.gz", lambda a: add_file(a, name))
    destination = tmp_path / "out" / "dest"
    os.makedirs(destination)
    with pytest.raises(tarfile.TarError):
        _safe_extract(archive, str(destination))
    assert not os.path.exists("/tmp/q3cn-doctor-test-abs")
    assert not (tmp_path / "out" / "q3cn-escape").exists()
    assert not (tmp_path / "q3cn-escape").exists()


def test_safe_extract_refuses_files_behind_a_link(tmp_path):
    outside = tmp_path / "outside"
    os.makedirs(outside)

    def build(archive):
        add_link(archive, "fs/sys", str(outside))
        add_file(archive, "fs/sys/planted", b"planted\n")

    archive = make_tar(tmp_path / "bad.tar.gz", build)
    os.makedirs(tmp_path / "dest")
    with pytest.raises(tarfile.TarError):
        _safe_extract(archive, str(tmp_path / "dest"))
    assert os.listdir(outside) == []


def test_safe_extract_refuses_a_file_over_a_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("original\n")

    def build(archive):
        add_link(archive, "fs/etc", str(victim))
        add_file(archive, "fs/etc", b"overwritten\n")

    archive = make_tar(tmp_path / "bad.tar.gz", build)
    os.makedirs(tmp_path / "dest")
    with pytest.raises(tarfile.TarError):
        _safe_extract(archive, str(tmp_path / "dest"))
    assert victim.read_text() == "original\n"
    with pytest.raises(SnapshotError):
        open_snapshot(archive)
    assert victim.read_text() == "original\n"


def test_safe_extract_keeps_links_and_files(tmp_path):
    def build(archive):
        add_file(archive, "snapshot.json", b'{"format": 1, "euid": 1000}')
        add_file(archive, "fs/sys/devices/virtual/dmi/id/sys_vendor", b"QEMU\n")
        add_link(archive, "fs/sys/class/dmi/id", "../../devices/virtual/dmi/id")
        add_link(archive, "fs/etc/os-release", "/usr/lib/os-release")  # absolute: kept
        add_file(archive, "fs/usr/lib/os-release", b'PRETTY_NAME="Test"\n')

    host = open_snapshot(make_tar(tmp_path / "good.tar.gz", build))
    assert isinstance(host, ExtractedSnapshot)
    assert host.euid() == 1000
    assert host.cat("/sys/class/dmi/id/sys_vendor") == "QEMU"
    assert host.readlink("/etc/os-release") == "/usr/lib/os-release"
    assert host.cat("/etc/os-release") == 'PRETTY_NAME="Test"'


def test_archive_of_the_folder_itself(tmp_path, minimal):
    archive = str(tmp_path / "wrapped.tar.gz")
    with tarfile.open(archive, "w:gz") as packed:
        packed.add(minimal, arcname="my-snapshot")
    host = open_snapshot(archive)
    assert host.run(["dmidecode", "-t", "memory"]).ok
    flat = str(tmp_path / "flat.tar.gz")
    write_tar(minimal, flat)
    assert open_snapshot(flat).run(["dmidecode", "-t", "memory"]).ok


def test_open_snapshot_missing_path(tmp_path):
    with pytest.raises(SnapshotError):
        open_snapshot(str(tmp_path / "nothing-here"))
    not_tar = tmp_path / "notes.tar.gz"
    not_tar.write_text("not an archive")
    with pytest.raises(SnapshotError):
        open_snapshot(str(not_tar))


def test_check_on_a_missing_snapshot_is_a_usage_error():
    done = run_cli("check", "--snapshot", "/nonexistent/q3cn-snapshot")
    assert done.returncode == 2
    assert "no snapshot at /nonexistent/q3cn-snapshot" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


# -- symlinks --------------------------------------------------------------------------------


def test_recording_keeps_symlinks(tmp_path):
    tree = tmp_path / "tree"
    write(tree / "devices" / "card0" / "vendor", "0x10de\n")
    os.makedirs(tree / "class")
    os.symlink("../devices/card0", tree / "class" / "card0")  # relative link to a folder
    os.symlink("vendor", tree / "devices" / "card0" / "alias")  # a link as the last part
    through = str(tree / "class" / "card0" / "vendor")
    last = str(tree / "class" / "card0" / "alias")
    snap = str(tmp_path / "snap")
    recorder = RecordingHost(snap)
    assert recorder.read_text(through) == "0x10de\n"
    assert recorder.read_text(last) == "0x10de\n"
    fs = os.path.join(snap, "fs")
    stored_link = fs + str(tree / "class" / "card0")
    assert os.path.islink(stored_link)
    assert os.readlink(stored_link) == "../devices/card0"
    assert os.path.isfile(fs + str(tree / "devices" / "card0" / "vendor"))
    assert not os.path.islink(fs + str(tree / "devices" / "card0" / "vendor"))
    assert os.readlink(fs + str(tree / "devices" / "card0" / "alias")) == "vendor"
    recorder.finish()
    replay = SnapshotHost(snap)
    assert replay.read_bytes(through) == b"0x10de\n"
    assert replay.read_bytes(last) == b"0x10de\n"
    assert replay.readlink(str(tree / "class" / "card0")) == "../devices/card0"
    assert replay.readlink(last) == "vendor"


def test_recording_replays_listings_and_globs(tmp_path):
    tree = tmp_path / "tree"
    for name in ("policy0", "policy2", "boost"):
        os.makedirs(tree / "cpufreq" / name)
    write(tree / "cpufreq" / "policy0" / "scaling_governor", "powersave\n")
    snap = str(tmp_path / "snap")
    recorder = RecordingHost(snap)
    pattern = str(tree / "cpufreq" / "policy*")
    live = recorder.glob(pattern)
    governor = recorder.cat(str(tree / "cpufreq" / "policy0" / "scaling_governor"))
    assert recorder.exists(str(tree / "cpufreq" / "boost"))
    recorder.finish()
    replay = SnapshotHost(snap)
    assert replay.glob(pattern) == live == [str(tree / "cpufreq" / n) for n in ("policy0",
                                                                                "policy2")]
    assert replay.cat(str(tree / "cpufreq" / "policy0" / "scaling_governor")) == governor
    assert replay.listdir(str(tree / "cpufreq")) == ["boost", "policy0", "policy2"]
    assert replay.exists(str(tree / "cpufreq" / "boost"))
    assert not replay.exists(str(tree / "cpufreq" / "policy9"))


def test_redacted_snapshot_keeps_only_llama_server_arguments():
    llama = ["/opt/llama/llama-server", "-m", "model.gguf", "--api-key", "s3cret"]
    assert redact.redact_process_cmdline("llama-server", llama) == [
        "/opt/llama/llama-server", "-m", "model.gguf", "--api-key", redact.MARK]
    other = ["/usr/bin/curl", "-H", "Authorization: Bearer tok"]
    assert redact.redact_process_cmdline("curl", other) == ["/usr/bin/curl"]


def test_spd_serial_numbers_are_blanked_and_the_rating_survives():
    """A redacted snapshot holds no module serial, yet decodes to the same speeds."""
    from pathlib import Path

    from q3cn_doctor.parsers.spd import decode_spd

    spd_dir = Path(__file__).parent / "fixtures" / "spd"
    checked = 0
    for image in sorted(spd_dir.glob("*.bin")):
        data = image.read_bytes()
        serial = {512: slice(325, 329), 1024: slice(517, 521)}.get(len(data))
        if serial is None or not any(data[serial]):
            continue
        path = "/sys/bus/i2c/drivers/spd5118/0-0050/eeprom"
        stored = redact.redact_file(path, data)
        assert stored[serial] == b"\0\0\0\0" and len(stored) == len(data)
        before, after = decode_spd(data), decode_spd(stored)
        assert (after.rated_mts(), after.jedec_mts, after.part_number) == (
            before.rated_mts(), before.jedec_mts, before.part_number)
        checked += 1
    assert checked >= 10


# -- what a snapshot replays as: the pasted output, the recorded user ----------------------


def test_an_output_without_rc_ran_and_exited_0(tmp_path):
    """What a user pastes into a bug report is the output alone: it reads as a clean run."""
    source = HOSTS / "mem-ddr5-6400kit-at-4800-dmidecode-only" / "cmd" / "dmidecode_-t_memory.out"
    write(tmp_path / "cmd" / "dmidecode_-t_memory.out", source.read_bytes())
    result = SnapshotHost(str(tmp_path)).run(["dmidecode", "-t", "memory"])
    assert (result.state, result.returncode) == (RAN, 0)
    assert result.stdout == source.read_text()
    done = run_cli("check", "--snapshot", str(tmp_path), "--only", "memory.speed", "--json")
    speed = findings_of(done)[0]
    assert speed["status"] == "fail" and "below the 6400 MT/s" in speed["title"]


def sudo_snapshot(directory) -> str:
    """Recorded by `sudo q3cn-doctor snapshot` for ana: root's identity, ana's name."""
    write(directory / "snapshot.json", json.dumps({
        "format": FORMAT_VERSION, "euid": 0, "rlimits": {"MEMLOCK": [8388608, 8388608]},
        "environ": {"SUDO_USER": "ana", "USER": "root"}}))
    write(directory / "fs/etc/passwd",
          "root:x:0:0::/root:/bin/bash\nana:x:1000:1000::/home/ana:/bin/bash\n")
    write(directory / "fs/proc/meminfo", "MemTotal: 134217728 kB\nMemAvailable: 67108864 kB\n")
    return str(directory)


def memlock_on(directory: str, *args: str) -> dict:
    done = run_cli("check", "--snapshot", directory, "--only", "memory.memlock", "--json", *args)
    return findings_of(done)[0]


def test_replay_judges_the_user_behind_sudo_not_whoever_replays(tmp_path):
    snapshot = sudo_snapshot(tmp_path / "snap")
    judged = memlock_on(snapshot)  # replayed by root here, in CI and by maintainers
    assert judged["status"] == "info" and "8192 KiB" in judged["title"]
    assert "for ana" in judged["observed"]
    assert memlock_on(snapshot, "--user", "root")["status"] == "pass"  # asked for: honoured


def test_recorded_user_wins_over_sudo_and_is_written_by_the_recording(tmp_path):
    snapshot = sudo_snapshot(tmp_path / "snap")
    meta = json.loads((tmp_path / "snap" / "snapshot.json").read_text())
    meta["user"] = "root"  # recorded with --user root
    write(tmp_path / "snap" / "snapshot.json", json.dumps(meta))
    assert SnapshotHost(snapshot).recorded_user() == "root"
    assert memlock_on(snapshot)["status"] == "pass"
    recording = RecordingHost(str(tmp_path / "new"), user="ana")
    recording.finish()
    assert SnapshotHost(str(tmp_path / "new")).recorded_user() == "ana"

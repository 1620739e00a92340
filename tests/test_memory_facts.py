"""Memory module facts: dmidecode, then udev, then the SPD EEPROMs; the rating and channels.

Snapshots are written under tmp_path from the real listings in tests/fixtures/dmidecode,
tests/fixtures/udev and tests/fixtures/spd (their SOURCES.tsv name where each came from);
what is constructed is the snapshot around them (exit codes, i2c addresses, meminfo).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURES, host_fixture
from q3cn_doctor.facts import Facts
from q3cn_doctor.facts.memory import channel_layout
from q3cn_doctor.host.snapshot import SnapshotHost
from q3cn_doctor.options import Options

GIB = 1024**3
UDEV_SLUG = "udevadm_info_--query_property_--path__sys_devices_virtual_dmi_id"
DENIED = "/sys/firmware/dmi/tables/smbios_entry_point: Permission denied\n"


def listing(prefix: str) -> str:
    (path,) = (FIXTURES / "dmidecode").glob(prefix + "-*.txt")
    return path.read_bytes().decode("utf-8", "replace")


def udev(prefix: str) -> str:
    (path,) = (FIXTURES / "udev").glob(prefix + "-*.txt")
    return path.read_text()


def spd(prefix: str) -> bytes:
    (path,) = (FIXTURES / "spd").glob(prefix + "-*.bin")
    return path.read_bytes()


def mem_snapshot(root: Path, *, dmidecode: str | None = None, dmidecode_rc: str = "0",
                 udev_text: str | None = None, eeproms: dict[str, bytes] | None = None,
                 meminfo_gib: tuple[int, int] | None = None, meta: dict | None = None,
                 files: dict[str, str] | None = None) -> Path:
    """A snapshot holding only what a memory test needs.

    ``dmidecode``: stdout of `dmidecode -t memory` (rc ``dmidecode_rc``; "1" with the
    non-root error when stdout is empty); ``udev_text``: the udevadm properties;
    ``eeproms``: ``{"spd5118/1-0051": bytes}``; ``meminfo_gib``: (total, available).
    """
    cmd = root / "cmd"
    cmd.mkdir(parents=True, exist_ok=True)
    if dmidecode is not None:
        (cmd / "dmidecode_-t_memory.out").write_text(dmidecode)
        (cmd / "dmidecode_-t_memory.err").write_text(DENIED if dmidecode_rc != "0" else "")
        (cmd / "dmidecode_-t_memory.rc").write_text(dmidecode_rc + "\n")
    if udev_text is not None:
        (cmd / f"{UDEV_SLUG}.out").write_text(udev_text)
        (cmd / f"{UDEV_SLUG}.rc").write_text("0\n")
    for where, data in (eeproms or {}).items():
        path = root / "fs/sys/bus/i2c/drivers" / where / "eeprom"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    all_files = dict(files or {})
    if meminfo_gib:
        total, available = meminfo_gib
        all_files["/proc/meminfo"] = (f"MemTotal:       {total * 1048576} kB\n"
                                      f"MemAvailable:   {available * 1048576} kB\n")
    for name, text in all_files.items():
        path = root / "fs" / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if meta is not None:
        (root / "snapshot.json").write_text(json.dumps(dict({"format": 1}, **meta)))
    return root


def memory_of(directory: Path | str, **options):
    return Facts(SnapshotHost(str(directory)), Options(snapshot=str(directory), **options)).memory


# -- sources, in order -----------------------------------------------------------------------

def test_dmidecode_only_snapshot_fixture():
    """The done-when layout: a folder holding only cmd/dmidecode_-t_memory.out (+ .rc)."""
    memory = memory_of(host_fixture("mem-ddr5-6400kit-at-4800-dmidecode-only"))
    assert memory.source == "dmidecode"
    assert memory.slots == 4
    assert [(m.locator, m.bank_locator, m.size_bytes, m.type, m.form_factor, m.rank,
             m.data_width, m.speed_mts, m.configured_mts, m.part_number, m.channel)
            for m in memory.modules] == [
        ("DIMMA2", "P0 CHANNEL A", 32 * GIB, "DDR5", "DIMM", 2, 64, 4800, 4800,
         "F5-6400J3239G32G", "P0-A"),
        ("DIMMB2", "P0 CHANNEL B", 32 * GIB, "DDR5", "DIMM", 2, 64, 4800, 4800,
         "F5-6400J3239G32G", "P0-B"),
    ]
    assert (memory.configured_mts, memory.jedec_mts, memory.rated_mts) == (4800, 4800, 6400)
    assert (memory.rated_source, memory.rated_profile, memory.rated_confidence) == (
        "part-number", "XMP/EXPO", "high")
    assert (memory.channels, memory.board_channels, memory.soldered) == (2, 2, False)
    assert memory.theoretical_bytes_per_s == 4800e6 * 8 * 2
    assert memory.how_to is None


def test_spd_only_snapshot_fixture():
    """The other done-when layout: only SPD EEPROMs under fs/sys/bus/i2c/drivers/spd5118."""
    memory = memory_of(host_fixture("mem-ddr5-gskill-6000-spd-only"))
    assert memory.source == "spd"
    assert [(m.locator, m.size_bytes, m.type, m.form_factor, m.speed_mts, m.configured_mts,
             m.part_number, m.manufacturer) for m in memory.modules] == [
        (f"SPD 1-005{n}", 16 * GIB, "DDR5", "UDIMM", 4800, None, "F5-6000J3636F16G", "G.Skill")
        for n in (1, 3)]
    assert [(r.jedec_mts, r.rated_mts, r.rated_by) for r in memory.spd] == [
        (4800, 6000, "expo"), (4800, 6000, "expo")]
    assert (memory.rated_mts, memory.rated_source, memory.rated_profile,
            memory.rated_confidence) == (6000, "spd", "EXPO", "high")
    assert memory.configured_mts is None and memory.channels is None
    assert memory.slots is None
    assert "sudo q3cn-doctor check" in memory.how_to


def test_udev_fallback_without_root():
    memory = memory_of(host_fixture("mem-udev-thinkcentre-m720s-no-root"))
    assert memory.source == "udev"
    assert "dmidecode -t memory` exited 1" in memory.basis["source"]
    assert memory.slots == 4 and len(memory.modules) == 3
    assert memory.configured_mts == 2400 and memory.jedec_mts == 2400
    # Samsung M378A1K43CB2-CTD is JEDEC 2666, Crucial BLT8G4D26AFTA a 2666 XMP kit: the
    # tie goes to the kit, whose speed only XMP reaches.
    assert (memory.rated_mts, memory.rated_source, memory.rated_profile) == (
        2666, "part-number", "XMP/EXPO")
    assert [m.channel for m in memory.modules] == ["A", "A", "B"]
    assert (memory.channels, memory.board_channels) == (2, 2)


def test_dmidecode_wins_over_udev(tmp_path):
    root = mem_snapshot(tmp_path / "s", dmidecode=listing("012"), udev_text=udev("001"))
    memory = memory_of(root)
    assert memory.source == "dmidecode"
    assert {m.part_number for m in memory.modules} == {"F5-6000J3038F16G"}


def test_udev_database_file_when_udevadm_is_absent(tmp_path):
    database = "".join(f"E:{line}\n" for line in udev("002").splitlines())
    root = mem_snapshot(tmp_path / "s", dmidecode="", dmidecode_rc="1",
                        files={"/run/udev/data/+dmi:id": database})
    memory = memory_of(root)
    assert memory.source == "udev"
    assert "/run/udev/data/+dmi:id" in memory.basis["source"]
    assert [m.locator for m in memory.modules] == ["ChannelA-DIMM0", "ChannelB-DIMM0"]


def test_nothing_answers_says_how_to_get_the_data(tmp_path):
    root = mem_snapshot(tmp_path / "s", dmidecode="", dmidecode_rc="1", meta={"euid": 1000})
    memory = memory_of(root)
    assert memory.source == "none" and memory.modules == []
    assert memory.rated_mts is None and memory.channels is None
    assert "exited 1" in memory.basis["source"]
    assert "sudo q3cn-doctor check" in memory.how_to


def test_root_without_dmidecode_says_install_it(tmp_path):
    root = mem_snapshot(tmp_path / "s", meta={"euid": 0})
    (root / "cmd" / "dmidecode_-t_memory.rc").write_text("not-installed\n")
    memory = memory_of(root)
    assert memory.source == "none"
    assert "install dmidecode" in memory.how_to and "sudo q3cn-doctor" not in memory.how_to


# -- the rating ------------------------------------------------------------------------------

def test_spd_rating_beats_the_part_number(tmp_path):
    # dmidecode 007 names a 6400 kit; the SPD EEPROMs (G.Skill EXPO 6000) are what is there.
    root = mem_snapshot(tmp_path / "s", dmidecode=listing("007"),
                        eeproms={"spd5118/1-0051": spd("005"), "spd5118/1-0053": spd("005")})
    memory = memory_of(root)
    assert memory.source == "dmidecode"
    assert (memory.rated_mts, memory.rated_source, memory.rated_profile) == (6000, "spd", "EXPO")
    assert memory.jedec_mts == 4800


def test_jedec_only_spd_and_xmp_only_ddr4(tmp_path):
    samsung = memory_of(mem_snapshot(tmp_path / "a", dmidecode=listing("004"),
                                     eeproms={"spd5118/0-0050": spd("010")}))
    assert (samsung.rated_mts, samsung.rated_profile, samsung.rated_confidence) == (
        5600, "JEDEC", "medium")  # one EEPROM read for four modules
    gskill = memory_of(mem_snapshot(tmp_path / "b", eeproms={
        "ee1004/0-0050": spd("018"), "ee1004/0-0051": spd("018")}))
    assert (gskill.source, gskill.jedec_mts, gskill.rated_mts, gskill.rated_profile) == (
        "spd", 2400, 3200, "XMP")


def test_truncated_spd_gives_no_rating(tmp_path):
    memory = memory_of(mem_snapshot(tmp_path / "s", dmidecode=listing("044"),
                                    eeproms={"spd5118/0-0050": spd("017")}))
    (reading,) = memory.spd
    assert reading.rated_mts is None and "512 of 1024" in reading.undecodable
    assert memory.rated_source == "part-number"  # M425R1GB4BB0-CWMOD: Samsung JEDEC 5600
    assert memory.rated_mts == 5600


def test_user_rating_when_nothing_else_tells(tmp_path):
    root = mem_snapshot(tmp_path / "s", dmidecode=listing("021"))  # blank part numbers
    assert memory_of(root).rated_source == "dmidecode"
    memory = memory_of(root, ram_rated=3600)
    assert (memory.rated_mts, memory.rated_source, memory.rated_profile) == (
        3600, "user", "XMP/EXPO")
    known = memory_of(mem_snapshot(tmp_path / "k", dmidecode=listing("007")), ram_rated=6000)
    assert (known.rated_mts, known.rated_source) == (6400, "part-number")
    assert "--ram-rated 6000 not needed" in known.basis["rated_mts"]


def test_soldered_lpddr_is_rated_by_its_own_speed(tmp_path):
    memory = memory_of_listing("035", tmp_path)
    assert memory.soldered is True
    assert (memory.rated_mts, memory.rated_profile, memory.rated_source) == (
        6400, "JEDEC", "dmidecode")
    assert (memory.channels, memory.configured_mts) == (2, 5200)


def memory_of_listing(prefix: str, tmp: Path, **options):
    return memory_of(mem_snapshot(tmp / prefix, dmidecode=listing(prefix)), **options)


# -- exact facts for a range of machines --------------------------------------------------------

@pytest.mark.parametrize("prefix, slots, modules, configured, rated, source, profile, channels", [
    ("001", 4, 4, 3600, 5200, "part-number", "XMP/EXPO", 2),  # 4 x KF552C40-32 (Fury 5200)
    ("003", 4, 2, 4800, 5600, "part-number", "JEDEC", 2),  # Crucial CT32G56C46U5
    ("012", 4, 2, 6000, 6000, "part-number", "XMP/EXPO", 2),  # EXPO on
    ("016", 4, 4, 6000, 5600, "part-number", "XMP/EXPO", 4),  # TRX50 overclocked
    ("017", 4, 2, 3600, 5200, "part-number", "XMP/EXPO", 1),  # both DIMMs on channel A
    ("019", 4, 2, 2667, 2667, "dmidecode", "JEDEC", 2),  # configured printed as the clock
    ("024", 4, 4, 2133, 3200, "part-number", "XMP/EXPO", 2),  # mixed Corsair/G.Skill kits
    ("029", 8, 4, 2667, 2400, "part-number", "XMP/EXPO", 4),  # X99 quad channel
    ("039", 4, 4, 5500, 4266, "dmidecode", "JEDEC", 2),  # Steam Deck LPDDR5
    ("040", 8, 8, 4800, 6400, "dmidecode", "JEDEC", 2),  # LPDDR5 "64 bits" each: 16 assumed
    ("048", 24, 24, 4800, 4800, "part-number", "JEDEC", 24),  # dual EPYC, P0/P1 CHANNEL A-L
    ("050", 16, 16, 2400, 2666, "part-number", "JEDEC", None),  # Dell A1..A10: no channels
    ("053", 32, 32, None, 1333, "part-number", "JEDEC", None),  # no Configured line
    ("067", 64, 1, None, None, None, None, 1),  # VMware guest
    ("090", 4, 4, 4800, 6400, "dmidecode", "JEDEC", 1),  # N100: one 64-bit channel
    ("092", 24, 8, 1866, 1866, "dmidecode", "JEDEC", None),  # pasted prompts, HP PROC n DIMM n
])
def test_machines(tmp_path, prefix, slots, modules, configured, rated, source, profile,
                  channels):
    memory = memory_of_listing(prefix, tmp_path)
    assert (memory.slots, len(memory.modules), memory.configured_mts, memory.rated_mts,
            memory.rated_source, memory.rated_profile, memory.channels) == (
        slots, modules, configured, rated, source, profile, channels)


def test_channel_names(tmp_path):
    memory = memory_of_listing("001", tmp_path)
    assert [m.channel for m in memory.modules] == ["C0-A", "C0-A", "C1-A", "C1-A"]
    every_eleventh = memory_of_listing("048", tmp_path).modules[::11]
    assert [m.channel for m in every_eleventh] == ["P0-A", "P0-L", "P1-K"]
    assert [m.channel for m in memory_of_listing("029", tmp_path).modules] == ["A", "B", "C", "D"]
    assert [m.channel for m in memory_of_listing("091", tmp_path).modules] == ["S0-1", "S0-3"]


def test_channel_layout_without_modules():
    assert channel_layout([], []) == (None, None, "unknown: no module installed")


# -- measurement -------------------------------------------------------------------------------

def test_measure_on_a_snapshot_is_not_possible():
    memory = memory_of(host_fixture("mem-ddr5-6400kit-at-4800-dmidecode-only"), measure=True)
    assert memory.measured is None
    assert "not possible on a snapshot" in memory.basis["measured"]


@pytest.mark.live
def test_measure_on_the_live_machine(monkeypatch):
    from q3cn_doctor.host import bandwidth
    from q3cn_doctor.host.live import LiveHost

    calls = []

    def fake(buffer_bytes, threads):
        calls.append((buffer_bytes, threads))
        return bandwidth.BandwidthResult(5e10, (4.9e10, 5e10), threads, buffer_bytes, 0.5,
                                         "fake")

    monkeypatch.setattr(bandwidth, "measure_read_bandwidth", fake)
    memory = Facts(LiveHost(), Options(measure=True)).memory
    assert len(calls) == 1 and calls[0][1] >= 1
    assert memory.measured["bytes_per_s"] == 5e10
    assert memory.measured["pass_bytes_per_s"] == [4.9e10, 5e10]
    assert Facts(LiveHost(), Options()).memory.measured is None


def test_a_listing_bug_does_not_cost_the_other_memory_facts(tmp_path, monkeypatch):
    from q3cn_doctor.facts import memory as memory_module

    def broken(*args):
        raise ValueError("boom")

    monkeypatch.setattr(memory_module, "parse_dmidecode", broken)
    root = mem_snapshot(tmp_path / "s", dmidecode=listing("012"), meminfo_gib=(64, 32))
    memory = memory_of(root)
    assert memory.total_bytes == 64 * GIB
    assert memory.basis["source"] == "failed: ValueError: boom"

"""The SMBIOS memory parser on the 92 real dmidecode listings in tests/fixtures/dmidecode/.

SOURCES.tsv there names the public repository, path and commit of every file. The
numbers asserted below are read off the listings themselves (``Size:``, ``Speed:``,
``Configured Memory Speed:``, ``Locator:`` lines); the comments say which line.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import FIXTURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from q3cn_doctor.parsers.dmidecode import (
    SPEED_RANGE_MTS,
    MemoryInventory,
    clean_text,
    parse_dmidecode,
    parse_size,
    parse_speed,
)

DMIDECODE = FIXTURES / "dmidecode"
FILES = sorted(DMIDECODE.glob("*.txt"))
GB = 1024**3
MB = 1024**2


def parse(prefix: str) -> MemoryInventory:
    (path,) = DMIDECODE.glob(prefix + "-*.txt")
    return parse_dmidecode(path.read_bytes())


def test_all_92_listings_are_here_with_their_sources():
    assert len(FILES) == 92
    with open(DMIDECODE / "SOURCES.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert sorted(Path(row["file"]).name for row in rows) == [p.name for p in FILES]
    assert all(row["source_repo"] and len(row["source_commit"]) == 40 for row in rows)


@pytest.mark.parametrize("path", FILES, ids=[p.stem[:40] for p in FILES])
def test_every_listing_parses_into_sane_records(path):
    inventory = parse_dmidecode(path.read_bytes())
    assert inventory.slots(), "every listing has at least one memory slot"
    for device in inventory.devices:
        for speed in (device.speed_mts, device.configured_mts):
            assert speed is None or SPEED_RANGE_MTS[0] <= speed <= SPEED_RANGE_MTS[1]
        assert device.size_bytes is None or device.size_bytes > 0
        if device.size_bytes is not None:
            assert device.installed
        for text in (device.locator, device.part_number, device.manufacturer):
            assert text is None or (text == text.strip() and text)
    for module in inventory.modules():
        assert not module.non_volatile


# -- exact facts of chosen listings --------------------------------------------------------

def test_ddr5_four_dimms_xmp_off():
    # 001: Z790, 4 x Kingston KF552C40-32, "Speed: 4800 MT/s", "Configured Memory Speed: 3600".
    inventory = parse("001")
    modules = inventory.modules()
    assert len(inventory.slots()) == 4 and len(modules) == 4
    assert {(m.type, m.size_bytes, m.speed_mts, m.configured_mts, m.part_number, m.form_factor)
            for m in modules} == {("DDR5", 32 * GB, 4800, 3600, "KF552C40-32", "DIMM")}
    assert [m.locator for m in modules] == [
        "Controller0-ChannelA-DIMM0", "Controller0-ChannelA-DIMM1",
        "Controller1-ChannelA-DIMM0", "Controller1-ChannelA-DIMM1"]
    assert {m.bank_locator for m in modules} == {"BANK 0"}
    assert {m.rank for m in modules} == {2} and {m.data_width for m in modules} == {64}


def test_ddr5_expo_on_with_empty_slots():
    # 012: B650, 2 x G.Skill F5-6000J3038F16G in "DIMM 1"/"P0 CHANNEL A|B": Speed 4800,
    # configured 6000; "DIMM 0" slots say "Size: No Module Installed".
    inventory = parse("012")
    assert [(d.locator, d.bank_locator, d.installed) for d in inventory.slots()] == [
        ("DIMM 0", "P0 CHANNEL A", False), ("DIMM 1", "P0 CHANNEL A", True),
        ("DIMM 0", "P0 CHANNEL B", False), ("DIMM 1", "P0 CHANNEL B", True)]
    module = inventory.modules()[0]
    assert (module.speed_mts, module.configured_mts, module.size_bytes) == (4800, 6000, 16 * GB)
    assert module.part_number == "F5-6000J3038F16G"  # trailing spaces trimmed
    assert module.manufacturer is None  # "Manufacturer: Unknown"
    assert inventory.arrays[0].devices == 4
    assert inventory.arrays[0].max_capacity_bytes == 128 * GB


def test_ddr4_mixed_kits():
    # 024: two Corsair CMK16GX4M2Z3200C16 (Speed 2667) and two G.Skill F4-3200C16-8GVGB
    # (Speed 2133), all configured 2133.
    modules = parse("024").modules()
    assert [(m.part_number, m.speed_mts, m.configured_mts) for m in modules] == [
        ("CMK16GX4M2Z3200C16", 2667, 2133), ("F4-3200C16-8GVGB", 2133, 2133),
        ("CMK16GX4M2Z3200C16", 2667, 2133), ("F4-3200C16-8GVGB", 2133, 2133)]


def test_old_dmidecode_prints_mhz_for_the_data_rate():
    # 030: dmidecode 3.0 on a Maximus IX: "Speed: 3200 MHz", "Configured Clock Speed: 3200 MHz".
    modules = parse("030").modules()
    assert [(m.locator, m.speed_mts, m.configured_mts, m.size_bytes) for m in modules] == [
        ("ChannelA-DIMM1", 3200, 3200, 8192 * MB), ("ChannelB-DIMM1", 3200, 3200, 8192 * MB)]


def test_lpddr5_laptop_rows_of_chips():
    # 035: X1 Carbon Gen 10, 8 x 2 GB LPDDR5 "Row Of Chips", 16 bits, 6400 configured 5200.
    modules = parse("035").modules()
    assert len(modules) == 8
    assert {(m.type, m.form_factor, m.data_width, m.speed_mts, m.configured_mts, m.size_bytes)
            for m in modules} == {("LPDDR5", "Row Of Chips", 16, 6400, 5200, 2 * GB)}
    assert modules[0].part_number == "K3LKBKB0BM-MGCP"


def test_server_with_24_dimms_in_two_sockets():
    # 048: dual EPYC 9654, 24 x 64 GB DDR5 RDIMM M321R8GA0BB0-CQKZJ at 4800.
    inventory = parse("048")
    modules = inventory.modules()
    assert len(modules) == 24 and len(inventory.slots()) == 24
    assert modules[0].locator == "CPU1 DIMM A1" and modules[0].bank_locator == "P0 CHANNEL A"
    assert modules[-1].locator == "CPU2 DIMM L1" and modules[-1].bank_locator == "P1 CHANNEL L"
    assert {(m.size_bytes, m.speed_mts, m.configured_mts) for m in modules} == {
        (64 * GB, 4800, 4800)}


def test_flash_array_and_its_rom_are_not_modules():
    # 055: HP xw8600: a "Use: Flash Memory" array holds "SYSTEM ROM" (Type: Flash, 1 MB).
    inventory = parse("055")
    assert [a.use for a in inventory.arrays] == ["System Memory", "Flash Memory"]
    assert len(inventory.devices) == 9
    assert len(inventory.slots()) == 8 and len(inventory.modules()) == 8
    rom = inventory.devices[-1]
    assert (rom.locator, rom.type, rom.non_volatile) == ("SYSTEM ROM", "Flash", True)
    assert {m.type for m in inventory.modules()} == {"DDR2 FB-DIMM"}
    assert {m.speed_mts for m in inventory.modules()} == {667}


def test_rom_in_type_17_without_a_flash_array_is_not_a_module():
    # 065: Compaq 6005: the SYSTEM ROM sits in its own array; also a junk line with no colon
    # ("3D153A129FECFD993684B5FCC9BF367A") inside empty-slot records.
    inventory = parse("065")
    assert len(inventory.slots()) == 4
    assert [(m.locator, m.size_bytes, m.speed_mts) for m in inventory.modules()] == [
        ("XMM1", 4 * GB, 1066)]


@pytest.mark.parametrize("prefix, speeds", [
    ("058", [(533, None), (None, None), (None, None)]),  # "533 MHz (1.9 ns)", "65535 MHz"
    ("062", [(1333, None), (1333, None)]),  # "Configured ...: Unknown", "58785 MT/s"
    # DDR3 "Speed: 667 MT/s" is below DDR3's lowest rate (800): the clock of DDR3-1333;
    # configured "10475 MT/s" no DDR3 runs at, and "1 MT/s".
    ("063", [(1333, None), (1333, None)]),
    ("064", [(1600, 1333), (None, 1333)]),  # "Speed: 65535 MT/s"
])
def test_garbage_speeds_are_null(prefix, speeds):
    assert [(m.speed_mts, m.configured_mts) for m in parse(prefix).modules()] == speeds


def test_garbage_widths_and_template_part_numbers_are_null():
    # 058: "Total Width: 33592 bits", part numbers "A1_PartNum0"; sizes in kB.
    modules = parse("058").modules()
    assert [m.size_bytes for m in modules] == [30720 * 1024, 32465 * 1024, 286 * MB]
    assert [m.total_width for m in modules] == [64, None, None]
    assert {m.part_number for m in modules} == {None}
    # 060: "Data Width: 2244 bits".
    assert {m.data_width for m in parse("060").modules()} == {None}


def test_vmware_guest_with_64_slots():
    # 067: VMware, "RAM slot #0".."#63", one 4096 MB "DRAM" module, "Speed: Unknown".
    inventory = parse("067")
    assert len(inventory.slots()) == 64
    assert [(m.locator, m.size_bytes, m.type, m.speed_mts) for m in inventory.modules()] == [
        ("RAM slot #0", 4096 * MB, "DRAM", None)]


def test_windows_port_with_space_indentation():
    # 071: Hyper-V 2019 guest through the Windows port: 8-space indent, CRLF-free, "None"s.
    modules = parse("071").modules()
    assert [(m.locator, m.size_bytes, m.manufacturer, m.bank_locator) for m in modules] == [
        ("M0001", 3968 * MB, "Microsoft Corporation", None),
        ("M0002", 128 * MB, "Microsoft Corporation", None)]


def test_dmidecode_2_2_without_blank_lines():
    # 077: "Handle 0x1100" and "\tDMI type 17, 23 bytes." on two lines, records back to back.
    inventory = parse("077")
    assert len(inventory.slots()) == 6
    assert [(m.locator, m.size_bytes, m.type, m.speed_mts) for m in inventory.modules()] == [
        (name, 1024 * MB, "DDR", 200) for name in ("BANK1_A", "BANK1_B", "BANK2_A", "BANK2_B")]
    assert inventory.arrays[0].max_capacity_bytes == 12 * GB


def test_configured_clock_speed_in_mhz():
    # 081: Dell R620, dmidecode 3.0: "Configured Clock Speed: 1600 MHz", 16 of 24 slots.
    inventory = parse("081")
    assert len(inventory.slots()) == 24 and len(inventory.modules()) == 16
    assert {(m.speed_mts, m.configured_mts, m.part_number) for m in inventory.modules()} == {
        (1600, 1600, "HMT42GR7AFR4A-PB")}


def test_type_17_only_without_header():
    # 088: `dmidecode -t 17` with no "# dmidecode" header and no type 16.
    inventory = parse("088")
    assert inventory.arrays == []
    assert [(m.locator, m.bank_locator, m.size_bytes, m.type, m.form_factor, m.speed_mts,
             m.configured_mts, m.rank, m.manufacturer, m.part_number)
            for m in inventory.modules()] == [
        ("ChannelB-DIMM0", "BANK 2", 8 * GB, "DDR4", "SODIMM", 2667, 2667, 1, "0416",
         "P48808GSHCRN-VK")]


def test_pasted_shell_prompts():
    # 092: "fonwin@hp-ubuntu16:~$ sudo dmidecode -t 17" above and a prompt below.
    inventory = parse("092")
    assert len(inventory.slots()) == 24
    modules = inventory.modules()
    assert len(modules) == 8
    assert modules[0].locator == "PROC  1 DIMM  1"
    assert {(m.size_bytes, m.speed_mts, m.configured_mts, m.part_number) for m in modules} == {
        (8192 * MB, 1866, 1866, None)}  # "NOT AVAILABLE"


def test_lpddr_mini_pc_with_blank_part_numbers():
    # 090: N100 mini PC, 4 x 2 GB LPDDR5, 6400 configured 4800, "Part Number:" blank.
    modules = parse("090").modules()
    assert [(m.locator, m.data_width, m.speed_mts, m.configured_mts, m.part_number)
            for m in modules] == [
        (f"Controller0-Channel{c}", 16, 6400, 4800, None) for c in "ABCD"]


# -- dialects in small -------------------------------------------------------------------

def test_quiet_output_without_handles():
    text = ("Memory Device\n\tSize: 16 GB\n\tLocator: DIMM_A1\n\tSpeed: 4800 MT/s\n\n"
            "Memory Device\n\tSize: No Module Installed\n\tLocator: DIMM_A2\n\n"
            "Memory Device Mapped Address\n\tRange Size: 16 GB\n")
    inventory = parse_dmidecode(text)
    assert [(d.locator, d.size_bytes, d.speed_mts) for d in inventory.devices] == [
        ("DIMM_A1", 16 * GB, 4800), ("DIMM_A2", None, None)]


def test_crlf_and_non_utf8_bytes():
    raw = (b"Handle 0x0011, DMI type 17, 40 bytes\r\nMemory Device\r\n\tSize: 8192 MB\r\n"
           b"\tManufacturer: Sams\xffung\r\n\tPart Number: M471A1K43CB1-CTD\x00  \r\n"
           b"\tSpeed: 2667 MT/s\r\n\tConfigured Memory Speed: 2400 MT/s\r\n")
    (module,) = parse_dmidecode(raw).modules()
    assert (module.size_bytes, module.speed_mts, module.configured_mts) == (8 * GB, 2667, 2400)
    assert module.part_number == "M471A1K43CB1-CTD"
    assert module.manufacturer == "Sams\ufffdung"


@pytest.mark.parametrize("value, kind, expected", [
    ("4800 MT/s", None, 4800), ("1600 MHz", None, 1600), ("200 MHz (5.0 ns)", None, 200),
    ("Unknown", None, None), ("0 MT/s", None, None), ("65535 MT/s", None, None),
    ("1 MT/s", None, None), ("99 MHz", None, None), ("", None, None), (None, None, None),
    # Kits past 10000 exist (DDR5); a DDR3 or DDR4 module there is garbage.
    ("10475 MT/s", None, 10475), ("10400 MT/s", "DDR5", 10400), ("10475 MT/s", "DDR3", None),
    ("8400 MT/s", "DDR4", None), ("12800 MT/s", "DDR5", None),
    # Below the type's lowest JEDEC rate: the clock, doubled to its grade.
    ("1067 MHz", "DDR4", 2133), ("1467 MT/s", "DDR4", 2933), ("933 MT/s", "DDR4", 1867),
    ("667 MHz", "DDR3", 1333), ("333 MHz", "DDR2", 667), ("2000 MT/s", "DDR5", 4000),
    # Inside the range it is a rate: four DDR5 DIMMs at 3600, DDR3 at 800.
    ("3600 MT/s", "DDR5", 3600), ("800 MHz", "DDR3", 800), ("2133 MT/s", "LPDDR4", 2133),
    # Neither a rate nor a clock of one: DDR4 "at 400" is garbage.
    ("400 MT/s", "DDR4", None),
])
def test_parse_speed(value, kind, expected):
    assert parse_speed(value, kind) == expected


@pytest.mark.parametrize("value, expected", [
    ("16 GB", 16 * GB), ("8192 MB", 8192 * MB), ("30720 kB", 30720 * 1024), ("1 TB", 1024 * GB),
    ("No Module Installed", None), ("Not Installed", None), ("Unknown", None), ("0 MB", None),
])
def test_parse_size(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", [
    "Not Specified", "NOT AVAILABLE", "To Be Filled By O.E.M.", "Array1_PartNumber0",
    "A1_PartNum3", "ModulePartNumber01", "PartNum7", "Manufacturer0", "000000000000", "[Empty]",
    "NO DIMM", "Default string", "Unknown", "None", "  ", "--", "0x2020202020202020",
    "JEDEC ID:",
])
def test_placeholders_are_null(value):
    assert clean_text(value) is None


def test_hex_part_numbers_are_decoded():
    assert clean_text("0x" + b"HMT351R7CFR8A-H9".hex().upper()) == "HMT351R7CFR8A-H9"
    assert clean_text("CMK32GX5M2B6000C36   ") == "CMK32GX5M2B6000C36"


# -- mangled input never raises ---------------------------------------------------------------

SAMPLES = [p.read_bytes() for p in FILES[::9]]
LINES = sorted({line for raw in SAMPLES for line in raw.decode("utf-8", "replace").splitlines()})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_never_raise(data):
    inventory = parse_dmidecode(data)
    inventory.modules()


@pytest.mark.slow  # a fuzz sweep: 300 listings
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(LINES) | st.text(max_size=80), max_size=120))
def test_shuffled_real_lines_never_raise(lines):
    inventory = parse_dmidecode("\n".join(lines))
    for device in inventory.devices:
        assert device.speed_mts is None or 100 <= device.speed_mts <= 10000


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SAMPLES), st.data())
def test_cut_and_corrupted_listings_never_raise(sample, data):
    start = data.draw(st.integers(0, len(sample)))
    end = data.draw(st.integers(start, len(sample)))
    junk = data.draw(st.binary(max_size=64))
    at = data.draw(st.integers(0, end - start))
    piece = sample[start:end]
    parse_dmidecode(piece[:at] + junk + piece[at:])

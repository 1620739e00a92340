"""SPD decoding against real EEPROM dumps (tests/fixtures/spd/, sources in SOURCES.tsv).

Expected values come from the file names and their MANIFEST descriptions (JEDEC
speed, which XMP/EXPO profiles the kit ships), the module labels (Samsung 46-45-45
is DDR5-5600B) and three real decode-dimms runs.
"""

from __future__ import annotations

import errno
import os
import random
import re
from pathlib import Path

import pytest
from q3cn_doctor.facts.memory import find_spd
from q3cn_doctor.host.live import RootHost
from q3cn_doctor.parsers.spd import SpdModule, crc16, decode_spd, mts_from_tck

SPD = Path(__file__).parent / "fixtures" / "spd"
GIB = 2**30


def image(prefix: str) -> bytes:
    (path,) = SPD.glob(prefix + "-*.bin")
    return path.read_bytes()


def fixed_crc(data: bytearray, end: int) -> bytes:
    """Rewrite the base-block CRC after a test edits a covered byte."""
    crc = crc16(bytes(data[:end]))
    data[end], data[end + 1] = crc & 0xFF, crc >> 8
    return bytes(data)


# file prefix: (type, module, GiB, ECC, manufacturer, part number, JEDEC MT/s, JEDEC CL,
#               enabled profiles as (source, number, MT/s, CL-tRCD-tRP), rated MT/s, rated by)
EXPECTED = {
    "001": ("DDR5", "UDIMM", 16, False, "TeamGroup", "UD5-6000", 4800, "40-40-40",
            [("xmp", 1, 6000, "38-38-38"), ("xmp", 2, 5600, "40-40-40"),
             ("expo", 1, 6000, "38-38-38"), ("expo", 2, 5600, "40-40-40")], 6000, "xmp"),
    "002": ("DDR5", "UDIMM", 16, False, "Corsair", "CMK32GX5M2B5600Z40", 4800, "40-40-40",
            [("xmp", 1, 5600, "40-40-40"), ("expo", 1, 5600, "40-40-40")], 5600, "xmp"),
    "003": ("DDR5", "UDIMM", 16, False, "Crucial", "CT16G56C46U5.M8G1", 5600, "46-45-45",
            [("xmp", 1, 5600, "46-45-45"), ("xmp", 2, 5200, "42-42-42"),
             ("expo", 1, 5600, "46-45-45"), ("expo", 2, 5200, "42-42-42")], 5600, "jedec"),
    "004": ("DDR5", "UDIMM", 16, False, "GeIL", "CL38-48-48 D5-8000", 4800, "40-40-40",
            [("xmp", 1, 8000, "38-48-48"), ("expo", 1, 8000, "38-48-48")], 8000, "xmp"),
    "005": ("DDR5", "UDIMM", 16, False, "G.Skill", "F5-6000J3636F16G", 4800, "40-40-40",
            [("expo", 1, 6000, "36-36-36")], 6000, "expo"),
    "006": ("DDR5", "UDIMM", 16, False, "TeamGroup", "UD5-8000", 5600, "46-46-46",
            [("xmp", 1, 8000, "38-48-48"), ("xmp", 2, 6000, "38-38-38")], 8000, "xmp"),
    "007": ("DDR5", "UDIMM", 16, False, "Kingston", "KF552C40-16", 4800, "40-39-39",
            [("xmp", 1, 5200, "40-40-40"), ("xmp", 2, 4800, "38-38-38")], 5200, "xmp"),
    "008": ("DDR5", "UDIMM", 8, False, "OLOy", "D5U0852382B-K69", 4800, "40-39-39",
            [("xmp", 1, 5200, "38-40-40"), ("expo", 1, 5200, "38-40-40")], 5200, "xmp"),
    "009": ("DDR5", "UDIMM", 8, False, None, "KD58GU880-56G4600", 5600, "46-46-46",
            [], 5600, "jedec"),
    "010": ("DDR5", "UDIMM", 8, False, "Samsung", "M323R1GB4PB0-CWMOL", 5600, "46-45-45",
            [], 5600, "jedec"),
    "011": ("DDR5", "UDIMM", 16, False, "Samsung", "M323R2GA3DB0-CWMOD", 5600, "46-45-45",
            [], 5600, "jedec"),
    "012": ("DDR5", "UDIMM", 8, False, "Samsung", "M323R1GB4BB0-CQKOL", 4800, "40-39-39",
            [], 4800, "jedec"),
    "013": ("DDR5", "UDIMM", 16, True, "Samsung", "M324R2GA3BB0-CQKOD", 4800, "40-39-39",
            [], 4800, "jedec"),
    "014": ("DDR5", "SO-DIMM", 16, False, "Samsung", "M425R2GA3BB0-CWMOD", 5600, "46-45-45",
            [], 5600, "jedec"),
    "015": ("DDR5", "RDIMM", 64, True, "Micron", "MTC40F2046S1RC48BA1", 4800, "40-39-39",
            [], 4800, "jedec"),
    "016": ("DDR5", "SO-DIMM", 8, False, "Samsung", "M425R1GB4BB0-CQKOD", 4800, "40-39-39",
            [], 4800, "jedec"),
    "018": ("DDR4", "UDIMM", 8, False, "G.Skill", "F4-3200C14-8GFX", 2400, "16-16-16",
            [("xmp", 1, 3200, "14-14-14")], 3200, "xmp"),
    "019": ("DDR4", "UDIMM", 8, False, "Crucial", "BLE8G4D40BEEAK.M8FE1", 2666, "19-19-19",
            [("xmp", 1, 4000, "18-19-19")], 4000, "xmp"),
    "020": ("DDR4", "UDIMM", 8, False, "Patriot", "3200 C16 Series", 2133, "15-15-15",
            [("xmp", 1, 3200, "16-18-18")], 3200, "xmp"),
    "021": ("DDR4", "UDIMM", 16, False, "Samsung", "M378A2K43EB1-CWE", 3200, "22-22-22",
            [], 3200, "jedec"),
    "022": ("DDR4", "UDIMM", 8, False, "SK hynix", "HMA81GU6DJR8N-XN", 3200, "22-22-22",
            [], 3200, "jedec"),
    "023": ("DDR4", "UDIMM", 16, False, "Foxline", "FL2400D4U17-16G", 2400, "17-17-17",
            [], 2400, "jedec"),
    "024": ("DDR4", "RDIMM", 64, True, "Kingston", "HP32D4R2D4HCI-64", 3200, "22-22-22",
            [], 3200, "jedec"),
    "025": ("DDR4", "LRDIMM", 128, True, "Micron", "144ASQ16G72LSZ-2S9E1", 2933, "24-21-21",
            [], 2933, "jedec"),
    "026": ("DDR4", "RDIMM", 64, True, "Samsung", "M393A8G40MB2-CVF", 2933, "21-21-21",
            [], 2933, "jedec"),
    "027": ("DDR4", "RDIMM", 16, True, "SK hynix", "HMA42GR7MFR4N-TF", 2133, "15-15-15",
            [], 2133, "jedec"),
    # Re-flashed: built from 2133 parts, claims JEDEC 3200; the SPD is all we can read.
    "028": ("DDR4", "RDIMM", 16, True, None, "HOT GRIZZLY", 3200, "22-22-22", [], 3200, "jedec"),
    "029": ("DDR4", "RDIMM", 64, True, "Micron", "36ASF8G72PZ-3G2E1", 3200, "22-22-22",
            [], 3200, "jedec"),
    "030": ("DDR4", "SO-DIMM", 8, False, "Samsung", "M471A1G44AB0-CWE", 3200, "22-22-22",
            [], 3200, "jedec"),
}


@pytest.mark.parametrize("prefix", sorted(EXPECTED))
def test_real_dumps_decode_exactly(prefix):
    (memory_type, module_type, gib, ecc, maker, part, jedec_mts, jedec_timings, profiles,
     rated, rated_by) = EXPECTED[prefix]
    module = decode_spd(image(prefix))
    assert module.undecodable is None
    assert (module.memory_type, module.module_type) == (memory_type, module_type)
    assert module.capacity_bytes == gib * GIB
    assert module.ecc is ecc
    assert (module.manufacturer, module.part_number) == (maker, part)
    assert (module.jedec_mts, module.jedec.timings) == (jedec_mts, jedec_timings)
    assert [(p.source, p.number, p.speed_mts, p.timings) for p in module.profiles] == profiles
    assert (module.rated_mts(), module.rated_by()) == (rated, rated_by)


def test_every_fixture_is_covered():
    """Every copied image has an exact expectation here or in the undecodable tests."""
    prefixes = {path.name[:3] for path in SPD.glob("*.bin")}
    assert prefixes == set(EXPECTED) | {"017", "034", "035"}


def test_manufacturer_id_and_voltages_and_xmp3_names():
    teamgroup = decode_spd(image("001"))
    assert teamgroup.manufacturer_id == 0x04EF
    xmp1 = teamgroup.profiles[0]
    assert (xmp1.name, xmp1.label, xmp1.vdd_v, xmp1.tck_ps) == (
        "XMP profile 1", "TG-6000-38-38-78", 1.25, 333)
    assert teamgroup.profiles[2].name == "EXPO profile 1"
    assert decode_spd(image("004")).profiles[0].vdd_v == 1.45  # GeIL 8000 at 1.45 V
    gskill = decode_spd(image("018"))
    assert gskill.profiles[0].vdd_v == 1.35  # FlareX 3200 CL14 at 1.35 V
    assert decode_spd(image("009")).manufacturer_id == 0x1898  # not in the name table


def test_describe_is_one_line_of_evidence():
    assert decode_spd(image("005")).describe() == (
        "DDR5 UDIMM, 16 GiB, G.Skill F5-6000J3636F16G: JEDEC 4800 CL40-40-40; "
        "EXPO profile 1 6000 CL36-36-36")
    assert decode_spd(b"\xff" * 512).describe().startswith("undecodable: ")


def test_a_vendor_block_is_not_xmp():
    """HPE SmartMemory writes 'HPT' where XMP would sit: no profile, and it says so."""
    for prefix in ("024", "025", "026"):
        module = decode_spd(image(prefix))
        assert module.profiles == ()
        assert module.ignored and "not XMP" in module.ignored[0]


# -- undecodable input ---------------------------------------------------------

def test_ddr5_cut_at_512_bytes_keeps_jedec_but_rates_nothing():
    module = decode_spd(image("017"))
    assert module.undecodable.startswith("only 512 of 1024 bytes")
    assert (module.memory_type, module.module_type, module.jedec_mts) == ("DDR5", "SO-DIMM", 4800)
    assert module.part_number is None
    assert module.rated_mts() is None and module.rated_by() is None


@pytest.mark.parametrize("prefix, kind", [("034", "LPDDR4X"), ("035", "LPDDR5")])
def test_lpddr_firmware_images(prefix, kind):
    module = decode_spd(image(prefix))
    assert module.memory_type == kind
    assert module.undecodable.startswith(f"{kind} memory-down data")
    assert module.rated_mts() is None


def test_a_256_byte_eeprom_driver_read_says_to_use_ee1004():
    """decode-dimms 033: the legacy eeprom driver gives 256 bytes; JEDEC 3200 still shows."""
    module = decode_spd(image("021")[:256])
    assert module.jedec_mts == 3200
    assert "only 256 of 512 bytes" in module.undecodable and "ee1004" in module.undecodable
    assert module.part_number is None and module.rated_mts() is None


@pytest.mark.parametrize("data, reason", [
    (b"", "the image is empty"),
    (b"\xff" * 512, "every byte is 0xFF"),
    (b"\x00" * 1024, "every byte is zero"),
    (b"\x23\x11", "only 2 bytes"),
    (b"\x23\x11\x42" + bytes(509), "byte 2 is 0x42"),
    (image("018")[:100], "truncated at 100 bytes"),
    (image("012")[:300], "truncated at 300 bytes"),
    (image("021")[:200], "only 200 of 512 bytes"),
    (b"\x92\x10\x0b" + bytes(253), "DDR3 SPD is not decoded"),
])
def test_bad_input_is_undecodable_with_a_reason(data, reason):
    module = decode_spd(data)
    assert isinstance(module, SpdModule)
    assert reason in module.undecodable
    assert module.rated_mts() is None


def test_a_damaged_base_block_fails_its_crc():
    data = bytearray(image("021"))
    data[18] = 0x06  # tCKAVGmin changed without the CRC: the DIMM cannot be trusted
    module = decode_spd(bytes(data))
    assert "CRC of bytes 0-125" in module.undecodable
    assert module.jedec is None


def test_no_image_or_cut_of_one_raises():
    rng = random.Random(2024)
    blobs = [rng.randbytes(size) for size in (1, 3, 128, 256, 512, 1024)]
    for path in SPD.glob("*.bin"):
        data = path.read_bytes()
        blobs += [data[:cut] for cut in (1, 3, 64, 127, 128, 255, 256, 300, 511, 512, 640, 1023)]
    for blob in blobs:
        assert isinstance(decode_spd(blob), SpdModule)


# -- enable bits: a profile present but not enabled is not a rating ------------

def test_disabled_xmp_profiles_leave_expo():
    data = bytearray(image("001"))
    data[0x283] = 0  # XMP profile enable bits
    module = decode_spd(bytes(data))
    assert [(p.source, p.number) for p in module.profiles] == [("expo", 1), ("expo", 2)]
    assert module.ignored == ("XMP profile 1 is filled in but not enabled",
                              "XMP profile 2 is filled in but not enabled")
    assert (module.rated_mts(), module.rated_by()) == (6000, "expo")


def test_disabled_expo_profile_is_not_a_rating():
    data = bytearray(image("005"))
    data[0x345] = 0  # EXPO profile enable bits
    module = decode_spd(bytes(data))
    assert module.profiles == ()
    assert module.ignored == ("EXPO profile 1 is filled in but not enabled",)
    assert (module.rated_mts(), module.rated_by()) == (4800, "jedec")


def test_disabled_ddr4_xmp_profile_is_not_a_rating():
    data = bytearray(image("018"))
    data[386] &= ~0x01
    module = decode_spd(bytes(data))
    assert module.profiles == ()
    assert module.ignored == ("XMP profile 1 is filled in but not enabled",)
    assert (module.rated_mts(), module.rated_by()) == (2400, "jedec")


def test_xmp_profile_3_enabled_over_the_expo_block_is_ignored():
    data = bytearray(image("001"))
    data[0x283] |= 0x04
    module = decode_spd(bytes(data))
    assert len(module.profiles) == 4
    assert module.ignored == ("XMP profile 3 is enabled but its slot holds the EXPO block",)


def test_enabled_profile_with_no_speed_is_ignored():
    data = bytearray(image("006"))
    data[0x305:0x307] = b"\x00\x00"  # XMP profile 2 cycle time
    module = decode_spd(bytes(data))
    assert [(p.source, p.number) for p in module.profiles] == [("xmp", 1)]
    assert module.ignored == ("XMP profile 2 is enabled but its cycle time (0 ps) is no "
                              "memory speed",)


def test_unknown_xmp_or_expo_versions_are_not_read():
    data = bytearray(image("001"))
    data[0x282] = 0x20  # an XMP 2 header in a DDR5 image
    data[0x344] = 0x20  # an EXPO revision we do not know
    module = decode_spd(bytes(data))
    assert module.profiles == ()
    assert len(module.ignored) == 2
    assert (module.rated_mts(), module.rated_by()) == (4800, "jedec")


def test_a_reflashed_base_block_with_a_valid_crc_decodes_as_written():
    """The CRC guards against damage, not lies (028 shows a real re-flash)."""
    data = bytearray(image("022"))
    data[18], data[125] = 0x06, 0x00  # 750 ps: DDR4-2666
    module = decode_spd(fixed_crc(data, 126))
    assert module.undecodable is None and module.jedec_mts == 2666


# -- speed grades ---------------------------------------------------------------

@pytest.mark.parametrize("tck, mts", [
    (938, 2133), (937, 2133), (833, 2400), (750, 2666), (682, 2933), (625, 3200),
    (577, 3466), (555, 3600), (536, 3733), (500, 4000), (469, 4266), (416, 4800),
    (384, 5200), (357, 5600), (333, 6000), (312, 6400), (294, 6800), (277, 7200),
    (263, 7600), (250, 8000), (234, 8533),
])
def test_speed_grade_from_cycle_time(tck, mts):
    assert mts_from_tck(tck) == mts


def decode_dimms_sections(name: str) -> list[tuple[float, int]]:
    """(tCKmin in ns, 'Maximum module speed' in MT/s) of each module decode-dimms printed."""
    text = (SPD / name).read_text()
    speeds = [int(m) for m in re.findall(r"^Maximum module speed\s+(\d+) MT/s", text, re.M)]
    tcks = [float(m) for m in re.findall(r"^Minimum Cycle Time \(tCKmin\)\s+([\d.]+) ns",
                                         text, re.M)]
    assert speeds and len(speeds) == len(tcks)
    return list(zip(tcks, speeds))


@pytest.mark.parametrize("name", [
    "031-ddr4-gloway-tac4u3200e16081c-x4-jedec-2400.decode-dimms.txt",
    "032-ddr4-smart-sms4wec8c1k0446fcg-sodimm-3200.decode-dimms.txt",
    "033-ddr4-eeprom-driver-256-bytes-3200.decode-dimms.txt",
])
def test_speed_grades_agree_with_decode_dimms(name):
    for tck_ns, speed in decode_dimms_sections(name):
        assert mts_from_tck(round(tck_ns * 1000)) == speed


def test_crc_matches_decode_dimms_convention():
    """decode-dimms 032 prints 'EEPROM CRC of bytes 0-125 OK'; the stored CRC is ours."""
    for prefix in ("018", "021", "030"):
        data = image(prefix)
        assert crc16(data[:126]) == data[126] | data[127] << 8


# -- find_spd through a host ------------------------------------------------------

def put(root: Path, path: str, data: bytes) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def test_find_spd_reads_every_driver_through_the_host(tmp_path):
    put(tmp_path, "/sys/bus/i2c/drivers/ee1004/0-0050/eeprom", image("018"))
    put(tmp_path, "/sys/bus/i2c/drivers/ee1004/0-0051/eeprom", image("018"))
    put(tmp_path, "/sys/bus/i2c/drivers/spd5118/1-0050/eeprom", image("005"))
    put(tmp_path, "/sys/bus/i2c/drivers/eeprom/0-0052/eeprom", image("021")[:256])
    put(tmp_path, "/sys/bus/i2c/drivers/ee1004/0-0051/name", b"ee1004\n")  # not an eeprom
    host = RootHost(str(tmp_path))
    host.faults["/sys/bus/i2c/drivers/ee1004/0-0051/eeprom"] = errno.EACCES
    with host.tracing() as trace:
        found = find_spd(host)
    assert [path for path, _ in found] == [
        "/sys/bus/i2c/drivers/ee1004/0-0050/eeprom",
        "/sys/bus/i2c/drivers/ee1004/0-0051/eeprom",
        "/sys/bus/i2c/drivers/spd5118/1-0050/eeprom",
        "/sys/bus/i2c/drivers/eeprom/0-0052/eeprom",
    ]
    modules = [module for _, module in found]
    assert (modules[0].rated_mts(), modules[0].rated_by()) == (3200, "xmp")
    assert modules[1].undecodable == "cannot read it: Permission denied (run as root)"
    assert (modules[2].rated_mts(), modules[2].rated_by()) == (6000, "expo")
    assert "ee1004" in modules[3].undecodable and modules[3].jedec_mts == 3200
    assert "/sys/bus/i2c/drivers/spd5118/1-0050/eeprom" in trace


def test_find_spd_on_a_machine_without_spd_drivers(tmp_path):
    os.makedirs(tmp_path / "sys" / "bus" / "i2c" / "drivers")
    assert find_spd(RootHost(str(tmp_path))) == []

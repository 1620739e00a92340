"""The udev fallback: the SMBIOS properties systemd's dmi_memory_id exports to every user.

tests/fixtures/udev/ holds the three real sets in the corpus (SOURCES.tsv names them):
what ``udevadm info --query=property --path=/sys/devices/virtual/dmi/id`` shows a user
without root. The values asserted are the files' own lines.
"""

from __future__ import annotations

import pytest
from conftest import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st
from q3cn_doctor.parsers.dmidecode import parse_udev_properties

UDEV = FIXTURES / "udev"
GIB = 1024**3


def parse(prefix: str):
    (path,) = UDEV.glob(prefix + "-*.txt")
    return parse_udev_properties(path.read_text())


def test_thinkcentre_three_ddr4_dimms_and_an_empty_slot():
    inventory = parse("001")
    assert len(inventory.slots()) == 4  # MEMORY_DEVICE_0..3
    assert [(m.locator, m.bank_locator, m.size_bytes, m.type, m.speed_mts, m.configured_mts,
             m.part_number, m.manufacturer, m.rank) for m in inventory.modules()] == [
        ("ChannelA-DIMM0", "BANK 0", 8 * GIB, "DDR4", 2667, 2400, "M378A1K43CB2-CTD",
         "Samsung", 1),
        ("ChannelA-DIMM1", "BANK 1", 8 * GIB, "DDR4", 2400, 2400, "BLT8G4D26AFTA.16FBD",
         "859B", 2),
        ("ChannelB-DIMM1", "BANK 3", 8 * GIB, "DDR4", 2400, 2400, "BLT8G4D26AFTA.16FBD",
         "859B", 2),
    ]
    empty = inventory.slots()[2]  # MEMORY_DEVICE_2_PRESENT=0
    assert (empty.locator, empty.installed, empty.part_number) == ("ChannelB-DIMM0", False, None)
    (array,) = inventory.arrays
    assert (array.devices, array.max_capacity_bytes) == (4, 64 * GIB)


def test_thinkpad_without_part_numbers():
    inventory = parse("002")
    assert [(m.locator, m.size_bytes, m.form_factor, m.speed_mts, m.configured_mts,
             m.part_number, m.manufacturer) for m in inventory.modules()] == [
        ("ChannelA-DIMM0", 4 * GIB, "SODIMM", 2400, 2400, None, None),  # MANUFACTURER=0000
        ("ChannelB-DIMM0", 4 * GIB, "SODIMM", 2400, 2400, None, None),
    ]


def test_z600_two_arrays_empty_slots_and_a_rom_that_is_no_module():
    inventory = parse("003")
    assert len(inventory.devices) == 7  # MEMORY_DEVICE_0..6
    rom = inventory.devices[6]
    assert (rom.locator, rom.type, rom.non_volatile) == ("SYSTEM ROM", "Flash", True)
    assert len(inventory.slots()) == 6
    modules = inventory.modules()
    assert [m.locator for m in modules] == ["CPU0 DIMM1", "CPU0 DIMM2", "CPU1 DIMM1",
                                            "CPU1 DIMM2"]
    assert {(m.size_bytes, m.type, m.speed_mts, m.configured_mts, m.part_number, m.data_width)
            for m in modules} == {(8 * GIB, "DDR3", 1600, None, "HMT41GU7AFR8C-PB", 64)}
    assert [a.error_correction for a in inventory.arrays] == ["Multi-bit ECC", "Multi-bit ECC"]


def test_udevadm_and_database_spellings():
    """`udevadm info` prefixes "E: ", the database file "E:", --export quotes values."""
    plain = "MEMORY_DEVICE_0_SIZE=17179869184\nMEMORY_DEVICE_0_SPEED_MTS=4800\n"
    prefixed = "P: /devices/virtual/dmi/id\nE: MEMORY_DEVICE_0_SIZE=17179869184\n" \
               "E: MEMORY_DEVICE_0_SPEED_MTS=4800\nE: MEMORY_DEVICE_0_PART_NUMBER=UD5-6000\n"
    database = "E:MEMORY_DEVICE_0_SIZE=17179869184\nE:MEMORY_DEVICE_0_SPEED_MTS=4800\n"
    exported = "MEMORY_DEVICE_0_SIZE='17179869184'\nMEMORY_DEVICE_0_SPEED_MTS='4800'\n"
    for text in (plain, prefixed, database, exported):
        (module,) = parse_udev_properties(text).modules()
        assert (module.size_bytes, module.speed_mts) == (16 * GIB, 4800)
    assert parse_udev_properties(prefixed).modules()[0].part_number == "UD5-6000"


def test_garbage_and_junk_lines():
    text = ("MEMORY_DEVICE_0_SIZE=8589934592\nMEMORY_DEVICE_0_SPEED_MTS=65535\n"
            "MEMORY_DEVICE_0_CONFIGURED_SPEED_MTS=0\nMEMORY_DEVICE_x_SIZE=1\nnot a property\n"
            "MEMORY_DEVICE_1_SIZE=abc\n=\n")
    inventory = parse_udev_properties(text)
    (module,) = inventory.modules()
    assert (module.speed_mts, module.configured_mts) == (None, None)
    assert len(inventory.devices) == 2


LINES = sorted({line for path in UDEV.glob("*.txt") for line in path.read_text().splitlines()})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(LINES) | st.text(max_size=60), max_size=80))
def test_mangled_properties_never_raise(lines):
    inventory = parse_udev_properties("\n".join(lines))
    for device in inventory.devices:
        assert device.speed_mts is None or 100 <= device.speed_mts <= 10000


def test_digits_int_cannot_read_are_no_number():
    """'²' is a digit to str.isdigit() but not to int(): the size is unknown, no ValueError."""
    inventory = parse_udev_properties("MEMORY_DEVICE_0_SIZE=\u00b2\nMEMORY_DEVICE_0_PRESENT=1\n"
                                      "MEMORY_DEVICE_0_SPEED_MTS=4\u00b2\n")
    (device,) = inventory.devices
    assert (device.size_bytes, device.speed_mts, device.installed) == (None, None, False)


KEYS = sorted({line.split("=", 1)[0] for line in LINES if "=" in line})


@pytest.mark.slow  # a fuzz sweep: 300 property lists
@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KEYS), st.text(max_size=12)), max_size=40))
def test_real_keys_with_any_values_never_raise(pairs):
    parse_udev_properties("\n".join(f"{key}={value}" for key, value in pairs)).modules()

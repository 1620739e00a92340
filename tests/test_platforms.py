"""The platform table (parsers/platforms.py) and the memory-type ranges (memtypes.py).

The CPU names are the SMBIOS processor versions of real listings (tests/fixtures/
dmidecode-world/ and the corpus); the limits are the makers' specifications, named
in the table's comments.
"""

from __future__ import annotations

import pytest
from q3cn_doctor.facts.memory import MemoryModule
from q3cn_doctor.parsers.memtypes import data_rate, family, is_clock
from q3cn_doctor.parsers.platforms import platform_of


@pytest.mark.parametrize("model, name, channels, lpddr, ddr", [
    ("Intel(R) Core(TM) Ultra 7 155H", "Meteor Lake", 2, {"LPDDR5": 7467}, {"DDR5": 5600}),
    ("Intel(R) Core(TM) Ultra 5 228V", "Lunar Lake", 2, {"LPDDR5": 8533}, {}),
    ("Intel(R) N100", "Alder Lake-N", 1, {"LPDDR5": 4800, "LPDDR4": 4267},
     {"DDR5": 4800, "DDR4": 3200}),
    ("Intel(R) Core(TM) i3-N305", "Alder Lake-N", 1, {"LPDDR5": 4800, "LPDDR4": 4267},
     {"DDR5": 4800, "DDR4": 3200}),
    ("12th Gen Intel(R) Core(TM) i5-1250P", "Alder Lake-P/U/H", 2,
     {"LPDDR5": 5200, "LPDDR4": 4267}, {"DDR5": 4800, "DDR4": 3200}),
    ("13th Gen Intel(R) Core(TM) i5-1345U", "Raptor Lake-P/U", 2,
     {"LPDDR5": 6400, "LPDDR4": 4267}, {"DDR5": 5200, "DDR4": 3200}),
    ("AMD Ryzen AI 9 HX 370 w/ Radeon 890M", "Strix Point", 2, {"LPDDR5": 7500},
     {"DDR5": 5600}),
    ("AMD Ryzen 7 7840U w/ Radeon 780M Graphics", "Phoenix/Hawk Point", 2, {"LPDDR5": 7500},
     {"DDR5": 5600}),
    ("AMD Custom APU 0405", "Van Gogh (Steam Deck)", 1, {"LPDDR5": 5500}, {}),
    ("Snapdragon(R) X Elite - X1E78100 - Qualcomm(R) Oryon(TM) CPU", "Snapdragon X", 2,
     {"LPDDR5": 8448}, {}),
    ("AMD EPYC 9454P 48-Core Processor", "EPYC 9004 (Genoa)", 12, {}, {"DDR5": 4800}),
    ("Intel(R) Xeon(R) 6980P", "Xeon 6 (Granite Rapids-AP)", 12, {},
     {"DDR5": 6400, "MRDIMM": 8800}),
    ("Intel(R) Xeon(R) w5-3433", "Xeon W-3400", 8, {}, {"DDR5": 4400}),
    ("Intel(R) Xeon(R) w9-3495X", "Xeon W-3400/3500", 8, {}, {"DDR5": 4800}),
    ("AMD Ryzen Threadripper 7960X 24-Cores", "Threadripper 7000", 4, {}, {"DDR5": 5200}),
    ("AMD Ryzen 7 7800X3D 8-Core Processor", "Ryzen 7000/8000", 2, {}, {"DDR5": 5200}),
    ("AMD Ryzen 9 9900X 12-Core Processor", "Ryzen 9000", 2, {}, {"DDR5": 5600}),
])
def test_platforms_of_real_cpu_names(model, name, channels, lpddr, ddr):
    platform = platform_of(model)
    assert (platform.name, platform.channels, platform.lpddr, platform.ddr) == (
        name, channels, lpddr, ddr)


@pytest.mark.parametrize("model", [None, "", "Intel(R) Celeron(R) N4020 CPU @ 1.10GHz",
                                   "AMD Ryzen 9 7940HX with Radeon Graphics", "QEMU Virtual CPU"])
def test_unknown_cpus_have_no_platform(model):
    assert platform_of(model) is None


def test_memory_type_families_and_clocks():
    assert [family(t) for t in ("DDR5", "LPDDR4X", "DDR2 FB-DIMM", "<OUT OF SPEC>", None)] == [
        "DDR5", "LPDDR4", "DDR2", None, None]
    assert is_clock("DDR4", 1067) and not is_clock("DDR5", 3600) and not is_clock(None, 1067)
    # MRDIMM gen 2 runs at 12800; a DDR5 UDIMM printing it is Gigabyte's firmware garbage.
    assert (data_rate("MRDIMM", 12800), data_rate("DDR5", 12800)) == (12800, None)


def module(**fields) -> MemoryModule:
    base = dict(locator="Controller0-ChannelA-DIMM0", bank_locator=None, size_bytes=2**34,
                type="LPDDR5", form_factor="Row Of Chips", rank=None, data_width=16,
                speed_mts=7500, configured_mts=7467, manufacturer=None, part_number=None)
    return MemoryModule(**dict(base, **fields))


def test_lpcamm2_is_a_module_not_soldered():
    """SMBIOS 3.7 form factor 0x11 is CAMM (dmidecode 3.6 prints "CAMM", older ones
    <OUT OF SPEC>): LPDDR on a module you can swap, not on the board."""
    assert module().soldered and module(form_factor="Other").soldered
    assert not module(form_factor="CAMM").soldered
    assert not module(form_factor="<OUT OF SPEC>").soldered
    assert not module(type="DDR5", form_factor="DIMM").soldered

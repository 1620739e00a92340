"""The platform table (parsers/platforms.py) and the memory-type ranges (memtypes.py).

The CPU names are the SMBIOS processor versions of real listings (tests/fixtures/
dmidecode-world/ and the corpus); the limits are the makers' specifications, named
in the table's comments.
"""

from __future__ import annotations

import re

import pytest
from conftest import FIXTURES
from q3cn_doctor.facts.memory import MemoryModule
from q3cn_doctor.parsers.memtypes import configured_rate, data_rate, family
from q3cn_doctor.parsers.platforms import _TABLE, literal_prefix, platform_of
from test_memory_world import cpu_model


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
    ("AMD Custom APU 0405", "Van Gogh (Steam Deck)", 2, {"LPDDR5": 5500}, {}),  # 4 x 32 bits
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
    # Model names of the linuxhw/DMI listings drawn at random (test_memory_world, 162-172).
    ("AMD Ryzen 9 6900HX with Radeon Graphics", "Rembrandt", 2, {"LPDDR5": 6400},
     {"DDR5": 4800}),
    ("AMD Ryzen 7 5800H with Radeon Graphics", "Cezanne-H", 2, {"LPDDR4": 4266},
     {"DDR4": 3200}),
    ("Intel(R) Core(TM) i3-7020U CPU @ 2.30GHz", "Kaby Lake-U", 2, {}, {"DDR4": 2133}),
    ("Intel(R) Core(TM) i7-6700HQ CPU @ 2.60GHz", "Skylake", 2, {}, {"DDR4": 2133}),
    ("Intel(R) Core(TM) i7-8565U CPU @ 1.80GHz", "Kaby Lake-R/Whiskey Lake/Coffee Lake-U", 2,
     {}, {"DDR4": 2400}),
    ("Intel(R) Core(TM) i3-8109U CPU @ 3.00GHz", "Kaby Lake-R/Whiskey Lake/Coffee Lake-U", 2,
     {}, {"DDR4": 2400}),
    ("Intel(R) Core(TM) i5-10400 CPU @ 2.90GHz", "Comet Lake-S", 2, {}, {"DDR4": 2666}),
    ("Intel(R) Core(TM) i9-10980HK CPU @ 2.40GHz", "Comet Lake-H", 2, {}, {"DDR4": 2933}),
    ("11th Gen Intel(R) Core(TM) i7-11800H @ 2.30GHz", "Tiger Lake-H", 2, {}, {"DDR4": 3200}),
    ("Intel(R) Celeron(R) CPU  J1900  @ 1.99GHz", "Bay Trail-D", 2, {}, {"DDR3": 1333}),
    ("Intel(R) Xeon(R) Silver 4410Y", "Sapphire Rapids", 8, {}, {"DDR5": 4000}),
    # ...and of a second sweep's servers, workstations and laptops (162-180).
    ("Intel(R) Xeon(R) Gold 6430", "Sapphire Rapids", 8, {}, {"DDR5": 4400}),
    ("Intel(R) Xeon(R) Silver 4310 CPU @ 2.10GHz", "Ice Lake-SP", 8, {}, {"DDR4": 2666}),
    ("Intel(R) Xeon(R) Gold 5317 CPU @ 3.00GHz", "Ice Lake-SP", 8, {}, {"DDR4": 2933}),
    ("Intel(R) Xeon(R) CPU E5-2640 0 @ 2.50GHz", "Sandy Bridge-EP", 4, {}, {}),
    ("Intel(R) Xeon(R) W-3235 CPU @ 3.30GHz", "Cascade Lake-W", 6, {}, {"DDR4": 2933}),
    ("Intel(R) Xeon(R) W-2223 CPU @ 3.60GHz", "Cascade Lake-W", 4, {}, {"DDR4": 2666}),
    ("Intel(R) Xeon(R) W-2135 CPU @ 3.70GHz", "Skylake-W", 4, {}, {"DDR4": 2666}),
    ("Intel(R) Xeon(R) E-2176M  CPU @ 2.70GHz", "Coffee Lake (Xeon E)", 2, {}, {"DDR4": 2666}),
    ("Intel(R) Core(TM) i9-10900X CPU @ 3.70GHz", "Cascade Lake-X", 4, {}, {"DDR4": 2933}),
    ("Intel(R) Core(TM) i9-7900X CPU @ 3.30GHz", "Skylake-X", 4, {}, {"DDR4": 2666}),
    ("AMD Ryzen 9 7945HX with Radeon Graphics", "Dragon Range", 2, {}, {"DDR5": 5200}),
    ("AMD Ryzen 7 8845HS w/ Radeon 780M Graphics", "Phoenix/Hawk Point", 2, {"LPDDR5": 7500},
     {"DDR5": 5600}),
    ("AMD EPYC 4244P 6-Core Processor", "EPYC 4004", 2, {}, {"DDR5": 5200}),
])
def test_platforms_of_real_cpu_names(model, name, channels, lpddr, ddr):
    platform = platform_of(model)
    assert (platform.name, platform.channels, platform.lpddr, platform.ddr) == (
        name, channels, lpddr, ddr)


@pytest.mark.parametrize("model", [None, "", "Intel(R) Celeron(R) N4020 CPU @ 1.10GHz",
                                   "AMD Ryzen 9 7940HX with Radeon Graphics", "QEMU Virtual CPU",
                                   # Broadwell-E, four channels, beside the Skylakes
                                   "Intel(R) Core(TM) i7-6800K CPU @ 3.40GHz"])
def test_unknown_cpus_have_no_platform(model):
    assert platform_of(model) is None


def test_literal_prefixes_are_text_every_match_begins_with():
    assert [literal_prefix(p) for p in (
        r"Core\(TM\) Ultra [579] 2\d\dV", r"Celeron\(R\) CPU G16\d\dT?\b",
        r"AMD A(?:12|10|9)-9", r"EPYC 9\d\d5", r"Ryzen AI Max",
        r"\b(?:Core\(TM\) i3-)?N(?:50|97)\b", r"Celeron\(R\) CPU\s+J1[89]00|Pentium",
        r"Snapdragon\(R\) X|X1[EP]\d{2}100", r"AB?C", r"AB*C", r"AB+C", r"AB{2}C",
        r"A(?:B|C)D", r"A[|]B")] == [
        "Core(TM) Ultra ", "Celeron(R) CPU G16", "AMD A", "EPYC 9", "Ryzen AI Max", "", "",
        "", "A", "A", "A", "A", "A", "A"]


def test_the_prefix_test_never_changes_the_platform():
    """Every CPU name the tests know (the rows above, the dmidecode-world listings and the
    fixture hosts' cpuinfo) gets what trying every pattern in order gives."""
    names = [row[0] for row in test_platforms_of_real_cpu_names.pytestmark[0].args[1]]
    names += [cpu_model(path.read_text(errors="replace"))
              for path in (FIXTURES / "dmidecode-world").glob("*.txt")]
    names += [line.split(":", 1)[1].strip()
              for cpuinfo in (FIXTURES / "hosts").glob("*/fs/proc/cpuinfo")
              for line in cpuinfo.read_text(errors="replace").splitlines()
              if line.startswith("model name")]
    names = sorted({name for name in names if name})
    assert len(names) > 60

    def every_pattern(name: str):
        return next((platform for pattern, platform in _TABLE if re.search(pattern, name)),
                    None)

    assert [platform_of(name) for name in names] == [every_pattern(name) for name in names]
    assert sum(platform_of(name) is not None for name in names) > 40


def test_memory_type_families_and_clocks():
    assert [family(t) for t in ("DDR5", "LPDDR4X", "DDR2 FB-DIMM", "<OUT OF SPEC>", None)] == [
        "DDR5", "LPDDR4", "DDR2", None, None]
    assert (data_rate("DDR4", 1067), data_rate("DDR5", 3600), data_rate(None, 1067)) == (
        2133, 3600, 1067)
    # At the lowest rate, half the module's own Speed is a clock in the years of clocks...
    assert (configured_rate("DDR3", 800, 1600), configured_rate("DDR4", 1600, 3200),
            configured_rate("DDR4", 1067, 2133)) == (1600, 3200, 2133)
    # ...not where the rate is plausible as printed: DDR5 trains at 3200, 1333 is not half
    # of 2133, and a module whose own Speed is unknown tells nothing.
    assert (configured_rate("DDR5", 3200, 6400), configured_rate("DDR3", 800, 2133),
            configured_rate("DDR3", 800, None)) == (3200, 800, 800)
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

"""What data rates each memory type can have, and telling a printed clock from a rate.

SMBIOS says ``Speed`` and ``Configured Memory Speed`` are in MT/s (MHz before
SMBIOS 3.1), yet some firmware writes the memory clock there, half the data rate:
old AMD AGESA prints 1067 for DDR4-2133, HP laptops 933 for DDR4-1866. Whether a
number is a clock or a rate follows from the memory type: JEDEC defines no DDR4
data rate below 1600, so a DDR4 module "at 1067" is one clocked at 1067 MHz, at
2133 MT/s; 3600 on DDR5 is inside DDR5's range (four DIMMs often train there), so it
is a data rate. A value neither it nor its double can be, for that type, is firmware
garbage (a DDR4 module "at 8400", a DDR5 UDIMM "at 12800").

Ranges, lowest and highest JEDEC data rate, then the most any module of the type
is run at (overclocked kits included):
  DDR 200-400 (JESD79), DDR2 400-1066 (JESD79-2), DDR3 800-2133 (JESD79-3),
  DDR4 1600-3200 (JESD79-4), DDR5 3200-8800 (JESD79-5C; retail kits to about
  10000, CUDIMM records past 12000 with cooling), MRDIMM 8000-12800 (JEDEC MRDIMM
  gen 1 8800, gen 2 12800), LPDDR3 1333-2133 (JESD209-3), LPDDR4/4X 1600-4266
  (JESD209-4), LPDDR5/5X 3200-10667 (JESD209-5, LPDDR5X to 10.7 Gbps).
"""

from __future__ import annotations

from typing import NamedTuple


class TypeRange(NamedTuple):
    lowest: int  # the lowest JEDEC data rate: a value below it is a clock, if doubling fits
    highest: int  # the highest JEDEC data rate
    most: int  # above this no module of the type runs: firmware garbage


RANGES = {
    "SDRAM": TypeRange(66, 133, 200),  # single data rate: the clock is the rate
    "DDR": TypeRange(200, 400, 600),
    "DDR2": TypeRange(400, 1066, 1300),
    "DDR3": TypeRange(800, 2133, 3300),
    "DDR4": TypeRange(1600, 3200, 6000),
    "DDR5": TypeRange(3200, 8800, 12000),
    "MRDIMM": TypeRange(8000, 12800, 12800),
    "LPDDR3": TypeRange(1333, 2133, 2400),
    "LPDDR4": TypeRange(1600, 4266, 4400),
    "LPDDR5": TypeRange(3200, 10667, 10700),
}
ANY = TypeRange(100, 12800, 12800)  # a type the listing does not name: no clock rule
_ALIASES = {"DDR2 FB-DIMM": "DDR2", "DDR3L": "DDR3", "LPDDR4X": "LPDDR4", "LPDDR5X": "LPDDR5",
            "DDR4E": "DDR4"}


def family(memory_type: str | None) -> str | None:
    """The range key of a printed type: LPDDR4X is LPDDR4, DDR2 FB-DIMM is DDR2; None for
    types with no range here (<OUT OF SPEC>, Other, DRAM)."""
    name = (memory_type or "").strip().upper()
    name = _ALIASES.get(name, name)
    return name if name in RANGES else None


def snap(mts: int) -> int:
    """A computed rate to its grade as dmidecode prints it: 2 x 1067 = 2134 is 2133,
    2 x 933 = 1866 is 1867 (DDR4-1866), 2 x 333 is 667."""
    if 30 <= mts % 100 < 40 or 60 <= mts % 100 < 70:
        return round(round(mts * 3 / 200) * 200 / 3)
    return mts


def data_rate(memory_type: str | None, printed: int | None) -> int | None:
    """The data rate in MT/s of a printed speed, for that memory type; None where the
    value can be neither a rate nor a clock of it."""
    if not printed:
        return None
    known = family(memory_type)
    limits = RANGES.get(known or "", ANY)
    if known and known != "SDRAM" and printed < limits.lowest:
        doubled = snap(printed * 2)
        return doubled if limits.lowest <= doubled <= limits.most else None
    return printed if limits.lowest <= printed <= limits.most else None


# The types of the years when firmware wrote the clock (SMBIOS before 3.1): for them the
# lowest JEDEC rate is also the clock of twice it, and which one is meant is told by the
# module's own Speed line beside it.
_CLOCK_ERA = ("DDR2", "DDR3", "DDR4")


def configured_rate(memory_type: str | None, printed: int | None,
                    speed_printed: int | None) -> int | None:
    """The configured data rate of a printed ``Configured Memory Speed``. As ``data_rate``,
    but a value at the type's lowest rate that is exactly half the module's own printed
    Speed is its clock: old AGESA prints 800 for DDR3-1600 running at 1600, while no
    board runs a DDR3-1600 module at DDR3-800 unless told to."""
    known = family(memory_type)
    if (known in _CLOCK_ERA and printed == RANGES[known].lowest and speed_printed
            and snap(printed * 2) == speed_printed):
        return speed_printed
    return data_rate(memory_type, printed)

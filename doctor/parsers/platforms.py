"""What a CPU's memory controller supports, from its model name: the memory channels per
socket and the fastest memory it is specified for.

Soldered LPDDR runs at what the platform sets, not at the chips' grade: a Meteor Lake
laptop with LPDDR5X-8533 chips runs them at 7467, the fastest Meteor Lake supports,
and that is no fault. JEDEC modules are judged the same way: a Xeon w5-3433 runs
DDR5-4800 RDIMMs at its 4400. And a server whose locators name slots, not channels,
can still be placed when it has one slot per channel (a 12-channel EPYC with 12 slots).

The speeds are the makers' specifications for one module per channel (Intel ARK, AMD
product pages); more modules per channel run slower, which the checks say apart.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Platform(NamedTuple):
    name: str
    channels: int | None  # 64-bit memory channels per socket
    lpddr: dict[str, int]  # soldered (or LPCAMM2) LPDDR: family -> fastest MT/s
    ddr: dict[str, int]  # modules: family -> fastest MT/s with one module per channel


def _p(name: str, channels: int | None, lpddr: dict[str, int] | None = None,
       ddr: dict[str, int] | None = None) -> Platform:
    return Platform(name, channels, lpddr or {}, ddr or {})


# (pattern on the model name, platform); first match wins. Sources in each comment.
_TABLE = [
    # Intel laptops (ark.intel.com "Memory Types").
    (r"Core\(TM\) Ultra [579] 2\d\dV", _p("Lunar Lake", 2, {"LPDDR5": 8533})),
    (r"Core\(TM\) Ultra [579] 2\d\dH\b", _p("Arrow Lake-H", 2, {"LPDDR5": 8400},
                                            {"DDR5": 6400})),
    (r"Core\(TM\) Ultra [579] 2\d\dU\b", _p("Arrow Lake-U", 2, {"LPDDR5": 7467},
                                            {"DDR5": 5600})),
    (r"Core\(TM\) Ultra [579] 2\d\d[KF]*\b", _p("Arrow Lake-S", 2, {}, {"DDR5": 6400})),
    (r"Core\(TM\) Ultra [579] 1\d\d[HU]\b", _p("Meteor Lake", 2, {"LPDDR5": 7467},
                                               {"DDR5": 5600})),
    (r"Core\(TM\) (?:i[3579]-1[34]\d\d[0-9]?[PU]|[357] 1[25]\dU)\b",
     _p("Raptor Lake-P/U", 2, {"LPDDR5": 6400, "LPDDR4": 4267}, {"DDR5": 5200,
                                                                  "DDR4": 3200})),
    (r"Core\(TM\) i[3579]-1[34]\d{3}H\b", _p("Raptor Lake-H", 2, {"LPDDR5": 6400},
                                             {"DDR5": 5200, "DDR4": 3200})),
    (r"Core\(TM\) i[3579]-12\d\d\d?[PUH]\b", _p("Alder Lake-P/U/H", 2,
                                           {"LPDDR5": 5200, "LPDDR4": 4267},
                                           {"DDR5": 4800, "DDR4": 3200})),
    (r"\b(?:Core\(TM\) i3-)?N(?:50|97|100|150|200|250|300|305|355)\b",
     _p("Alder Lake-N", 1, {"LPDDR5": 4800, "LPDDR4": 4267}, {"DDR5": 4800,
                                                              "DDR4": 3200})),
    (r"Core\(TM\) i[357]-11\d\dG[47]\b", _p("Tiger Lake", 2, {"LPDDR4": 4267,
                                                              "LPDDR5": 5400},
                                            {"DDR4": 3200})),
    (r"Core\(TM\) i[357]-10\d\dG[147]\b", _p("Ice Lake", 2, {"LPDDR4": 3733},
                                            {"DDR4": 3200})),
    # Intel 6th-11th gen (ark.intel.com "Memory Types"; the laptop parts' LPDDR3 left out).
    (r"Core\(TM\) i[3579]-11\d\d0H\b", _p("Tiger Lake-H", 2, {}, {"DDR4": 3200})),
    (r"Core\(TM\) i[3579]-11\d{3}[KFT]*\b", _p("Rocket Lake", 2, {}, {"DDR4": 3200})),
    (r"Core\(TM\) i[3579]-10\d{3}U\b", _p("Comet Lake-U", 2, {}, {"DDR4": 2666})),
    (r"Core\(TM\) i[3579]-10\d{3}HK?\b", _p("Comet Lake-H", 2, {}, {"DDR4": 2933})),
    (r"Core\(TM\) i[79]-10\d{3}[KFT]*\b", _p("Comet Lake-S", 2, {}, {"DDR4": 2933})),
    (r"Core\(TM\) i[35]-10\d{3}[KFT]*\b", _p("Comet Lake-S", 2, {}, {"DDR4": 2666})),
    (r"Core\(TM\) i[357]-8\d{3}U\b", _p("Kaby Lake-R/Whiskey Lake/Coffee Lake-U", 2, {},
                                        {"DDR4": 2400})),
    (r"Core\(TM\) i[3579]-[89]\d{3}H[K]?\b", _p("Coffee Lake-H", 2, {}, {"DDR4": 2666})),
    (r"Core\(TM\) i3-[89]\d{3}[KFT]*\b", _p("Coffee Lake-S", 2, {}, {"DDR4": 2400})),
    (r"Core\(TM\) i[579]-[89]\d{3}[KFT]*\b", _p("Coffee Lake-S", 2, {}, {"DDR4": 2666})),
    (r"Core\(TM\) i[357]-7\d{3}U\b", _p("Kaby Lake-U", 2, {}, {"DDR4": 2133})),
    (r"Core\(TM\) i[357]-7\d{3}(?:[KT]|H[QK]?)?\b", _p("Kaby Lake", 2, {}, {"DDR4": 2400})),
    # i7-6800K, 6850K and 6900K are Broadwell-E (four channels), not Skylake.
    (r"Core\(TM\) i[357]-6(?!8[05]0K|900K)\d{3}(?:[UKT]|H[QK]?)?\b",
     _p("Skylake", 2, {}, {"DDR4": 2133})),
    (r"Celeron\(R\) CPU\s+J1[89]00|Pentium\(R\) CPU\s+J2900",
     _p("Bay Trail-D", 2, {}, {"DDR3": 1333})),
    # Intel desktops, workstations and their HX laptop parts (13th gen HX: DDR5-4800).
    (r"Core\(TM\) i[3579]-13\d{3}HX\b", _p("Raptor Lake-HX", 2, {}, {"DDR5": 4800,
                                                                     "DDR4": 3200})),
    (r"Core\(TM\) i[3579]-14\d{3}HX\b", _p("Raptor Lake-HX Refresh", 2, {},
                                             {"DDR5": 5600, "DDR4": 3200})),
    (r"Core\(TM\) i[3579]-1[34]\d{3}", _p("Raptor Lake", 2, {}, {"DDR5": 5600,
                                                                 "DDR4": 3200})),
    (r"Core\(TM\) i[3579]-12\d{3}", _p("Alder Lake", 2, {}, {"DDR5": 4800, "DDR4": 3200})),
    # Xeon W: w5-3433, w5-3423, w3-2435, w3-2425, w3-2423 list DDR5-4400, the others 4800
    # (ark.intel.com); W-3400/3500 have 8 channels, W-2400/2500 four.
    (r"Xeon\(R\) w5-34[23]3\b", _p("Xeon W-3400", 8, {}, {"DDR5": 4400})),
    (r"Xeon\(R\) w3-24(?:35|25|23)\b", _p("Xeon W-2400", 4, {}, {"DDR5": 4400})),
    (r"Xeon\(R\) w[3579]-3[45]\d\dX?\b", _p("Xeon W-3400/3500", 8, {}, {"DDR5": 4800})),
    (r"Xeon\(R\) w[3579]-2[45]\d\dX?\b", _p("Xeon W-2400/2500", 4, {}, {"DDR5": 4800})),
    (r"Xeon\(R\) 69\d\dP", _p("Xeon 6 (Granite Rapids-AP)", 12, {},
                              {"DDR5": 6400, "MRDIMM": 8800})),
    (r"Xeon\(R\) 67\d\d[PE]", _p("Xeon 6 (6700)", 8, {}, {"DDR5": 6400,
                                                           "MRDIMM": 8000})),
    # Xeon Scalable: the channels per socket; the speed differs by tier, so only the
    # top tiers' (Platinum, Gold 6) is listed.
    (r"Xeon\(R\) Gold 64(?:30|21N)\b", _p("Sapphire Rapids", 8, {}, {"DDR5": 4400})),
    (r"Xeon\(R\) Gold 6428N\b", _p("Sapphire Rapids", 8, {}, {"DDR5": 4000})),
    (r"Xeon\(R\) (?:Platinum 8|Gold 6)4\d\d", _p("Sapphire Rapids", 8, {}, {"DDR5": 4800})),
    (r"Xeon\(R\) (?:Platinum 8|Gold 6)5\d\d", _p("Emerald Rapids", 8, {}, {"DDR5": 5600})),
    (r"Xeon\(R\) (?:Platinum 8|Gold 6)3\d\d", _p("Ice Lake-SP", 8, {}, {"DDR4": 3200})),
    (r"Xeon\(R\) (?:Platinum 8|Gold 6)2\d\d", _p("Cascade Lake", 6, {}, {"DDR4": 2933})),
    (r"Xeon\(R\) (?:Platinum 8|Gold 6)1\d\d", _p("Skylake-SP", 6, {}, {"DDR4": 2666})),
    (r"Xeon\(R\) Gold 52\d\d", _p("Cascade Lake", 6, {}, {"DDR4": 2666})),
    (r"Xeon\(R\) (?:Gold 51|Silver 4[12])\d\d", _p("Skylake/Cascade Lake-SP", 6, {},
                                                     {"DDR4": 2400})),
    (r"Xeon\(R\) Bronze 3[12]\d\d", _p("Skylake/Cascade Lake-SP", 6, {}, {"DDR4": 2133})),
    # Their lower tiers (ark.intel.com): Sapphire Rapids Silver and Bronze DDR5-4000, Gold
    # 5 4400; Emerald Rapids Silver 4400, Gold 5 4800.
    (r"Xeon\(R\) (?:Silver 44|Bronze 34)\d\d", _p("Sapphire Rapids", 8, {}, {"DDR5": 4000})),
    (r"Xeon\(R\) (?:Gold 54|Silver 45)\d\d", _p("Sapphire/Emerald Rapids", 8, {},
                                                  {"DDR5": 4400})),
    (r"Xeon\(R\) Gold 55\d\d", _p("Emerald Rapids", 8, {}, {"DDR5": 4800})),
    (r"Xeon\(R\) (?:Gold|Silver|Bronze) [3-5][45]\d\d", _p("Sapphire/Emerald Rapids", 8)),
    (r"Xeon\(R\) Silver 43\d\d", _p("Ice Lake-SP", 8, {}, {"DDR4": 2666})),
    (r"Xeon\(R\) Gold 53\d\d", _p("Ice Lake-SP", 8, {}, {"DDR4": 2933})),
    (r"Xeon\(R\) (?:Gold|Silver|Bronze) [3-5]3\d\d", _p("Ice Lake-SP", 8)),
    # Xeon E5 v3 (Haswell-EP): E5-2620..2640 v3 DDR4-1866, the others 2133; v4
    # (Broadwell-EP): E5-2620..2640 v4 DDR4-2133, the others 2400; E3 v5 DDR4-2133, v6
    # DDR4-2400 (ark.intel.com).
    (r"Xeon\(R\) CPU E5-26[0-4]\d[A-Z]? v3", _p("Haswell-EP", 4, {}, {"DDR4": 1866})),
    (r"Xeon\(R\) CPU E5-\d{4}[A-Z]? v3", _p("Haswell-EP", 4, {}, {"DDR4": 2133})),
    (r"Xeon\(R\) CPU E5-26[0-4]\d[A-Z]? v4", _p("Broadwell-EP", 4, {}, {"DDR4": 2133})),
    (r"Xeon\(R\) CPU E5-\d{4}[A-Z]? v4", _p("Broadwell-EP", 4, {}, {"DDR4": 2400})),
    (r"Xeon\(R\) CPU E3-12\d\d[A-Z]? v5", _p("Skylake (Xeon E3)", 2, {}, {"DDR4": 2133})),
    (r"Xeon\(R\) CPU E3-12\d\d[A-Z]? v6", _p("Kaby Lake (Xeon E3)", 2, {}, {"DDR4": 2400})),
    # Sandy and Ivy Bridge-EP: four channels; their DDR3 speed differs by SKU.
    (r"Xeon\(R\) CPU E5-[124]6\d\d[A-Z]? 0\b", _p("Sandy Bridge-EP", 4)),
    (r"Xeon\(R\) CPU E5-[124]6\d\d[A-Z]? v2", _p("Ivy Bridge-EP", 4)),
    # Xeon W (ark.intel.com): W-2100 DDR4-2666; W-2223/2225 2666, other W-2200 2933;
    # W-3223 2666, other W-3200 2933. Xeon E-2100/2200 2666, E-2300 3200.
    (r"Xeon\(R\) W-21\d\d", _p("Skylake-W", 4, {}, {"DDR4": 2666})),
    (r"Xeon\(R\) W-222[35]\b", _p("Cascade Lake-W", 4, {}, {"DDR4": 2666})),
    (r"Xeon\(R\) W-22\d\d", _p("Cascade Lake-W", 4, {}, {"DDR4": 2933})),
    (r"Xeon\(R\) W-3223\b", _p("Cascade Lake-W", 6, {}, {"DDR4": 2666})),
    (r"Xeon\(R\) W-32\d\d", _p("Cascade Lake-W", 6, {}, {"DDR4": 2933})),
    (r"Xeon\(R\) E-2[12]\d\d", _p("Coffee Lake (Xeon E)", 2, {}, {"DDR4": 2666})),
    (r"Xeon\(R\) E-23\d\d", _p("Rocket Lake (Xeon E)", 2, {}, {"DDR4": 3200})),
    # Core X-series (four channels): Cascade Lake-X DDR4-2933, Skylake-X 2666.
    (r"Core\(TM\) i[79]-109\d\dXE?\b", _p("Cascade Lake-X", 4, {}, {"DDR4": 2933})),
    (r"Core\(TM\) i[79]-[79]\d{3}XE?\b", _p("Skylake-X", 4, {}, {"DDR4": 2666})),
    # Ivy Bridge Celeron G16xx: DDR3-1333 (ark.intel.com).
    (r"Celeron\(R\) CPU G16\d\dT?\b", _p("Ivy Bridge Celeron", 2, {}, {"DDR3": 1333})),
    # AMD laptops (amd.com product specifications).
    (r"Ryzen AI Max", _p("Strix Halo", 4, {"LPDDR5": 8000})),
    (r"Ryzen AI 9 HX 375", _p("Strix Point", 2, {"LPDDR5": 8000}, {"DDR5": 5600})),
    (r"Ryzen AI 9 (?:HX )?3[67]\d", _p("Strix Point", 2, {"LPDDR5": 7500}, {"DDR5": 5600})),
    (r"Ryzen AI [57] (?:PRO )?3\d\d", _p("Krackan Point", 2, {"LPDDR5": 8000},
                                         {"DDR5": 5600})),
    (r"Ryzen [579] 7\d45HX3?D?\b", _p("Dragon Range", 2, {}, {"DDR5": 5200})),
    (r"Ryzen [3579] (?:PRO )?[78]\d[4-6][05][UH]S?\b", _p("Phoenix/Hawk Point", 2,
                                                        {"LPDDR5": 7500}, {"DDR5": 5600})),
    (r"Ryzen [3579] (?:PRO )?(?:6\d\d0|7\d35)(?:[UH]S?|HX)\b", _p("Rembrandt", 2,
                                                           {"LPDDR5": 6400},
                                                           {"DDR5": 4800})),
    (r"Ryzen [3579] (?:PRO )?7\d20U\b", _p("Mendocino", 1, {"LPDDR5": 5500})),
    (r"Ryzen [3579] (?:PRO )?(?:5\d\d[05]|7\d30)U\b", _p("Cezanne/Barcelo", 2,
                                                         {"LPDDR4": 4266},
                                                         {"DDR4": 3200})),
    (r"Ryzen [3579] (?:PRO )?5\d\d0H[SX]?\b", _p("Cezanne-H", 2, {"LPDDR4": 4266},
                                                 {"DDR4": 3200})),
    (r"Ryzen [3579] (?:PRO )?4\d\d0[UH]S?\b", _p("Renoir", 2, {"LPDDR4": 4266},
                                                 {"DDR4": 3200})),
    (r"AMD A(?:12|10|9)-9[67]\d0P\b", _p("Bristol Ridge (15 W)", 2, {}, {"DDR4": 1866})),
    # Steam Deck: "LPDDR5 on-board RAM (5500 MT/s quad 32-bit channels)", 128 bits in all;
    # OLED 6400 MT/s (steamdeck.com tech specs).
    (r"AMD Custom APU 0405", _p("Van Gogh (Steam Deck)", 2, {"LPDDR5": 5500})),
    (r"AMD Custom APU 0932", _p("Sephiroth (Steam Deck OLED)", 2, {"LPDDR5": 6400})),
    # AMD desktops, workstations and servers.
    (r"Ryzen Threadripper PRO 7\d\d5WX", _p("Threadripper PRO 7000WX", 8, {},
                                             {"DDR5": 5200})),
    (r"Ryzen Threadripper 7\d\d0X", _p("Threadripper 7000", 4, {}, {"DDR5": 5200})),
    (r"EPYC 4\d\d4P", _p("EPYC 4004", 2, {}, {"DDR5": 5200})),
    (r"EPYC 9\d\d5", _p("EPYC 9005 (Turin)", 12, {}, {"DDR5": 6000})),
    (r"EPYC 9\d\d4", _p("EPYC 9004 (Genoa)", 12, {}, {"DDR5": 4800})),
    (r"EPYC 8\d\d4", _p("EPYC 8004 (Siena)", 6, {}, {"DDR5": 4800})),
    (r"EPYC 7\d\d3", _p("EPYC 7003 (Milan)", 8, {}, {"DDR4": 3200})),
    (r"EPYC 7\d\d2", _p("EPYC 7002 (Rome)", 8, {}, {"DDR4": 3200})),
    (r"EPYC 7\d\d1", _p("EPYC 7001 (Naples)", 8, {}, {"DDR4": 2666})),
    (r"Ryzen [3579] (?:PRO )?9\d\d\dX?3?D?\b", _p("Ryzen 9000", 2, {}, {"DDR5": 5600})),
    (r"Ryzen [3579] (?:PRO )?[78]\d\d\d[XFG]?3?D?\b", _p("Ryzen 7000/8000", 2, {},
                                                          {"DDR5": 5200})),
    # Arm laptops (qualcomm.com Snapdragon X product brief).
    (r"Snapdragon\(R\) X|X1[EP]\d{2}100", _p("Snapdragon X", 2, {"LPDDR5": 8448})),
]


def platform_of(model_name: str | None) -> Platform | None:
    """The platform a CPU model name belongs to, or None where the table has no entry.
    A pattern is compiled only where the name holds the text every match of it begins
    with: compiling them all costs a preflight 6-11 ms on a CPU the table lacks (a VM's
    "Intel(R) Xeon(R) Processor"), and a Ryzen compiled every Intel pattern first."""
    if not model_name:
        return None
    for pattern, platform in _TABLE:
        if literal_prefix(pattern) in model_name and re.search(pattern, model_name):
            return platform
    return None


_META = frozenset(".^$*+?{}[]|()")


def literal_prefix(pattern: str) -> str:
    """The plain text every match of ``pattern`` begins with: "" where it begins with a
    class, a group or an anchor, or has an alternative at the top level."""
    if _top_level_alternative(pattern):
        return ""
    text, i = [], 0
    while i < len(pattern):
        char, step = pattern[i], 1
        if char == "\\":
            char, step = pattern[i + 1:i + 2], 2
            if not char or char.isalnum():  # \d, \s, \b: a class or an anchor
                break
        elif char in _META:
            break
        if pattern[i + step:i + step + 1] in ("?", "*", "+", "{"):
            break  # a quantified character may be absent or repeated
        text.append(char)
        i += step
    return "".join(text)


def _top_level_alternative(pattern: str) -> bool:
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
        i += 1
    return False

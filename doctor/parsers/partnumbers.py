"""The rated speed a memory module's part number spells out.

Without root there is no SPD to read, but dmidecode (and systemd's udev
``MEMORY_DEVICE_<n>_PART_NUMBER``) still give the part number, and most vendors
write the speed into it: G.Skill ``F5-6000J3636F16G`` is a DDR5-6000 kit, Samsung
``M425R1GB4BB0-CQK`` a JEDEC DDR5-4800 module. Retail kits carry an XMP/EXPO
rating above the JEDEC ``Speed:`` dmidecode shows; OEM modules name their JEDEC
speed. Unknown or unreadable part numbers give None, never a guess.

Confidence: ``high`` where the vendor's scheme puts the speed in a fixed field;
``medium`` where the speed is plain but the scheme is shared by JEDEC and XMP
products (TeamGroup ``UD5-6000``) or was inferred from observed modules (SK hynix
DDR5); ``low`` for a string seen on real modules but not a documented scheme.
"""

from __future__ import annotations

import re
from typing import Callable, NamedTuple

KIT = "xmp/expo kit"  # rated by an overclock profile: reaching it takes XMP/EXPO
JEDEC = "jedec"  # rated at a JEDEC speed: the board runs it so by default
HIGH, MEDIUM, LOW = "high", "medium", "low"

# A speed outside these is a misread field, not a module.
SPEED_RANGE = (800, 12000)

# Two-digit speed codes (Kingston, Crucial) whose grade is not a round hundred.
_ODD_GRADES = {13: 1333, 18: 1866, 21: 2133, 26: 2666, 29: 2933, 33: 3333, 34: 3466,
               37: 3733, 41: 4133, 42: 4266, 53: 5333}

# OEM JEDEC speed codes after the dash: Samsung (-C + two letters) and SK hynix.
_SAMSUNG_CODES = {"F8": 1066, "H9": 1333, "K0": 1600, "MA": 1866, "PB": 2133, "RC": 2400,
                  "TD": 2666, "VF": 2933, "WE": 3200, "QK": 4800, "WM": 5600}
_HYNIX_CODES = {"G7": 1066, "H9": 1333, "PB": 1600, "RD": 1866, "TF": 2133, "UH": 2400,
                "VK": 2666, "WM": 2933, "XN": 3200}
# SK hynix DDR5 modules: the letter after the die revision (HMCG78A*G*BUA081N).
_HYNIX_DDR5_CODES = {"E": 4800, "G": 5600}
# Micron DDR3/DDR4 module speed grades (-2G6, -3G2; S marks 3DS parts).
_MICRON_CODES = {code.replace("G", letter): mts for letter in "GS" for code, mts in {
    "1G1": 1066, "1G4": 1333, "1G6": 1600, "1G9": 1866, "2G1": 2133, "2G3": 2400,
    "2G6": 2666, "2G9": 2933, "3G2": 3200}.items()}


class PartRating(NamedTuple):
    """What a part number says: its rated speed, how it is reached, and how sure we are."""

    rated_mts: int
    kind: str  # KIT or JEDEC
    confidence: str  # HIGH, MEDIUM or LOW
    vendor: str


def rated_speed(part_number: str | None) -> PartRating | None:
    """The rating a module part number encodes, or None when it encodes none we know."""
    part = _normalised(part_number)
    if not part:
        return None
    for pattern, rate in _RULES:
        match = pattern.match(part)
        if match:
            rating = rate(match)
            return rating if rating and _is_grade(rating.rated_mts) else None
    return None


def _normalised(part_number: str | None) -> str | None:
    """Upper-cased and trimmed; dmidecode's hex form (``0x4D33...``) turned back to text."""
    part = (part_number or "").strip().upper()
    if re.fullmatch(r"0X(?:[0-9A-F]{2})+", part):
        text = bytes.fromhex(part[2:]).strip(b"\x00 ")
        part = text.decode("ascii") if text and all(0x20 <= b <= 0x7E for b in text) else ""
    return part or None


def _snap(mts: int) -> int:
    """A written speed to its grade: 2667 and 2660 are DDR4-2666; others stay as written."""
    if 30 <= mts % 100 < 40 or 60 <= mts % 100 < 70:
        return int(round(mts * 3 / 200) * 200 / 3)
    return mts


def _is_grade(mts: int) -> bool:
    """Memory speeds are whole hundreds or thirds of two hundred (2133, 2666) in range."""
    return SPEED_RANGE[0] <= mts <= SPEED_RANGE[1] and mts % 100 in (0, 33, 66)


def _code(digits: str, ddr5: bool = False) -> int:
    """A two-digit speed code: 32 is 3200, 26 is 2666 (DDR5 codes are plain hundreds)."""
    number = int(digits)
    return number * 100 if ddr5 else _ODD_GRADES.get(number, number * 100)


def _tens(digits: str) -> int:
    """A speed written in tens (Patriot ``320``, Crucial ``266``) or in full."""
    return _snap(int(digits) * 10 if len(digits) == 3 else int(digits))


def _corsair(match: re.Match) -> PartRating:
    family = match.group(1)
    speed = _snap(int(match.group(2)))
    if family in ("V", "SO"):  # ValueSelect: JEDEC modules
        return PartRating(speed, JEDEC, HIGH, "Corsair")
    # Vengeance SO-DIMMs are sold at speeds laptops run by JEDEC as well as XMP ones.
    return PartRating(speed, KIT, MEDIUM if family == "SX" else HIGH, "Corsair")


def _corsair_x(match: re.Match) -> PartRating:
    """Corsair's DDR5 numbers of 2024 on (CMK5X32G2B52C40A2: Vengeance, 2 x 16 GB, 5200
    CL40; CMS5X16G1A48C40A2: SO-DIMM 4800): two speed digits after the revision letter.
    Read off real modules whose dmidecode Speed and configured speed agree (medium)."""
    speed = _code(match.group(2), ddr5=True)
    if match.group(1) == "S":  # SO-DIMMs at JEDEC speeds
        return PartRating(speed, JEDEC, MEDIUM, "Corsair")
    return PartRating(speed, KIT, MEDIUM, "Corsair")


def _crucial_pro(match: re.Match) -> PartRating:
    """Crucial Pro DDR5 (CP16G56C46U5, CP16G60C36U5B): the 5600 CL46 modules run at
    JEDEC speed; the faster "Pro OC" ones (6000 CL36, 6400 CL38) need XMP/EXPO (Crucial
    product pages). Crucial Pro DDR4 (CP16G4DFRA32A) is JEDEC 3200."""
    speed = _code(match.group(1), ddr5=True)
    return PartRating(speed, KIT if speed > 5600 else JEDEC, HIGH, "Crucial")


def _lexar(match: re.Match) -> PartRating:
    """Lexar LD5EU016G-6400LA (ARES), LD4AS016G-3200ST: the letter after the generation
    is the line: A (DDR4) and D (DDR5) are its JEDEC modules, B/E/F its gaming lines
    (THOR, ARES) rated by XMP/EXPO. Inferred from real modules (medium)."""
    kind = JEDEC if match.group(1) in "AD" else KIT
    return PartRating(_snap(int(match.group(2))), kind, MEDIUM, "Lexar")


def _lexar_short(match: re.Match) -> PartRating:
    """Lexar LD4S16G32C22ST, LD5S16G56C46ST (SO-DIMMs, JEDEC), LD5U16G72C34LA (THOR
    DDR5-7200): speed code and CAS latency; UDIMMs faster than JEDEC's 5600 are kits."""
    generation, form, speed = match.group(1), match.group(2), _code(match.group(3), True)
    kit = form == "U" and speed > (5600 if generation == "5" else 3200)
    return PartRating(speed if generation == "5" else _code(match.group(3)),
                      KIT if kit else JEDEC, MEDIUM, "Lexar")


def _pny(match: re.Match) -> PartRating:
    """PNY: MD16GSD54800-BLK (Performance DDR5-4800, JEDEC), MD16GK2D4320016XRGB (XLR8
    Gaming: kit of 2, DDR4-3200 CL16); the X of XLR8 marks the overclocked line."""
    kit = bool(match.group(3))
    return PartRating(_snap(int(match.group(2))), KIT if kit else JEDEC, MEDIUM, "PNY")


def _silicon_power(match: re.Match) -> PartRating:
    """Silicon Power SP008GBLFU240B02 (value, DDR4-2400), SP016GXLZU320BSA (XPOWER Zenith
    3200): speed in tens; the XPOWER (X) line is rated by XMP (medium, from real modules)."""
    kind = KIT if match.group(1).startswith("X") else JEDEC
    return PartRating(_tens(match.group(2)), kind, MEDIUM, "Silicon Power")


def _crucial_ddr4(match: re.Match) -> PartRating:
    digits = match.group(1)
    return PartRating(_tens(digits) if len(digits) == 3 else _code(digits), JEDEC, HIGH,
                      "Crucial")


def _ballistix(match: re.Match) -> PartRating:
    digits = match.group(1)
    return PartRating(_tens(digits) if len(digits) == 3 else _code(digits), KIT, HIGH,
                      "Crucial")


def _table(codes: dict, kind: str, confidence: str, vendor: str) -> Callable:
    """A rule whose captured code is looked up in a vendor's speed-code table."""
    def rate(match: re.Match) -> PartRating | None:
        speed = codes.get(match.group(1))
        return PartRating(speed, kind, confidence, vendor) if speed else None
    return rate


def _rule(pattern: str, rate: Callable[[re.Match], PartRating | None]) -> tuple:
    return re.compile(pattern), rate


# First match wins; every pattern is anchored at the start of the part number. Each
# rule's source is in its comment; the confidence (high, medium, low) in its answer.
_RULES = [
    # G.Skill (gskill.com part-number key): F5-6000J3636F16G, F4-3200C16-8GVKB,
    # F3-1866C10-8GAB: generation, speed, CAS latency.
    _rule(r"F[345]-(\d{4})[A-Z]\d{2}", lambda m: PartRating(_snap(int(m.group(1))), KIT, HIGH,
                                                            "G.Skill")),
    # Corsair (corsair.com product numbers): CMK32GX5M2B6000C36 (the DIMM often stores the
    # kit's number, or less of it), and the 2024 form CMK5X32G2B52C40A2.
    _rule(r"CM([A-Z]{1,4}?)\d{1,3}GX[345]M\d[A-Z](\d{4})", _corsair),
    _rule(r"CM([A-Z])[A-Z]?5X\d{1,3}G\d[A-Z](\d{2})[CZ]\d{2}", _corsair_x),
    # Kingston FURY (kingston.com part-number decoder): KF560C36BBEK2-32, KF552C40-32,
    # KF556R36-32, KF432C16BB/8, CUDIMMs KF582CU40RSK2-48, SO-DIMMs KF548S38-16 (Impact:
    # plug-and-play in laptops, which have no XMP setting: JEDEC for the verdict).
    _rule(r"KF([345])(\d{2})(CU|C|R)\d{2}",
          lambda m: PartRating(_code(m.group(2), m.group(1) == "5"), KIT, HIGH, "Kingston")),
    _rule(r"KF([345])(\d{2})S\d{2}",
          lambda m: PartRating(_code(m.group(2), m.group(1) == "5"), JEDEC, MEDIUM,
                               "Kingston")),
    # Kingston FURY DDR4 as its DIMMs store it (KF3200C16D4/8GX Beast, KF3600C16D4/16GX
    # Renegade; KF3200C20S4/16G Impact SO-DIMM), and HyperX before it (KHX3200C16D4/8GX).
    _rule(r"KF(\d{4})C\d{2}S\d", lambda m: PartRating(_snap(int(m.group(1))), JEDEC, MEDIUM,
                                                        "Kingston")),
    _rule(r"K(?:F|HX)(\d{4})C\d{1,2}", lambda m: PartRating(_snap(int(m.group(1))), KIT, HIGH,
                                                             "Kingston")),
    _rule(r"HX([345])(\d{2})C\d{2}",
          lambda m: PartRating(_code(m.group(2), m.group(1) == "5"), KIT, HIGH, "Kingston")),
    # Kingston ValueRAM and server modules (KVR32N22S8/8, KSM48R40BD8-32MD), branded KCP.
    _rule(r"K(?:VR|SM)(\d{2})[A-Z]",
          lambda m: PartRating(_code(m.group(1), int(m.group(1)) >= 44), JEDEC, HIGH,
                               "Kingston")),
    _rule(r"KCP([345])(\d{2})[A-Z]",
          lambda m: PartRating(_code(m.group(2), m.group(1) == "5"), JEDEC, HIGH, "Kingston")),
    # TeamGroup: the DIMM stores UD5-6000 / TEAMGROUP-SD4-2400 for JEDEC and XMP lines alike.
    _rule(r"(?:TEAMGROUP-)?([US])D[345]-(\d{4})\b",
          lambda m: PartRating(_snap(int(m.group(2))), KIT if m.group(1) == "U" else JEDEC,
                               MEDIUM, "TeamGroup")),
    # TeamGroup kits (teamgroupinc.com): T-Force Delta FF3D532G6000HC38ADC01 and
    # TF3D416G3200HC16FDC01, Vulcan FLBD516G6000HC38ADC01, Vulcan Z TLZGD416G3200HC16CDC01,
    # Xtreem TF13D416G3600HC14CDC01; Elite TED416G3200C2201 (JEDEC).
    _rule(r"[A-Z]{2,5}\d{0,2}D[345]\d{1,3}G(\d{4})HC\d{2}",
          lambda m: PartRating(_snap(int(m.group(1))), KIT, HIGH, "TeamGroup")),
    _rule(r"TED[345]\d{1,3}G(\d{4})C\d{2}",
          lambda m: PartRating(_snap(int(m.group(1))), JEDEC, HIGH, "TeamGroup")),
    # Crucial JEDEC: CT32G56C46U5 (DDR5), CT16G4DFRA32A / CT8G4SFS8266 (DDR4); Crucial Pro.
    _rule(r"CT\d{1,3}G(\d{2})C\d{2}[US]5",
          lambda m: PartRating(_code(m.group(1), ddr5=True), JEDEC, HIGH, "Crucial")),
    _rule(r"CT\d{1,3}G4[A-Z]+?8?(\d{3}|\d{2})(?:[A-Z.]|$)", _crucial_ddr4),
    _rule(r"CP\d{1,3}G(\d{2})C\d{2}[US]5", _crucial_pro),
    _rule(r"CP\d{1,3}G4[A-Z]+?(\d{2})[A-Z]", _crucial_ddr4),
    # Ballistix: BL2K16G36C16U4B, and the older BLE8G4D40BEEAK / BLS8G4D240FSB.
    _rule(r"BL[A-Z]?\d?K?\d{1,3}G(\d{2})C\d{2}[US]4", _ballistix),
    _rule(r"BL[A-Z]?\d?K?\d{1,3}G4D(\d{3}|\d{2})", _ballistix),
    # GOODRAM (goodram.com part-number key): IRDM IR-6800D564L34S/32GDC (DDR5),
    # IR2400D464L15S/8G, IRDM X IRX3200D464L16SA/8G, IRDM PRO IRP3600D4V64L17S/8G; the
    # standard line GR3200S464L22/16G (S: SO-DIMM, D: desktop) is JEDEC.
    _rule(r"IR[PX]?-?(\d{4})D[345]", lambda m: PartRating(_snap(int(m.group(1))), KIT, HIGH,
                                                          "GOODRAM")),
    _rule(r"GR(\d{4})[DS][345]", lambda m: PartRating(_snap(int(m.group(1))), JEDEC, HIGH,
                                                      "GOODRAM")),
    # Lexar: LD5EU016G-6400LA, LD4AS016G-3200ST, LD4AU016G-H3200GST; LD5U16G72C34LA.
    _rule(r"LD[45]([A-Z])[SU]\d{3}G-[A-Z]?(\d{4})", _lexar),
    _rule(r"LD([45])([SU])\d{1,3}G(\d{2})C\d{2}", _lexar_short),
    # Patriot: Viper PVS532G600C36K / PVB416G320C6K / Venom PVV532G600C36K, Signature
    # PSD516G480081 / PSD48G266681; the Viper SPD part field "7400 C36 Series".
    _rule(r"PV[A-Z0-9]*?[345]\d{1,3}G(\d{3})C\d{1,2}",
          lambda m: PartRating(_tens(m.group(1)), KIT, HIGH, "Patriot")),
    _rule(r"PS[DA][345]\d{1,3}G(\d{4})",
          lambda m: PartRating(_snap(int(m.group(1))), JEDEC, HIGH, "Patriot")),
    _rule(r"(\d{4}) C\d{2} SERIES$",
          lambda m: PartRating(_snap(int(m.group(1))), KIT, LOW, "Patriot")),
    # GeIL's SPD part field: "CL38-48-48 D5-8000" (SPD 004: XMP and EXPO at 8000).
    _rule(r"CL\d{2}-\d{2}-\d{2} D[345]-(\d{4})$",
          lambda m: PartRating(_snap(int(m.group(1))), KIT, MEDIUM, "GeIL")),
    # ADATA: XPG Lancer AX5U6000C3016G-DCLABK / XPG AX4U320016G16A, Premier AD4U320016G22.
    _rule(r"AX[345][US](\d{4})", lambda m: PartRating(_snap(int(m.group(1))), KIT, HIGH,
                                                      "ADATA")),
    _rule(r"AD[345][US](\d{4})", lambda m: PartRating(_snap(int(m.group(1))), JEDEC, HIGH,
                                                      "ADATA")),
    # PNY: MD16GSD54800-BLK (Performance), MD16GK2D4320016XRGB (XLR8 Gaming).
    _rule(r"MD\d{1,3}G(?:K\d)?(S)?D[345](\d{4})(?:\d{2,3})?(?:-[A-Z]+)?(X)?", _pny),
    # Silicon Power: SP008GBLFU240B02, SP016GXLZU320BSA.
    _rule(r"SP\d{3}G([A-Z]{2})[A-Z]{1,2}U(\d{3})", _silicon_power),
    # Transcend JetRAM: JM4800ASE-16G, JM3200HLB-8G (JEDEC).
    _rule(r"JM(\d{4})[A-Z]", lambda m: PartRating(_snap(int(m.group(1))), JEDEC, MEDIUM,
                                                  "Transcend")),
    # Foxline budget modules: FL2400D4U17-16G, FL5600D5S46-32G.
    _rule(r"FL(\d{4})D[345]", lambda m: PartRating(_snap(int(m.group(1))), JEDEC, MEDIUM,
                                                   "Foxline")),
    # OEM modules name their JEDEC speed. Samsung: M425R1GB4BB0-CQK (C = temperature).
    _rule(r"M\d{3}[A-Z][0-9A-Z]+-[A-Z]([A-Z0-9]{2})", _table(_SAMSUNG_CODES, JEDEC, HIGH,
                                                             "Samsung")),
    # SK hynix: HMA81GU6DJR8N-XN (DDR4), HMT41GR7AFR8A-PB (DDR3), HMCG78AGBUA081N (DDR5).
    _rule(r"HM[AT][0-9A-Z]+-([A-Z0-9]{2})", _table(_HYNIX_CODES, JEDEC, HIGH, "SK hynix")),
    _rule(r"HMC[A-Z]\d{2}[A-Z]([A-Z])B[A-Z]{2}\d{3}N",
          _table(_HYNIX_DDR5_CODES, JEDEC, MEDIUM, "SK hynix")),
    # Micron: MTC8C1084S1UC48BA1 (DDR5, 48 = 4800; MTC40F2046S1HC88XDY is an 8800
    # MRDIMM), 9ASF1G72PZ-3G2E2 (DDR4), MT36KSF...-1G6.
    _rule(r"MTC\d{1,3}[A-Z]\d{4,5}S\d[A-Z]C(\d{2})",
          lambda m: PartRating(_code(m.group(1), ddr5=True), JEDEC, HIGH, "Micron")),
    _rule(r"(?:MTA?)?\d{1,3}[AJK][A-Z]{2}\d+G?\d+[A-Z]+-(\d[GS]\d)",
          _table(_MICRON_CODES, JEDEC, HIGH, "Micron")),
]

# The DDR generation a part number names, for listings whose Type is <OUT OF SPEC>.
_GENERATIONS = [
    re.compile(p) for p in (
        r"F([345])-", r"KF([345])\d\d[A-Z]", r"CM[A-Z]{1,4}?\d{1,3}GX([345])M",
        r"CM[A-Z]{1,2}([5])X", r"A[XD]([345])[US]", r"UD([345])-", r"SD([345])-",
        r"IR[PX]?-?\d{4}D([345])", r"GR\d{4}[DS]([345])", r"LD([45])", r"PS[DA]([345])",
        r"PV[A-Z]*?([345])\d", r"[A-Z]{2,5}\d{0,2}D([345])\d{1,3}G\d{4}HC",
        r"C[TP]\d{1,3}G\d{2}C\d{2}[US]([5])", r"C[TP]\d{1,3}G([4])D", r"KVR(\d\d)",
        r"K(?:F|HX)\d{4}C\d{1,2}D?([345])", r"MD\d{1,3}G(?:K\d)?S?D([345])",
        r"(MTC)\d", r"(HMC)[A-Z]", r"M3\d\d(R)", r"M4\d\d(R)", r"M3\d\d(A)", r"M4\d\d(A)",
        r"HM([AT])",
    )
]
_GENERATION_OF = {"3": "DDR3", "4": "DDR4", "5": "DDR5", "MTC": "DDR5", "HMC": "DDR5",
                  "R": "DDR5", "A": "DDR4", "T": "DDR3"}


def generation(part_number: str | None) -> str | None:
    """The memory type (DDR3, DDR4, DDR5) a part number names, or None."""
    part = _normalised(part_number)
    if not part:
        return None
    for pattern in _GENERATIONS:
        match = pattern.match(part)
        if match:
            group = match.group(1)
            if group.isdigit() and len(group) == 2:  # KVR32...: a speed code, not a generation
                return "DDR5" if int(group) >= 44 else "DDR4"
            return _GENERATION_OF.get(group)
    return None

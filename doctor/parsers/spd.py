"""Decode memory-module SPD EEPROM images: the JEDEC speed and the XMP/EXPO ratings.

dmidecode's ``Speed:`` is the module's JEDEC speed (DDR5 kits often say 4800); the
speed a kit is sold at lives in the overclock profiles of its SPD EEPROM: XMP 2.0 on
DDR4, XMP 3.0 and AMD EXPO on DDR5. Linux exposes the EEPROM through the ee1004
(DDR4, 512 bytes) and spd5118 (DDR5, 1024 bytes) drivers, so reading it tells a kit
left at the BIOS default apart from a module that is simply slow.

Nothing here raises on bad bytes: an image that cannot be trusted comes back with
``undecodable`` saying why, and no rating. Byte layouts: JEDEC SPD Annex L (DDR4),
JESD400-5 (DDR5), Intel XMP 2.0 / 3.0 and AMD EXPO as public SPD tools read them,
checked against the real dumps in tests/fixtures/spd/.
"""

from __future__ import annotations

from msgspec import Struct
from msgspec.structs import replace

JEDEC, XMP, EXPO = "jedec", "xmp", "expo"

# Byte 2, the key byte (JEDEC SPD Annex A).
MEMORY_TYPES = {
    0x07: "DDR", 0x08: "DDR2", 0x09: "DDR2 FB-DIMM", 0x0B: "DDR3", 0x0C: "DDR4",
    0x0E: "DDR4E", 0x0F: "LPDDR3", 0x10: "LPDDR4", 0x11: "LPDDR4X", 0x12: "DDR5",
    0x13: "LPDDR5", 0x14: "DDR5 NVDIMM-P", 0x15: "LPDDR5X",
}
DDR4, DDR5 = 0x0C, 0x12

# Byte 3, bits 3-0.
DDR4_MODULE_TYPES = {
    1: "RDIMM", 2: "UDIMM", 3: "SO-DIMM", 4: "LRDIMM", 5: "Mini-RDIMM", 6: "Mini-UDIMM",
    8: "72b-SO-RDIMM", 9: "72b-SO-UDIMM", 12: "16b-SO-DIMM", 13: "32b-SO-DIMM",
}
DDR5_MODULE_TYPES = {
    1: "RDIMM", 2: "UDIMM", 3: "SO-DIMM", 4: "LRDIMM", 5: "CUDIMM", 6: "CSODIMM",
    7: "MRDIMM", 8: "CAMM2", 10: "DDIMM", 11: "Solder down",
}

# JEP106 manufacturer codes (continuation count, code without parity) of the
# module makers a consumer PC is likely to hold; others keep their numeric id.
MANUFACTURERS = {
    (0, 0x2C): "Micron", (0, 0x2D): "SK hynix", (0, 0x4E): "Samsung",
    (1, 0x14): "Smart Modular", (1, 0x18): "Kingston", (1, 0x3A): "PNY",
    (1, 0x4F): "Transcend", (1, 0x7A): "Apacer", (2, 0x1E): "Corsair",
    (3, 0x13): "GeIL", (4, 0x4B): "ADATA", (4, 0x4D): "G.Skill", (4, 0x6F): "TeamGroup",
    (5, 0x02): "Patriot", (5, 0x1B): "Crucial", (8, 0x13): "Gloway", (8, 0x18): "KLEVV",
    (10, 0x3A): "Foxline", (12, 0x5D): "OLOy",
}

XMP_MAGIC = b"\x0c\x4a"
EXPO_MAGIC = b"EXPO"

# DDR4 (Annex L) offsets.
DDR4_BASE_END = 128  # bytes 0-125 carry the timings, 126-127 their CRC
DDR4_SIZE = 512
DDR4_MANUFACTURER = 320
DDR4_PART = slice(329, 349)
XMP2_HEADER = 384
XMP2_PROFILES = ((1, 393), (2, 440))
XMP2_PROFILE_LEN = 39

# DDR5 (JESD400-5) offsets.
DDR5_BASE_END = 512  # bytes 0-509 carry the timings, 510-511 their CRC
DDR5_SIZE = 1024
DDR5_MANUFACTURER = 512
DDR5_PART = slice(521, 551)
XMP3_HEADER = 0x280
XMP3_NAMES = 0x28E  # three 16-byte profile names
XMP3_PROFILES = ((1, 0x2C0), (2, 0x300), (3, 0x340))
XMP3_PROFILE_LEN = 0x40
EXPO_HEADER = 0x340  # EXPO can take the place of XMP profile 3
EXPO_PROFILES = ((1, 0x34A, 0x01), (2, 0x372, 0x10))  # number, offset, enable bit
EXPO_PROFILE_LEN = 0x28

# A profile's cycle time must name a memory speed between 1000 and 20000 MT/s.
TCK_RANGE_PS = (100, 2000)


class SpdProfile(Struct, frozen=True):
    """One way to run the module: its JEDEC base timing or an XMP/EXPO profile."""

    source: str  # JEDEC, XMP or EXPO
    number: int  # profile number within its source; 0 for JEDEC
    speed_mts: int
    tck_ps: int
    cl: int
    trcd: int
    trp: int
    vdd_v: float | None  # the DRAM voltage the profile asks for
    label: str | None = None  # the name an XMP 3.0 header gives the profile

    @property
    def name(self) -> str:
        return "JEDEC" if self.source == JEDEC else f"{self.source.upper()} profile {self.number}"

    @property
    def timings(self) -> str:
        return f"{self.cl}-{self.trcd}-{self.trp}"


class SpdModule(Struct, frozen=True):
    """What one SPD image says about its module.

    ``undecodable`` is set when the image cannot be trusted or is incomplete; the
    fields read before the problem are kept (a 256-byte DDR4 read still has its
    JEDEC speed) but ``rated_mts()`` is None, since a missing XMP block cannot be
    told apart from an absent one.
    """

    memory_type: str | None = None
    module_type: str | None = None
    capacity_bytes: int | None = None
    ecc: bool | None = None
    jedec: SpdProfile | None = None
    manufacturer_id: int | None = None  # the two JEP106 bytes as stored, e.g. 0x04CD
    manufacturer: str | None = None
    part_number: str | None = None
    profiles: tuple[SpdProfile, ...] = ()  # enabled XMP and EXPO profiles, SPD order
    ignored: tuple[str, ...] = ()  # profiles or blocks present but not counted, and why
    undecodable: str | None = None

    @property
    def jedec_mts(self) -> int | None:
        return self.jedec.speed_mts if self.jedec else None

    def rated_profile(self) -> SpdProfile | None:
        """The fastest enabled profile, or JEDEC when no profile is faster.

        A tie goes to JEDEC (that speed needs no BIOS setting), then to the profile
        stored first (XMP before EXPO).
        """
        if self.undecodable or self.jedec is None:
            return None
        best = self.jedec
        for profile in self.profiles:
            if profile.speed_mts > best.speed_mts:
                best = profile
        return best

    def rated_mts(self) -> int | None:
        best = self.rated_profile()
        return best.speed_mts if best else None

    def rated_by(self) -> str | None:
        """Which rating ``rated_mts`` is: ``xmp``, ``expo`` or ``jedec``."""
        best = self.rated_profile()
        return best.source if best else None

    def describe(self) -> str:
        """One line for a finding's evidence."""
        if self.undecodable:
            return f"undecodable: {self.undecodable}"
        parts = [" ".join(p for p in (self.memory_type, self.module_type) if p)]
        if self.capacity_bytes:
            parts.append(f"{self.capacity_bytes // 2**30} GiB")
        if self.manufacturer or self.part_number:
            parts.append(" ".join(p for p in (self.manufacturer, self.part_number) if p))
        speeds = [
            f"{p.name} {p.speed_mts} CL{p.timings}" for p in (self.jedec, *self.profiles) if p
        ]
        return ", ".join(parts) + ": " + "; ".join(speeds)


def decode_spd(data: bytes) -> SpdModule:
    """Decode one SPD image as the kernel's eeprom file gives it; never raises."""
    if not data:
        return SpdModule(undecodable="the image is empty")
    if data.count(0xFF) == len(data):
        return SpdModule(undecodable="every byte is 0xFF: a blank EEPROM or a failed read")
    if data.count(0) == len(data):
        return SpdModule(undecodable="every byte is zero: a blank EEPROM or a failed read")
    if len(data) < 3:
        return SpdModule(undecodable=f"only {len(data)} bytes: too short for an SPD header")
    kind = data[2]
    name = MEMORY_TYPES.get(kind)
    if name is None:
        return SpdModule(undecodable=f"byte 2 is 0x{kind:02X}, no memory type: not an SPD image")
    if name.startswith("LP"):
        return SpdModule(
            memory_type=name,
            undecodable=f"{name} memory-down data: soldered LPDDR has no SPD EEPROM, so this "
            "is a firmware image, not a module",
        )
    if kind == DDR4:
        return _decode_ddr4(data)
    if kind == DDR5:
        return _decode_ddr5(data)
    return SpdModule(memory_type=name, undecodable=f"{name} SPD is not decoded, only DDR4 and DDR5")


def mts_from_tck(tck_ps: int) -> int:
    """The marketed speed grade of a clock period: 625 ps -> 3200, 937 ps -> 2133.

    Speeds are multiples of 100 MT/s or of 200/3 (2133, 2666, 2933...); the SPD
    rounds the period to a picosecond, so the exact 2e6/tCK is snapped to the grid.
    """
    exact = 2_000_000 / tck_ps
    hundreds = round(exact / 100) * 100
    if abs(hundreds - exact) <= exact * 0.004:
        return int(hundreds)
    return int(round(exact * 3 / 200) * 200 / 3)


def crc16(data: bytes) -> int:
    """The SPD CRC (CRC-16/XMODEM: polynomial 0x1021, initial value 0)."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


# -- DDR4 ---------------------------------------------------------------------

def _decode_ddr4(data: bytes) -> SpdModule:
    if len(data) < DDR4_BASE_END:
        return SpdModule(memory_type="DDR4", undecodable=f"truncated at {len(data)} bytes: the "
                         f"DDR4 timings need bytes 0-{DDR4_BASE_END - 1}")
    problem = _crc_problem(data, DDR4_BASE_END - 2)
    if problem:
        return SpdModule(memory_type="DDR4", undecodable=problem)
    tck = _ddr4_ps(data[18], data[125])
    jedec = _profile(JEDEC, 0, tck, _ddr4_ps(data[24], data[123]), _ddr4_ps(data[25], data[122]),
                     _ddr4_ps(data[26], data[121]), 1.2, DDR4)
    module = SpdModule(
        memory_type="DDR4",
        module_type=DDR4_MODULE_TYPES.get(data[3] & 0x0F),
        capacity_bytes=_ddr4_capacity(data),
        ecc=bool(data[13] & 0x18),
        jedec=jedec,
    )
    if jedec is None:
        return replace(module, undecodable=f"tCKAVGmin of {tck} ps is no memory speed")
    if len(data) < DDR4_SIZE:
        hint = (" (the legacy eeprom driver stops at byte 255; bind ee1004 instead)"
                if len(data) == 256 else "")
        return replace(module, undecodable=f"only {len(data)} of {DDR4_SIZE} bytes: the part "
                       f"number and XMP profiles lie above byte 319{hint}")
    profiles, ignored = _xmp2_profiles(data)
    return replace(module, profiles=profiles, ignored=ignored,
                   **_maker(data, DDR4_MANUFACTURER, DDR4_PART))


def _ddr4_ps(mtb: int, ftb: int) -> int:
    """A DDR4 time: medium timebase (125 ps) units plus a signed fine (1 ps) correction."""
    return mtb * 125 + (ftb - 256 if ftb > 127 else ftb)


def _ddr4_capacity(data: bytes) -> int | None:
    die_mbit = {0: 256, 1: 512, 2: 1024, 3: 2048, 4: 4096, 5: 8192, 6: 16384, 7: 32768,
                8: 12288, 9: 24576}.get(data[4] & 0x0F)
    width_code, bus_code = data[12] & 0x07, data[13] & 0x07
    if die_mbit is None or width_code > 3 or bus_code > 3 or data[12] & 0x40:
        return None  # an unknown code or mixed ranks: not cheaply derivable
    ranks = ((data[12] >> 3) & 0x07) + 1
    if data[6] & 0x03 == 2:  # 3DS: every die in the stack is a logical rank
        ranks *= ((data[6] >> 4) & 0x07) + 1
    return die_mbit * 2**20 // 8 * (8 << bus_code) // (4 << width_code) * ranks


def _xmp2_profiles(data: bytes) -> tuple[tuple[SpdProfile, ...], tuple[str, ...]]:
    header = data[XMP2_HEADER:XMP2_HEADER + 4]
    if header[:2] != XMP_MAGIC:
        vendor = data[XMP2_HEADER:XMP2_HEADER + 8]
        if any(byte not in (0, 0xFF) for byte in vendor):
            return (), (f"bytes 384-391 hold a vendor block ({_shown(vendor)}), not XMP",)
        return (), ()
    if header[3] >> 4 != 2:
        return (), (f"an XMP header of version 0x{header[3]:02X}, not 2.x, at byte 387",)
    profiles, ignored = [], []
    for number, offset in XMP2_PROFILES:
        block = data[offset:offset + XMP2_PROFILE_LEN]
        if not header[2] & (1 << (number - 1)):
            if any(block):
                ignored.append(f"XMP profile {number} is filled in but not enabled")
            continue
        tck = _ddr4_ps(block[3], block[38])
        profile = _profile(XMP, number, tck, _ddr4_ps(block[8], block[37]),
                           _ddr4_ps(block[9], block[36]), _ddr4_ps(block[10], block[35]),
                           (block[0] >> 7) + (block[0] & 0x7F) / 100, DDR4)
        _keep(profile, profiles, ignored, f"XMP profile {number}", tck)
    return tuple(profiles), tuple(ignored)


# -- DDR5 ---------------------------------------------------------------------

def _decode_ddr5(data: bytes) -> SpdModule:
    if len(data) < DDR5_BASE_END:
        return SpdModule(memory_type="DDR5", undecodable=f"truncated at {len(data)} bytes: the "
                         f"DDR5 timings need bytes 0-{DDR5_BASE_END - 1}")
    problem = _crc_problem(data, DDR5_BASE_END - 2)
    if problem:
        return SpdModule(memory_type="DDR5", undecodable=problem)
    tck = _u16(data, 20)
    jedec = _profile(JEDEC, 0, tck, _u16(data, 30), _u16(data, 32), _u16(data, 34), 1.1, DDR5)
    module = SpdModule(
        memory_type="DDR5",
        module_type=DDR5_MODULE_TYPES.get(data[3] & 0x0F),
        capacity_bytes=_ddr5_capacity(data),
        ecc=bool(data[235] & 0x18),
        jedec=jedec,
    )
    if jedec is None:
        return replace(module, undecodable=f"tCKAVGmin of {tck} ps is no memory speed")
    if len(data) < DDR5_SIZE:
        return replace(module, undecodable=f"only {len(data)} of {DDR5_SIZE} bytes: the part "
                       "number and XMP/EXPO profiles lie in bytes 512-1023")
    xmp, xmp_ignored = _xmp3_profiles(data)
    expo, expo_ignored = _expo_profiles(data)
    return replace(module, profiles=xmp + expo, ignored=xmp_ignored + expo_ignored,
                   **_maker(data, DDR5_MANUFACTURER, DDR5_PART))


def _ddr5_capacity(data: bytes) -> int | None:
    die_gbit = {1: 4, 2: 8, 3: 12, 4: 16, 5: 24, 6: 32, 7: 48, 8: 64}.get(data[4] & 0x1F)
    dies = {0: 1, 1: 2, 2: 2, 3: 4, 4: 8, 5: 16}.get(data[4] >> 5)
    width_code, bus_code = data[6] >> 5, data[235] & 0x07
    if die_gbit is None or dies is None or width_code > 3 or bus_code > 3 or data[234] & 0x40:
        return None  # an unknown code or mixed ranks: not cheaply derivable
    ranks = ((data[234] >> 3) & 0x07) + 1
    channels = ((data[235] >> 5) & 0x03) + 1
    return channels * (8 << bus_code) // (4 << width_code) * dies * die_gbit * 2**30 // 8 * ranks


def _xmp3_profiles(data: bytes) -> tuple[tuple[SpdProfile, ...], tuple[str, ...]]:
    header = data[XMP3_HEADER:XMP3_HEADER + 4]
    if header[:2] != XMP_MAGIC:
        return (), ()
    if header[2] >> 4 != 3:
        return (), (f"an XMP header of version 0x{header[2]:02X}, not 3.x, at byte 0x282",)
    expo_in_slot_3 = data[EXPO_HEADER:EXPO_HEADER + 4] == EXPO_MAGIC
    profiles, ignored = [], []
    for number, offset in XMP3_PROFILES:
        if not header[3] & (1 << (number - 1)):
            if any(data[offset:offset + XMP3_PROFILE_LEN]) and not (number == 3 and expo_in_slot_3):
                ignored.append(f"XMP profile {number} is filled in but not enabled")
            continue
        if number == 3 and expo_in_slot_3:
            ignored.append("XMP profile 3 is enabled but its slot holds the EXPO block")
            continue
        block = data[offset:offset + XMP3_PROFILE_LEN]
        tck = _u16(block, 5)
        profile = _profile(XMP, number, tck, _u16(block, 13), _u16(block, 15), _u16(block, 17),
                           _ddr5_volts(block[1]), DDR5)
        if profile:
            name_at = XMP3_NAMES + 16 * (number - 1)
            profile = replace(profile, label=_ascii(data[name_at:name_at + 16]))
        _keep(profile, profiles, ignored, f"XMP profile {number}", tck)
    return tuple(profiles), tuple(ignored)


def _expo_profiles(data: bytes) -> tuple[tuple[SpdProfile, ...], tuple[str, ...]]:
    header = data[EXPO_HEADER:EXPO_HEADER + 6]
    if header[:4] != EXPO_MAGIC:
        return (), ()
    if header[4] >> 4 != 1:
        return (), (f"an EXPO header of revision 0x{header[4]:02X}, not 1.x, at byte 0x344",)
    profiles, ignored = [], []
    for number, offset, enable in EXPO_PROFILES:
        block = data[offset:offset + EXPO_PROFILE_LEN]
        if not header[5] & enable:
            if any(block):
                ignored.append(f"EXPO profile {number} is filled in but not enabled")
            continue
        tck = _u16(block, 4)
        profile = _profile(EXPO, number, tck, _u16(block, 6), _u16(block, 8), _u16(block, 10),
                           _ddr5_volts(block[0]), DDR5)
        _keep(profile, profiles, ignored, f"EXPO profile {number}", tck)
    return tuple(profiles), tuple(ignored)


def _ddr5_volts(code: int) -> float:
    """DDR5 profile voltages: bits 7-5 whole volts, bits 4-0 in 50 mV steps."""
    return round((code >> 5) + (code & 0x1F) * 0.05, 2)


# -- shared -------------------------------------------------------------------

def _profile(source: str, number: int, tck: int, taa: int, trcd: int, trp: int,
             vdd: float | None, generation: int) -> SpdProfile | None:
    """A profile from picosecond timings, or None when the cycle time is no speed."""
    if not TCK_RANGE_PS[0] <= tck <= TCK_RANGE_PS[1] or taa <= 0:
        return None
    cl = _cycles(taa, tck, generation)
    if generation == DDR5:
        cl += cl % 2  # DDR5 has even CAS latencies only: 45 clocks of tAA run at CL46
    return SpdProfile(source, number, mts_from_tck(tck), tck, cl,
                      _cycles(trcd, tck, generation), _cycles(trp, tck, generation), vdd)


def _cycles(time_ps: int, tck_ps: int, generation: int) -> int:
    """Clocks for a time, by the JEDEC rounding rules (a small guard band, then up)."""
    if generation == DDR4:
        return (time_ps * 1000 // tck_ps + 974) // 1000
    return (time_ps * 997 // tck_ps + 1000) // 1000


def _keep(profile: SpdProfile | None, profiles: list[SpdProfile], ignored: list[str],
          name: str, tck: int) -> None:
    if profile is None:
        ignored.append(f"{name} is enabled but its cycle time ({tck} ps) is no memory speed")
    else:
        profiles.append(profile)


def _crc_problem(data: bytes, end: int) -> str | None:
    stored = _u16(data, end)
    computed = crc16(data[:end])
    if stored == computed:
        return None
    return (f"the CRC of bytes 0-{end - 1} is 0x{computed:04X} but the image says "
            f"0x{stored:04X}: damaged, or not an SPD image")


def _maker(data: bytes, at: int, part: slice) -> dict:
    """Module manufacturer and part number fields (JEP106 bank byte, then code)."""
    bank, code = data[at], data[at + 1]
    return {
        "manufacturer_id": bank << 8 | code,
        "manufacturer": MANUFACTURERS.get((bank & 0x7F, code & 0x7F)),
        "part_number": _ascii(data[part]),
    }


def _ascii(raw: bytes) -> str | None:
    """A text field: up to the first NUL, spaces trimmed; None if empty or not text."""
    text = raw.split(b"\x00", 1)[0].strip(b" \xff")
    if not text or any(byte < 0x20 or byte > 0x7E for byte in text):
        return None
    return text.decode("ascii")


def _shown(raw: bytes) -> str:
    """Bytes as text where printable, for a message about what sits there."""
    return "".join(chr(b) if 0x20 <= b <= 0x7E else "." for b in raw).rstrip(".") or raw.hex()


def _u16(data: bytes, at: int) -> int:
    return data[at] | data[at + 1] << 8

"""Rated speed from part numbers, against every part number in the real corpus.

The strings were collected with
``grep -h 'Part Number:' corpus/dmidecode/*.txt`` and ``grep PART_NUMBER corpus/udev/*``;
each comment names the dmidecode file and the ``Speed:`` (JEDEC) it printed, so the
OEM rows can be seen to agree with what the firmware reported.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from q3cn_doctor.parsers.partnumbers import (
    HIGH,
    JEDEC,
    KIT,
    LOW,
    MEDIUM,
    PartRating,
    generation,
    rated_speed,
)
from q3cn_doctor.parsers.spd import decode_spd

SPD = Path(__file__).parent / "fixtures" / "spd"

# Every distinct corpus part number the tables know, with the exact expected answer.
KNOWN = [
    # Retail kits: the part names the XMP/EXPO speed; dmidecode shows JEDEC.
    ("KF552C40-32", 5200, KIT, HIGH, "Kingston"),  # 001-ddr5-z790-13900kf (Speed 4800)
    ("CMK64GX5M2B5200C40", 5200, KIT, HIGH, "Corsair"),  # 002-ddr5-b650m-7950x3d (4800)
    ("CMK64GX5M2B6000C40", 6000, KIT, HIGH, "Corsair"),  # 005-ddr5-z690-12600k (4800)
    ("F5-5600J4040D24G", 5600, KIT, HIGH, "G.Skill"),  # 006-ddr5-b650e-7800x3d (5600)
    ("F5-6400J3239G32G", 6400, KIT, HIGH, "G.Skill"),  # 007-ddr5-msi-7800x3d-6400kit (4800)
    ("CMK64GX5M2B5600C40", 5600, KIT, HIGH, "Corsair"),  # 008-ddr5-z790-13900k (5600)
    ("CMT32GX5M2B5200Z40", 5200, KIT, HIGH, "Corsair"),  # 009-ddr5-msi-13700k (5200)
    ("CMT32GX5M2X6200C36", 6200, KIT, HIGH, "Corsair"),  # 010-ddr5-z690-12900ks (6400)
    ("F5-6000J3040G32G", 6000, KIT, HIGH, "G.Skill"),  # 011-ddr5-x870e-7900x3d (6000)
    ("F5-6000J3038F16G", 6000, KIT, HIGH, "G.Skill"),  # 012-ddr5-b650-7800x3d-expo (4800)
    ("CMH32GX5M2B6400C36", 6400, KIT, HIGH, "Corsair"),  # 013-ddr5-b650m-9600x-expo (4800)
    ("UD5-6000", 6000, KIT, MEDIUM, "TeamGroup"),  # 014-ddr5-14400f-1dimm (4800)
    ("KF556R36-32", 5600, KIT, HIGH, "Kingston"),  # 016-ddr5-trx50-7960x-rdimm (4800)
    ("KF552C40-16", 5200, KIT, HIGH, "Kingston"),  # 017-ddr5-b650-7600x (3600)
    ("CMH32GX4M2D3600C18", 3600, KIT, HIGH, "Corsair"),  # 022-ddr4-z690i-12600k (3467)
    ("CMK16GX4M2D3600C18", 3600, KIT, HIGH, "Corsair"),  # 023-ddr4-msi-12600k (3600)
    ("CMK16GX4M2Z3200C16", 3200, KIT, HIGH, "Corsair"),  # 024-ddr4-b660-13700kf (2667)
    ("F4-3200C16-8GVGB", 3200, KIT, HIGH, "G.Skill"),  # 024-ddr4-b660-13700kf (2133)
    ("CMW32GX4M2C3200C16", 3200, KIT, HIGH, "Corsair"),  # 028-ddr4-msi-13900k (2133)
    ("CMW32GX4M2E3200C16", 3200, KIT, HIGH, "Corsair"),  # 028-ddr4-msi-13900k (2133)
    ("CMK32GX4M4A2400C14", 2400, KIT, HIGH, "Corsair"),  # 029-ddr4-x99-5820k (2666)
    ("CMK16GX4M2B3200C16", 3200, KIT, HIGH, "Corsair"),  # 030-ddr4-dmi30-maximus-ix (3200)
    ("F3-1866C10-8GAB", 1866, KIT, HIGH, "G.Skill"),  # 063-odd-speed-1-mts (667)
    ("BLT8G4D26AFTA.16FBD", 2666, KIT, HIGH, "Crucial"),  # udev/001-lenovo-thinkcentre-m720s
    # JEDEC modules: the part names the JEDEC speed dmidecode also shows.
    ("CT32G56C46U5.M16D1", 5600, JEDEC, HIGH, "Crucial"),  # 003-ddr5-b650-7500f (5600)
    ("M323R4GA3DB0-CWMOD", 5600, JEDEC, HIGH, "Samsung"),  # 004-ddr5-z790-14900ks (5600)
    ("M378A5244CB0-CRC", 2400, JEDEC, HIGH, "Samsung"),  # 020-ddr4-thinkcentre-i3-6100 (2400)
    ("HMA81GU6JJR8N-VK", 2666, JEDEC, HIGH, "SK hynix"),  # 026-ddr4-optiplex7050 (2667)
    ("HMA81GU6AFR8N-UH", 2400, JEDEC, HIGH, "SK hynix"),  # 026-ddr4-optiplex7050 (2400)
    ("72ASS8G72LZ-2G6D2", 2666, JEDEC, HIGH, "Micron"),  # 027-ddr4-wrx80-5975wx (2667)
    ("M386A4G40DM0-CPB", 2133, JEDEC, HIGH, "Samsung"),  # 027-ddr4-wrx80-5975wx (2133)
    ("HMCG66AGBSA092N", 5600, JEDEC, MEDIUM, "SK hynix"),  # 041-ddr5-sodimm-g15 (5600)
    ("M425R1GB4DB0-CWMOL", 5600, JEDEC, HIGH, "Samsung"),  # 042-ddr5-sodimm-t16g2 (5600)
    ("M425R2GA3BB0-CWMOD", 5600, JEDEC, HIGH, "Samsung"),  # 042-ddr5-sodimm-t16g2 (5600)
    ("M425R1GB4BB0-CWMOD", 5600, JEDEC, HIGH, "Samsung"),  # 044-ddr5-sodimm-legion (5600)
    ("HMT325S6CFR8C-PB", 1600, JEDEC, HIGH, "SK hynix"),  # 046-ddr3-ux32vd (1600 MHz)
    ("M321R8GA0BB0-CQKZJ", 4800, JEDEC, HIGH, "Samsung"),  # 048-server-epyc9654 (4800)
    ("MTC10F1084S1RC48BA1", 4800, JEDEC, HIGH, "Micron"),  # 049-server-precision7960 (4800)
    ("HMA82GR7AFR8N-VK", 2666, JEDEC, HIGH, "SK hynix"),  # 050-server-r440 (2666)
    ("M393B5273CH0-CH9", 1333, JEDEC, HIGH, "Samsung"),  # 053-server-r810 (1333)
    ("M393B5273CH0-YH9", 1333, JEDEC, HIGH, "Samsung"),  # 053-server-r810 (1333)
    ("M393A4K40CB2-CTD", 2666, JEDEC, HIGH, "Samsung"),  # 054-server-mz71-epyc7502 (2666)
    ("HMAA8GR7AJR4N-WM", 2933, JEDEC, HIGH, "SK hynix"),  # 054-server-mz71-epyc7502 (2933)
    # 057 prints 1066 MHz: an SMBIOS 3.0 table giving the running speed, not the module's.
    ("HMT41GR7AFR8A-PB", 1600, JEDEC, HIGH, "SK hynix"),  # 057-server-supermicro-x8
    ("TEAMGROUP-SD4-2400", 2400, JEDEC, MEDIUM, "TeamGroup"),  # 059-dmi210-ddr4-laptop (2400)
    ("FL1600D3S11SL-2G", 1600, JEDEC, MEDIUM, "Foxline"),  # 064-odd-speed-65535-mts (1600)
    ("9ASF1G72PZ-3G2E2", 3200, JEDEC, HIGH, "Micron"),  # 080-server-r640 (3200)
    ("HMT42GR7AFR4A-PB", 1600, JEDEC, HIGH, "SK hynix"),  # 081-server-r620 (1600 MHz)
    ("18ASF2G72PDZ-2G3B1", 2400, JEDEC, HIGH, "Micron"),  # 083-server-dss7500 (2400 MHz)
    # 087 prints 1067 MHz, likewise the running speed of an old table.
    ("HMT125S6BFR8C-H9", 1333, JEDEC, HIGH, "SK hynix"),  # 087-old-dmi210-freebsd
    ("M471A2K43CB1-CTD", 2666, JEDEC, HIGH, "Samsung"),  # 091-arm64-huawei-kunpeng920 (2666)
    ("M378A1K43CB2-CTD", 2666, JEDEC, HIGH, "Samsung"),  # udev/002-lenovo-thinkpad-x280
    ("HMT41GU7AFR8C-PB", 1600, JEDEC, HIGH, "SK hynix"),  # udev/003-hp-z600
]

# Corpus part numbers with no speed we know how to read: None, never a guess.
UNKNOWN = [
    "9965788-052.A00G",  # 015-ddr5-trx50-7980x: Kingston's internal DIMM number
    "M5UV-AGS2JC0P-B",  # 018-ddr5-boxx-13900k: InnoDisk
    "DDR4 2666 2OZ",  # 019-ddr4-b450-ryzen2600: an A-DATA free-text field
    "GDG8GBA8L266",  # 031-ddr4-z590
    "HCNNNCPMBLHR-NEE",  # 032-lpddr4x-swift3: soldered LPDDR, no module
    "MT53E2G32D8QD-046",  # 033-lpddr4x-xps13-7390
    "K3LKBKB0BM-MGCP",  # 035-lpddr5-x1carbon-g10
    "MT62F2G32D4DS-026",  # 036-lpddr5-zenbook14
    "H58G66BK7BX067",  # 047-lpddr5-yoga9
    "809081-081",  # 051-server-dl380g9: HPE spare number
    "647647-071",  # 084-server-dl380pg8
    "840758-191",  # 089-server-dl385g10
    "HYMP512F72CP8N3-Y5",  # 055-fbdimm-xw8600: DDR2
    "0x48594D5035313241373243503844332D5335",  # 056-fbdimm-macpro3: DDR2, hex-printed
    "0x202020202020202020202020202020202020",  # 056-fbdimm-macpro3: blank, hex-printed
    "0x000000000000000000000000000000000000",  # 056-fbdimm-macpro3
    "9905428-095.D00LF",  # 046-ddr3-ux32vd
    "SUPERTALENT02",  # 065-flash-in-type17-compaq6005
    "P48808GSHCRN-VK",  # 088-t-memory-only-no-header-positivo
    "123456789012345678",  # 034-lpddr4-celeron-n4020: firmware placeholder
    "ModulePartNumber01",  # 057-server-supermicro-x8: placeholder
    "Not Specified", "NOT AVAILABLE", "To Be Filled By O.E.M.", "Unknown", "[Empty]",
    "D5U0852382B-K69",  # SPD 008: OLOy
    "KD58GU880-56G4600",  # SPD 009: KLEVV
    "HP32D4R2D4HCI-64",  # SPD 024: Kingston for HP
    "HOT GRIZZLY",  # SPD 028: a re-flashed module
]

# The forms the issue names, not all of which occur in the corpus.
ISSUE_EXAMPLES = [
    ("F5-6000J3636F16G", 6000, KIT, HIGH, "G.Skill"),
    ("F4-3200C16-8GVKB", 3200, KIT, HIGH, "G.Skill"),
    ("CMK32GX5M2B6000C36", 6000, KIT, HIGH, "Corsair"),
    ("KF560C36BBEK2-32", 6000, KIT, HIGH, "Kingston"),  # the kit ...
    ("KF560C36-16", 6000, KIT, HIGH, "Kingston"),  # ... and what its DIMMs store
    ("KF432C16BB/8", 3200, KIT, HIGH, "Kingston"),
    ("TF10D416G3200HC16CDC01", 3200, KIT, HIGH, "TeamGroup"),
    ("CTCED532G6000HC38ADC01", 6000, KIT, HIGH, "TeamGroup"),  # SPD 001's retail kit
    ("BL2K16G36C16U4B", 3600, KIT, HIGH, "Crucial"),
    ("CT16G4DFRA32A", 3200, JEDEC, HIGH, "Crucial"),
    ("CT8G4SFS8266", 2666, JEDEC, HIGH, "Crucial"),
    ("PVS532G600C36K", 6000, KIT, HIGH, "Patriot"),
    ("AX5U6000C3016G", 6000, KIT, HIGH, "ADATA"),
    ("AD4U320016G22-SGN", 3200, JEDEC, HIGH, "ADATA"),
    ("M425R1GB4BB0-CQK", 4800, JEDEC, HIGH, "Samsung"),
    ("HMCG78AGBUA081N", 5600, JEDEC, MEDIUM, "SK hynix"),
    ("HMCG88AEBRA107N", 4800, JEDEC, MEDIUM, "SK hynix"),
    ("MTC8C1084S1UC48BA1", 4800, JEDEC, HIGH, "Micron"),
    ("KVR32N22S8/8", 3200, JEDEC, HIGH, "Kingston"),
    ("KVR48U40BS8-16", 4800, JEDEC, HIGH, "Kingston"),
    ("CMV8GX4M1A2400C16", 2400, JEDEC, HIGH, "Corsair"),
    ("CMSX16GX4M2A2666C18", 2666, KIT, MEDIUM, "Corsair"),
]


# Part numbers as real modules store them, from the linuxhw/DMI hardware-probe collection
# (github.com/linuxhw/DMI; the path after each is the listing, the Speed: it printed);
# tests/fixtures/dmidecode-world/SOURCES.tsv names the commits of those kept whole.
WORLD = [
    # Crucial Pro: 5600 CL46 is JEDEC, the 6000 CL36 "Pro OC" an XMP/EXPO kit.
    ("CP16G60C36U5B.M8D1", 6000, KIT, HIGH, "Crucial"),  # X870 GAMING X WIFI7/94B02FC44F0A
    ("CP48G56C46U5.C16B", 5600, JEDEC, HIGH, "Crucial"),  # ProArt X870E/51C1E1B3FF8E (5600)
    ("CP16G4DFRA32A.M8FF", 3200, JEDEC, HIGH, "Crucial"),  # B450M Steel Legend/A4079370DCF1
    # GOODRAM: IRDM (IR-, IRX, IRP) kits, GR standard modules.
    ("IR-6800D564L34/32G", 6800, KIT, HIGH, "GOODRAM"),  # X870 Steel Legend/4439540100D6
    ("IR-6000D564L30S/16G", 6000, KIT, HIGH, "GOODRAM"),  # B650M Pro RS WiFi/1651F213FD96
    ("IRX3200D464L16SA/8G", 3200, KIT, HIGH, "GOODRAM"),  # PRIME B550-PLUS/BC76D68E4DB0
    ("IRP3600D4V64L17S/8G", 3600, KIT, HIGH, "GOODRAM"),  # B450M Pro4/FA7F2FFCDD70 (2133)
    ("GR3200S464L22/16G", 3200, JEDEC, HIGH, "GOODRAM"),  # EXPERTBOOK B7402FEA (3200)
    ("GR5600S564L46S/16G", 5600, JEDEC, HIGH, "GOODRAM"),  # TUF A16 FA617NSR (5600)
    # Lexar: ARES/THOR (B, E, F; LD5U..C34) kits, A/D and S lines JEDEC.
    ("LD5EU016G-6400LA", 6400, KIT, MEDIUM, "Lexar"),  # Biostar B650MP-E/1CCB80E3DCC6
    ("LD5BU016G-6000LA", 6000, KIT, MEDIUM, "Lexar"),  # MSI MS-7E12/391C3B3290EA (5600)
    ("LD5FU016G-6000GA", 6000, KIT, MEDIUM, "Lexar"),  # PRIME Z790-P WIFI/10D2C41E4A4C
    ("LD5U16G72C34LA", 7200, KIT, MEDIUM, "Lexar"),  # X670 GAMING X AX V2/D52B70987055
    ("LD4AS016G-3200ST", 3200, JEDEC, MEDIUM, "Lexar"),  # VivoBook TP420UA (3200)
    ("LD4AU016G-H3200GST", 3200, JEDEC, MEDIUM, "Lexar"),  # H410M-HVS/2689992D03F4
    ("LD4S16G32C22ST", 3200, JEDEC, MEDIUM, "Lexar"),  # ENVY x360 15-ee0xxx (3200)
    ("LD5S16G56C46ST", 5600, JEDEC, MEDIUM, "Lexar"),  # NucBox K9/4DD1025D99AE (5600)
    # Patriot Signature (JEDEC) and the Viper DDR5 SPD field.
    ("PSD516G480081S", 4800, JEDEC, HIGH, "Patriot"),  # TUF A16 FA617XS (4800)
    ("PSD532G56002", 5600, JEDEC, HIGH, "Patriot"),  # Z790 GAMING X AX/9B73C6FA055E
    ("7400 C36 Series", 7400, KIT, LOW, "Patriot"),  # Biostar B650MP-E/1CCB80E3DCC6
    # PNY and Silicon Power.
    ("MD16GSD54800-BLK", 4800, JEDEC, MEDIUM, "PNY"),  # NTT KOMPUTER W 900M/14F7E218B0CC
    ("MD16GSD43200-SI", 3200, JEDEC, MEDIUM, "PNY"),  # A520M-HVS/1D45017CA7EE (3200)
    ("SP016GXLZU320BSA", 3200, KIT, MEDIUM, "Silicon Power"),  # PRIME B460-PLUS (2666)
    ("SP008GXLZU266BSA", 2666, KIT, MEDIUM, "Silicon Power"),  # PRIME X370-PRO/38B9903E1158
    ("SP008GBLFU240B02", 2400, JEDEC, MEDIUM, "Silicon Power"),  # A320M-HDV/274E53756958
    # Kingston FURY DDR4 as its DIMMs store it, HyperX, FURY Impact SO-DIMMs.
    ("KF3200C16D4/16GX", 3200, KIT, HIGH, "Kingston"),  # ARDOR RAGE H290/63758CE2ADB0
    ("KF3600C18D4/16GX", 3600, KIT, HIGH, "Kingston"),  # B550 PG4-ac/22C412AC4414 (2400)
    ("KHX3200C16D4/8GX", 3200, KIT, HIGH, "Kingston"),  # A520M-ITX-ac/66E95AC627D7
    ("KF3200C20S4/16GX", 3200, JEDEC, MEDIUM, "Kingston"),  # EXPERTBOOK B3302FEA (3200)
    ("KF548S38-16", 4800, JEDEC, MEDIUM, "Kingston"),  # UM690/2726327D9110 (4800)
    # ADATA XPG Lancer, Corsair's 2024 numbers, GeIL, Transcend, an MRDIMM.
    ("AX5U7200C3416G-BLARBK", 7200, KIT, HIGH, "ADATA"),  # STRIX X670E-E/851C9E13C424
    ("CMK5X32G2B52C40A2", 5200, KIT, MEDIUM, "Corsair"),  # STRIX Z790-A S/5AB6DBBD216A
    ("CMS5X16G1A48C40A2-PC", 4800, JEDEC, MEDIUM, "Corsair"),  # MP 17 Recoil/F99D6367AE14
    ("CL38-44-44 D5-6000", 6000, KIT, MEDIUM, "GeIL"),  # MSI MS-7E26/E38A9F04EC88 (4800)
    ("JM4800ASE-16G", 4800, JEDEC, MEDIUM, "Transcend"),  # Zephyrus G14 GA402NU (4800)
    ("MTC40F2046S1HC88XDY WCCCC", 8800, JEDEC, HIGH, "Micron"),  # BIRCHSTREAM/1F03C9158405
    ("F5-8200J4052F24G", 8200, KIT, HIGH, "G.Skill"),  # Z790 APEX ENCORE/453214F7306F
]

# Retail forms from the makers' product pages that the probe listings do not hold
# (the DIMMs store shorter numbers: UD5-6000 for a T-Force kit).
SCHEME_EXAMPLES = [
    ("FLBD516G6000HC38ADC01", 6000, KIT, HIGH, "TeamGroup"),  # T-Force Vulcan DDR5
    ("FF3D532G6000HC38ADC01", 6000, KIT, HIGH, "TeamGroup"),  # T-Force Delta RGB DDR5
    ("TLZGD416G3200HC16CDC01", 3200, KIT, HIGH, "TeamGroup"),  # T-Force Vulcan Z DDR4
    ("PVV532G600C36K", 6000, KIT, HIGH, "Patriot"),  # Viper Venom DDR5
    ("MD16GK2D4320016XRGB", 3200, KIT, MEDIUM, "PNY"),  # XLR8 Gaming EPIC-X RGB DDR4
    ("KF564C32RSK2-32", 6400, KIT, HIGH, "Kingston"),  # FURY Renegade DDR5
    ("KF582CU40RSK2-48", 8200, KIT, HIGH, "Kingston"),  # FURY Renegade CUDIMM
    ("AX5U6000C3016G-DCLABK", 6000, KIT, HIGH, "ADATA"),  # XPG Lancer
]


@pytest.mark.parametrize("part, mts, kind, confidence, vendor",
                         KNOWN + ISSUE_EXAMPLES + WORLD + SCHEME_EXAMPLES)
def test_known_part_numbers(part, mts, kind, confidence, vendor):
    assert rated_speed(part) == PartRating(mts, kind, confidence, vendor)


@pytest.mark.parametrize("part", UNKNOWN)
def test_unknown_part_numbers_give_none(part):
    assert rated_speed(part) is None


def test_the_result_unpacks_as_a_tuple():
    mts, kind, confidence, vendor = rated_speed("F5-6000J3636F16G")
    assert (mts, kind, confidence, vendor) == (6000, "xmp/expo kit", "high", "G.Skill")


@pytest.mark.parametrize("part, expected", [
    (None, None), ("", None), ("   ", None),
    ("  cmk16gx4m2b3200c16 ", 3200),  # case and padding as firmware stores them
    ("0x" + b"M378A5244CB0-CRC".hex().upper(), 2400),  # dmidecode's hex form
    ("0x4D3337", None),  # hex of a fragment
    ("F5-9999J3636F16G", None),  # a speed no memory runs at is a misread
    ("M378A5244CB0-CXX", None),  # a Samsung number with an unknown speed code
    ("HMA81GU6JJR8N-ZZ", None),
    ("3200 C16 Series", 3200),  # Patriot Viper's SPD field (SPD 020)
])
def test_normalisation_and_misreads(part, expected):
    rating = rated_speed(part)
    assert (rating.rated_mts if rating else None) == expected


@pytest.mark.parametrize("part, generation_named", [
    ("F5-6000J3636F16G", "DDR5"), ("KF560C36-16", "DDR5"), ("KF3200C16D4/8GX", "DDR4"),
    ("CMK32GX5M2B6000C36", "DDR5"), ("CMK5X32G2B52C40A2", "DDR5"), ("UD5-6000", "DDR5"),
    ("IR-6800D564L34/32G", "DDR5"), ("GR3200S464L22/16G", "DDR4"), ("LD5EU016G-6400LA", "DDR5"),
    ("KVR48U40BS8-16", "DDR5"), ("KVR32N22S8/8", "DDR4"), ("M321R8GA0BB0-CQKZJ", "DDR5"),
    ("M378A5244CB0-CRC", "DDR4"), ("HMCG78AGBUA081N", "DDR5"), ("MTC8C1084S1UC48BA1", "DDR5"),
    ("7400 C36 Series", None), ("M5UV-AGS2JC0P-B", None), (None, None),
])
def test_the_generation_a_part_number_names(part, generation_named):
    """For listings whose Type is <OUT OF SPEC>: the speeds are then read as this type."""
    assert generation(part) == generation_named


def test_the_patriot_spd_field_is_low_confidence():
    assert rated_speed("3200 C16 Series") == PartRating(3200, KIT, LOW, "Patriot")


def test_part_numbers_agree_with_their_own_spd():
    """The SPD dumps hold both the part number and the real rating: they must agree.

    A kit part number must be rated by XMP/EXPO in its SPD; a JEDEC one by JEDEC
    (Crucial's CT16G56C46U5 ships XMP/EXPO profiles, but at its JEDEC speed).
    """
    checked = 0
    for path in sorted(SPD.glob("*.bin")):
        module = decode_spd(path.read_bytes())
        rating = rated_speed(module.part_number)
        if rating is None:
            continue
        assert rating.rated_mts == module.rated_mts(), path.name
        assert (rating.kind == KIT) == (module.rated_by() in ("xmp", "expo")), path.name
        checked += 1
    assert checked == 25

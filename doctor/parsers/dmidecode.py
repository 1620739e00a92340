"""The memory inventory SMBIOS describes: ``dmidecode -t memory`` and systemd's udev copy.

SMBIOS type 16 (Physical Memory Array) and type 17 (Memory Device) records say
which slots a board has, what sits in them, the module's JEDEC speed (``Speed:``)
and the speed the firmware configured. dmidecode needs root; systemd's
``dmi_memory_id`` reads the same table at boot and exports it as udev properties
(``MEMORY_DEVICE_<n>_SPEED_MTS``...) that any user can list with ``udevadm info``.
Both parsers give the same records.

Real output comes in many dialects, and both parsers take them all without raising:
dmidecode 2.2 to 3.6 (``MHz`` before 3.1 for what is the data rate, ``Configured
Clock Speed`` before ``Configured Memory Speed``, the old two-line ``Handle`` header
with no blank lines), ``-q`` output with no handles, sizes in kB/MB/GB, tab or space
indentation (the Windows port), pasted shell prompts, CRLF and non-UTF-8 bytes.
Values firmware fills with placeholders (``Not Specified``, ``To Be Filled By
O.E.M.``, ``Array1_PartNumber0``...) or garbage (a speed of 0 or 65535, or one the
memory type cannot have) become None: they are not facts. Speeds are data rates: a
clock printed where the rate belongs (1067 for DDR4-2133) is doubled, by the type's
JEDEC range (memtypes.py); the printed number is kept beside it.
"""

from __future__ import annotations

import re

from msgspec import Struct, field
from q3cn_doctor.parsers.memtypes import ANY, configured_rate, data_rate
from q3cn_doctor.parsers.patterns import LazyPattern

SPEED_RANGE_MTS = (ANY.lowest, ANY.most)
"""A speed outside this is firmware garbage for any memory type, whatever the unit."""

SENTINELS = (0, 0xFFFF, 0x7FFF)  # SMBIOS "unknown" / "see extended field" values

_PLACEHOLDERS = {
    "", "not specified", "unknown", "none", "not provided", "not installed", "no dimm",
    "empty", "[empty]", "to be filled by o.e.m.", "fill by oem", "default string",
    "not available", "n/a", "na", "undefined", "null", "jedec id:", "unknown - unknown",
    "no module installed", "<bad index>", "<out of spec>", "other",
}
# BIOS templates that never got a value: Array1_PartNumber0, PartNum3, A1_PartNum0,
# ModulePartNumber01, Manufacturer0, Array1_Manufacturer2, SerNum0, AssetTagNum0...
_TEMPLATE = LazyPattern(
    r"^(?:A\d+_|Array\d+_|Module|DIMM\d*_?)?"
    r"(?:PartNum(?:ber)?|Manufacturer|SerNum|SerialNumber|AssetTag(?:Num)?)\d*$",
    re.IGNORECASE,
)
_ALL_ZERO_OR_F = LazyPattern(r"^(?:0x)?(?:0+|F+)$", re.IGNORECASE)
_HEX_STRING = LazyPattern(r"^0x((?:[0-9A-Fa-f]{2})+)$")

_HANDLE = LazyPattern(r"^Handle\s+(0x[0-9A-Fa-f]+)(?:\s*,\s*DMI type\s+(\d+))?", re.IGNORECASE)
_OLD_TYPE = LazyPattern(r"^DMI type\s+(\d+)\s*,", re.IGNORECASE)
_KEY_VALUE = LazyPattern(r"^[ \t]*([A-Za-z][A-Za-z0-9 ()/._-]*):(.*)$")
MAX_LINE = 1024  # no field dmidecode prints is longer; longer lines are junk, skipped
_SIZE = LazyPattern(r"^(\d+)\s*(bytes|kB|KB|KiB|MB|MiB|GB|GiB|TB|TiB)\b", re.IGNORECASE)
_SPEED = LazyPattern(r"^(\d+)(?:\.\d+)?\s*(MT/s|MHz)", re.IGNORECASE)
_BITS = LazyPattern(r"^(\d+)(?:\s*bits?\b|$)", re.IGNORECASE)
_UNITS = {"bytes": 1, "kb": 2**10, "kib": 2**10, "mb": 2**20, "mib": 2**20, "gb": 2**30,
          "gib": 2**30, "tb": 2**40, "tib": 2**40}

# Title lines (``-q`` output has no Handle lines, so a title starts a record).
TITLES = {
    "Memory Controller Information": 5,
    "Memory Module Information": 6,
    "Physical Memory Array": 16,
    "Memory Device": 17,
    "32-bit Memory Error Information": 18,
    "Memory Array Mapped Address": 19,
    "Memory Device Mapped Address": 20,
    "64-bit Memory Error Information": 33,
}
NON_VOLATILE_TYPES = {"flash", "rom", "eprom", "eeprom", "feprom", "prom"}


class MemoryArray(Struct):
    """One SMBIOS type 16 record: a set of slots and what it is for."""

    handle: str | None
    location: str | None
    use: str | None  # "System Memory", or "Flash Memory" for a BIOS ROM array
    error_correction: str | None
    max_capacity_bytes: int | None
    devices: int | None  # the slot count it declares

    @property
    def system_memory(self) -> bool:
        return self.use is None or self.use.lower() == "system memory"


class MemoryDevice(Struct):
    """One SMBIOS type 17 record: a slot, with its module when one is installed."""

    handle: str | None
    array_handle: str | None
    locator: str | None
    bank_locator: str | None
    size_bytes: int | None  # None: empty slot or unknown size
    type: str | None  # as printed: DDR4, DDR5, LPDDR5, <OUT OF SPEC>...
    type_detail: str | None
    form_factor: str | None
    rank: int | None
    total_width: int | None
    data_width: int | None
    speed_mts: int | None  # the ``Speed:`` line as a data rate: the module's SPD/JEDEC speed
    configured_mts: int | None  # the configured speed as a data rate
    manufacturer: str | None
    part_number: str | None
    installed: bool
    non_volatile: bool = False  # a flash or BIOS ROM the firmware lists as a memory device
    speed_printed: int | None = None  # the numbers as printed (a clock where firmware
    configured_printed: int | None = None  # wrote one), sentinels removed


class MemoryInventory(Struct):
    """Every type 16 and 17 record of one listing, in order."""

    arrays: list[MemoryArray] = field(default_factory=list)
    devices: list[MemoryDevice] = field(default_factory=list)

    def slots(self) -> list[MemoryDevice]:
        """The RAM slots: every device but flash/ROM and those of non-RAM arrays."""
        flash_arrays = {a.handle for a in self.arrays if a.handle and not a.system_memory}
        return [d for d in self.devices
                if not d.non_volatile and (d.array_handle is None
                                           or d.array_handle not in flash_arrays)]

    def modules(self) -> list[MemoryDevice]:
        """The installed RAM modules."""
        return [d for d in self.slots() if d.installed]


# -- value cleaning --------------------------------------------------------------------------

def clean_text(value: str | None) -> str | None:
    """A DMI string, or None where firmware left a placeholder."""
    if value is None:
        return None
    text = value.replace("\x00", "").strip()
    hex_form = _HEX_STRING.match(text)
    if hex_form:  # dmidecode prints a string with control bytes in hex: 0x2020... is spaces
        try:
            decoded = bytes.fromhex(hex_form.group(1)).decode("ascii").strip()
        except (UnicodeDecodeError, ValueError):
            decoded = text
        if decoded.isprintable():
            text = decoded
    if (text.lower() in _PLACEHOLDERS or _TEMPLATE.match(text) or _ALL_ZERO_OR_F.match(text)
            or set(text) <= {" ", ".", "-", "_", "\ufffd"}):
        return None
    return text


def printed_speed(value: str | None) -> int | None:
    """The number of ``4800 MT/s``, ``1600 MHz`` or ``200 MHz (5.0 ns)``; SMBIOS's
    "unknown" values are None."""
    match = _SPEED.match((value or "").strip())
    return valid_speed(int(match.group(1))) if match else None


def parse_speed(value: str | None, memory_type: str | None = None) -> int | None:
    """The data rate in MT/s a speed line gives for that memory type (a printed clock
    doubled); garbage is None."""
    return data_rate(memory_type, printed_speed(value))


def valid_speed(mts: int | None) -> int | None:
    """A printed number, less SMBIOS's "unknown" sentinels."""
    return None if mts is None or mts in SENTINELS else mts


def parse_size(value: str | None) -> int | None:
    """Bytes from ``16 GB``, ``8192 MB``, ``30720 kB``; None for empty slots and unknowns."""
    match = _SIZE.match((value or "").strip())
    if not match:
        return None
    number = int(match.group(1))
    return number * _UNITS[match.group(2).lower()] if number else None


MAX_WIDTH_BITS = 128  # a module's data path is 16 to 72 (80 with DDR5 ECC) bits wide


def parse_width(value: str | None) -> int | None:
    """Bits from ``64 bits``; widths no memory has (2304, 33592) are firmware garbage."""
    width = parse_int(value, _BITS)
    return width if width is None or width <= MAX_WIDTH_BITS else None


def parse_int(value: str | None, unit: re.Pattern | None = None) -> int | None:
    text = (value or "").strip()
    match = unit.match(text) if unit else re.match(r"^(\d+)$", text)
    if not match:
        return None
    number = int(match.group(1))
    return None if number in SENTINELS else number


# -- dmidecode ----------------------------------------------------------------------------

class _Record(Struct):
    """One dmidecode record: its handle, type and fields, as found."""
    handle: str | None
    type: int | None
    title: str | None = None
    fields: dict[str, str] = field(default_factory=dict)


def _records(text: str) -> list[_Record]:
    records: list[_Record] = []
    current: _Record | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or len(line) > MAX_LINE:
            continue
        handle = _HANDLE.match(stripped)
        if handle:
            current = _Record(handle.group(1).lower(),
                              int(handle.group(2)) if handle.group(2) else None)
            records.append(current)
            continue
        old_type = _OLD_TYPE.match(stripped)
        if old_type and current is not None and current.type is None and not current.fields:
            current.type = int(old_type.group(1))
            continue
        if stripped in TITLES:
            if current is None or current.title is not None or current.fields:
                current = _Record(None, TITLES[stripped])  # -q output: no Handle lines
                records.append(current)
            current.title = stripped
            if current.type is None:
                current.type = TITLES[stripped]
            continue
        pair = _KEY_VALUE.match(line)
        if pair and current is not None:
            current.fields.setdefault(pair.group(1).strip(), pair.group(2).strip())
    return records


def _array(record: _Record) -> MemoryArray:
    f = record.fields
    return MemoryArray(
        handle=record.handle,
        location=clean_text(f.get("Location")),
        use=clean_text(f.get("Use")),
        error_correction=clean_text(f.get("Error Correction Type")),
        max_capacity_bytes=parse_size(f.get("Maximum Capacity")),
        devices=parse_int(f.get("Number Of Devices")),
    )


def _device(record: _Record) -> MemoryDevice:
    f = record.fields
    size = parse_size(f.get("Size"))
    kind = clean_text(f.get("Type"))
    detail = clean_text(f.get("Type Detail"))
    form = clean_text(f.get("Form Factor"))
    locator = clean_text(f.get("Locator"))
    speed = printed_speed(f.get("Speed"))
    configured = printed_speed(f.get("Configured Memory Speed",
                                     f.get("Configured Clock Speed")))
    part = clean_text(f.get("Part Number"))
    installed = size is not None
    if not installed and (f.get("Size") or "").strip().lower() == "unknown":
        # Size unknown (0xFFFF): a module is there if anything else says so.
        installed = kind is not None and kind.lower() not in ("unknown", "<out of spec>") or bool(
            data_rate(kind, speed) or data_rate(kind, configured) or part)
    return MemoryDevice(
        handle=record.handle,
        array_handle=(f.get("Array Handle") or "").strip().lower() or None,
        locator=locator,
        bank_locator=clean_text(f.get("Bank Locator")),
        size_bytes=size,
        type=_raw_type(f.get("Type")),
        type_detail=detail,
        form_factor=form,
        rank=parse_int(f.get("Rank")),
        total_width=parse_width(f.get("Total Width")),
        data_width=parse_width(f.get("Data Width")),
        speed_mts=data_rate(kind, speed),
        configured_mts=configured_rate(kind, configured, speed),
        manufacturer=clean_text(f.get("Manufacturer")),
        part_number=part,
        installed=installed,
        non_volatile=_non_volatile(kind, detail, form, locator),
        speed_printed=speed,
        configured_printed=configured,
    )


def _raw_type(value: str | None) -> str | None:
    """The memory type as printed; ``<OUT OF SPEC>`` is kept (a newer type than the
    firmware's SMBIOS knew), ``Unknown``/``Other`` become None."""
    text = (value or "").strip()
    if text.upper() == "<OUT OF SPEC>":
        return text.upper()
    return clean_text(text)


def _non_volatile(kind: str | None, detail: str | None, form: str | None,
                  locator: str | None) -> bool:
    if kind and kind.lower() in NON_VOLATILE_TYPES:
        return True
    if detail and "non-volatile" in detail.lower():
        return True
    return bool(locator and re.search(r"\b(?:SYSTEM|BIOS)\s*ROM\b", locator, re.I)
                and (form or "").lower() == "chip")


def parse_dmidecode(text: str | bytes) -> MemoryInventory:
    """The type 16 and 17 records of ``dmidecode`` or ``dmidecode -t memory`` output."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    inventory = MemoryInventory()
    for record in _records(text):
        if record.type == 16:
            inventory.arrays.append(_array(record))
        elif record.type == 17:
            inventory.devices.append(_device(record))
    return inventory


# -- udev (systemd dmi_memory_id) -------------------------------------------------------

UDEV_COMMAND = ["udevadm", "info", "--query=property", "--path=/sys/devices/virtual/dmi/id"]
UDEV_DATABASE = "/run/udev/data/+dmi:id"  # the same properties as "E:KEY=VALUE" lines

_UDEV_LINE = LazyPattern(r"^\s*(?:E:\s*)?([A-Z0-9_]+)=(.*)$")
_UDEV_DEVICE = LazyPattern(r"^MEMORY_DEVICE_(\d+)_([A-Z0-9_]+)$")


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return re.sub(r"\\x([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value)


def parse_udev_properties(text: str | bytes) -> MemoryInventory:
    """``udevadm info --query=property`` (or ``--export``, or the udev database file)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    arrays: list[dict[str, str]] = []
    devices: dict[int, dict[str, str]] = {}
    for line in text.splitlines():
        match = _UDEV_LINE.match(line)
        if not match:
            continue
        key, value = match.group(1), _unquote(match.group(2))
        device = _UDEV_DEVICE.match(key)
        if device:
            try:
                index = int(device.group(1))
            except ValueError:
                continue
            devices.setdefault(index, {}).setdefault(device.group(2), value)
        elif key.startswith("MEMORY_ARRAY_"):
            name = key[len("MEMORY_ARRAY_"):]
            if not arrays or name in arrays[-1]:  # a repeated key starts the next array
                arrays.append({})
            arrays[-1][name] = value
    inventory = MemoryInventory()
    for fields in arrays:
        inventory.arrays.append(MemoryArray(
            handle=None,
            location=clean_text(fields.get("LOCATION")),
            use=clean_text(fields.get("USE")),
            error_correction=clean_text(fields.get("EC_TYPE")),
            max_capacity_bytes=_udev_int(fields.get("MAX_CAPACITY")),
            devices=_udev_int(fields.get("NUM_DEVICES")),
        ))
    for index in sorted(devices):
        fields = devices[index]
        kind = clean_text(fields.get("TYPE"))
        detail = clean_text(fields.get("TYPE_DETAIL"))
        form = clean_text(fields.get("FORM_FACTOR"))
        locator = clean_text(fields.get("LOCATOR"))
        size = _udev_int(fields.get("SIZE"))
        present = fields.get("PRESENT", "1").strip() != "0"
        speed = valid_speed(_udev_int(fields.get("SPEED_MTS")))
        configured = valid_speed(_udev_int(fields.get("CONFIGURED_SPEED_MTS")))
        inventory.devices.append(MemoryDevice(
            handle=None,
            array_handle=None,
            locator=locator,
            bank_locator=clean_text(fields.get("BANK_LOCATOR")),
            size_bytes=size if present else None,
            type=_raw_type(fields.get("TYPE")),
            type_detail=detail,
            form_factor=form,
            rank=_udev_int(fields.get("RANK")),
            total_width=parse_width(fields.get("TOTAL_WIDTH")),
            data_width=parse_width(fields.get("DATA_WIDTH")),
            speed_mts=data_rate(kind, speed),
            configured_mts=configured_rate(kind, configured, speed),
            manufacturer=clean_text(fields.get("MANUFACTURER")),
            part_number=clean_text(fields.get("PART_NUMBER")),
            installed=present and bool(size),
            non_volatile=_non_volatile(kind, detail, form, locator),
            speed_printed=speed,
            configured_printed=configured,
        ))
    return inventory


def _udev_int(value: str | None) -> int | None:
    text = (value or "").strip()
    if not text.isdecimal():
        return None
    number = int(text)
    return None if number in SENTINELS else number

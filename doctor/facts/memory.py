"""The memory section: RAM, swap, swappiness, huge pages, and the modules' speed.

The modules come from the first source that answers: ``dmidecode -t memory``
(root), the udev properties systemd exports to every user, then the SPD EEPROMs
alone. What the modules are sold for (``rated_mts``) comes from their SPD XMP/EXPO
profiles, else their part numbers, else a speed the user states (``--ram-rated``),
else dmidecode's JEDEC ``Speed:``. ``basis`` says which, and why the others failed.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from q3cn_doctor.host.base import ABSENT, Host
from q3cn_doctor.options import Options
from q3cn_doctor.parsers.dmidecode import (
    UDEV_COMMAND,
    UDEV_DATABASE,
    MemoryDevice,
    MemoryInventory,
    parse_dmidecode,
    parse_udev_properties,
)
from q3cn_doctor.parsers.patterns import LazyPattern
from q3cn_doctor.parsers.procfs import bounded_int, parse_meminfo, parse_thp

if TYPE_CHECKING:
    from q3cn_doctor.parsers.spd import SpdModule

    from . import Facts

KIB = 1024


@dataclass
class SwapDevice:
    path: str
    kind: str  # "partition", "file", "zram" (compressed RAM, not disk) or "unknown"
    size_bytes: int
    used_bytes: int
    priority: int | None


@dataclass
class HugePagePool:
    page_size_bytes: int
    total: int
    free: int
    reserved: int  # promised to a mapping but not yet faulted in

    @property
    def bytes(self) -> int:
        return self.page_size_bytes * self.total


@dataclass
class MemoryModule:
    """One installed module (or soldered LPDDR channel) as SMBIOS or its SPD describes it."""

    locator: str | None
    bank_locator: str | None
    size_bytes: int | None
    type: str | None  # as printed: DDR4, DDR5, LPDDR5, <OUT OF SPEC>...
    form_factor: str | None
    rank: int | None
    data_width: int | None
    speed_mts: int | None  # dmidecode's Speed: the module's SPD/JEDEC speed
    configured_mts: int | None
    manufacturer: str | None
    part_number: str | None
    channel: str | None = None  # the memory channel its locator names (A, P0-B, C1-A...)
    rated_mts: int | None = None  # what its part number says it is sold for
    rated_by: str | None = None  # "xmp/expo kit" or "jedec", per the part number


@dataclass
class SpdReading:
    """One SPD EEPROM the kernel exposes, decoded (doctor/spd.py)."""

    path: str
    memory_type: str | None
    module_type: str | None
    size_bytes: int | None
    manufacturer: str | None
    part_number: str | None
    jedec_mts: int | None
    rated_mts: int | None
    rated_by: str | None  # xmp, expo or jedec
    profiles: list[str]
    undecodable: str | None


@dataclass
class MemoryFacts:
    total_bytes: int | None
    available_bytes: int | None
    swap: list[SwapDevice]
    swappiness: int | None
    hugepage_pools: list[HugePagePool]
    hugetlb_bytes: int | None  # RAM set aside for hugetlb pages: llama.cpp cannot use it
    thp_enabled: str | None  # transparent huge pages: always, madvise or never
    basis: dict[str, str] = field(default_factory=dict)
    source: str = "none"  # where the modules came from: dmidecode, udev, spd or none
    modules: list[MemoryModule] = field(default_factory=list)
    slots: int | None = None
    configured_mts: int | None = None  # the minimum over populated modules, as printed
    jedec_mts: int | None = None  # the modules' JEDEC speed (minimum)
    rated_mts: int | None = None  # what the modules are sold for (minimum over modules)
    rated_source: str | None = None  # spd, part-number, user or dmidecode
    rated_confidence: str | None = None  # high, medium or low
    rated_profile: str | None = None  # XMP, EXPO, XMP/EXPO (a kit), JEDEC
    soldered: bool | None = None  # LPDDR on the board: runs at what the platform sets
    channels: int | None = None  # 64-bit channels in use
    board_channels: int | None = None  # 64-bit channels the slots offer, where the locators say
    theoretical_bytes_per_s: float | None = None  # configured MT/s x 8 bytes x channels
    measured: dict | None = None  # --measure: multi-threaded read bandwidth (doctor/bandwidth.py)
    spd: list[SpdReading] = field(default_factory=list)
    how_to: str | None = None  # where module data is missing: exactly how to get it

    @property
    def disk_swap(self) -> list[SwapDevice]:
        return [device for device in self.swap if device.kind != "zram"]


def theoretical_bandwidth(mts: float, channels: int, bus_bytes: int = 8) -> float:
    """Peak transfer rate in bytes/s: transfers per second x channels x bytes per transfer.

    A channel is 64 bits (8 bytes) wide: one DDR4 DIMM slot's channel, or the two
    32-bit subchannels of a DDR5 DIMM together. DDR5-6000 in two channels: 96 GB/s.
    """
    return mts * 1e6 * channels * bus_bytes


def parse_swaps(text: str) -> list[SwapDevice]:
    devices = []
    for line in text.splitlines()[1:]:
        parts = line.split() + ["", "", "", ""]
        size, used = bounded_int(parts[2]), bounded_int(parts[3])
        if size is None or used is None:
            continue
        path = parts[0].replace("\\040", " ")
        kind = "zram" if re.match(r"^/dev/zram\d+$", path) else parts[1]
        priority = bounded_int(parts[4], signed=True)
        devices.append(SwapDevice(path, kind, size * KIB, used * KIB, priority))
    return devices


def _hugepage_pools(host: Host) -> list[HugePagePool]:
    pools = []
    for directory in host.glob("/sys/kernel/mm/hugepages/hugepages-*kB"):
        size = re.search(r"hugepages-(\d{1,12})kB$", directory)
        total = bounded_int(host.cat(directory + "/nr_hugepages"))
        if not size or total is None:
            continue
        pools.append(HugePagePool(
            int(size.group(1)) * KIB, total,
            bounded_int(host.cat(directory + "/free_hugepages")) or 0,
            bounded_int(host.cat(directory + "/resv_hugepages")) or 0,
        ))
    return pools


def gather(host: Host, options: Options, facts: Facts) -> MemoryFacts:
    basis: dict[str, str] = {}
    meminfo_text = host.cat("/proc/meminfo")
    meminfo = parse_meminfo(meminfo_text or "")
    if meminfo_text is not None:
        basis["total_bytes"] = "/proc/meminfo MemTotal"
        basis["available_bytes"] = "/proc/meminfo MemAvailable"

    swaps_text = host.cat("/proc/swaps")
    swap = parse_swaps(swaps_text) if swaps_text is not None else []
    basis["swap"] = "/proc/swaps" if swaps_text is not None else "unknown: no /proc/swaps"
    if swaps_text is None and meminfo.get("SwapTotal"):
        # Swap is on, but which kind is unknown: count it as disk swap rather than as none.
        total = meminfo["SwapTotal"]
        swap = [SwapDevice("SwapTotal in /proc/meminfo", "unknown", total,
                           max(0, total - meminfo.get("SwapFree", total)), None)]
        basis["swap"] = "/proc/meminfo SwapTotal (no /proc/swaps: device and kind unknown)"
    elif swaps_text is None and "SwapTotal" in meminfo:
        basis["swap"] = "/proc/meminfo SwapTotal = 0 (no /proc/swaps)"

    swappiness = bounded_int(host.sysctl("vm.swappiness"))
    basis["swappiness"] = "/proc/sys/vm/swappiness"

    pools = _hugepage_pools(host)
    basis["hugepage_pools"] = "/sys/kernel/mm/hugepages/hugepages-*kB"
    if not pools and "HugePages_Total" in meminfo and "Hugepagesize" in meminfo:
        # Without sysfs (old kernels, pasted files) meminfo describes the default pool.
        pools = [HugePagePool(meminfo["Hugepagesize"], meminfo["HugePages_Total"],
                              meminfo.get("HugePages_Free", 0), meminfo.get("HugePages_Rsvd", 0))]
        basis["hugepage_pools"] = "/proc/meminfo HugePages_* (default page size only)"
    if "Hugetlb" in meminfo:
        hugetlb: int | None = meminfo["Hugetlb"]
        basis["hugetlb_bytes"] = "/proc/meminfo Hugetlb (all page sizes)"
    elif pools:
        hugetlb = sum(pool.bytes for pool in pools)
        basis["hugetlb_bytes"] = "sum over huge page pools of pages x page size"
    else:
        hugetlb = None
        basis["hugetlb_bytes"] = "unknown: neither /proc/meminfo nor sysfs says"

    thp = parse_thp(host.cat("/sys/kernel/mm/transparent_hugepage/enabled"))
    basis["thp_enabled"] = "/sys/kernel/mm/transparent_hugepage/enabled"
    memory = MemoryFacts(
        total_bytes=meminfo.get("MemTotal"),
        available_bytes=meminfo.get("MemAvailable"),
        swap=swap,
        swappiness=swappiness,
        hugepage_pools=pools,
        hugetlb_bytes=hugetlb,
        thp_enabled=thp,
        basis=basis,
    )
    try:  # the swap and hugepage checks must not lose their facts to a module-listing bug
        gather_modules(host, options, memory)
    except Exception as exc:  # noqa: BLE001 - reported in the basis, judged by memory.speed
        memory.basis["source"] = f"failed: {type(exc).__name__}: {exc}"
    return memory


# -- modules, rated speed, channels --------------------------------------------------------

DMIDECODE_COMMAND = ["dmidecode", "-t", "memory"]
ROOT_HINT = "run `sudo q3cn-doctor check` (dmidecode and the SPD EEPROMs need root)"
_SOLDERED_FORMS = ("row of chips", "chip", "die")
_CONFIDENCE = ("low", "medium", "high")
MAX_SLOTS_PER_CHANNEL = 3  # more slots on one "channel" means the locator names something else


def gather_modules(host: Host, options: Options, memory: MemoryFacts) -> None:
    """Fill in the module facts of ``memory`` from the first source that answers."""
    basis = memory.basis
    inventory, source, tried = _inventory(host)
    memory.spd = _spd(host)
    if memory.spd:
        basis["spd"] = "; ".join(f"{r.path}: " + (r.undecodable or ", ".join(
            [f"JEDEC {r.jedec_mts}"] + r.profiles)) for r in memory.spd)
    else:
        basis["spd"] = ("no SPD EEPROM exposed under /sys/bus/i2c/drivers/{ee1004,spd5118}: "
                        "load the driver (`sudo modprobe ee1004` for DDR4, `spd5118` for DDR5)")
    if inventory is not None:
        memory.source = source
        slots = inventory.slots()
        memory.slots = len(slots)
        memory.modules = [_module(device) for device in inventory.modules()]
        basis["source"] = tried[-1]
        if len(tried) > 1:
            basis["source"] += " (" + "; ".join(tried[:-1]) + ")"
        memory.channels, memory.board_channels, basis["channels"] = channel_layout(
            slots, memory.modules)
    else:
        memory.modules = [_spd_module(r) for r in memory.spd if r.memory_type and r.jedec_mts]
        if memory.modules:
            memory.source = "spd"
            basis["source"] = ("SPD EEPROMs only (" + "; ".join(tried) + "): no configured "
                               "speed or channel layout")
            basis["channels"] = "unknown: the SPD EEPROMs do not say which channel holds them"
        else:
            memory.source = "none"
            basis["source"] = "none: " + "; ".join(tried) + "; no SPD EEPROM readable"
            basis["channels"] = "unknown: no module listing"
    modules = memory.modules
    if memory.source in ("none", "spd"):
        memory.how_to = _how_to(host)
    _measure(host, options, memory)
    if not modules:
        basis["theoretical_bytes_per_s"] = "unknown: no module listing"
        return
    memory.soldered = all(_soldered(m) for m in modules)
    configured = [m.configured_mts for m in modules if m.configured_mts]
    memory.configured_mts = min(configured) if configured else None
    basis["configured_mts"] = (f"minimum Configured Memory Speed over {len(modules)} module(s)"
                               f" ({memory.source})" if configured else
                               f"unknown: {memory.source} gives no configured speed")
    spd_jedec = [r.jedec_mts for r in memory.spd if r.jedec_mts]
    speeds = [m.speed_mts for m in modules if m.speed_mts]
    if spd_jedec:
        memory.jedec_mts = min(spd_jedec)
        basis["jedec_mts"] = "minimum JEDEC speed of the SPD EEPROMs"
    elif speeds:
        memory.jedec_mts = min(speeds)
        basis["jedec_mts"] = f"minimum Speed: over the modules ({memory.source})"
    _rate(memory, options.ram_rated)
    if memory.configured_mts and memory.channels:
        memory.theoretical_bytes_per_s = theoretical_bandwidth(memory.configured_mts,
                                                               memory.channels)
        basis["theoretical_bytes_per_s"] = (f"{memory.configured_mts} MT/s x 8 bytes x "
                                            f"{memory.channels} channel(s)")
    else:
        basis["theoretical_bytes_per_s"] = "unknown: needs the configured speed and the channels"


def _how_to(host: Host) -> str:
    """Exactly how to get the module listing this run could not."""
    dmidecode = host.run(DMIDECODE_COMMAND)
    root = host.euid() == 0
    steps = []
    if dmidecode.state == ABSENT:
        return ("This host has no `dmidecode -t memory` answer (a --root tree runs no commands; "
                "the snapshot did not capture it): run `sudo q3cn-doctor check` on the machine, "
                "or record it with `sudo q3cn-doctor snapshot`.")
    if dmidecode.state == "not-installed":
        steps.append("install dmidecode (`sudo apt install dmidecode`, `sudo dnf install "
                     "dmidecode`)")
    if not root:
        steps.append("run `sudo q3cn-doctor check` (dmidecode and the SPD EEPROMs need root)")
    elif dmidecode.state != "not-installed":
        steps.append("this machine exposes no usable SMBIOS memory table (a VM or container "
                     "shows the host's RAM only on the host)")
    return "; ".join(steps)[:1].upper() + "; ".join(steps)[1:] + "."


def _inventory(host: Host) -> tuple[MemoryInventory | None, str, list[str]]:
    """The module listing and its source; ``tried`` says what each source answered."""
    tried: list[str] = []
    result = host.run(DMIDECODE_COMMAND)
    if result.ok:
        inventory = parse_dmidecode(result.stdout)
        if inventory.modules():
            return inventory, "dmidecode", [f"`{result.command_line}`"]
        tried.append(f"`{result.command_line}` lists no installed module")
    else:
        tried.append(result.reason())
    result = host.run(UDEV_COMMAND)
    if result.ok:
        inventory = parse_udev_properties(result.stdout)
        if inventory.modules():
            return inventory, "udev", tried + [
                f"udev properties of systemd's dmi_memory_id (`{result.command_line}`)"]
        tried.append("udev has no MEMORY_DEVICE_* properties")
    else:
        tried.append(result.reason())
        text = host.cat(UDEV_DATABASE)
        if text:
            inventory = parse_udev_properties(text)
            if inventory.modules():
                return inventory, "udev", tried + [f"udev database {UDEV_DATABASE}"]
    return None, "none", tried


# Where the kernel puts SPD EEPROM contents. The legacy ``eeprom`` driver only reads
# the first 256 bytes; it is listed so such a read is reported, not silently missed.
SPD_GLOBS = (
    "/sys/bus/i2c/drivers/ee1004/*/eeprom",
    "/sys/bus/i2c/drivers/spd5118/*/eeprom",
    "/sys/bus/i2c/drivers/eeprom/*/eeprom",
)


def find_spd(host: Host) -> list[tuple[str, SpdModule]]:
    """Every SPD EEPROM the kernel exposes, decoded, with its sysfs path."""
    return [(path, _read_spd(host, path)) for pattern in SPD_GLOBS
            for path in host.glob(pattern)]


def _read_spd(host: Host, path: str) -> SpdModule:
    from q3cn_doctor.parsers.spd import SpdModule, decode_spd  # only where one is exposed

    try:
        data = host.read_bytes(path)
    except OSError as exc:
        hint = " (run as root)" if exc.errno in (errno.EACCES, errno.EPERM) else ""
        return SpdModule(undecodable=f"cannot read it: {exc.strerror}{hint}")
    return decode_spd(data)


def _spd(host: Host) -> list[SpdReading]:
    readings = []
    for path, module in find_spd(host):
        readings.append(SpdReading(
            path=path,
            memory_type=module.memory_type,
            module_type=module.module_type,
            size_bytes=module.capacity_bytes,
            manufacturer=module.manufacturer,
            part_number=module.part_number,
            jedec_mts=module.jedec_mts,
            rated_mts=module.rated_mts(),
            rated_by=module.rated_by(),
            profiles=[f"{p.name} {p.speed_mts} CL{p.timings}" for p in module.profiles],
            undecodable=module.undecodable,
        ))
    return readings


def _module(device: MemoryDevice) -> MemoryModule:
    module = MemoryModule(
        locator=device.locator, bank_locator=device.bank_locator, size_bytes=device.size_bytes,
        type=device.type, form_factor=device.form_factor, rank=device.rank,
        data_width=device.data_width, speed_mts=device.speed_mts,
        configured_mts=device.configured_mts, manufacturer=device.manufacturer,
        part_number=device.part_number, channel=channel_of(device),
    )
    from q3cn_doctor.parsers import partnumbers  # only where modules are listed

    rating = partnumbers.rated_speed(device.part_number)
    if rating is not None:
        module.rated_mts, module.rated_by = rating.rated_mts, rating.kind
    return module


def _spd_module(reading: SpdReading) -> MemoryModule:
    address = reading.path.rstrip("/").split("/")[-2] if "/" in reading.path else reading.path
    module = MemoryModule(
        locator=f"SPD {address}", bank_locator=None, size_bytes=reading.size_bytes,
        type=reading.memory_type, form_factor=reading.module_type, rank=None, data_width=64,
        speed_mts=reading.jedec_mts, configured_mts=None, manufacturer=reading.manufacturer,
        part_number=reading.part_number,
    )
    from q3cn_doctor.parsers import partnumbers

    rating = partnumbers.rated_speed(reading.part_number)
    if rating is not None:
        module.rated_mts, module.rated_by = rating.rated_mts, rating.kind
    return module


def _soldered(module: MemoryModule) -> bool:
    return ((module.type or "").upper().startswith("LPDDR")
            or (module.form_factor or "").lower() in _SOLDERED_FORMS)


def _rate(memory: MemoryFacts, user: int | None) -> None:
    """rated_mts and how it is known: SPD, then part numbers, then the user, then SMBIOS."""
    basis, modules = memory.basis, memory.modules
    rated_spd = [r for r in memory.spd if r.rated_mts]
    user_note = f" (--ram-rated {user} not needed)" if user else ""
    if rated_spd and not memory.soldered:
        lowest = min(rated_spd, key=lambda r: r.rated_mts or 0)
        memory.rated_mts, memory.rated_source = lowest.rated_mts, "spd"
        memory.rated_profile = (lowest.rated_by or "jedec").upper()
        complete = len(rated_spd) >= len(modules) and not any(r.undecodable for r in memory.spd)
        memory.rated_confidence = "high" if complete else "medium"
        basis["rated_mts"] = (f"fastest enabled profile of the SPD EEPROM ({lowest.path}: "
                              f"{memory.rated_profile}), minimum over {len(rated_spd)} "
                              f"EEPROM(s){user_note}")
        return
    rated = [m for m in modules if m.rated_mts]
    if rated:
        from q3cn_doctor.parsers import partnumbers

        # On a tie a kit wins: reaching that speed takes its XMP/EXPO profile.
        lowest = min(rated, key=lambda m: (m.rated_mts or 0, m.rated_by != partnumbers.KIT))
        ratings = [partnumbers.rated_speed(m.part_number) for m in rated]
        confidence = min((r.confidence for r in ratings if r), key=_CONFIDENCE.index)
        if len(rated) < len(modules):
            confidence = "low"
        memory.rated_mts, memory.rated_source = lowest.rated_mts, "part-number"
        memory.rated_confidence = confidence
        kit = lowest.rated_by == partnumbers.KIT and not memory.soldered
        memory.rated_profile = "XMP/EXPO" if kit else "JEDEC"
        basis["rated_mts"] = (f"part number {lowest.part_number} "
                              f"({'an XMP/EXPO kit' if kit else 'a JEDEC part'}), minimum over "
                              f"{len(rated)} of {len(modules)} module(s) with a known part "
                              f"number{user_note}")
        return
    if user:
        memory.rated_mts, memory.rated_source, memory.rated_confidence = user, "user", "high"
        jedec = memory.jedec_mts
        memory.rated_profile = ("JEDEC" if memory.soldered or (jedec and user <= jedec)
                                else "XMP/EXPO")
        basis["rated_mts"] = "--ram-rated (or ram_rated in the config file)"
        return
    speeds = [m.speed_mts for m in modules if m.speed_mts]
    if speeds:
        memory.rated_mts, memory.rated_source = min(speeds), "dmidecode"
        memory.rated_profile = "JEDEC"
        memory.rated_confidence = "medium" if memory.soldered else "low"
        basis["rated_mts"] = (
            f"SMBIOS Speed: ({memory.source}), the JEDEC speed: " + (
                "soldered memory has no XMP/EXPO, so this is its rating" if memory.soldered else
                "an XMP/EXPO rating above it is unknown without the SPD EEPROM "
                f"({ROOT_HINT}) or --ram-rated MTS"))
        return
    basis["rated_mts"] = (f"unknown: no SPD EEPROM, no known part number, no Speed: line; "
                          f"{ROOT_HINT}, or give --ram-rated MTS")


def _measure(host: Host, options: Options, memory: MemoryFacts) -> None:
    if not options.measure:
        memory.basis["measured"] = "not measured (use --measure, or `q3cn-doctor bench memory`)"
        return
    if options.snapshot or options.root:
        memory.basis["measured"] = ("not measured: measurement is not possible on a "
                                    f"{'snapshot' if options.snapshot else '--root tree'}, "
                                    "only on the machine itself")
        return
    from q3cn_doctor.host import bandwidth

    try:
        result = bandwidth.measure_read_bandwidth(bandwidth.plan_buffer_bytes(host),
                                                  bandwidth.plan_threads(host))
    except (OSError, MemoryError, RuntimeError) as exc:
        memory.basis["measured"] = f"measurement failed: {type(exc).__name__}: {exc}"
        return
    memory.measured = result.to_json()
    memory.basis["measured"] = f"--measure: {result.method}"


# Channel names in locators, most specific first: (field, pattern, key template).
_CHANNEL_RULES = [
    ("bank_locator", LazyPattern(r"\bP(\d+)\s+CHANNEL\s+([A-Z])\b", re.I), "P{0}-{1}"),
    ("bank_locator", LazyPattern(r"\bSOCKET\s*(\d+)\s+CHANNEL\s*(\d+)", re.I), "S{0}-{1}"),
    ("locator", LazyPattern(r"\bController\s*(\d+)-Channel\s*([A-Z](?:/[A-Z])?)", re.I),
     "C{0}-{1}"),
    ("locator", LazyPattern(r"\bController\s*(\d+)-DIMM\s*([A-Z])\d*$", re.I), "C{0}-{1}"),
    ("locator", LazyPattern(r"\bController\s*(\d+)-DIMM\s*\d+$", re.I), "C{0}"),
    ("locator", LazyPattern(r"\bChannel\s*([A-Z])(?:\b|-|_)", re.I), "{0}"),
    ("locator", LazyPattern(r"^(?:(?:CPU|PROC|P)\s*(\d+)[\s_-]*)?(?:SO)?(?:DIMM|DDR\d)[\s_-]?"
                            r"([A-H])\d?$", re.I), "{0}-{1}"),
]


def channel_of(device) -> str | None:
    """The channel a slot's locator or bank locator names, or None."""
    for field_name, pattern, template in _CHANNEL_RULES:
        match = pattern.search(getattr(device, field_name) or "")
        if match:
            return template.format(*[(g or "").upper() for g in match.groups()]).lstrip("-")
    return None


def channel_layout(slots: list[MemoryDevice], modules: list[MemoryModule]
                   ) -> tuple[int | None, int | None, str]:
    """64-bit channels in use, channels the board offers, and how that was decided."""
    if not modules:
        return None, None, "unknown: no module installed"
    if all(_soldered(m) for m in modules):
        bits = 0
        assumed = False
        for module in modules:
            width = module.data_width
            if width is None or width > 32 and (module.type or "").upper()[:6] in (
                    "LPDDR4", "LPDDR5"):
                width, assumed = 16, True  # LPDDR4/5 channels are 16 bits wide
            bits += width
        channels = max(1, round(bits / 64))
        note = " (LPDDR4/5 channels taken as 16 bits where firmware says otherwise)" if assumed \
            else ""
        return channels, channels, (f"soldered memory: {len(modules)} device(s), {bits} bits "
                                    f"of data width in all = {channels} x 64-bit{note}")
    slot_keys = [channel_of(s) for s in slots]
    if any(slot_keys.count(key) > MAX_SLOTS_PER_CHANNEL for key in set(slot_keys) if key):
        # Dell's DIMM_A1..A12: the letter is the socket, not the channel.
        for module in modules:
            module.channel = None
        slot_keys = [None] * len(slots)
    keys = [m.channel for m in modules]
    board = len(set(slot_keys)) if slot_keys and all(slot_keys) else None
    if all(keys):
        named = sorted(set(keys))
        return len(named), board, (f"channels named by the locators of {len(modules)} "
                                   f"module(s): {', '.join(named)}")
    if len(modules) == 1:
        return 1, board, "one module: one channel"
    return None, board, (f"unknown: the locators of {len(modules)} modules "
                         f"({', '.join(m.locator or '?' for m in modules[:4])}) name no channel")

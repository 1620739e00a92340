"""The memory section: RAM, swap, swappiness, huge pages, and the modules' speed.

The modules come from the first source that answers: ``dmidecode -t memory``
(root), the udev properties systemd exports to every user, then the SPD EEPROMs
alone. Speeds are data rates: a clock printed where the rate belongs is doubled by the
memory type's JEDEC range (parsers/memtypes.py). What the modules are sold for
(``rated_mts``) comes from their SPD XMP/EXPO profiles, else the minimum over the
modules of what each part number says, or the module's own JEDEC ``Speed:`` where its
part number says nothing, else a speed the user states (``--ram-rated``). The
platform (the CPU model's memory controller, parsers/platforms.py) gives the speed
soldered LPDDR and JEDEC modules can reach, and the channels of servers whose
locators name slots, not channels. ``basis`` says where each value came from.
"""

from __future__ import annotations

import errno
import re
from typing import TYPE_CHECKING, Any

from msgspec import Struct, field
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
from q3cn_doctor.parsers.memtypes import RANGES, configured_rate, data_rate, family
from q3cn_doctor.parsers.patterns import LazyPattern
from q3cn_doctor.parsers.platforms import Platform, platform_of
from q3cn_doctor.parsers.procfs import bounded_int, parse_meminfo, parse_thp

if TYPE_CHECKING:
    from q3cn_doctor.parsers.spd import SpdModule

    from . import Facts

KIB = 1024


class SwapDevice(Struct):
    """One swap area: zram costs RAM, a disk area pages the model out."""
    path: str
    kind: str  # "partition", "file", "zram" (compressed RAM, not disk) or "unknown"
    size_bytes: int
    used_bytes: int
    priority: int | None


class HugePagePool(Struct):
    """One huge page size's reserved pool: RAM the model cannot use unless asked for."""
    page_size_bytes: int
    total: int
    free: int
    reserved: int  # promised to a mapping but not yet faulted in

    @property
    def bytes(self) -> int:
        return self.page_size_bytes * self.total


class MemoryModule(Struct):
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
    rated_confidence: str | None = None  # the part-number rule's confidence
    family: str | None = None  # DDR4, DDR5, LPDDR5...: printed, or named by the part number
    configured_printed: int | None = None  # as printed, where firmware wrote the clock
    registered: bool = False  # RDIMM/LRDIMM: server memory, no XMP/EXPO
    narrow: bool = False  # at most 32 bits wide, data and total: chips, not a DIMM

    @property
    def soldered(self) -> bool:
        """LPDDR on the board (or in the package): no slot, no XMP. An LPCAMM2 module
        (form factor CAMM, SMBIOS 3.7; older dmidecode prints <OUT OF SPEC>) is LPDDR too,
        but a module. Chips 16 or 32 bits wide are on the board whatever form factor the
        firmware names: a DIMM's data path is 64 bits (Steam Deck: four 32-bit LPDDR5
        devices typed <OUT OF SPEC>, form Other; Atom tablets: 16-bit DDR3 "DIMM"s)."""
        form = (self.form_factor or "").lower()
        if form in ("camm", "<out of spec>"):
            return False
        return (self.type or "").upper().startswith("LPDDR") or form in _SOLDERED_FORMS \
            or self.narrow


class SpdReading(Struct):
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


class MemoryFacts(Struct):
    """RAM as the experts meet it: size, free, swap, huge pages and the DIMMs' rated
    and configured speeds, which set the token rate."""
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
    platform: str | None = None  # the CPU's platform (Meteor Lake, EPYC 9004...), if known
    platform_mts: int | None = None  # the fastest it runs this memory, one module per channel
    clock_printed: bool = False  # the firmware printed the clock where the rate belongs
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
        # /dev/zram0, or Android's /dev/block/zram0
        kind = "zram" if re.match(r"^/dev/(?:block/)?zram\d+$", path) else parts[1]
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
    elif "MemTotal" in meminfo:
        # A kernel with hugetlbfs always lists HugePages_Total: without it (a Raspberry Pi
        # or Android kernel) nothing can be reserved.
        hugetlb = 0
        basis["hugetlb_bytes"] = "none: /proc/meminfo has no HugePages lines (no hugetlbfs)"
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
        gather_modules(host, options, memory, facts.get("cpu"))
    except Exception as exc:  # noqa: BLE001 - reported in the basis, judged by memory.speed
        memory.basis["source"] = f"failed: {type(exc).__name__}: {exc}"
    return memory


# -- modules, rated speed, channels --------------------------------------------------------

DMIDECODE_COMMAND = ["dmidecode", "-t", "memory"]
ROOT_HINT = "run `sudo q3cn-doctor check` (dmidecode and the SPD EEPROMs need root)"
_SOLDERED_FORMS = ("row of chips", "chip", "die")
_CONFIDENCE = ("low", "medium", "high")
MAX_SLOTS_PER_CHANNEL = 3  # more slots on one "channel" means the locator names something else
# The JEDEC speeds modules of a type are sold at (DDR5-6400 as CUDIMMs): a "kit" rated at
# one of them whose own Speed: reaches its rating runs there without a profile.
JEDEC_MODULES = {"DDR4": (2133, 2400, 2666, 2933, 3200), "DDR5": (4800, 5200, 5600, 6400)}


def gather_modules(host: Host, options: Options, memory: MemoryFacts,
                   cpu: Any = None) -> None:
    """Fill in the module facts of ``memory`` from the first source that answers;
    ``cpu`` (the CPU facts, where gathered) names the platform."""
    basis = memory.basis
    inventory, source, tried = _inventory(host)
    memory.spd = _spd(host)
    if memory.spd:
        basis["spd"] = "; ".join(f"{r.path}: " + (r.undecodable or ", ".join(
            [f"JEDEC {r.jedec_mts}"] + r.profiles)) for r in memory.spd)
    else:
        basis["spd"] = ("no SPD EEPROM exposed under /sys/bus/i2c/drivers/{ee1004,spd5118}: "
                        "load the driver (`sudo modprobe ee1004` for DDR4, `spd5118` for DDR5, "
                        "or `q3cn-doctor fix --only spd.driver`)")
    platform = platform_of(getattr(cpu, "model_name", None))
    if inventory is not None:
        memory.source = source
        slots = inventory.slots()
        memory.slots = len(slots)
        memory.modules = _repair_ratings([_module(device) for device in inventory.modules()])
        basis["source"] = tried[-1]
        if len(tried) > 1:
            basis["source"] += " (" + "; ".join(tried[:-1]) + ")"
        memory.channels, memory.board_channels, basis["channels"] = channel_layout(
            slots, memory.modules, platform, getattr(cpu, "sockets", None))
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
    if memory.source in ("none", "spd"):
        memory.how_to = _how_to(host)
    _measure(host, options, memory)
    if not memory.modules:
        basis["theoretical_bytes_per_s"] = "unknown: no module listing"
        return
    _speeds(memory, platform)
    _rate(memory, options.ram_rated)
    if memory.configured_mts and memory.channels:
        memory.theoretical_bytes_per_s = theoretical_bandwidth(memory.configured_mts,
                                                               memory.channels)
        basis["theoretical_bytes_per_s"] = (f"{memory.configured_mts} MT/s x 8 bytes x "
                                            f"{memory.channels} channel(s)")
    else:
        basis["theoretical_bytes_per_s"] = "unknown: needs the configured speed and the channels"


def _speeds(memory: MemoryFacts, platform: Platform | None) -> None:
    """Configured and JEDEC speeds over the modules, and what the platform allows."""
    basis, modules = memory.basis, memory.modules
    memory.soldered = all(m.soldered for m in modules)
    configured = [m.configured_mts for m in modules if m.configured_mts]
    memory.configured_mts = min(configured) if configured else None
    basis["configured_mts"] = (f"minimum Configured Memory Speed over {len(modules)} module(s)"
                               f" ({memory.source})" if configured else
                               f"unknown: {memory.source} gives no configured speed")
    clocks = [m for m in modules if m.configured_printed and m.configured_mts
              and m.configured_printed != m.configured_mts]
    if clocks:
        memory.clock_printed = True
        module = clocks[0]
        lowest = RANGES[module.family].lowest if module.family in RANGES else None
        why = (f"below {module.family}'s lowest JEDEC data rate"
               if lowest is None or module.configured_printed < lowest else
               f"{module.family}'s lowest JEDEC data rate but half the module's own Speed "
               f"({module.speed_mts})")
        basis["configured_mts"] += (
            f"; printed {module.configured_printed}, {why}: the firmware wrote the clock, "
            f"so {module.configured_mts} MT/s")
    spd_jedec = [r.jedec_mts for r in memory.spd if r.jedec_mts]
    speeds = [m.speed_mts for m in modules if m.speed_mts]
    if spd_jedec:
        memory.jedec_mts = min(spd_jedec)
        basis["jedec_mts"] = "minimum JEDEC speed of the SPD EEPROMs"
    elif speeds:
        memory.jedec_mts = min(speeds)
        basis["jedec_mts"] = f"minimum Speed: over the modules ({memory.source})"
    families = {m.family for m in modules if m.family}
    if platform is None:
        basis["platform"] = "unknown: the CPU model is not in the platform table"
        return
    memory.platform = platform.name
    limits = platform.lpddr if memory.soldered else platform.ddr
    speeds_for = [limits[f] for f in families if f in limits]
    if not families and memory.soldered and len(limits) == 1:
        # Chips no line names (<OUT OF SPEC>, an unknown part number) on a platform that
        # takes one soldered type only (Van Gogh: LPDDR5) are of that type.
        speeds_for = list(limits.values())
    memory.platform_mts = min(speeds_for) if speeds_for else None
    basis["platform"] = (f"{platform.name}: {', '.join(f'{f} {v}' for f, v in limits.items())}"
                         " MT/s (maker's specification, one module per channel)"
                         if limits else f"{platform.name}: no speed listed for this memory")


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
    from q3cn_doctor.parsers import partnumbers  # only where modules are listed

    printed = family(device.type)
    kind = printed or partnumbers.generation(device.part_number) or _family_by_speed(device)
    speed, configured = device.speed_mts, device.configured_mts
    if kind and not printed:  # <OUT OF SPEC>: read the speeds as the part number's type
        speed = data_rate(kind, device.speed_printed)
        configured = configured_rate(kind, device.configured_printed, device.speed_printed)
    module = MemoryModule(
        locator=device.locator, bank_locator=device.bank_locator, size_bytes=device.size_bytes,
        type=device.type, form_factor=device.form_factor, rank=device.rank,
        data_width=device.data_width, speed_mts=speed, configured_mts=configured,
        manufacturer=device.manufacturer, part_number=device.part_number,
        channel=channel_of(device), family=kind, configured_printed=device.configured_printed,
        registered=bool(re.search(r"\bRegistered|LRDIMM|Load Reduced",
                                  device.type_detail or "", re.I)),
        narrow=_narrow(device),
    )
    _rate_part(module)
    return module


def _narrow(device: MemoryDevice) -> bool:
    """Both widths known and at most 32 bits. One alone is not enough: an A-DATA SO-DIMM
    has been listed with Data Width 8 bits beside a Total Width of 64."""
    widths = (device.data_width, device.total_width)
    return all(widths) and max(widths) <= 32  # type: ignore[type-var]


def _family_by_speed(device: MemoryDevice) -> str | None:
    """DDR5, for a module whose type the firmware or dmidecode cannot name (<OUT OF SPEC>)
    but whose own JEDEC speed is above DDR4's highest (3200): no DDR4 module is rated so."""
    form = (device.form_factor or "").upper()
    speed = device.speed_printed or 0
    return "DDR5" if form in ("DIMM", "SODIMM") and 3200 < speed <= 8800 else None


def _rate_part(module: MemoryModule) -> None:
    """The rating the module's part number spells out, where it is one its type can have."""
    from q3cn_doctor.parsers import partnumbers

    rating = partnumbers.rated_speed(module.part_number)
    if rating is None or (module.family and data_rate(module.family, rating.rated_mts)
                          != rating.rated_mts):
        return
    module.rated_mts, module.rated_by = rating.rated_mts, rating.kind
    module.rated_confidence = rating.confidence
    speed = module.speed_mts
    if (rating.kind == partnumbers.KIT and speed and module.family in JEDEC_MODULES
            and abs(speed - (module.configured_mts or 0)) > speed * 0.01
            and rating.rated_mts <= speed
            and rating.rated_mts in JEDEC_MODULES[module.family]):
        # A "kit" whose own JEDEC speed already is its rating (Kingston FURY Beast DDR5-4800,
        # Speed 4800, running at 3600) reaches it with no profile: below it is no XMP left
        # off. (Where Speed equals the configured speed it may be the running speed.)
        module.rated_by = partnumbers.JEDEC


def _spd_module(reading: SpdReading) -> MemoryModule:
    address = reading.path.rstrip("/").split("/")[-2] if "/" in reading.path else reading.path
    module = MemoryModule(
        locator=f"SPD {address}", bank_locator=None, size_bytes=reading.size_bytes,
        type=reading.memory_type, form_factor=reading.module_type, rank=None, data_width=64,
        speed_mts=reading.jedec_mts, configured_mts=None, manufacturer=reading.manufacturer,
        part_number=reading.part_number, family=family(reading.memory_type),
    )
    _rate_part(module)
    return module


def _misread_of(text: str, part: str) -> bool:
    """Whether ``text`` is ``part`` read with bad bytes: dmidecode shows a byte that is no
    character as '.', and a read cut short leaves a prefix (``UD5-720.``, ``.X5U7200...``)."""
    if "." not in text or "." in part:
        return False
    text = text.rstrip(" .")
    if len(text) < 6 or len(text) > len(part):
        return False
    return all(a == b or a == "." for a, b in zip(text, part))


def _repair_ratings(modules: list[MemoryModule]) -> list[MemoryModule]:
    """A module whose part number is a sibling's read with bad bytes is that sibling's part."""
    rated = [m for m in modules if m.rated_mts]
    for module in modules:
        if module.rated_mts or not module.part_number:
            continue
        for sibling in rated:
            if _misread_of(module.part_number, sibling.part_number or ""):
                module.rated_mts, module.rated_by = sibling.rated_mts, sibling.rated_by
                module.rated_confidence = sibling.rated_confidence
                break
    return modules


def _rate(memory: MemoryFacts, user: int | None) -> None:
    """rated_mts and how it is known: SPD, then part numbers (a module whose number says
    nothing counts with its own Speed:), then the user, then SMBIOS alone."""
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
    if any(m.rated_mts for m in modules):
        _rate_by_parts(memory, user_note)
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


def _rate_by_parts(memory: MemoryFacts, user_note: str) -> None:
    """The minimum over the modules: each one's part-number rating, else its own Speed:
    (two JEDEC modules of 5600 and 4800 are rated 4800 together)."""
    from q3cn_doctor.parsers import partnumbers

    entries = [(m.rated_mts, m.rated_by, m.rated_confidence, m) if m.rated_mts else
               (m.speed_mts, partnumbers.JEDEC, None, m) for m in memory.modules
               if m.rated_mts or m.speed_mts]
    # On a tie a kit wins: reaching that speed takes its XMP/EXPO profile.
    mts, kind, confidence, lowest = min(entries, key=lambda e: (e[0], e[1] != partnumbers.KIT))
    decoded = [e[2] for e in entries if e[2]]
    by_part = confidence is not None
    memory.rated_mts, memory.rated_source = mts, "part-number" if by_part else "dmidecode"
    memory.rated_confidence = (min(decoded, key=_CONFIDENCE.index) if by_part else "low")
    kit = kind == partnumbers.KIT and not memory.soldered
    memory.rated_profile = "XMP/EXPO" if kit else "JEDEC"
    what = (f"part number {lowest.part_number} ({'an XMP/EXPO kit' if kit else 'a JEDEC part'})"
            if by_part else f"{lowest.part_number or 'a module'}'s own Speed: (its part number "
            "names no rating)")
    basis = memory.basis
    others = len(entries) - len(decoded)
    basis["rated_mts"] = (f"{what}, minimum over {len(entries)} of {len(memory.modules)} "
                          f"module(s): {len(decoded)} rated by part number"
                          + (f", {others} by their own Speed:" if others else "") + user_note)


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


# The grammar of slot names. A channel is named by a word for it (CHANNEL, CHAN,
# Channel, Controller) or by the letter after DIMM (CPU0_DIMM_L1, P1-DIMMA1, DIMM_B2);
# the rules below read it, most specific first: (field, pattern, key template). What
# they do not match names a slot, not a channel: bare A1..A12 (Dell: socket A, slot
# 1-12), DIMM1..4, PROC 1 DIMM 8 (HP: slot numbers), CPU0_DIMM_3, J1MY.
_CHANNEL_RULES = [
    # AMD: "P0 CHANNEL A" (socket 0, channel A to L); Supermicro "P0_Node0_Channel0_Dimm0".
    ("bank_locator", LazyPattern(r"\bP(\d+)\s+CHANNEL\s+([A-Z])\b", re.I), "P{0}-{1}"),
    ("bank_locator", LazyPattern(r"\bP(\d+)_Node(\d+)_Channel(\d+)_", re.I), "P{0}-N{1}-{2}"),
    ("bank_locator", LazyPattern(r"\bSOCKET\s*(\d+)\s+CHANNEL\s*(\d+)", re.I), "S{0}-{1}"),
    # Intel desktop boards: "CHAN A DIMM 0", "CHANNNEL A-DIMM 0" (sic).
    ("bank_locator", LazyPattern(r"\bCHAN+(?:EL)?\s*([A-Z])\s*-?\s*DIMM\s*\d", re.I), "{0}"),
    # Intel client: "Controller0-ChannelA-DIMM0", "Controller1-ChannelA/B-DIMM0", and HP's
    # bank "Controller0ChannelADimm0".
    ("locator", LazyPattern(r"\bController\s*(\d+)-?Channel\s*([A-Z](?:/[A-Z])?)", re.I),
     "C{0}-{1}"),
    ("bank_locator", LazyPattern(r"\bController\s*(\d+)-?Channel\s*([A-Z])", re.I),
     "C{0}-{1}"),
    ("locator", LazyPattern(r"\bController\s*(\d+)-DIMM\s*([A-Z])\d*$", re.I), "C{0}-{1}"),
    ("locator", LazyPattern(r"\bController\s*(\d+)-DIMM\s*\d+$", re.I), "C{0}"),
    ("locator", LazyPattern(r"\bChannel\s*([A-Z])(?:\b|-|_)", re.I), "{0}"),
    # The letter after DIMM, with the socket before it: CPU0_DIMM_A..L (12 channels go
    # past H), CPU1 DIMM A1, P1-DIMMA1, DIMM_A1, DIMMB2, DDR5_A1.
    ("locator", LazyPattern(r"^(?:(?:CPU|PROC|P)\s*(\d+)[\s_-]*)?(?:SO)?(?:DIMM|DDR\d)[\s_-]?"
                            r"([A-P])\d{0,2}$", re.I), "{0}-{1}"),
]
# The socket a slot name gives, for slots that name no channel: CPU1_, PROC 2, P1-, and
# Dell's bare letter (A1..A12 on the first socket, B1..B12 on the second).
_SOCKET = LazyPattern(r"^(?:(?:CPU|PROC|P)\s*(\d+)|([A-Z])\d{1,2}$)", re.I)


# Intel's client dialect, Controller0-ChannelA(-DIMM0): four channels a controller, the
# 16-bit ones of LPDDR, listed on boards that take SO-DIMMs too.
_LPDDR_CHANNEL_SLOT = LazyPattern(r"Controller\d-Channel[A-D]\b", re.I)


def channel_of(device) -> str | None:
    """The channel a slot's locator or bank locator names, or None."""
    for field_name, pattern, template in _CHANNEL_RULES:
        match = pattern.search(getattr(device, field_name) or "")
        if match:
            return template.format(*[(g or "").upper() for g in match.groups()]).lstrip("-")
    return None


def channel_layout(slots: list[MemoryDevice], modules: list[MemoryModule],
                   platform: Platform | None = None, sockets: int | None = None,
                   ) -> tuple[int | None, int | None, str]:
    """64-bit channels in use, channels the board offers, and how that was decided."""
    if not modules:
        return None, None, "unknown: no module installed"
    if all(m.soldered or (m.family or "").startswith("LPDDR") for m in modules) and not (
            any(not slot.installed for slot in slots) and not any(
                m.narrow or (m.family or "").startswith("LPDDR") for m in modules)):
        # But 64-bit soldered DDR beside an empty slot (a 15" IdeaPad: 8 GB on the board,
        # one SO-DIMM slot) is a channel of a slotted board: judged as modules are.
        return _lpddr_channels(modules, platform)
    used, board, how = _slot_layout(slots, modules, platform, sockets)
    return _capped(used, board, how, slots, platform, sockets)


def _capped(used: int | None, board: int | None, how: str, slots: list[MemoryDevice],
            platform: Platform | None, sockets: int | None
            ) -> tuple[int | None, int | None, str]:
    """The firmware's channel count held to what the CPUs fitted have: boards list the
    channels of an empty second socket (one EPYC 7443P on a PowerEdge C6525: 8 of 8,
    not 16), Threadripper 7000 boards list eight of its four, Intel laptops ChannelA-D
    of LPDDR on each controller with SO-DIMMs fitted. Where the names gave no count,
    the platform's, or the slots where fewer."""
    if not platform or not platform.channels:
        return used, board, how
    if sockets:
        most = platform.channels * sockets
    elif slots and all(_LPDDR_CHANNEL_SLOT.match(slot.locator or "") for slot in slots):
        most = platform.channels  # Intel's client dialect: one socket
    else:
        return used, board, how
    if board is None:
        board = min(most, len(slots)) if slots else most
        how += f"; the board: {board} of {platform.name}'s {most} x 64-bit"
    elif board > most:
        how += (f"; the firmware lists {board} channels, but {platform.name} has {most} x "
                f"64-bit" + (f" ({sockets} socket(s) fitted)" if sockets else ""))
        board = most
    return (min(used, board) if used else used), board, how


def _slot_layout(slots: list[MemoryDevice], modules: list[MemoryModule],
                 platform: Platform | None, sockets: int | None
                 ) -> tuple[int | None, int | None, str]:
    """Channels in use and offered as the slot names (or the platform) give them."""
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
    one_per_channel = _one_slot_per_channel(slots, platform, sockets)
    if one_per_channel:
        for module in modules:
            module.channel = module.locator
        return len(modules), len(slots), one_per_channel
    if platform and platform.channels and len(modules) == len(slots) > 1:
        every = platform.channels * (sockets or 1)
        return every, every, (f"the locators name slots, not channels, but every slot holds a "
                              f"module, so every channel does: {platform.name} has "
                              f"{platform.channels} a socket, x {sockets or 1} socket(s)")
    if len(modules) == 1:
        return 1, board, "one module: one channel"
    return None, board, (f"unknown: the locators of {len(modules)} modules "
                         f"({', '.join(m.locator or '?' for m in modules[:4])}) name slots, "
                         "not channels, and the board has more slots than the CPU has "
                         "channels (or the CPU is not in the platform table)")


def _one_slot_per_channel(slots: list[MemoryDevice], platform: Platform | None,
                          sockets: int | None) -> str | None:
    """Where the slots name no channel but there are exactly as many per socket as the
    CPU has channels, each slot is a channel of its own: how that was decided, or None."""
    if platform is None or not platform.channels or not slots:
        return None
    groups: dict[str, int] = {}
    for slot in slots:
        match = _SOCKET.match(slot.locator or "")
        key = (match.group(1) or match.group(2)).upper() if match else None
        groups[key or "?"] = groups.get(key or "?", 0) + 1
    if "?" in groups or len(set(groups.values())) > 1:
        groups = {str(n): len(slots) // (sockets or 1) for n in range(sockets or 1)}
        if len(slots) % (sockets or 1):
            return None
    per_socket = next(iter(groups.values()))
    if per_socket != platform.channels:
        return None
    return (f"the locators name slots ({slots[0].locator}...), not channels; {len(groups)} "
            f"socket(s) of {per_socket} slots, and {platform.name} has {platform.channels} "
            "channels a socket: one slot per channel")


def _lpddr_channels(modules: list[MemoryModule], platform: Platform | None
                    ) -> tuple[int, int, str]:
    """LPDDR (soldered, or an LPCAMM2 module): channels from the devices' data width."""
    bits = 0
    assumed = False
    listed = [m.data_width for m in modules]
    # Widths as listed where they add up to no more than the platform's bus (an Alder
    # Lake-H's two 64-bit LPDDR5 packages: 128 bits); else 16 bits a device.
    believed = (platform is not None and bool(platform.channels) and all(listed)
                and sum(listed) <= platform.channels * 64)  # type: ignore[arg-type]
    for module in modules:
        width = module.data_width
        if width is None or width > 32 and not believed and (module.type or "").upper()[
                :6] in ("LPDDR4", "LPDDR5"):
            width, assumed = 16, True  # LPDDR4/5 channels are 16 bits wide
        bits += width
    channels = max(1, round(bits / 64))
    note = " (LPDDR4/5 channels taken as 16 bits where firmware says otherwise)" if assumed \
        else ""
    if len(modules) == 1 and platform and platform.channels and channels < platform.channels:
        # One device listed for all of the memory (Snapdragon X: one 16-bit "TSOP").
        return platform.channels, platform.channels, (
            f"one device of {bits} bits listed for all the memory: {platform.name}'s "
            f"{platform.channels} x 64-bit")
    kind = "soldered memory" if all(m.soldered for m in modules) else "LPDDR modules"
    return channels, channels, (f"{kind}: {len(modules)} device(s), {bits} bits of data "
                                f"width in all = {channels} x 64-bit{note}")

"""The memory section: RAM, swap, swappiness and huge pages.

The memory-speed work (modules, rated vs configured MT/s, channels) extends
this section; what is here is what the swap and hugepage checks judge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..host import Host
from ..options import Options

if TYPE_CHECKING:
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
class MemoryFacts:
    total_bytes: int | None
    available_bytes: int | None
    swap: list[SwapDevice]
    swappiness: int | None
    hugepage_pools: list[HugePagePool]
    hugetlb_bytes: int | None  # RAM set aside for hugetlb pages: llama.cpp cannot use it
    thp_enabled: str | None  # transparent huge pages: always, madvise or never
    basis: dict[str, str] = field(default_factory=dict)

    @property
    def disk_swap(self) -> list[SwapDevice]:
        return [device for device in self.swap if device.kind != "zram"]


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as numbers; kB values become bytes, counts stay counts.

    Pasted copies carry shell prompts and stray lines: those are skipped.
    """
    values: dict[str, int] = {}
    for line in text.splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_()]+):\s+(\d+)(?:\s+(kB))?\s*$", line)
        if match:
            number = int(match.group(2))
            values[match.group(1)] = number * KIB if match.group(3) else number
    return values


def parse_swaps(text: str) -> list[SwapDevice]:
    devices = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4 or not parts[2].isdigit():
            continue
        path = parts[0].replace("\\040", " ")
        kind = "zram" if re.match(r"^/dev/zram\d+$", path) else parts[1]
        priority = int(parts[4]) if len(parts) > 4 and re.match(r"^-?\d+$", parts[4]) else None
        devices.append(SwapDevice(path, kind, int(parts[2]) * KIB, int(parts[3]) * KIB, priority))
    return devices


def parse_thp(text: str | None) -> str | None:
    """The bracketed choice of ``always [madvise] never``."""
    match = re.search(r"\[(\w+)\]", text or "")
    return match.group(1) if match else None


def _hugepage_pools(host: Host) -> list[HugePagePool]:
    pools = []
    for directory in host.glob("/sys/kernel/mm/hugepages/hugepages-*kB"):
        size = re.search(r"hugepages-(\d+)kB$", directory)
        total = host.cat(directory + "/nr_hugepages")
        if not size or total is None or not total.isdigit():
            continue
        free = host.cat(directory + "/free_hugepages") or "0"
        reserved = host.cat(directory + "/resv_hugepages") or "0"
        pools.append(HugePagePool(
            int(size.group(1)) * KIB, int(total),
            int(free) if free.isdigit() else 0, int(reserved) if reserved.isdigit() else 0,
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

    swappiness_text = host.sysctl("vm.swappiness")
    swappiness = int(swappiness_text) if swappiness_text and swappiness_text.isdigit() else None
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
    return MemoryFacts(
        total_bytes=meminfo.get("MemTotal"),
        available_bytes=meminfo.get("MemAvailable"),
        swap=swap,
        swappiness=swappiness,
        hugepage_pools=pools,
        hugetlb_bytes=hugetlb,
        thp_enabled=thp,
        basis=basis,
    )

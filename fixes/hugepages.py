"""hugepages.release: give back hugetlb pages reserved at boot or by a service, which
llama.cpp (mapping the model with normal pages) cannot use.

Each pool's ``nr_hugepages`` in sysfs is set to 0 (or ``vm.nr_hugepages`` where sysfs
has no pools). Pages a running program holds stay until it exits: the kernel keeps
them, the read-back shows it, and the fix reports that instead of success.
"""

from __future__ import annotations

import re

from q3cn_doctor.fixing.dropins import effective
from q3cn_doctor.fixing.persist import persist_sysctl
from q3cn_doctor.fixing.plan import Fix, FixContext

POOLS = "/sys/kernel/mm/hugepages"
SYSCTL_PATH = "/proc/sys/vm/nr_hugepages"
KEY = "vm.nr_hugepages"


def _size(page_bytes: int) -> str:
    kib = page_bytes // 1024
    return f"{kib // 1048576} GiB" if kib >= 1048576 else (
        f"{kib // 1024} MiB" if kib >= 1024 else f"{kib} kB")


def _pool_path(ctx: FixContext, page_bytes: int) -> str | None:
    path = f"{POOLS}/hugepages-{page_bytes // 1024}kB/nr_hugepages"
    if ctx.host.exists(path):
        return path
    return SYSCTL_PATH if ctx.host.exists(SYSCTL_PATH) else None


class ReleaseHugepages(Fix):
    id = "hugepages.release"
    title = "Give reserved hugetlb pages back to the model"
    checks = ("memory.hugepages",)

    def available(self, ctx: FixContext) -> str | None:
        pools = [p for p in ctx.facts.memory.hugepage_pools if p.total > 0]
        if not pools:
            return "no hugetlb pages are reserved"
        if not any(_pool_path(ctx, p.page_size_bytes) for p in pools):
            return f"neither {POOLS} nor {SYSCTL_PATH} is there to write"
        return None

    def plan(self, ctx: FixContext) -> None:
        for pool in ctx.facts.memory.hugepage_pools:
            path = _pool_path(ctx, pool.page_size_bytes)
            if pool.total <= 0 or path is None:
                continue
            kind = "sysctl" if path == SYSCTL_PATH else "sysfs"
            ctx.kernel(path, "0", f"{_size(pool.page_size_bytes)} hugetlb pages "
                                  f"({pool.total} reserved)", kind=kind,
                       key=KEY if kind == "sysctl" else None)
            in_use = pool.total - pool.free
            if in_use > 0:
                ctx.note(f"{in_use} of the {_size(pool.page_size_bytes)} pages are in use by "
                         "a running program (a VM, DPDK?): the kernel frees them only when it "
                         "exits.")
        if not ctx.persist:
            ctx.note("--runtime-only: whatever reserved the pages at boot reserves them again.")
            return
        cmdline = ctx.host.cat("/proc/cmdline") or ""
        boot = re.findall(r"\b(?:default_hugepagesz|hugepagesz|hugepages)=\S+", cmdline)
        if boot:
            ctx.manual(f"The kernel command line reserves them at boot ({' '.join(boot)}): "
                       "remove those options in the boot loader's configuration (e.g. "
                       "GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub) and reboot.")
        at_boot = effective(ctx.host, KEY)
        if at_boot is not None and at_boot.value != "0":
            persist_sysctl(ctx, KEY, "0", "hugepages")
        elif not boot:
            ctx.note("Nothing in sysctl.d or on the kernel command line reserves them at boot; "
                     "a service (a VM manager, DPDK, Open vSwitch) may reserve them again when "
                     "it starts.")


FIX = ReleaseHugepages()

"""Where the model file lives: a slow or remote filesystem slows every start, and with
mmap every token that needs weights the kernel evicted (facts.storage)."""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check
from q3cn_doctor.plan.placement import placement
from q3cn_doctor.plan.speed import (
    DISK_BOUND,
    FAST_STORAGE_BYTES_S,
    compare,
    difference,
    speed,
    what_if,
)
from q3cn_doctor.units import gib

SLOW = {
    "wsl-windows": ("on the Windows drive through WSL2's 9p file server",
                    "Copy the model into the WSL2 distribution's own ext4 disk (e.g. "
                    "~/models): reading /mnt/c goes through the 9p server at a fraction of "
                    "the disk's speed."),
    "network": ("on a network filesystem",
                "Copy the model to a local SSD; a network share reads every start (and with "
                "mmap every evicted weight) over the wire."),
    "fuse": ("on a FUSE filesystem", "Copy the model to a local SSD (ext4, xfs, btrfs): every "
                                     "read of a FUSE mount passes through a user-space daemon."),
    "rotational": ("on a spinning disk", "Move the model to an SSD: a spinning disk reads "
                                         "about 0.15-0.25 GB/s, and seeks for evicted pages."),
}


def _where(storage) -> str:
    mount = storage.mount
    if mount is None:
        return f"{storage.model}: no mount found in /proc/self/mountinfo"
    device = (f", device {mount.device} (rotational {int(mount.rotational)})"
              if mount.device else "")
    return (f"{storage.model} ({gib(storage.size_bytes)}) on {mount.point}: {mount.fstype} "
            f"from {mount.source}{device}")


def _measured(storage) -> tuple[float | None, str]:
    measured = storage.measured or {}
    rate = measured.get("bytes_per_s")
    if not rate:
        return None, storage.basis.get("measured", "")
    load = f"; loading all {gib(storage.size_bytes)} takes about " \
           f"{storage.size_bytes / rate:.0f} s at that speed" if storage.size_bytes else ""
    return rate, f"measured {rate / 1e9:.2f} GB/s ({measured.get('method')}){load}"


@check("model.storage", "The model file is on a fast local disk, not a slow or remote one")
def storage(ctx: Context):
    facts = ctx.facts.storage
    if facts.model is None:
        return ctx.finding(SKIP, "No model file to locate (give --model FILE.gguf)",
                           observed="the plan uses an embedded profile")
    if facts.mount is None:
        return ctx.finding(SKIP, "The model's storage is unknown",
                           observed=f"{facts.model}: /proc/self/mountinfo names no mount for it")
    rate, read_line = _measured(facts)
    observed = f"{_where(facts)}; {read_line}"
    estimate = speed(ctx.facts)
    paging = estimate.mode == DISK_BOUND
    gain, priced = None, ""
    if paging and rate:
        slow = what_if(ctx.facts, storage_bytes_per_s=rate)
        fast = what_if(ctx.facts, storage_bytes_per_s=FAST_STORAGE_BYTES_S)
        gain = difference(slow, fast)
        priced = " " + compare(slow, fast, "from a fast NVMe drive")
    if facts.kind not in SLOW:
        if paging and rate and rate < FAST_STORAGE_BYTES_S / 4:
            return ctx.finding(
                WARN, f"The model pages from a disk reading {rate / 1e9:.2f} GB/s",
                observed=observed, recommended="Give the model RAM (see memory.fit), or "
                                               "move it to a faster NVMe drive.",
                impact="RAM does not hold the model, so weights are read from this disk for "
                       "the tokens that need them." + priced, cost_tok_s=gain)
        return ctx.finding(PASS if facts.kind == "solid-state" else INFO,
                           f"The model is on {facts.kind.replace('-', ' ')} storage",
                           observed=observed)
    where, advice = SLOW[facts.kind]
    plan = placement(ctx.facts)
    effect = (f"RAM does not hold the model, so the weights it cannot keep are read from here "
              f"for every token (the speed model: {estimate.text()})" if paging else
              f"Every start reads the file from there; with mmap, weights the kernel evicts "
              f"under memory pressure (RAM part {gib(plan.ram_bytes)}) are read back from "
              "there by the tokens that need them")
    return ctx.finding(
        WARN if paging or facts.kind != "rotational" else INFO,
        f"The model is {where}", observed=observed,
        recommended=advice + ("" if rate else " `q3cn-doctor check --measure` times the "
                                              "first GiB."),
        impact=effect + "." + priced, cost_tok_s=gain)

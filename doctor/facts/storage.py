"""The storage section: the filesystem and device the model file lives on.

From /proc/self/mountinfo, the mount holding the model's path (the longest mount
point that prefixes it): its filesystem type and source; for a block device, whether
the kernel calls it rotational (a spinning disk). Under ``--measure`` on the live
machine, the read speed of the file's first GiB (host/storage.py).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from msgspec import Struct, field
from q3cn_doctor.host.base import Host
from q3cn_doctor.options import Options

if TYPE_CHECKING:
    from . import Facts

NETWORK = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "afs", "9p",
           "virtiofs", "vboxsf", "vmhgfs", "davfs", "sshfs")
_PARTITION = re.compile(r"^((?:nvme\d+n\d+|mmcblk\d+|loop\d+)|(?:[a-z]+))p?\d+$")


class Mount(Struct):
    """One line of /proc/self/mountinfo: where a model file's bytes come from."""
    point: str
    fstype: str  # ext4, nfs4, 9p, fuse.sshfs...
    source: str  # /dev/nvme0n1p2, server:/export, drvfs...
    device: str | None = None  # the block device's kernel name (nvme0n1, sda)
    rotational: bool | None = None


class StorageFacts(Struct):
    """The disk under the model file: how fast a cold load or a paging run can read it."""
    model: str | None  # the model file judged, None without --model
    size_bytes: int | None
    mount: Mount | None
    kind: str  # "network", "wsl-windows" (/mnt/c), "fuse", "rotational", "solid-state", "unknown"
    measured: dict | None = None  # --measure: host/storage.py's ReadResult
    basis: dict[str, str] = field(default_factory=dict)


def parse_mountinfo(text: str) -> list[Mount]:
    """/proc/PID/mountinfo as mounts, in file order (a later mount on a point hides an
    earlier one); octal escapes in paths (``\\040`` for a space) decoded."""
    mounts = []
    for line in text.splitlines():
        before, dash, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not dash or len(fields) < 5 or len(tail) < 2:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        mounts.append(Mount(point, tail[0], tail[1]))
    return mounts


def mount_of(mounts: list[Mount], path: str) -> Mount | None:
    """The mount whose point is the longest prefix of ``path`` (of equal ones, the last
    mounted: it hides the others)."""
    best: Mount | None = None
    for mount in mounts:
        point = mount.point.rstrip("/")
        if (not point or path == point or path.startswith(point + "/")) and (
                best is None or len(point) >= len(best.point.rstrip("/"))):
            best = mount
    return best


def _disk(name: str) -> str:
    """The whole disk of a partition's kernel name: sda1 -> sda, nvme0n1p2 -> nvme0n1."""
    match = _PARTITION.match(name)
    return match.group(1) if match else name


def _rotational(host: Host, mount: Mount) -> None:
    if not mount.source.startswith("/dev/"):
        return
    name = os.path.basename(mount.source)
    if mount.source.startswith("/dev/mapper/"):
        return  # device-mapper: its own queue says nothing of the disks under it
    for candidate in (name, _disk(name)):
        text = host.cat(f"/sys/block/{candidate}/queue/rotational")
        if text in ("0", "1"):
            mount.device, mount.rotational = candidate, text == "1"
            return


def _kind(mount: Mount | None, path: str, wsl: bool) -> str:
    if mount is None:
        return "unknown"
    fstype = mount.fstype
    if wsl and (fstype in ("9p", "drvfs") or re.match(r"^/mnt/[a-z](/|$)", path)):
        return "wsl-windows"
    if fstype in NETWORK or fstype.removeprefix("fuse.") in NETWORK:
        return "network"
    if fstype.startswith("fuse"):
        return "fuse"
    if mount.rotational is True:
        return "rotational"
    if mount.rotational is False:
        return "solid-state"
    return "unknown"


def gather(host: Host, options: Options, facts: Facts) -> StorageFacts:
    basis = {"mount": "/proc/self/mountinfo: the longest mount point prefixing the model's "
                      "path", "rotational": "/sys/block/<disk>/queue/rotational"}
    if not options.model:
        return StorageFacts(None, None, None, "unknown", basis=basis)
    path = options.model if host.kind == "snapshot" else os.path.abspath(options.model)
    size = getattr(facts.get("model"), "file_bytes", None) or None  # every split part
    mount = mount_of(parse_mountinfo(host.cat("/proc/self/mountinfo") or ""), path)
    if mount is not None:
        _rotational(host, mount)
    system = facts.get("system")
    wsl = bool(system and system.virtualization.kind == "wsl")
    storage = StorageFacts(path, size, mount, _kind(mount, path, wsl), basis=basis)
    _measure(host, options, storage)
    return storage


def _measure(host: Host, options: Options, storage: StorageFacts) -> None:
    if not options.measure or host.kind != "live" or options.snapshot or options.root:
        storage.basis["measured"] = ("not measured (use --measure on the machine itself)"
                                     if not options.measure else
                                     "not measured: only on the machine itself")
        return
    from q3cn_doctor.host.storage import measure_read

    try:
        result = measure_read(host.local_path(storage.model or ""))
    except OSError as exc:
        storage.basis["measured"] = f"measurement failed: {exc.strerror or exc}"
        return
    storage.measured = result.to_json()
    storage.basis["measured"] = f"--measure: {result.method}"

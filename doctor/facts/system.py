"""The system section: kernel, distribution and virtualization.

Virtualization matters because it hides what the other checks read: a VM has
no DMI (so no RAM speed), often no cpufreq, and a GPU only if passed through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgspec import Struct, field
from q3cn_doctor.facts.virtualization import container_by_files, vm_by_files
from q3cn_doctor.host.base import RAN, CommandResult, Host
from q3cn_doctor.options import Options

if TYPE_CHECKING:
    from . import Facts

class Virtualization(Struct):
    """Whether the doctor sees real hardware: a guest's DMI, sysfs and clocks are the
    hypervisor's, so hardware checks say so instead of judging them."""
    kind: str | None  # "none", "vm", "container", "wsl", or None where nothing could tell
    name: str | None = None  # kvm, docker, wsl...
    vm: str | None = None  # the hypervisor under a container, where both apply
    is_virtual: bool | None = None  # a VM, WSL2 or container (or one inside another)

    def __post_init__(self) -> None:
        if self.is_virtual is None and self.kind is not None:
            self.is_virtual = self.kind in ("vm", "wsl", "container") or self.vm is not None

    @property
    def in_vm(self) -> bool:
        """Under a hypervisor's virtual CPUs (a container inside a VM too; not WSL2, which
        shows the host's CPU): core types, caches and ISA may be the hypervisor's choice."""
        return self.kind == "vm" or self.vm is not None


class SystemFacts(Struct):
    """The kernel, distribution and boot command line every other section is read against."""
    kernel: str | None
    os: str | None
    virtualization: Virtualization
    basis: dict[str, str] = field(default_factory=dict)
    cmdline: list[str] = field(default_factory=list)  # the kernel's boot parameters
    os_ids: list[str] = field(default_factory=list)  # os-release ID, then ID_LIKE: fedora, ...

    def kernel_param(self, name: str) -> str | None:
        """The value of boot parameter ``name`` (``isolcpus=2-5``); "" for a bare flag,
        None where it is not given. The last one wins, as in the kernel."""
        found = None
        for word in self.cmdline:
            key, eq, value = word.partition("=")
            if key == name:
                found = value if eq else ""
        return found


def gather(host: Host, options: Options, facts: Facts) -> SystemFacts:
    basis = {"kernel": "/proc/sys/kernel/osrelease", "os": "/etc/os-release PRETTY_NAME"}
    kernel = host.cat("/proc/sys/kernel/osrelease")
    virtualization, basis["virtualization"] = detect_virtualization(host, kernel)
    basis["cmdline"] = "/proc/cmdline"
    release = _os_release(host)
    basis["os_ids"] = "/etc/os-release ID, then ID_LIKE"
    return SystemFacts(kernel, release.get("PRETTY_NAME"), virtualization, basis,
                       (host.cat("/proc/cmdline") or "").split(),
                       [word for word in (release.get("ID", "") + " "
                                          + release.get("ID_LIKE", "")).split() if word])


def _os_release(host: Host) -> dict[str, str]:
    values = {}
    for line in (host.cat("/etc/os-release") or "").splitlines():
        key, eq, value = line.partition("=")
        if eq:
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


VIRT_COMMANDS = [["systemd-detect-virt", "--vm"], ["systemd-detect-virt", "--container"]]


def detect_virtualization(host: Host, kernel: str | None) -> tuple[Virtualization, str]:
    """What this runs inside, and how that was decided."""
    if kernel and ("microsoft" in kernel.lower() or "wsl" in kernel.lower()):
        # WSL2's kernels are "...-microsoft-standard-WSL2"; WSL1 answers "4.4.0-19041-Microsoft".
        generation = "WSL2" if "standard" in kernel.lower() or "wsl2" in kernel.lower() \
            else "WSL1"
        return Virtualization("wsl", "wsl"), f"kernel release names Microsoft ({generation})"
    vm, container = (_detect_virt(result) for result in host.run_all(VIRT_COMMANDS))
    if vm is not None or container is not None:
        if container not in (None, "none"):
            return Virtualization("container", container, vm if vm != "none" else None), (
                "systemd-detect-virt --container / --vm"
            )
        if vm not in (None, "none"):
            return Virtualization("vm", vm), "systemd-detect-virt --vm"
        if vm == "none" and container in (None, "none"):
            return Virtualization("none"), "systemd-detect-virt --vm / --container"
    container = container_by_files(host)
    vm = vm_by_files(host)
    under = vm[0] if vm and vm[0] != "none" else None
    if container:
        return Virtualization("container", container[0], under), container[1] + (
            f"; under {under}: {vm[1]}" if under and vm else "")
    if vm:
        return Virtualization("vm" if under else "none", under), vm[1]
    if host.cat("/proc/cpuinfo") is None:
        return Virtualization(None), "no systemd-detect-virt answer and no /proc/cpuinfo"
    return Virtualization("none"), ("no hypervisor in DMI, the device tree, Xen's or s390's "
                                    "files, PCI or /proc/cpuinfo's flags; no container marker")


def _detect_virt(result: CommandResult) -> str | None:
    """systemd-detect-virt's answer ("none" included), or None where it gave none."""
    if result.state != RAN or result.returncode not in (0, 1):
        return None
    answer = result.stdout.strip()
    return answer or None

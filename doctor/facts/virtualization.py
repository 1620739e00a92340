"""A VM or a container told from files, where systemd-detect-virt gives no answer: a
--root tree, a snapshot, a container without systemd.

The signals are the ones systemd's detection reads (src/basic/virt.c), in its order,
read through the host: container markers first (a container in a VM shows the VM's
DMI), then the device tree (Arm, POWER), DMI, Xen's files, s390's sysinfo, the
hypervisors' PCI devices and last the CPU's hypervisor flag. Tried on the real trees
of virt-what's tests, util-linux's lscpu dumps and linuxhw/DMI probes.
"""

from __future__ import annotations

import re

from q3cn_doctor.host.base import Host
from q3cn_doctor.parsers.patterns import LazyPattern

DMI_ROOT = "/sys/class/dmi/id"
# The files systemd reads, in its order; the first that names a hypervisor decides.
DMI_FILES = ("product_name", "sys_vendor", "board_vendor", "bios_vendor", "product_version")
# Words a hypervisor's firmware writes there, matched as whole words, never as a
# substring: "XENIA 14" laptops, XENTA boards and Clevo's P9XXEN are hardware. Google is
# only Google Compute Engine, since Chromebooks say "Google" too. Beyond systemd's table:
# CloudStack's "CloudStack KVM Hypervisor", Alibaba Cloud ECS, RHEV, Nutanix AHV and
# UpCloud (virt-what's tests).
DMI_WORDS = {
    "kvm": "kvm", "openstack": "kvm", "kubevirt": "kvm", "rhev hypervisor": "kvm",
    "ahv": "kvm", "upcloud": "kvm", "amazon ec2": "amazon", "qemu": "qemu",
    "vmware": "vmware", "vmw": "vmware", "innotek gmbh": "oracle", "virtualbox": "oracle",
    "xen": "xen", "bochs": "bochs", "parallels": "parallels", "bhyve": "bhyve",
    "hyper-v": "microsoft", "apple virtualization": "apple",
    "google compute engine": "google", "alibaba cloud ecs": "alibaba",
}
_DMI_WORD = LazyPattern(r"(?<![\w-])(" + "|".join(re.escape(word) for word in DMI_WORDS)
                        + r")(?![\w-])", re.I)
# PCI vendors whose devices exist only inside their hypervisor's guests (an old kernel
# shows no hypervisor flag and a dump may have no DMI): VirtualBox, VMware, the Xen
# platform device, Parallels. Not virtio's 1af4: DPUs offer virtio devices to real hosts.
PCI_VENDORS = {"80ee": "oracle", "15ad": "vmware", "5853": "xen", "1ab8": "parallels"}
DEVICE_TREE = "/proc/device-tree"

Verdict = tuple[str, str]  # (name, the signal that decided), name "none" for hardware


def container_by_files(host: Host) -> Verdict | None:
    """The container this runs in, by the files its manager leaves, or None. Not PID 1's
    environment, which systemd reads for container=: a snapshot records what is read,
    and a container's environment carries its secrets."""
    if host.exists("/.dockerenv"):
        return "docker", "/.dockerenv"
    if host.exists("/run/.containerenv"):
        return "podman", "/run/.containerenv"
    for path in ("/run/systemd/container", "/run/host/container-manager"):
        marker = host.cat(path)
        if marker:
            return marker, path
    if host.exists("/proc/vz") and not host.exists("/proc/bc"):
        return "openvz", "/proc/vz without /proc/bc"
    return None


def vm_by_files(host: Host) -> Verdict | None:
    """The hypervisor under this machine, ("none", why) where a signal says real
    hardware outright, or None where no file tells."""
    capabilities = host.cat("/proc/xen/capabilities")
    if capabilities is not None and "control_d" in capabilities:
        return "none", "Xen dom0 (/proc/xen/capabilities): the host's own hardware"
    for signal in (_device_tree, _dmi, _xen, _s390, _pci):
        found = signal(host)
        if found:
            return found
    cpuinfo = host.cat("/proc/cpuinfo") or ""
    if "emulated by qemu" in cpuinfo:
        return "qemu", "/proc/cpuinfo: a machine emulated by qemu"
    for line in cpuinfo.splitlines():
        if line.startswith("flags") and " hypervisor" in line:
            return "unknown hypervisor", "the hypervisor flag in /proc/cpuinfo"
    return None


def _device_tree(host: Host) -> Verdict | None:
    """Arm and POWER guests: the hypervisor node, PowerVM's partition, QEMU's fw-cfg."""
    compatible = host.cat(f"{DEVICE_TREE}/hypervisor/compatible")
    if compatible is not None:
        for needle, name in (("linux,kvm", "kvm"), ("xen", "xen"), ("vmware", "vmware")):
            if needle in compatible:
                return name, f"{DEVICE_TREE}/hypervisor/compatible"
        return "unknown hypervisor", f"{DEVICE_TREE}/hypervisor/compatible"
    if host.exists(f"{DEVICE_TREE}/ibm,partition-name") and host.exists(
            f"{DEVICE_TREE}/hmc-managed?"):
        return "powervm", f"{DEVICE_TREE}/ibm,partition-name on an HMC-managed system"
    if host.glob(f"{DEVICE_TREE}/fw-cfg*"):
        return "qemu", f"{DEVICE_TREE}/fw-cfg (QEMU's firmware configuration device)"
    if "linux,dummy-virt" in (host.cat(f"{DEVICE_TREE}/compatible") or ""):
        return "kvm", f"{DEVICE_TREE}/compatible: linux,dummy-virt"
    return None


def _dmi(host: Host) -> Verdict | None:
    values = {name: host.cat(f"{DMI_ROOT}/{name}") or "" for name in DMI_FILES}
    if values["sys_vendor"].startswith("Microsoft Corporation") and values[
            "product_name"].startswith("Virtual Machine"):
        return "microsoft", f"{DMI_ROOT}: Microsoft Corporation / Virtual Machine (Hyper-V)"
    for name in DMI_FILES:
        match = _DMI_WORD.search(values[name])
        if match:
            hypervisor = DMI_WORDS[match.group(1).lower()]
            if hypervisor == "amazon" and values["product_name"].endswith(".metal"):
                return "none", f"{DMI_ROOT}: an Amazon EC2 .metal instance, real hardware"
            return hypervisor, f"{DMI_ROOT}/{name}: {values[name]}"
    return None


def _xen(host: Host) -> Verdict | None:
    if host.exists("/proc/xen"):
        return "xen", "/proc/xen (a domU: no control_d capability)"
    if host.cat("/sys/hypervisor/type") == "xen":
        return "xen", "/sys/hypervisor/type"
    return None


def _s390(host: Host) -> Verdict | None:
    for line in (host.cat("/proc/sysinfo") or "").splitlines():
        if line.startswith("VM00 Control Program:"):
            program = line.partition(":")[2].strip()
            return ("zvm" if "z/VM" in program else "kvm" if "KVM" in program
                    else "unknown hypervisor"), f"/proc/sysinfo: {program}"
    return None


def _pci(host: Host) -> Verdict | None:
    for line in (host.cat("/proc/bus/pci/devices") or "").splitlines():
        fields = line.split()
        if len(fields) > 1 and fields[1][:4].lower() in PCI_VENDORS:
            return PCI_VENDORS[fields[1][:4].lower()], f"/proc/bus/pci/devices: {fields[1]}"
    return None

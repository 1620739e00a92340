"""The facts gatherers, on real machines (tests/fixtures/hosts) and on kernel-format text.

Each fixture folder's SOURCE.txt says where every file came from and which ones
were constructed. Where a test needs a variation (a GPU, a command's answer) it
copies a fixture or writes a small snapshot under tmp_path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import copy_fixture, host_fixture
from conftest import snapshot_facts as facts_for
from fixture_hosts import BUILD, H8QM8, HYPERV, KVM, LAPTOP, OPTERON, OVS, TIGERLAKE, ZRAM
from q3cn_doctor.facts import Facts
from q3cn_doctor.facts.memory import parse_swaps
from q3cn_doctor.facts.model import kv_cache_bytes
from q3cn_doctor.facts.system import Virtualization
from q3cn_doctor.parsers.procfs import parse_meminfo, parse_thp
from q3cn_doctor.plan.placement import FIT_TARGET_MIB, OS_HEADROOM_BYTES, placement
from q3cn_doctor.profiles import PROFILES

KIB = 1024
MIB = 1024**2
GIB = 1024**3


# /proc/swaps as mm/swapfile.c swap_show() prints it: header, then the path padded
# to 40 columns, "partition" or "file\t", sizes in kB with a second tab below 10^7.
HYPERVISOR_CPUINFO = "processor\t: 0\nflags\t\t: fpu hypervisor\n"
SWAPS_HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"



def fixture_facts(name: str, **options) -> Facts:
    return facts_for(host_fixture(name), **options)


def write_snapshot(root: Path, files: dict[str, str] | None = None,
                   commands: dict[str, tuple[str, str]] | None = None,
                   links: dict[str, str] | None = None, nvml: dict | None = None) -> Path:
    """A small snapshot: fs files, symlinks, command outputs (stdout, rc) and nvml.json."""
    for path, text in (files or {}).items():
        target = root / "fs" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    for path, destination in (links or {}).items():
        target = root / "fs" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(destination, target)
    (root / "cmd").mkdir(parents=True, exist_ok=True)
    for line, (stdout, rc) in (commands or {}).items():
        slug = line.replace(" ", "_")
        (root / "cmd" / f"{slug}.out").write_text(stdout, encoding="utf-8")
        (root / "cmd" / f"{slug}.err").write_text("", encoding="utf-8")
        (root / "cmd" / f"{slug}.rc").write_text(rc, encoding="utf-8")
    if nvml is not None:
        (root / "nvml.json").write_text(json.dumps(nvml), encoding="utf-8")
    return root



# -- /proc/meminfo ---------------------------------------------------------------------------
def test_parse_meminfo_real_file_with_pasted_shell_prompts():
    text = (Path(host_fixture(OVS)) / "fs/proc/meminfo").read_text()
    assert text.startswith("[root@cmpt-offload-0 ~]# cat /proc/meminfo")  # the paste is kept
    values = parse_meminfo(text)
    # kB values become bytes
    assert values["MemTotal"] == 395725212 * KIB
    assert values["MemAvailable"] == 222498376 * KIB
    assert values["Hugetlb"] == 167772160 * KIB == 160 * GIB
    assert values["Hugepagesize"] == GIB
    # counts stay counts
    assert values["HugePages_Total"] == 160
    assert values["HugePages_Free"] == 140
    # keys with parentheses are kept whole
    assert values["Active(anon)"] == 784776 * KIB
    # the two prompt lines and the blank lines add nothing: 49 meminfo lines, 49 keys
    assert len(values) == 49
    assert not any(key.startswith("[") or "#" in key for key in values)


def test_parse_meminfo_skips_stray_lines_and_keeps_the_rest():
    text = ("user@box:~$ cat /proc/meminfo\n"
            "MemTotal:       32489496 kB\n"
            "not a line: at all\n"
            "HugePages_Total:       0\n"
            "MemFree: lots kB\n"
            "user@box:~$ \n")
    assert parse_meminfo(text) == {"MemTotal": 32489496 * KIB, "HugePages_Total": 0}


# -- /proc/swaps -------------------------------------------------------------------------------
def test_parse_swaps_zram_partition_and_file_in_kernel_format():
    text = (SWAPS_HEADER
            + "/swap/swapfile                          file\t\t16224856\t0\t\t0\n"
            + "/dev/zram0                              partition\t16223228\t\t592024\t\t100\n"
            + "/dev/nvme0n1p3                          partition\t999420\t\t0\t\t-2\n"
            + "/mnt/my\\040swap                         file\t\t1048572\t\t0\t\t-3\n")
    devices = parse_swaps(text)
    assert [(d.path, d.kind, d.priority) for d in devices] == [
        ("/swap/swapfile", "file", 0),
        ("/dev/zram0", "zram", 100),  # the kernel says "partition": zram is told by its name
        ("/dev/nvme0n1p3", "partition", -2),
        ("/mnt/my swap", "file", -3),  # the kernel escapes a space as \040
    ]
    assert devices[0].size_bytes == 16224856 * KIB
    assert devices[1].size_bytes == 16223228 * KIB
    assert devices[1].used_bytes == 592024 * KIB


def test_parse_swaps_android_zram_is_zram():
    """Android names its zram device under /dev/block (termux/termux-packages#25627)."""
    text = SWAPS_HEADER + "/dev/block/zram0                        partition\t2097148\t0\t-2\n"
    assert [(d.path, d.kind) for d in parse_swaps(text)] == [("/dev/block/zram0", "zram")]


def test_parse_swaps_header_only_is_no_swap():
    assert parse_swaps(SWAPS_HEADER) == []
    assert parse_swaps("") == []


def test_parse_swaps_of_fixtures():
    laptop = parse_swaps((Path(host_fixture(LAPTOP)) / "fs/proc/swaps").read_text())
    assert [(d.path, d.kind, d.size_bytes, d.used_bytes, d.priority) for d in laptop] == [
        ("/dev/nvme0n1p3", "partition", 999420 * KIB, 0, -2)]
    zram = parse_swaps((Path(host_fixture(ZRAM)) / "fs/proc/swaps").read_text())
    assert [(d.path, d.kind, d.size_bytes, d.used_bytes, d.priority) for d in zram] == [
        ("/dev/zram0", "zram", 8388604 * KIB, 3072 * KIB, 100)]


# -- transparent huge pages --------------------------------------------------------------------
@pytest.mark.parametrize("text, mode", [
    ("always [madvise] never\n", "madvise"),
    ("[always] madvise never\n", "always"),
    ("always madvise [never]\n", "never"),
    ("always defer defer+madvise [madvise] never\n", "madvise"),  # the defrag file's form
    ("", None),
    (None, None),
])
def test_parse_thp(text, mode):
    assert parse_thp(text) == mode


# -- the memory section on real machines -------------------------------------------------------
def test_memory_facts_laptop_with_disk_swap():
    memory = fixture_facts(LAPTOP).memory
    assert memory.total_bytes == 32489496 * KIB
    assert memory.available_bytes == 28934524 * KIB
    assert memory.swappiness == 60
    assert [d.path for d in memory.swap] == ["/dev/nvme0n1p3"]
    assert [d.path for d in memory.disk_swap] == ["/dev/nvme0n1p3"]
    # both pools from sysfs, both empty; meminfo's Hugetlb line agrees
    assert sorted((p.page_size_bytes, p.total) for p in memory.hugepage_pools) == [
        (2 * MIB, 0), (GIB, 0)]
    assert memory.hugetlb_bytes == 0
    assert memory.thp_enabled is None
    assert memory.basis["swap"] == "/proc/swaps"


def test_memory_facts_zram_is_not_disk_swap():
    memory = fixture_facts(ZRAM).memory
    assert memory.swappiness == 100
    assert [d.kind for d in memory.swap] == ["zram"]
    assert memory.disk_swap == []


def test_memory_facts_1g_pool_from_meminfo_when_sysfs_is_absent():
    memory = fixture_facts(OVS).memory
    assert memory.total_bytes == 395725212 * KIB
    [pool] = memory.hugepage_pools
    assert (pool.page_size_bytes, pool.total, pool.free, pool.reserved) == (GIB, 160, 140, 0)
    assert pool.bytes == 160 * GIB
    assert memory.hugetlb_bytes == 160 * GIB
    assert memory.basis["hugepage_pools"] == "/proc/meminfo HugePages_* (default page size only)"
    assert memory.basis["hugetlb_bytes"] == "/proc/meminfo Hugetlb (all page sizes)"


def test_memory_facts_2m_pool_from_sysfs_on_an_old_kernel_without_hugetlb_line():
    memory = fixture_facts(H8QM8).memory
    assert memory.total_bytes == 33018776 * KIB
    assert memory.available_bytes is None  # this kernel predates MemAvailable
    [pool] = memory.hugepage_pools
    assert (pool.page_size_bytes, pool.total, pool.free) == (2 * MIB, 2048, 2048)
    # no Hugetlb line: 2048 pages x 2 MiB
    assert memory.hugetlb_bytes == 2048 * 2 * MIB == 4 * GIB
    assert memory.basis["hugepage_pools"] == "/sys/kernel/mm/hugepages/hugepages-*kB"
    assert memory.basis["hugetlb_bytes"] == "sum over huge page pools of pages x page size"


def test_memory_facts_odd_count_pool():
    memory = fixture_facts(OPTERON).memory
    [pool] = memory.hugepage_pools
    assert (pool.total, pool.free) == (513, 513)
    assert memory.hugetlb_bytes == 513 * 2 * MIB


def test_memory_facts_swap_known_only_from_meminfo_counts_as_disk_swap():
    """No /proc/swaps, but meminfo says 14278648 kB of swap: not "no swap"."""
    memory = fixture_facts(OPTERON).memory
    [device] = memory.swap
    assert device.kind == "unknown"
    assert device.size_bytes == 14278648 * KIB
    assert device.used_bytes == 0  # SwapFree equals SwapTotal in this meminfo
    assert memory.disk_swap == [device]
    assert "no /proc/swaps" in memory.basis["swap"]


def test_memory_facts_meminfo_swaptotal_zero_means_no_swap():
    memory = fixture_facts(HYPERV).memory
    assert memory.swap == []
    assert memory.basis["swap"] == "/proc/meminfo SwapTotal = 0 (no /proc/swaps)"


def test_memory_facts_build_machine():
    memory = fixture_facts(BUILD).memory
    assert memory.total_bytes == 24684092 * KIB
    assert memory.swap == []
    assert memory.basis["swap"] == "/proc/swaps"  # read, and empty
    assert memory.swappiness == 60
    assert memory.thp_enabled == "madvise"
    assert {p.page_size_bytes for p in memory.hugepage_pools} == {2 * MIB, GIB}
    assert memory.hugetlb_bytes == 0


# -- the cpu section: cpufreq policies on both layouts -----------------------------------------
def test_cpufreq_policy_folders_with_cpu_lists():
    cpu = fixture_facts(LAPTOP).cpu
    assert cpu.logical == 20
    assert cpu.online_cpus == list(range(20))
    assert "i7-1370P" in cpu.model_name
    policies = cpu.frequency_policies
    # ordered by number, not by name: policy2 before policy10
    assert [p.name for p in policies] == [f"policy{i}" for i in range(20)]
    assert [p.cpus for p in policies] == [[i] for i in range(20)]
    assert {(p.driver, p.governor, p.epp) for p in policies} == {
        ("intel_pstate", "powersave", "balance_performance")}
    assert policies[0].available_governors == ["performance", "powersave"]
    assert cpu.basis["frequency_policies"] == "/sys/devices/system/cpu/cpufreq"


def test_cpufreq_policy_folders_without_cpu_lists_use_the_cpu_links():
    cpu = fixture_facts(TIGERLAKE).cpu
    policies = cpu.frequency_policies
    assert [p.name for p in policies] == [f"policy{i}" for i in range(8)]
    # this dump has no affected_cpus: each cpuN/cpufreq link points at policyN
    assert [p.cpus for p in policies] == [[i] for i in range(8)]
    assert {(p.driver, p.governor, p.epp) for p in policies} == {
        ("intel_pstate", "powersave", "balance_power")}
    assert policies[0].available_governors == []


def test_cpufreq_shared_policy_found_through_links(tmp_path):
    """Two policies shared by four CPUs each (acpi-cpufreq on many desktops), no CPU lists."""
    files = {"/sys/devices/system/cpu/online": "0-7\n"}
    for policy in (0, 4):
        base = f"/sys/devices/system/cpu/cpufreq/policy{policy}"
        files[base + "/scaling_governor"] = "schedutil\n"
        files[base + "/scaling_driver"] = "acpi-cpufreq\n"
    links = {f"/sys/devices/system/cpu/cpu{n}/cpufreq": f"../cpufreq/policy{0 if n < 4 else 4}"
             for n in range(8)}
    policies = facts_for(write_snapshot(tmp_path, files, links=links)).cpu.frequency_policies
    assert [(p.name, p.cpus) for p in policies] == [
        ("policy0", [0, 1, 2, 3]), ("policy4", [4, 5, 6, 7])]


def test_cpufreq_policy_without_list_or_link_is_named_after_its_first_cpu(tmp_path):
    files = {"/sys/devices/system/cpu/cpufreq/policy6/scaling_governor": "performance\n"}
    [policy] = facts_for(write_snapshot(tmp_path, files)).cpu.frequency_policies
    assert (policy.name, policy.cpus, policy.governor) == ("policy6", [6], "performance")


def test_cpufreq_per_cpu_folders_on_older_kernels():
    cpu = fixture_facts(OPTERON).cpu
    assert cpu.logical == 32
    assert cpu.vendor == "AuthenticAMD"
    policies = cpu.frequency_policies
    assert [p.name for p in policies] == [f"cpu{i}" for i in range(32)]
    assert [p.cpus for p in policies] == [[i] for i in range(32)]
    assert {(p.driver, p.governor, p.epp) for p in policies} == {
        ("powernow-k8", "ondemand", None)}
    assert policies[0].available_governors == [
        "conservative", "ondemand", "userspace", "powersave", "performance"]


@pytest.mark.parametrize("name", [KVM, HYPERV, H8QM8, BUILD])
def test_no_cpufreq(name):
    cpu = fixture_facts(name).cpu
    assert cpu.frequency_policies == []
    assert cpu.basis["frequency_policies"].startswith("no cpufreq in sysfs")


def test_online_cpus_fall_back_to_cpuinfo(tmp_path):
    cpuinfo = (Path(host_fixture(HYPERV)) / "fs/proc/cpuinfo").read_text()
    cpu = facts_for(write_snapshot(tmp_path, {"/proc/cpuinfo": cpuinfo})).cpu
    assert cpu.online_cpus == [0, 1]
    assert cpu.basis["logical"] == "processor entries in /proc/cpuinfo"
    assert "W-2155" in cpu.model_name


# -- virtualization ---------------------------------------------------------------------------
def test_virtualization_by_systemd_detect_virt_container_in_vm():
    system = fixture_facts(BUILD).system
    assert system.virtualization == Virtualization("container", "docker", "kvm")
    assert system.basis["virtualization"] == "systemd-detect-virt --container / --vm"
    assert system.kernel == "6.18.44-fc-v657"
    assert system.os == "Debian GNU/Linux 12 (bookworm)"


def test_virtualization_by_systemd_detect_virt_vm(tmp_path):
    # systemd-detect-virt prints "none" and exits 1 when it finds nothing
    root = write_snapshot(tmp_path, commands={
        "systemd-detect-virt --vm": ("microsoft\n", "0\n"),
        "systemd-detect-virt --container": ("none\n", "1\n")})
    system = facts_for(root).system
    assert system.virtualization == Virtualization("vm", "microsoft")
    assert system.basis["virtualization"] == "systemd-detect-virt --vm"


def test_virtualization_by_systemd_detect_virt_bare_metal_wins_over_files(tmp_path):
    """Its "none" is believed even where a file fallback would guess otherwise."""
    root = write_snapshot(tmp_path, files={"/proc/cpuinfo": HYPERVISOR_CPUINFO},
                          commands={"systemd-detect-virt --vm": ("none\n", "1\n"),
                                    "systemd-detect-virt --container": ("none\n", "1\n")})
    system = facts_for(root).system
    assert system.virtualization == Virtualization("none")
    assert system.basis["virtualization"] == "systemd-detect-virt --vm / --container"


def test_virtualization_falls_back_to_files_when_the_command_is_missing(tmp_path):
    root = copy_fixture(KVM, tmp_path)
    write_snapshot(root, commands={"systemd-detect-virt --vm": ("", "not-installed"),
                                   "systemd-detect-virt --container": ("", "not-installed")})
    system = facts_for(root).system
    assert system.virtualization == Virtualization("vm", "kvm")
    assert system.basis["virtualization"] == (
        "/sys/class/dmi/id/product_name: CloudStack KVM Hypervisor")


def test_virtualization_kvm_by_dmi_product_name():
    """sys_vendor is "Apache Software Foundation"; product_name "CloudStack KVM Hypervisor"."""
    system = fixture_facts(KVM).system
    assert system.virtualization == Virtualization("vm", "kvm")
    assert system.kernel == "4.9.0-3-amd64"


def test_virtualization_hyperv_by_dmi_pair_through_the_class_symlink():
    """Microsoft Corporation / Virtual Machine, read via /sys/class/dmi/id -> devices/virtual."""
    system = fixture_facts(HYPERV).system
    assert system.virtualization == Virtualization("vm", "microsoft")


def test_virtualization_microsoft_hardware_is_not_a_vm(tmp_path):
    root = write_snapshot(tmp_path, files={
        "/sys/class/dmi/id/sys_vendor": "Microsoft Corporation\n",
        "/sys/class/dmi/id/product_name": "Surface Laptop 5\n",
        "/proc/cpuinfo": "processor\t: 0\nflags\t\t: fpu vme\n"})
    assert facts_for(root).system.virtualization == Virtualization("none")


def test_virtualization_qemu_by_dmi_vendor(tmp_path):
    # corpus dmidecode/074: QEMU Q35 guest, "Manufacturer: QEMU"
    root = write_snapshot(tmp_path, files={
        "/sys/class/dmi/id/sys_vendor": "QEMU\n",
        "/sys/class/dmi/id/product_name": "Standard PC (Q35 + ICH9, 2009)\n",
        "/proc/cpuinfo": "processor\t: 0\nflags\t\t: fpu vme\n"})
    assert facts_for(root).system.virtualization == Virtualization("vm", "qemu")


def test_virtualization_hypervisor_flag_alone(tmp_path):
    root = write_snapshot(tmp_path, files={"/proc/cpuinfo": HYPERVISOR_CPUINFO})
    assert facts_for(root).system.virtualization == Virtualization("vm", "unknown hypervisor")


@pytest.mark.parametrize("marker, name", [
    ("/.dockerenv", "docker"), ("/run/.containerenv", "podman")])
def test_virtualization_container_marker_files(tmp_path, marker, name):
    root = write_snapshot(tmp_path, files={marker: "", "/proc/cpuinfo": "processor\t: 0\n"})
    assert facts_for(root).system.virtualization == Virtualization("container", name, None)


def test_virtualization_systemd_container_file_and_dmi_vm(tmp_path):
    root = write_snapshot(tmp_path, files={"/run/systemd/container": "lxc\n",
                                           "/sys/class/dmi/id/sys_vendor": "QEMU\n"})
    system = facts_for(root).system
    assert system.virtualization == Virtualization("container", "lxc", "qemu")
    assert system.basis["virtualization"] == (
        "/run/systemd/container; under qemu: /sys/class/dmi/id/sys_vendor: QEMU")


BARE_CPUINFO = "processor\t: 0\nflags\t\t: fpu vme\n"
DMI = "/sys/class/dmi/id/"
VIRT_WHAT = "zdyxry/virt-what@94773022 tests/"  # captured from real guests
LSCPU = "util-linux@39465c78 tests/ts/lscpu/dumps/"
LINUXHW = "linuxhw/DMI@57b21bc6 "


@pytest.mark.parametrize("source, files, expected", [
    # Hardware whose DMI only looks like a hypervisor's: whole words, whole names.
    (LINUXHW + "Notebook/ADATA/XENIA/XENIA 14", {DMI + "product_name": "XENIA 14\n",
                                                 DMI + "sys_vendor": "ADATA\n"}, ("none",)),
    (LINUXHW + "Notebook/Google/Eve", {DMI + "product_name": "Eve\n",
                                       DMI + "sys_vendor": "Google\n"}, ("none",)),
    (VIRT_WHAT + "aws-baremetal-x86", {DMI + "product_name": "i3.metal\n",
                                      DMI + "sys_vendor": "Amazon EC2\n"}, ("none",)),
    (VIRT_WHAT + "rhel5-xen-dom0", {"/proc/xen/capabilities": "control_d\n",
                                    DMI + "sys_vendor": "Apple Computer, Inc.\n"}, ("none",)),
    # Guests no hypervisor flag shows (old kernels, Arm, s390), named by what they leave.
    (VIRT_WHAT + "google-cloud", {DMI + "product_name": "Google Compute Engine\n",
                                 DMI + "sys_vendor": "Google\n"}, ("vm", "google")),
    (VIRT_WHAT + "rhel5-xen-domU-hvm", {DMI + "product_name": "HVM domU\n",
                                        DMI + "sys_vendor": "Red Hat\n",
                                        DMI + "bios_vendor": "Xen\n"}, ("vm", "xen")),
    (LSCPU + "x86_64-el5xen", {"/proc/xen/capabilities": ""}, ("vm", "xen")),
    (VIRT_WHAT + "esx-arm", {"/proc/device-tree/hypervisor/compatible": "vmware\0"},
     ("vm", "vmware")),
    (VIRT_WHAT + "qemu-arm", {"/proc/device-tree/fw-cfg@9020000/compatible":
                              "qemu,fw-cfg-mmio\0"}, ("vm", "qemu")),
    (VIRT_WHAT + "zvm", {"/proc/sysinfo": "VM00 Control Program: z/VM    5.3.0   \n"},
     ("vm", "zvm")),
    (LSCPU + "s390-kvm", {"/proc/sysinfo": "VM00 Control Program: KVM/Linux       \n"},
     ("vm", "kvm")),
    (LSCPU + "vbox-win", {"/proc/bus/pci/devices": "0010\t80eebeef\t12\t        e0000008\n"},
     ("vm", "oracle")),
    # Containers: systemd's manager file, OpenVZ's /proc/vz.
    ("systemd 248+ (src/basic/virt.c)", {"/run/host/container-manager": "systemd-nspawn\n"},
     ("container", "systemd-nspawn")),
    ("systemd (src/basic/virt.c)", {"/proc/vz/vestat": ""}, ("container", "openvz")),
])
def test_virtualization_by_the_files_real_guests_and_hosts_leave(tmp_path, source, files,
                                                                  expected):
    root = write_snapshot(tmp_path, files={"/proc/cpuinfo": BARE_CPUINFO, **files})
    system = facts_for(root).system
    assert system.virtualization == Virtualization(*expected), source
    if expected != ("none",):  # the basis names where it was seen
        assert "/".join(next(iter(files)).split("/")[:3]) in system.basis["virtualization"]


def test_pid_1s_environment_is_never_read(tmp_path):
    """systemd reads container= there, but a snapshot keeps what is read, and a container's
    environment holds its secrets (virt-what's lxc test: container=lxc beside the rest)."""
    root = write_snapshot(tmp_path, files={
        "/proc/cpuinfo": BARE_CPUINFO,
        "/proc/1/environ": "LANG=C\0API_KEY=s3cret\0container=lxc\0"})
    facts = facts_for(root)
    with facts.host.tracing() as read:
        assert facts.system.virtualization == Virtualization("none")
    assert "/proc/1/environ" not in read


def test_virtualization_wsl_by_kernel_release(tmp_path):
    root = write_snapshot(tmp_path, files={
        "/proc/sys/kernel/osrelease": "5.15.167.4-microsoft-standard-WSL2\n"})
    assert facts_for(root).system.virtualization == Virtualization("wsl", "wsl")
    root = write_snapshot(tmp_path / "wsl1", files={
        "/proc/sys/kernel/osrelease": "4.4.0-19041-Microsoft\n"})
    system = facts_for(root).system
    assert (system.virtualization.kind, system.basis["virtualization"]) == (
        "wsl", "kernel release names Microsoft (WSL1)")


@pytest.mark.parametrize("name", [LAPTOP, TIGERLAKE, OPTERON, H8QM8])
def test_virtualization_bare_metal_by_files(name):
    system = fixture_facts(name).system
    assert system.virtualization == Virtualization("none")
    assert system.basis["virtualization"].startswith("no hypervisor in DMI, the device tree")


def test_virtualization_unknown_without_any_source():
    """The OVS node's snapshot is a meminfo alone: nothing can tell."""
    system = fixture_facts(OVS).system
    assert system.virtualization == Virtualization(None)


# -- the model: KV cache ----------------------------------------------------------------------
def test_kv_cache_qwen3_coder_next():
    profile = PROFILES["qwen3-coder-next-mxfp4"]
    # per token per full-attention layer: K and V (2) x 2 KV heads x 256 dims x 2 bytes (f16)
    per_token = 2 * 2 * 256 * 2
    assert per_token == 2048
    # 12 of 48 layers hold a cache (the other 36 are recurrent: none)
    assert kv_cache_bytes(profile, 131072) == 12 * 2048 * 131072 == 3 * GIB
    assert kv_cache_bytes(profile, 4096) == 12 * 2048 * 4096 == 96 * MIB


def test_kv_cache_gpt_oss_with_sliding_window():
    profile = PROFILES["gpt-oss-120b-mxfp4"]
    per_token = 2 * 8 * 64 * 2  # K and V x 8 KV heads x 64 dims x 2 bytes
    assert per_token == 2048
    full = 18 * 2048 * 131072  # 18 full-attention layers over the whole context: 4.5 GiB
    window = 18 * 2048 * 128  # 18 sliding-window layers over their 128 tokens: 4.5 MiB
    assert kv_cache_bytes(profile, 131072) == full + window == 4_836_556_800
    # a context shorter than the window: every one of the 36 layers holds ctx tokens
    assert kv_cache_bytes(profile, 100) == 36 * 2048 * 100


def test_model_facts_follow_the_options():
    model = fixture_facts(BUILD, profile="gpt-oss-120b-mxfp4", ctx_size=32768).model
    assert model.kv_cache_bytes == 18 * 2048 * 32768 + 18 * 2048 * 128
    assert model.file_bytes == round(59.02 * GIB)
    assert model.ctx_size == 32768
    assert fixture_facts(BUILD).model.kv_cache_bytes == 3 * GIB  # defaults: qwen3, 131072


# -- the placement -----------------------------------------------------------------------------
QWEN_MODEL_BYTES = round(44.73 * GIB) + 3 * GIB  # weights + KV cache at ctx 131072

# RTX 4090 as nvidia-smi showed it in corpus nvidia/003: 24564 MiB total, 1583 MiB used
RTX4090 = {"index": 0, "name": "NVIDIA GeForce RTX 4090", "memory_total_bytes": 24564 * MIB,
           "memory_used_bytes": 1583 * MIB, "memory_free_bytes": (24564 - 1583) * MIB}


def nvml_with(*devices: dict, init: str = "ok") -> dict:
    return {"init": init, "driver_version": "580.126.09", "cuda_driver_version": 13000,
            "devices": [dict(device, index=i) for i, device in enumerate(devices)]}


def test_placement_without_gpu_keeps_everything_in_ram():
    plan = placement(fixture_facts(LAPTOP))
    assert plan.gpus == 0 and plan.vram_usable_bytes == 0 and plan.gpu_bytes == 0
    assert plan.ram_bytes == QWEN_MODEL_BYTES
    assert plan.headroom_bytes == OS_HEADROOM_BYTES == 4 * GIB
    assert plan.ram_needed_bytes == QWEN_MODEL_BYTES + 4 * GIB  # about 51.7 GiB
    assert "no usable NVIDIA GPU: everything in RAM" in plan.basis


def _conserved(plan) -> bool:
    """Every byte of weights and KV cache is placed once: on a GPU or in RAM."""
    return plan.ram_bytes + plan.gpu_bytes - plan.compute_buffer_bytes == QWEN_MODEL_BYTES


def test_placement_with_one_gpu(tmp_path):
    root = copy_fixture(H8QM8, tmp_path)
    write_snapshot(root, nvml=nvml_with(RTX4090))
    plan = placement(facts_for(root))
    usable = (24564 - 1583) * MIB - FIT_TARGET_MIB * MIB  # free VRAM less the --fit-target
    assert plan.vram_usable_bytes == usable == 21957 * MIB
    assert plan.dense_fits_gpu and plan.gpu_bytes <= usable
    assert plan.expert_layers_on_gpu == (usable - plan.dense_need_bytes) // \
        plan.expert_layer_bytes
    assert _conserved(plan)
    assert plan.ram_needed_bytes == plan.ram_bytes + 4 * GIB
    assert "1 GPU(s): 22.4 GiB free less --fit-target 1024 MiB" in plan.basis


def test_placement_with_two_gpus_and_a_model_that_fits_in_vram(tmp_path):
    root = copy_fixture(H8QM8, tmp_path)
    write_snapshot(root, nvml=nvml_with(RTX4090, RTX4090))
    plan = placement(facts_for(root))
    assert plan.vram_usable_bytes == 2 * 21957 * MIB
    # what the GPUs cannot take (less than one layer more), the embedding table, and the
    # agent's -ub 4096 compute buffer (plan/serving.py), which may cost two layers' experts
    embeddings = PROFILES["qwen3-coder-next-mxfp4"]["embedding_bytes"]
    assert _conserved(plan) and plan.ram_bytes < QWEN_MODEL_BYTES - 2 * 21957 * MIB + GIB \
        + embeddings + 2 * plan.expert_layer_bytes

    big = dict(RTX4090, memory_total_bytes=96 * GIB, memory_free_bytes=95 * GIB)
    write_snapshot(root, nvml=nvml_with(big))
    plan = placement(facts_for(root))
    # never negative: only the embedding table stays in RAM (llama.cpp keeps it there);
    # the prompt cache and checkpoints live in RAM whatever the GPU holds (plan/serving.py)
    assert plan.ram_bytes == embeddings and plan.n_cpu_moe == 0
    assert plan.ram_needed_bytes == 4 * GIB + embeddings + plan.serving_ram_bytes
    assert plan.serving_ram_bytes > 0


def test_placement_ignores_gpus_nvml_cannot_use(tmp_path):
    root = copy_fixture(H8QM8, tmp_path)
    write_snapshot(root, nvml=nvml_with(RTX4090, init="NVML_ERROR_DRIVER_NOT_LOADED"))
    assert placement(facts_for(root)).vram_usable_bytes == 0
    failed = dict(RTX4090, memory_free_bytes={"error": "NVML_ERROR_GPU_IS_LOST"})
    write_snapshot(root, nvml=nvml_with(failed))
    assert placement(facts_for(root)).gpus == 0


# -- sources ------------------------------------------------------------------------------------
def test_sections_cite_what_they_read():
    facts = fixture_facts(LAPTOP)
    host = facts.host
    with host.tracing() as read:
        assert facts.memory.total_bytes
    assert {"/proc/meminfo", "/proc/swaps", "/proc/sys/vm/swappiness",
            "/sys/kernel/mm/transparent_hugepage/enabled"} <= set(read)
    with host.tracing() as again:  # a second asker cites the same sources
        assert facts.memory.total_bytes
    assert again == read
    with host.tracing() as read:
        assert facts.cpu.frequency_policies
    assert "/sys/devices/system/cpu/cpufreq/policy0/scaling_governor" in read
    assert "/proc/cpuinfo" in read


@pytest.mark.parametrize("virt, virtual, in_vm", [
    (Virtualization("none"), False, False),
    (Virtualization("vm", "kvm"), True, True),
    (Virtualization("wsl", "wsl"), True, False),  # WSL2 shows the host's CPU
    (Virtualization("container", "docker"), True, False),
    (Virtualization("container", "docker", "kvm"), True, True),
    (Virtualization(None), None, False),  # nothing could tell
])
def test_one_answer_to_is_this_virtual(virt, virtual, in_vm):
    assert (virt.is_virtual, virt.in_vm) == (virtual, in_vm)


def test_kernel_parameters_are_a_fact(tmp_path):
    root = copy_fixture(LAPTOP, tmp_path)
    (root / "fs" / "proc").mkdir(parents=True, exist_ok=True)
    (root / "fs" / "proc" / "cmdline").write_text(
        "BOOT_IMAGE=/vmlinuz ro quiet isolcpus=2-5 hugepages=16 isolcpus=2-7 nosmt\n")
    system = facts_for(root).system
    assert system.kernel_param("isolcpus") == "2-7"  # the last one wins
    assert system.kernel_param("nosmt") == ""
    assert system.kernel_param("transparent_hugepage") is None
    assert system.basis["cmdline"] == "/proc/cmdline"

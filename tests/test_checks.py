"""The first five checks on real machines (tests/fixtures/hosts; SOURCE.txt in each says what
is real and what was constructed), plus variations written over a copy under tmp_path.

Numbers in the assertions are the machines' own: e.g. the HP laptop's 32489496 kB of RAM is
"31.0 GiB"; the Qwen3-Coder-Next profile needs 44.73 GiB of weights + 3 GiB of KV cache at
ctx 131072 + 4 GiB for the OS = "51.7 GiB" when no GPU takes a share.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import copy_fixture, host_fixture, run_cli, snapshot_facts
from conftest import snapshot_findings as findings_for
from conftest import write_fs as write
from fixture_hosts import BUILD, H8QM8, HYPERV, KVM, LAPTOP, OPTERON, OVS, TIGERLAKE, ZRAM
from q3cn_doctor.checking.findings import ERROR, FAIL, INFO, PASS, SKIP, WARN, Finding
from q3cn_doctor.checking.runner import run_checks, select
from q3cn_doctor.facts import Facts
from q3cn_doctor.options import Options
from q3cn_doctor.plan.placement import placement
from q3cn_doctor.units import GIB, gib

KIB = 1024
MIB = 1024**2

ALL_FIXTURES = (LAPTOP, TIGERLAKE, OPTERON, KVM, OVS, H8QM8, ZRAM, HYPERV, BUILD)

QWEN_NEED = round(44.73 * GIB) + 3 * GIB + 4 * GIB  # weights + KV at 131072 + OS headroom
# RTX 4090 as nvidia-smi showed it in corpus nvidia/003: 24564 MiB total, 1583 MiB used
RTX4090 = {"name": "NVIDIA GeForce RTX 4090", "memory_total_bytes": 24564 * MIB,
           "memory_used_bytes": 1583 * MIB, "memory_free_bytes": (24564 - 1583) * MIB}



def check(name: str, check_id: str, **options) -> dict[str, Finding]:
    return findings_for(host_fixture(name), check_id, **options)


def one(name_or_dir: str | Path, check_id: str, **options) -> Finding:
    directory = name_or_dir if isinstance(name_or_dir, Path) else host_fixture(name_or_dir)
    found = findings_for(directory, check_id, **options)
    assert list(found) == [check_id], found
    return found[check_id]




def with_gpus(root: Path, count: int) -> Path:
    devices = [dict(RTX4090, index=i) for i in range(count)]
    (root / "nvml.json").write_text(json.dumps(
        {"init": "ok", "driver_version": "580.126.09", "cuda_driver_version": 13000,
         "devices": devices}), encoding="utf-8")
    return root


# -- every check on every real machine ------------------------------------------------------------
@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_no_check_crashes_on_a_real_machine(name):
    findings = findings_for(host_fixture(name))
    errors = [f"{f.id}: {f.observed}" for f in findings.values() if f.status == ERROR]
    assert errors == []
    for check_id in ("memory.swappiness", "memory.swap", "memory.hugepages",
                     "memory.hugepages:thp", "cpu.governor", "system.virtualization"):
        assert check_id in findings


# -- memory.swappiness ---------------------------------------------------------------------------
def test_swappiness_60_beside_a_mapped_model_passes():
    """The laptop's RAM cannot hold the model, so launch maps it: file pages, re-read from
    the GGUF, never written to swap. Swappiness 0 would only drop them sooner."""
    finding = one(LAPTOP, "memory.swappiness")
    assert (finding.status, finding.title) == (
        PASS, "The model is mapped from its file: swap never holds it")
    assert finding.observed.startswith(
        "vm.swappiness = 60; swap: /dev/nvme0n1p3 (partition, 1.0 GiB); RAM cannot hold its")
    assert finding.fixes == []
    assert {"/proc/sys/vm/swappiness", "/proc/swaps"} <= set(finding.evidence)


def test_swappiness_60_with_the_model_in_unlocked_memory_warns_and_offers_the_fix():
    """--no-mmap (your arguments) on a build that cannot pin it: anonymous memory, which
    only swap can page out. That is what swappiness 0 protects."""
    finding = one(LAPTOP, "memory.swappiness", server_args=["--no-mmap"])
    assert finding.status == WARN
    assert finding.title == "Swappiness 60 lets the kernel page the model out to disk"
    assert finding.fixes == ["sysctl.swappiness"] and "vm.swappiness=0" in finding.recommended
    locked = one(LAPTOP, "memory.swappiness", server_args=["--no-mmap", "--mlock"])
    assert locked.status == PASS and locked.title.endswith("launch locks it")


def test_swappiness_100_with_zram_only_is_information():
    finding = one(ZRAM, "memory.swappiness")
    assert finding.status == INFO
    assert finding.observed == "vm.swappiness = 100; swap: /dev/zram0 (zram, 8.0 GiB)"
    assert finding.fixes == []
    assert {"/proc/sys/vm/swappiness", "/proc/swaps"} <= set(finding.evidence)


def test_swappiness_without_swap_passes():
    finding = one(BUILD, "memory.swappiness")
    assert finding.status == PASS
    assert finding.observed == "vm.swappiness = 60; swap: none"
    assert finding.fixes == []


@pytest.mark.parametrize("name", [TIGERLAKE, KVM, HYPERV, OVS])
def test_swappiness_unreadable_skips(name):
    finding = one(name, "memory.swappiness")
    assert finding.status == SKIP
    assert "/proc/sys/vm/swappiness" in finding.evidence


def test_swappiness_low_beside_a_mapped_model_is_information(tmp_path):
    root = copy_fixture(LAPTOP, tmp_path)
    write(root, "/proc/sys/vm/swappiness", "10\n")
    finding = one(root, "memory.swappiness")
    assert (finding.status, finding.title) == (
        INFO, "Swappiness 10 drops the mapped model's pages before idle memory")
    assert finding.fixes == [] and "memory.memlock" in finding.recommended
    unlocked = one(root, "memory.swappiness", server_args=["--no-mmap"])
    assert (unlocked.status, unlocked.title) == (PASS, "Swappiness 10 keeps the model in RAM")


def test_swappiness_100_with_disk_swap_beside_zram_judges_the_disk_swap(tmp_path):
    root = copy_fixture(ZRAM, tmp_path)
    swaps = (root / "fs/proc/swaps").read_text()
    swapfile = "/swapfile" + " " * 31 + "file\t\t2097148\t\t0\t\t-2\n"  # kernel format
    write(root, "/proc/swaps", swaps + swapfile)
    finding = one(root, "memory.swappiness", server_args=["--no-mmap"])
    assert finding.status == WARN
    assert "/dev/zram0 (zram, 8.0 GiB), /swapfile (file, 2.0 GiB)" in finding.observed
    # swappiness 0 would idle the zram too: the step is the disk swap off, not the fix
    assert finding.fixes == [] and finding.manual[0].startswith(
        "Turn off the disk swap (/swapfile (file, 2.0 GiB)) with swapoff")


# -- memory.swap --------------------------------------------------------------------------------
def test_swap_warns_when_ram_is_short_of_the_model():
    finding = one(LAPTOP, "memory.swap")
    ram = 32489496 * KIB
    assert finding.status == WARN
    assert finding.title == f"RAM is {gib(QWEN_NEED - ram)} short, so the model will page to disk"
    assert gib(QWEN_NEED - ram) == "20.7 GiB"
    assert finding.observed.startswith("RAM 31.0 GiB; the model needs about 51.7 GiB (")
    assert finding.observed.endswith("no usable NVIDIA GPU: everything in RAM; plus 4 GiB for "
                                     "the OS); disk swap: /dev/nvme0n1p3 (partition, 1.0 GiB)")
    assert finding.fixes == []  # no software fix adds RAM
    assert finding.manual
    assert {"/proc/meminfo", "/proc/swaps", "NVML"} <= set(finding.evidence)


def test_swap_passes_when_gpus_take_enough_of_the_model(tmp_path):
    """Two RTX 4090s take whole layers of experts: what is left, plus 4 GiB for the OS, fits
    the 31.0 GiB of RAM. One does not at a 262144-token context: its 21.4 GiB usable, less
    the 6 GiB KV cache, takes 14 of 48 expert layers."""
    ram = 32489496 * KIB
    one_gpu = with_gpus(copy_fixture(LAPTOP, tmp_path / "one"), 1)
    assert placement(snapshot_facts(one_gpu, ctx_size=262144)).ram_needed_bytes > ram
    assert one(one_gpu, "memory.swap", ctx_size=262144).status == WARN
    root = with_gpus(copy_fixture(LAPTOP, tmp_path / "two"), 2)
    need = placement(snapshot_facts(root)).ram_needed_bytes
    finding = one(root, "memory.swap")
    assert need < ram
    assert finding.status == PASS
    assert finding.title == "RAM holds the model with headroom; disk swap stays idle"
    assert f"the model needs about {gib(need)}" in finding.observed


def test_swap_counts_hugetlb_pages_as_ram_taken(tmp_path):
    """A VFIO desktop: 16 GiB of its 62.7 GiB reserved as 1 GiB pages for a VM, 8 GiB of
    disk swap. The model's 51.7 GiB fit the RAM, not the RAM less the reservation."""
    root = copy_fixture(LAPTOP, tmp_path)
    write(root, "/proc/meminfo", "MemTotal:       65748876 kB\nMemFree:        20000000 kB\n"
          "MemAvailable:   30000000 kB\nHugePages_Total:      16\nHugePages_Free:        0\n"
          "Hugepagesize:    1048576 kB\nHugetlb:        16777216 kB\n")
    finding = one(root, "memory.swap")
    assert finding.status == WARN and finding.title.startswith("RAM is 5.0 GiB short")
    assert finding.observed.startswith("RAM 62.7 GiB, 16.0 GiB of it hugetlb pages;")


def test_swap_passes_with_zram_only_even_when_ram_is_short():
    finding = one(ZRAM, "memory.swap")
    assert finding.status == PASS
    assert finding.title == "No disk swap for the model's memory to be paged to"
    assert finding.observed.startswith("RAM 31.2 GiB; the model needs about 51.7 GiB")
    assert finding.observed.endswith("disk swap: none")


def test_swap_of_unknown_kind_counts_as_disk_swap():
    """No /proc/swaps, but meminfo has 14278648 kB of swap; 126 GiB of RAM holds the model."""
    finding = one(OPTERON, "memory.swap")
    assert finding.status == PASS
    assert finding.title == "RAM holds the model with headroom; disk swap stays idle"
    assert "SwapTotal in /proc/meminfo (unknown, 13.6 GiB)" in finding.observed

    finding = one(H8QM8, "memory.swap")  # 31.5 GiB of RAM (4 GiB hugetlb), 1.9 GiB of swap
    assert finding.status == WARN
    assert finding.observed.startswith(
        "RAM 31.5 GiB, 4.0 GiB of it hugetlb pages; the model needs about 51.7 GiB")
    assert "SwapTotal in /proc/meminfo (unknown, 1.9 GiB)" in finding.observed


def test_swap_passes_when_meminfo_says_none():
    finding = one(OVS, "memory.swap")
    assert finding.status == PASS
    assert finding.observed.startswith("RAM 377.4 GiB, 160.0 GiB of it hugetlb pages;")


def test_swap_skips_without_meminfo():
    assert one(TIGERLAKE, "memory.swap").status == SKIP


# -- memory.hugepages -----------------------------------------------------------------------------
def test_hugepages_160_x_1g_leave_enough_for_the_model():
    """377.4 GiB - 160 GiB = 217.4 GiB left, well over the 70.1 GiB the model needs (51.7
    GiB with the OS headroom, and 18.4 GiB of prompt cache and context checkpoints)."""
    found = check(OVS, "memory.hugepages")
    finding = found["memory.hugepages"]
    assert finding.status == INFO
    assert finding.title == "160.0 GiB reserved as hugetlb pages; the model still fits"
    assert finding.observed == (
        "160.0 GiB of 377.4 GiB reserved as hugetlb pages [160 x 1048576 kB (140 free)], "
        "leaving 217.4 GiB; the model needs about 70.1 GiB")
    assert finding.fixes == ["hugepages.release"]
    assert "/proc/meminfo" in finding.evidence
    assert found["memory.hugepages:thp"].status == SKIP  # no sysfs in this snapshot


def test_hugepages_160_x_1g_still_fit_the_larger_profile():
    """gpt-oss-120b: 59.02 GiB + 4.5 GiB KV + 4 GiB = 67.5 GiB, and 16.7 GiB for serving (a
    16 GiB prompt cache, 32 sliding-window checkpoints), still under 217.4 GiB."""
    finding = check(OVS, "memory.hugepages", profile="gpt-oss-120b-mxfp4")["memory.hugepages"]
    assert finding.status == INFO
    assert finding.observed.endswith("leaving 217.4 GiB; the model needs about 84.2 GiB")


def test_hugepages_2048_x_2m_fail_on_31_gib():
    """31.5 GiB - 4.0 GiB = 27.5 GiB left, short of 51.7 GiB."""
    finding = check(H8QM8, "memory.hugepages")["memory.hugepages"]
    assert finding.status == FAIL
    assert finding.title == "Hugetlb reservations leave 27.5 GiB, too little for the model"
    assert finding.observed == (
        "4.0 GiB of 31.5 GiB reserved as hugetlb pages [2048 x 2048 kB (2048 free)], "
        "leaving 27.5 GiB; the model needs about 51.7 GiB")
    assert finding.fixes == ["hugepages.release"]
    assert "vm.nr_hugepages=0" in finding.recommended
    assert {"/proc/meminfo", "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"} <= set(
        finding.evidence)


def test_hugepages_are_what_stops_the_model_fitting_beside_one_gpu(tmp_path):
    """With an RTX 4090 the model needs 31.3 GiB: more than the 27.5 GiB the pages leave,
    less than the 31.5 GiB there would be without them."""
    root = with_gpus(copy_fixture(H8QM8, tmp_path), 1)
    finding = check(root, "memory.hugepages")["memory.hugepages"]
    total, left = 33018776 * KIB, 33018776 * KIB - 4 * GIB
    need = placement(snapshot_facts(root)).ram_needed_bytes
    assert left < need <= total
    assert finding.status == FAIL
    assert finding.observed.endswith("leaving 27.5 GiB; the model needs about 31.3 GiB")


def test_hugepages_fit_beside_two_gpus(tmp_path):
    root = with_gpus(copy_fixture(H8QM8, tmp_path), 2)
    finding = check(root, "memory.hugepages")["memory.hugepages"]
    assert finding.status == INFO
    need = placement(snapshot_facts(root)).ram_needed_bytes
    assert need < 33018776 * KIB - 4 * GIB
    assert finding.observed.endswith(f"the model needs about {gib(need)}")


def test_hugepages_odd_count_on_126_gib_is_information():
    finding = check(OPTERON, "memory.hugepages")["memory.hugepages"]
    assert finding.status == INFO
    assert finding.observed.startswith(
        "1.0 GiB of 126.2 GiB reserved as hugetlb pages [513 x 2048 kB (513 free)], "
        "leaving 125.2 GiB")


@pytest.mark.parametrize("name, total", [(LAPTOP, "31.0 GiB"), (BUILD, "23.5 GiB"),
                                         (HYPERV, "7.8 GiB"), (ZRAM, "31.2 GiB")])
def test_hugepages_none_reserved_passes(name, total):
    finding = check(name, "memory.hugepages")["memory.hugepages"]
    assert finding.status == PASS
    assert finding.observed == f"hugetlb: 0 of {total}"
    assert finding.fixes == []


def test_hugepages_unknown_without_meminfo():
    assert check(TIGERLAKE, "memory.hugepages")["memory.hugepages"].status == SKIP


def test_hugepages_none_on_a_kernel_without_hugetlbfs(tmp_path):
    """A Raspberry Pi's meminfo has no HugePages lines (eidottermihi/rpicheck#107): its
    kernel has no hugetlbfs, so nothing is reserved, rather than "could not be read"."""
    root = copy_fixture(BUILD, tmp_path)
    meminfo = root / "fs/proc/meminfo"
    meminfo.write_text("".join(line + "\n" for line in meminfo.read_text().splitlines()
                               if not line.startswith(("HugePages_", "Hugepagesize", "Hugetlb"))))
    shutil.rmtree(root / "fs/sys/kernel/mm/hugepages", ignore_errors=True)
    assert check(root, "memory.hugepages")["memory.hugepages"].status == PASS


def test_thp_mode_is_reported():
    finding = check(BUILD, "memory.hugepages")["memory.hugepages:thp"]
    assert finding.status == INFO
    assert finding.check == "memory.hugepages"
    assert finding.title == "Transparent huge pages: madvise"
    assert finding.observed.startswith(
        "/sys/kernel/mm/transparent_hugepage/enabled = [madvise]; the plan maps the model")
    assert finding.fixes == []
    assert "/sys/kernel/mm/transparent_hugepage/enabled" in finding.evidence


def test_thp_does_not_matter_for_a_mapped_model(tmp_path):
    """The build machine's RAM cannot hold the model: it stays mapped from its file, and THP
    does not back the page cache, so no mode is advised and no fix offered."""
    root = copy_fixture(BUILD, tmp_path)
    write(root, "/sys/kernel/mm/transparent_hugepage/enabled", "always madvise [never]\n")
    finding = check(root, "memory.hugepages")["memory.hugepages:thp"]
    assert (finding.status, finding.title) == (INFO, "Transparent huge pages: never")
    assert finding.fixes == [] and not finding.recommended


def test_thp_for_a_model_read_into_ram_only_always_helps(tmp_path):
    """The guide's 64 GB machine reads the model into RAM: llama.cpp does not madvise, so
    madvise mode gives it nothing and only `always` is advised (a manual step, measured by
    bench); the thp.mode fix (madvise) is offered from never for other programs only."""
    from launch_fixtures import guide_machine

    root = guide_machine(tmp_path / "g")
    for mode, fixes in (("madvise", []), ("never", ["thp.mode"])):
        text = " ".join(f"[{m}]" if m == mode else m for m in ("always", "madvise", "never"))
        write(root, "/sys/kernel/mm/transparent_hugepage/enabled", text + "\n")
        finding = check(root, "memory.hugepages")["memory.hugepages:thp"]
        assert finding.title == f"Transparent huge pages: {mode}: llama.cpp's buffers get none"
        assert "does not madvise" in finding.recommended and finding.fixes == fixes
        assert finding.manual[0].startswith("echo always > ")
    write(root, "/sys/kernel/mm/transparent_hugepage/enabled", "[always] madvise never\n")
    finding = check(root, "memory.hugepages")["memory.hugepages:thp"]
    assert finding.title == "Transparent huge pages: always" and "back the model" in \
        finding.impact


# -- cpu.governor ---------------------------------------------------------------------------------
def test_governor_powersave_with_epp_on_policy_folders():
    finding = one(LAPTOP, "cpu.governor")
    assert finding.status == WARN
    # The i7-1370P's 6 P-cores (CPUs 0-11) are what llama-server is planned on: the
    # 8 E-cores' policies are left to the desktop and not judged.
    assert finding.title == ("12 of 12 frequency policies llama-server uses are not at "
                             "performance")
    assert finding.observed == ("powersave on CPUs 0-19 (intel_pstate, EPP balance_performance);"
                                " llama-server is planned on CPUs 0-11 (the CPU plan)")
    assert finding.fixes == ["cpu.governor"]
    assert {"/sys/devices/system/cpu/cpufreq/policy0/scaling_governor",
            "/sys/devices/system/cpu/cpufreq/policy19/energy_performance_preference"} <= set(
        finding.evidence)


def test_governor_sees_a_clock_cap_under_any_governor(tmp_path):
    """TLP's CPU_SCALING_MAX_FREQ (linrunner/TLP#764: amd-pstate-epp with scaling_max_freq
    400000 of 4463000) and intel_pstate's max_perf_pct hold the clock down whatever the
    governor says; the laptop at performance still warns, with the writes to undo it."""
    root = copy_fixture(LAPTOP, tmp_path)
    for n in range(20):
        folder = f"/sys/devices/system/cpu/cpufreq/policy{n}"
        write(root, folder + "/scaling_governor", "performance\n")
        write(root, folder + "/energy_performance_preference", "performance\n")
        write(root, folder + "/cpuinfo_max_freq", "5200000\n")
        write(root, folder + "/scaling_max_freq", "400000\n" if n < 2 else "5200000\n")
    found = check(root, "cpu.governor")
    assert found["cpu.governor"].status == PASS
    cap = found["cpu.governor:cap"]
    assert cap.status == WARN and cap.title == "The clock is capped at 0.4 of 5.2 GHz"
    assert cap.manual[0].endswith(
        "`echo 5200000 > /sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq; "
        "echo 5200000 > /sys/devices/system/cpu/cpufreq/policy1/scaling_max_freq`.")
    for n in range(2):
        write(root, f"/sys/devices/system/cpu/cpufreq/policy{n}/scaling_max_freq", "5200000\n")
    write(root, "/sys/devices/system/cpu/intel_pstate/max_perf_pct", "50\n")
    cap = check(root, "cpu.governor")["cpu.governor:cap"]
    assert cap.title == "intel_pstate caps every core at 50% of its top clock"
    write(root, "/sys/devices/system/cpu/intel_pstate/max_perf_pct", "100\n")
    assert "cpu.governor:cap" not in check(root, "cpu.governor")


def test_no_turbo_on_a_cpu_without_turbo_is_a_note(tmp_path):
    root = copy_fixture(LAPTOP, tmp_path)
    write(root, "/sys/devices/system/cpu/intel_pstate/no_turbo", "1\n")
    assert check(root, "cpu.governor")["cpu.governor:boost"].status == WARN
    write(root, "/sys/devices/system/cpu/intel_pstate/turbo_pct", "0\n")
    boost = check(root, "cpu.governor")["cpu.governor:boost"]
    assert boost.status == INFO and boost.fixes == []


def test_governor_tigerlake_balance_power():
    finding = one(TIGERLAKE, "cpu.governor")
    assert finding.status == WARN
    assert finding.title == "8 of 8 frequency policies are not at performance"
    assert finding.observed == "powersave on CPUs 0-7 (intel_pstate, EPP balance_power)"
    assert finding.fixes == ["cpu.governor"]


def test_governor_per_cpu_folders_ondemand():
    finding = one(OPTERON, "cpu.governor")
    assert finding.status == WARN
    assert finding.title == "32 of 32 frequency policies are not at performance"
    assert finding.observed == "ondemand on CPUs 0-31 (powernow-k8)"
    assert finding.fixes == ["cpu.governor"]
    assert "/sys/devices/system/cpu/cpu31/cpufreq/scaling_governor" in finding.evidence


def _set_policies(root: Path, cpus, governor: str, epp: str) -> None:
    for n in cpus:
        write(root, f"/sys/devices/system/cpu/cpufreq/policy{n}/scaling_governor", governor + "\n")
        write(root, f"/sys/devices/system/cpu/cpufreq/policy{n}/energy_performance_preference",
              epp + "\n")


def test_governor_all_performance_passes(tmp_path):
    root = copy_fixture(LAPTOP, tmp_path)
    _set_policies(root, range(20), "performance", "performance")
    finding = one(root, "cpu.governor")
    assert finding.status == PASS
    assert finding.observed == ("performance on CPUs 0-19 (intel_pstate, EPP performance); "
                                "llama-server is planned on CPUs 0-11 (the CPU plan)")
    assert finding.fixes == []


def test_governor_leaves_the_cores_llama_server_does_not_use_alone(tmp_path):
    """What the cpu.governor fix sets (the planned P-cores) is what the check judges,
    so after the fix the check passes while the E-cores keep saving power."""
    root = copy_fixture(LAPTOP, tmp_path)
    _set_policies(root, range(12), "performance", "performance")
    finding = one(root, "cpu.governor")
    assert (finding.status, finding.title) == (PASS, "The CPUs llama-server uses run at full speed")
    _set_policies(root, [3], "powersave", "balance_power")
    finding = one(root, "cpu.governor")
    assert finding.status == WARN
    assert finding.title == "1 of 12 frequency policies llama-server uses are not at performance"


def test_governor_counts_the_slow_policies_and_the_epp(tmp_path):
    root = copy_fixture(LAPTOP, tmp_path)
    _set_policies(root, range(6), "performance", "performance")
    _set_policies(root, range(6, 12), "performance", "balance_performance")  # EPP still saves
    finding = one(root, "cpu.governor")
    assert finding.status == WARN
    assert finding.title == "6 of 12 frequency policies llama-server uses are not at performance"
    assert finding.observed == (
        "performance on CPUs 0-5 (intel_pstate, EPP performance); "
        "performance on CPUs 6-11 (intel_pstate, EPP balance_performance); "
        "powersave on CPUs 12-19 (intel_pstate, EPP balance_performance); "
        "llama-server is planned on CPUs 0-11 (the CPU plan)")


@pytest.mark.parametrize("name", [KVM, HYPERV, BUILD])
def test_governor_skips_in_a_vm(name):
    finding = one(name, "cpu.governor")
    assert finding.status == SKIP
    assert finding.observed.endswith("in a VM the hypervisor sets the clock")
    assert finding.fixes == []


@pytest.mark.parametrize("name", [H8QM8, ZRAM])
def test_governor_skips_without_a_cpufreq_driver(name):
    finding = one(name, "cpu.governor")
    assert finding.status == SKIP
    assert finding.observed.endswith("no cpufreq driver is loaded")


# -- system.virtualization ------------------------------------------------------------------------
def test_virtualization_kvm_guest_by_files():
    finding = one(KVM, "system.virtualization")
    assert finding.status == INFO
    assert finding.title == "Running in a virtual machine"
    assert finding.observed == ("vm (kvm); decided by /sys/class/dmi/id/product_name: "
                                "CloudStack KVM Hypervisor")
    assert finding.fixes == []
    assert "/sys/class/dmi/id/product_name" in finding.evidence


def test_virtualization_hyperv_guest():
    finding = one(HYPERV, "system.virtualization")
    assert finding.status == INFO
    assert finding.observed.startswith("vm (microsoft);")


def test_virtualization_build_machine_container_in_kvm():
    finding = one(BUILD, "system.virtualization")
    assert finding.status == INFO
    assert finding.title == "Running in a container"
    assert finding.observed == ("container (docker) inside a kvm VM; "
                                "decided by systemd-detect-virt --container / --vm")
    assert {"systemd-detect-virt --vm", "systemd-detect-virt --container"} <= set(finding.evidence)


@pytest.mark.parametrize("name", [LAPTOP, TIGERLAKE, OPTERON, H8QM8, ZRAM])
def test_virtualization_bare_metal_passes(name):
    finding = one(name, "system.virtualization")
    assert finding.status == PASS
    assert finding.observed.startswith("none; decided by no hypervisor in DMI, the device tree")
    assert "/proc/cpuinfo" in finding.evidence


def test_virtualization_unknown_skips():
    assert one(OVS, "system.virtualization").status == SKIP


def test_virtualization_wsl(tmp_path):
    write(tmp_path, "/proc/sys/kernel/osrelease", "5.15.167.4-microsoft-standard-WSL2\n")
    finding = one(tmp_path, "system.virtualization")
    assert (finding.status, finding.title) == (INFO, "Running in WSL2")
    assert finding.observed == "wsl; decided by kernel release names Microsoft (WSL2)"


# -- the CLI on the build machine ------------------------------------------------------------------
def test_cli_on_the_build_machine_snapshot():
    result = run_cli("check", "--snapshot", host_fixture(BUILD), "--json", "--no-plugins",
                     env={"XDG_CONFIG_HOME": "/nonexistent-q3cn-doctor-test-xdg"})
    assert result.returncode in (0, 1), result.stderr
    document = json.loads(result.stdout)
    statuses = {f["id"]: f["status"] for f in document["findings"]}
    assert [i for i, status in statuses.items() if status == ERROR] == []
    assert {i: statuses[i] for i in ("memory.swappiness", "memory.swap", "memory.hugepages",
                                     "memory.hugepages:thp", "cpu.governor",
                                     "system.virtualization")} == {
        "memory.swappiness": PASS, "memory.swap": PASS, "memory.hugepages": PASS,
        "memory.hugepages:thp": INFO, "cpu.governor": SKIP, "system.virtualization": INFO}
    assert document["host"]["virtualization"] == "container"
    assert document["facts"]["cpu"]["frequency_policies"] == []


def test_governor_powersave_with_epp_performance_on_intel_pstate_is_full_speed(tmp_path):
    """intel_pstate's powersave hands the clock to HWP: with EPP performance it is fast."""
    from q3cn_doctor.checking.registry import builtin_checks
    from q3cn_doctor.host.live import RootHost

    for epp, expected in (("performance", "pass"), ("balance_power", "warn")):
        policy = tmp_path / epp / "sys/devices/system/cpu/cpufreq/policy0"
        policy.mkdir(parents=True)
        for name, value in (("scaling_governor", "powersave"), ("scaling_driver", "intel_pstate"),
                            ("energy_performance_preference", epp), ("affected_cpus", "0 1")):
            (policy / name).write_text(value + "\n")
        host = RootHost(str(tmp_path / epp))
        facts = Facts(host, Options(root=str(tmp_path / epp)))
        findings = run_checks(facts, select(builtin_checks(), ["cpu.governor"], []))
        assert [f.status for f in findings] == [expected]

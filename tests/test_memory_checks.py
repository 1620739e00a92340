"""memory.speed, memory.channels, memory.bandwidth, memory.memlock and memory.fit.

The machines are the real dmidecode listings and udev sets (tests/fixtures/dmidecode,
tests/fixtures/udev; SOURCES.tsv there), wrapped in small snapshots by
test_memory_facts.mem_snapshot; RAM sizes, limits and files around them are constructed
and named in each test. Token figures use the default profile (Qwen3-Coder-Next MXFP4)
and come from the one speed model (plan/speed.py): the tests ask it the same questions the
checks do and hold the findings to its answers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import host_fixture, snapshot_facts
from q3cn_doctor.checking.findings import FAIL, INFO, PASS, SKIP, WARN, Finding
from q3cn_doctor.checking.runner import available_checks, run_checks, select
from q3cn_doctor.facts import Facts
from q3cn_doctor.host.snapshot import SnapshotHost
from q3cn_doctor.options import Options
from q3cn_doctor.plan.placement import placement
from q3cn_doctor.plan.speed import cost, speed, tok, what_if
from test_memory_facts import listing, mem_snapshot, udev
from test_memory_world import cpu_model

MEMORY_CHECKS = ("memory.speed", "memory.channels", "memory.bandwidth", "memory.memlock",
                 "memory.fit")


def run(directory, *ids: str, **options) -> dict[str, Finding]:
    specs, _ = available_checks(plugins=False)
    facts = Facts(SnapshotHost(str(directory)), Options(snapshot=str(directory), **options))
    return {f.id: f for f in run_checks(facts, select(specs, list(ids), []))}


def one(directory, check_id: str, **options) -> Finding:
    found = run(directory, check_id, **options)
    assert list(found) == [check_id]
    return found[check_id]


def ram_per_token(directory: str) -> int:
    """Bytes one token reads from RAM on that snapshot, from its memory plan."""
    return placement(snapshot_facts(directory)).ram_bytes_per_token


def dmi(tmp_path, prefix: str, **snapshot) -> str:
    return str(mem_snapshot(tmp_path / prefix, dmidecode=listing(prefix), **snapshot))


def dmi_with_cpu(tmp_path, prefix: str) -> str:
    """The listing, and a /proc/cpuinfo naming the CPU its own processor record names."""
    text = listing(prefix)
    cpuinfo = f"processor\t: 0\nmodel name\t: {cpu_model(text)}\n\n"
    return str(mem_snapshot(tmp_path / f"{prefix}c", dmidecode=text,
                            files={"/proc/cpuinfo": cpuinfo}))


# -- memory.speed ------------------------------------------------------------------------------

def test_kit_shown_at_jedec_4800_is_a_fail_with_its_cost():
    """The commonest case: a DDR5-6400 kit showing Speed 4800, configured 4800."""
    finding = one(host_fixture("mem-ddr5-6400kit-at-4800-dmidecode-only"), "memory.speed")
    assert finding.status == FAIL
    assert "4800 MT/s, below the 6400 MT/s" in finding.title
    assert "76.8 GB/s now against 102.4 GB/s" in finding.impact
    # No GPU in this snapshot: every token reads the whole model's active part from RAM.
    facts = snapshot_facts(host_fixture("mem-ddr5-6400kit-at-4800-dmidecode-only"))
    assert placement(facts).ram_bytes_per_token > 7e9
    now, rated = speed(facts), what_if(facts, ram_mts=6400)
    assert now.mode == "cpu-only" and rated.tok_s > now.tok_s
    assert (f"expects {now.text()} now and ~{tok(rated.tok_s)} at 6400 MT/s: "
            f"{tok(rated.tok_s - now.tok_s)} tok/s lost" in finding.impact)
    assert finding.cost_tok_s == cost(facts, ram_mts=6400) == round(rated.tok_s - now.tok_s, 1)
    assert any("EXPO" in step for step in finding.manual)
    assert any("unstable" in step for step in finding.manual)
    assert "dmidecode -t memory" in finding.evidence


@pytest.mark.parametrize("prefix, status, words", [
    ("001", FAIL, "3600 MT/s, below the 5200"),  # four Fury KF552C40 at the BIOS default
    ("005", FAIL, "4400 MT/s, below the 6000"),  # Corsair 6000 kit at 4400
    ("012", PASS, "rated 6000"),  # EXPO on
    ("003", WARN, "JEDEC modules held below their own speed: 4800 of 5600"),
    # Four DDR5 DIMMs (two per channel) at 4000: the CPU maker's limit for that population.
    ("018", INFO, "4 modules on 2 channel(s) run at 4000 of their 4800 MT/s"),
    # DDR4 "configured 1333" is below DDR4's lowest data rate (1600): the clock of 2667.
    ("019", INFO, "runs at its JEDEC speed 2667 MT/s"),
    ("016", INFO, "above its 5600 MT/s rating (overclocked)"),
    ("021", INFO, "above its JEDEC 3200"),  # blank part numbers, 3700 configured
    # Soldered, with no CPU model to know the platform by: below the chips, limit unknown.
    ("035", INFO, "soldered LPDDR5 at 5200 MT/s, below the 6400 the chips are rated for"),
    ("036", PASS, "rated 7467"),
    ("039", PASS, "runs at 5500 MT/s, above the chips' 4266"),  # Steam Deck
    # HPE BL460c Gen10: registered server modules have no XMP/EXPO to leave off.
    ("085", PASS, "RAM runs at its rated 2666 MT/s"),
    ("053", INFO, "Configured RAM speed unknown"),
    ("074", SKIP, "describes no real modules"),  # QEMU guest
])
def test_speed_verdicts(tmp_path, prefix, status, words):
    finding = one(dmi(tmp_path, prefix), "memory.speed")
    assert finding.status == status, finding.title
    assert words in finding.title


def test_jedec_below_is_not_worded_as_xmp_off(tmp_path):
    finding = one(dmi(tmp_path, "003"), "memory.speed")  # 2 x Crucial JEDEC 5600 at 4800
    assert "not XMP being off" in finding.recommended
    assert finding.fixes == ["spd.driver"]  # the EEPROMs would tell the real rating
    assert finding.manual and not any("XMP" in step for step in finding.manual)
    two_per_channel = one(dmi(tmp_path, "018"), "memory.speed")  # 4 x 16 GB DDR5 at 4000
    assert "Two modules per channel" in two_per_channel.recommended
    assert not two_per_channel.manual


@pytest.mark.parametrize("prefix, status, words", [
    # i5-1250P (Alder Lake-P): LPDDR5 up to 5200, so 6400 chips at 5200 are at its limit.
    ("035", PASS, "runs at 5200 MT/s, the fastest Alder Lake-P/U/H supports"),
    # i5-1345U (Raptor Lake-U): LPDDR5 up to 6400; 4800 is the firmware's choice.
    ("040", WARN, "at 4800 MT/s, below the 6400 the chips and the CPU allow"),
    # Core Ultra 7 155H (Meteor Lake): 7467 at most, whatever the 8533 chips could do.
    ("047", PASS, "runs at 7467 MT/s, the fastest Meteor Lake supports (chips rated 8533)"),
])
def test_soldered_memory_is_judged_against_its_platform(tmp_path, prefix, status, words):
    finding = one(dmi_with_cpu(tmp_path, prefix), "memory.speed")
    assert finding.status == status and words in finding.title, finding.title
    assert not finding.fixes
    assert bool(finding.manual) == (status != PASS)  # a step by hand only for a problem
    assert not any("XMP" in step for step in finding.manual)
    if status != PASS:
        assert "no XMP/EXPO" in finding.recommended


def test_a_printed_clock_is_doubled_unless_measured_bandwidth_says_otherwise(tmp_path):
    root = dmi(tmp_path, "019")  # DDR4-2667 "configured 1333", two channels
    facts = Facts(SnapshotHost(root), Options(snapshot=root))
    assert (facts.memory.configured_mts, facts.memory.clock_printed) == (2667, True)
    facts.memory.measured = {"bytes_per_s": 34e9, "method": "test"}  # > 21.3 GB/s at 1333
    specs, _ = available_checks(plugins=False)
    (finding,) = run_checks(facts, select(specs, ["memory.speed"], []))
    assert finding.status == INFO and "JEDEC speed 2667" in finding.title
    assert "the firmware wrote the clock" in finding.observed
    facts.memory.measured = {"bytes_per_s": 17e9, "method": "test"}
    (finding,) = run_checks(facts, select(specs, ["memory.speed"], []))
    assert finding.status == WARN and "really runs at 1333 MT/s" in finding.title


def test_unknown_rating_says_how_to_supply_it(tmp_path):
    text = listing("021").replace("3200 MT/s", "Unknown")  # no Speed:, no part number
    root = mem_snapshot(tmp_path / "s", dmidecode=text)
    finding = one(root, "memory.speed")
    assert finding.status == INFO and "what it is rated for is unknown" in finding.title
    assert "--ram-rated 6000" in finding.recommended and "ram_rated = 6000" in \
        finding.recommended
    told = one(root, "memory.speed", ram_rated=4000)
    assert told.status == FAIL and "below the 4000 MT/s" in told.title


def test_no_module_data_says_exactly_how_to_get_it(tmp_path):
    root = mem_snapshot(tmp_path / "s", dmidecode="", dmidecode_rc="1", meta={"euid": 1000})
    found = run(root, "memory.speed", "memory.channels", "memory.bandwidth")
    assert {f.status for f in found.values()} == {SKIP}
    for finding in found.values():
        assert "sudo q3cn-doctor check" in finding.recommended, finding.id


def test_spd_only_reports_the_rating_and_asks_for_root():
    finding = one(host_fixture("mem-ddr5-gskill-6000-spd-only"), "memory.speed")
    assert finding.status == INFO and "rated 6000 MT/s (EXPO, from spd" in finding.observed
    assert finding.observed.startswith("configured speed unknown; 2 x 16 GB DDR5 ")
    assert "sudo q3cn-doctor check" in finding.recommended


# -- memory.channels ---------------------------------------------------------------------------

@pytest.mark.parametrize("prefix, status, words", [
    ("012", PASS, "2 matching module(s) on 2 channel(s)"),
    ("014", WARN, "One module: the RAM runs single-channel"),
    ("017", WARN, "2 modules share 1 channel(s); 2 could be used"),
    # Running at the slower module's speed is no fault of the channels: a note.
    ("024", INFO, "Mixed module speeds: 2133 MT/s, 2667 MT/s"),
    ("046", WARN, "Channels hold different amounts of RAM: A 8.0 GiB, B 2.0 GiB"),
    ("001", INFO, "4 DDR5 modules, two per channel, run at 3600 of 5200 MT/s"),
    ("035", PASS, "Soldered memory on 2 x 64-bit channel(s)"),
    ("050", SKIP, "Which channel each module sits on is unknown"),
    ("067", SKIP, "describes no real modules"),
])
def test_channel_verdicts(tmp_path, prefix, status, words):
    finding = one(dmi(tmp_path, prefix), "memory.channels")
    assert finding.status == status, finding.title
    assert words in finding.title


def test_channel_warnings_spell_the_bandwidth_lost(tmp_path):
    single = one(dmi(tmp_path, "014"), "memory.channels")  # one DDR5 at 4800
    assert "38.4 GB/s instead of 76.8 GB/s" in single.impact
    shared = one(dmi(tmp_path, "017"), "memory.channels")  # two DDR5 on A at 3600
    assert "28.8 GB/s instead of 57.6 GB/s: 50% of the bandwidth is lost" in shared.impact
    facts = snapshot_facts(dmi(tmp_path, "017"))
    assert shared.cost_tok_s == cost(facts, ram_channels=2) > 0
    assert "with 2 channels" in shared.impact


def test_udev_machine_with_mixed_speeds():
    finding = one(host_fixture("mem-udev-thinkcentre-m720s-no-root"), "memory.channels")
    assert finding.status == WARN and "2400 of 2667 MT/s" in finding.impact


# -- memory.bandwidth --------------------------------------------------------------------------

def test_theoretical_bandwidth_and_its_token_ceiling(tmp_path):
    finding = one(dmi(tmp_path, "012"), "memory.bandwidth")  # DDR5-6000, two channels
    assert finding.status == INFO
    assert "96.0 GB/s" in finding.title
    estimate = speed(snapshot_facts(dmi(tmp_path, "012")))
    assert f"the speed model expects {estimate.text()}" in finding.title
    assert "not measured" in finding.observed


def test_the_expected_speed_counts_only_what_the_gpu_leaves_in_ram(tmp_path):
    """With the guide's RTX 4070 the GPU holds attention and the shared expert: a token
    reads only the routed experts from RAM, so the same RAM allows far more tok/s."""
    cpu_only = speed(snapshot_facts(dmi(tmp_path, "012")))
    root = Path(dmi(tmp_path, "012"))
    shutil.copy(Path(host_fixture("gpu-rtx4070-desktop")) / "nvml.json", root / "nvml.json")
    per_token = ram_per_token(str(root))
    assert 0.5e9 < per_token < 1.2e9  # about the profile's 0.8 GB of routed experts
    finding = one(str(root), "memory.bandwidth")
    estimate = speed(snapshot_facts(str(root)))
    assert estimate.tok_s > 2 * cpu_only.tok_s
    assert f"the speed model expects {estimate.text()}" in finding.title


def test_measured_bandwidth_far_under_theory_warns(tmp_path):
    root = dmi(tmp_path, "012")
    facts = Facts(SnapshotHost(root), Options(snapshot=root))
    specs, _ = available_checks(plugins=False)
    facts.memory.measured = {"bytes_per_s": 30e9, "method": "test"}
    (low,) = run_checks(facts, select(specs, ["memory.bandwidth"], []))
    assert low.status == WARN and "31%" in low.title
    # the shortfall's price: the speed model at the measured figure against a healthy one
    healthy = Facts(SnapshotHost(root), Options(snapshot=root))
    assert low.cost_tok_s == round(speed(healthy).tok_s - what_if(
        healthy, ram_bytes_per_s=30e9).tok_s, 1) > 0
    facts = Facts(SnapshotHost(root), Options(snapshot=root))
    facts.memory.measured = {"bytes_per_s": 70e9, "method": "test"}
    (good,) = run_checks(facts, select(specs, ["memory.bandwidth"], []))
    assert good.status == PASS and "73%" in good.title
    assert f"expects {what_if(healthy, ram_bytes_per_s=70e9).text()}" in good.impact


def test_measure_under_snapshot_says_it_cannot(tmp_path):
    finding = one(dmi(tmp_path, "012"), "memory.bandwidth", measure=True)
    assert "not possible on a snapshot" in finding.observed


# -- memory.memlock ----------------------------------------------------------------------------

def limits_root(tmp_path, memlock: list[int], *, swap: bool = False, euid: int = 1000,
                files: dict | None = None, total_gib: int = 128) -> str:
    all_files = dict(files or {})
    if swap:
        all_files["/proc/swaps"] = ("Filename\tType\tSize\tUsed\tPriority\n"
                                    "/dev/nvme0n1p3 partition\t16777212\t0\t-2\n")
    return str(mem_snapshot(tmp_path / "m", meminfo_gib=(total_gib, total_gib // 2),
                            meta={"euid": euid, "rlimits": {"MEMLOCK": memlock}},
                            files=all_files))


def test_memlock_too_low_with_disk_swap_warns(tmp_path):
    finding = one(limits_root(tmp_path, [8388608, 8388608], swap=True), "memory.memlock")
    assert finding.status == WARN
    assert "8192 KiB" in finding.title and "47.7 GiB" in finding.title
    assert finding.fixes == ["memlock.limit"]
    assert "failed to mlock" in finding.impact

    # The RAM part is weights + KV cache: the OS headroom is neither added nor taken off.
    assert finding.observed.endswith(
        "the model's RAM part is 47.7 GiB (Qwen3-Coder-Next (80B-A3B) MXFP4 at ctx 131072: "
        "no usable NVIDIA GPU: everything in RAM)")


def test_memlock_too_low_without_pressure_is_info(tmp_path):
    finding = one(limits_root(tmp_path, [65536, 65536]), "memory.memlock")
    assert finding.status == INFO and finding.fixes == ["memlock.limit"]


def test_memlock_is_moot_where_ram_cannot_hold_the_model(tmp_path):
    """A WSL2 VM's 31 GiB with the default 64 KiB memlock (microsoft/WSL#6723): launch maps
    a 47.7 GiB model rather than lock it, so raising the limit would change nothing."""
    finding = one(limits_root(tmp_path, [65536, 65536], swap=True, total_gib=31),
                  "memory.memlock")
    assert finding.status == INFO and "moot" in finding.title and finding.fixes == []


def test_unlimited_or_root_passes(tmp_path):
    assert one(limits_root(tmp_path / "u", [-1, -1]), "memory.memlock").status == PASS
    assert one(limits_root(tmp_path / "r", [65536, 65536], euid=0),
               "memory.memlock").status == PASS


def test_launching_user_limits_conf_under_sudo(tmp_path):
    files = {
        "/etc/passwd": "root:x:0:0::/root:/bin/bash\nana:x:1000:1000::/home/ana:/bin/bash\n",
        "/etc/group": "ana:x:1000:\nllm:x:1100:ana\n",
        "/etc/security/limits.conf": "*  soft  memlock  65536\n",
        "/etc/security/limits.d/90-llm.conf": "@llm  -  memlock  unlimited  # for llama\n",
    }
    root = limits_root(tmp_path, [8388608, 8388608], euid=0, swap=True, files=files)
    finding = one(root, "memory.memlock", user="ana")
    assert finding.status == PASS
    assert "90-llm.conf:1" in finding.observed
    files["/etc/security/limits.d/90-llm.conf"] = "@other - memlock unlimited\n"
    root = limits_root(tmp_path / "b", [8388608, 8388608], euid=0, swap=True, files=files)
    finding = one(root, "memory.memlock", user="ana")
    assert finding.status == WARN and "65536 KiB" in finding.title  # the "*" line
    assert "limits.conf:1" in finding.observed


def test_memlock_skips_without_meminfo(tmp_path):
    root = mem_snapshot(tmp_path / "s", meta={"euid": 1000, "rlimits": {"MEMLOCK": [1, 1]}})
    assert one(root, "memory.memlock").status == SKIP


# -- memory.fit --------------------------------------------------------------------------------

@pytest.mark.parametrize("total, available, status, words", [
    (128, 100, PASS, "to spare"),
    (32, 30, FAIL, "does not fit in RAM: 19.7 GiB short"),
    (64, 20, WARN, "Only 20.0 GiB of RAM is free now"),
])
def test_fit(tmp_path, total, available, status, words):
    root = mem_snapshot(tmp_path / "s", meminfo_gib=(total, available))
    finding = one(root, "memory.fit")
    assert finding.status == status and words in finding.title
    if status != PASS:
        assert "anonymous memory" in finding.impact

    model = (f"RAM {total}.0 GiB; the model needs 47.7 GiB in RAM (Qwen3-Coder-Next (80B-A3B) "
             "MXFP4 at ctx 131072: no usable NVIDIA GPU: everything in RAM)")
    if status != PASS:  # no RAM to spare: no prompt cache, no checkpoints
        assert f"{model} + 4.0 GiB for the OS = 51.7 GiB" in finding.observed
    else:  # the agent's prompt cache (its cap, 16 GiB) and 32 checkpoints of 75 MiB count
        assert (f"{model} + 18.4 GiB for serving (prompt cache --cache-ram 16384 MiB + 32 "
                "context checkpoints x 1 slot(s) x 0.1 GiB each) + 4.0 GiB for the OS = "
                "70.1 GiB") in finding.observed


def test_fit_under_wsl2_names_the_vms_memory_setting(tmp_path):
    """WSL2 gives its VM half the host's RAM unless .wslconfig says otherwise (NixOS-WSL#123:
    a 16 GB laptop's VM sees 7.8 GiB): the first step is that setting, not new RAM."""
    root = mem_snapshot(tmp_path / "s", meminfo_gib=(31, 29), files={
        "/proc/sys/kernel/osrelease": "5.15.153.1-microsoft-standard-WSL2\n",
        "/proc/sys/fs/binfmt_misc/WSLInterop": "enabled\n"})
    finding = one(root, "memory.fit")
    assert finding.status == FAIL and finding.action == "the WSL2 VM's memory"
    assert finding.manual[0].startswith("WSL2 gives its VM half the host's RAM")
    assert ".wslconfig" in finding.recommended


def test_fit_spare_ram_leaves_out_the_hugetlb_reservation():
    """377.4 GiB less 160 GiB of 1 GiB pages less the 51.7 GiB the model needs and the 18.4
    GiB its serving takes (a 16 GiB prompt cache, 32 context checkpoints): 147.3 GiB spare
    (325.7 GiB was once claimed, counting the reserved pages as free)."""
    finding = one(host_fixture("005-ovs-offload-compute-160x1g-hugepages"), "memory.fit")
    assert (finding.status, finding.title) == (PASS, "RAM holds the model with 147.3 GiB to spare")
    assert finding.observed.startswith("RAM 377.4 GiB, 160.0 GiB reserved as hugetlb pages; ")


def test_fit_defers_to_hugepages(tmp_path):
    root = mem_snapshot(tmp_path / "s", files={"/proc/meminfo": (
        "MemTotal:       67108864 kB\nMemAvailable:    2097152 kB\n"
        "Hugetlb:        62914560 kB\n")})
    finding = one(root, "memory.fit")
    assert finding.status == INFO and "hugetlb" in finding.title


# -- every memory check on every listing ---------------------------------------------------------

@pytest.mark.slow  # a sweep: every memory check on every listing
def test_no_memory_check_errors_on_any_listing(tmp_path):
    from conftest import FIXTURES

    for path in sorted((FIXTURES / "dmidecode").glob("*.txt")) + sorted(
            (FIXTURES / "dmidecode-world").glob("*.txt")):
        root = mem_snapshot(tmp_path / path.parent.name / path.stem[:3],
                            dmidecode=path.read_text("utf-8", "replace"))
        found = run(root, *MEMORY_CHECKS)
        assert set(found) == set(MEMORY_CHECKS), path.name
        assert all(f.status != "error" for f in found.values()), (path.name, [
            (f.id, f.observed) for f in found.values() if f.status == "error"])
    for prefix in ("001", "002", "003"):
        root = mem_snapshot(tmp_path / f"u{prefix}", udev_text=udev(prefix))
        found = run(root, *MEMORY_CHECKS)
        assert all(f.status != "error" for f in found.values())
        assert json.dumps([f.to_json() for f in found.values()])

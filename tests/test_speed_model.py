"""The one speed model (doctor/plan/speed.py, roofline.py): every tok/s a finding quotes is
its answer, and each input moves the estimate the way it moves a real run.

The machines are the guide's (tests/launch_fixtures.guide_machine: i5-12600K, RTX 4070,
2 x 32 GB DDR5-6000, the CUDA 12 build) and the fixture hosts, varied in tmp_path copies.
The calibration (bench/speed_calibration.tsv) is checked for shape here and for its fit:
the cross-validation itself runs in bench/bench_speed_model.py, not in a timed test.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import (
    FIXTURES,
    REPO,
    copy_fixture,
    run_cli,
    snapshot_facts,
    snapshot_findings,
    write_fs,
)
from fixture_hosts import EPYC, LAPTOP
from launch_fixtures import GPT_OSS_PATH, QWEN_PATH, guide_machine, record_command
from q3cn_doctor.plan import roofline
from q3cn_doctor.plan.placement import placement
from q3cn_doctor.plan.placement_flags import (
    parse_flags,
    tensor_on_gpu,
    without_placement,
)
from q3cn_doctor.plan.speed import WHAT_IF_KEYS, cost, speed, tok, what_if

sys.path.insert(0, str(REPO / "bench"))
import speed_calibration  # noqa: E402 - bench/ is not a package

GUIDE_DMIDECODE = FIXTURES / "dmidecode" / "011-ddr5-x870e-7900x3d-6000-eq.txt"


def guide(tmp_path: Path, ram_mts: int = 6000, driver_cuda: int | None = None) -> Path:
    """The guide's machine, its DDR5-6000 kit configured at ``ram_mts`` and its driver's
    CUDA version (12080 in the fixture) replaced where given."""
    root = guide_machine(tmp_path / "guide")
    text = GUIDE_DMIDECODE.read_text().replace("Configured Memory Speed: 6000 MT/s",
                                              f"Configured Memory Speed: {ram_mts} MT/s")
    record_command(root, ["dmidecode", "-t", "memory"], text)
    if driver_cuda is not None:
        nvml = json.loads((root / "nvml.json").read_text())
        nvml["cuda_driver_version"] = driver_cuda
        (root / "nvml.json").write_text(json.dumps(nvml))
    return root


# -- one model behind every figure -------------------------------------------------------------

def test_slow_ram_on_the_guide_machine_costs_what_model_speed_says(tmp_path):
    """The guide's RAM at 4800 instead of 6000: memory.speed's cost is model.speed's
    difference (the same two runs of the one model), and every finding quoting the speed
    now quotes the same figure."""
    root = guide(tmp_path, ram_mts=4800)
    facts = snapshot_facts(root, model=QWEN_PATH)
    now, rated = speed(facts), what_if(facts, ram_mts=6000)
    assert now.mode == "gpu" and rated.tok_s > now.tok_s
    found = snapshot_findings(root, model=QWEN_PATH)
    model_speed = found["model.speed"]
    assert model_speed.title == (f"Expected {now.text()} generating with Qwen3-Coder-Next "
                                 f"(80B-A3B) MXFP4; ~{tok(rated.tok_s)} with RAM at its rated "
                                 "speed")
    ram = found["memory.speed"]
    assert ram.cost_tok_s == cost(facts, ram_mts=6000) == round(rated.tok_s - now.tok_s, 1)
    assert (f"expects {now.text()} now and ~{tok(rated.tok_s)} at 6000 MT/s: "
            f"{tok(ram.cost_tok_s)} tok/s lost" in ram.impact)
    assert f"expects {now.text()}" in found["memory.bandwidth"].title
    priced = {f.id: f for f in found.values() if f.cost_tok_s is not None}
    assert "memory.speed" in priced
    for finding in priced.values():  # each quotes the two runs its cost is the difference of
        quoted = re.search(r"expects ~([\d.]+) tok/s \([\d.]+-[\d.]+\) [^~]*~([\d.]+)",
                           finding.impact)
        assert quoted, finding.id
        before, after = (float(x) for x in quoted.groups())
        assert abs((after - before) - finding.cost_tok_s) <= 1.0, finding.id
    for finding in found.values():  # no check divides bandwidth by bytes on its own
        assert "at most" not in finding.title + finding.impact or "tok/s" not in finding.impact


def test_the_guide_machine_at_its_rated_speed_and_context(tmp_path):
    facts = snapshot_facts(guide(tmp_path), model=QWEN_PATH)
    estimate = speed(facts)
    assert estimate.low < estimate.tok_s < estimate.high
    assert estimate.high / estimate.tok_s == pytest.approx(1 + roofline.RANGE_ERROR, abs=0.01)
    assert set(estimate.ms) == {"ram", "vram", "fixed", "transitions"}
    assert estimate.basis.startswith(f"{sum(estimate.ms.values()):.0f} ms per token: ")
    assert estimate.tok_s_at_ctx < estimate.tok_s  # a full context reads its KV cache
    assert what_if(facts, ctx_depth=estimate.ctx_size).tok_s == estimate.tok_s_at_ctx
    assert speed(facts) is estimate  # computed once a run


def test_what_if_refuses_an_unknown_input(tmp_path):
    facts = snapshot_facts(guide(tmp_path), model=QWEN_PATH)
    with pytest.raises(TypeError, match="ram_speed"):
        what_if(facts, ram_speed=6000)
    assert set(WHAT_IF_KEYS) >= {"ram_mts", "ram_channels", "threads", "cpu_only",
                                 "vram_free_bytes", "numa_policy", "swap_bound", "smt_threads",
                                 "ctx_depth", "placement_args"}


# -- what the run will really be ------------------------------------------------------------

def test_a_driver_too_old_for_the_build_runs_cpu_only(tmp_path):
    """The build needs CUDA 12; a driver for CUDA 11.8 cannot run it: the estimate is the
    CPU-only run, and gpu.cuda prices the driver update as the difference."""
    facts = snapshot_facts(guide(tmp_path, driver_cuda=11080), model=QWEN_PATH)
    now, fixed = speed(facts), what_if(facts, cpu_only=False)
    assert now.mode == "cpu-only" and "driver supports only CUDA 11.8" in now.basis
    assert fixed.mode == "gpu" and fixed.tok_s > 2 * now.tok_s
    assert now.ms["vram"] == 0 and now.ms["transitions"] == 0
    finding = snapshot_findings(guide(tmp_path / "again", driver_cuda=11080), "gpu.cuda",
                                model=QWEN_PATH)["gpu.cuda"]
    assert finding.status == "fail"
    assert finding.cost_tok_s == cost(facts, cpu_only=False) > 0


def test_a_model_that_does_not_fit_in_ram_pages_from_disk(tmp_path):
    """The guide's machine with 32 GB of RAM: the 40 GiB the RTX 4070 leaves of the model
    do not fit, so with mmap every token reads part of it from disk."""
    root = guide(tmp_path)
    write_fs(root, "/proc/meminfo", "MemTotal:       32768000 kB\n"
                                    "MemAvailable:   30000000 kB\n")
    facts = snapshot_facts(root, model=QWEN_PATH)
    assert placement(facts).fits_ram is False
    estimate = speed(facts)
    in_ram = what_if(facts, swap_bound=False)
    assert estimate.mode == "disk-bound" and estimate.tok_s is None
    assert estimate.high == in_ram.tok_s  # "far below" the speed it would have in RAM
    assert "pages from disk" in estimate.text()
    nvme = what_if(facts, storage_bytes_per_s=3e9)  # where the storage's speed is known
    assert nvme.mode == "disk-bound" and 0 < nvme.tok_s < in_ram.tok_s / 2
    assert nvme.ms["disk"] > nvme.ms["ram"]
    assert cost(facts, swap_bound=False) is None  # unknown: the disk's speed is unknown
    finding = snapshot_findings(root, "model.speed", model=QWEN_PATH)["model.speed"]
    assert finding.status == "warn" and "pages from disk: far below" in finding.title
    report = run_cli("check", "--snapshot", str(root), "--model", QWEN_PATH, "--no-plugins")
    ledger = report.stdout.split("\n\n")[1]  # the first line a person reads says so too
    assert ledger.startswith("Qwen3-Coder-Next") and "pages from disk" in ledger, ledger


def test_without_a_ram_figure_the_speed_is_unknown():
    """The laptop lists no modules: no RAM bandwidth, so no figure (never a guess)."""
    estimate = speed(snapshot_facts(LAPTOP))
    assert estimate.tok_s is None and "RAM bandwidth is unknown" in estimate.basis


@pytest.mark.parametrize(("slower", "faster"), [
    (["-ngl", "99", "--n-cpu-moe", "48"], ["-ngl", "99", "--n-cpu-moe", "44"]),
    (["-ngl", "99", "--cpu-moe"], ["-ngl", "99", "--n-cpu-moe", "46"]),
    (["-c", "32768", "-ngl", "99", "-ot", "exps=CPU"], ["-c", "32768"]),  # against --fit
    (["-ngl", "24", "--cpu-moe"], ["-ngl", "99", "--cpu-moe"]),  # half the layers on the CPU
    (["-ngl", "0"], ["-ngl", "99", "-ot", r"blk\.(1[0-9]|[2-4][0-9])\.ffn_.*_exps=CPU"]),
])
def test_explicit_placements_move_the_estimate_the_way_they_move_the_run(tmp_path, slower,
                                                                         faster):
    root = guide(tmp_path)
    slow = snapshot_facts(root, model=QWEN_PATH, server_args=slower)
    fast = snapshot_facts(root, model=QWEN_PATH, server_args=faster)
    assert speed(slow).tok_s < speed(fast).tok_s
    # the what-if of the same flags is the same run
    assert what_if(fast, placement_args=slower).tok_s == speed(slow).tok_s


def test_the_placement_follows_the_users_flags(tmp_path):
    root = guide(tmp_path)
    plan = placement(snapshot_facts(root, model=QWEN_PATH,
                                    server_args=["-ngl", "99", "--n-cpu-moe", "44"]))
    assert plan.flags == "-ngl 99 --n-cpu-moe 44"
    assert (plan.n_cpu_moe, plan.expert_layers_on_gpu) == (44, 4)
    assert plan.transitions == 2 * 44  # each layer whose experts stay in RAM: there and back
    cpu_only = placement(snapshot_facts(root, model=QWEN_PATH, server_args=["-ngl", "0"]))
    assert cpu_only.gpu_bytes_per_token == 0 and cpu_only.transitions == 0
    assert speed(snapshot_facts(root, model=QWEN_PATH, server_args=["-ngl", "0"])).mode \
        == "cpu-only"


def test_several_gpus_share_the_vram_part_by_tensor_split(tmp_path):
    root = copy_fixture("gpu-dual-rtx4090", tmp_path)
    even = snapshot_facts(root)
    split = snapshot_facts(root, server_args=["-ts", "3,1"])
    assert placement(even).gpu_shares == pytest.approx([0.5, 0.5])
    assert placement(split).gpu_shares == pytest.approx([0.75, 0.25])
    one = snapshot_facts(root, server_args=["--split-mode", "none"])
    assert placement(one).gpu_shares == [1.0, 0.0]


def test_gpt_oss_on_the_guide_machine_reads_more_from_ram(tmp_path):
    root = guide(tmp_path)
    qwen = speed(snapshot_facts(root, model=QWEN_PATH))
    gpt = speed(snapshot_facts(root, model=GPT_OSS_PATH, profile="gpt-oss-120b-mxfp4"))
    assert gpt.ms["ram"] > qwen.ms["ram"] and gpt.tok_s < qwen.tok_s


# -- the machine's own terms --------------------------------------------------------------------

def test_threads_smt_and_numa(tmp_path):
    facts = snapshot_facts(guide(tmp_path), model=QWEN_PATH)
    planned = speed(facts)
    assert "6 threads" in planned.basis  # the plan: one per P-core
    assert what_if(facts, threads=2).tok_s < planned.tok_s  # a quota of 2 CPUs
    assert what_if(facts, threads=10, smt_threads=4).tok_s < planned.tok_s  # 4 share cores
    epyc = snapshot_facts(EPYC)  # two sockets, eight NUMA nodes, no memory listing
    one_node = what_if(epyc, ram_bytes_per_s=200e9)
    spread = what_if(epyc, ram_bytes_per_s=200e9, numa_policy="distribute")
    assert spread.ram_bytes_per_s == pytest.approx(8 * one_node.ram_bytes_per_s)
    assert spread.tok_s > one_node.tok_s


def test_ram_channels_and_speed_scale_the_peak(tmp_path):
    facts = snapshot_facts(guide(tmp_path), model=QWEN_PATH)
    assert speed(facts).ram_bytes_per_s == 96e9  # 6000 MT/s x 8 bytes x 2 channels
    assert what_if(facts, ram_channels=1).ram_bytes_per_s == 48e9
    assert what_if(facts, ram_mts=4800).ram_bytes_per_s == pytest.approx(76.8e9)
    assert cost(facts, ram_channels=1) < 0 < cost(facts, ram_mts=7200)


# -- placement flags ----------------------------------------------------------------------------

def test_placement_flags_parse():
    flags = parse_flags(["-ngl", "99", "--n-cpu-moe=30", "-ot", "exps=CPU,attn=CUDA0",
                         "--override-tensor", r"blk\.1\.=CUDA1", "-ts", "3,1", "-sm", "row"])
    assert flags.gpu_layers >= 99 and flags.n_cpu_moe == 30 and flags.explicit
    assert flags.overrides == [("exps", "CPU"), ("attn", "CUDA0"), (r"blk\.1\.", "CUDA1")]
    assert flags.tensor_split == [3.0, 1.0] and flags.split_mode == "row"
    assert not parse_flags(["--ctx-size", "8192", "-t", "6"]).explicit
    assert parse_flags(["--device", "none"]).no_gpu


def test_override_patterns_match_as_llama_cpp_does():
    flags = parse_flags(["-ngl", "99", "-ot", r"blk\.(1[0-9])\.ffn_.*_exps=CPU",
                         "--n-cpu-moe", "2"])
    on = [tensor_on_gpu(flags, f"blk.{i}.ffn_up_exps.weight", i, 48, True) for i in range(48)]
    assert on[:2] == [False, False]  # --n-cpu-moe 2
    assert on[2:10] == [True] * 8 and on[10:20] == [False] * 10 and all(on[20:])
    assert tensor_on_gpu(flags, "blk.15.attn_q.weight", 15, 48, False)  # attention stays


def test_without_placement_keeps_the_other_arguments():
    args = ["-c", "8192", "-ngl", "99", "--cpu-moe", "-ot=exps=CPU", "--n-cpu-moe", "4",
            "-t", "6"]
    assert without_placement(args) == ["-c", "8192", "-t", "6"]


# -- the calibration ----------------------------------------------------------------------------

def test_the_calibration_table_parses_and_cites_its_sources():
    points = speed_calibration.load_points(("fit", "disk", "skip"))
    fitted = [p for p in points if p.use == "fit"]
    assert len(fitted) >= 40
    assert all(p.work is not None and p.measured > 0 for p in fitted)
    assert all(p.row["source_url"].startswith("https://") for p in points)
    assert all(p.row["note"] for p in points if p.use == "skip")  # each says why
    assert len({p.id for p in points}) == len(points)


def test_the_constants_in_code_are_the_fit_on_the_table():
    """roofline's constants equal the fit on bench/speed_calibration.tsv (to their printed
    precision): refit after adding points (bench/bench_speed_model.py prints the fit)."""
    fitted = speed_calibration.fit(speed_calibration.load_points(("fit",)))
    assert fitted.ram_fraction == pytest.approx(roofline.RAM_FRACTION, rel=0.01)
    assert fitted.thread_bytes_s == pytest.approx(roofline.THREAD_BYTES_S, rel=0.01)
    assert fitted.vram_fraction == pytest.approx(roofline.VRAM_FRACTION, rel=0.01)
    assert fitted.fixed_ms == pytest.approx(roofline.FIXED_MS, rel=0.02)
    assert fitted.transition_ms == pytest.approx(roofline.TRANSITION_MS, rel=0.02)


def test_the_guide_machines_own_runs_fall_in_the_quoted_range():
    """The guide author's measured runs on the i5-12600K + RTX 4070 (r025-r027: gpt-oss-120b
    with blocks 5+ of experts in RAM, Qwen3-Coder-Next with 40 and with all 48 layers' experts
    in RAM) sit inside the range the doctor would quote for them."""
    points = {p.id: p for p in speed_calibration.load_points(("fit",))}
    constants = roofline.Constants()
    for key in ("r025", "r026", "r027"):
        predicted = speed_calibration.predict(points[key], constants)
        low, high = predicted / (1 + roofline.RANGE_ERROR), predicted * (1 + roofline.RANGE_ERROR)
        assert low <= points[key].measured <= high, (key, predicted)
    assert speed_calibration.predict(points["r026"], constants) > \
        speed_calibration.predict(points["r027"], constants)  # more experts on the GPU

"""The launch plan for the guide's machine (i5-12600K, RTX 4070 12 GB, 2 x 32 GB DDR5-6000),
seen through `launch --print --snapshot` as a user on another machine would, for both real
llama-server builds; the expected speed held to the guide's own figures; and the flag
translation and memory plan on their own.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO, run_cli
from jsonschema import Draft202012Validator
from launch_fixtures import GPT_OSS_PATH, QWEN_PATH, SERVER, guide_machine, record_command
from llama_server_standin import help_text
from q3cn_doctor.facts import Facts
from q3cn_doctor.host.snapshot import SnapshotHost
from q3cn_doctor.launch.launcher import build_plan
from q3cn_doctor.options import Options
from q3cn_doctor.parsers.server_help import Build, Intents, translate
from q3cn_doctor.plan.placement import placement
from q3cn_doctor.plan.speed import speed, what_if

NO_CONFIG = {"XDG_CONFIG_HOME": "/nonexistent-q3cn-doctor-test-xdg"}
SAMPLING = "--jinja --temp 1.0 --top-p 0.95 --top-k 40 --min-p 0.01"
CPU_PLAN = "--threads 6 --threads-batch 12 --cpu-mask 0x555 --cpu-strict 1 --cpu-range-batch 0-11"
BATCH = "--batch-size 2048 --ubatch-size 512"
TASKSET = "taskset -c 0-11"  # the process affinity, kept beside the build's own mask flags


def launch(*args: str) -> tuple[int, str, str]:
    result = run_cli("launch", *args, env=NO_CONFIG)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout.strip(), result.stderr


def printed(root: Path, model: str = QWEN_PATH, *extra: str) -> str:
    code, out, err = launch("--print", "--snapshot", str(root), "--model", model, *extra)
    assert code == 0, err
    return out


# -- the guide's machine, both builds ----------------------------------------------------------

def test_guide_plan_on_the_2026_10_build(tmp_path):
    """Qwen3-Coder-Next for a coding agent: one slot, 32 context checkpoints (a hybrid
    model, 2.4 GiB of them), the prompt cache at half the RAM then left; -ub stays 512
    (a larger compute buffer would push attention off the 12 GB card at ctx 131072)."""
    command = printed(guide_machine(tmp_path / "g", "2026-10"))
    assert command == (
        f"{TASKSET} {SERVER} --model {QWEN_PATH} --port 8080 {SAMPLING} --ctx-size 131072 "
        f"--fit on --fit-target 1024 --load-mode mlock {CPU_PLAN} -fa on {BATCH} "
        "--parallel 1 --ctx-checkpoints 32 --cache-ram 8192")


def test_guide_plan_on_the_2025_08_build(tmp_path):
    """No --fit: --n-cpu-moe from the VRAM plan (12 GB hold the non-expert weights and the
    3 GiB KV cache, no whole layer of experts); --no-mmap --mlock in that order; bare -fa;
    no --ctx-checkpoints for a hybrid model nor --cache-ram in that build."""
    code, command, err = launch("--print", "--snapshot", str(guide_machine(
        tmp_path / "g", "2025-08")), "--model", QWEN_PATH)
    assert code == 0
    assert command == (
        f"{TASKSET} {SERVER} --model {QWEN_PATH} --port 8080 {SAMPLING} --ctx-size 131072 "
        f"--n-gpu-layers 999 --n-cpu-moe 48 --no-mmap --mlock {CPU_PLAN} -fa {BATCH} "
        "--parallel 1")
    # that build predates qwen3next: the plan is shown, and the failing check named
    assert "server.build:architecture" in err


def test_gpt_oss_prompt_batch_costs_two_layers_of_experts(tmp_path):
    """gpt-oss-120b keeps 2 of 36 layers' experts on the GPU at -ub 512 (--n-cpu-moe 34);
    for an agent the plan takes -ub 4096 (prompt processing 3-4x faster with experts in
    RAM) and re-fits the VRAM for its compute buffer: --n-cpu-moe 36. OpenAI's sampling
    (temperature 1.0, top_p 1.0), never Qwen's; sliding-window checkpoints."""
    root = guide_machine(tmp_path / "g", "2025-08")
    command = printed(root, GPT_OSS_PATH)
    assert "--n-gpu-layers 999 --n-cpu-moe 36 " in command
    assert "--jinja --temp 1.0 --top-p 1.0 --ctx-size" in command and "--top-k" not in command
    assert command.endswith("--batch-size 4096 --ubatch-size 4096 --parallel 1 "
                            "--swa-checkpoints 32")
    chat = printed(root, GPT_OSS_PATH, "--for", "chat")
    assert "--n-cpu-moe 35 " in chat and "--ubatch-size 2048" in chat
    plain = printed(root, GPT_OSS_PATH, "--", "-ub", "512")
    assert "--n-cpu-moe 34 " in plain and plain.endswith("-ub 512")


def test_every_planned_flag_is_one_the_build_lists(tmp_path):
    for build in ("2025-08", "2026-10"):
        args = shlex.split(printed(guide_machine(tmp_path / build, build)))[1:]
        known = Build.from_help(help_text(build))
        assert known.unknown(args) == []
        flags = [a for a in args if a.startswith("-")]
        assert len(flags) == len(set(flags))  # nothing given twice


def test_memlock_too_small_leaves_the_model_unlocked(tmp_path):
    """Not locked, but still read into RAM on this CUDA build (--load-mode none, or
    --no-mmap on the older build): pinned host buffers, never swapped."""
    root = guide_machine(tmp_path / "g", memlock=(8 << 20, 8 << 20))
    command = printed(root)
    assert "--load-mode none " in command and "mlock" not in command
    old = printed(guide_machine(tmp_path / "o", "2025-08", memlock=(8 << 20, 8 << 20)))
    assert " --no-mmap " in old and "--mlock" not in old
    code, out, _ = launch("--json", "--snapshot", str(root), "--model", QWEN_PATH)
    plan = json.loads(out)
    assert any("RLIMIT_MEMLOCK is 8192 KiB" in note for note in plan["notes"])
    assert any("pinned host buffers" in note for note in plan["notes"])


def test_memlock_hard_limit_is_raised_to(tmp_path):
    root = guide_machine(tmp_path / "g", memlock=(8 << 20, -1))
    command = printed(root)
    assert command.startswith(f"prlimit --memlock=unlimited:unlimited {TASKSET} {SERVER} ")
    assert "--load-mode mlock" in command


def test_prio_where_permitted(tmp_path):
    rtprio = printed(guide_machine(tmp_path / "r", rtprio=(0, 99)))
    assert rtprio.startswith(f"prlimit --rtprio=99:99 {TASKSET} {SERVER} ") and rtprio.endswith(
        f"{BATCH} --parallel 1 --ctx-checkpoints 32 --cache-ram 8192 --prio 2")
    capable = printed(guide_machine(tmp_path / "c", capabilities=1 << 23))  # CAP_SYS_NICE
    assert capable.startswith(f"{TASKSET} {SERVER}") and capable.endswith("--prio 2")
    assert "--prio" not in printed(guide_machine(tmp_path / "n"))


def test_extra_arguments_win(tmp_path):
    command = printed(guide_machine(tmp_path / "g"), QWEN_PATH, "--port", "9000", "--",
                      "--ctx-size", "65536", "-ctk", "q8_0", "--mlock")
    args = shlex.split(command)
    assert args[args.index("--port") + 1] == "9000"
    assert args.count("--ctx-size") == 1 and args[-5:] == ["--ctx-size", "65536", "-ctk",
                                                            "q8_0", "--mlock"]
    assert "--load-mode" not in args  # the user's --mlock replaces the plan's way of locking


def test_config_file_port_alias_and_args(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'model = "{GPT_OSS_PATH}"\nport = 8181\nalias = "gpt-oss"\n'
                      'host = "0.0.0.0"\nargs = ["--fit-target", "2048"]\n')
    code, out, err = launch("--print", "--snapshot", str(guide_machine(tmp_path / "g")),
                            "--config", str(config))
    assert code == 0, err
    assert out.startswith(f"{TASKSET} {SERVER} --model {GPT_OSS_PATH} --host 0.0.0.0 "
                          "--port 8181 --alias gpt-oss --jinja")
    assert out.endswith("--fit-target 2048") and out.count("--fit-target") == 1


def test_json_plan(tmp_path):
    code, out, _ = launch("--json", "--snapshot", str(guide_machine(tmp_path / "g")),
                          "--model", QWEN_PATH)
    plan = json.loads(out)
    assert plan["command"] == printed(guide_machine(tmp_path / "h"))
    # llama.cpp pins its threads, and the process affinity holds them there too
    assert plan["argv"][0] == SERVER and plan["affinity"] == list(range(12))
    assert plan["cpu_plan"]["threads"] == 6
    assert plan["model"]["memory_plan"]["n_cpu_moe"] == 48
    flags = {arg["flag"]: arg for arg in plan["args"]}
    assert "fits layers and experts" in flags["--fit"]["why"]
    assert any("--load-mode mlock: this build replaced" in n for n in plan["notes"])
    assert any("GGML_CUDA_GRAPH_OPT not set" in n for n in plan["notes"])


def _beside_a_p40(root: Path, p40_first: bool) -> Path:
    """The guide's machine with a Tesla P40 (compute 6.1) beside its RTX 4070, on driver
    580 with a CUDA 13 build, which has no kernels for the P40."""
    from test_elf import make_elf

    nvml = json.loads((root / "nvml.json").read_text())
    rtx = dict(nvml["devices"][0], uuid="GPU-4070")
    p40 = dict(rtx, name="Tesla P40", uuid="GPU-p40", compute_capability=[6, 1],
               pci_bus_id="00000000:02:00.0", processes=[])
    gpus = [p40, rtx] if p40_first else [rtx, p40]
    nvml.update(cuda_driver_version=13000, devices=[dict(g, index=i) for i, g in enumerate(gpus)])
    (root / "nvml.json").write_text(json.dumps(nvml))
    (root / "fs/usr/local/lib/libggml-cuda.so").write_bytes(make_elf(
        ["libggml-base.so", "libcudart.so.13", "libcublas.so.13", "libcuda.so.1"],
        soname="libggml-cuda.so", runpath="$ORIGIN"))
    return root


@pytest.mark.parametrize("p40_first", [False, True])
def test_a_gpu_the_build_has_no_kernels_for_is_hidden(tmp_path, p40_first):
    """CUDA 13 dropped Pascal: the launch names the 4070 alone in CUDA_VISIBLE_DEVICES (by
    UUID, whichever index NVML gave it) and plans one GPU, not two."""
    root = _beside_a_p40(guide_machine(tmp_path / "g"), p40_first)
    code, out, err = launch("--json", "--snapshot", str(root), "--model", QWEN_PATH)
    assert code == 0, err
    plan = json.loads(out)
    assert plan["env"]["CUDA_VISIBLE_DEVICES"] == "GPU-4070"
    assert any("no kernels for the Tesla P40 (compute 6.1, Pascal)" in n for n in plan["notes"])
    assert plan["command"].startswith("env CUDA_VISIBLE_DEVICES=GPU-4070 ")
    facts = Facts(SnapshotHost(str(root)), Options(model=QWEN_PATH))
    assert placement(facts).gpus == 1


def test_no_gpu_the_build_can_run_on_hides_them_all(tmp_path):
    """The P40 alone under the CUDA 13 build: CUDA_VISIBLE_DEVICES is empty, so
    llama-server runs on the CPU, as the speed model plans it, rather than stopping at
    the P40's first kernel."""
    root = _beside_a_p40(guide_machine(tmp_path / "g"), p40_first=True)
    nvml = json.loads((root / "nvml.json").read_text())
    nvml["devices"] = nvml["devices"][:1]
    (root / "nvml.json").write_text(json.dumps(nvml))
    code, out, err = launch("--json", "--snapshot", str(root), "--model", QWEN_PATH)
    assert code == 0, err
    plan = json.loads(out)
    assert plan["env"]["CUDA_VISIBLE_DEVICES"] == ""
    assert any("so llama-server runs on the CPU" in n for n in plan["notes"])


def test_build_without_cpu_flags_takes_the_affinity_itself(tmp_path):
    root = guide_machine(tmp_path / "g")
    stripped = "\n".join(line for line in help_text("2026-10").splitlines()
                         if not line.startswith(("-C", "--cpu-")))
    record_command(root, [SERVER, "--help"], stripped)
    command = printed(root)
    assert command.startswith(f"taskset -c 0-11 {SERVER} ")
    assert "--cpu-" not in command and "--threads 6 --threads-batch 12" in command


def test_unknown_cpus_leave_the_thread_count_to_llama_cpp(tmp_path):
    """A host whose online CPUs cannot be read (here: the guide machine without its sysfs
    CPU files and /proc/cpuinfo): the plan passes no --threads rather than one thread."""
    import shutil

    root = guide_machine(tmp_path / "g")
    shutil.rmtree(root / "fs/sys/devices/system/cpu")
    (root / "fs/proc/cpuinfo").unlink()
    code, out, err = launch("--json", "--snapshot", str(root), "--model", QWEN_PATH)
    assert code == 0, err
    plan = json.loads(out)
    args = shlex.split(plan["command"])
    assert "--threads" not in args and "--threads-batch" not in args
    assert not [a for a in args if a.startswith("--cpu-")] and plan["affinity"] is None
    assert any("this host's CPUs are unknown" in note for note in plan["notes"])


def test_a_build_listing_only_the_long_flash_attn_gets_that_name():
    """Every flag emitted is one the build lists: -fa only where the build knows -fa."""
    long_only = Build.from_help(
        "--port PORT                             port to listen\n"
        "-m,    --model FNAME                    model path\n"
        "--flash-attn [on|off|auto]              set Flash Attention use\n")
    result = translate(Intents(model="/m.gguf", port=8080), long_only)
    assert result.argv()[-2:] == ["--flash-attn", "on"]
    assert long_only.unknown(result.argv()) == []


def test_snapshot_launch_needs_print(tmp_path):
    code, _, err = launch("--snapshot", str(guide_machine(tmp_path / "g")), "--model",
                          QWEN_PATH)
    assert code == 2 and "--print" in err


def test_no_model_no_plan(tmp_path):
    code, out, err = launch("--print", "--snapshot", str(guide_machine(tmp_path / "g")))
    assert code == 1 and out == "" and "needs a model file" in err


# -- the expected speed: the one speed model's ------------------------------------------------
# (held to the guide machine's own measured runs in tests/test_speed_model.py)

GUIDE = {"qwen3-coder-next-mxfp4": QWEN_PATH, "gpt-oss-120b-mxfp4": GPT_OSS_PATH}


@pytest.mark.parametrize("profile", sorted(GUIDE))
def test_the_launch_quotes_the_speed_model(tmp_path, profile):
    root = guide_machine(tmp_path / "g")
    options = Options(snapshot=str(root), profile=profile, model=GUIDE[profile])
    estimate = speed(Facts(SnapshotHost(str(root)), options))
    assert estimate.ram_bytes_per_s == 96e9  # 6000 MT/s x 8 bytes x 2 channels
    assert estimate.mode == "gpu" and estimate.low < estimate.tok_s < estimate.high
    plan = build_plan(Facts(SnapshotHost(str(root)), options), options)
    assert plan.model["expected_tok_s"] == estimate.tok_s
    assert plan.model["expected_range"] == [estimate.low, estimate.high]
    # the profile stands in for the file (the fixture's file is written from it)
    bare = Options(snapshot=str(root), profile=profile)
    assert speed(Facts(SnapshotHost(str(root)), bare)).tok_s == pytest.approx(
        estimate.tok_s, rel=0.1)


def test_speed_at_the_rated_ram_speed(tmp_path):
    """A DDR5-6000 kit running at 4400 (XMP off): the estimate now and at the rated speed."""
    root = guide_machine(tmp_path / "g")
    slow = FIXTURES / "dmidecode" / "005-ddr5-z690-12600k-4800-at-4400.txt"
    record_command(root, ["dmidecode", "-t", "memory"], slow.read_text())
    result = run_cli("check", "--snapshot", str(root), "--model", QWEN_PATH, "--only",
                     "model.speed", "--json", env=NO_CONFIG)
    document = json.loads(result.stdout)
    estimate = document["plan"]["speed"]
    finding = document["findings"][0]
    facts = Facts(SnapshotHost(str(root)), Options(snapshot=str(root), model=QWEN_PATH))
    rated = what_if(facts, ram_mts=facts.memory.rated_mts).tok_s
    assert estimate["tok_s"] < rated
    assert finding["title"] == (f"Expected ~{estimate['tok_s']:.0f} tok/s "
                                f"({estimate['low']:.0f}-{estimate['high']:.0f}) generating "
                                f"with Qwen3-Coder-Next (80B-A3B) MXFP4; ~{rated:.0f} with "
                                "RAM at its rated speed")


def test_guide_report_validates(tmp_path):
    schema = json.loads((REPO / "doctor" / "report" / "report.schema.json").read_text())
    result = run_cli("check", "--snapshot", str(guide_machine(tmp_path / "g")), "--model",
                     QWEN_PATH, "--json", env=NO_CONFIG)
    document = json.loads(result.stdout)
    Draft202012Validator(schema).validate(document)
    assert document["facts"]["server"]["version"] == "0.5.0-dev (build 1, commit 0c1e570)"
    assert document["plan"]["placement"]["gpus"] == 1


# -- the translation and the memory plan on their own ------------------------------------------

def test_translation_drops_what_a_build_lacks():
    bare = Build.from_help("--port PORT                             port to listen\n"
                           "-m,    --model FNAME                    model path\n")
    result = translate(Intents(model="/m.gguf", port=8080, gpu=True, lock=True), bare)
    assert result.argv() == ["--model", "/m.gguf", "--port", "8080"]
    assert any(d.startswith("--jinja: this build has no such flag") for d in result.dropped)
    assert any("neither --load-mode nor --mlock" in d for d in result.dropped)


def test_shell_command_quotes_and_prefixes():
    from q3cn_doctor.launch.launcher import LaunchPlan, shell_command

    plan = LaunchPlan(server="/opt/llama server/llama-server",
                      argv=["/opt/llama server/llama-server", "--alias", "my model"],
                      env={"GGML_CUDA_GRAPH_OPT": "1"}, affinity=[0, 1, 2, 3, 8],
                      rlimits={"MEMLOCK": (-1, -1), "RTPRIO": (99, 99)}, args=[], notes=[],
                      dropped=[], unknown_extra=[])
    assert shell_command(plan) == (
        "env GGML_CUDA_GRAPH_OPT=1 prlimit --memlock=unlimited:unlimited --rtprio=99:99 "
        "taskset -c 0-3,8 '/opt/llama server/llama-server' --alias 'my model'")


def test_fit_ctx_is_never_planned():
    result = translate(Intents(model="/m", port=1, gpu=True), Build.from_help(
        help_text("2026-10")))
    assert "--fit-ctx" not in result.argv() and "--fit" in result.argv()


def test_dense_part_too_big_for_the_gpu(tmp_path):
    """At ctx 262144 the Qwen KV cache (6 GiB) and its non-expert weights do not fit 12 GB:
    whole layers stay on the CPU, -ngl says how many, every expert stays in RAM."""
    root = guide_machine(tmp_path / "g", "2025-08")
    command = printed(root, QWEN_PATH, "--ctx-size", "262144")
    plan = placement(Facts(SnapshotHost(str(root)), Options(snapshot=str(root), model=QWEN_PATH,
                                                           ctx_size=262144)))
    assert not plan.dense_fits_gpu and 0 < plan.gpu_layers < 48
    assert f"--n-gpu-layers {plan.gpu_layers} --n-cpu-moe 48 " in command


def test_cpu_only_plan(tmp_path):
    root = guide_machine(tmp_path / "g")
    (root / "nvml.json").write_text(json.dumps({"init": "NVML_ERROR_LIBRARY_NOT_FOUND"}))
    plan = placement(Facts(SnapshotHost(str(root)), Options(snapshot=str(root), model=QWEN_PATH)))
    assert plan.gpus == 0 and plan.gpu_bytes == 0 and plan.n_cpu_moe == 48
    assert plan.gpu_bytes_per_token == 0
    command = printed(root)
    assert "--fit" not in command and "--n-cpu-moe" not in command

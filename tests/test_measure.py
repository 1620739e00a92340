"""The measuring parts without a llama.cpp run: llama-bench's and /completion's output
(real ones, tests/fixtures/llama_speed/SOURCE.txt), the setting in each program's flags,
who llama.cpp runs as, how its processes stop, and where a profile's model is found.
The runs themselves: tests/test_measure_e2e.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import alive, child_pids, run_on_terminal
from q3cn_doctor.facts.model_search import find_profile_model
from q3cn_doctor.host.live import LiveHost
from q3cn_doctor.launch.run_as import RunAsError, run_as
from q3cn_doctor.measure.processes import (
    MeasureError,
    Program,
    loopback_argv,
    run_program,
    stop,
)
from q3cn_doctor.measure.setting import Setting
from q3cn_doctor.measure.speed_bench import Prediction, verdict
from q3cn_doctor.parsers.llama_speed import (
    Rate,
    SpeedOutputError,
    help_flags,
    parse_bench_json,
    parse_completion,
)
from q3cn_doctor.parsers.server_help import Build

SPEED = Path(__file__).parent / "fixtures" / "llama_speed"
SERVER_HELP = Path(__file__).parent / "fixtures" / "llama-server"


def build(name: str) -> Build:
    return Build.from_help((SERVER_HELP / name).read_text())


# -- what llama.cpp prints ----------------------------------------------------------------

def test_llama_bench_json_of_this_build():
    records = parse_bench_json((SPEED / "llama-bench-0c1e570-smollm2-t1-t2.json").read_text())
    assert [(r.kind, r.n_threads) for r in records] == [("pp", 1), ("tg", 1), ("pp", 2),
                                                        ("tg", 2)]
    tg = records[1]
    assert (tg.n_gen, tg.n_prompt, tg.build_commit, tg.type_k) == (64, 0, "0c1e570", "f16")
    assert len(tg.rate.samples) == 3 and tg.rate.mean == pytest.approx(24.1, abs=0.1)
    assert tg.rate.stddev == pytest.approx(2.2, abs=0.1)  # llama-bench's own stddev_ts


def test_llama_bench_json_of_a_2025_build_and_its_jsonl_form():
    text = (SPEED / "llama-bench-2025-04-rtx4080.json").read_text()
    pp, tg = parse_bench_json(text)
    assert (pp.kind, pp.n_prompt, round(pp.rate.mean)) == ("pp", 512, 7100)
    assert (tg.kind, tg.n_gen, round(tg.rate.mean, 1)) == ("tg", 128, 118.9)
    assert tg.backends == "CUDA" and tg.build_number == 5163
    import json

    lines = "\n".join(json.dumps(item) for item in json.loads(text))
    assert [r.rate.mean for r in parse_bench_json(lines)] == [pp.rate.mean, tg.rate.mean]


@pytest.mark.parametrize("text", ["", "error: unknown argument: -lm", "{}", "[1, 2]",
                                  '[{"n_prompt": 0, "n_gen": 64}]'])
def test_llama_bench_garbage_is_a_clear_error(text):
    with pytest.raises(SpeedOutputError):
        parse_bench_json(text)


def test_completion_timings():
    timings = parse_completion((SPEED / "completion-0c1e570-smollm2.json").read_bytes())
    assert (timings.prompt_n, timings.predicted_n, timings.cache_n) == (16, 16, 0)
    assert timings.predicted_per_second == pytest.approx(3.443, abs=0.001)
    assert timings.prompt_per_second == pytest.approx(8.698, abs=0.001)
    with pytest.raises(SpeedOutputError):
        parse_completion(b'{"content": "no timings"}')
    # nothing timed (every prompt token from the cache): no figure, not a huge one
    cached = parse_completion(b'{"timings": {"prompt_n": 0, "prompt_per_second": 1e9, '
                              b'"predicted_n": 4, "predicted_per_second": 50.0}}')
    assert cached.prompt_per_second is None and cached.predicted_per_second == 50.0


def test_help_flags_of_two_llama_bench_generations():
    new = help_flags((SPEED / "llama-bench-0c1e570-help.txt").read_text())
    old = help_flags((SPEED / "llama-bench-2025-04-help.txt").read_text())
    assert {"-lm", "--load-mode", "-ncmoe", "-fitt", "-t", "-ub", "-ctk"} <= new
    assert "-mmp" not in new
    assert {"-mmp", "--mmap", "-t", "-ub", "-ctk", "-ot"} <= old
    assert not {"-lm", "-ncmoe", "-fitt"} & old


def test_rate_spread():
    rate = Rate.of([10.0, 11.0, 12.0])
    assert rate.mean == 11.0 and rate.stddev == pytest.approx(1.0)
    assert rate.spread == pytest.approx(1 / 11)
    assert rate.merged(Rate.of([13.0])).samples == [10.0, 11.0, 12.0, 13.0]
    with pytest.raises(SpeedOutputError):
        Rate.of([0.0])


# -- one setting in each program's spelling -------------------------------------------------

def test_setting_from_a_launch_command():
    argv = ["llama-server", "--model", "m.gguf", "--threads", "6", "--threads-batch", "12",
            "--batch-size", "2048", "--ubatch-size=1024", "--cache-type-k", "q8_0",
            "--load-mode", "mlock", "--n-cpu-moe", "30", "--n-gpu-layers", "999"]
    setting = Setting.from_server_args(argv)
    assert setting == Setting(threads=6, threads_batch=12, batch=2048, ubatch=1024,
                              cache_type="q8_0", load_mode="mlock", n_cpu_moe=30,
                              gpu_layers=999)
    legacy = Setting.from_server_args(["llama-server", "--no-mmap", "--mlock", "-t", "4"])
    assert (legacy.load_mode, legacy.threads) == ("mlock", 4)
    assert Setting.from_server_args(["llama-server", "--no-mmap"]).load_mode == "none"
    assert Setting.from_server_args(["llama-server", "-t", "4", "-t", "8"]).threads == 8


def test_setting_in_each_build_of_llama_server():
    setting = Setting(threads=2, threads_batch=4, ubatch=256, cache_type="q8_0",
                      load_mode="none")
    new = setting.server_args(build("help-2026-10-commit-0c1e570.txt"))
    assert new == ["--threads", "2", "--threads-batch", "4", "--ubatch-size", "256",
                   "--cache-type-k", "q8_0", "--cache-type-v", "q8_0", "--load-mode", "none"]
    old = setting.server_args(build("help-2025-08-commit-4227c9b.txt"))
    assert old[-1] == "--no-mmap" and "--load-mode" not in old
    locked = Setting(load_mode="mlock").server_args(build("help-2025-08-commit-4227c9b.txt"))
    assert locked == ["--no-mmap", "--mlock"]  # the order that locks (PR #26133)
    # what a launch plan's command says, read back, is the same setting
    again = Setting.from_server_args(["llama-server", *new])
    assert again == setting


def test_setting_in_each_llama_bench():
    setting = Setting(threads=2, ubatch=128, cache_type="q4_0", load_mode="none",
                      n_cpu_moe=12)
    new = help_flags((SPEED / "llama-bench-0c1e570-help.txt").read_text())
    old = help_flags((SPEED / "llama-bench-2025-04-help.txt").read_text())
    assert setting.bench_args(new) == ["-t", "2", "-ub", "128", "-ctk", "q4_0", "-ctv",
                                       "q4_0", "-ncmoe", "12", "-lm", "none"]
    assert setting.bench_can_run(new) is None
    assert setting.bench_can_run(old) == "this llama-bench has no --n-cpu-moe"
    plain = Setting(threads=2, load_mode="none")
    assert plain.bench_args(old) == ["-t", "2", "-mmp", "0"]
    assert Setting(load_mode="mlock").bench_can_run(old) == (
        "this llama-bench has no --load-mode (mlock)")


def test_setting_labels_and_keys():
    setting = Setting(threads=2, batch=2048, ubatch=256, cache_type="f16", load_mode="mmap")
    assert setting.label() == "t2 b2048 ub256 kv f16 load mmap"
    assert Setting().label() == "defaults"
    # llama-bench times pp and tg with one -t: threads-batch is no separate measurement
    assert setting.changed(threads_batch=1).key() == setting.key()
    assert Setting.from_json(setting.to_json()) == setting


def test_loopback_argv_moves_the_server_off_the_network():
    argv = ["llama-server", "--host", "0.0.0.0", "--port=8001", "--model", "m"]
    assert loopback_argv(argv, 4242) == ["llama-server", "--model", "m", "--host",
                                         "127.0.0.1", "--port", "4242"]


# -- which figure to believe ----------------------------------------------------------------

def test_verdict_names_the_figure_to_believe():
    predicted = Prediction(60.0, 50.0, 70.0, "roofline")
    assert "agree" in verdict(65.0, predicted)
    below = verdict(20.0, predicted)
    assert "67% below" in below and "believe the measurement" in below
    above = verdict(90.0, predicted)
    assert "50% above" in above and "conservative" in above
    assert "Only the measurement" in verdict(30.0, Prediction(None, None, None, "no RAM"))
    assert verdict(None, predicted).startswith("Nothing was measured")


# -- who runs llama.cpp ---------------------------------------------------------------------

def test_root_is_refused_unless_allowed():
    with pytest.raises(RunAsError, match="refusing to run llama.cpp as root"):
        run_as("root")
    assert run_as("root", allow_root=True).uid == 0
    with pytest.raises(RunAsError, match="no user"):
        run_as("no-such-user-q3cn")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_root_runs_llama_cpp_as_the_user_it_names(tmp_path):
    who = run_as("nobody")
    assert who.switch and who.uid != 0
    assert who.popen_kwargs()["user"] == who.uid
    private = tmp_path / "private.gguf"
    private.write_bytes(b"GGUF")
    tmp_path.chmod(0o700)
    assert not who.can_read(str(private))
    out = run_program(Program(["sh", "-c", "id -u; id -g; id -G; echo $HOME"], who), 30)
    uid, gid, groups, home = out.splitlines()
    assert (int(uid), int(gid), home) == (who.uid, who.gid, who.home)
    assert "0" not in groups.split()  # root's group dropped


# -- processes always stop ------------------------------------------------------------------

def test_stop_ends_the_whole_process_group():
    who = run_as(None, allow_root=True)
    script = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
    process = Program([sys.executable, "-c", script], who).popen()
    deadline = time.monotonic() + 20
    children: list[int] = []
    while time.monotonic() < deadline and not children:
        children = child_pids(process.pid)
        time.sleep(0.1)
    assert children, "the child never started its grandchild"
    started = time.monotonic()
    stop(process, grace=5)
    assert process.returncode == -signal.SIGTERM and time.monotonic() - started < 5
    time.sleep(0.2)
    assert not any(alive(pid) for pid in children)


def test_a_failing_program_says_why():
    who = run_as(None, allow_root=True)
    with pytest.raises(MeasureError, match="exited 3: broken"):
        run_program(Program([sys.executable, "-c", "import sys; sys.stderr.write('broken');"
                                                   " sys.exit(3)"], who), 30)
    with pytest.raises(MeasureError, match="did not finish in 1 s"):
        run_program(Program(["sleep", "30"], who), 1)
    with pytest.raises(MeasureError, match="cannot start"):
        run_program(Program(["/nonexistent/llama-bench"], who), 5)


# -- where the profile's model is found -----------------------------------------------------

def test_profile_model_in_the_hugging_face_cache(tmp_path, monkeypatch):
    for name in ("HF_HUB_CACHE", "HF_HOME", "LLAMA_CACHE"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    snapshot = home / ".cache/huggingface/hub/models--unsloth--Qwen3-Coder-Next-GGUF" \
                      "/snapshots/abc123"
    for name in ("Qwen3-Coder-Next-Q4_K_M.gguf", "MXFP4_MOE/Qwen3-Coder-Next-MXFP4_MOE-"
                 "00002-of-00002.gguf", "MXFP4_MOE/Qwen3-Coder-Next-MXFP4_MOE-00001-of-00002.gguf"):
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_bytes(b"GGUF")
    (home / "models").mkdir()
    (home / "models" / "gpt-oss-120b-mxfp4-00001-of-00003.gguf").write_bytes(b"GGUF")
    found = find_profile_model(LiveHost(), "qwen3-coder-next-mxfp4", [str(home)])
    assert found.path.endswith("MXFP4_MOE/Qwen3-Coder-Next-MXFP4_MOE-00001-of-00002.gguf")
    assert len(found.candidates) == 2  # the second part is never a candidate
    other = find_profile_model(LiveHost(), "gpt-oss-120b-mxfp4", [str(home)])
    assert other.path == str(home / "models" / "gpt-oss-120b-mxfp4-00001-of-00003.gguf")
    monkeypatch.setenv("LLAMA_CACHE", str(tmp_path / "llama-cache"))
    empty = find_profile_model(LiveHost(), "gpt-oss-120b-mxfp4", [str(tmp_path / "nobody")])
    assert empty.path is None
    reason = empty.reason("gpt-oss-120b-mxfp4")
    assert str(tmp_path / "llama-cache") in reason and "--model PATH" in reason


# -- progress: rich on a terminal, plain lines otherwise --------------------------------------

PROGRESS = ("from q3cn_doctor.app.measure_command import progress\n"
            "with progress('Tuning', 10) as step:\n"
            "    step('trial 1: t2 b2048')\n"
            "    step('trial 2: t1 b2048')\n")


def test_progress_is_plain_lines_without_a_terminal():
    done = subprocess.run([sys.executable, "-c", PROGRESS], capture_output=True, text=True,
                          timeout=60)
    lines = done.stderr.splitlines()
    assert lines[0] == "Tuning..." and lines[1].endswith("s] trial 1: t2 b2048")
    assert "\x1b[" not in done.stderr and done.stdout == ""


def test_progress_is_a_rich_bar_on_a_terminal():
    code, output = run_on_terminal([], dict(os.environ, TERM="xterm", COLUMNS="100"),
                                   command=[sys.executable, "-c", PROGRESS])
    text = output.decode(errors="replace")
    assert code == 0 and "trial 2: t1 b2048" in text
    assert "\x1b[" in text and "Tuning..." not in text  # drawn, not plain lines


# -- the commands' refusals, before anything runs ---------------------------------------------

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from gguf_files import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("model") / "tiny-llama.gguf")


def measure_cli(*args: str, home: Path):
    from test_cli import cli

    env = {"HOME": str(home), "XDG_STATE_HOME": str(home / "state"), "HF_HOME": "",
           "HF_HUB_CACHE": "", "LLAMA_CACHE": "", "SUDO_USER": ""}
    return cli(*args, env=env)


def test_only_this_machine_is_measured(tmp_path):
    result = measure_cli("bench", "speed", "--root", str(tmp_path), home=tmp_path)
    assert result.returncode == 2 and "No such option '--root'" in result.stderr
    tuned = measure_cli("tune", "--budget", "soon", home=tmp_path)
    assert tuned.returncode == 2 and "'soon' is not a duration" in tuned.stderr


def test_without_a_model_it_says_where_it_looked(tmp_path):
    result = measure_cli("bench", "speed", home=tmp_path)
    assert result.returncode == 2
    assert "no GGUF of Qwen3-Coder-Next (80B-A3B) MXFP4 found in" in result.stderr
    assert f"{tmp_path}/.cache/huggingface/hub" in result.stderr
    assert f"{tmp_path}/models" in result.stderr and "--model PATH" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs llama.cpp as another user")
def test_a_model_the_user_cannot_read_is_refused(tmp_path, tiny_model):
    from llama_server_standin import write_standin

    standin = write_standin(tmp_path / "bin", "2026-10")
    result = measure_cli("bench", "speed", "--model", str(tiny_model), "--server",
                         str(standin), "--user", "nobody", "--ctx-size", "256",
                         home=tmp_path)
    assert result.returncode == 1
    assert f"nobody, who runs llama.cpp, cannot read the model {tiny_model}" in result.stderr


def test_llama_bench_asked_for_but_missing(tmp_path, tiny_model):
    from llama_server_standin import write_standin

    standin = write_standin(tmp_path / "bin", "2026-10")
    user = ["--user", "root", "--allow-root"] if os.geteuid() == 0 else []
    result = measure_cli("bench", "speed", "--method", "bench", "--model", str(tiny_model),
                         "--server", str(standin), "--ctx-size", "256", *user,
                         home=tmp_path)
    assert result.returncode == 1
    assert f"no llama-bench beside {standin} or on PATH" in result.stderr

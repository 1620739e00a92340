"""Launch for the way people use it: the model's own context and sampling, the serving
plan (--for), your own command imported (--from), who may reach the server
(server.exposure), whether a running one re-processes prompts (server.prompt_cache), and
the plan as a systemd unit (--unit).
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import gguf
import pytest
from conftest import FIXTURES, run_cli, snapshot_facts, snapshot_findings
from gguf_files import write_qwen3next, write_tiny_llama
from launch_fixtures import GPT_OSS_PATH, QWEN_PATH, SERVER, guide_machine
from llama_server_standin import help_text, refused
from q3cn_doctor.checks.serving import judge_turns
from q3cn_doctor.facts import Facts
from q3cn_doctor.host.snapshot import SnapshotHost
from q3cn_doctor.launch.launcher import build_plan
from q3cn_doctor.options import Options
from q3cn_doctor.parsers.server_help import Build, import_args
from q3cn_doctor.parsers.server_log import read_turns
from q3cn_doctor.parsers.shell_command import read_command
from q3cn_doctor.plan.placement import placement
from q3cn_doctor.plan.serving import serving_plan

NO_CONFIG = {"XDG_CONFIG_HOME": "/nonexistent-q3cn-doctor-test-xdg"}
GUIDE_SCRIPT = FIXTURES / "llama-server" / "scripts" / "run-llama-cpp-qwen3-coder-next.sh"
LOGS = FIXTURES / "llama-server" / "logs"
SCRIPT_MODEL = "/mnt/lab//models/unsloth/Qwen3-Coder-Next-GGUF/Qwen3-Coder-Next-UD-Q4_K_XL.gguf"
BUILDS = ("2025-08", "2026-10")


def plan_for(root: Path, **options):
    opts = Options(snapshot=str(root), **options)
    return build_plan(Facts(SnapshotHost(str(root)), opts), opts)


def with_model(root: Path, path: Path) -> str:
    """Put a real GGUF into a snapshot's tree, where the facts read it."""
    target = root / "fs" / "models" / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, target)
    return f"/models/{path.name}"


# -- the model's own context and sampling --------------------------------------------------------

def test_a_small_llama_gets_its_own_context_and_no_other_models_sampling(tmp_path):
    """A tiny llama trained for 512 tokens: ctx 512 (not the guide's 131072), no --temp,
    --top-k...: llama-server's defaults, never Qwen's."""
    root = guide_machine(tmp_path / "g")
    model = with_model(root, write_tiny_llama(tmp_path / "tiny-llama.gguf", context=512))
    plan = plan_for(root, model=model)
    argv = plan.argv
    assert argv[argv.index("--ctx-size") + 1] == "512"
    assert not {"--temp", "--top-p", "--top-k", "--min-p"} & set(argv)
    assert plan.model["trained_ctx"] == 512 and plan.model["sampling"] == {}
    chosen = plan_for(root, model=model, ctx_size=8192)  # the user's own, kept
    assert chosen.argv[chosen.argv.index("--ctx-size") + 1] == "8192"


def test_sampling_from_the_gguf_metadata(tmp_path):
    """general.sampling.* (as Qwen3-Next's GGUF carries them, llama.cpp #17578: top_k 20,
    top_p 0.8, temp 0.7) become the model's flags, with where they came from; a NaN does not."""
    path = tmp_path / "sampled.gguf"
    write_tiny_llama(path, context=4096)
    reader = gguf.GGUFReader(str(path))
    writer = gguf.GGUFWriter(str(tmp_path / "with-sampling.gguf"), "llama")
    for field in reader.fields.values():
        if field.name.startswith(("GGUF.", "general.architecture")):
            continue
        writer.add_key_value(field.name, field.contents(), field.types[0],
                             field.types[-1] if len(field.types) > 1 else None)
    writer.add_key_value("general.sampling.top_k", 20, gguf.GGUFValueType.INT32)
    writer.add_key_value("general.sampling.top_p", 0.8, gguf.GGUFValueType.FLOAT32)
    writer.add_key_value("general.sampling.temp", 0.7, gguf.GGUFValueType.FLOAT32)
    # a damaged value is left to llama-server's default, never passed on as "nan"
    writer.add_key_value("general.sampling.min_p", float("nan"), gguf.GGUFValueType.FLOAT32)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_shape=list(reversed(tensor.shape)),
                          raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    root = guide_machine(tmp_path / "g")
    plan = plan_for(root, model=with_model(root, tmp_path / "with-sampling.gguf"))
    args = {arg["flag"]: arg for arg in plan.args}
    assert args["--top-k"]["values"] == ["20"] and args["--temp"]["values"] == ["0.7"]
    assert args["--top-p"]["values"] == ["0.8"] and "--min-p" not in args
    assert "general.sampling" in args["--temp"]["why"]


def test_the_profiles_own_model_gets_its_sampling(tmp_path):
    """A qwen3next file named Qwen3-Coder-Next is that profile's model: its sampling; the
    same architecture under another name is not."""
    root = guide_machine(tmp_path / "g")
    named = with_model(root, write_qwen3next(tmp_path / "Qwen3-Coder-Next-Tiny.gguf")[0])
    other = with_model(root, write_qwen3next(tmp_path / "other.gguf", name="Something")[0])
    assert "--min-p" in plan_for(root, model=named).argv
    assert "--temp" not in plan_for(root, model=other).argv


# -- the serving plan ---------------------------------------------------------------------------

def test_agent_chat_and_batch_on_a_hybrid_model(tmp_path):
    root = guide_machine(tmp_path / "g")
    agent = serving_plan(snapshot_facts(root, model=QWEN_PATH))
    assert (agent.parallel, agent.cache_reuse, agent.checkpoints) == (1, 0, 32)
    assert "recurrent layer's state cannot be shifted" in agent.why["cache_reuse"]
    assert agent.cache_ram_mib == 8192 and agent.kv_unified is False  # half what is left
    batch = serving_plan(snapshot_facts(root, model=QWEN_PATH, serve_for="batch"))
    assert (batch.parallel, batch.cache_ram_mib, batch.kv_unified) == (4, 0, True)
    assert batch.checkpoints is None  # the build's default


def test_cache_reuse_only_where_memory_can_shift(tmp_path):
    root = guide_machine(tmp_path / "g")
    llama = with_model(root, write_tiny_llama(tmp_path / "tiny-llama.gguf", context=4096))
    plan = serving_plan(snapshot_facts(root, model=llama))
    assert plan.cache_reuse == 256 and plan.checkpoints is None
    gpt_oss = serving_plan(snapshot_facts(root, model=GPT_OSS_PATH))
    assert gpt_oss.cache_reuse == 0 and "sliding-window" in gpt_oss.why["cache_reuse"]


def test_the_prompt_cache_and_checkpoints_count_in_memory_fit(tmp_path):
    """memory.fit adds what serving takes (the prompt cache, 32 checkpoints of the
    recurrent state) to the model, and says so."""
    root = guide_machine(tmp_path / "g")
    plan = placement(snapshot_facts(root, model=QWEN_PATH))
    state = 36 * (3 * (4096 + 2 * 16 * 128) + 128 * 4096) * 4
    assert plan.serving_ram_bytes == 8192 * 2**20 + 32 * state
    assert plan.ram_needed_bytes == plan.ram_bytes + 4 * 2**30 + plan.serving_ram_bytes
    fit = snapshot_findings(root, "memory.fit", model=QWEN_PATH)["memory.fit"]
    assert "for serving (prompt cache --cache-ram 8192 MiB + 32 context checkpoints" in \
        fit.observed


def test_your_own_serving_flags_are_what_is_counted(tmp_path):
    root = guide_machine(tmp_path / "g")
    facts = snapshot_facts(root, model=QWEN_PATH, server_args=["--cache-ram", "2048", "-np",
                                                                "2", "-ub", "1024"])
    plan = serving_plan(facts)
    assert (plan.cache_ram_mib, plan.parallel, plan.ubatch) == (2048, 2, 1024)
    assert placement(facts).compute_buffer_bytes == 256 * 2**20 + 151936 * 1024 * 4


# -- your own command ---------------------------------------------------------------------------

def test_the_guide_script_is_read_without_running_it():
    command = read_command(GUIDE_SCRIPT.read_text())
    assert command.server.endswith("/vendor/llama.cpp/build/bin/llama-server")
    assert command.cpu_list == "0-11" and command.prefix[:1] == ["exec"]
    assert command.env == {"LLAMA_SET_ROWS": "1", "GGML_CUDA_GRAPH_OPT": "1"}
    assert command.args[:2] == ["-m", "/mnt/lab//models/unsloth/Qwen3-Coder-Next-GGUF/"
                                      "Qwen3-Coder-Next-UD-Q4_K_XL.gguf"]
    assert "--fit" in command.args and command.args[-2:] == ["--repeat-penalty", "1"]


@pytest.mark.parametrize("text, server, args", [
    ("./build/bin/llama-server -m m.gguf \\\n  --port 8080 -c 4096  # comment\n",
     "./build/bin/llama-server", ["-m", "m.gguf", "--port", "8080", "-c", "4096"]),
    ('numactl --cpunodebind=0 llama-server -m "/x y/m.gguf" --port 1; echo done\n',
     "llama-server", ["-m", "/x y/m.gguf", "--port", "1"]),
    ('M=/m.gguf\nP="${PORT:-9000}"\nenv A=1 llama-server -m "$M" --port "$P" -ot "a;b"\n',
     "llama-server", ["-m", "/m.gguf", "--port", "9000", "-ot", "a;b"]),
])
def test_scripts_of_other_shapes(text, server, args):
    command = read_command(text)
    assert (command.server, command.args) == (server, args)


@pytest.mark.parametrize("build", BUILDS)
def test_the_guide_script_translated_for_each_build(build):
    """Every word is one the build accepts (its own parser's rules, the stand-in's); the
    legacy lock, -fa's value and --fit follow the build."""
    command = read_command(GUIDE_SCRIPT.read_text())
    result = import_args(command.args, Build.from_help(help_text(build)))
    assert refused(result.args, help_text(build)) is None
    assert Build.from_help(help_text(build)).unknown(result.args) == []
    if build == "2025-08":
        assert result.args[-2:] == ["--no-mmap", "--mlock"] and "-fa" in result.args
        assert "on" not in result.args[result.args.index("-fa"):][1:2]
        assert any(c.startswith("--fit on dropped: this build has no --fit") for c in
                   result.changes)
    else:
        assert result.args[-2:] == ["--load-mode", "mlock"]
        assert any(c.startswith("--no-mmap --mlock -> --load-mode mlock") for c in
                   result.changes)
        assert any(c.startswith("--fit-ctx 131072 dropped: it only acts with -c 0") for c in
                   result.changes)


@pytest.mark.parametrize("build", BUILDS)
def test_launch_from_the_guide_script(tmp_path, build):
    """`launch --from` the guide's script: a command the build accepts, keeping its host,
    port, alias, seed and threads, with the changes listed on stderr."""
    root = guide_machine(tmp_path / "g", build)
    models = json.loads((root / "model.json").read_text())  # the script's model, recorded
    models[SCRIPT_MODEL] = dict(models[QWEN_PATH], path=SCRIPT_MODEL)
    (root / "model.json").write_text(json.dumps(models))
    result = run_cli("launch", "--print", "--snapshot", str(root), "--from", str(GUIDE_SCRIPT),
                     env=NO_CONFIG)
    assert result.returncode == 0, result.stderr
    words = shlex.split(result.stdout)
    args = words[words.index(SERVER) + 1:]
    # the script's own GGML_CUDA_GRAPH_OPT=1 and taskset -c 0-11
    assert words[:5] == ["env", "GGML_CUDA_GRAPH_OPT=1", "taskset", "-c", "0-11"]
    assert refused(args, help_text(build)) is None
    for flag, value in (("--host", "0.0.0.0"), ("--port", "8001"),
                        ("--alias", "unsloth/Qwen3-Coder-Next"), ("--seed", "3407"),
                        ("--threads", "10"), ("--threads-batch", "12"), ("-ctk", "q8_0")):
        assert args[args.index(flag) + 1] == value and args.count(flag) == 1
    assert args[args.index("--model") + 1] == SCRIPT_MODEL
    assert "changes to your command:" in result.stderr
    assert "LLAMA_SET_ROWS dropped" in result.stderr
    assert "--threads 10: yours, kept. The CPU plan would use 6" in json.loads(run_cli(
        "launch", "--json", "--snapshot", str(root), "--from", str(GUIDE_SCRIPT),
        env=NO_CONFIG).stdout)["notes"][-2]
    if build == "2025-08":
        assert "--n-cpu-moe" in args and "--fit" not in args
    # server.exposure: the guide listens on every address, with no key: a warning
    assert ("warning: The planned llama-server listens on 0.0.0.0 without an API key "
            "(server.exposure:planned)") in result.stderr


def test_config_seed_host_and_alias(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('host = "0.0.0.0"\nalias = "coder"\nseed = 3407\n')
    result = run_cli("launch", "--print", "--snapshot", str(guide_machine(tmp_path / "g")),
                     "--model", QWEN_PATH, "--config", str(config), env=NO_CONFIG)
    assert result.returncode == 0, result.stderr
    assert "--host 0.0.0.0 --port 8080 --alias coder --jinja --seed 3407 " in result.stdout


# -- server.exposure ----------------------------------------------------------------------------

@pytest.mark.parametrize("args, status", [
    ([], "pass"),
    (["--host", "0.0.0.0"], "warn"),
    (["--host", "0.0.0.0", "--api-key-file", "/etc/llama/keys"], "pass"),
    (["--host", "127.0.0.1,::1"], "pass"),
    (["--host", "/run/llama.sock"], "pass"),
])
def test_exposure_of_the_planned_server(tmp_path, args, status):
    root = guide_machine(tmp_path / "g", processes=False)
    found = snapshot_findings(root, "server.exposure", server_args=args)
    worst = "warn" if "server.exposure:planned" in found else found["server.exposure"].status
    assert worst == status
    if status == "warn":
        finding = found["server.exposure:planned"]
        assert "without an API key" in finding.title and "--api-key-file" in finding.recommended


def test_exposure_of_a_running_server_as_root(tmp_path):
    root = guide_machine(tmp_path / "g")
    meta = json.loads((root / "snapshot.json").read_text())
    meta["processes"].append({"pid": 777, "name": "llama-server", "uid": 0, "cmdline": [
        "/usr/local/bin/llama-server", "-m", QWEN_PATH, "--host", "0.0.0.0"]})
    (root / "snapshot.json").write_text(json.dumps(meta))
    found = snapshot_findings(root, "server.exposure")
    assert found["server.exposure:pid-777"].title == (
        "llama-server pid 777 listens on 0.0.0.0 without an API key, as root")


# -- server.prompt_cache ------------------------------------------------------------------------

def test_logs_of_each_build_read_turn_by_turn():
    real = read_turns((LOGS / "0c1e570-smollm2-two-turns.log").read_text())
    # the prompt is the tokens at the end less those generated, plus the last one
    # sampled, which is never fed back: 2085 processed of a 2085-token prompt
    assert [(t.task, t.prompt, t.processed, t.cached) for t in real] == [
        (0, 2085, 2085, 0), (10, 2085, 3, 2082)]
    forced = read_turns((LOGS / "issue-21831-forced.log").read_text())
    assert forced[0].forced and forced[0].processed == 17 and forced[0].prompt == 17
    older = read_turns((LOGS / "pr-13194-multiline.log").read_text())
    assert [(t.task, t.processed, t.prompt) for t in older] == [
        (2209, 538, 23002), (2188, 9683, 23002)]
    assert read_turns((LOGS / "issue-20153-forced.log").read_text()) == []  # no timings yet


def test_a_turn_that_reuses_the_turn_before_is_not_re_processed():
    """ik_llama.cpp#521: each of four turns takes the whole prompt before it from the cache
    (536, then 1276, 3312, 5481) and computes only what is new, 61% of the second prompt.
    The new text is long; nothing was computed twice."""
    turns = read_turns((LOGS / "ik-issue-521-four-turns.log").read_text())
    assert [(t.prompt, t.processed, t.cached) for t in turns] == [
        (1276, 740, 536), (3312, 2036, 1276), (5481, 2169, 3312), (8232, 2751, 5481)]
    long_turns, reprocessed, lost = judge_turns(turns)
    assert len(long_turns) == 3 and reprocessed == [] and lost is None


def test_a_routers_children_are_read_apart():
    """A 2026 router prefixes each child's lines with its port (PR #23269's log, timings on
    their own lines); two children both number their tasks from 0."""
    router = (LOGS / "pr-23269-router-prefix.log").read_text()
    [turn] = read_turns(router)
    assert (turn.task, turn.processed, turn.generated, turn.prompt) == (388, 27, 192, 27)
    other = router.replace("[42027]", "[42031]").replace("task 388", "task 0").replace(
        "/    27 tokens", "/  5000 tokens")
    first = router.replace("task 388", "task 0")
    assert [(t.task, t.processed) for t in read_turns(first + other)] == [(0, 27), (0, 5000)]


def running_with_log(root: Path, log: str) -> Path:
    meta = json.loads((root / "snapshot.json").read_text())
    meta["processes"] = [{"pid": 4242, "name": "llama-server", "uid": 1000, "cmdline": [
        "/usr/local/bin/llama-server", "-m", QWEN_PATH, "--log-file", "/var/log/llama.log"]}]
    (root / "snapshot.json").write_text(json.dumps(meta))
    target = root / "fs" / "var" / "log" / "llama.log"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(log)
    return root


def turn(task: int, prompt: int, processed: int, ms: float) -> str:
    return (f"slot update_slots: id  0 | task {task} | new prompt, n_ctx_slot = 131072, "
            f"n_keep = 0, n_prompt_tokens = {prompt}\n"
            f"slot print_timing: id  0 | task {task} | prompt eval time = {ms:10.2f} ms / "
            f"{processed:5d} tokens (    1.00 ms per token,   100.00 tokens per second)\n"
            f"slot print_timing: id  0 | task {task} |        eval time = 1000.00 ms /   "
            "50 tokens (   20.00 ms per token,    50.00 tokens per second)\n")


def test_prompt_cache_warns_with_the_seconds_lost(tmp_path):
    """An agent's turns of 20k, 21k and 22k tokens each computed whole: the second and
    third re-did the 20k and 21k of the turn before, at 50 ms/token over 1000 tokens."""
    log = turn(1, 20000, 20000, 400000) + turn(2, 21000, 21000, 420000) + turn(
        3, 22000, 22000, 440000)
    root = running_with_log(guide_machine(tmp_path / "g"), log)
    finding = snapshot_findings(root, "server.prompt_cache")["server.prompt_cache:pid-4242"]
    assert finding.status == "warn"
    assert finding.title == ("llama-server pid 4242 re-processes prompts: 2 of 2 long turns, "
                             "~410 s lost per turn")
    assert "/var/log/llama.log: 3 turns" in finding.observed


def test_prompt_cache_passes_when_turns_reuse_it(tmp_path):
    log = turn(1, 20000, 20000, 400000) + turn(2, 21000, 1000, 20000)
    root = running_with_log(guide_machine(tmp_path / "g"), log)
    finding = snapshot_findings(root, "server.prompt_cache")["server.prompt_cache:pid-4242"]
    assert finding.status == "pass" and "20000 of 41000 prompt tokens from the cache" in \
        finding.observed


def test_a_log_format_not_read_is_said_not_judged(tmp_path):
    """ik_llama.cpp's 2024-style log (ik_llama.cpp#1294) has timings but no "task N |":
    no turn is read, and the check says so rather than "no long turns to judge yet"."""
    log = (LOGS / "ik-issue-1294-info-format.log").read_text()
    root = running_with_log(guide_machine(tmp_path / "g"), log)
    finding = snapshot_findings(root, "server.prompt_cache")["server.prompt_cache:pid-4242"]
    assert finding.status == "skip" and "format this version does not read" in finding.title


def test_prompt_cache_without_a_log_or_a_server(tmp_path):
    root = guide_machine(tmp_path / "g")
    found = snapshot_findings(root, "server.prompt_cache")
    assert found["server.prompt_cache:pid-4242"].status == "skip"  # no --log-file, no journal
    assert snapshot_findings(guide_machine(tmp_path / "n", processes=False),
                             "server.prompt_cache")["server.prompt_cache"].status == "skip"


# -- the plan as a systemd unit ------------------------------------------------------------------

def test_unit_written_and_reverted_under_root(tmp_path):
    """The guide machine's plan for alice, written into a --root tree as root: User=, the
    limits, the CPUs and the translated ExecStart=; a second write is a no-op; the revert
    leaves the tree as it was (the journal aside)."""
    from q3cn_doctor.host.live import RootHost
    from q3cn_doctor.launch.run_as import RunAs
    from q3cn_doctor.launch.unit import revert_unit, unit_path, write_unit

    snapshot = guide_machine(tmp_path / "g", memlock=(8 << 20, -1))
    options = Options(snapshot=str(snapshot), model=QWEN_PATH)
    alice = RunAs("alice", 1000, 1000, (1000, 27), "/home/alice", switch=True, why="alice")
    plan = build_plan(Facts(SnapshotHost(str(snapshot)), options), options, alice)
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    host = RootHost(str(root), euid=0)
    outcome = write_unit(host, plan, "llama-coder", "llama-server, planned by q3cn-doctor")
    assert outcome.result == "applied", outcome.detail
    unit = (root / unit_path("llama-coder").lstrip("/")).read_text()
    assert unit.startswith("# Written by q3cn-doctor (launch --unit llama-coder)")
    for line in ("User=alice", "Group=1000", "LimitMEMLOCK=infinity", "CPUAffinity=0-11",
                 f"ExecStart={SERVER} --model {QWEN_PATH} --port 8080 --jinja",
                 "WantedBy=multi-user.target"):
        assert f"\n{line}" in unit, line
    assert "--load-mode mlock" in unit and "--ctx-checkpoints 32" in unit
    assert write_unit(host, plan, "llama-coder", "llama-server, planned by q3cn-doctor"
                      ).result == "already"
    outcomes = revert_unit(host, "llama-coder")
    assert [o.result for o in outcomes] == ["reverted"]
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert [p for p in left if not p.startswith("var")] == ["etc"]


@pytest.mark.parametrize("name, euid, code, words", [
    ("llama-x", "1000", 1, "needs root"),
    ("llama-x", "0", 0, "nothing of ours to remove"),
    ("../../etc/passwd", "0", 2, "is not a systemd unit name"),
    ("sshd", "0", 2, "writes only llama-server services"),
])
def test_unit_revert_refusals(tmp_path, name, euid, code, words):
    root = tmp_path / "root"
    root.mkdir()
    result = run_cli("launch", "--root", str(root), "--unit", name, "--revert",
                     env=dict(NO_CONFIG, Q3CN_DOCTOR_EUID=euid))
    assert result.returncode == code and words in result.stderr

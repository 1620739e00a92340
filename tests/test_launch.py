"""`q3cn-doctor launch` really handing off: the installed console script runs the checks,
then execs a stand-in llama-server (tests/llama_server_standin.py) that answers --help and
--version with a real build's texts, refuses what that build refuses, and records its argv,
environment, CPU affinity and limits. So each test sees the command each build gets, that the
process became llama-server (same pid, its exit status), and what blocks a launch.

Nothing here changes this machine: limits and affinity are only ever set in the child that
becomes the stand-in, never in pytest's own process.
"""

from __future__ import annotations

import json
import os
import pwd
import resource
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import doctor_command, run_cli
from gguf_files import write_qwen3next
from launch_fixtures import drop_env, guide_machine, record_command, world_dir
from llama_server_standin import help_text, version_text, write_standin
from msgspec import to_builtins
from q3cn_doctor.facts import Facts
from q3cn_doctor.host.snapshot import SnapshotHost
from q3cn_doctor.launch.launcher import LaunchPlan, build_plan
from q3cn_doctor.options import Options

REPO_TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def world():
    """A folder the user llama-server runs as can reach (see launch_fixtures.world_dir)."""
    folder = world_dir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def model(world) -> Path:
    path = write_qwen3next(world / "qwen3next-tiny.gguf")[0]
    path.chmod(0o644)
    return path


@pytest.fixture
def env(tmp_path, world) -> dict:
    """A private cache and config, where the stand-in writes what it saw (a place it can
    write as the user it runs as), and SUDO_USER=nobody where the tests run as root."""
    record = world / "out" / f"record-{tmp_path.name}.json"
    record.unlink(missing_ok=True)
    return {"XDG_CACHE_HOME": str(tmp_path / "cache"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "STANDIN_RECORD": str(record),
            "Q3CN_TEST_MARKER": "inherited", **drop_env()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_cli("launch", *args, env=env, timeout=timeout)


def seen(env: dict) -> dict:
    return json.loads(Path(env["STANDIN_RECORD"]).read_text())


def after(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv and argv.index(flag) + 1 < len(argv) \
        else None


# -- each build gets its own spelling ----------------------------------------------------------

@pytest.mark.parametrize("build", ["2025-08", "2026-10"])
def test_exec_translates_for_the_build(tmp_path, model, env, build, world):
    standin = write_standin(world / "bin" / tmp_path.name, build)
    port = free_port()
    result = launch("--model", str(model), "--server", str(standin), "--port", str(port),
                    "--ctx-size", "8192", "--force", env=env)
    assert result.returncode == 0, result.stderr
    record = seen(env)
    argv = record["argv"]
    assert record["build"] == build and record["executable"] == str(standin)
    assert argv[:4] == ["--model", str(model), "--port", str(port)]
    assert after(argv, "--ctx-size") == "8192"
    assert argv[argv.index("--jinja"):argv.index("--jinja") + 9] == [
        "--jinja", "--temp", "1.0", "--top-p", "0.95", "--top-k", "40", "--min-p", "0.01"]
    assert after(argv, "--batch-size") == "2048" and after(argv, "--ubatch-size") == "512"
    hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]  # the tiny model is ~1 MB
    locks = os.geteuid() == 0 or hard == resource.RLIM_INFINITY or hard >= 16 << 20
    if build == "2025-08":
        assert "--load-mode" not in argv and "--fit" not in argv
        assert after(argv, "-fa") != "on"  # bare: this build's -fa takes no value
        if locks:
            assert argv.index("--no-mmap") + 1 == argv.index("--mlock")  # in that order
    else:
        assert "--mlock" not in argv and "--no-mmap" not in argv
        assert after(argv, "-fa") == "on"
        if locks:
            assert after(argv, "--load-mode") == "mlock"
    if "--fit" in argv:  # a machine with an NVIDIA GPU
        assert build == "2026-10" and after(argv, "--fit") == "on" and "--fit-target" in argv
    if "--n-cpu-moe" in argv:
        assert build == "2025-08"
    # the environment is inherited, and the command announced on stderr
    assert record["environ"]["Q3CN_TEST_MARKER"] == "inherited"
    assert "LLAMA_SET_ROWS" not in record["environ"] or "LLAMA_SET_ROWS" in os.environ
    assert f"q3cn-doctor launch: {standin} --model" in result.stderr


def test_the_process_becomes_llama_server(tmp_path, model, env, world):
    """Same pid (exec, not a child), and llama-server's exit status is the launch's."""
    standin = write_standin(world / "bin" / tmp_path.name, "2026-10")
    process = subprocess.Popen(
        doctor_command() + ["launch", "--model", str(model), "--server", str(standin),
                            "--port", str(free_port()), "--force"],
        env=dict(os.environ, STANDIN_EXIT="7", **env), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 7, stderr.decode()
    assert seen(env)["pid"] == process.pid


def test_extra_arguments_and_config(tmp_path, model, env, world):
    standin = write_standin(world / "bin" / tmp_path.name, "2026-10")
    config = Path(env["XDG_CONFIG_HOME"]) / "q3cn-doctor" / "config.toml"
    config.parent.mkdir(parents=True)
    port = free_port()
    config.write_text(f'model = "{model}"\nserver = "{standin}"\nport = {port}\n'
                      'alias = "coder"\nargs = ["-ctk", "q8_0"]\n')
    # --config: under sudo (SUDO_USER=nobody here) the file read is nobody's, not this one
    result = launch("--config", str(config), "--force", "--", "--ctx-size", "4096", "-fa",
                    "off", env=env)
    assert result.returncode == 0, result.stderr
    argv = seen(env)["argv"]
    assert after(argv, "--port") == str(port) and after(argv, "--alias") == "coder"
    assert argv.count("--ctx-size") == 1 and argv.count("-fa") == 1
    assert argv[-6:] == ["-ctk", "q8_0", "--ctx-size", "4096", "-fa", "off"]


# -- what blocks a launch ----------------------------------------------------------------------

def test_a_failing_check_blocks_the_launch(tmp_path, model, env, world):
    standin = write_standin(world / "bin" / tmp_path.name, "2026-10")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = launch("--model", str(model), "--server", str(standin), "--port", str(port),
                        env=env)
        assert result.returncode == 1
        assert "[fail] server.port: Port" in result.stderr and "--force" in result.stderr
        assert not Path(env["STANDIN_RECORD"]).exists()  # nothing was started
        forced = launch("--model", str(model), "--server", str(standin), "--port", str(port),
                        "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    assert after(seen(env)["argv"], "--port") == str(port)


def test_a_flag_the_build_refuses_blocks_the_launch(tmp_path, model, env, world):
    standin = write_standin(world / "bin" / tmp_path.name, "2026-10")
    result = launch("--model", str(model), "--server", str(standin), "--port",
                    str(free_port()), "--skip", "gpu", "--", "--no-mmap", env=env)
    assert result.returncode == 1
    assert "does not know --no-mmap" in result.stderr
    assert "[fail] server.flags:unknown" in result.stderr
    # forced, the build itself refuses it, and that status is the launch's
    forced = launch("--model", str(model), "--server", str(standin), "--port",
                    str(free_port()), "--force", "--", "--no-mmap", env=env)
    assert forced.returncode == 1 and "error: invalid argument: --no-mmap" in forced.stderr


def test_no_plan_without_a_server_or_a_model(tmp_path, model, env, world):
    missing = launch("--model", str(model), "--server", str(tmp_path / "nope"), "--force",
                     env=env)
    assert missing.returncode == 1 and "llama-server not found" in missing.stderr
    standin = write_standin(world / "bin" / tmp_path.name, "2026-10")
    no_model = launch("--server", str(standin), "--force", env=env)
    assert no_model.returncode == 1 and "needs a model file" in no_model.stderr
    broken = launch("--model", str(tmp_path / "gone.gguf"), "--server", str(standin),
                    "--force", env=env)
    assert broken.returncode == 1 and "cannot read the model" in broken.stderr
    assert not Path(env["STANDIN_RECORD"]).exists()


def test_a_server_that_cannot_be_executed(tmp_path, model, env, world):
    """--help answered once (and cached by path, size and mtime); the file then loses its
    execute bit (chmod keeps the mtime): the exec fails and the launch says so (126)."""
    standin = write_standin(world / "bin" / tmp_path.name, "2026-10")
    args = ["--model", str(model), "--server", str(standin), "--port", str(free_port()),
            "--force"]
    assert launch(*args, env=env).returncode == 0
    standin.chmod(0o644)
    if os.geteuid() == 0 and os.access(standin, os.X_OK):  # pragma: no cover - odd setups
        pytest.skip("root may execute a file without execute bits here")
    result = launch(*args, env=env)
    assert result.returncode == 126 and "cannot start" in result.stderr


def test_print_is_what_launch_runs(tmp_path, model, env, world):
    import shlex

    standin = write_standin(world / "bin" / tmp_path.name, "2025-08")
    args = ["--model", str(model), "--server", str(standin), "--port", str(free_port())]
    printed = launch("--print", *args, env=env)
    assert printed.returncode == 0, printed.stderr
    words = shlex.split(printed.stdout)
    assert launch(*args, "--force", env=env).returncode == 0
    server = words.index(str(standin))
    assert words[server + 1:] == seen(env)["argv"]
    planned = json.loads(launch("--json", *args, env=env).stdout)
    assert planned["command"] == printed.stdout.strip()


# -- affinity, limits and environment, applied in the child that becomes llama-server ----------

CHILD = """
import json, resource, sys
sys.path.insert(0, {tests!r})
from q3cn_doctor.launch.launcher import LaunchPlan, execute
plan = LaunchPlan(**json.loads(sys.argv[1]))
plan.rlimits = {{name: tuple(pair) for name, pair in plan.rlimits.items()}}
soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
resource.setrlimit(resource.RLIMIT_MEMLOCK, (min(4096, hard), hard))  # below what the plan asks
execute(plan)
"""


def run_plan(plan: LaunchPlan, env: dict) -> subprocess.CompletedProcess:
    """execute(plan) in a fresh child (pytest's own affinity and limits stay as they are)."""
    return subprocess.run([sys.executable, "-c", CHILD.format(tests=str(REPO_TESTS)),
                           json.dumps(to_builtins(plan))], env=dict(os.environ, **env),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to restrict")
def test_execute_sets_affinity_limits_and_environment(tmp_path, env, world):
    standin = write_standin(world / "bin" / tmp_path.name, "2026-10")
    first = sorted(os.sched_getaffinity(0))[0]
    hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    hard = -1 if hard == resource.RLIM_INFINITY else hard
    plan = LaunchPlan(server=str(standin), argv=[str(standin), "--port", "8080"],
                      env={"GGML_CUDA_GRAPH_OPT": "1"}, affinity=[first],
                      rlimits={"MEMLOCK": (hard, hard)}, args=[], notes=[], dropped=[],
                      unknown_extra=[])
    before = sorted(os.sched_getaffinity(0))
    result = run_plan(plan, env)
    assert result.returncode == 0, result.stderr
    record = seen(env)
    assert record["affinity"] == [first]
    assert record["rlimits"]["MEMLOCK"] == [hard, hard]  # raised from 4096 to the hard limit
    assert record["environ"]["GGML_CUDA_GRAPH_OPT"] == "1"
    assert record["environ"]["Q3CN_TEST_MARKER"] == "inherited"
    assert record["argv"] == ["--port", "8080"]
    assert sorted(os.sched_getaffinity(0)) == before  # pytest itself untouched


@pytest.mark.parametrize("build", ["2025-08", "2026-10"])
def test_guide_plan_executes_on_each_build(tmp_path, env, build, world):
    """The guide machine's plan (an RTX 4070: --fit or --n-cpu-moe), made from its snapshot
    with the stand-in installed there, executed for real: the build accepts every flag."""
    standin = write_standin(world / "bin" / tmp_path.name, build)
    root = guide_machine(tmp_path / "guide", build)
    placeholder = root / "fs" / str(standin).lstrip("/")
    placeholder.parent.mkdir(parents=True, exist_ok=True)
    placeholder.write_bytes(b"")
    record_command(root, [str(standin), "--help"], help_text(build))
    record_command(root, [str(standin), "--version"], "", version_text(build))
    options = Options(snapshot=str(root), server=str(standin),
                      model="/models/Qwen3-Coder-Next-MXFP4_MOE.gguf", port=8123)
    plan = build_plan(Facts(SnapshotHost(str(root)), options), options)
    result = run_plan(plan, env)
    assert result.returncode == 0, result.stderr
    argv = seen(env)["argv"]
    if build == "2025-08":
        assert argv[argv.index("--n-gpu-layers"):argv.index("--n-gpu-layers") + 4] == [
            "--n-gpu-layers", "999", "--n-cpu-moe", "48"]
        assert "--no-mmap" in argv and "--mlock" in argv and after(argv, "-fa") != "on"
        assert "--fit" not in argv
    else:
        assert after(argv, "--fit") == "on" and after(argv, "--fit-target") == "1024"
        assert after(argv, "--load-mode") == "mlock" and after(argv, "-fa") == "on"
        assert "--n-cpu-moe" not in argv
    assert after(argv, "--threads") == "6" and after(argv, "--cpu-strict") == "1"
    assert after(argv, "--port") == "8123"


# -- never root ----------------------------------------------------------------------------------

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def nobody() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody")


@ROOT_ONLY
def test_under_sudo_llama_server_runs_as_that_user(tmp_path, model, env, world):
    """SUDO_USER=nobody: the exec'd process has nobody's uid, gid and groups (root's are
    dropped), nobody's HOME/USER, no SUDO_* variables; the plan says so."""
    standin = write_standin(world / "bin" / tmp_path.name, "2026-10")
    result = launch("--model", str(model), "--server", str(standin), "--port",
                    str(free_port()), "--force", env=dict(env, SUDO_USER="nobody"))
    assert result.returncode == 0, result.stderr
    record, user = seen(env), nobody()
    assert (record["uid"], record["euid"]) == (user.pw_uid, user.pw_uid) != (0, 0)
    assert (record["gid"], record["egid"]) == (user.pw_gid, user.pw_gid)
    assert record["groups"] == sorted(set(os.getgrouplist("nobody", user.pw_gid)))
    assert 0 not in record["groups"]
    assert record["environ"]["USER"] == "nobody" and record["environ"]["HOME"] == user.pw_dir
    assert not [name for name in record["environ"] if name.startswith("SUDO_")]
    assert "(as nobody)" in result.stderr
    planned = json.loads(launch("--json", "--model", str(model), "--server", str(standin),
                                env=dict(env, SUDO_USER="nobody")).stdout)
    assert planned["user"]["name"] == "nobody" and planned["user"]["switch"] is True
    assert "--prio" not in planned["argv"]  # nobody has no CAP_SYS_NICE


@ROOT_ONLY
def test_root_is_refused_unless_allowed(tmp_path, model, env, world):
    standin = write_standin(world / "bin" / tmp_path.name, "2026-10")
    as_root = {k: v for k, v in env.items() if k != "SUDO_USER"}
    args = ["--model", str(model), "--server", str(standin), "--port", str(free_port()),
            "--force"]
    refused = launch(*args, env=as_root)
    assert refused.returncode == 1 and "refusing to run llama.cpp as root" in refused.stderr
    assert not Path(env["STANDIN_RECORD"]).exists()
    printed = launch("--print", *args, env=as_root)  # showing the plan is not running it
    assert printed.returncode == 0 and "warning: refusing" in printed.stderr
    allowed = launch("--allow-root", *args, env=as_root)
    assert allowed.returncode == 0, allowed.stderr
    assert seen(env)["uid"] == 0


@ROOT_ONLY
def test_a_user_who_cannot_read_the_model_is_told(tmp_path, env, world):
    """The model under pytest's 0700 tmp_path: nobody cannot reach it, and the launch says
    so before exec instead of llama-server failing to open it."""
    hidden = write_qwen3next(tmp_path / "hidden.gguf")[0]
    standin = write_standin(world / "bin" / tmp_path.name, "2026-10")
    result = launch("--model", str(hidden), "--server", str(standin), "--port",
                    str(free_port()), "--force", env=env)
    assert result.returncode == 1 and "nobody cannot read" in result.stderr


HARMLESS = """
import json, os, sys
json.dump({"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
           "home": os.environ.get("HOME")}, open(sys.argv[1], "w"))
"""


@ROOT_ONLY
def test_execute_drops_to_the_user_for_any_program(tmp_path, env, world):
    """The same exec path (execute) with a harmless program instead of llama-server."""
    from llama_server_standin import world_python
    from q3cn_doctor.host.live import LiveHost
    from q3cn_doctor.launch.run_as import launch_identity

    user = nobody()
    identity = launch_identity(LiveHost(), "nobody", allow_root=False)
    out = world / "out" / f"ids-{tmp_path.name}.json"
    plan = LaunchPlan(server=world_python(), argv=[world_python(), "-c", HARMLESS, str(out)],
                      env={}, affinity=None, rlimits={}, args=[], notes=[], dropped=[],
                      unknown_extra=[], user=identity.to_json())
    result = run_plan(plan, env)
    assert result.returncode == 0, result.stderr
    ids = json.loads(out.read_text())
    assert (ids["uid"], ids["gid"]) == (user.pw_uid, user.pw_gid)
    assert ids["groups"] == sorted(set(os.getgrouplist("nobody", user.pw_gid)))
    assert ids["home"] == user.pw_dir


# -- finding the model ------------------------------------------------------------------------

def test_without_a_model_the_profiles_file_is_found(tmp_path, env, world):
    """No --model: the profile's GGUF in ~/models is found and launched; with none there,
    the launch says where it looked."""
    standin = write_standin(world / "bin" / tmp_path.name, "2026-10")
    home = world / f"home-{tmp_path.name}"
    (home / "models").mkdir(parents=True)
    args = ["--server", str(standin), "--port", str(free_port()), "--force"]
    empty = launch(*args, env=dict(env, HOME=str(home)))
    assert empty.returncode == 1 and "launch needs a model file: no GGUF of" in empty.stderr
    assert f"{home}/models" in empty.stderr and f"{home}/.cache/llama.cpp" in empty.stderr
    model = write_qwen3next(home / "models" / "Qwen3-Coder-Next-MXFP4_MOE.gguf")[0]
    model.chmod(0o644)
    found = launch(*args, env=dict(env, HOME=str(home)))
    assert found.returncode == 0, found.stderr
    argv = seen(env)["argv"]
    assert after(argv, "--model") == str(model)
    assert after(argv, "--min-p") == "0.01"  # that model's own profile: Qwen's sampling

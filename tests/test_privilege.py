"""What root runs, where root writes its cache, what a command line shows, and which names
reach the files we write (issue 18: items 1, 2, 5 and the names of 16).

These run as root on this machine and CI (where they are about root at all): programs
and folders are made in a private /tmp folder and given to uid 1000 with chown, so
"another user's program" is a real file another user owns. Nothing outside that folder
and tmp_path is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from q3cn_doctor.host import live
from q3cn_doctor.host.base import PERMISSION_DENIED
from q3cn_doctor.host.live import LiveHost
from q3cn_doctor.host.redact import MARK, redact_cmdline
from q3cn_doctor.options import unit_name_problem, user_name_problem
from test_cli import cli, make_root
from test_fix_engine import add_process, full_root, tree_state

AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="about what root runs and writes")
OTHER = 1000  # another user: the files are chowned to it, it need not exist in passwd


@pytest.fixture
def shared(tmp_path):
    """A folder other users can reach (tmp_path's parents are root's 0700 folders)."""
    path = Path(tempfile.mkdtemp(prefix="q3cn-privilege-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def program(folder: Path, name: str = "tool", owner: int = 0, body: str = "id -u") -> Path:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    os.chown(path, owner, owner)
    return path


# -- 1: root never runs a program another user controls as root ----------------------------
@AS_ROOT
def test_root_runs_another_users_program_as_that_user(shared):
    os.chown(shared, OTHER, OTHER)
    result = LiveHost().run([str(program(shared, owner=OTHER))])
    assert result.ok and result.stdout.strip() == str(OTHER)


@AS_ROOT
def test_a_root_owned_program_in_another_users_folder_runs_as_that_user(shared):
    """The folder's owner can replace the program: it is theirs, whoever owns the file."""
    os.chown(shared, OTHER, OTHER)
    result = LiveHost().run([str(program(shared, owner=0))])
    assert result.ok and result.stdout.strip() == str(OTHER)


@AS_ROOT
def test_root_runs_its_own_program_as_root(shared):
    result = LiveHost().run([str(program(shared, owner=0))])
    assert result.ok and result.stdout.strip() == "0"


@AS_ROOT
def test_a_program_anyone_can_replace_is_not_run_at_all(shared):
    marker = shared / "ran"
    tool = program(shared, owner=0, body=f"touch {marker}")
    shared.chmod(0o777)  # not sticky: anyone may rename the program away and put theirs
    result = LiveHost().run([str(tool)])
    assert result.state == PERMISSION_DENIED
    assert "does not run it as root" in result.reason()
    assert not marker.exists()


@AS_ROOT
def test_a_program_found_on_path_is_judged_where_it_was_found(shared, monkeypatch):
    os.chown(shared, OTHER, OTHER)
    program(shared, "nvidia-smi", owner=OTHER)
    monkeypatch.setenv("PATH", f"{shared}:/usr/bin:/bin")
    result = LiveHost().run(["nvidia-smi"])
    assert result.ok and result.stdout.strip() == str(OTHER)


@AS_ROOT
def test_a_config_naming_another_users_server_never_runs_it_as_root(shared):
    """`check` as root with a config file that names a llama-server the user owns (their
    ~/.config, --user, sudo's apt hook): its --help and --version run as that user."""
    os.chown(shared, OTHER, OTHER)
    log = shared / "uids.log"
    server = program(shared, "llama-server", owner=OTHER,
                     body=f'id -u >> {log}\necho "usage: llama-server [options]  --help"')
    config = shared / "config.toml"
    config.write_text(f'server = "{server}"\n')
    os.chown(config, OTHER, OTHER)
    result = cli("check", "--config", str(config), "--only", "server.build", "--json",
                 env={"XDG_CACHE_HOME": str(shared / "cache")})
    assert result.returncode in (0, 1), result.stderr
    uids = log.read_text().split()
    assert uids and set(uids) == {str(OTHER)}, uids


# -- 2: the --help cache -----------------------------------------------------------------------
@pytest.fixture
def victim(tmp_path):
    """A root-only file a planted link points at."""
    path = tmp_path / "secret" / "shadow"
    path.parent.mkdir()
    path.write_text('{"root-only": "do not overwrite"}\n')
    path.chmod(0o600)
    return path


@AS_ROOT
def test_root_never_caches_in_a_home_another_user_controls(shared, victim, tmp_path,
                                                            monkeypatch):
    """`sudo -E` keeps the user's HOME: the user plants links for the next pids' temporary
    names and at the cache itself. Root caches in its own home instead."""
    home = shared / "home"
    planted = home / ".cache" / "q3cn-doctor"
    planted.mkdir(parents=True)
    for folder in (home, home / ".cache", planted):
        os.chown(folder, OTHER, OTHER)
    names = ["llama-server.json"] + [f"llama-server.json.{pid}.tmp"
                                     for pid in range(os.getpid() - 2, os.getpid() + 50)]
    for name in names:
        os.symlink(victim, planted / name)
    own_home = tmp_path / "roothome"
    own_home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(live, "_home_of", lambda uid: str(own_home))
    host = LiveHost()
    host.store_cache("llama-server.json", {"key": {"help": "text"}})
    assert host.load_cache("llama-server.json") == {"key": {"help": "text"}}
    assert victim.read_text() == '{"root-only": "do not overwrite"}\n'
    assert sorted(os.listdir(planted)) == sorted(names)  # the links, untouched
    cache = own_home / ".cache" / "q3cn-doctor"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    written = cache / "llama-server.json"
    assert written.is_file() and not written.is_symlink()
    assert stat.S_IMODE(written.stat().st_mode) == 0o600


def test_a_link_in_our_own_cache_is_neither_read_nor_written_through(tmp_path, victim,
                                                                      monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(live, "_home_of", lambda uid: str(tmp_path / "nohome"))
    folder = tmp_path / "cache" / "q3cn-doctor"
    folder.mkdir(parents=True, mode=0o700)
    os.symlink(victim, folder / "llama-server.json")
    host = LiveHost()
    assert host.load_cache("llama-server.json") == {}  # the victim holds a JSON object
    host.store_cache("llama-server.json", {"a": 1})
    assert victim.read_text() == '{"root-only": "do not overwrite"}\n'
    assert os.readlink(folder / "llama-server.json") == str(victim)  # refused, not followed
    assert [n for n in os.listdir(folder) if n != "llama-server.json"] == []  # no temporary


def test_a_cache_folder_others_may_write_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(live, "_home_of", lambda uid: str(tmp_path / "nohome"))
    folder = tmp_path / "cache" / "q3cn-doctor"
    folder.mkdir(parents=True)
    folder.chmod(0o777)
    (folder / "llama-server.json").write_text('{"planted": {"help": "--evil"}}')
    host = LiveHost()
    assert host.load_cache("llama-server.json") == {}
    host.store_cache("llama-server.json", {"a": 1})
    assert json.loads((folder / "llama-server.json").read_text()) == {
        "planted": {"help": "--evil"}}


# -- 5: secrets in command lines ------------------------------------------------------------------
def test_secrets_are_redacted_from_a_command_line():
    argv = ["/usr/bin/llama-server", "-m", "/models/q.gguf", "--api-key", "sk-abc",
            "--api-key=sk-def", "--hf-token", "hf_ghi", "-hft", "hf_jkl", "--hf-token=hf_mno",
            "--api-key-file", "/etc/llama/keys", "--ssl-key-file", "/etc/ssl/k.pem",
            "--password", "pw", "--auth-token=tk", "-hf", "unsloth/Qwen3-Coder",
            "--model-url", "https://user:secretpw@example.com/m.gguf"]
    shown = " ".join(redact_cmdline(argv))
    for secret in ("sk-abc", "sk-def", "hf_ghi", "hf_jkl", "hf_mno", "pw ", "=tk",
                   "secretpw"):
        assert secret not in shown + " ", secret
    # Paths to key files are not the keys, and the rest of the command stays readable.
    for kept in ("/etc/llama/keys", "/etc/ssl/k.pem", "unsloth/Qwen3-Coder", "-m /models/q.gguf",
                 "--api-key " + MARK, "--api-key=" + MARK, "-hft " + MARK):
        assert kept in shown, kept


def test_server_running_does_not_show_another_process_api_key(tmp_path):
    root = make_root(tmp_path / "root")
    add_process(root)
    (root / "proc/4242/cmdline").write_text(
        "/usr/local/bin/llama-server\0-m\0/models/q.gguf\0--api-key\0sk-TOPSECRET\0"
        "--hf-token=hf_TOPSECRET\0")
    for args in (("--json",), ("-v",)):  # the text shows what was observed with -v
        result = cli("check", "--root", str(root), "--only", "server.running", *args)
        assert "llama-server pid 4242" in result.stdout or "pid 4242" in result.stdout
        assert "TOPSECRET" not in result.stdout + result.stderr


def test_launch_announces_its_command_without_the_key():
    from q3cn_doctor.launch.launcher import LaunchPlan, shell_command, shown_command

    plan = LaunchPlan(server="/usr/bin/llama-server",
                      argv=["/usr/bin/llama-server", "--api-key", "sk-xyz", "--port", "8080"],
                      env={}, affinity=None, rlimits={}, args=[], notes=[], dropped=[],
                      unknown_extra=[])
    assert "sk-xyz" not in shown_command(plan) and MARK in shown_command(plan)
    assert "sk-xyz" in shell_command(plan)  # --print: the user's own command, to run


# -- 16: names the files we write are named after -------------------------------------------------
@pytest.mark.parametrize("name", ["alice", "john.doe", "_apt", "build$", "ops-1", "A1", "a" * 32])
def test_user_names_useradd_accepts(name):
    assert user_name_problem(name) is None


@pytest.mark.parametrize("name", ["", "alice\n", "al\nice", "-alice", "123", "a" * 33, "a b",
                                  "a:b", ".", "..", "a/b", "al\tice", "ålice", "a$b"])
def test_user_names_useradd_refuses(name):
    assert user_name_problem(name)


@pytest.mark.parametrize("name", ["llama-server", "llama-server.service", "llama@8080",
                                  "llama\\x2dserver", "a:b_c.d"])
def test_unit_names_systemd_accepts(name):
    assert unit_name_problem(name) is None


@pytest.mark.parametrize("name", ["", "llama\n", "-llama", "a b", "a/b", "@x", "x@y@z",
                                  "a" * 250, "llama.service\n", "ll\tama"])
def test_unit_names_systemd_refuses(name):
    assert unit_name_problem(name)


@pytest.mark.parametrize("option", ["--user", "--service"])
def test_a_name_with_a_line_break_is_a_usage_error_and_writes_nothing(tmp_path, option):
    root = full_root(tmp_path / "root")
    start = tree_state(root, skip=())
    args = ["--user", "alice\n"] if option == "--user" else ["--user", "alice",
                                                              "--service", "llama\n"]
    result = cli("fix", "--root", str(root), *args, "--only", "memlock.limit", "--apply",
                 "--yes", env={"Q3CN_DOCTOR_EUID": "0"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert option in result.stderr
    assert tree_state(root, skip=()) == start


def test_hook_install_refuses_a_service_name_with_a_line_break(tmp_path):
    root = make_root(tmp_path / "root")
    start = tree_state(root, skip=())
    result = cli("hook", "install", "--root", str(root), "--service", "llama\n",
                 env={"Q3CN_DOCTOR_EUID": "0"})
    assert result.returncode == 2
    assert tree_state(root, skip=()) == start

"""``q3cn-doctor hook`` and ``check --hook`` as a user meets them: the installed command in
a subprocess, installing into --root trees built in tmp_path (never this machine: the
tests may run as root). The files are checked by what reads them: an ALPM hook parser
written to libalpm's rules, ``apt-config`` and ``systemd-analyze verify`` where present.

``Q3CN_DOCTOR_EUID`` sets the identity a --root host reports, as in test_fix_cli.
The one test that touches the real machine is test_hook_real_apt.py (opt-in).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import doctor_command
from q3cn_doctor.hooks.state import HOOK_BUDGET_S
from test_cli import NO_XDG, cli, make_root
from test_fix_engine import STATE, tree_state

ROOT_ENV = {"Q3CN_DOCTOR_EUID": "0"}
USER_ENV = {"Q3CN_DOCTOR_EUID": "1000"}
PACMAN_HOOK = "etc/pacman.d/hooks/95-q3cn-doctor.hook"
APT_CONF = "etc/apt/apt.conf.d/99q3cn-doctor"
DROPIN = "etc/systemd/system/llama-server.service.d/95-q3cn-doctor-guard.conf"
MEMORY = STATE + "/hook-last.json"
RECORD = STATE + "/hooks.json"
HEADER = "# Written by q3cn-doctor (hook "


def hook(root: Path, *args: str, env: dict | None = None):
    return cli("hook", *args, "--root", str(root), env=dict(ROOT_ENV, **(env or {})))


def check_hook(root: Path, *args: str, env: dict | None = None, timeout: float = 60):
    return cli("check", "--hook", "--root", str(root), *args,
               env=dict(ROOT_ENV, **(env or {})), timeout=timeout)


def installed_script() -> str:
    """The absolute path a hook runs: the console script the tests run."""
    command = doctor_command()
    assert len(command) == 1, "the tests need the installed q3cn-doctor script"
    return os.path.abspath(command[0])


@pytest.fixture
def root(tmp_path):
    """A clean two-CPU box at the performance governor: no fail, no warn (its config
    file's --no-mmap holds the model where swappiness matters, at 10)."""
    tree = make_root(tmp_path / "root", governor="performance", no_mmap=True)
    (tree / "var/lib").mkdir(parents=True)
    return tree


POLICY = "sys/devices/system/cpu/cpufreq/policy0/"


def slow_down(root: Path) -> None:
    """What a kernel update resetting the CPU's power settings looks like."""
    (root / POLICY / "scaling_governor").write_text("powersave\n")
    (root / POLICY / "energy_performance_preference").write_text("balance_power\n")


# -- a parser for alpm-hooks(5), to libalpm's rules (lib/libalpm/ini.c, hook.c) ---------------
class AlpmHookError(ValueError):
    pass


def parse_alpm_hook(text: str) -> dict:
    """Sections, keys and values as libalpm reads them, validated as it validates them:
    only [Trigger] and [Action]; Operation Install|Upgrade|Remove; Type Package|Path;
    at least one Target per trigger; When Pre|PostTransaction; Exec required."""
    triggers: list[dict] = []
    action: dict = {}
    section = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            if section == "Trigger":
                triggers.append({"Operation": [], "Type": None, "Target": []})
            elif section != "Action":
                raise AlpmHookError(f"line {number}: invalid section {section}")
            continue
        key, sep, value = (part.strip() for part in line.partition("="))
        if section is None:
            raise AlpmHookError(f"line {number}: option {key} outside a section")
        if not sep and key not in ("AbortOnFail", "NeedsTargets"):
            raise AlpmHookError(f"line {number}: {key} needs a value")
        if section == "Trigger":
            trigger = triggers[-1]
            if key == "Operation":
                if value not in ("Install", "Upgrade", "Remove"):
                    raise AlpmHookError(f"line {number}: invalid value {value}")
                trigger["Operation"].append(value)
            elif key == "Type":
                if value not in ("Package", "Path", "File"):
                    raise AlpmHookError(f"line {number}: invalid value {value}")
                trigger["Type"] = value
            elif key == "Target":
                trigger["Target"].append(value)
            else:
                raise AlpmHookError(f"line {number}: invalid option {key}")
        else:
            if key == "When" and value not in ("PreTransaction", "PostTransaction"):
                raise AlpmHookError(f"line {number}: invalid value {value}")
            if key == "Exec":
                value = shlex.split(value)  # libalpm's wordsplit: whitespace, quotes
            elif key not in ("When", "Description", "Depends", "AbortOnFail", "NeedsTargets"):
                raise AlpmHookError(f"line {number}: invalid option {key}")
            action[key] = value
    for trigger in triggers:
        if not trigger["Operation"] or not trigger["Type"] or not trigger["Target"]:
            raise AlpmHookError(f"incomplete trigger {trigger}")
    if "Exec" not in action or "When" not in action:
        raise AlpmHookError("Missing Exec or When in [Action]")
    return {"triggers": triggers, "action": action}


def alpm_matches(targets: list[str], name: str) -> bool:
    """libalpm's _alpm_fnmatch_patterns: the last matching pattern decides; ! negates."""
    for pattern in reversed(targets):
        inverted = pattern.startswith("!")
        if fnmatch.fnmatchcase(name, pattern.lstrip("!")):
            return not inverted
    return False


def test_the_alpm_parser_rejects_what_libalpm_rejects():
    good = "[Trigger]\nOperation = Upgrade\nType = Package\nTarget = x\n[Action]\n" \
           "When = PostTransaction\nExec = /bin/true\n"
    assert parse_alpm_hook(good)["action"]["Exec"] == ["/bin/true"]
    for bad in (good.replace("Upgrade", "Update"), good.replace("Target = x\n", ""),
                good.replace("Exec = /bin/true\n", ""), good.replace("[Action]", "[Run]"),
                "Exec = /bin/true\n" + good, good.replace("When", "Whence")):
        with pytest.raises(AlpmHookError):
            parse_alpm_hook(bad)


# -- installing each kind ------------------------------------------------------------------
def test_pacman_hook_installs_as_a_valid_alpm_hook(root):
    result = hook(root, "install", "--pacman")
    assert result.returncode == 0, result.stdout + result.stderr
    path = root / PACMAN_HOOK
    text = path.read_text()
    assert text.startswith(HEADER + "pacman). `q3cn-doctor hook uninstall --pacman` removes it.")
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    parsed = parse_alpm_hook(text)
    [trigger] = parsed["triggers"]
    assert set(trigger["Operation"]) == {"Install", "Upgrade"}
    assert trigger["Type"] == "Package"
    for name in ("nvidia", "nvidia-dkms", "nvidia-open-dkms", "nvidia-utils",
                 "lib32-nvidia-utils", "cuda", "cuda-tools", "linux", "linux-lts", "linux-zen",
                 "linux-cachyos", "linux-cachyos-headers", "llama.cpp", "llama.cpp-cuda",
                 "llama.cpp-vulkan-git"):
        assert alpm_matches(trigger["Target"], name), name
    for name in ("firefox", "linuxqq", "python", "pacman", "mesa"):
        assert not alpm_matches(trigger["Target"], name), name
    action = parsed["action"]
    assert action["When"] == "PostTransaction"
    assert action["Exec"] == [installed_script(), "check", "--hook"]
    assert os.access(action["Exec"][0], os.X_OK)
    assert "the pacman hook installed: /etc/pacman.d/hooks/95-q3cn-doctor.hook" in result.stdout
    assert "runs it after installing or upgrading: nvidia*" in result.stdout
    record = json.loads((root / RECORD).read_text())["hooks"]["/" + PACMAN_HOOK]
    assert record["kind"] == "pacman" and len(record["sha256"]) == 64


def apt_dump(root: Path) -> subprocess.CompletedProcess:
    """``apt-config dump`` of the tree's /etc/apt only: APT_CONFIG is read before the
    configuration parts, so setting Dir::Etc there points apt at the tree."""
    config = root / "apt-test.conf"
    config.write_text(f'Dir::Etc "{root}/etc/apt/";\n')
    return subprocess.run(["apt-config", "dump"], capture_output=True, text=True,
                          env=dict(os.environ, APT_CONFIG=str(config)), timeout=30)


needs_apt_config = pytest.mark.skipif(shutil.which("apt-config") is None,
                                      reason="apt-config is not installed (not a Debian "
                                             "or Ubuntu machine)")


@needs_apt_config
def test_apt_snippet_is_valid_apt_configuration(root):
    result = hook(root, "install", "--apt")
    assert result.returncode == 0, result.stdout + result.stderr
    text = (root / APT_CONF).read_text()
    assert text.startswith(HEADER + "apt). `q3cn-doctor hook uninstall --apt` removes it.")
    assert "apt cannot run a hook for some packages only" in text
    assert "apt cannot run a hook for some packages only" in result.stdout
    dump = apt_dump(root)
    assert dump.returncode == 0, dump.stderr
    assert dump.stderr == ""
    lines = [line for line in dump.stdout.splitlines() if line.startswith("DPkg::Post-Invoke")]
    script = installed_script()
    assert lines == ['DPkg::Post-Invoke "";',
                     f'DPkg::Post-Invoke:: "if [ -x {script} ]; then {script} check --hook '
                     '</dev/null || true; fi";']
    # The checker is real: a snippet apt cannot read fails it.
    (root / APT_CONF).write_text(text.replace('"; };', "; };"))
    assert apt_dump(root).returncode != 0


def test_apt_command_never_fails_an_upgrade(tmp_path):
    """What apt runs through sh: silent and 0 when q3cn-doctor is gone or fails."""
    from q3cn_doctor.hooks.install import apt_command

    gone = subprocess.run(["sh", "-c", apt_command([str(tmp_path / "nothing")])],
                          capture_output=True, text=True)
    assert (gone.returncode, gone.stdout, gone.stderr) == (0, "", "")
    broken = tmp_path / "broken doctor"  # a space in the path is quoted
    broken.write_text("#!/bin/sh\necho \"ran: $*\"\nexit 3\n")
    broken.chmod(0o755)
    ran = subprocess.run(["sh", "-c", apt_command([str(broken)])], capture_output=True,
                         text=True)
    assert (ran.returncode, ran.stdout) == (0, "ran: check --hook\n")


def write_unit(root: Path, name: str = "llama-server.service") -> None:
    unit = root / "etc/systemd/system" / name
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text("[Unit]\nDescription=llama-server\n[Service]\nExecStart=/bin/sleep 1\n")


def systemd_verify(root: Path) -> subprocess.CompletedProcess:
    """``systemd-analyze verify`` of the tree's unit with its drop-ins: SYSTEMD_UNIT_PATH
    puts the tree's folder first (the trailing colon keeps the system's, for the targets
    every service depends on)."""
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "llama-server.service"],
        capture_output=True, text=True, timeout=60,
        env=dict(os.environ, SYSTEMD_UNIT_PATH=f"{root}/etc/systemd/system:"))


def _systemd_analyze_usable(tmp_path_factory) -> str | None:
    if shutil.which("systemd-analyze") is None:
        return "systemd-analyze is not installed"
    probe = tmp_path_factory.mktemp("probe")
    write_unit(probe)
    done = systemd_verify(probe)
    if done.returncode != 0:
        return f"systemd-analyze verify does not work here: {done.stderr.strip()[-200:]}"
    return None


@pytest.fixture
def systemd_analyze(tmp_path_factory):
    reason = _systemd_analyze_usable(tmp_path_factory)
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("warn_only", [False, True])
def test_service_dropin_is_valid_for_systemd(root, systemd_analyze, warn_only):
    write_unit(root)
    result = hook(root, "install", "--service", "llama-server",
                  *(["--warn-only"] if warn_only else []))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No llama-server.service is installed yet" not in result.stdout
    path = root / DROPIN
    text = path.read_text()
    assert text.startswith(HEADER + "service). `q3cn-doctor hook uninstall --service "
                                    "llama-server` removes it.")
    done = systemd_verify(root)
    assert done.returncode == 0, done.stderr
    assert str(path) not in done.stderr, done.stderr  # no unknown key, no bad value
    [line] = [line for line in text.splitlines() if line.startswith("ExecStartPre=")]
    command = line.split("=", 1)[1]
    assert command.startswith("-") == warn_only
    argv = shlex.split(command.lstrip("-"))
    assert argv[:3] == [installed_script(), "check", "--only"]
    assert set(argv[3].split(",")) == {"gpu.present", "gpu.cuda", "memory.fit",
                                       "memory.hugepages", "model.file", "server.build"}
    # The verifier reads the drop-in: a command it cannot run is reported there.
    path.write_text(text.replace(installed_script(), "relative/q3cn-doctor"))
    assert f"{path}:" in systemd_verify(root).stderr


def test_service_guard_blocks_on_a_failure_not_on_a_warning(root, tmp_path):
    """The drop-in's command, pointed at trees: a failed blocking check exits 1 (systemd
    does not start the service), a warning exits 0."""
    assert hook(root, "install", "--service", "llama-server").returncode == 0
    [line] = [line for line in (root / DROPIN).read_text().splitlines()
              if line.startswith("ExecStartPre=")]
    argv = shlex.split(line.split("=", 1)[1])
    env = dict(os.environ, XDG_CONFIG_HOME=NO_XDG, NO_COLOR="1")
    broken = make_root(tmp_path / "broken", mem_gib=64, hugetlb_gib=60)
    blocked = subprocess.run(argv + ["--root", str(broken)], capture_output=True, text=True,
                             env=env)
    assert blocked.returncode == 1, blocked.stdout + blocked.stderr
    assert "[fail] memory.hugepages" in blocked.stdout
    warned = make_root(tmp_path / "warned", disk_swap=True, swappiness=60, no_mmap=True)
    started = subprocess.run(argv + ["--root", str(warned)], capture_output=True, text=True,
                             env=env)
    assert started.returncode == 0, started.stdout + started.stderr


def test_service_without_a_unit_says_so(root):
    result = hook(root, "install", "--service", "llama-server.service")
    assert result.returncode == 0
    assert "No llama-server.service is installed yet" in result.stdout
    assert "Run `systemctl daemon-reload`" in result.stdout
    assert (root / DROPIN).is_file()


# -- choosing the kind ----------------------------------------------------------------------
def _binaries(root: Path, *names: str) -> None:
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / "usr/bin" / name).write_text("")


def test_install_without_a_flag_detects_the_package_manager(tmp_path):
    arch = make_root(tmp_path / "arch")
    _binaries(arch, "pacman")
    assert hook(arch, "install").returncode == 0
    assert (arch / PACMAN_HOOK).is_file() and not (arch / APT_CONF).exists()

    debian = make_root(tmp_path / "debian")
    _binaries(debian, "apt-get")
    assert hook(debian, "install").returncode == 0
    assert (debian / APT_CONF).is_file() and not (debian / PACMAN_HOOK).exists()

    both = make_root(tmp_path / "both")
    _binaries(both, "apt-get", "pacman")
    (both / "etc/os-release").write_text('NAME="CachyOS Linux"\nID=cachyos\nID_LIKE=arch\n')
    assert hook(both, "install").returncode == 0
    assert (both / PACMAN_HOOK).is_file()

    bare = make_root(tmp_path / "bare")
    result = hook(bare, "install")
    assert result.returncode == 2
    assert "give --pacman, --apt or --service NAME" in result.stderr
    assert not (bare / "etc/pacman.d").exists() and not (bare / "etc/apt").exists()


def test_usage_errors(root):
    assert hook(root, "install", "--pacman", "--apt").returncode == 2
    assert "--warn-only is for --service" in hook(root, "install", "--apt",
                                                  "--warn-only").stderr
    assert "is not a systemd unit name" in hook(root, "install", "--service", "a b").stderr
    assert not (root / "etc/pacman.d").exists() and not (root / "etc/apt").exists()


def test_not_root_changes_nothing(root):
    start = tree_state(root, skip=())
    for args in (("install", "--pacman"), ("uninstall", "--pacman")):
        result = hook(root, *args, env=USER_ENV)
        assert result.returncode == 1
        assert "only root may (run it with sudo). Nothing was changed." in result.stderr
    assert tree_state(root, skip=()) == start


# -- uninstall removes only what install wrote ------------------------------------------------
KINDS = [("--pacman",), ("--apt",), ("--service", "llama-server")]


@pytest.mark.parametrize("flags", KINDS, ids=lambda f: f[0].lstrip("-"))
def test_install_twice_then_uninstall_restores_the_tree(root, flags):
    start = tree_state(root)
    first = hook(root, "install", *flags)
    assert first.returncode == 0, first.stderr
    written = tree_state(root)
    second = hook(root, "install", *flags)
    assert second.returncode == 0 and "is already installed" in second.stdout
    assert tree_state(root) == written
    removed = hook(root, "uninstall", *flags)
    assert removed.returncode == 0, removed.stderr
    assert "removed:" in removed.stdout
    assert tree_state(root) == start  # the file and the folders it needed are gone
    assert json.loads((root / RECORD).read_text())["hooks"] == {}
    again = hook(root, "uninstall", *flags)
    assert again.returncode == 0 and "is not installed" in again.stdout


def test_warn_only_replaces_the_blocking_guard(root):
    assert hook(root, "install", "--service", "llama-server").returncode == 0
    result = hook(root, "install", "--service", "llama-server", "--warn-only")
    assert result.returncode == 0 and "guard updated" in result.stdout
    assert "ExecStartPre=-/" in (root / DROPIN).read_text()
    assert "installed (warn-only)" in hook(root, "status").stdout
    assert hook(root, "uninstall", "--service", "llama-server").returncode == 0
    assert not (root / DROPIN).exists()


@pytest.mark.parametrize("flags", KINDS, ids=lambda f: f[0].lstrip("-"))
def test_a_file_without_the_header_is_never_touched(root, flags):
    path = root / {"--pacman": PACMAN_HOOK, "--apt": APT_CONF, "--service": DROPIN}[flags[0]]
    path.parent.mkdir(parents=True)
    path.write_text("# the user's own\n")
    refused = hook(root, "install", *flags)
    assert refused.returncode == 1
    assert "was not written by q3cn-doctor (no header)" in refused.stderr
    left = hook(root, "uninstall", *flags)
    assert left.returncode == 1 and "left alone" in left.stderr
    assert path.read_text() == "# the user's own\n"
    assert "not q3cn-doctor's (no header)" in hook(root, "status").stdout


@pytest.mark.parametrize("flags", KINDS, ids=lambda f: f[0].lstrip("-"))
def test_a_hook_changed_since_install_is_left_alone(root, flags):
    assert hook(root, "install", *flags).returncode == 0
    path = root / {"--pacman": PACMAN_HOOK, "--apt": APT_CONF, "--service": DROPIN}[flags[0]]
    edited = path.read_text() + "# my note\n"
    path.write_text(edited)
    assert "changed since install" in hook(root, "status").stdout
    result = hook(root, "uninstall", *flags)
    assert result.returncode == 1
    assert "was changed since q3cn-doctor installed it: left alone" in result.stderr
    assert path.read_text() == edited
    again = hook(root, "install", *flags)
    assert again.returncode == 1 and path.read_text() == edited


def test_a_link_at_the_hook_path_is_refused(root, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("keep\n")
    (root / PACMAN_HOOK).parent.mkdir(parents=True)
    (root / PACMAN_HOOK).symlink_to(elsewhere)
    result = hook(root, "install", "--pacman")
    assert result.returncode == 1 and "symbolic link" in result.stderr
    assert elsewhere.read_text() == "keep\n"
    assert (root / PACMAN_HOOK).is_symlink()


@pytest.mark.parametrize("record", ["[]", "7", '"hooks"', '{"format": 1, "hooks": []}'])
def test_a_foreign_record_is_ignored_not_a_traceback(root, record):
    """hooks.json that parses but is not the record (`cli` fails on any traceback)."""
    (root / RECORD).parent.mkdir(parents=True)
    (root / RECORD).write_text(record)
    assert hook(root, "status").returncode == 0
    assert hook(root, "install", "--pacman").returncode == 0
    assert json.loads((root / RECORD).read_text())["hooks"]["/" + PACMAN_HOOK]
    assert hook(root, "uninstall", "--pacman").returncode == 0
    assert not (root / PACMAN_HOOK).exists()


def test_uninstall_without_a_record_removes_only_an_exact_copy(root):
    """The state folder lost: a file this version would write is still recognised."""
    assert hook(root, "install", "--apt").returncode == 0
    (root / RECORD).unlink()
    assert hook(root, "uninstall", "--apt").returncode == 0
    assert not (root / APT_CONF).exists()


def test_uninstall_without_a_flag_removes_both_package_manager_hooks(root):
    for flags in (("--pacman",), ("--apt",), ("--service", "llama-server")):
        assert hook(root, "install", *flags).returncode == 0
    result = hook(root, "uninstall")
    assert result.returncode == 0, result.stderr
    assert not (root / PACMAN_HOOK).exists() and not (root / APT_CONF).exists()
    assert (root / DROPIN).exists()  # a service needs its name


def test_status_lists_the_hooks_and_the_last_check(root):
    status = hook(root, "status")
    assert status.returncode == 0
    assert "pacman hook: not installed (/etc/pacman.d/hooks/95-q3cn-doctor.hook)" in (
        status.stdout)
    assert "Last post-update check: none yet" in status.stdout
    assert hook(root, "install", "--pacman").returncode == 0
    assert hook(root, "install", "--service", "llama-server").returncode == 0
    document = json.loads(hook(root, "status", "--json").stdout)
    results = {(row["kind"], row["unit"]): row["result"] for row in document["hooks"]}
    assert results == {("pacman", None): "installed", ("apt", None): "not installed",
                       ("service", "llama-server.service"): "installed"}
    assert document["last_check"]["counts"]["fail"] == 0
    assert document["last_check"]["path"] == "/" + MEMORY


def test_install_remembers_a_baseline_once(root):
    result = hook(root, "install", "--pacman")
    assert "The state now is remembered in /var/lib/q3cn-doctor/hook-last.json" in result.stdout
    memory = json.loads((root / MEMORY).read_text())
    assert memory["findings"]["cpu.governor"]["status"] == "pass"
    slow_down(root)
    assert check_hook(root).stdout.startswith("q3cn-doctor: cpu.governor: pass -> warn")
    kept = (root / MEMORY).read_bytes()
    again = hook(root, "install", "--apt")  # a second hook keeps the memory it found
    assert "remembered" not in again.stdout
    assert (root / MEMORY).read_bytes() == kept


# -- check --hook ---------------------------------------------------------------------------
def test_check_hook_prints_only_what_got_worse(root):
    first = check_hook(root)
    assert (first.returncode, first.stdout, first.stderr) == (0, "", "")
    assert json.loads((root / MEMORY).read_text())["findings"]["memory.swappiness"][
        "status"] == "pass"
    assert check_hook(root).stdout == ""  # nothing changed: nothing said
    # A kernel update that resets swappiness and the governor: two findings get worse.
    (root / "proc/sys/vm/swappiness").write_text("60\n")
    (root / "proc/swaps").write_text("Filename\tType\tSize\tUsed\tPriority\n"
                                     "/dev/nvme0n1p3 partition\t16777212\t0\t-2\n")
    slow_down(root)
    second = check_hook(root)
    assert second.returncode == 0
    lines = second.stdout.splitlines()
    assert len(lines) == 3, second.stdout
    assert lines[0].startswith("q3cn-doctor: cpu.governor: pass -> warn: ")
    assert lines[1].startswith("q3cn-doctor: memory.swappiness: pass -> warn: Swappiness 60")
    assert lines[2] == (f"q3cn-doctor: see more: q3cn-doctor check --root {root} "
                        "--only cpu.governor,memory.swappiness")
    assert check_hook(root).stdout == ""  # remembered: said once
    # Better is not news either.
    (root / POLICY / "scaling_governor").write_text("performance\n")
    (root / POLICY / "energy_performance_preference").write_text("performance\n")
    assert check_hook(root).stdout == ""


def test_check_hook_exits_0_when_checks_fail(tmp_path):
    broken = make_root(tmp_path / "broken", mem_gib=64, hugetlb_gib=60)
    assert cli("check", "--root", str(broken)).returncode == 1
    result = check_hook(broken)
    assert result.returncode == 0
    # A first run has nothing to compare with: only failures are news.
    failing = [line for line in result.stdout.splitlines() if ": fail (new): " in line]
    assert [line.split(":")[1].strip() for line in failing] == ["memory.hugepages"]
    assert result.stdout.splitlines()[-1].startswith("q3cn-doctor: see more: ")
    assert check_hook(broken).stdout == ""


def test_check_hook_exits_0_when_it_cannot_run(root, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("only = [\n")
    result = check_hook(root, "--config", str(bad))
    assert result.returncode == 0
    assert result.stdout.startswith("q3cn-doctor: the post-update check could not run (")
    assert result.stdout.rstrip().endswith("run `q3cn-doctor check`")
    assert len(result.stdout.splitlines()) == 1
    unknown = check_hook(root, "--only", "memory.nothing")
    assert unknown.returncode == 0 and "unknown check or area" in unknown.stdout


def test_check_hook_exits_0_when_its_memory_cannot_be_written(root):
    (root / STATE).write_text("not a folder\n")
    result = check_hook(root)
    assert result.returncode == 0
    assert "cannot remember this result" in result.stdout
    assert "is a file, not a folder" in result.stdout


def test_check_hook_flags_that_make_no_sense_are_usage_errors(root):
    result = check_hook(root, "--json")
    assert result.returncode == 2 and "--hook cannot be combined with --json" in result.stderr


def test_check_hook_remembers_in_the_users_state_folder_when_not_root(root):
    result = check_hook(root, env=dict(USER_ENV, XDG_STATE_HOME="/home/alice/.state"))
    assert result.returncode == 0 and result.stdout == ""
    assert (root / "home/alice/.state/q3cn-doctor/hook-last.json").is_file()
    assert not (root / STATE).exists()


@pytest.mark.slow  # waits out the hook's real time limit
def test_check_hook_gives_up_on_a_check_that_hangs(root, tmp_path):
    """The memory facts block for ever, so the process only ends (before the 30 s that
    would fail the test) if the hook abandons the stuck check at its own time limit. No
    file can make a read block any more (a FIFO is refused: issue 18, item 7), so the
    hang is put into the process at startup: a sitecustomize module on PYTHONPATH
    replaces the memory section's gatherer with a wait that never ends."""
    (tmp_path / "sitecustomize.py").write_text(
        "import threading\n"
        "import q3cn_doctor.facts as facts\n"
        "facts.SECTIONS['memory'] = lambda *args: threading.Event().wait()\n")
    result = check_hook(root, timeout=30, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0
    [line] = [line for line in result.stdout.splitlines() if "did not finish" in line]
    assert f"within {HOOK_BUDGET_S:g} s" in line
    assert "memory.fit" in line and line.endswith("run `q3cn-doctor check`")
    memory = json.loads((root / MEMORY).read_text())["findings"]
    assert memory["cpu.governor"]["status"] == "pass"  # what finished is remembered
    assert "memory.fit" not in memory


def test_check_hook_finishes_its_checks_on_a_normal_tree(root):
    """Nothing hangs on a healthy tree: every check finishes within the hook's time limit."""
    result = check_hook(root)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    remembered = json.loads((root / MEMORY).read_text())["findings"]
    assert {"cpu.governor", "memory.fit", "memory.swappiness"} <= set(remembered)


# -- in-process: a crashing check, a crashing hook, the time guard ----------------------------
def _invoke(args: list[str], monkeypatch):
    from click.testing import CliRunner
    from q3cn_doctor.app.cli import main

    monkeypatch.setenv("XDG_CONFIG_HOME", NO_XDG)
    monkeypatch.setenv("Q3CN_DOCTOR_EUID", "0")
    return CliRunner().invoke(main, args)


def test_check_hook_exits_0_when_a_check_crashes(root, monkeypatch):
    from q3cn_doctor.checking import runner
    from q3cn_doctor.checking.registry import CheckSpec

    assert _invoke(["check", "--hook", "--root", str(root)], monkeypatch).output == ""
    real = runner.available_checks

    def crashing(plugins):
        specs, failures = real(plugins)

        def boom(ctx):
            raise RuntimeError("driver exploded")

        return [CheckSpec(s.id, s.description, boom) if s.id == "cpu.governor" else s
                for s in specs], failures

    monkeypatch.setattr(runner, "available_checks", crashing)
    result = _invoke(["check", "--hook", "--root", str(root)], monkeypatch)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        "q3cn-doctor: cpu.governor: pass -> error: The cpu.governor check could not finish")


def test_check_hook_exits_0_when_the_hook_itself_crashes(root, monkeypatch):
    from q3cn_doctor.hooks import state as hookstate

    def broken(previous, findings):
        raise KeyError("oops")

    monkeypatch.setattr(hookstate, "got_worse", broken)
    result = _invoke(["check", "--hook", "--root", str(root)], monkeypatch)
    assert result.exit_code == 0
    assert result.output == ("q3cn-doctor: the post-update check could not run "
                             "(KeyError: 'oops'); run `q3cn-doctor check`\n")


def test_the_time_guard_reports_what_did_not_finish(root, monkeypatch):
    import threading

    from q3cn_doctor.app.session import make_host
    from q3cn_doctor.checking import runner
    from q3cn_doctor.checking.registry import CheckSpec
    from q3cn_doctor.hooks.state import hook_check
    from q3cn_doctor.options import Options

    entered, release, left = threading.Event(), threading.Event(), threading.Event()
    real = runner.available_checks

    def slow(plugins):
        specs, failures = real(plugins)

        def stuck(ctx):
            entered.set()
            release.wait(30)
            left.set()

        return [CheckSpec(s.id, s.description, stuck) if s.id == "memory.swap" else s
                for s in specs], failures

    monkeypatch.setattr(runner, "available_checks", slow)
    monkeypatch.setenv("Q3CN_DOCTOR_EUID", "0")
    try:
        result = hook_check(lambda: Options(root=str(root)), make_host, plugins=False, budget=0.5)
        # It returned while the stuck check was still inside: abandoned, not waited for.
        assert entered.is_set() and not left.is_set()
    finally:
        release.set()
    assert result.timed_out
    [line] = result.lines
    assert line.startswith("q3cn-doctor: ") and "did not finish within 0.5 s (memory.swap, " in line
    remembered = json.loads((root / MEMORY).read_text())["findings"]
    assert "memory.swappiness" not in remembered and "cpu.governor" in remembered


def test_check_hook_exits_0_with_nowhere_to_write(root):
    """A package manager that closed the pipe, or a full log disk."""
    assert check_hook(root).returncode == 0
    slow_down(root)
    with open("/dev/full", "w") as full:
        done = subprocess.run(doctor_command() + ["check", "--hook", "--root", str(root)],
                              stdout=full, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, XDG_CONFIG_HOME=NO_XDG, **ROOT_ENV))
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads((root / MEMORY).read_text())["findings"]["cpu.governor"][
        "status"] == "warn"  # remembered all the same

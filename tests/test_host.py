"""The host layer: path resolution under a root, the read cache, fault injection,
tracing, globbing, commands on the live machine, and writes into a --root tree.

Every write here goes into a RootHost on tmp_path; the live machine is only read
(and runs harmless commands such as ``true``).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time

import pytest
from q3cn_doctor.host.base import (
    ABSENT,
    NOT_INSTALLED,
    PERMISSION_DENIED,
    RAN,
    TIMED_OUT,
    command_slug,
    format_cpu_list,
    parse_cpu_list,
    resolve_under,
)
from q3cn_doctor.host.live import LiveHost, RootHost


def write(path, text: str | bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "wb" if isinstance(text, bytes) else "w"
    with open(path, mode) as handle:
        handle.write(text)


# -- resolve_under -----------------------------------------------------------------


@pytest.fixture
def linked_root(tmp_path):
    """A tree with a real folder, a relative and an absolute link to it, and a loop."""
    root = tmp_path / "root"
    write(root / "a" / "real" / "file", "inside")
    os.symlink("real", root / "a" / "rel")  # relative, sysfs-style
    os.symlink("/a/real", root / "abs")  # absolute: must mean <root>/a/real
    os.symlink("../../../../../../..", root / "a" / "up")  # tries to climb out
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    return str(root)


def test_resolve_relative_link_stays_inside(linked_root):
    assert resolve_under(linked_root, "/a/rel/file") == os.path.join(linked_root, "a/real/file")


def test_resolve_absolute_link_is_rerooted(linked_root):
    resolved = resolve_under(linked_root, "/abs/file")
    assert resolved == os.path.join(linked_root, "a/real/file")
    with open(resolved) as handle:
        assert handle.read() == "inside"


def test_resolve_follow_last_false_keeps_the_link(linked_root):
    assert resolve_under(linked_root, "/a/rel", follow_last=False) == os.path.join(
        linked_root, "a/rel")
    assert resolve_under(linked_root, "/a/rel") == os.path.join(linked_root, "a/real")


@pytest.mark.parametrize("path", ["/../../etc/passwd", "/a/../../../etc/passwd",
                                  "/a/real/../../../../etc/passwd", "/a/up/etc/passwd"])
def test_resolve_dotdot_cannot_escape(linked_root, path):
    assert resolve_under(linked_root, path) == os.path.join(linked_root, "etc/passwd")


def test_resolve_link_loop_is_eloop(linked_root):
    with pytest.raises(OSError) as caught:
        resolve_under(linked_root, "/loop1/file")
    assert caught.value.errno == errno.ELOOP


def test_root_host_reads_through_absolute_link_inside_prefix(linked_root):
    host = RootHost(linked_root)
    assert host.read_text("/abs/file") == "inside"
    assert host.readlink("/abs") == "/a/real"
    assert host.exists("/abs") and host.is_dir("/abs")
    assert host.cat("/loop1/file", fallback="loop") == "loop"


# -- the read cache ----------------------------------------------------------------


def test_read_is_cached_until_forget(tmp_path):
    write(tmp_path / "proc" / "meminfo", "first")
    host = RootHost(str(tmp_path))
    assert host.read_text("/proc/meminfo") == "first"
    write(tmp_path / "proc" / "meminfo", "second")
    assert host.read_text("/proc/meminfo") == "first"  # read once per run
    host.forget()
    assert host.read_text("/proc/meminfo") == "second"


def test_read_error_is_cached_too(tmp_path):
    host = RootHost(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        host.read_bytes("/late")
    write(tmp_path / "late", "now here")
    with pytest.raises(FileNotFoundError):
        host.read_bytes("/late")
    host.forget()
    assert host.read_text("/late") == "now here"


def test_write_and_remove_invalidate_the_cache(tmp_path):
    write(tmp_path / "etc" / "conf", "old")
    host = RootHost(str(tmp_path))
    assert host.read_text("/etc/conf") == "old"
    host.write_bytes("/etc/conf", b"new")
    assert host.read_text("/etc/conf") == "new"
    host.remove("/etc/conf")
    assert not (tmp_path / "etc" / "conf").exists()
    with pytest.raises(FileNotFoundError):
        host.read_bytes("/etc/conf")


# -- fault injection -----------------------------------------------------------------


def test_fault_on_path(tmp_path):
    write(tmp_path / "proc" / "cpuinfo", "processor : 0\n")
    host = RootHost(str(tmp_path))
    assert host.cat("/proc/cpuinfo") == "processor : 0"  # cached before the fault
    host.faults["/proc/cpuinfo"] = errno.EACCES
    with pytest.raises(PermissionError):
        host.read_bytes("/proc/cpuinfo")
    assert host.cat("/proc/cpuinfo", fallback="denied") == "denied"
    assert host.exists("/proc/cpuinfo") is False
    with pytest.raises(PermissionError):
        host.write_bytes("/proc/cpuinfo", b"x")
    assert (tmp_path / "proc" / "cpuinfo").read_text() == "processor : 0\n"
    del host.faults["/proc/cpuinfo"]
    assert host.cat("/proc/cpuinfo") == "processor : 0"


@pytest.mark.parametrize("code, state", [(errno.ENOENT, NOT_INSTALLED),
                                         (errno.ETIMEDOUT, TIMED_OUT),
                                         (errno.EACCES, PERMISSION_DENIED)])
def test_fault_on_command(code, state):
    host = LiveHost()
    host.faults["true --version"] = code
    result = host.run(["true", "--version"])
    assert result.state == state
    assert result.returncode is None and not result.ok
    assert result.reason()  # every state explains itself in one line


# -- tracing and glob ----------------------------------------------------------------


def test_nested_tracing_blocks_both_collect(tmp_path):
    write(tmp_path / "a", "1")
    write(tmp_path / "b", "2")
    host = RootHost(str(tmp_path))
    with host.tracing() as outer:
        host.cat("/a")
        with host.tracing() as inner:
            host.cat("/b")
            host.cat("/missing")
            host.run(["dmidecode", "-t", "memory"])
        host.cat("/a")  # noted once
    assert inner == ["/b", "/missing", "dmidecode -t memory"]
    assert outer == ["/a", "/b", "/missing", "dmidecode -t memory"]
    with host.tracing() as later:
        pass
    assert later == []


def test_glob_matches_and_notes_its_pattern(tmp_path):
    base = tmp_path / "sys" / "devices" / "system" / "cpu"
    for name in ("policy0", "policy1", "policy10", "other"):
        os.makedirs(base / "cpufreq" / name)
    write(base / "cpufreq" / "policy1" / "scaling_governor", "performance\n")
    write(base / "cpufreq" / "policy10" / "scaling_governor", "powersave\n")
    write(base / "cpufreq" / "policyfile", "not a folder")
    host = RootHost(str(tmp_path))
    root = "/sys/devices/system/cpu/cpufreq"
    with host.tracing() as trace:
        folders = host.glob(root + "/policy[0-9]*")
        governors = host.glob("/sys/devices/system/cpu/*/policy*/scaling_governor")
    assert folders == [root + "/policy0", root + "/policy1", root + "/policy10"]
    assert governors == [root + "/policy1/scaling_governor", root + "/policy10/scaling_governor"]
    assert trace == [root + "/policy[0-9]*",
                     "/sys/devices/system/cpu/*/policy*/scaling_governor"]
    assert host.glob("/nowhere/*") == []


# -- small helpers ----------------------------------------------------------------------


def test_command_slug():
    assert command_slug(["dmidecode", "-t", "memory"]) == "dmidecode_-t_memory"
    assert command_slug(("nvidia-smi", "--query-gpu=name,uuid", "--format=csv")) == (
        "nvidia-smi_--query-gpu_name_uuid_--format_csv")
    assert "/" not in command_slug(["/usr/sbin/dmidecode"])


@pytest.mark.parametrize("text, cpus", [("0-3,8,10-11", [0, 1, 2, 3, 8, 10, 11]),
                                        ("0", [0]), ("", []), (" 2-4 \n", [2, 3, 4]),
                                        ("0,2,4,6", [0, 2, 4, 6])])
def test_parse_cpu_list(text, cpus):
    assert parse_cpu_list(text) == cpus

    assert parse_cpu_list(text + "\x00") == cpus  # some sysfs lists end in a NUL


@pytest.mark.parametrize("text", ["x", "1-", "-1", "0-3,a", "0-99999999999"])
def test_parse_cpu_list_refuses_what_is_no_cpu_list(text):
    """ValueError, never a billion-entry list: callers fall back to another source."""
    with pytest.raises(ValueError):
        parse_cpu_list(text)


@pytest.mark.parametrize("cpus", [[0, 1, 2, 3, 8, 10, 11], [5], [], [0, 2, 4, 6],
                                  list(range(64)) + [100, 101]])
def test_cpu_list_round_trip(cpus):
    text = format_cpu_list(cpus)
    assert parse_cpu_list(text) == cpus
    assert format_cpu_list(list(reversed(cpus)) + cpus) == text  # order and repeats ignored


def test_format_cpu_list_is_compact():
    assert format_cpu_list([3, 0, 1, 2, 8]) == "0-3,8"
    assert format_cpu_list([0, 2]) == "0,2"


# -- commands on the live machine --------------------------------------------------------


def test_live_run_true_and_false():
    host = LiveHost()
    done = host.run(["true"])
    assert (done.state, done.returncode, done.ok) == (RAN, 0, True)
    failed = host.run(["false"])
    assert (failed.state, failed.returncode, failed.ok) == (RAN, 1, False)
    assert "exited 1" in failed.reason()


def test_live_run_captures_output_in_c_locale():
    result = LiveHost().run([sys.executable, "-c",
                             "import os, sys; print(os.environ['LC_ALL']); "
                             "print('oops', file=sys.stderr)"])
    assert result.ok
    assert result.stdout.strip() == "C"
    assert result.stderr.strip() == "oops"


def test_live_run_missing_binary():
    result = LiveHost().run(["q3cn-doctor-no-such-binary-xyz", "--version"])
    assert result.state == NOT_INSTALLED
    assert "not installed" in result.reason()


def test_live_run_times_out_and_kills_the_command(tmp_path):
    """A command past its time limit is given up on and killed, not waited for."""
    pid_file = tmp_path / "pid"
    result = LiveHost().run(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"], timeout=0.5)
    assert result.state == TIMED_OUT and "did not answer in time" in result.reason()
    with pytest.raises(ProcessLookupError):  # killed and reaped when run() returned
        os.kill(int(pid_file.read_text()), 0)


def test_live_run_not_executable(tmp_path):
    script = tmp_path / "tool"
    write(script, "#!/bin/sh\necho hi\n")
    os.chmod(script, 0o644)  # no x bit: refused even for root
    assert LiveHost().run([str(script)]).state == PERMISSION_DENIED


def test_live_run_all_runs_commands_side_by_side(tmp_path):
    """Each command waits for a file only the other one creates: run one after the
    other, the first would time out; run together, both finish."""
    def waits_for(mine: str, theirs: str) -> list[str]:
        return ["sh", "-c", f"touch {tmp_path / mine}; "
                            f"while [ ! -e {tmp_path / theirs} ]; do sleep 0.01; done; echo {mine}"]

    host = LiveHost()
    first, second = host.run_all([waits_for("a", "b"), waits_for("b", "a")], timeout=10)
    assert (first.state, first.stdout, second.stdout) == (RAN, "a\n", "b\n")
    assert host.run(waits_for("a", "b")) is first  # remembered like run()'s


def test_started_commands_run_once_in_the_background(tmp_path):
    """start() begins a command before anyone asks; run() then takes its result rather
    than running it again. The command says it began, then waits for a file the test
    makes only after seeing that: so it ran before run() was called, and run waited."""
    began, go, count = tmp_path / "began", tmp_path / "go", tmp_path / "count"
    argv = ["sh", "-c", f"touch {began}; while [ ! -e {go} ]; do sleep 0.01; done; "
                        f"echo x >> {count}; echo done"]
    host = LiveHost()
    host.start([argv])
    deadline = time.monotonic() + 10
    while not began.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert began.exists()
    go.touch()
    assert host.run(argv).stdout == "done\n"
    assert host.run(argv).stdout == "done\n"
    assert count.read_text() == "x\n"


def test_a_root_tree_starts_nothing(tmp_path):
    marker = tmp_path / "ran"
    host = RootHost(str(tmp_path))
    host.start([["sh", "-c", f"touch {marker}"]])
    assert host.run(["sh", "-c", f"touch {marker}"]).state == "absent"
    time.sleep(0.2)
    assert not marker.exists()


def test_run_all_honours_faults_and_replays_in_order(tmp_path):
    host = LiveHost()
    host.faults["false"] = errno.EACCES
    results = host.run_all([["true"], ["false"], ["true"]])
    assert [r.state for r in results] == [RAN, PERMISSION_DENIED, RAN]


def test_live_run_is_cached_per_argv(tmp_path):
    counter = tmp_path / "count"
    argv = [sys.executable, "-c", f"open({str(counter)!r}, 'a').write('x')"]
    host = LiveHost()
    host.run(argv)
    host.run(argv)
    assert counter.read_text() == "x"
    host.forget()
    host.run(argv)
    assert counter.read_text() == "xx"


# -- RootHost ---------------------------------------------------------------------------


def test_root_host_reads_under_prefix_and_runs_nothing(tmp_path):
    write(tmp_path / "proc" / "sys" / "vm" / "swappiness", "60\n")
    host = RootHost(str(tmp_path))
    assert host.sysctl("vm.swappiness") == "60"
    assert host.listdir("/proc/sys") == ["vm"]
    assert host.cat("/etc/hostname") is None  # the real /etc/hostname is not under prefix
    result = host.run(["true"])
    assert result.state == ABSENT and result.returncode is None
    assert host.nvml()["init"] != "ok"
    assert str(tmp_path) in host.describe()


def test_root_host_write_is_atomic_and_stays_under_prefix(tmp_path):
    prefix = tmp_path / "root"
    target = prefix / "etc" / "sysctl.d" / "90-q3cn.conf"
    write(target, "old content that is longer\n")
    old_inode = os.stat(target).st_ino
    host = RootHost(str(prefix))
    host.write_bytes("/etc/sysctl.d/90-q3cn.conf", b"vm.swappiness = 0\n", mode=0o600)
    assert target.read_bytes() == b"vm.swappiness = 0\n"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert os.stat(target).st_ino != old_inode  # a new file renamed over the old one
    assert sorted(os.listdir(target.parent)) == ["90-q3cn.conf"]  # no temp file left
    # A new file in a new folder, and one written through an absolute link: all under prefix.
    host.write_bytes("/etc/q3cn-doctor-test-new/config.toml", b"profile = 'x'\n")
    assert (prefix / "etc" / "q3cn-doctor-test-new" / "config.toml").read_bytes() == (
        b"profile = 'x'\n")
    assert stat.S_IMODE(os.stat(prefix / "etc/q3cn-doctor-test-new/config.toml").st_mode) == 0o644
    assert not os.path.exists("/etc/q3cn-doctor-test-new")
    # A link at the target is refused, never written through (the fix engine's contract).
    os.symlink("/q3cn-doctor-test-target", prefix / "etc" / "link")
    with pytest.raises(OSError) as refused:
        host.write_bytes("/etc/link", b"through the link\n")
    assert refused.value.errno == errno.ELOOP
    assert os.path.islink(prefix / "etc" / "link")
    assert not (prefix / "q3cn-doctor-test-target").exists()
    assert not os.path.exists("/q3cn-doctor-test-target")
    host.write_bytes("/../../q3cn-doctor-test-escape", b"x")
    assert (prefix / "q3cn-doctor-test-escape").exists()
    assert not (tmp_path / "q3cn-doctor-test-escape").exists()


def test_root_host_failed_write_leaves_no_temp(tmp_path):
    prefix = tmp_path / "root"
    os.makedirs(prefix / "etc" / "conf")  # a folder where the file should go
    host = RootHost(str(prefix))
    with pytest.raises(OSError):
        host.write_bytes("/etc/conf", b"x")
    assert os.listdir(prefix / "etc") == ["conf"]
    assert os.listdir(prefix / "etc" / "conf") == []


def test_root_host_remove(tmp_path):
    write(tmp_path / "etc" / "modprobe.d" / "q3cn.conf", "options x\n")
    host = RootHost(str(tmp_path))
    host.remove("/etc/modprobe.d/q3cn.conf")
    assert os.listdir(tmp_path / "etc" / "modprobe.d") == []
    with pytest.raises(FileNotFoundError):
        host.remove("/etc/modprobe.d/q3cn.conf")


# -- processes ------------------------------------------------------------------------------


def fake_proc(root, pid: int, name: str, cmdline: list[str], cpus: str, threads: int,
              uid: int) -> None:
    status = (f"Name:\t{name}\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t{pid}\n"
              f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
              f"Threads:\t{threads}\nCpus_allowed:\tff\nCpus_allowed_list:\t{cpus}\n")
    write(os.path.join(root, "proc", str(pid), "status"), status)
    write(os.path.join(root, "proc", str(pid), "cmdline"),
          ("\0".join(cmdline) + "\0").encode())


def test_read_processes_from_a_fake_proc(tmp_path):
    root = str(tmp_path)
    fake_proc(root, 123, "llama-server",
              ["/opt/llama/llama-server", "-m", "model.gguf", "--threads", "8"],
              "0-3,8", 17, 1000)
    fake_proc(root, 7, "bash", ["bash"], "0", 1, 0)
    os.makedirs(tmp_path / "proc" / "999")  # exited between listing and reading: skipped
    write(tmp_path / "proc" / "meminfo", "MemTotal: 1 kB\n")  # not a pid
    os.makedirs(tmp_path / "proc" / "self")
    processes = {p.pid: p for p in RootHost(root).processes()}
    assert sorted(processes) == [7, 123]
    llama = processes[123]
    assert llama.name == "llama-server"
    assert llama.cmdline == ["/opt/llama/llama-server", "-m", "model.gguf", "--threads", "8"]
    assert llama.affinity == [0, 1, 2, 3, 8]
    assert llama.threads == 17
    assert llama.uid == 1000
    assert processes[7].affinity == [0] and processes[7].uid == 0


def test_processes_are_listed_once_until_forgotten_or_repinned(tmp_path, monkeypatch):
    """Facts, plans and checks each ask for the process list: /proc is walked once a run,
    and again after forget() (a fix ran) or a re-pin, which changes the affinity it shows."""
    root = str(tmp_path)
    fake_proc(root, 123, "llama-server", ["llama-server"], "0-3", 1, 0)
    os.makedirs(tmp_path / "proc" / "123" / "task" / "123")
    os.link(tmp_path / "proc" / "123" / "status", tmp_path / "proc" / "123" / "task" / "123"
            / "status")
    host = RootHost(root)
    walks = []
    listdir = host._listdir_quiet
    monkeypatch.setattr(host, "_listdir_quiet",
                        lambda path: walks.append(path) or listdir(path))
    first = host.processes()
    first.clear()  # a caller's own copy: the remembered list is not touched
    assert [p.affinity for p in host.processes()] == [[0, 1, 2, 3]]
    assert walks == ["/proc"]
    fake_proc(root, 7, "bash", ["bash"], "0", 1, 0)
    assert [p.pid for p in host.processes()] == [123]  # remembered, as every read is
    host.forget()
    assert sorted(p.pid for p in host.processes()) == [7, 123] and len(walks) == 2
    host.set_affinity(123, 123, [1])
    assert {p.pid: p.affinity for p in host.processes()}[123] == [1] and len(walks) == 3


def test_live_processes_include_this_one():
    me = {p.pid: p for p in LiveHost().processes()}[os.getpid()]
    assert me.affinity == sorted(os.sched_getaffinity(0))
    assert me.uid == os.geteuid()
    assert me.threads and me.threads >= 1
    with open("/proc/self/cmdline", "rb") as handle:
        assert me.cmdline == [a for a in handle.read().decode().split("\0") if a]


def test_stat_reads_inside_every_host(tmp_path):
    """stat() answers for the host's own tree: a RootHost never stats the real path."""
    import errno as errno_module

    from q3cn_doctor.host.live import RootHost

    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/llama-server").write_bytes(b"x" * 123)
    host = RootHost(str(tmp_path))
    found = host.stat("/usr/bin/llama-server")
    assert found.size == 123
    with pytest.raises(FileNotFoundError):
        host.stat("/etc/hostname")  # exists on the real machine, not in the tree
    host.faults["/usr/bin/llama-server"] = errno_module.EACCES
    with pytest.raises(PermissionError):
        host.stat("/usr/bin/llama-server")


def test_on_path_finds_what_shutil_which_finds(tmp_path, monkeypatch):
    """The preflight's own PATH search (shutil's import is ~10 ms) agrees with shutil.which:
    a plain file and a folder of that name are passed over, the first executable wins;
    asked what exec would try, the plain file is it."""
    import shutil

    from q3cn_doctor.host.live import on_path

    plain, folder, tool, later = (tmp_path / name for name in ("plain", "dir", "bin", "later"))
    for place in (plain, folder, tool, later):
        place.mkdir()
    (plain / "tool").write_text("not executable")
    (folder / "tool").mkdir()
    for place in (tool, later):
        (place / "tool").write_text("#!/bin/sh\n")
        (place / "tool").chmod(0o755)
    search = os.pathsep.join(map(str, (tmp_path / "missing", plain, folder, tool, later)))
    assert on_path("tool", search) == str(tool / "tool") == shutil.which("tool", path=search)
    assert on_path("absent", search) is None is shutil.which("absent", path=search)
    assert on_path("tool", "") is None is shutil.which("tool", path="")
    # What exec tries first: a file that exists, executable or not (exec says which).
    assert on_path("tool", search, executable=False) == str(plain / "tool")
    assert on_path(str(plain / "tool"), None) == str(plain / "tool")  # a path, as given
    assert on_path(str(tmp_path / "missing" / "tool"), search) is None
    monkeypatch.setenv("PATH", str(later))
    assert on_path("tool", None) == str(later / "tool") == shutil.which("tool")

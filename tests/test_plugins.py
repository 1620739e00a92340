"""Third-party checks through the ``q3cn_doctor.checks`` entry-point group.

Each plugin is a module plus a hand-written ``*.dist-info`` folder in tmp_path,
made visible with PYTHONPATH: importlib.metadata finds it exactly as it finds
an installed distribution, and nothing is installed into the venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from q3cn_doctor.checking import registry
from test_cli import BUILTIN_IDS, cli, make_root

DEMO = '''
from q3cn_doctor.checking.findings import INFO
from q3cn_doctor.checking.registry import check


@check("system.demo", "A demo third-party check")
def demo(ctx):
    return ctx.finding(INFO, "Demo plugin ran", observed="hello from the demo plugin")
'''

BROKEN_IMPORT = '''
raise RuntimeError("plugin is broken on purpose")
'''

CRASHING_CHECK = '''
from q3cn_doctor.checking.registry import check


@check("system.crashes", "A check that raises")
def crashes(ctx):
    return {}["missing"]
'''

FAILING_CHECK = '''
from q3cn_doctor.checking.findings import FAIL
from q3cn_doctor.checking.registry import check


@check("system.fails", "A check that finds a real problem")
def fails(ctx):
    return ctx.finding(FAIL, "Something is wrong", observed="seen by the plugin",
                       recommended="Fix it.", impact="It costs tokens/s.")
'''

MALFORMED_RESULTS = '''
from q3cn_doctor.checking.findings import INFO
from q3cn_doctor.checking.registry import check


@check("system.stringy", "Returns a string instead of findings")
def stringy(ctx):
    return "all good"


@check("system.badstatus", "Returns a finding with an unknown status")
def badstatus(ctx):
    finding = ctx.finding(INFO, "Looks fine")
    finding.status = "bad"
    return [finding]
'''

BAD_ID = '''
from q3cn_doctor.checking.registry import check


@check("network.latency", "An area the doctor does not have")
def latency(ctx):
    return None
'''

CLASHING_ID = '''
from q3cn_doctor.checking.findings import PASS
from q3cn_doctor.checking.registry import check


@check("memory.swap", "Tries to replace a built-in check")
def swap(ctx):
    return ctx.finding(PASS, "Imposter")
'''

FUNCTION_TARGET = '''
from q3cn_doctor.checking.findings import INFO
from q3cn_doctor.checking.registry import check


@check("gpu.demo_function", "Registered through a module:function entry point")
def demo_function(ctx):
    return ctx.finding(INFO, "Function entry point ran")


@check("gpu.not_exported", "Not named by the entry point, so not loaded")
def not_exported(ctx):
    return ctx.finding(INFO, "Should not run")
'''


def add_plugin(where: Path, module: str, source: str, entry: str | None = None,
               target: str | None = None) -> Path:
    """Write MODULE.py and a dist-info that declares it in the q3cn_doctor.checks group."""
    (where / f"{module}.py").write_text(textwrap.dedent(source))
    info = where / f"{module}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[q3cn_doctor.checks]\n{entry or module} = {target or module}\n")
    return where


@pytest.fixture
def plugins(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    return folder


@pytest.fixture
def root(tmp_path):
    return make_root(tmp_path / "root")  # nothing fails or warns in the built-in checks


def run(plugins: Path, *args: str):
    """The CLI with the plugins on its path and a private cache (so the plugin index the
    runs after the first read is this test's, never the user's)."""
    return cli(*args, env={"PYTHONPATH": str(plugins),
                           "XDG_CACHE_HOME": str(plugins.parent / "cache")})


def findings(result) -> dict[str, dict]:
    return {finding["id"]: finding for finding in json.loads(result.stdout)["findings"]}


def test_plugin_is_listed(plugins):
    add_plugin(plugins, "q3cn_demo_plugin", DEMO, entry="demo")
    result = run(plugins, "check", "--list")
    assert result.returncode == 0
    line = next(line for line in result.stdout.splitlines() if line.startswith("system.demo "))
    assert "A demo third-party check" in line
    assert "plugin demo" in line  # says where it came from
    for check_id in BUILTIN_IDS:
        assert check_id in result.stdout


def test_plugin_runs_and_reports(plugins, root):
    add_plugin(plugins, "q3cn_demo_plugin", DEMO, entry="demo")
    result = run(plugins, "check", "--root", str(root), "--only", "system.demo", "--json")
    assert result.returncode == 0
    found = findings(result)
    assert list(found) == ["system.demo"]
    demo = found["system.demo"]
    assert (demo["check"], demo["area"], demo["status"]) == ("system.demo", "system", "info")
    assert demo["observed"] == "hello from the demo plugin"
    text = run(plugins, "check", "--root", str(root), "--only", "system")
    assert "info: demo" in text.stdout  # a note folds into its area's line
    text = run(plugins, "check", "--root", str(root), "--only", "system", "-v")
    assert "[info] system.demo: Demo plugin ran" in text.stdout


def test_no_plugins_hides_it(plugins, root):
    add_plugin(plugins, "q3cn_demo_plugin", DEMO, entry="demo")
    listed = run(plugins, "check", "--list", "--no-plugins")
    assert "system.demo" not in listed.stdout
    assert "system.virtualization" in listed.stdout
    ran = run(plugins, "check", "--root", str(root), "--no-plugins", "--json")
    assert "system.demo" not in findings(ran)
    unknown = run(plugins, "check", "--root", str(root), "--no-plugins", "--only", "system.demo")
    assert unknown.returncode == 2 and "system.demo" in unknown.stderr


def test_plugin_that_fails_to_import(plugins, root):
    add_plugin(plugins, "q3cn_demo_plugin", DEMO, entry="demo")
    add_plugin(plugins, "q3cn_broken_plugin", BROKEN_IMPORT, entry="broken")
    result = run(plugins, "check", "--root", str(root), "--json")
    assert result.returncode == 3
    found = findings(result)
    failure = found["system.plugins:broken"]
    assert failure["status"] == "error" and failure["check"] == "system.plugins"
    assert "plugin is broken on purpose" in failure["observed"]
    assert set(BUILTIN_IDS) <= {f["check"] for f in found.values()}  # the rest still ran
    assert found["system.demo"]["status"] == "info"
    listed = run(plugins, "check", "--list")
    assert listed.returncode == 0 and "system.demo" in listed.stdout
    assert "broken" in listed.stderr and "plugin is broken on purpose" in listed.stderr
    assert run(plugins, "check", "--root", str(root), "--no-plugins").returncode == 0


def test_plugin_check_that_raises(plugins, root):
    add_plugin(plugins, "q3cn_crash_plugin", CRASHING_CHECK, entry="crash")
    result = run(plugins, "check", "--root", str(root), "--json")
    assert result.returncode == 3
    found = findings(result)
    crash = found["system.crashes"]
    assert crash["status"] == "error"
    assert "KeyError" in crash["observed"] and "q3cn_crash_plugin.py" in crash["observed"]
    assert set(BUILTIN_IDS) <= {f["check"] for f in found.values()}
    assert all(f["status"] != "error" for i, f in found.items() if i != "system.crashes")
    text = run(plugins, "check", "--root", str(root))
    assert "[error] system.crashes:" in text.stdout
    assert text.returncode == 3
    summary = text.stdout.rstrip().splitlines()[-1]
    assert summary.startswith("Summary: 1 error") and "nothing blocks" not in summary


def test_a_failure_wins_over_a_crash(plugins, root):
    add_plugin(plugins, "q3cn_crash_plugin", CRASHING_CHECK, entry="crash")
    add_plugin(plugins, "q3cn_fail_plugin", FAILING_CHECK, entry="fail")
    result = run(plugins, "check", "--root", str(root), "--json")
    found = findings(result)
    assert found["system.fails"]["status"] == "fail"
    assert found["system.crashes"]["status"] == "error"
    assert result.returncode == 1
    only_crash = run(plugins, "check", "--root", str(root), "--skip", "system.fails")
    assert only_crash.returncode == 3


def test_malformed_results_become_errors(plugins, root):
    add_plugin(plugins, "q3cn_malformed_plugin", MALFORMED_RESULTS, entry="malformed")
    result = run(plugins, "check", "--root", str(root), "--json")
    assert result.returncode == 3
    found = findings(result)
    assert found["system.stringy"]["status"] == "error"
    assert "all good" in found["system.stringy"]["observed"]
    assert found["system.badstatus"]["status"] == "error"
    text = run(plugins, "check", "--root", str(root))
    assert text.returncode == 3
    assert text.stdout.rstrip().splitlines()[-1].startswith("Summary: 2 error")


NUMPY_VALUES = '''
import numpy
from q3cn_doctor.checking.findings import WARN
from q3cn_doctor.checking.registry import check


class Label(str):
    pass


@check("system.numpy", "A plugin whose figures come out of numpy")
def numpy_values(ctx):
    return ctx.finding(WARN, Label("Measured with numpy"), observed=Label("mean of 3 runs"),
                       cost_tok_s=numpy.float64(2.5), action=Label("retune"))
'''


def test_a_plugins_numpy_and_str_subclass_values_reach_the_json(plugins, root):
    """Records are msgspec Structs, whose to_builtins refuses types it does not know;
    json.dumps took a float or str subclass. A plugin's numpy float still reports."""
    add_plugin(plugins, "q3cn_numpy_plugin", NUMPY_VALUES, entry="numpy")
    result = run(plugins, "check", "--root", str(root), "--only", "system.numpy", "--json")
    assert result.returncode == 0, result.stderr
    finding = findings(result)["system.numpy"]
    assert (finding["status"], finding["title"], finding["cost_tok_s"]) == (
        "warn", "Measured with numpy", 2.5)


@pytest.mark.parametrize("source, name, message", [
    (BAD_ID, "badid", "network.latency"),
    ("X = 1\n", "empty", "registers no check"),
])
def test_plugin_registering_nothing_usable(plugins, root, source, name, message):
    add_plugin(plugins, f"q3cn_{name}_plugin", source, entry=name)
    result = run(plugins, "check", "--root", str(root), "--json")
    assert result.returncode == 3
    failure = findings(result)[f"system.plugins:{name}"]
    assert failure["status"] == "error" and message in failure["observed"]


def test_plugin_cannot_replace_a_builtin(plugins, root):
    add_plugin(plugins, "q3cn_clash_plugin", CLASHING_ID, entry="clash")
    result = run(plugins, "check", "--root", str(root), "--json")
    assert result.returncode == 3
    found = findings(result)
    assert found["system.plugins:memory.swap"]["status"] == "error"
    assert found["memory.swap"]["title"] != "Imposter"


def test_function_entry_point(plugins, root):
    add_plugin(plugins, "q3cn_func_plugin", FUNCTION_TARGET, entry="func",
               target="q3cn_func_plugin:demo_function")
    result = run(plugins, "check", "--root", str(root), "--only", "gpu.demo_function", "--json")
    assert result.returncode == 0
    assert list(findings(result)) == ["gpu.demo_function"]


# -- the plugin index ---------------------------------------------------------------------
@pytest.fixture
def indexed(plugins, monkeypatch):
    """The plugins folder on sys.path, a private cache, and a count of slow discoveries."""
    monkeypatch.syspath_prepend(str(plugins))
    monkeypatch.setenv("XDG_CACHE_HOME", str(plugins.parent / "cache"))
    calls = []
    discover = registry._discover
    monkeypatch.setattr(registry, "_discover", lambda: calls.append(1) or discover())
    return calls


def demo_points() -> list[tuple[str, str]]:
    return [point for point in registry.plugin_index() if point[1].startswith("q3cn_")]


def test_index_is_reused_until_a_plugin_is_installed_changed_or_removed(plugins, indexed):
    assert demo_points() == [] and len(indexed) == 1
    assert demo_points() == [] and len(indexed) == 1  # nothing changed: the cached index
    add_plugin(plugins, "q3cn_demo_plugin", DEMO, entry="demo")
    assert demo_points() == [("demo", "q3cn_demo_plugin")] and len(indexed) == 2
    assert demo_points() == [("demo", "q3cn_demo_plugin")] and len(indexed) == 2
    (plugins / "q3cn_demo_plugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[q3cn_doctor.checks]\nrenamed = q3cn_demo_plugin\n")  # edited in place
    assert demo_points() == [("renamed", "q3cn_demo_plugin")] and len(indexed) == 3
    shutil.rmtree(plugins / "q3cn_demo_plugin-1.0.dist-info")
    assert demo_points() == [] and len(indexed) == 4
    cached = json.loads((plugins.parent / "cache" / "q3cn-doctor" / "plugins.json").read_text())
    assert cached["format"] == registry.PLUGIN_INDEX_FORMAT
    assert len(cached["environments"]) == 1


def test_a_damaged_index_is_rebuilt(plugins, indexed):
    add_plugin(plugins, "q3cn_demo_plugin", DEMO, entry="demo")
    demo_points()
    path = plugins.parent / "cache" / "q3cn-doctor" / "plugins.json"
    cached = json.loads(path.read_text())
    for entry in cached["environments"].values():
        entry["points"] = [["demo"]]  # not a (name, target) pair
    path.write_text(json.dumps(cached))
    assert demo_points() == [("demo", "q3cn_demo_plugin")] and len(indexed) == 2
    path.write_text("{not json")
    assert demo_points() == [("demo", "q3cn_demo_plugin")] and len(indexed) == 3


def test_a_finder_of_its_own_is_never_cached(plugins, indexed, monkeypatch):
    class Finder:  # offers distributions the stamp cannot see
        @staticmethod
        def find_spec(*args):
            return None

        @staticmethod
        def find_distributions(*args, **kwargs):
            return iter(())

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Finder])
    demo_points()
    demo_points()
    assert len(indexed) == 2
    assert not (plugins.parent / "cache" / "q3cn-doctor" / "plugins.json").exists()


def test_only_recent_environments_are_kept(plugins, indexed, monkeypatch):
    keys = []
    for number in range(registry.PLUGIN_INDEX_ENVIRONMENTS + 2):
        folder = plugins.parent / f"env{number}"
        folder.mkdir()
        monkeypatch.syspath_prepend(str(folder))  # another sys.path: another environment
        keys.append(registry._environment_key())
        demo_points()
    path = plugins.parent / "cache" / "q3cn-doctor" / "plugins.json"
    environments = json.loads(path.read_text())["environments"]
    assert list(environments) == keys[-registry.PLUGIN_INDEX_ENVIRONMENTS:]


def test_a_cached_run_skips_importlib_metadata_and_still_loads_the_plugin(plugins):
    """The point of the index: a new process finds the plugin without importlib.metadata."""
    add_plugin(plugins, "q3cn_demo_plugin", DEMO, entry="demo")
    probe = ("import sys\n"
             "from q3cn_doctor.checking.runner import available_checks\n"
             "specs, failures = available_checks(True)\n"
             "print(any(s.id == 'system.demo' for s in specs), not failures,\n"
             "      'importlib.metadata' in sys.modules)\n")
    env = dict(os.environ, PYTHONPATH=str(plugins), XDG_CACHE_HOME=str(plugins.parent / "c"))
    outputs = [subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              env=env, check=True, cwd=plugins.parent).stdout.split()
               for _ in range(2)]
    assert outputs == [["True", "True", "True"], ["True", "True", "False"]]


def test_entry_point_targets_load_as_importlib_loads_them():
    assert registry._load_entry_point("os.path") is os.path
    assert registry._load_entry_point("os:path.join") is os.path.join
    assert registry._load_entry_point("os : path.join [extra]") is os.path.join
    with pytest.raises(ValueError):
        registry._load_entry_point("not a target!")


def readme_check_example() -> str:
    """The Python block under the README's "Write a check" heading."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Write a check", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize(("mode", "status"), [("0", "pass"), ("2", "warn")])
def test_readme_example_is_a_working_plugin(plugins, root, mode, status):
    """The README teaches plugin authors by this example: it must load and judge for real."""
    (root / "proc/sys/vm/overcommit_memory").write_text(f"{mode}\n")
    add_plugin(plugins, "q3cn_overcommit", readme_check_example(), entry="overcommit")
    result = run(plugins, "check", "--root", str(root), "--only", "memory.overcommit", "--json")
    found = findings(result)["memory.overcommit"]
    assert found["status"] == status
    assert f"vm.overcommit_memory = {mode}" in found["observed"]


def test_readme_example_skips_when_unreadable(plugins, root):
    add_plugin(plugins, "q3cn_overcommit", readme_check_example(), entry="overcommit")
    result = run(plugins, "check", "--root", str(root), "--only", "memory.overcommit", "--json")
    found = findings(result)["memory.overcommit"]
    assert found["status"] == "skip" and "could not be read" in found["observed"]

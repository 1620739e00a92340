"""The launch plan as a systemd service: ``launch --unit NAME``.

A unit runs the same plan every boot without the doctor in between: ``User=`` the
planned user (never root unless asked), the limits the plan raises (``LimitMEMLOCK=``,
``LimitRTPRIO=``), the CPUs it takes (``CPUAffinity=``), the environment, and
``ExecStart=`` with the flags translated for this build. The file is written through the
fix engine (journalled, ours by its header, never over a file we did not write), so
``launch --unit NAME --revert`` removes it exactly; ``q3cn-doctor hook install --service
NAME`` then runs the checks before every start.
"""

from __future__ import annotations

from q3cn_doctor.fixing.engine import Engine, Outcome
from q3cn_doctor.fixing.plan import Change
from q3cn_doctor.fixing.targets import ConfigFile, header
from q3cn_doctor.host.base import UNLIMITED, Host, format_cpu_list

from .launcher import LaunchPlan

UNIT_DIR = "/etc/systemd/system"
FIX_ID = "launch.unit"


def unit_path(name: str) -> str:
    return f"{UNIT_DIR}/{name if name.endswith('.service') else name + '.service'}"


def _quote(word: str) -> str:
    """One ExecStart= word: %% and $$ for systemd's specifiers and variables, double
    quotes (with \\\\ and \\") where it has a space, a quote or a backslash."""
    word = word.replace("%", "%%").replace("$", "$$")
    if word and not any(c in word for c in " \t\"'\\;"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _limit(value: int) -> str:
    return "infinity" if value == UNLIMITED else str(value)


def unit_text(plan: LaunchPlan, name: str, description: str) -> str:
    """The unit file for ``plan``."""
    user = plan.user or {}
    lines = [header(FIX_ID, made_by=f"launch --unit {name}",
                    removed_by=f"q3cn-doctor launch --unit {name} --revert").rstrip("\n"),
             "[Unit]", f"Description={description}",
             "After=network-online.target", "Wants=network-online.target", "",
             "[Service]", "Type=exec"]
    if user.get("name"):
        lines.append(f"User={user['name']}")
    if user.get("gid") is not None:
        lines.append(f"Group={user['gid']}")
    for variable, value in sorted(plan.env.items()):
        lines.append(f"Environment={_quote(f'{variable}={value}')}")
    for limit, (_, hard) in sorted(plan.rlimits.items()):
        lines.append(f"Limit{limit}={_limit(hard)}")
    if plan.affinity:
        lines.append(f"CPUAffinity={format_cpu_list(plan.affinity)}")
    if "--prio" in plan.argv and "RTPRIO" not in plan.rlimits:
        lines.append("LimitRTPRIO=99")  # --prio 2 asks for SCHED_FIFO; the unit grants it
    lines += ["ExecStart=" + " ".join(_quote(word) for word in plan.argv),
              "Restart=on-failure", "NoNewPrivileges=true", "",
              "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def write_unit(host: Host, plan: LaunchPlan, name: str, description: str) -> Outcome:
    """Write (or update) the unit through the fix engine's journal."""
    target = ConfigFile(unit_path(name))
    text = unit_text(plan, name, description)
    change = Change(FIX_ID, target, unit_path(name), target.read(host),
                    ConfigFile.wanted(text.encode()))
    change.evaluate()
    engine = Engine(host)
    with engine.journal.locked():
        return engine.execute(change, simulate=False)


def revert_unit(host: Host, name: str) -> list[Outcome]:
    """Remove the unit (its journal entries, newest first): what was there before."""
    path = unit_path(name)
    return Engine(host).revert(only=lambda entry: entry.get("fix") == FIX_ID and (
        entry.get("target") or {}).get("path") == path)

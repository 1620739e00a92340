"""power-profiles-daemon: on some boots it leaves the CPU in a non-performance hardware
state while sysfs reads ``performance`` (the guide's author measured 32-35 instead of
about 40 tok/s, cured by replacing it with tuned-ppd: carteakey/lllms
docs/bench-runbook.md). No sysfs file shows that state, so the check says so whenever
the daemon runs, with the replacement for this distribution. Replacing a system
service is a step for a person, never a fix."""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import INFO, PASS, SKIP, WARN
from q3cn_doctor.checking.registry import check

PPD = "power-profiles-daemon"
TUNED_STEPS = ("sudo systemctl enable --now tuned", "sudo tuned-adm profile "
               "throughput-performance", "reboot, then re-run `q3cn-doctor check` and "
               "`q3cn-doctor bench` to compare")
# os-release ID (or ID_LIKE) -> how to swap power-profiles-daemon for tuned there.
REPLACEMENTS = {
    "fedora": ["sudo dnf swap power-profiles-daemon tuned-ppd (Fedora 41 and later ship "
               "tuned-ppd, which answers power-profiles-daemon's D-Bus API for the desktop)",
               *TUNED_STEPS],
    "rhel": ["sudo dnf swap power-profiles-daemon tuned-ppd", *TUNED_STEPS],
    "arch": ["sudo pacman -S tuned tuned-ppd (it replaces power-profiles-daemon)",
             *TUNED_STEPS],
    "debian": ["sudo apt install tuned", "sudo systemctl disable --now "
               "power-profiles-daemon && sudo systemctl mask power-profiles-daemon",
               *TUNED_STEPS],
    "suse": ["sudo zypper install tuned", "sudo systemctl disable --now "
             "power-profiles-daemon", *TUNED_STEPS],
}
FAMILIES = {"fedora": "fedora", "rhel": "rhel", "centos": "rhel", "rocky": "rhel",
            "almalinux": "rhel", "arch": "arch", "manjaro": "arch", "endeavouros": "arch",
            "cachyos": "arch", "debian": "debian", "ubuntu": "debian", "pop": "debian",
            "linuxmint": "debian", "opensuse": "suse", "suse": "suse",
            "opensuse-tumbleweed": "suse", "opensuse-leap": "suse"}


def replacement(os_ids: list[str]) -> tuple[str | None, list[str]]:
    """The distribution family and the steps that swap power-profiles-daemon for tuned."""
    for os_id in os_ids:
        family = FAMILIES.get(os_id)
        if family:
            return family, REPLACEMENTS[family]
    return None, ["Install tuned (and tuned-ppd where the distribution has it, so the "
                  "desktop's power menu keeps working)", "sudo systemctl disable --now "
                  "power-profiles-daemon", *TUNED_STEPS]


@check("cpu.power_daemon", "power-profiles-daemon, which can hold the CPU below performance")
def power_daemon(ctx: Context):
    cpu = ctx.facts.cpu
    running = cpu.power_managers
    if not ctx.host.processes():  # a tree or a recording without a process list
        return ctx.finding(SKIP, "Power daemons unknown: this host lists no processes",
                           observed=cpu.basis.get("power_managers", ""))
    if PPD not in running:
        others = ", ".join(running) or "none"
        return ctx.finding(PASS, f"{PPD} is not running", observed=f"power daemons: {others}")
    system = ctx.facts.get("system")
    family, steps = replacement(system.os_ids if system else [])
    profile = cpu.power_profile or "unknown"
    observed = (f"{PPD} runs (profile {profile}); distribution "
                f"{(system.os if system else None) or 'unknown'}")
    status = WARN if profile != "performance" else INFO
    return ctx.finding(
        status,
        f"{PPD} runs: it can leave the CPU below performance even when sysfs says otherwise",
        observed=observed,
        recommended=f"Replace it with tuned{' (' + family + ')' if family else ''}, as the steps "
                    "by hand say (`q3cn-doctor fix` lists them).",
        impact="On the guide's machine it held generation at 32-35 instead of about 40 tok/s "
               "on some boots, with the governor and EPP reading performance (measured by the "
               "guide's author; the speed model cannot see a hidden hardware state).",
        manual=steps, action="tuned instead of power-profiles-daemon")

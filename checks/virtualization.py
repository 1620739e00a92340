"""Virtualization: what a VM, container or WSL2 hides from the other checks."""

from __future__ import annotations

from q3cn_doctor.checking.context import Context
from q3cn_doctor.checking.findings import INFO, PASS, SKIP
from q3cn_doctor.checking.registry import check

_HIDDEN = {
    "vm": ("A VM shows no DMI (so no RAM speed), usually no cpufreq, and a GPU only when "
           "passed through; RAM bandwidth is the host's and shared with it."),
    "container": ("A container shares the host's kernel: sysctl, hugepage and governor "
                  "settings belong to the host, and RAM speed needs the host's dmidecode."),
    "wsl": ("WSL2 has no DMI and no cpufreq; its RAM is capped by .wslconfig, and the GPU "
            "is reached through the Windows driver."),
}


@check("system.virtualization", "Bare metal, or a VM, container or WSL2 and what that hides")
def virtualization(ctx: Context):
    system = ctx.facts.system
    virt = system.virtualization
    observed = f"{virt.kind or 'unknown'}" + (
        f" ({virt.name})" if virt.name and virt.name != virt.kind else "")
    if virt.vm:
        observed += f" inside a {virt.vm} VM"
    observed += f"; decided by {system.basis.get('virtualization')}"
    if virt.kind is None:
        return ctx.finding(SKIP, "Cannot tell whether this is a VM or container", observed=observed)
    if virt.kind == "none":
        return ctx.finding(PASS, "Bare metal: every check sees the real hardware",
                           observed=observed)
    label = {"vm": "a virtual machine", "container": "a container", "wsl": "WSL2"}[virt.kind]
    return ctx.finding(
        INFO, f"Running in {label}", observed=observed,
        recommended="Run q3cn-doctor on the host itself to see RAM speed, CPU clocks and the GPU.",
        impact=_HIDDEN[virt.kind])

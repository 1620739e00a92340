"""sysctl.numa_balancing: automatic NUMA balancing off (``kernel.numa_balancing = 0``)
where llama-server runs with a NUMA policy: llama.cpp warns that balancing moves the
model's pages under it. Now, and in a sysctl.d file that wins at boot."""

from __future__ import annotations

from q3cn_doctor.fixing.sysctl import SysctlFix


class NumaBalancing(SysctlFix):
    id = "sysctl.numa_balancing"
    title = "Automatic NUMA balancing off: kernel.numa_balancing = 0"
    checks = ("cpu.numa",)
    KEY, VALUE = "kernel.numa_balancing", "0"
    ABSENT = "is absent (a kernel without NUMA balancing)"


FIX = NumaBalancing()

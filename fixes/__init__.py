"""Fixes, one module per fix, each ending with ``FIX = SomeFix()`` (see doctor/fixing/plan.py).

``ORDER`` is the order fixes are planned, listed and applied in (revert undoes them
newest first, so in the reverse order). Every fix module's id is in it, and only
those: tests/test_fix_fixes.py fails otherwise.
"""

ORDER = [
    # Memory first: llama-server's model has to fit and stay in RAM.
    "hugepages.release",  # first: gives the reserved hugetlb pool back to the page
    #                       allocator, so the memory settings after it act on all of RAM.
    "thp.mode",  # after hugepages.release: THP builds its huge pages from the memory
    #              released there, not only from what was free before.
    "sysctl.swappiness",  # no dependency on another fix: one kernel value and its
    #                       sysctl.d file, grouped with the memory fixes.
    "sysctl.numa_balancing",  # no dependency either: where the model's pages stay is a
    #                           memory setting, so with those, before the CPU fixes.
    "spd.driver",  # no dependency: a read-only driver that changes no memory setting; with
    #                the memory fixes, before the CPU ones.
    "memlock.limit",  # files only, effective at the next login or service restart:
    #                   nothing else here reads them, so anywhere; last of the memory ones.
    "rtprio.limit",  # files only too (limits.d, a service drop-in), read by nothing else:
    #                  beside memlock.limit, whose placement it shares.
    # Then the CPUs llama-server runs on.
    "cpu.governor",  # before cpu.boost: where tuned or power-profiles-daemon runs, this
    #                  switches its profile, and a profile switch may set boost itself
    #                  (tuned's cpu plugin has boost and no_turbo options): boost written
    #                  after it is not overwritten by it. Revert then restores boost first.
    "cpu.boost",  # after cpu.governor (above).
    "cpu.affinity",  # last: it re-pins a running process, the one change lost when that
    #                  process exits; its threads move onto CPUs already at full clock.
]

"""rtprio.limit: let llama-server run its threads at ``--prio 2`` (SCHED_FIFO priority 80).

A pam_limits ``rtprio 80`` entry for the launching user (next login), or
``LimitRTPRIO=80`` for a service (``--service NAME``): the placement is memlock.limit's
(doctor/fixing/limits.py). 80 is what ggml asks for at --prio 2 (high); realtime (3)
asks for 90 and is not planned.
"""

from __future__ import annotations

from q3cn_doctor.fixing.limits import UNLIMITED, PamLimitFix
from q3cn_doctor.plan.cpu import PRIO_HIGH_RTPRIO as THREAD_PRIORITY


class Rtprio(PamLimitFix):
    id = "rtprio.limit"
    title = f"Let llama-server raise its threads' priority (rtprio {THREAD_PRIORITY})"
    checks = ("server.rtprio",)
    ITEM, VALUE = "rtprio", str(THREAD_PRIORITY)
    UNIT_KEY, UNIT_VALUE = "LimitRTPRIO", str(THREAD_PRIORITY)

    def enough(self, value: str) -> bool:
        value = value.lower()
        return value in UNLIMITED or (value.isdecimal() and int(value) >= THREAD_PRIORITY)


FIX = Rtprio()

"""memlock.limit: let llama-server lock the model in RAM (``--mlock``).

For the launching user, a pam_limits entry in /etc/security/limits.d (takes effect
at the next login). With ``--service NAME``, a systemd drop-in
``LimitMEMLOCK=infinity`` for that llama-server service (after a daemon-reload and
a restart of the service). How the files are placed: doctor/fixing/limits.py.
"""

from __future__ import annotations

from q3cn_doctor.fixing.limits import (  # noqa: F401 - the hooks use them
    UNIT_DIRS,
    PamLimitFix,
    service_unit,
)


class Memlock(PamLimitFix):
    id = "memlock.limit"
    title = "Let llama-server lock the model in RAM (memlock unlimited)"
    checks = ("memory.memlock",)
    ITEM, VALUE = "memlock", "unlimited"
    UNIT_KEY, UNIT_VALUE = "LimitMEMLOCK", "infinity"


FIX = Memlock()

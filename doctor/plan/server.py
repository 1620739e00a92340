"""What the launch will ask of llama-server, for the checks that judge it beforehand."""

from __future__ import annotations

from q3cn_doctor.facts import Facts
from q3cn_doctor.facts.model import server_arg
from q3cn_doctor.options import Options
from q3cn_doctor.parsers.procfs import bounded_int

LLAMA_SERVER_PORT = 8080
"""llama-server's --port default, where its --help does not say (a build too old to run)."""


def planned_port(options: Options, facts: Facts) -> int:
    """The port llama-server will listen on: a --port among its own arguments (config
    file ``args``, ``launch -- ...``) wins over the plan's (``--port``), as it does in the
    launch; else the build's own default."""
    given = server_arg(list(options.server_args), "--port")
    port = bounded_int(given)
    if port is not None and 0 < port <= 65535:
        return port
    if options.port:
        return options.port
    server = facts.get("server")
    return getattr(server, "default_port", None) or LLAMA_SERVER_PORT

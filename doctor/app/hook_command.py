"""``check --hook``: the package manager's post-update check, from the command line."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import click
from q3cn_doctor.app.session import build_options, make_host
from q3cn_doctor.hooks.state import hook_check, print_hook_result


def check_hook(ctx: Any, params: dict[str, Any], plugins: bool, conflicting: list[str]) -> None:
    """``check --hook`` from the command line: print the result and return (exit 0)."""
    if conflicting:
        raise click.UsageError(f"--hook cannot be combined with {', '.join(conflicting)}")
    if params.get("snapshot"):
        raise click.UsageError("--hook re-checks this machine (or a --root tree), not a "
                               "snapshot")
    result = hook_check(lambda: build_options(ctx, params), make_host, plugins)
    print_hook_result(result)
    if result.timed_out:
        # A check is stuck in its thread (a hung driver, a blocked read): do not wait for
        # it, and do not let the interpreter's shutdown wait for it either.
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(0)

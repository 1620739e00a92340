"""The options every host-reading command shares, after the config file is merged in."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_CTX_SIZE = 131072  # the guide's context length
DEFAULT_PROFILE = "qwen3-coder-next-mxfp4"


@dataclass
class Options:
    snapshot: str | None = None
    root: str | None = None
    model: str | None = None
    profile: str = DEFAULT_PROFILE
    server: str | None = None
    ctx_size: int = DEFAULT_CTX_SIZE
    ctx_size_given: bool = False  # chosen by the user: never capped at the trained context
    user: str | None = None
    config: str | None = None
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    plugins: bool = True
    ram_rated: int | None = None  # MT/s the user says the RAM is sold for (--ram-rated)
    measure: bool = False  # --measure: time the RAM's read bandwidth (live machine only)
    port: int | None = None  # llama-server's port (launch --port, or the config file)
    host: str | None = None  # llama-server's --host, from the config file
    alias: str | None = None  # llama-server's --alias, from the config file
    server_args: list[str] = field(default_factory=list)  # config `args`, then launch's extras
    tune: dict | None = None  # the config file's [tune] (tune --save), plan/tuned.py
    no_tune: bool = False  # --no-tune: launch without any saved tune
    seed: int | None = None  # llama-server's --seed, from the config file
    serve_for: str = "agent"  # launch --for: agent, chat or batch (plan/serving.py)
    server_env: dict[str, str] = field(default_factory=dict)  # from an imported command
    affinity: str | None = None  # CPUs of an imported command's taskset -c

    @property
    def ctx_chosen(self) -> bool:
        """The context is the user's (given, or other than the default): never capped."""
        return self.ctx_size_given or self.ctx_size != DEFAULT_CTX_SIZE

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
    user: str | None = None
    config: str | None = None
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    plugins: bool = True

"""One point of the tuning space, in llama-bench's and llama-server's spellings.

A ``Setting`` holds what ``tune`` varies and ``bench speed`` measures: threads, batch and
ubatch, the KV cache type, the load mode, and the expert placement (``--n-cpu-moe``
layers whose experts stay in RAM). ``None`` leaves a value to the program's default.
``from_server_args`` reads the setting a launch plan's command line amounts to, so a
measurement runs what ``launch`` would run; ``server_args`` writes a setting back in
the flags a llama-server build accepts (its --help, parsers/server_help.py).
"""

from __future__ import annotations

import contextlib

from msgspec import Struct
from msgspec.structs import replace
from q3cn_doctor.parsers.server_help import Build
from q3cn_doctor.records import plain

LOAD_MODES = ("mmap", "none", "mlock")  # llama.cpp --load-mode values the tune tries

# llama-server's flags (every spelling the builds use) -> the setting field they set.
_SERVER_FLAGS = {
    "--threads": "threads", "-t": "threads",
    "--threads-batch": "threads_batch", "-tb": "threads_batch",
    "--batch-size": "batch", "-b": "batch",
    "--ubatch-size": "ubatch", "-ub": "ubatch",
    "--cache-type-k": "cache_type", "-ctk": "cache_type",
    "--n-cpu-moe": "n_cpu_moe", "-ncmoe": "n_cpu_moe",
    "--fit-target": "fit_target", "-fitt": "fit_target",
    "--load-mode": "load_mode", "-lm": "load_mode",
    "--n-gpu-layers": "gpu_layers", "--gpu-layers": "gpu_layers", "-ngl": "gpu_layers",
}
_INTEGERS = {"threads", "threads_batch", "batch", "ubatch", "n_cpu_moe", "fit_target",
             "gpu_layers"}


class Setting(Struct, frozen=True):
    """One point of the tune space: the flags that change speed, None where left to the plan."""
    threads: int | None = None
    threads_batch: int | None = None  # llama-server only: llama-bench has one -t for both
    batch: int | None = None
    ubatch: int | None = None
    cache_type: str | None = None  # K and V alike (f16, q8_0, q4_0)
    load_mode: str | None = None  # mmap, none (read into RAM), mlock
    n_cpu_moe: int | None = None  # layers whose experts stay in RAM (GPU builds)
    fit_target: int | None = None  # MiB left free per GPU by --fit
    gpu_layers: int | None = None  # -ngl where the plan sets it (carried, never tuned)

    def changed(self, **values: object) -> Setting:
        return replace(self, **values)

    def key(self) -> tuple:
        """What a measurement depends on (threads_batch rides on threads in llama-bench)."""
        return tuple(getattr(self, name) for name in self.__struct_fields__
                     if name != "threads_batch")

    def label(self) -> str:
        parts = []
        for name, short in (("threads", "t"), ("batch", "b"), ("ubatch", "ub"),
                            ("cache_type", "kv "), ("load_mode", "load "),
                            ("n_cpu_moe", "cpu-moe "), ("fit_target", "fit ")):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{short}{value}")
        return " ".join(parts) or "defaults"

    def to_json(self) -> dict:
        return {name: value for name, value in plain(self).items() if value is not None}

    @classmethod
    def from_json(cls, data: dict) -> Setting:
        known = set(cls.__struct_fields__)
        return cls(**{name: value for name, value in data.items() if name in known})

    # -- llama-bench ---------------------------------------------------------------------
    def bench_args(self, flags: set[str]) -> list[str]:
        """The setting as llama-bench arguments, in the names this llama-bench lists."""
        args: list[str] = []

        def add(names: tuple[str, ...], value: object) -> None:
            name = next((n for n in names if n in flags), None)
            if value is not None and name is not None:
                args.extend([name, str(value)])

        add(("-t", "--threads"), self.threads)
        add(("-ngl", "--n-gpu-layers"), self.gpu_layers)
        add(("-b", "--batch-size"), self.batch)
        add(("-ub", "--ubatch-size"), self.ubatch)
        add(("-ctk", "--cache-type-k"), self.cache_type)
        add(("-ctv", "--cache-type-v"), self.cache_type)
        add(("-ncmoe", "--n-cpu-moe"), self.n_cpu_moe)
        add(("-fitt", "--fit-target"), self.fit_target)
        if self.load_mode is not None:
            if "-lm" in flags or "--load-mode" in flags:
                add(("-lm", "--load-mode"), self.load_mode)
            elif self.load_mode != "mlock":  # older llama-bench: only mmap on or off
                add(("-mmp", "--mmap"), 0 if self.load_mode == "none" else 1)
        return args

    def bench_can_run(self, flags: set[str]) -> str | None:
        """None where this llama-bench can express the setting, else what it lacks."""
        if self.load_mode == "mlock" and not ({"-lm", "--load-mode"} & flags):
            return "this llama-bench has no --load-mode (mlock)"
        if self.n_cpu_moe is not None and not ({"-ncmoe", "--n-cpu-moe"} & flags):
            return "this llama-bench has no --n-cpu-moe"
        if self.fit_target is not None and not ({"-fitt", "--fit-target"} & flags):
            return "this llama-bench has no --fit-target"
        return None

    # -- llama-server --------------------------------------------------------------------
    def server_args(self, build: Build) -> list[str]:
        """The setting as llama-server arguments this build accepts (others left out)."""
        args: list[str] = []

        def add(flag: str, value: object) -> None:
            if value is not None and build.knows(flag):
                args.extend([flag, str(value)])

        add("--threads", self.threads)
        add("--threads-batch", self.threads_batch)
        add("--n-gpu-layers", self.gpu_layers)
        add("--batch-size", self.batch)
        add("--ubatch-size", self.ubatch)
        add("--cache-type-k", self.cache_type)
        add("--cache-type-v", self.cache_type)
        add("--n-cpu-moe", self.n_cpu_moe)
        add("--fit-target", self.fit_target)
        if self.load_mode is not None:
            if build.knows("--load-mode"):
                args += ["--load-mode", self.load_mode]
            elif self.load_mode == "none" and build.knows("--no-mmap"):
                args.append("--no-mmap")
            elif self.load_mode == "mlock" and build.knows("--mlock"):
                args += ["--no-mmap", "--mlock"] if build.knows("--no-mmap") else ["--mlock"]
        return args

    @classmethod
    def from_server_args(cls, argv: list[str]) -> Setting:
        """The setting a llama-server command line amounts to (its last word wins)."""
        values: dict[str, object] = {}
        mmap, mlock = True, False
        index = 0
        while index < len(argv):
            word = argv[index]
            flag, _, inline = word.partition("=")
            name = _SERVER_FLAGS.get(flag)
            if name is not None:
                value = inline if inline else (argv[index + 1] if index + 1 < len(argv)
                                               else "")
                index += 0 if inline else 1
                if name in _INTEGERS:
                    with contextlib.suppress(ValueError):
                        values[name] = int(value)
                else:
                    values[name] = value
            elif word == "--no-mmap":
                mmap = False
            elif word == "--mlock":
                mlock = True
            index += 1
        if "load_mode" not in values and (mlock or not mmap):
            values["load_mode"] = "mlock" if mlock and not mmap else ("none" if not mmap
                                                                      else "mmap")
        return cls(**values)  # type: ignore[arg-type]

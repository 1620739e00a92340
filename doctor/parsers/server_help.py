"""What a llama-server build accepts, read from its ``--help``, and the launch plan
written in that build's own words.

llama-server's flags drift between builds (see ../shared/FIELD-NOTES.md): ``--mlock``
and ``--no-mmap`` became ``-lm/--load-mode`` and were then removed; ``-fa`` took a
value (``on|off|auto``); ``--fit``, ``--fit-target`` and ``--fit-ctx`` exist only in
newer builds; newer builds reject any flag they do not know. So the plan is a list of
intents (lock the model in RAM, flash attention on, fit the GPU...) and ``translate``
turns each into the flags this build has, or leaves it out and says why. Nothing here
reads the machine: the help text comes from facts.server.
"""

from __future__ import annotations

import re

from msgspec import Struct, field

HELP_COLUMN = 40  # llama.cpp prints each option's description from this column
_CHOICES = re.compile(r"^[\[{<]([^\]}>]*)[\]}>]$")
_DESCRIBED_CHOICE = re.compile(r"^- ([A-Za-z0-9+_-]+):")
_DEFAULT = re.compile(r"\(default: ([^()]*(?:\([^()]*\)[^()]*)*)\)")
_ENV = re.compile(r"\(env: ([A-Z0-9_]+)\)")


class FlagSpec(Struct):
    """One option of a build's --help: every name it answers to and what it takes."""

    names: list[str]
    arg: str = ""  # "N", "[on|off|auto]", "<0|1>", "MODE"...; "" for a plain switch
    choices: list[str] = field(default_factory=list)
    default: str | None = None
    env: str | None = None

    @property
    def name(self) -> str:
        """The canonical name: the first ``--`` name (``--flash-attn`` for ``-fa``)."""
        return next((n for n in self.names if n.startswith("--")), self.names[0])

    @property
    def takes_value(self) -> bool:
        return bool(self.arg)

    @property
    def value_optional(self) -> bool:
        return self.arg.startswith("[")

    def to_json(self) -> dict:
        return {"names": self.names, "arg": self.arg, "choices": self.choices,
                "default": self.default, "env": self.env}


def parse_help(text: str) -> list[FlagSpec]:
    """The options of ``llama-server --help``, in the order printed."""
    specs: list[FlagSpec] = []
    current: FlagSpec | None = None
    description: list[str] = []

    def close() -> None:
        if current is None:
            return
        joined = " ".join(part.strip() for part in description)
        default = _DEFAULT.search(joined)
        env = _ENV.search(joined)
        current.default = default.group(1).strip().strip("'\"") if default else None
        current.env = env.group(1) if env else None
        if not current.choices and current.arg and current.arg.isupper():
            current.choices = [m.group(1) for part in description
                               if (m := _DESCRIBED_CHOICE.match(part.strip()))]
        specs.append(current)

    for line in text.splitlines():
        if line.startswith("-") and not line.startswith("-----"):
            close()
            if (len(line) > HELP_COLUMN and line[HELP_COLUMN - 2:HELP_COLUMN] == "  "
                    and line[HELP_COLUMN] != " "):
                names_part, rest = line[:HELP_COLUMN], line[HELP_COLUMN:]
            else:
                names_part, rest = line, ""
            current = _spec(names_part)
            description = [rest] if rest else []
        elif current is not None and line.startswith(" "):
            description.append(line)
        elif line.startswith("-----") or not line.strip():
            close()
            current, description = None, []
    close()
    return [spec for spec in specs if spec.names]


def _spec(names_part: str) -> FlagSpec:
    names: list[str] = []
    arg = ""
    for token in (t.strip() for t in names_part.strip().split(", ")):
        if not token.startswith("-"):
            continue
        name, _, rest = token.partition(" ")
        names.append(name.rstrip(","))
        if rest.strip():
            arg = rest.strip()
    choices: list[str] = []
    match = _CHOICES.match(arg)
    if match:
        choices = [c for c in re.split(r"[|,]", match.group(1)) if c and c != ".."]
    return FlagSpec(names, arg, choices)


class Build:
    """A build's options by every name they answer to."""

    def __init__(self, specs: list[FlagSpec]) -> None:
        self.specs = specs
        self._by_name = {name: spec for spec in specs for name in spec.names}

    @classmethod
    def from_help(cls, text: str) -> Build:
        return cls(parse_help(text))

    def spec(self, name: str) -> FlagSpec | None:
        return self._by_name.get(name)

    def knows(self, name: str) -> bool:
        return name in self._by_name

    def canonical(self, name: str) -> str:
        spec = self.spec(name)
        return spec.name if spec else name

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def split_args(self, args: list[str]) -> list[list[str]]:
        """Group an argument list into [flag, values...] by what each flag takes here; an
        unknown flag takes the words up to the next flag. A leading non-flag is its own."""
        groups: list[list[str]] = []
        index = 0
        while index < len(args):
            arg = args[index]
            group = [arg]
            index += 1
            name = arg.partition("=")[0]
            spec = self.spec(name) if arg.startswith("-") and "=" not in arg else None
            if spec is not None:
                if spec.takes_value and not spec.value_optional:
                    if index < len(args):
                        group.append(args[index])
                        index += 1
                elif spec.value_optional and index < len(args) and (
                        args[index] in spec.choices or not args[index].startswith("-")):
                    group.append(args[index])
                    index += 1
            elif arg.startswith("-") and "=" not in arg and not _number(arg):
                while index < len(args) and (not args[index].startswith("-")
                                             or _number(args[index])):
                    group.append(args[index])
                    index += 1
            groups.append(group)
        return groups

    def unknown(self, args: list[str]) -> list[str]:
        """The flags in ``args`` this build does not accept."""
        return [group[0] for group in self.split_args(args)
                if group[0].startswith("-") and not _number(group[0])
                and not self.knows(group[0].partition("=")[0])]


def _number(text: str) -> bool:
    return bool(re.fullmatch(r"-?\d+(\.\d+)?", text))


# -- the plan and its translation --------------------------------------------------------------

SAMPLING = (("--temp", "1.0"), ("--top-p", "0.95"), ("--top-k", "40"), ("--min-p", "0.01"))
"""The guide's sampling settings (Qwen3-Coder's recommended ones)."""

# Flags of one concern: an extra argument naming any of them replaces the plan's whole group.
CONFLICTS = (
    {"--load-mode", "--mlock", "--no-mmap", "--mmap", "--no-mlock"},
    {"--cpu-mask", "--cpu-range"},
    {"--cpu-mask-batch", "--cpu-range-batch"},
    {"--fit", "--no-fit"},
)


class Intents(Struct):
    """What the launch wants, before any build's spelling."""

    model: str
    port: int
    host: str | None = None
    alias: str | None = None
    ctx_size: int = 131072
    jinja: bool = True
    sampling: tuple[tuple[str, str], ...] = SAMPLING
    gpu: bool = False  # part of the model goes on a GPU
    fit_target_mib: list[int] = field(default_factory=lambda: [1024])
    n_cpu_moe: int | None = None  # where --fit is missing: layers whose experts stay in RAM
    gpu_layers: int | None = None  # where --fit is missing: -ngl (None: all)
    lock: bool = False  # keep the model in RAM (--load-mode mlock / --no-mmap --mlock)
    thread_args: list[str] = field(default_factory=list)  # from the CPU plan
    affinity_args: list[str] = field(default_factory=list)  # --cpu-mask/--cpu-range/--cpu-strict
    flash_attn: bool = True
    batch: int = 2048
    ubatch: int = 512
    prio: int | None = None
    sampling_why: str = "the guide's sampling settings"
    ctx_why: str = "the planned context"
    no_mmap: bool = False  # not locked, but read into RAM (CUDA: pinned host buffers)
    seed: int | None = None
    serving: list[tuple[str, list[str], str]] = field(default_factory=list)  # flag, values, why


class Arg(Struct):
    """One flag of the command with its values, and why it is there."""

    flag: str
    values: list[str]
    why: str

    def argv(self) -> list[str]:
        return [self.flag, *self.values]


class Translation(Struct):
    """The plan's flags in this build's spelling, and how they were translated."""
    args: list[Arg]
    notes: list[str]  # how the plan became this build's flags
    dropped: list[str]  # intents this build has no flag for
    affinity_by_flags: bool  # the build pins its own threads (--cpu-mask/--cpu-range)
    extra: list[str]  # the user's extra arguments, appended last (they win)
    unknown_extra: list[str]  # extra flags this build does not know

    def argv(self) -> list[str]:
        return [part for arg in self.args for part in arg.argv()] + self.extra


def translate(intents: Intents, build: Build, extra: list[str] | None = None) -> Translation:
    """The plan in this build's flags. Every flag emitted is one the build lists."""
    args: list[Arg] = []
    notes: list[str] = []
    dropped: list[str] = []

    def add(flag: str, values: list[str], why: str) -> bool:
        if build.knows(flag):
            args.append(Arg(flag, values, why))
            return True
        dropped.append(f"{flag}: this build has no such flag ({why})")
        return False

    add("--model", [intents.model], "the model file")
    if intents.host:
        add("--host", [intents.host], "the address from the config file")
    port = build.spec("--port")
    add("--port", [str(intents.port)],
        "always given: the default differs between builds"
        + (f" (this one: {port.default})" if port and port.default else ""))
    if intents.alias:
        add("--alias", [intents.alias], "the model name clients see")
    if intents.jinja:
        add("--jinja", [], "the model's own chat template (tool calls need it)")
    if intents.seed is not None:
        add("--seed", [str(intents.seed)], "the seed from the config file")
    for flag, value in intents.sampling:
        add(flag, [value], intents.sampling_why)
    add("--ctx-size", [str(intents.ctx_size)], intents.ctx_why)
    if intents.gpu:
        _gpu(intents, build, args, notes, dropped)
    if intents.lock:
        _lock(build, args, notes, dropped)
    elif intents.no_mmap:
        _no_mmap(build, args, dropped)
    for group in _pairs(intents.thread_args):
        add(group[0], group[1:], _THREAD_WHY.get(group[0], "the CPU plan"))
    affinity_by_flags = False
    if intents.affinity_args:
        known = all(build.knows(flag) for flag in intents.affinity_args[::2])
        if known and build.knows("--cpu-strict"):
            for group in _pairs(intents.affinity_args):
                add(group[0], group[1:], "the CPU plan's placement, each thread pinned")
            affinity_by_flags = True
            notes.append("Threads are placed by llama.cpp itself (--cpu-strict 1).")
        else:
            notes.append("This build has no --cpu-mask/--cpu-range/--cpu-strict: the launch "
                         "sets the CPU affinity of the process instead.")
    if intents.flash_attn:
        spec = build.spec("-fa") or build.spec("--flash-attn")
        if spec is None:
            dropped.append("-fa: this build has no flash attention flag")
        else:
            # The short name where this build lists it (both real builds do), else its own.
            flash = "-fa" if "-fa" in spec.names else spec.name
            if spec.takes_value:
                args.append(Arg(flash, ["on"], "flash attention: less KV traffic, smaller "
                                               "compute buffers (this build's -fa takes a "
                                               "value)"))
            else:
                args.append(Arg(flash, [], "flash attention (this build's -fa takes no value)"))
                notes.append("-fa: this build's flag takes no value; -fa on would be rejected.")
    batch_why = next((why for flag, _, why in intents.serving if flag == "--ubatch-size"),
                     None)
    add("--batch-size", [str(intents.batch)], batch_why or "the guide's logical batch")
    add("--ubatch-size", [str(intents.ubatch)], batch_why or "the guide's physical batch")
    for flag, values, why in intents.serving:
        if flag != "--ubatch-size":
            add(flag, values, why)
    if intents.prio is not None:
        add("--prio", [str(intents.prio)], "high thread priority, permitted here")
    extra = list(extra or [])
    kept = _not_replaced(args, build, extra, notes)
    return Translation(kept, notes, dropped, affinity_by_flags, extra, build.unknown(extra))


def _not_replaced(args: list[Arg], build: Build, extra: list[str], notes: list[str]
                  ) -> list[Arg]:
    """The plan's flags that none of the user's own arguments replaces (a flag of one
    concern, CONFLICTS, replaces the plan's whole group)."""
    replaced = set()
    for group in build.split_args(extra):
        name = build.canonical(group[0].partition("=")[0])
        replaced.add(name)
        for conflict in CONFLICTS:
            if name in {build.canonical(n) for n in conflict} or name in conflict:
                replaced |= {build.canonical(n) for n in conflict} | conflict
    kept = [arg for arg in args if build.canonical(arg.flag) not in replaced
            and arg.flag not in replaced]
    overridden = [arg.flag for arg in args if arg not in kept]
    if overridden:
        notes.append("Replaced by your extra arguments: " + ", ".join(overridden) + ".")
    return kept


# Why each of the CPU plan's flags (CpuPlan.thread_args) has its value.
_THREAD_WHY = {
    "--threads": "the CPU plan: one generation thread per fast core",
    "--threads-batch": "the CPU plan: prompt processing on every CPU of the plan",
    "--numa": "the CPU plan: several NUMA nodes",
}


def _pairs(args: list[str]) -> list[list[str]]:
    """[--threads, 6, --threads-batch, 12] -> [[--threads, 6], [--threads-batch, 12]]."""
    groups: list[list[str]] = []
    for arg in args:
        if arg.startswith("-") and not _number(arg):
            groups.append([arg])
        elif groups:
            groups[-1].append(arg)
    return groups


def _gpu(intents: Intents, build: Build, args: list[Arg], notes: list[str],
         dropped: list[str]) -> None:
    fit = build.spec("--fit")
    target = ",".join(str(t) for t in intents.fit_target_mib) or "1024"
    if fit is not None:
        args.append(Arg("--fit", ["on"] if fit.takes_value else [],
                        "this build fits layers and experts to the VRAM itself"))
        if build.knows("--fit-target"):
            args.append(Arg("--fit-target", [target],
                            "MiB left free on each GPU for the desktop and driver"))
        notes.append(f"--fit on --fit-target {target}: this build places layers and experts "
                     "itself; --fit-ctx is left out (it only acts with -c 0).")
        return
    layers = "999" if intents.gpu_layers is None else str(intents.gpu_layers)
    if build.knows("--n-gpu-layers"):
        args.append(Arg("--n-gpu-layers", [layers],
                        "every layer's attention on the GPU" if intents.gpu_layers is None
                        else "the layers whose attention and KV fit the GPU"))
    if intents.n_cpu_moe and build.knows("--n-cpu-moe"):
        args.append(Arg("--n-cpu-moe", [str(intents.n_cpu_moe)],
                        "experts of the first N layers stay in RAM: what the VRAM plan "
                        "cannot hold"))
        notes.append(f"This build has no --fit: --n-gpu-layers {layers} --n-cpu-moe "
                     f"{intents.n_cpu_moe} from the VRAM plan instead.")
    elif intents.n_cpu_moe:
        dropped.append(f"--n-cpu-moe {intents.n_cpu_moe}: this build has neither --fit nor "
                       "--n-cpu-moe; the experts follow --n-gpu-layers")
    else:
        notes.append(f"This build has no --fit: --n-gpu-layers {layers} from the VRAM plan.")


def _lock(build: Build, args: list[Arg], notes: list[str], dropped: list[str]) -> None:
    load = build.spec("--load-mode")
    if load is not None and (not load.choices or "mlock" in load.choices):
        args.append(Arg("--load-mode", ["mlock"],
                        "the model read into RAM and locked there: never swapped or evicted"))
        if build.knows("--mlock"):
            notes.append("--load-mode mlock rather than the legacy --no-mmap --mlock, which "
                         "this build still lists.")
        else:
            notes.append("--load-mode mlock: this build replaced --mlock/--no-mmap (it rejects "
                         "them).")
        return
    if build.knows("--mlock"):
        if build.knows("--no-mmap"):
            args.append(Arg("--no-mmap", [], "the model read into RAM, not mapped"))
        args.append(Arg("--mlock", [], "and locked there: never swapped or evicted"))
        notes.append("--no-mmap --mlock, in this order: in builds that also know --load-mode, "
                     "--mlock --no-mmap does not lock (llama.cpp PR #26133).")
        return
    dropped.append("locking the model in RAM: this build has neither --load-mode nor --mlock")


def _no_mmap(build: Build, args: list[Arg], dropped: list[str]) -> None:
    why = ("read into RAM rather than mapped: on a CUDA build the CPU weights then sit in "
           "pinned host buffers, which cannot be swapped out and upload faster")
    load = build.spec("--load-mode")
    if load is not None and (not load.choices or "none" in load.choices):
        args.append(Arg("--load-mode", ["none"], why))
    elif build.knows("--no-mmap"):
        args.append(Arg("--no-mmap", [], why))
    else:
        dropped.append("--no-mmap: this build has neither --load-mode nor --no-mmap")


# -- the user's own command, in this build's words ---------------------------------------------

FLASH_VALUES = {"on": "on", "1": "on", "true": "on", "off": "off", "0": "off", "false": "off",
                "auto": "auto"}
LOCK_FLAGS = ("--mlock", "--no-mmap", "--mmap", "--no-mlock")
LOAD_MODE_FLAGS = ("--load-mode", "-lm")
FIT_FLAGS = ("--fit", "-fit")
FIT_VALUE_FLAGS = ("--fit-target", "-fitt", "--fit-ctx", "-fitc")
CHECKPOINT_FLAGS = ("-ctxcp", "--ctx-checkpoints", "--swa-checkpoints")


class Imported(Struct):
    """A user's llama-server arguments as this build spells them."""

    args: list[str]  # without the model (the launch gives it)
    model: str | None
    changes: list[str]  # what was changed, and why


def import_args(args: list[str], build: Build, gpu: bool = True) -> Imported:
    """Translate another build's (or the guide's) arguments for this build: the load mode,
    flash attention's value, --fit where absent, checkpoints' name; a flag this build does
    not know is left out (it would refuse to start). Everything else is kept as given."""
    kept: list[str] = []
    changes: list[str] = []
    model = None
    lock: list[str] = []
    fixed_ctx = server_ctx(args)
    for group in _import_groups(args, build):
        name, value = group[0].partition("=")[0], _value(group)
        if name in ("-m", "--model"):
            model = value
        elif name in LOCK_FLAGS or name in LOAD_MODE_FLAGS:
            lock += [name] + ([value] if value is not None else [])
        elif name in ("-fa", "--flash-attn"):
            kept += _import_flash(build, value, changes)
        elif (name in FIT_FLAGS or name in FIT_VALUE_FLAGS) and not build.knows(name):
            changes.append(f"{' '.join(group)} dropped: this build has no --fit"
                           + ("; the plan places the experts with --n-gpu-layers/--n-cpu-moe "
                              "from the VRAM plan" if gpu and name in FIT_FLAGS else ""))
        elif name in ("--fit-ctx", "-fitc") and fixed_ctx not in (None, 0):
            changes.append(f"{' '.join(group)} dropped: it only acts with -c 0, and the "
                           f"context is fixed at {fixed_ctx} (server.flags)")
        elif name in CHECKPOINT_FLAGS and not build.knows(name):
            kept += _import_checkpoints(build, group, changes)
        elif not build.knows(name):
            changes.append(f"{' '.join(group)} dropped: this build does not know {name} "
                           "(it would refuse to start)")
        else:
            kept += group
    kept += _import_lock(build, lock, changes)
    return Imported(kept, model, changes)


def server_ctx(args: list[str]) -> int | None:
    """The -c/--ctx-size in an argument list, as a number (None where absent)."""
    found = None
    for index, arg in enumerate(args):
        flag, eq, inline = arg.partition("=")
        if flag in ("-c", "--ctx-size"):
            text = inline if eq else (args[index + 1] if index + 1 < len(args) else "")
            found = int(text) if text.isdecimal() else found
    return found


def _value(group: list[str]) -> str | None:
    flag, eq, inline = group[0].partition("=")
    return inline if eq else (group[1] if len(group) > 1 else None)


def _import_groups(args: list[str], build: Build) -> list[list[str]]:
    """[flag, values...] groups, with the drifted flags' own arity: -fa and --fit take an
    optional on|off|auto, --mlock and --no-mmap none, whatever this build says."""
    groups: list[list[str]] = []
    index = 0
    while index < len(args):
        word = args[index]
        name = word.partition("=")[0]
        if "=" not in word and (name in ("-fa", "--flash-attn") + FIT_FLAGS):
            nxt = args[index + 1] if index + 1 < len(args) else None
            take = nxt is not None and nxt.lower() in FLASH_VALUES
            groups.append([word] + ([nxt] if take else []))
            index += 2 if take else 1
        elif name in LOCK_FLAGS:
            groups.append([word])
            index += 1
        else:
            group = build.split_args(args[index:])[0]
            groups.append(group)
            index += len(group)
    return groups


def _import_flash(build: Build, value: str | None, changes: list[str]) -> list[str]:
    wanted = FLASH_VALUES.get((value or "on").lower(), "on")
    spec = build.spec("-fa") or build.spec("--flash-attn")
    given = "-fa" + (f" {value}" if value else "")
    if spec is None:
        changes.append(f"{given} dropped: this build has no flash attention flag")
        return []
    flag = "-fa" if "-fa" in spec.names else spec.name
    if spec.takes_value:
        if value is None:
            changes.append(f"-fa -> {flag} on: this build's -fa takes a value")
        return [flag, wanted]
    if wanted == "off":
        changes.append(f"{given} dropped: flash attention is off unless -fa is given in "
                       "this build")
        return []
    if value is not None:
        changes.append(f"{given} -> {flag}: this build's -fa takes no value (it would "
                       "refuse '{value}')".replace("{value}", value))
    return [flag]


def _import_checkpoints(build: Build, group: list[str], changes: list[str]) -> list[str]:
    other = next((name for name in CHECKPOINT_FLAGS if build.knows(name)), None)
    if other is None:
        changes.append(f"{' '.join(group)} dropped: this build makes no context checkpoints")
        return []
    changes.append(f"{group[0]} -> {other}: this build's name for context checkpoints")
    return [other] + group[1:]


def _import_lock(build: Build, words: list[str], changes: list[str]) -> list[str]:
    """--no-mmap/--mlock or --load-mode MODE, in this build's words."""
    if not words:
        return []
    given = " ".join(words)
    mode = next((words[i + 1] for i, w in enumerate(words[:-1]) if w in LOAD_MODE_FLAGS),
                None)
    if mode is None:
        mlock, no_mmap = "--mlock" in words, "--no-mmap" in words
        mode = ("mlock" if mlock and no_mmap else "none" if no_mmap else
                "mmap+mlock" if mlock else "mmap")
    load = build.spec("--load-mode")
    if load is not None and (not load.choices or mode in load.choices):
        if words[0] not in LOAD_MODE_FLAGS:
            changes.append(f"{given} -> --load-mode {mode}: "
                           + ("this build replaced --mlock/--no-mmap (it rejects them)"
                              if not build.knows("--mlock") else "the one spelling whose "
                              "meaning does not depend on order (llama.cpp PR #26133)"))
        return ["--load-mode", mode]
    legacy = {"mlock": ["--no-mmap", "--mlock"], "none": ["--no-mmap"],
              "mmap+mlock": ["--mlock"], "mmap": []}.get(mode)
    if legacy is None or not all(build.knows(flag) for flag in legacy):
        changes.append(f"{given} dropped: this build cannot load the model that way")
        return []
    if legacy != words:
        changes.append(f"{given} -> {' '.join(legacy) or '(mmap, the default)'}: this "
                       "build predates --load-mode" + ("; --no-mmap before --mlock, the "
                                                       "order that locks" if mode == "mlock"
                                                       else ""))
    return legacy

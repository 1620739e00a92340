"""Facts: what several checks share, gathered once per run from the host.

Each section is gathered on first use (``check --only cpu`` reads no GPU) and
remembers the sources it read, so a check that judges a fact cites where the
fact came from. Each section carries a ``basis`` saying how each value was derived.
"""

from __future__ import annotations

from typing import Any, Callable

from msgspec import Struct
from q3cn_doctor.host.base import Host
from q3cn_doctor.options import Options
from q3cn_doctor.records import plain

from . import cgroup, cpu, gpu, memory, model, server, storage, system, thermal

Gatherer = Callable[[Host, Options, "Facts"], Any]

SECTIONS: dict[str, Gatherer] = {
    "system": system.gather,
    "memory": memory.gather,
    "cpu": cpu.gather,
    "nvml": gpu.gather_nvml,
    "gpus": gpu.gather_gpus,
    "sysfs_gpus": gpu.gather_sysfs_gpus,
    "vulkan": gpu.gather_vulkan,
    "cuda_build": gpu.gather_cuda_section,
    "nvcc": gpu.gather_nvcc,
    "model": model.gather,
    "server": server.gather,
    "cgroup": cgroup.gather,
    "storage": storage.gather,
    "thermal": thermal.gather,
    "load": thermal.gather_load,
}


class FactsError(Exception):
    """A section could not be gathered; the checks that need it report an error."""


class Facts:
    """The sections of one run, each gathered once, on first use."""

    def __init__(self, host: Host, options: Options) -> None:
        self.host = host
        self.options = options
        # The commands every run waits on, begun now so they run while the checks are
        # imported (a live host; others do nothing): the virtualization fact's two, and
        # the RAM module listing's first source.
        host.start([*system.VIRT_COMMANDS, memory.DMIDECODE_COMMAND])
        self._values: dict[str, Any] = {}
        self._sources: dict[str, list[str]] = {}
        self._derived: dict[str, Any] = {}

    def section(self, name: str) -> Any:
        if name in self._values:
            for source in self._sources[name]:  # the asking check cites them too
                self.host.note(source)
        else:
            with self.host.tracing() as sources:
                try:
                    value: Any = SECTIONS[name](self.host, self.options, self)
                except Exception as exc:  # remembered, so every check that needs it says so
                    value = FactsError(
                        f"could not gather {name} facts: {type(exc).__name__}: {exc}")
            self._values[name] = value
            self._sources[name] = sources
        value = self._values[name]
        if isinstance(value, FactsError):
            raise value
        return value

    def derived(self, name: str, compute: Callable[[], Any]) -> Any:
        """A value the plan layer derives from these facts (the placement, the speed),
        computed once a run so every check, the launch and the fixes quote the same one.
        A failure is remembered and raised again, like a section's."""
        if name not in self._derived:
            try:
                self._derived[name] = compute()
            except Exception as exc:  # noqa: BLE001 - every reader reports it the same way
                self._derived[name] = exc if isinstance(exc, FactsError) else FactsError(
                    f"could not derive the {name}: {type(exc).__name__}: {exc}")
        value = self._derived[name]
        if isinstance(value, FactsError):
            raise value
        return value

    def get(self, name: str, default: Any = None) -> Any:
        """Section ``name``, or ``default`` where it could not be gathered: for a check
        that only refines its verdict with it (the section's own checks say why)."""
        try:
            return self.section(name)
        except FactsError:
            return default

    @property
    def system(self) -> system.SystemFacts:
        return self.section("system")

    @property
    def memory(self) -> memory.MemoryFacts:
        return self.section("memory")

    @property
    def cpu(self) -> cpu.CpuFacts:
        return self.section("cpu")

    @property
    def nvml(self) -> gpu.NvmlFacts:
        return self.section("nvml")

    @property
    def gpus(self) -> list[dict]:
        return self.section("gpus")

    @property
    def model(self) -> model.ModelFacts:
        return self.section("model")

    @property
    def cuda_build(self) -> gpu.CudaBuild:
        return self.section("cuda_build")

    @property
    def nvcc(self) -> gpu.Nvcc:
        return self.section("nvcc")

    @property
    def server(self) -> server.ServerFacts:
        return self.section("server")

    def sources(self) -> dict[str, list[str]]:
        """What each section gathered so far read (files, commands, NVML), by section."""
        return {name: list(found) for name, found in self._sources.items()}

    @property
    def cgroup(self) -> cgroup.CgroupFacts:
        return self.section("cgroup")

    @property
    def storage(self) -> storage.StorageFacts:
        return self.section("storage")

    @property
    def thermal(self) -> thermal.ThermalFacts:
        return self.section("thermal")

    @property
    def load(self) -> thermal.LoadFacts:
        return self.section("load")

    def to_json(self) -> dict[str, Any]:
        """Every section, gathered now if no check needed it; a failed one as its error."""
        document: dict[str, Any] = {}
        for name in SECTIONS:
            try:
                value = self.section(name)
            except FactsError as exc:
                document[name] = {"error": str(exc)}
                continue
            document[name] = _plain(value)
        return document


def _plain(value: Any) -> Any:
    if isinstance(value, Struct):  # a record that shapes its own JSON says so
        return value.to_json() if hasattr(value, "to_json") else plain(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value

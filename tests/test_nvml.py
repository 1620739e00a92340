"""doctor/nvml.py, the live NVML gatherer, against a stand-in ``pynvml`` module.

This is the one place a stand-in is right: a GPU cannot be a file. The stand-in
follows nvidia-ml-py's interface (NVMLError with .value, NVML_ERROR_* codes,
nvmlMemory_v2, ctypes-like mask words), and each test changes one call.
"""

from __future__ import annotations

import os
import sys
import threading
import types

import psutil
import pytest
from q3cn_doctor.checking.runner import available_checks, run_checks, select
from q3cn_doctor.facts import Facts
from q3cn_doctor.host import nvml
from q3cn_doctor.options import Options

MIB = 1024**2
CODES = {"NVML_ERROR_NOT_SUPPORTED": 3, "NVML_ERROR_DRIVER_NOT_LOADED": 9,
         "NVML_ERROR_LIBRARY_NOT_FOUND": 12, "NVML_ERROR_GPU_IS_LOST": 15,
         "NVML_ERROR_UNKNOWN": 999}


class FakeNVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {9: "Driver Not Loaded", 12: "NVML Shared Library Not Found"}.get(
            self.value, f"NVML error {self.value}")


def error(name: str) -> FakeNVMLError:
    return FakeNVMLError(CODES[name])


def raiser(name: str):
    def call(*args, **kwargs):
        raise error(name)
    return call


class Calls(list):
    def __call__(self, name, result=None):
        def call(*args, **kwargs):
            self.append(name)
            return result
        return call


def fake_pynvml(calls: Calls, **overrides) -> types.ModuleType:
    """A pynvml with one RTX 4070 (index 0) and a second GPU (index 1)."""
    module = types.ModuleType("pynvml")
    module.NVMLError = FakeNVMLError
    for name, code in CODES.items():
        setattr(module, name, code)
    module.nvmlMemory_v2 = 0x02000028
    module.NVML_CLOCK_MEM = 2
    handles = {0: "handle-0", 1: "handle-1"}

    def memory(handle, version=None):
        if version == module.nvmlMemory_v2:  # v2: reserved apart from used
            return types.SimpleNamespace(total=12282 * MIB, reserved=229 * MIB,
                                         used=412 * MIB, free=11641 * MIB)
        return types.SimpleNamespace(total=12282 * MIB, used=641 * MIB, free=11641 * MIB)

    def processes(handle):
        return [types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=512 * MIB),
                types.SimpleNamespace(pid=2 ** 22 + 12345, usedGpuMemory=None)]

    functions = {
        "nvmlInit": calls("init"),
        "nvmlShutdown": calls("shutdown"),
        "nvmlSystemGetDriverVersion": lambda: b"570.133.07",
        "nvmlSystemGetCudaDriverVersion": lambda: 99999,  # v1: must not be used
        "nvmlSystemGetCudaDriverVersion_v2": lambda: 12080,
        "nvmlDeviceGetCount": lambda: 2,
        "nvmlDeviceGetHandleByIndex": lambda i: handles[i],
        "nvmlDeviceGetName": lambda h: "NVIDIA GeForce RTX 4070",
        "nvmlDeviceGetUUID": lambda h: f"GPU-{h}",
        "nvmlDeviceGetPciInfo": lambda h: types.SimpleNamespace(busId=b"00000000:01:00.0"),
        "nvmlDeviceGetMemoryInfo": memory,
        "nvmlDeviceGetCudaComputeCapability": lambda h: (8, 9),
        "nvmlDeviceGetMemoryBusWidth": lambda h: 192,
        "nvmlDeviceGetMaxClockInfo": lambda h, clock: {2: 10501}[clock],  # memory only
        "nvmlDeviceGetCurrPcieLinkGeneration": lambda h: 1,
        "nvmlDeviceGetMaxPcieLinkGeneration": lambda h: 4,
        "nvmlDeviceGetGpuMaxPcieLinkGeneration": lambda h: 4,
        "nvmlDeviceGetCurrPcieLinkWidth": lambda h: 16,
        "nvmlDeviceGetMaxPcieLinkWidth": lambda h: 16,
        "nvmlDeviceGetPersistenceMode": lambda h: 0,
        "nvmlDeviceGetPowerManagementLimit": lambda h: 200000,
        "nvmlDeviceGetPowerManagementDefaultLimit": lambda h: 200000,
        "nvmlDeviceGetPowerUsage": lambda h: 31250,  # milliwatts, idle
        "nvmlDeviceGetCurrentClocksEventReasons": lambda h: 0x41,
        "nvmlDeviceGetCurrentClocksThrottleReasons": lambda h: 0xFFFF,  # deprecated: unused
        "nvmlDeviceGetCpuAffinity": lambda h, words: [0b1111, 1] + [0] * (words - 2),
        "nvmlDeviceGetNumaNodeId": raiser("NVML_ERROR_NOT_SUPPORTED"),
        "nvmlDeviceGetComputeRunningProcesses": processes,
        "nvmlDeviceGetGraphicsRunningProcesses": raiser("NVML_ERROR_NOT_SUPPORTED"),
    }
    functions.update(overrides)
    for name, function in functions.items():
        setattr(module, name, function)
    return module


@pytest.fixture
def install(monkeypatch):
    """Put a stand-in pynvml in sys.modules for this test; no earlier hang carries over."""
    monkeypatch.setattr(nvml, "_stuck", None)
    monkeypatch.setattr(nvml, "WSL_NVML", "/nonexistent/libnvidia-ml.so.1")

    def put(**overrides) -> Calls:
        calls = Calls()
        monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(calls, **overrides))
        return calls

    return put


def test_success_gives_the_documented_layout(install):
    calls = install()
    readings = nvml.read_nvml(timeout=5)
    assert calls == ["init", "shutdown"]
    assert readings["init"] == "ok"
    assert readings["driver_version"] == "570.133.07"  # bytes decoded
    assert readings["cuda_driver_version"] == 12080  # the _v2 call, not v1's 99999
    first = readings["devices"][0]
    assert first == {
        "index": 0, "name": "NVIDIA GeForce RTX 4070", "uuid": "GPU-handle-0",
        "pci_bus_id": "00000000:01:00.0",
        "memory_total_bytes": 12282 * MIB, "memory_used_bytes": 412 * MIB,
        "memory_free_bytes": 11641 * MIB, "memory_reserved_bytes": 229 * MIB,
        "memory_api": "v2", "memory_bus_width_bits": 192, "memory_clock_max_mhz": 10501,
        "compute_capability": [8, 9],
        "pcie": {"gen_current": 1, "gen_max": 4, "gen_gpu_max": 4, "width_current": 16,
                 "width_max": 16},
        "persistence_mode": False, "power_limit_mw": 200000, "power_default_limit_mw": 200000,
        "power_usage_mw": 31250,
        "clocks_event_reasons": 0x41,  # the clocks-event call, not the deprecated one
        "cpu_affinity": [0, 1, 2, 3, 64],
        "numa_node": {"error": "NVML_ERROR_NOT_SUPPORTED"},
        "processes": [
            {"pid": os.getpid(), "name": psutil.Process().name(), "used_bytes": 512 * MIB},
            {"pid": 2 ** 22 + 12345, "name": None, "used_bytes": None},
        ],
    }
    assert len(readings["devices"]) == 2


def test_conform_keeps_every_field_the_live_reader_writes(install):
    install()
    readings = nvml.read_nvml(timeout=5)
    assert readings["init"] == "ok"
    assert nvml.conform(readings) == readings  # a field the layout adds is added to _DEVICE


@pytest.mark.parametrize("code, reason", [
    ("NVML_ERROR_DRIVER_NOT_LOADED", "Driver Not Loaded"),
    ("NVML_ERROR_LIBRARY_NOT_FOUND", "NVML Shared Library Not Found"),
])
def test_init_failure_is_named(install, code, reason):
    install(nvmlInit=raiser(code))
    assert nvml.read_nvml(timeout=5) == {"init": code, "reason": reason}


def test_binding_not_installed(install, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    readings = nvml.read_nvml(timeout=5)
    assert readings == {"init": "NVML_ERROR_LIBRARY_NOT_FOUND",
                        "reason": "nvidia-ml-py is not installed"}


def test_no_driver_library_is_told_without_importing_pynvml(monkeypatch):
    """Without libnvidia-ml.so.1 the reading is nvmlInit's own answer, and the ~10 ms
    pynvml import is skipped; with the library there, pynvml is asked as ever."""
    monkeypatch.setattr(nvml, "_stuck", None)
    monkeypatch.setattr(nvml, "WSL_NVML", "/nonexistent/libnvidia-ml.so.1")
    monkeypatch.setattr(nvml, "NVML_LIBRARY", "/nonexistent/libnvidia-ml.so.1")
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    assert nvml.read_nvml(timeout=5) == {"init": "NVML_ERROR_LIBRARY_NOT_FOUND",
                                         "reason": "NVML Shared Library Not Found"}
    assert "pynvml" not in sys.modules
    monkeypatch.setattr(nvml, "NVML_LIBRARY", "libc.so.6")  # loads: pynvml is asked
    assert nvml._library_missing() is False


def test_the_no_library_reason_is_pynvmls_own():
    import pynvml

    error = pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    assert str(error) == nvml.LIBRARY_NOT_FOUND_REASON
    assert nvml._error_name(error) == "NVML_ERROR_LIBRARY_NOT_FOUND"


def test_a_failed_call_is_stored_in_its_place(install):
    calls = install(nvmlDeviceGetPowerManagementDefaultLimit=raiser("NVML_ERROR_NOT_SUPPORTED"),
                    nvmlDeviceGetHandleByIndex=lambda i: "h" if i == 0 else (_ for _ in ()).throw(
                        error("NVML_ERROR_GPU_IS_LOST")))
    readings = nvml.read_nvml(timeout=5)
    assert readings["devices"][0]["power_default_limit_mw"] == {
        "error": "NVML_ERROR_NOT_SUPPORTED"}
    assert readings["devices"][0]["power_limit_mw"] == 200000
    assert readings["devices"][1] == {"index": 1, "error": "NVML_ERROR_GPU_IS_LOST"}
    assert calls[-1] == "shutdown"


def test_device_count_failure_and_binding_bugs(install):
    install(nvmlDeviceGetCount=raiser("NVML_ERROR_UNKNOWN"),
            nvmlSystemGetDriverVersion=lambda: (_ for _ in ()).throw(TypeError("bad")))
    readings = nvml.read_nvml(timeout=5)
    assert readings["devices"] == {"error": "NVML_ERROR_UNKNOWN"}
    assert readings["driver_version"] == {"error": "TypeError"}


def test_v1_memory_where_the_driver_lacks_v2(install):
    def memory(handle, version=None):
        if version is not None:
            raise error("NVML_ERROR_NOT_SUPPORTED")
        return types.SimpleNamespace(total=100, used=60, free=40)

    install(nvmlDeviceGetMemoryInfo=memory)
    device = nvml.read_nvml(timeout=5)["devices"][0]
    assert (device["memory_used_bytes"], device["memory_free_bytes"]) == (60, 40)
    assert device["memory_api"] == "v1" and device["memory_reserved_bytes"] is None


def test_both_process_lists_failing_stores_the_error(install):
    install(nvmlDeviceGetComputeRunningProcesses=raiser("NVML_ERROR_GPU_IS_LOST"))
    device = nvml.read_nvml(timeout=5)["devices"][0]
    assert device["processes"] == {"error": "NVML_ERROR_GPU_IS_LOST"}


def test_a_hang_times_out_and_later_reads_do_not_queue(install):
    release, left = threading.Event(), threading.Event()
    calls = []

    def stuck() -> None:
        calls.append("nvmlInit")
        release.wait(30)
        left.set()

    install(nvmlInit=stuck)
    try:
        readings = nvml.read_nvml(timeout=0.2)
        assert readings["init"] == "timed-out"
        assert "0.2 s" in readings["reason"]
        assert not left.is_set()  # returned while the call was still stuck
        again = nvml.read_nvml(timeout=5)
        # Answered from the stuck call: NVML is not entered again, nothing waits twice.
        assert again == {"init": "timed-out", "reason": "an earlier NVML call has not returned"}
        assert calls == ["nvmlInit"]
    finally:
        release.set()


def test_a_hang_in_a_device_call_times_out_too(install):
    release = threading.Event()
    install(nvmlDeviceGetPersistenceMode=lambda h: release.wait(30))
    try:
        readings = nvml.read_nvml(timeout=0.2)
        assert readings["init"] == "timed-out"
    finally:
        release.set()


def test_live_reading_and_its_replay_give_the_same_findings(install, tmp_path):
    """What the live host reads through pynvml, recorded as a snapshot (nvml.json and the
    sysfs files the checks read), replays to the same findings: the snapshot contract."""
    from q3cn_doctor.host.snapshot import RecordingHost, SnapshotHost

    install()
    specs, _ = available_checks(plugins=False)
    chosen = select(specs, ["gpu.present", "gpu.vram", "gpu.pcie", "gpu.power"], [])

    def outcome(host):
        found = run_checks(Facts(host, Options()), chosen)
        return [(f.id, f.status, f.title, f.observed) for f in found]

    recorder = RecordingHost(str(tmp_path / "snap"), redacted=False)
    live_outcome = outcome(recorder)
    recorder.finish()
    assert ("gpu.present:0", "pass") in [row[:2] for row in live_outcome]
    assert ("gpu.vram:0", "warn") in [row[:2] for row in live_outcome]  # this test holds 512 MiB
    assert outcome(SnapshotHost(str(tmp_path / "snap"))) == live_outcome

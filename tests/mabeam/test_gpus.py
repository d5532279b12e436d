"""GPU discovery, the ``--gpus`` option and the CUDA environment.

This machine has no GPU, so the real NVML path is the CPU-only fallback; the GPU path is
exercised with a fake ``pynvml`` module put in ``sys.modules`` (only the GPU is faked).
"""

from __future__ import annotations

import importlib
import logging
import sys
import types
from dataclasses import dataclass
from typing import Any

import pytest

from mabeam.cluster.gpus import (
    Gpu,
    GpuOptionError,
    GpuSelection,
    device_uuids,
    discover_gpus,
    parse_gpus_option,
    select_gpus,
    visible_devices_env,
)

MIB = 1024 * 1024
UUID_A = "GPU-0d7e5e9c-1111-2222-3333-444444444444"
UUID_B = "GPU-8f3c1a2b-5555-6666-7777-888888888888"


class FakeNVMLError(Exception):
    """Stands for pynvml.NVMLError."""


@dataclass
class FakeMemory:
    total: int
    free: int
    used: int = 0


def _fake_pynvml(
    devices: list[dict[str, Any]], *, init_error: str | None = None
) -> tuple[types.ModuleType, list[str]]:
    """A pynvml stand-in over ``devices``; the list records the calls that matter."""
    calls: list[str] = []
    module = types.ModuleType("pynvml")

    def nvmlInit() -> None:
        calls.append("init")
        if init_error is not None:
            raise FakeNVMLError(init_error)

    def nvmlShutdown() -> None:
        calls.append("shutdown")

    def nvmlDeviceGetCount() -> int:
        return len(devices)

    def nvmlDeviceGetHandleByIndex(index: int) -> dict[str, Any]:
        return devices[index]

    def nvmlDeviceGetUUID(handle: dict[str, Any]) -> Any:
        return handle["uuid"]

    def nvmlDeviceGetName(handle: dict[str, Any]) -> Any:
        return handle["name"]

    def nvmlDeviceGetMemoryInfo(handle: dict[str, Any]) -> FakeMemory:
        if handle.get("lost"):
            raise FakeNVMLError("GPU is lost")
        return FakeMemory(total=handle["total"], free=handle["free"])

    for function in (
        nvmlInit,
        nvmlShutdown,
        nvmlDeviceGetCount,
        nvmlDeviceGetHandleByIndex,
        nvmlDeviceGetUUID,
        nvmlDeviceGetName,
        nvmlDeviceGetMemoryInfo,
    ):
        setattr(module, function.__name__, function)
    return module, calls


def test_discovery_reads_every_gpu_through_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake, calls = _fake_pynvml(
        [
            {
                "uuid": UUID_A,
                "name": "NVIDIA H100 80GB HBM3",
                "total": 81559 * MIB,
                "free": 81000 * MIB,
            },
            # old nvidia-ml-py releases return bytes
            {"uuid": UUID_B.encode(), "name": b"NVIDIA A10", "total": 23028 * MIB + 5, "free": 0},
        ]
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert discover_gpus() == [
        Gpu(0, UUID_A, "NVIDIA H100 80GB HBM3", 81559, 81000),
        Gpu(1, UUID_B, "NVIDIA A10", 23028, 0),
    ]
    assert calls == ["init", "shutdown"]


def test_a_gpu_that_fails_to_answer_is_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake, calls = _fake_pynvml(
        [
            {"uuid": UUID_A, "name": "A", "total": MIB, "free": MIB, "lost": True},
            {"uuid": UUID_B, "name": "B", "total": 2 * MIB, "free": MIB},
        ]
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with caplog.at_level(logging.WARNING, logger="mabeam.cluster.gpus"):
        assert [gpu.uuid for gpu in discover_gpus()] == [UUID_B]
    assert "skipping GPU 0: NVML query failed (GPU is lost)" in caplog.text
    assert calls == ["init", "shutdown"]


def test_nvml_that_fails_to_start_means_a_cpu_only_node(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake, calls = _fake_pynvml([], init_error="Driver Not Loaded")
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with caplog.at_level(logging.INFO, logger="mabeam.cluster.gpus"):
        assert discover_gpus() == []
    assert "NVML is unavailable (FakeNVMLError: Driver Not Loaded); CPU-only node" in caplog.text
    assert calls == ["init"]


def test_a_missing_pynvml_package_means_a_cpu_only_node(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes ``import pynvml`` fail
    with caplog.at_level(logging.INFO, logger="mabeam.cluster.gpus"):
        assert discover_gpus() == []
    assert "nvidia-ml-py (pynvml) cannot be imported" in caplog.text


def test_the_real_nvml_agrees_with_discovery(caplog: pytest.LogCaptureFixture) -> None:
    """On a machine without a driver (this one) the real library fails and we get []; on a
    GPU machine every discovered GPU has a real UUID and memory."""
    pynvml: Any = importlib.import_module("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        with caplog.at_level(logging.INFO, logger="mabeam.cluster.gpus"):
            assert discover_gpus() == []
        assert f"NVML is unavailable ({type(exc).__name__}" in caplog.text
        return
    try:
        expected = pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()
    gpus = discover_gpus()
    assert len(gpus) == expected
    for index, gpu in enumerate(gpus):
        assert gpu.index == index
        assert gpu.uuid.startswith(("GPU-", "MIG-"))
        assert 0 <= gpu.memory_free_mb <= gpu.memory_total_mb


def test_gpu_wire_form_is_plain_data() -> None:
    assert Gpu(1, UUID_A, "H100", 80000, 79000).to_wire() == {
        "index": 1,
        "uuid": UUID_A,
        "name": "H100",
        "memory_total_mb": 80000,
        "memory_free_mb": 79000,
    }


# ----------------------------------------------------------------------------- --gpus

FOUND = [Gpu(0, UUID_A, "H100", 80000, 80000), Gpu(1, UUID_B, "H100", 80000, 80000)]


def test_parse_gpus_option_keywords_and_lists() -> None:
    assert parse_gpus_option("all") == GpuSelection("all")
    assert parse_gpus_option(" None ") == GpuSelection("none")
    assert parse_gpus_option("1,0") == GpuSelection("list", (1, 0))
    assert parse_gpus_option(f"{UUID_B}, 0") == GpuSelection("list", (UUID_B, 0))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty value"),
        ("0,0", "names a GPU twice"),
        ("cuda:0", "bad entry 'cuda:0'"),
        ("-1", "bad entry '-1'"),
        ("0,,1", "bad entry ''"),
        ("GPU-", "bad entry 'GPU-'"),
    ],
)
def test_parse_gpus_option_refuses_bad_values_clearly(text: str, message: str) -> None:
    with pytest.raises(GpuOptionError, match=message):
        parse_gpus_option(text)


def test_select_gpus_by_keyword_index_and_uuid_in_the_order_given() -> None:
    assert select_gpus(FOUND, parse_gpus_option("all")) == FOUND
    assert select_gpus(FOUND, parse_gpus_option("none")) == []
    assert select_gpus(FOUND, parse_gpus_option("1")) == [FOUND[1]]
    assert select_gpus(FOUND, parse_gpus_option(f"{UUID_B},0")) == [FOUND[1], FOUND[0]]
    assert select_gpus([], parse_gpus_option("all")) == []


def test_select_gpus_refuses_unknown_and_repeated_gpus() -> None:
    with pytest.raises(GpuOptionError, match=r"no GPU 2 on this machine; found: 0=GPU-0d7e"):
        select_gpus(FOUND, parse_gpus_option("2"))
    with pytest.raises(GpuOptionError, match=r"no GPU 'GPU-nope' on this machine; found: none"):
        select_gpus([], parse_gpus_option("GPU-nope"))
    with pytest.raises(GpuOptionError, match="named twice"):
        select_gpus(FOUND, parse_gpus_option(f"0,{UUID_A}"))


# ----------------------------------------------------------------------------- environment


def test_visible_devices_env_lists_uuids_in_pci_order() -> None:
    assert visible_devices_env(FOUND) == {
        "CUDA_VISIBLE_DEVICES": f"{UUID_A},{UUID_B}",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }
    assert visible_devices_env([UUID_B]) == {
        "CUDA_VISIBLE_DEVICES": UUID_B,
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }
    assert visible_devices_env([])["CUDA_VISIBLE_DEVICES"] == ""


def test_device_uuids_accepts_cpu_strings_and_gpus() -> None:
    assert device_uuids("cpu") == [] and device_uuids("") == []
    assert device_uuids(f"{UUID_A}, {UUID_B}") == [UUID_A, UUID_B]
    assert device_uuids([FOUND[1], UUID_A]) == [UUID_B, UUID_A]


def test_visible_devices_env_refuses_what_is_not_a_uuid() -> None:
    for bad in ("", "GPU-a,GPU-b", "GPU a"):
        with pytest.raises(ValueError, match="not a GPU UUID"):
            visible_devices_env([bad])

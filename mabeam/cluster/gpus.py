"""GPU discovery with nvidia-ml-py, the ``--gpus`` override, and the env a task sees.

GPUs are identified by UUID (stable across reboots and driver re-enumeration, unlike
indices). A machine without NVML (no driver, no GPU, the package missing) is a CPU-only
node: ``discover_gpus`` returns ``[]`` and logs why, it never raises.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = (
    "Gpu",
    "GpuOptionError",
    "GpuSelection",
    "device_uuids",
    "discover_gpus",
    "parse_gpus_option",
    "select_gpus",
    "visible_devices_env",
)

logger = logging.getLogger(__name__)

_MIB: Final = 1024 * 1024


class GpuOptionError(ValueError):
    """A ``--gpus`` value is malformed or names a GPU this machine does not have."""


@dataclass(frozen=True, slots=True)
class Gpu:
    """One GPU as NVML reports it; memory in MiB."""

    index: int
    uuid: str
    name: str
    memory_total_mb: int
    memory_free_mb: int

    def to_wire(self) -> dict[str, Any]:
        """A msgpack-able dict for a node's inventory (HELLO/READY)."""
        return {
            "index": self.index,
            "uuid": self.uuid,
            "name": self.name,
            "memory_total_mb": self.memory_total_mb,
            "memory_free_mb": self.memory_free_mb,
        }


def _text(value: Any) -> str:
    """NVML strings are ``str`` in current nvidia-ml-py and ``bytes`` in old releases."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def discover_gpus() -> list[Gpu]:
    """The GPUs NVML sees, in NVML (PCI bus) order; ``[]`` with a logged reason without NVML.

    A GPU that fails to answer (fallen off the bus, say) is skipped with a warning; the
    others are still returned.
    """
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError as exc:
        logger.info("no GPUs: nvidia-ml-py (pynvml) cannot be imported (%s); CPU-only node", exc)
        return []
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
        logger.info("no GPUs: NVML is unavailable (%s: %s); CPU-only node", type(exc).__name__, exc)
        return []
    try:
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            logger.warning("no GPUs: NVML could not count devices (%s)", exc)
            return []
        gpus: list[Gpu] = []
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                gpus.append(
                    Gpu(
                        index=index,
                        uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                        name=_text(nvml.nvmlDeviceGetName(handle)),
                        memory_total_mb=int(memory.total) // _MIB,
                        memory_free_mb=int(memory.free) // _MIB,
                    )
                )
            except Exception as exc:
                logger.warning("skipping GPU %d: NVML query failed (%s)", index, exc)
        return gpus
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception as exc:
            logger.debug("nvmlShutdown failed: %s", exc)


@dataclass(frozen=True, slots=True)
class GpuSelection:
    """A parsed ``--gpus`` value: ``all``, ``none``, or explicit indices / UUIDs."""

    mode: str  # "all", "none" or "list"
    items: tuple[int | str, ...] = ()


def parse_gpus_option(text: str) -> GpuSelection:
    """Parse ``--gpus``: ``all``, ``none``, or a comma list of indices and ``GPU-`` UUIDs.

    Only the syntax is checked here (so a CLI can fail before discovery); ``select_gpus``
    matches the result against the GPUs found.
    """
    value = text.strip()
    if not value:
        raise GpuOptionError("--gpus: empty value; use 'all', 'none', or a list such as 0,1")
    if value.lower() == "all":
        return GpuSelection("all")
    if value.lower() == "none":
        return GpuSelection("none")
    items: list[int | str] = []
    for raw in value.split(","):
        token = raw.strip()
        if token.isascii() and token.isdigit():
            items.append(int(token))
        elif token.startswith(("GPU-", "MIG-")) and len(token) > 4 and " " not in token:
            items.append(token)
        else:
            raise GpuOptionError(
                f"--gpus: bad entry {token!r} in {text!r}; expected 'all', 'none', or a comma "
                "list of GPU indices (0,1) or UUIDs (GPU-...)"
            )
    if len(set(items)) != len(items):
        raise GpuOptionError(f"--gpus: {text!r} names a GPU twice")
    return GpuSelection("list", tuple(items))


def select_gpus(discovered: Sequence[Gpu], selection: GpuSelection) -> list[Gpu]:
    """The GPUs of ``discovered`` that ``selection`` names, in the order it names them."""
    if selection.mode == "all":
        return list(discovered)
    if selection.mode == "none":
        return []
    by_index = {gpu.index: gpu for gpu in discovered}
    by_uuid = {gpu.uuid: gpu for gpu in discovered}
    chosen: list[Gpu] = []
    for item in selection.items:
        gpu = by_index.get(item) if isinstance(item, int) else by_uuid.get(item)
        if gpu is None:
            found = ", ".join(f"{g.index}={g.uuid}" for g in discovered) or "none (no NVML)"
            raise GpuOptionError(f"--gpus: no GPU {item!r} on this machine; found: {found}")
        if gpu in chosen:
            raise GpuOptionError(f"--gpus: GPU {gpu.index} ({gpu.uuid}) is named twice")
        chosen.append(gpu)
    return chosen


def device_uuids(device: Iterable[Gpu | str] | str) -> list[str]:
    """GPU UUIDs from ``"cpu"`` (none), a comma-joined string, or Gpus / UUID strings."""
    if isinstance(device, str):
        return [] if device in ("", "cpu") else [part.strip() for part in device.split(",")]
    return [gpu.uuid if isinstance(gpu, Gpu) else gpu for gpu in device]


def visible_devices_env(gpus: Iterable[Gpu | str]) -> dict[str, str]:
    """The environment that restricts a process to ``gpus`` (empty: no GPU at all).

    ``CUDA_VISIBLE_DEVICES`` lists UUIDs, so the assignment cannot drift if devices are
    re-enumerated; ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` makes CUDA's numbering match NVML's.
    """
    uuids: list[str] = []
    for gpu in gpus:
        uuid = gpu.uuid if isinstance(gpu, Gpu) else gpu
        if not isinstance(uuid, str) or not uuid or any(c in uuid for c in ", \t\n"):
            raise ValueError(f"not a GPU UUID: {uuid!r}")
        uuids.append(uuid)
    return {"CUDA_VISIBLE_DEVICES": ",".join(uuids), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}

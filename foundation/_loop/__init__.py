"""Event-loop backends of the kernel: one module per anyio backend, loaded by name.

The kernel keeps its hot path (mailbox waits, call replies, actor tasks) on each
backend's low-level primitives instead of anyio's portable wrappers: an anyio memory
stream measured 0.16 x a raw ``asyncio.Queue`` on our machines, which would cap every
actor at that speed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._base import KernelBackend

_NAMES = {"asyncio": "._asyncio", "trio": "._trio"}


def load_backend(name: str) -> KernelBackend:
    """Return a fresh backend object for the running event loop ``name``."""
    try:
        module_name = _NAMES[name]
    except KeyError:
        raise RuntimeError(
            f"foundation supports the asyncio and trio backends of anyio, got {name!r}"
        ) from None
    module = importlib.import_module(module_name, __name__)
    backend: KernelBackend = module.Backend()
    return backend

"""Registry backends, one module each, loaded lazily by name (anyio's backend pattern)."""

from __future__ import annotations

import importlib
from typing import Any

_BACKENDS = {
    "dict": ("._dict", "DictBackend"),
    "shm": ("._shm", "SharedMemoryBackend"),
}


def load_registry_backend(name: str, **options: Any) -> Any:
    """Instantiate the registry backend called ``name``."""
    try:
        module_name, cls_name = _BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"unknown registry backend {name!r}; available: {sorted(_BACKENDS)}"
        ) from None
    module = importlib.import_module(module_name, __name__)
    return getattr(module, cls_name)(**options)

"""Helpers for the public namespaces (``foundation``, ``foundation.testing``, ...)."""

from __future__ import annotations

from contextlib import suppress
from typing import Any


def fixup_module_metadata(module_name: str, namespace: dict[str, Any]) -> None:
    """Show public paths (``foundation.Actor``, ``supervision.testing.ChaosMonkey``) in
    reprs and docs, as trio does: objects defined in a private module of the same
    package (any ``_name`` part after the package) take the public module's name."""
    top = module_name.split(".", 1)[0]
    for name in namespace["__all__"]:
        obj = namespace[name]
        parts = str(getattr(obj, "__module__", "") or "").split(".")
        if parts[0] == top and any(p.startswith("_") for p in parts[1:]):
            with suppress(AttributeError, TypeError):
                obj.__module__ = module_name

"""Helpers for the public namespaces (``foundation``, ``foundation.testing``, ...)."""

from __future__ import annotations

from contextlib import suppress
from typing import Any


def fixup_module_metadata(module_name: str, namespace: dict[str, Any]) -> None:
    """Show public paths (``foundation.Actor``) in reprs and docs, as trio does."""
    for name in namespace["__all__"]:
        obj = namespace[name]
        if getattr(obj, "__module__", "").startswith("foundation._"):
            with suppress(AttributeError, TypeError):
                obj.__module__ = module_name

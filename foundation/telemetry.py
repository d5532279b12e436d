"""Telemetry events of the current runtime: ``emit``, ``attach``, ``detach``, ``capture``.

Kernel events (all under ``("foundation", ...)``): ``actor.spawn``, ``actor.exit``
(metadata ``reason``), ``mailbox.overflow``, ``call.timeout``, ``registry.register``,
``registry.unregister``, ``loop.blocked`` (measurement ``duration``).
"""

from contextlib import suppress

from ._telemetry import Capture as Capture
from ._telemetry import TelemetryEvent as TelemetryEvent
from ._telemetry import attach as attach
from ._telemetry import capture as capture
from ._telemetry import detach as detach
from ._telemetry import emit as emit

__all__ = ("Capture", "TelemetryEvent", "attach", "capture", "detach", "emit")


def _fixup_module_metadata() -> None:
    """Show public paths (``foundation.telemetry.Capture``) in reprs and docs, as trio does."""
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("foundation._"):
            with suppress(AttributeError, TypeError):
                obj.__module__ = __name__


_fixup_module_metadata()
del _fixup_module_metadata

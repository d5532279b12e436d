"""Telemetry events of the current runtime: ``emit``, ``attach``, ``detach``, ``capture``.

Kernel events (all under ``("foundation", ...)``): ``actor.spawn``, ``actor.exit``
(metadata ``reason``), ``mailbox.overflow``, ``call.timeout``, ``registry.register``,
``registry.unregister``, ``loop.blocked`` (measurement ``duration``).
"""

from ._public import fixup_module_metadata
from ._telemetry import Capture as Capture
from ._telemetry import TelemetryEvent as TelemetryEvent
from ._telemetry import attach as attach
from ._telemetry import capture as capture
from ._telemetry import detach as detach
from ._telemetry import emit as emit

__all__ = ("Capture", "TelemetryEvent", "attach", "capture", "detach", "emit")


fixup_module_metadata(__name__, globals())

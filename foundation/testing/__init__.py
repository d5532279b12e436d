"""Testing helpers: probes, awaitable assertions, the virtual clock, pytest fixtures.

No helper sleeps: each waits on a message, a monitor, a telemetry event or the runtime
clock (instant under ``VirtualClock``).
"""

from .._clock import VirtualClock as VirtualClock
from .._public import fixup_module_metadata
from ._helpers import assert_down as assert_down
from ._helpers import until as until
from ._helpers import wait_for_event as wait_for_event
from ._probe import ANY as ANY
from ._probe import Probe as Probe
from ._probe import ProbeActor as ProbeActor
from ._probe import assert_receive as assert_receive

__all__ = (
    "ANY",
    "Probe",
    "ProbeActor",
    "VirtualClock",
    "assert_down",
    "assert_receive",
    "until",
    "wait_for_event",
)


fixup_module_metadata(__name__, globals())

"""foundation: an Erlang/OTP-style actor kernel on anyio (asyncio and trio).

Actors with mailboxes, links, monitors and Erlang exit semantics; timers on an
injectable clock; a pluggable registry; event-driven synchronisation and telemetry.
"""

from . import lowlevel as lowlevel
from . import telemetry as telemetry
from ._actor import Actor as Actor
from ._backends._dict import DictBackend as DictBackend
from ._backends._shm import SharedMemoryBackend as SharedMemoryBackend
from ._backends._shm_reads import SharedMemoryStatistics as SharedMemoryStatistics
from ._clock import Clock as Clock
from ._clock import MonotonicClock as MonotonicClock
from ._context import current_runtime as current_runtime
from ._context import current_time as current_time
from ._context import self_ref as self_ref
from ._entry import run as run
from ._exceptions import ActorDead as ActorDead
from ._exceptions import AlreadyRegistered as AlreadyRegistered
from ._exceptions import BrokenBarrier as BrokenBarrier
from ._exceptions import CallTimeout as CallTimeout
from ._exceptions import CodecError as CodecError
from ._exceptions import FoundationError as FoundationError
from ._exceptions import MailboxFull as MailboxFull
from ._exceptions import RegistryFull as RegistryFull
from ._exceptions import RuntimeClosed as RuntimeClosed
from ._exceptions import RuntimeInternalError as RuntimeInternalError
from ._exceptions import StartError as StartError
from ._exceptions import ValueTooLarge as ValueTooLarge
from ._mailbox import MailboxStatistics as MailboxStatistics
from ._messages import Down as Down
from ._messages import Exit as Exit
from ._messages import NoReply as NoReply
from ._namecall import call as call
from ._pid import MonitorRef as MonitorRef
from ._pid import Pid as Pid
from ._public import fixup_module_metadata
from ._ref import ActorRef as ActorRef
from ._ref import Caller as Caller
from ._ref import Monitor as Monitor
from ._registry import Registry as Registry
from ._runtime import Runtime as Runtime
from ._runtime import RuntimeStatistics as RuntimeStatistics
from ._sync import Barrier as Barrier
from ._sync import CountDownLatch as CountDownLatch
from ._sync import Event as Event
from ._sync import wait_for as wait_for
from ._timers import TimerRef as TimerRef
from .abc import RegistryBackend as RegistryBackend

__all__ = (
    "Actor",
    "ActorDead",
    "ActorRef",
    "AlreadyRegistered",
    "Barrier",
    "BrokenBarrier",
    "CallTimeout",
    "Caller",
    "Clock",
    "CodecError",
    "CountDownLatch",
    "DictBackend",
    "Down",
    "Event",
    "Exit",
    "FoundationError",
    "MailboxFull",
    "MailboxStatistics",
    "Monitor",
    "MonitorRef",
    "MonotonicClock",
    "NoReply",
    "Pid",
    "Registry",
    "RegistryBackend",
    "RegistryFull",
    "Runtime",
    "RuntimeClosed",
    "RuntimeInternalError",
    "RuntimeStatistics",
    "SharedMemoryBackend",
    "SharedMemoryStatistics",
    "StartError",
    "TimerRef",
    "ValueTooLarge",
    "call",
    "current_runtime",
    "current_time",
    "lowlevel",
    "run",
    "self_ref",
    "telemetry",
    "wait_for",
)


fixup_module_metadata(__name__, globals())

"""The exception tree of foundation.

``FoundationError``
    Base of everything the kernel raises on purpose.

``ActorDead``
    A call (or ``stop``) addressed an actor that is not alive: it had already exited
    (``reason == "noproc"``) or it exited while the call was in flight (``reason`` is
    its exit reason). ``handled`` tells whether a handler may have seen the request:
    False when the actor died before taking it from its mailbox, so resending it to a
    new incarnation cannot run it twice. Compare ``CallTimeout``: the actor is alive
    but did not reply.

``CallTimeout``
    The actor was alive but did not reply within the caller's timeout. The reply, if it
    ever comes, is discarded; it never reaches any mailbox.

``StartError``
    ``spawn`` failed because ``init`` raised or the actor exited during ``init``;
    ``__cause__`` (and ``reason``) carry the original failure.

``MailboxFull``
    A bounded mailbox refused a message (policy ``"fail"``, or a non-waiting send
    under policy ``"block"``).

``AlreadyRegistered``
    A unique registry key is taken; ``owner`` is the ref that holds it.

``RegistryFull`` / ``ValueTooLarge``
    A fixed-capacity registry backend cannot take the entry.

``RuntimeClosed``
    The runtime that owns a ref has stopped; nothing can be sent through it any more.

``BrokenBarrier``
    A ``Barrier`` was broken because a party timed out or was cancelled while waiting.

``CodecError``
    Bytes could not be decoded (or a value encoded) within the codec's limits.

``RuntimeInternalError``
    An invariant of the kernel did not hold. This is a bug: please file it.
"""

from __future__ import annotations

from typing import Any


class FoundationError(Exception):
    """Base class of every error the kernel raises deliberately."""


class ActorDead(FoundationError):
    """The target actor is not alive (``reason`` is ``"noproc"`` or its exit reason)."""

    def __init__(self, pid: Any, reason: Any, *, handled: bool = True) -> None:
        self.pid = pid
        self.reason = reason
        self.handled = handled
        super().__init__(f"actor {pid} is not alive (reason: {reason!r})")


class CallTimeout(FoundationError, TimeoutError):
    """The target actor was alive but did not reply within the timeout."""

    def __init__(self, pid: Any, timeout: float, detail: str = "got no reply") -> None:
        self.pid = pid
        self.timeout = timeout
        super().__init__(f"call to {pid} {detail} within {timeout} s")


class StartError(FoundationError):
    """``init`` raised, or the actor exited before ``init`` returned."""

    def __init__(self, actor: str, reason: Any) -> None:
        self.actor = actor
        self.reason = reason
        super().__init__(f"{actor} failed to start: {reason!r}")


class MailboxFull(FoundationError):
    """A bounded mailbox refused a message."""


class AlreadyRegistered(FoundationError):
    """A unique registry key is already taken by a live actor."""

    def __init__(self, key: Any, owner: Any) -> None:
        self.key = key
        self.owner = owner
        super().__init__(f"key {key!r} is already registered to {owner}")


class RegistryFull(FoundationError):
    """A fixed-capacity registry backend has no free slot."""


class ValueTooLarge(FoundationError):
    """A key or metadata value exceeds a registry backend's slot size."""


class RuntimeClosed(FoundationError):
    """The runtime that owns this object has stopped."""


class BrokenBarrier(FoundationError):
    """A party left a ``Barrier`` (timeout, cancellation, crash) before it tripped."""


class CodecError(FoundationError, ValueError):
    """Bytes could not be decoded, or a value encoded, within the codec's limits."""


class RuntimeInternalError(FoundationError):
    """A kernel invariant failed. This is a bug in foundation: please file it."""

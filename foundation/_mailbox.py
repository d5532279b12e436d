"""Mailboxes: a deque plus a single waiter, optionally bounded.

One deque per actor keeps every sender's messages in send order (Erlang's per-pair
ordering follows). The consumer parks on one future when the deque is empty; ``put``
wakes it. Kernel messages (exit signals as ``Exit``, ``Down``, stop requests) bypass the
bound: signals are never dropped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from ._exceptions import MailboxFull

Overflow = Literal["block", "drop_new", "fail"]
OVERFLOW_POLICIES: tuple[str, ...] = ("block", "drop_new", "fail")


@dataclass(frozen=True, slots=True)
class MailboxStatistics:
    """A snapshot of one mailbox."""

    length: int
    high_water: int
    capacity: int | None
    overflow: str | None
    dropped: int
    waiting_senders: int


class Mailbox:
    """Unbounded mailbox: ``put`` never blocks and never fails while the actor lives."""

    __slots__ = ("_new_future", "closed", "dropped", "high_water", "owner", "q", "waiter")

    capacity: int | None = None
    overflow: str | None = None

    def __init__(self, owner: Any, new_future: Any) -> None:
        self.q: deque[Any] | None = None  # allocated on demand, released while parked
        self.waiter: Any = None
        self.high_water = 0
        self.dropped = 0
        self.closed = False
        self.owner = owner
        self._new_future = new_future

    def put(self, item: Any) -> None:
        """Append a user message; wake the actor if it is parked."""
        if self.closed:
            self.owner.rt._on_send_to_dead(self.owner)
            return
        q = self.q
        if q is None:
            q = self.q = deque()
        q.append(item)
        n = len(q)
        if n > self.high_water:
            self.high_water = n
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def put_system(self, item: Any, *, first: bool = False) -> None:
        """Append a kernel message, ignoring any bound (signals are never dropped)."""
        if self.closed:
            return
        q = self.q
        if q is None:
            q = self.q = deque()
        if first:
            q.appendleft(item)
        else:
            q.append(item)
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def __len__(self) -> int:
        q = self.q
        return 0 if q is None else len(q)

    def close(self) -> list[Any]:
        """Refuse further messages; return what was still queued."""
        self.closed = True
        q = self.q
        self.q = None
        return list(q) if q else []

    def on_taken(self) -> None:
        """Called after the owner took a message; only bounded mailboxes care."""

    def statistics(self) -> MailboxStatistics:
        return MailboxStatistics(
            length=len(self),
            high_water=self.high_water,
            capacity=self.capacity,
            overflow=self.overflow,
            dropped=self.dropped,
            waiting_senders=0,
        )


class BoundedMailbox(Mailbox):
    """Mailbox holding at most ``capacity`` user messages, with an overflow policy.

    - ``"block"``: ``await ref.cast_wait(...)`` / ``send_wait`` / ``call`` wait for room;
      a plain ``cast``/``send`` on a full mailbox raises ``MailboxFull``.
    - ``"drop_new"``: the new message is dropped and counted (``dropped``).
    - ``"fail"``: the sender gets ``MailboxFull``.
    """

    # ``capacity`` and ``overflow`` are class attributes of the unbounded Mailbox (no
    # per-actor cost); a bounded one needs its own slots to hold them.
    __slots__ = ("_room_waiters", "_user_count", "capacity", "overflow")

    def __init__(self, owner: Any, new_future: Any, capacity: int, overflow: str) -> None:
        super().__init__(owner, new_future)
        self.capacity = capacity
        self.overflow = overflow
        self._room_waiters: deque[Any] = deque()
        self._user_count = 0

    def has_room(self) -> bool:
        return self._user_count < self.capacity  # type: ignore[operator]

    def put(self, item: Any) -> None:
        if self.closed:
            self.owner.rt._on_send_to_dead(self.owner)
            return
        if self._user_count >= self.capacity:  # type: ignore[operator]
            self._overflow(item)
            return
        self._user_count += 1
        Mailbox.put(self, item)

    def _overflow(self, item: Any) -> None:
        self.owner.rt._on_overflow(self.owner, self.overflow)
        if self.overflow == "drop_new":
            self.dropped += 1
            return
        hint = (
            "; await ref.cast_wait(...) or ref.send_wait(...) to wait for room"
            if self.overflow == "block"
            else ""
        )
        raise MailboxFull(
            f"mailbox of {self.owner.pid} is full ({self.capacity} messages, "
            f"policy {self.overflow!r}){hint}"
        )

    async def wait_for_room(self) -> None:
        """Wait until a user message fits (policy ``"block"``)."""
        while not self.closed and self._user_count >= self.capacity:  # type: ignore[operator]
            fut = self._new_future()
            self._room_waiters.append(fut)
            await fut

    def on_taken(self) -> None:
        if self._user_count:
            self._user_count -= 1
        waiters = self._room_waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                break

    def close(self) -> list[Any]:
        items = super().close()
        while self._room_waiters:
            fut = self._room_waiters.popleft()
            if not fut.done():
                fut.set_result(None)
        return items

    def statistics(self) -> MailboxStatistics:
        return MailboxStatistics(
            length=len(self),
            high_water=self.high_water,
            capacity=self.capacity,
            overflow=self.overflow,
            dropped=self.dropped,
            waiting_senders=len(self._room_waiters),
        )

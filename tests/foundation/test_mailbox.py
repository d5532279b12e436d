"""Mailboxes: per-sender FIFO, bounds with their overflow policies, counters.

To hold messages in a mailbox, the ``Sink`` actor blocks on a gate (an ``anyio.Event``
the test controls) while the test fills its mailbox; opening the gate drains it.
"""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from foundation import (
    Actor,
    ActorRef,
    Caller,
    Down,
    Exit,
    MailboxFull,
    MailboxStatistics,
    Runtime,
)
from foundation.telemetry import capture

pytestmark = pytest.mark.anyio


class Sink(Actor):
    """Records every cast, send and kernel message; ``"wait"`` blocks on the gate."""

    async def init(self, gate: anyio.Event, seen: list[Any], *, trap: bool = False) -> None:
        self.gate = gate
        self.seen = seen
        self.trap_exits = trap

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        op, arg = request
        if op == "link":
            self.link(arg)
            return None
        if op == "monitor":
            return self.monitor(arg)
        if op == "echo":
            self.seen.append(("call", arg))
            return arg
        raise AssertionError(f"unknown request {request!r}")

    async def handle_cast(self, msg: Any) -> None:
        if msg == "wait":
            await self.gate.wait()
            return
        if msg == "crash":
            raise RuntimeError("boom")
        self.seen.append(msg)

    async def handle_info(self, msg: Any) -> None:
        self.seen.append(msg)


class Sender(Actor):
    """Sends ``count`` numbered messages to ``target`` when told, yielding between them."""

    async def handle_cast(self, msg: Any) -> None:
        _, target, tag, count = msg
        for i in range(count):
            if i % 2:
                target.send((tag, i))
            else:
                target.cast((tag, i))
            await anyio.lowlevel.checkpoint()  # let the other senders interleave


async def blocked_sink(
    runtime: Runtime, **spawn_options: Any
) -> tuple[ActorRef, anyio.Event, list[Any]]:
    """A ``Sink`` busy in a handler until the returned gate is set."""
    gate = anyio.Event()
    seen: list[Any] = []
    trap = spawn_options.pop("trap", False)
    ref: ActorRef = await runtime.spawn(Sink, gate, seen, trap=trap, **spawn_options)
    ref.cast("wait")
    await runtime.wait_idle()  # "wait" is taken: the mailbox is empty, the actor busy
    return ref, gate, seen


def mailbox_of(runtime: Runtime, ref: ActorRef) -> MailboxStatistics:
    info = runtime.info(ref)
    assert info is not None, f"{ref!r} is not alive"
    stats = info["mailbox"]
    assert isinstance(stats, MailboxStatistics)
    return stats


async def test_each_senders_messages_arrive_in_the_order_it_sent_them(runtime: Runtime) -> None:
    gate = anyio.Event()
    gate.set()
    seen: list[Any] = []
    sink = await runtime.spawn(Sink, gate, seen)
    senders = [await runtime.spawn(Sender) for _ in range(4)]
    for tag, sender in enumerate(senders):
        sender.cast(("go", sink, tag, 50))
    for i in range(50):
        sink.cast(("test", i))
    await runtime.wait_idle()
    assert len(seen) == 5 * 50
    for tag in [*range(4), "test"]:
        assert [i for t, i in seen if t == tag] == list(range(50)), tag
    # The senders really interleaved: this is not five sequential bursts.
    switches = sum(1 for a, b in itertools.pairwise(seen) if a[0] != b[0])
    assert switches > 10


async def test_a_full_mailbox_with_overflow_fail_raises_mailbox_full(runtime: Runtime) -> None:
    ref, gate, seen = await blocked_sink(runtime, mailbox_size=2, overflow="fail")
    ref.cast(1)
    ref.send(2)
    with pytest.raises(MailboxFull):
        ref.cast(3)
    with pytest.raises(MailboxFull):
        ref.send(4)
    stats = mailbox_of(runtime, ref)
    assert (stats.length, stats.capacity, stats.overflow, stats.dropped) == (2, 2, "fail", 0)
    gate.set()
    await runtime.wait_idle()
    assert seen == [1, 2]
    ref.cast(5)  # room again once drained
    await runtime.wait_idle()
    assert seen == [1, 2, 5]


async def test_a_full_mailbox_with_overflow_drop_new_drops_counts_and_reports(
    runtime: Runtime,
) -> None:
    ref, gate, seen = await blocked_sink(runtime, mailbox_size=2, overflow="drop_new")
    async with capture(("foundation", "mailbox", "overflow")) as events:
        for msg in range(1, 6):
            ref.cast(msg)  # never raises
    assert mailbox_of(runtime, ref).dropped == 3
    assert mailbox_of(runtime, ref).length == 2
    overflow = events.named(("foundation", "mailbox", "overflow"))
    assert len(overflow) == 3
    assert all(e.metadata["pid"] == ref.pid for e in overflow)
    assert all(e.metadata["policy"] == "drop_new" for e in overflow)
    assert all(e.measurements["length"] == 2 for e in overflow)
    gate.set()
    await runtime.wait_idle()
    assert seen == [1, 2]  # the new messages were dropped, the old ones kept
    assert mailbox_of(runtime, ref).dropped == 3


async def test_cast_wait_on_a_full_block_mailbox_waits_until_there_is_room(
    runtime: Runtime,
) -> None:
    ref, gate, seen = await blocked_sink(runtime, mailbox_size=2, overflow="block")
    ref.cast(1)
    ref.cast(2)
    delivered: list[str] = []

    async def cast_when_room() -> None:
        await ref.cast_wait(3)
        delivered.append("cast")

    async def send_when_room() -> None:
        await ref.send_wait(4)
        delivered.append("send")

    async with anyio.create_task_group() as tg:
        tg.start_soon(cast_when_room)
        await runtime.wait_idle()
        tg.start_soon(send_when_room)
        await runtime.wait_idle()
        assert delivered == []  # both senders wait: the mailbox stays full
        assert mailbox_of(runtime, ref).waiting_senders == 2
        assert mailbox_of(runtime, ref).length == 2
        gate.set()
    await runtime.wait_idle()
    # Both got room; which of two different senders lands first is not ordered.
    assert sorted(delivered) == ["cast", "send"]
    assert seen[:2] == [1, 2] and sorted(seen[2:]) == [3, 4]
    assert mailbox_of(runtime, ref).waiting_senders == 0


async def test_a_plain_cast_or_send_on_a_full_block_mailbox_raises_mailbox_full(
    runtime: Runtime,
) -> None:
    ref, gate, seen = await blocked_sink(runtime, mailbox_size=1, overflow="block")
    ref.cast(1)
    with pytest.raises(MailboxFull, match="cast_wait"):
        ref.cast(2)
    with pytest.raises(MailboxFull):
        ref.send(2)
    gate.set()
    await runtime.wait_idle()
    assert seen == [1]


async def test_a_call_to_a_full_block_mailbox_waits_for_room_instead_of_failing(
    runtime: Runtime,
) -> None:
    ref, gate, seen = await blocked_sink(runtime, mailbox_size=1, overflow="block")
    ref.cast(1)
    replies: list[Any] = []

    async def call() -> None:
        replies.append(await ref.call(("echo", "hi")))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        await runtime.wait_idle()
        assert replies == []
        gate.set()
    assert replies == ["hi"]
    assert seen == [1, ("call", "hi")]


async def test_length_and_high_water_mark_are_counted(runtime: Runtime) -> None:
    ref, gate, _ = await blocked_sink(runtime)
    stats = mailbox_of(runtime, ref)
    assert (stats.length, stats.capacity, stats.overflow) == (0, None, None)
    for i in range(7):
        ref.cast(i)
    stats = mailbox_of(runtime, ref)
    assert (stats.length, stats.high_water) == (7, 7)
    gate.set()
    await runtime.wait_idle()
    stats = mailbox_of(runtime, ref)
    assert (stats.length, stats.high_water) == (0, 7)  # the mark stays
    bounded, bounded_gate, _ = await blocked_sink(runtime, mailbox_size=3, overflow="fail")
    for i in range(3):
        bounded.cast(i)
    stats = mailbox_of(runtime, bounded)
    assert stats == MailboxStatistics(
        length=3, high_water=3, capacity=3, overflow="fail", dropped=0, waiting_senders=0
    )
    bounded_gate.set()


async def test_exit_and_down_messages_bypass_the_bound_of_a_full_mailbox(
    runtime: Runtime,
) -> None:
    gate = anyio.Event()
    seen: list[Any] = []
    ref = await runtime.spawn(Sink, gate, seen, trap=True, mailbox_size=1, overflow="fail")
    linked = await runtime.spawn(Sink, anyio.Event(), [])
    monitored = await runtime.spawn(Sink, anyio.Event(), [])
    await ref.call(("link", linked))
    mref = await ref.call(("monitor", monitored))
    ref.cast("wait")
    await runtime.wait_idle()
    ref.cast("user message")  # the mailbox is now full
    with pytest.raises(MailboxFull):
        ref.cast("one too many")
    mon_linked = runtime.monitor(linked)
    linked.cast("crash")
    crash = (await mon_linked.wait()).reason
    mon_monitored = runtime.monitor(monitored)
    monitored.kill()
    await mon_monitored.wait()
    await runtime.wait_idle()
    assert mailbox_of(runtime, ref).length == 3  # over the bound of 1: signals are never lost
    with pytest.raises(MailboxFull):
        ref.cast("still full for users")
    gate.set()
    await runtime.wait_idle()
    assert seen == ["user message", Exit(linked.pid, crash), Down(mref, monitored.pid, "killed")]


async def test_a_stop_request_reaches_an_actor_whose_bounded_mailbox_is_full(
    runtime: Runtime,
) -> None:
    ref, gate, seen = await blocked_sink(runtime, mailbox_size=1, overflow="fail")
    ref.cast(1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ref.stop)
        await runtime.wait_idle()
        gate.set()
    assert not ref.is_alive
    assert seen == [1]  # the stop request queued behind the user message

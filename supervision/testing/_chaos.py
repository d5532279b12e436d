"""Fault injection: kill random actors of a live supervision tree.

``ChaosMonkey`` starts an actor that, every ``1 / rate`` seconds of the runtime clock,
sends an exit signal to one random live worker of a tree::

    monkey = await ChaosMonkey.start(tree, rate=100.0, seed=1, max_kills=500)
    await runtime.monitor(monkey).wait()          # it exits "normal" after 500 kills
    stats = await ChaosMonkey.stats(monkey)       # ChaosStats(kills=500, by_id=..., skipped=0)

``crash_random(tree, rng)`` does one such kill at once. Both walk the tree with each
supervisor's ``which_children`` (nested supervisors are descended into) and pick with a
seeded ``random.Random`` over the children in start order, so on a ``VirtualClock`` a
run is reproducible. The monkey is an actor, so it can itself run under a supervisor:
``ChaosMonkey.child_spec(tree, rate=10.0)``.

The reason decides what the victim sees: ``"kill"`` (the default) cannot be trapped and
the supervisor sees ``"killed"``; any other reason, e.g. ``RuntimeError("chaos")``, ends
a worker that does not trap exits with that reason, as a crash would. An actor that
traps exits (a supervisor) only receives a non-``"kill"`` signal as a message, so only
``"kill"`` takes supervisors down (pass ``include`` to make them candidates).
Each kill emits ``("supervision", "chaos", "kill")`` (metadata ``id``, ``pid``,
``reason`` and ``supervisor``, the victim's parent).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from foundation import (
    Actor,
    ActorDead,
    ActorRef,
    CallTimeout,
    Down,
    current_runtime,
    lowlevel,
)

from .._child import ChildInfo
from .._spec import ChildSpec, Restart

Include = Callable[[ChildInfo], bool]


@dataclass(frozen=True, slots=True)
class ChaosStats:
    """What a ``ChaosMonkey`` did: signals sent, per child id, and ticks that found no
    candidate (every candidate was restarting, or the tree had none)."""

    kills: int
    by_id: dict[Any, int]
    skipped: int


class _Tick:
    """The monkey's timer message."""

    __slots__ = ()


_TICK = _Tick()


class _Stats:
    """The monkey's ``stats`` request."""

    __slots__ = ()


_STATS = _Stats()


class ChaosMonkey:
    """Start, query and stop chaos actors (the actor itself is not part of the API).

    A chaos actor kills a random live worker of ``tree`` every ``1 / rate`` seconds of
    the runtime clock. Options (of ``start`` and ``child_spec``):

    - ``tree``: the root supervisor, as a ref or a registered name (looked up at each
      tick; when nothing is registered under it, the tree is dead);
    - ``rate``: kills per second of the runtime clock;
    - ``seed``: seed of the ``random.Random`` that picks victims (None: unseeded);
    - ``max_kills``: exit ``"normal"`` after this many kills (None: run until stopped);
    - ``reason``: the exit reason sent (``"kill"``, or e.g. an exception instance);
    - ``include``: a predicate on ``ChildInfo``: when given, it alone decides who may
      be killed, supervisors included; by default every worker may be.

    The actor exits ``"normal"`` after ``max_kills``, and as soon as the tree dies.
    """

    def __init__(self) -> None:
        raise TypeError("ChaosMonkey has no instances: use 'await ChaosMonkey.start(tree)'")

    @staticmethod
    async def start(
        tree: Any,
        rate: float = 100.0,
        seed: int | None = 1,
        max_kills: int | None = None,
        reason: Any = "kill",
        include: Include | None = None,
    ) -> ActorRef:
        """Spawn a chaos actor in the current runtime (not linked to the caller).

        Raises:
            StartError: a bad option (``ValueError``/``TypeError`` as its cause), or
                ``tree`` is not a live actor.
        """
        ref: ActorRef = await current_runtime().spawn(
            _Monkey,
            tree,
            rate=rate,
            seed=seed,
            max_kills=max_kills,
            reason=reason,
            include=include,
        )
        return ref

    @staticmethod
    def child_spec(
        tree: Any,
        rate: float = 100.0,
        seed: int | None = 1,
        max_kills: int | None = None,
        reason: Any = "kill",
        include: Include | None = None,
        *,
        id: Any = "chaos_monkey",
        restart: Restart = "transient",
    ) -> ChildSpec:
        """A spec that runs a chaos actor under a supervisor (transient by default: it
        is not restarted once it finished its ``max_kills`` or its tree died)."""
        options = {
            "rate": rate,
            "seed": seed,
            "max_kills": max_kills,
            "reason": reason,
            "include": include,
        }
        return ChildSpec(id, (_Monkey, (tree,), options), restart=restart)

    @staticmethod
    async def stats(monkey: Any) -> ChaosStats:
        """The actor's counters; after it exited, its final counters."""
        ref = _resolve(monkey)
        if ref is not None and ref.is_alive:
            try:
                result: ChaosStats = await ref.call(_STATS)
                return result
            except ActorDead:
                pass  # it exited meanwhile: read its last counters below
        actor = None if ref is None else lowlevel.actor_instance(ref)
        if not isinstance(actor, _Monkey):
            raise ValueError(f"not a chaos actor: {monkey!r}")
        return actor.current_stats()

    @staticmethod
    async def stop(monkey: Any) -> None:
        """Stop the actor (``"normal"`` exit); nothing happens if it already exited."""
        ref = _resolve(monkey)
        if ref is None or not ref.is_alive:
            return
        with suppress(ActorDead):  # it finished on its own first
            await ref.stop("normal")


class _Monkey(Actor):
    """The chaos actor behind ``ChaosMonkey`` (options as there)."""

    async def init(
        self,
        tree: Any,
        *,
        rate: float = 100.0,
        seed: int | None = 1,
        max_kills: int | None = None,
        reason: Any = "kill",
        include: Include | None = None,
    ) -> None:
        _check_options(rate, max_kills, include)
        root = _resolve(tree)
        if root is None or not root.is_alive:
            raise ValueError(f"ChaosMonkey needs a live tree, got: {tree!r}")
        self.tree = tree
        self.interval = 1.0 / rate
        self.rng = random.Random(seed)
        self.max_kills = max_kills
        self.reason = reason
        self.include = include
        self.kills = 0
        self.skipped = 0
        self.by_id: dict[Any, int] = {}
        self._watched = root
        self.monitor(root)
        self.send_after(self.interval, _TICK)

    async def handle_call(self, request: Any, caller: Any) -> Any:
        if request is _STATS:
            return self.current_stats()
        raise TypeError(f"ChaosMonkey got an unknown call {request!r}")

    async def handle_info(self, msg: Any) -> None:
        if msg is _TICK:
            await self._tick()
        elif isinstance(msg, Down):
            self._tree_down()

    def _tree_down(self) -> None:
        current = _resolve(self.tree)
        if current is None or not current.is_alive:
            self.stop("normal")
        elif current != self._watched:  # a named tree came back under a new pid
            self._watched = current
            self.monitor(current)

    async def _tick(self) -> None:
        root = _resolve(self.tree)
        if root is None or not root.is_alive:
            self.stop("normal")
            return
        victim = await _kill_one(root, self.rng, self.reason, self.include, self.pid)
        if victim is None:
            self.skipped += 1
        else:
            self.kills += 1
            self.by_id[victim.id] = self.by_id.get(victim.id, 0) + 1
        if self.max_kills is not None and self.kills >= self.max_kills:
            self.stop("normal")
            return
        self.send_after(self.interval, _TICK)

    def current_stats(self) -> ChaosStats:
        return ChaosStats(self.kills, dict(self.by_id), self.skipped)


async def crash_random(
    tree: Any,
    rng: random.Random,
    reason: Any = "kill",
    include: Include | None = None,
) -> ChildInfo | None:
    """Send ``reason`` to one random live worker of ``tree`` (or, with ``include``, to
    one random child it accepts); return its ``ChildInfo``, or None when there was none."""
    _check_options(1.0, None, include)
    root = _resolve(tree)
    if root is None or not root.is_alive:
        return None
    return await _kill_one(root, rng, reason, include, None)


# -- the walk ----------------------------------------------------------------------------


def _check_options(rate: float, max_kills: int | None, include: Include | None) -> None:
    if (
        not isinstance(rate, (int, float))
        or isinstance(rate, bool)
        or not math.isfinite(rate)
        or rate <= 0
    ):
        raise ValueError(f"rate must be a positive number of kills per second, got: {rate!r}")
    if max_kills is not None and (
        not isinstance(max_kills, int) or isinstance(max_kills, bool) or max_kills < 1
    ):
        raise ValueError(f"max_kills must be an int >= 1 or None, got: {max_kills!r}")
    if include is not None and not callable(include):
        raise TypeError(f"include must be a predicate on ChildInfo or None, got: {include!r}")


def _resolve(target: Any) -> ActorRef | None:
    if isinstance(target, ActorRef):
        return target
    return current_runtime().whereis(target)


async def _children(sup: ActorRef) -> list[ChildInfo]:
    """``which_children`` of any supervisor kind; [] for one that died or is busy."""
    actor = lowlevel.actor_instance(sup)
    which = getattr(type(actor), "which_children", None)
    if which is None or not callable(which):
        return []
    try:
        children: list[ChildInfo] = await which(sup)
    except (ActorDead, CallTimeout):
        return []
    return children


async def _candidates(
    sup: ActorRef, include: Include | None, exclude: Any
) -> list[tuple[ActorRef, ChildInfo]]:
    """Every live child under ``sup`` that may be killed, depth first in start order."""
    found: list[tuple[ActorRef, ChildInfo]] = []
    for info in await _children(sup):
        ref = info.ref
        if ref is None or not ref.is_alive or ref.pid == exclude:
            continue
        if info.type == "supervisor":
            if include is not None and include(info):
                found.append((sup, info))
            found.extend(await _candidates(ref, include, exclude))
        elif include is None or include(info):
            found.append((sup, info))
    return found


async def _kill_one(
    root: ActorRef, rng: random.Random, reason: Any, include: Include | None, exclude: Any
) -> ChildInfo | None:
    candidates = await _candidates(root, include, exclude)
    # The walk awaited replies: drop the children that exited meanwhile.
    live = [c for c in candidates if c[1].ref is not None and c[1].ref.is_alive]
    if not live:
        return None
    sup, info = rng.choice(live)
    victim = info.ref
    assert victim is not None
    rt = current_runtime()
    rt.exit(victim, reason)
    telemetry = rt.telemetry
    if telemetry.active:
        telemetry.emit(
            ("supervision", "chaos", "kill"),
            {},
            {"id": info.id, "pid": victim.pid, "reason": reason, "supervisor": sup.pid},
        )
    return info

"""Property test: the kernel's exits agree with a reference model of Erlang's rules.

Hypothesis draws a world of 2..7 actors: which actor spawned which with
``spawn_link`` (the parent rule of a trapping gen_server), extra links, monitors and
``trap_exits`` flags; then a sequence of injected events (a crash, a normal
``ref.stop()``, ``ref.kill()``, ``exit(ref, "shutdown")``, ``exit(ref, "normal")``),
each followed by ``wait_idle`` so its whole cascade settles before the next one.

The reference model is pure Python. Within one cascade every death carries the reason
of the first one (a link passes its reason on unchanged, ``"kill"`` has already become
``"killed"``), so *who* dies is the least fixpoint of "a dying actor takes down a
linked actor that does not trap exits (unless the reason is ``"normal"``), and a
trapping child whose parent it is". That set, the reasons and the ``terminate`` calls
do not depend on scheduling. Messages do, in one way only: Erlang orders signals per
sender pair, so an actor that itself dies in the cascade may or may not have handled
an ``Exit``/``Down`` from that cascade before its own end. The model therefore
requires the exact multiset of messages for every actor that survives the event, and
for one that dies allows any sub-multiset of what could have reached it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import foundation
from foundation import (
    Actor,
    ActorDead,
    ActorRef,
    Caller,
    Down,
    Exit,
    Monitor,
    MonitorRef,
    Pid,
    Runtime,
)

KINDS = ("crash", "stop", "kill", "shutdown", "exit_normal")
Key = tuple[int, int]  # (actor, event)


# -- the scenario -----------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    n: int
    parents: tuple[int | None, ...]  # parents[j] < j spawned j with spawn_link
    traps: tuple[bool, ...]
    links: tuple[tuple[int, int], ...]
    monitors: tuple[tuple[int, int], ...]  # (watcher, target); duplicates allowed
    events: tuple[tuple[str, int], ...]  # (kind, actor)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(2, 7))
    parents = tuple(
        None if j == 0 else draw(st.none() | st.integers(0, j - 1)) for j in range(n)
    )
    traps = tuple(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    pairs = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(
        lambda p: p[0] != p[1]
    )
    links = tuple(draw(st.lists(pairs, max_size=10)))
    monitors = tuple(draw(st.lists(pairs, max_size=8)))
    events = tuple(
        draw(
            st.lists(
                st.tuples(st.sampled_from(KINDS), st.integers(0, n - 1)),
                min_size=1,
                max_size=8,
            )
        )
    )
    return Scenario(n, parents, traps, links, monitors, events)


def crash_reason(actor: int, event: int) -> tuple[str, str]:
    return ("RuntimeError", f"crash-{actor}-{event}")


# -- the reference model ----------------------------------------------------------------


@dataclass
class Expected:
    reasons: list[Any]  # final exit reason per actor, None while alive
    terminated: list[list[tuple[int, Any]]]  # (event, reason) per actor
    required: dict[Key, Counter[Any]] = field(default_factory=dict)
    possible: dict[Key, Counter[Any]] = field(default_factory=dict)


def model(sc: Scenario) -> Expected:
    """Erlang's exit rules (DESIGN.md §3) applied to the scenario, event by event."""
    n = sc.n
    alive = [True] * n
    expected = Expected(reasons=[None] * n, terminated=[[] for _ in range(n)])
    links = {frozenset(p) for p in sc.links}
    links |= {frozenset((j, p)) for j, p in enumerate(sc.parents) if p is not None}
    monitors = dict(enumerate(sc.monitors))  # monitor id -> (watcher, target)

    def neighbours(x: int) -> set[int]:
        return {y for pair in links if x in pair for y in pair if y != x}

    for k, (kind, i) in enumerate(sc.events):
        if not alive[i]:
            continue  # an event aimed at a dead actor changes nothing
        if kind in ("shutdown", "exit_normal") and sc.traps[i]:
            # exit/2 from outside any actor: a trapping target gets a message.
            signal = "shutdown" if kind == "shutdown" else "normal"
            expected.required.setdefault((i, k), Counter())[("exit", None, signal)] += 1
            continue
        if kind == "exit_normal":
            continue  # exit(ref, "normal") is ignored by an actor that does not trap
        reason: Any = {
            "crash": crash_reason(i, k),
            "stop": "normal",
            "kill": "killed",
            "shutdown": "shutdown",
        }[kind]

        # Who dies: the least fixpoint of the propagation rule.
        dying = {i}
        stack = [i]
        while stack:
            y = stack.pop()
            for x in neighbours(y) - dying:
                # A trapping actor dies only of its parent's exit (gen_server's rule).
                propagates = sc.parents[x] == y if sc.traps[x] else reason != "normal"
                if propagates:
                    dying.add(x)
                    stack.append(x)

        # What each live actor is sent. The first to die sees nothing of its cascade.
        for x in range(n):
            if not alive[x] or x == i:
                continue
            bucket = expected.possible if x in dying else expected.required
            msgs = Counter[Any]()
            if sc.traps[x]:
                for y in neighbours(x) & dying:
                    if y != sc.parents[x]:  # a parent's exit ends x instead
                        msgs[("exit", y, reason)] += 1
            for m, (w, t) in monitors.items():
                if w == x and t in dying:
                    msgs[("down", m, t, reason)] += 1
            if msgs:
                bucket.setdefault((x, k), Counter()).update(msgs)

        for x in dying:
            alive[x] = False
            expected.reasons[x] = reason
            # terminate runs for a stop or a crash, and for a trapping child ended by
            # its parent's exit; never for a kill by a signal.
            if (x == i and kind in ("crash", "stop")) or (x != i and sc.traps[x]):
                expected.terminated[x].append((k, reason))
        links = {pair for pair in links if not pair & dying}
        monitors = {m: wt for m, wt in monitors.items() if not set(wt) & dying}
    return expected


# -- the kernel run ---------------------------------------------------------------------


@dataclass
class World:
    """Records kept outside the actors, so they survive their deaths."""

    n: int
    event: int = -1
    infos: dict[int, list[tuple[int, Any]]] = field(default_factory=dict)
    terminated: dict[int, list[tuple[int, Any]]] = field(default_factory=dict)


class Node(Actor):
    async def init(self, world: World, index: int, trap: bool) -> None:
        self.world = world
        self.index = index
        self.trap_exits = trap
        world.infos[index] = []
        world.terminated[index] = []

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        op, arg = request
        if op == "spawn_link":
            index, trap = arg
            return await self.spawn_link(Node, self.world, index, trap)
        if op == "link":
            self.link(arg)
            return None
        if op == "monitor":
            return self.monitor(arg)
        raise AssertionError(f"unknown request {request!r}")

    async def handle_cast(self, msg: Any) -> None:
        raise RuntimeError(msg)

    async def handle_info(self, msg: Any) -> None:
        self.world.infos[self.index].append((self.world.event, msg))

    async def terminate(self, reason: Any) -> None:
        self.world.terminated[self.index].append((self.world.event, reason))


@dataclass
class Observed:
    reasons: list[Any]
    alive: list[bool]
    terminated: list[list[tuple[int, Any]]]
    infos: dict[Key, Counter[Any]]


def normalise(reason: Any) -> Any:
    if isinstance(reason, BaseException):
        return (type(reason).__name__, *map(str, reason.args))
    return reason


async def run_in_kernel(sc: Scenario) -> Observed:
    rt: Runtime = foundation.current_runtime()
    world = World(sc.n)
    refs: list[ActorRef] = []
    for j in range(sc.n):
        parent = sc.parents[j]
        if parent is None:
            refs.append(await rt.spawn(Node, world, j, sc.traps[j]))
        else:
            refs.append(await refs[parent].call(("spawn_link", (j, sc.traps[j]))))
    watch: list[Monitor] = [rt.monitor(ref) for ref in refs]
    for a, b in sc.links:
        await refs[a].call(("link", refs[b]))
    mref_ids: dict[MonitorRef, int] = {}
    for m, (w, t) in enumerate(sc.monitors):
        mref_ids[await refs[w].call(("monitor", refs[t]))] = m
    index_of: dict[Pid | None, int | None] = {ref.pid: j for j, ref in enumerate(refs)}
    index_of[None] = None
    await rt.wait_idle()

    for k, (kind, i) in enumerate(sc.events):
        world.event = k
        ref = refs[i]
        if kind == "crash":
            ref.cast(f"crash-{i}-{k}")
        elif kind == "stop":
            try:
                await ref.stop()
            except ActorDead as exc:
                assert exc.reason == "noproc"
        elif kind == "kill":
            ref.kill()
        elif kind == "shutdown":
            rt.exit(ref, "shutdown")
        else:
            rt.exit(ref, "normal")
        await rt.wait_idle()

    infos: dict[Key, Counter[Any]] = {}
    for j, received in world.infos.items():
        for k, msg in received:
            if isinstance(msg, Exit):
                item: Any = ("exit", index_of[msg.pid], normalise(msg.reason))
            elif isinstance(msg, Down):
                item = ("down", mref_ids[msg.ref], index_of[msg.pid], normalise(msg.reason))
            else:
                item = ("unexpected", msg)
            infos.setdefault((j, k), Counter())[item] += 1
    reasons = [None if w.down is None else normalise(w.down.reason) for w in watch]
    return Observed(
        reasons=reasons,
        alive=[ref.is_alive for ref in refs],
        terminated=[
            [(k, normalise(r)) for k, r in world.terminated[j]] for j in range(sc.n)
        ],
        infos=infos,
    )


def check(sc: Scenario, backend: str) -> None:
    expected = model(sc)
    observed = foundation.run(run_in_kernel, sc, backend=backend, watchdog=None)
    where = f"on {backend}"
    assert observed.reasons == expected.reasons, f"exit reasons differ {where}"
    assert observed.alive == [r is None for r in expected.reasons], f"liveness differs {where}"
    assert observed.terminated == expected.terminated, f"terminate calls differ {where}"
    keys = set(observed.infos) | set(expected.required)
    for key in sorted(keys):
        got = observed.infos.get(key, Counter())
        required = expected.required.get(key, Counter())
        allowed = required + expected.possible.get(key, Counter())
        actor, event = key
        assert not required - got, (
            f"actor {actor} missed {dict(required - got)} after event {event} {where}"
        )
        assert not got - allowed, (
            f"actor {actor} got unexpected {dict(got - allowed)} after event {event} {where}"
        )


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_exits_links_and_monitors_follow_erlangs_rules_in_random_worlds(sc: Scenario) -> None:
    for backend in ("asyncio", "trio"):
        check(sc, backend)


# -- the model itself, on hand-checked cases ----------------------------------------------


def test_the_model_kills_a_chain_of_non_trapping_links_with_the_crash_reason() -> None:
    sc = Scenario(3, (None, None, None), (False, False, False), ((0, 1), (1, 2)), (),
                  (("crash", 0),))
    assert model(sc).reasons == [crash_reason(0, 0)] * 3


def test_the_model_stops_a_normal_exit_at_non_trapping_links_but_ends_trapping_children() -> (
    None
):
    # 0 spawned 1 (trapping) and 2 (not trapping); 1 spawned 3 (trapping); 4 is a
    # trapping peer linked to 1.
    sc = Scenario(
        5,
        (None, 0, 0, 1, None),
        (False, True, False, True, True),
        ((1, 4),),
        ((4, 3),),
        (("stop", 0),),
    )
    expected = model(sc)
    assert expected.reasons == ["normal", "normal", None, "normal", None]
    assert expected.terminated == [[(0, "normal")], [(0, "normal")], [], [(0, "normal")], []]
    assert expected.required == {
        (4, 0): Counter({("exit", 1, "normal"): 1, ("down", 0, 3, "normal"): 1})
    }


def test_the_model_lets_a_trapping_actor_survive_killed_but_not_kill() -> None:
    sc = Scenario(2, (None, None), (True, True), ((0, 1),), (), (("kill", 0), ("kill", 1)))
    expected = model(sc)
    assert expected.reasons == ["killed", "killed"]
    assert expected.required == {(1, 0): Counter({("exit", 0, "killed"): 1})}
    assert expected.terminated == [[], []]

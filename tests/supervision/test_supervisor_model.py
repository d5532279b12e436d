"""Model-based test: a ``Supervisor`` agrees with a reference model of OTP's supervisor.

A hypothesis ``RuleBasedStateMachine`` starts a supervisor with 1..5 children of mixed
restart types, random intensity flags and one of the three strategies, then applies
random steps: a child crashes, exits ``"normal"``, is sent ``"shutdown"``, is killed,
is stopped with ``terminate_child`` or started again with ``restart_child``, or virtual
time advances. The model (plain Python, below) says after each step which children
run, each child's restart count (``which_children``) and incarnations, the restarts
inside the intensity window (``statistics``), the supervisor's telemetry in order
(exits, stops in reverse start order, restarts in start order, ``restarts`` counted
per child), and when the supervisor gives up; it must then be dead with reason
``"shutdown"`` and every child with it.

Hypothesis rules are synchronous while the actors live on an event loop, so the state
machine runs in a worker thread (``anyio.to_thread``) and each rule hands its async
part to the test's loop with ``anyio.from_thread.run``: one runtime per test on its
``VirtualClock``, one fresh supervisor per example, on asyncio and on trio. Time moves
only in the ``advance`` rule, so the intensity window is exact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar, TypeVar

import anyio.from_thread
import anyio.to_thread
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from foundation import Actor, ActorRef, Monitor, Runtime
from foundation.testing import VirtualClock
from supervision import ChildNotFound, ChildRunning, Supervisor, child_spec

pytestmark = pytest.mark.anyio

T = TypeVar("T")
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
RESTART_TYPES = ("permanent", "transient", "temporary")
# Quarter seconds add up exactly in binary floating point: window edges are exact.
STEPS = (0.25, 0.5, 1.0, 2.0, 5.0)
SETTINGS = settings(
    max_examples=50,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class Worker(Actor):
    """A child that crashes on any cast."""

    async def handle_cast(self, msg: Any) -> None:
        raise RuntimeError(msg)


# -- the reference model ------------------------------------------------------------------


@dataclass
class ModelChild:
    id: str
    restart: str
    alive: bool = True
    restarts: int = 0
    starts: int = 1  # incarnations so far


@dataclass
class Model:
    """OTP's supervisor rules, as supervision documents them."""

    strategy: str
    max_restarts: int
    max_seconds: float
    now: float
    children: list[ModelChild]
    alive: bool = True
    window: list[float] = field(default_factory=list)
    restarts_total: int = 0
    # The supervisor's telemetry in order: (what, child id), what being "start",
    # "restart", "exit" or "shutdown" (a child event) or "gave_up" (id None).
    trace: list[tuple[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.trace.extend(("start", c.id) for c in self.children)

    def should_restart(self, child: ModelChild, reason: str) -> bool:
        if child.restart == "permanent":
            return True
        if child.restart == "temporary":
            return False
        return reason in ("crash", "killed")  # "normal" and "shutdown" are normal exits

    def in_window(self) -> int:
        return sum(1 for t in self.window if t >= self.now - self.max_seconds)

    def exited(self, child: ModelChild, reason: str) -> None:
        """A running child exited by itself with ``reason``."""
        child.alive = False
        self.trace.append(("exit", child.id))
        if not self.should_restart(child, reason):
            if child.restart == "temporary":
                self.children.remove(child)
            return
        # Intensity: the window is closed at its old end (Erlang keeps t >= now - period).
        self.window = [t for t in self.window if t >= self.now - self.max_seconds]
        self.window.append(self.now)
        if len(self.window) > self.max_restarts:
            self.give_up()
            return
        self.restarts_total += 1
        if self.strategy == "one_for_one":
            group = [child]
        elif self.strategy == "one_for_all":
            group = list(self.children)
        else:
            group = self.children[self.children.index(child) :]
        for other in reversed(group):  # stopped in reverse start order
            if other.alive:
                other.alive = False
                self.trace.append(("shutdown", other.id))
        for other in group:  # started again in start order
            if other is not child and other.restart == "temporary":
                self.children.remove(other)  # stopped for the restart, not restarted
                continue
            # Every other member starts again, including one stopped by terminate_child.
            other.alive = True
            other.restarts += 1
            other.starts += 1
            self.trace.append(("restart", other.id))

    def give_up(self) -> None:
        self.alive = False
        self.trace.append(("gave_up", None))
        for child in reversed(self.children):
            if child.alive:
                child.alive = False
                self.trace.append(("shutdown", child.id))

    def terminate_child(self, child: ModelChild) -> None:
        if child.alive:
            child.alive = False
            self.trace.append(("shutdown", child.id))
        if child.restart == "temporary":
            self.children.remove(child)

    def restart_child(self, child: ModelChild) -> bool:
        """A manual start: not a restart (no count, no intensity); False if running."""
        if child.alive:
            return False
        child.alive = True
        child.starts += 1
        self.trace.append(("start", child.id))
        return True


# -- the supervisor under test --------------------------------------------------------------


@dataclass
class Observed:
    clock: float
    sup_alive: bool
    down_reason: Any
    children: list[tuple[str, str, bool, int]]  # id, status, ref alive, restarts
    restarts_in_window: int | None
    restarts_total: int | None
    specs: int | None
    active: int | None
    trace: list[tuple[str, Any]]  # as Model.trace
    pids: dict[str, set[Any]]  # child id -> pids of its start/restart events
    giving_up: list[Any]  # reasons of ("supervision", "supervisor", "shutdown")
    errors: list[str]  # inconsistent telemetry
    refs_alive: list[bool]  # every child incarnation ever seen


class World:
    """The async side of one example: a supervisor, a monitor on it, its telemetry."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.sup: ActorRef | None = None
        self.monitor: Monitor | None = None
        self.refs: dict[str, ActorRef] = {}
        self.seen: list[ActorRef] = []
        self.trace: list[tuple[str, Any]] = []
        self.restarts: Counter[Any] = Counter()
        self.pids: dict[str, set[Any]] = {}
        self.giving_up: list[Any] = []
        self.handler: Any = None
        self.errors: list[str] = []

    def _on_event(self, name: tuple[str, ...], measurements: Any, metadata: Any) -> None:
        if self.sup is None or metadata.get("supervisor") != self.sup.pid:
            return
        if name[1] == "supervisor":
            self.giving_up.append(metadata["reason"])
            self.trace.append(("gave_up", None))
            return
        what, cid = name[2], metadata["id"]
        self.trace.append((what, cid))
        if what in ("start", "restart"):
            self.pids.setdefault(cid, set()).add(metadata["pid"])
        if what == "restart":
            self.restarts[cid] += 1
            if measurements["restarts"] != self.restarts[cid]:
                # Raising here would only detach the handler: the invariant reports it.
                self.errors.append(f"restart event {dict(measurements)} for {cid!r}")

    async def start(
        self, strategy: str, restarts: list[str], max_restarts: int, max_seconds: float
    ) -> float:
        self.handler = self.rt.telemetry.attach(("supervision",), self._on_event)
        specs = [child_spec(Worker, id=f"c{i}", restart=r) for i, r in enumerate(restarts)]
        # A Supervisor's pid is known only once it started: take its start events after.
        self.sup = await Supervisor.start(
            specs, strategy=strategy, max_restarts=max_restarts, max_seconds=max_seconds
        )
        self.monitor = self.rt.monitor(self.sup)
        for info in await Supervisor.which_children(self.sup):
            assert info.ref is not None
            self.trace.append(("start", info.id))
            self.pids.setdefault(info.id, set()).add(info.ref.pid)
        await self._refresh()
        return self.rt.clock.now()

    async def _refresh(self) -> None:
        await self.rt.wait_idle()
        assert self.sup is not None
        if not self.sup.is_alive:
            return
        for info in await Supervisor.which_children(self.sup):
            if info.ref is not None:
                self.refs[info.id] = info.ref
                if info.ref not in self.seen:
                    self.seen.append(info.ref)

    async def inject(self, kind: str, cid: str) -> None:
        ref = self.refs[cid]
        if kind == "crash":
            ref.cast("crash")
        elif kind == "normal":
            await ref.stop("normal")
        elif kind == "shutdown":
            self.rt.exit(ref, "shutdown")
        else:
            ref.kill()
        await self._refresh()

    async def terminate_child(self, cid: str) -> str:
        try:
            await Supervisor.terminate_child(self.sup, cid)
        except ChildNotFound:
            return "not_found"
        await self._refresh()
        return "ok"

    async def restart_child(self, cid: str) -> str:
        try:
            await Supervisor.restart_child(self.sup, cid)
        except ChildRunning:
            return "running"
        await self._refresh()
        return "ok"

    async def advance(self, seconds: float) -> None:
        await self.rt.sleep(seconds)  # allow-sleep: runtime clock (virtual)
        await self._refresh()

    async def observe(self) -> Observed:
        await self.rt.wait_idle()
        assert self.sup is not None and self.monitor is not None
        down = self.monitor.down
        children: list[tuple[str, str, bool, int]] = []
        stats = counts = None
        if self.sup.is_alive:
            for info in await Supervisor.which_children(self.sup):
                alive = info.ref is not None and info.ref.is_alive
                children.append((str(info.id), info.status, alive, info.restarts))
            stats = await Supervisor.statistics(self.sup)
            counts = await Supervisor.count_children(self.sup)
        return Observed(
            clock=self.rt.clock.now(),
            sup_alive=self.sup.is_alive,
            down_reason=None if down is None else down.reason,
            children=children,
            restarts_in_window=None if stats is None else stats.restarts_in_window,
            restarts_total=None if stats is None else stats.restarts_total,
            specs=None if counts is None else counts.specs,
            active=None if counts is None else counts.active,
            trace=list(self.trace),
            pids={k: set(v) for k, v in self.pids.items()},
            giving_up=list(self.giving_up),
            errors=list(self.errors),
            refs_alive=[ref.is_alive for ref in self.seen],
        )

    async def close(self) -> None:
        if self.sup is not None and self.sup.is_alive:
            await self.sup.stop("shutdown")
        if self.handler is not None:
            self.rt.telemetry.detach(self.handler)


def on_loop(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run an async step of the world on the test's event loop (from the machine's thread)."""
    return anyio.from_thread.run(fn, *args)


# -- the state machine --------------------------------------------------------------------

child_index = st.integers(0, 4)


class SupervisorMachine(RuleBasedStateMachine):
    """Steps against a live supervisor and its model; subclassed per strategy and runtime."""

    strategy: ClassVar[str]
    runtime: ClassVar[Runtime]

    def __init__(self) -> None:
        super().__init__()
        self.world = World(self.runtime)
        self.model: Model | None = None

    @initialize(
        restarts=st.lists(st.sampled_from(RESTART_TYPES), min_size=1, max_size=5),
        max_restarts=st.integers(0, 6),
        max_seconds=st.sampled_from((1.0, 2.0, 5.0)),
    )
    def start(self, restarts: list[str], max_restarts: int, max_seconds: float) -> None:
        now = on_loop(self.world.start, self.strategy, restarts, max_restarts, max_seconds)
        children = [ModelChild(f"c{i}", r) for i, r in enumerate(restarts)]
        self.model = Model(self.strategy, max_restarts, max_seconds, now, children)

    def teardown(self) -> None:
        on_loop(self.world.close)

    # -- helpers ---------------------------------------------------------------------------
    def _pick(self, i: int) -> ModelChild:
        assert self.model is not None
        return self.model.children[i % len(self.model.children)]

    def _exit(self, i: int, kind: str, reason: str) -> None:
        assert self.model is not None
        child = self._pick(i)
        if not child.alive:
            return  # nothing runs under this id: there is nothing to signal
        on_loop(self.world.inject, kind, child.id)
        restarts = self.model.restarts_total
        self.model.exited(child, reason)
        if not self.model.alive:
            event("the supervisor gave up")
        elif self.model.restarts_total > restarts:
            event(f"restart after {reason}")

    def _has_children(self) -> bool:
        return self.model is not None and self.model.alive and bool(self.model.children)

    # -- rules -----------------------------------------------------------------------------
    @precondition(_has_children)
    @rule(i=child_index)
    def crash(self, i: int) -> None:
        self._exit(i, "crash", "crash")

    @precondition(_has_children)
    @rule(i=child_index)
    def exit_normally(self, i: int) -> None:
        self._exit(i, "normal", "normal")

    @precondition(_has_children)
    @rule(i=child_index)
    def exit_with_shutdown(self, i: int) -> None:
        self._exit(i, "shutdown", "shutdown")

    @precondition(_has_children)
    @rule(i=child_index)
    def kill(self, i: int) -> None:
        self._exit(i, "kill", "killed")

    @precondition(_has_children)
    @rule(i=child_index)
    def terminate_child(self, i: int) -> None:
        assert self.model is not None
        child = self._pick(i)
        assert on_loop(self.world.terminate_child, child.id) == "ok"
        self.model.terminate_child(child)

    @precondition(_has_children)
    @rule(i=child_index)
    def restart_child(self, i: int) -> None:
        assert self.model is not None
        child = self._pick(i)
        expected = "ok" if self.model.restart_child(child) else "running"
        assert on_loop(self.world.restart_child, child.id) == expected

    @precondition(lambda self: self.model is not None)
    @rule(seconds=st.sampled_from(STEPS))
    def advance(self, seconds: float) -> None:
        assert self.model is not None
        on_loop(self.world.advance, seconds)
        self.model.now += seconds

    # -- the comparison --------------------------------------------------------------------
    @invariant()
    def agrees_with_the_model(self) -> None:
        model = self.model
        if model is None:
            return
        seen = on_loop(self.world.observe)
        assert seen.errors == []
        assert seen.clock == model.now, "time moved outside the advance rule"
        assert seen.sup_alive == model.alive, "the supervisor gave up at the wrong step"
        if not model.alive:
            assert seen.down_reason == "shutdown"
            assert seen.giving_up == ["reached_max_restart_intensity"]
            assert not any(seen.refs_alive), "a child outlived its supervisor"
        else:
            assert seen.down_reason is None and seen.giving_up == []
            expected = [
                (c.id, "running" if c.alive else "undefined", c.alive, c.restarts)
                for c in model.children
            ]
            assert seen.children == expected
            assert seen.restarts_in_window == model.in_window()
            assert seen.restarts_total == model.restarts_total
            assert seen.specs == len(model.children)
            assert seen.active == sum(c.alive for c in model.children)
        assert seen.trace == model.trace, "the exits, stops and (re)starts differ"
        for child in model.children:
            assert len(seen.pids.get(child.id, ())) == child.starts


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_a_supervisor_agrees_with_the_reference_model_under_random_exits(
    runtime: Runtime, clock: VirtualClock, strategy: str
) -> None:
    machine = type(
        f"SupervisorMachine_{strategy}",
        (SupervisorMachine,),
        {"strategy": strategy, "runtime": runtime},
    )
    await anyio.to_thread.run_sync(partial(run_state_machine_as_test, machine, settings=SETTINGS))


# -- the model itself, on hand-checked cases ------------------------------------------------


def make_model(strategy: str, *restarts: str, max_restarts: int = 3) -> Model:
    children = [ModelChild(f"c{i}", r) for i, r in enumerate(restarts)]
    return Model(strategy, max_restarts, 5.0, 0.0, children)


def test_the_model_gives_up_on_the_fourth_restart_within_five_seconds() -> None:
    model = make_model("one_for_one", "permanent")
    for t in (0.0, 1.0, 2.0):
        model.now = t
        model.exited(model.children[0], "crash")
        assert model.alive
    model.now = 3.0
    model.exited(model.children[0], "crash")
    assert not model.alive


def test_the_model_forgets_restarts_older_than_the_window() -> None:
    model = make_model("one_for_one", "permanent")
    for t in (0.0, 1.0, 2.0, 6.0):
        model.now = t
        model.exited(model.children[0], "crash")
    assert model.alive and model.in_window() == 3


def test_the_model_restarts_later_siblings_for_rest_for_one_and_drops_temporary_ones() -> None:
    model = make_model("rest_for_one", "permanent", "transient", "temporary", "permanent")
    model.exited(model.children[1], "killed")
    assert [(c.id, c.restarts) for c in model.children] == [("c0", 0), ("c1", 1), ("c3", 1)]
    assert model.trace[4:] == [
        ("exit", "c1"),
        ("shutdown", "c3"),
        ("shutdown", "c2"),
        ("restart", "c1"),
        ("restart", "c3"),
    ]


def test_the_model_does_not_restart_a_transient_child_after_shutdown() -> None:
    model = make_model("one_for_all", "transient", "permanent")
    model.exited(model.children[0], "shutdown")
    assert not model.children[0].alive and model.restarts_total == 0
    model.exited(model.children[1], "crash")
    assert [(c.alive, c.restarts) for c in model.children] == [(True, 1), (True, 1)]

"""Soak: thousands of injected crashes into a three-level tree on the virtual clock.

The tree::

    top (one_for_one, 100 restarts in 1 s)
    ├── mid_a (one_for_one,  50 in 1 s): a0..a3 permanent
    ├── mid_b (one_for_all,  50 in 1 s): b0 permanent, b1 transient, b2 permanent
    └── mid_c (rest_for_one, 10 in 1 s): c0 permanent, c1 transient, c2 temporary,
                                         c3 permanent

Two chaos actors take turns every 0.05 s of virtual time (each at 10 kills/s, the
second started half a period later, so no two kills share an instant): one sends the
untrappable ``"kill"``, the other a ``RuntimeError`` that looks like a crash. About 7
kills/s land on mid_a and on mid_c, so mid_a and mid_b restart every crash, while mid_c
now and then exceeds its 10 restarts in 1 s, gives up, and top starts it afresh.

An autojumping clock only moves once every actor is idle, so each kill and its whole
cascade (restarts, a give-up, top's restart of mid_c) settle before the next kill.
At the end:

- every permanent and transient worker of the current tree runs, and only mid_c
  instances ever gave up (each with Down reason ``"shutdown"``, its workers dead, and
  top counting one restart of mid_c per give-up);
- each injected crash is one child exit seen by a mid supervisor;
- the restart counts of ``which_children`` equal the ``("supervision", "child",
  "restart")`` events per supervisor and child; summed with the last count of each
  supervisor that gave up, they equal all restart events.

The full 10,000-crash run is opt-in (``--run-slow``); 500 crashes run in CI.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from foundation import Actor, ActorRef, Monitor, Pid, Runtime
from foundation.testing import VirtualClock
from supervision import Supervisor, child_spec
from supervision.testing import ChaosMonkey

pytestmark = pytest.mark.anyio

RATE = 10.0  # kills per second of each chaos actor
CHAOS = RuntimeError("chaos")


class Worker(Actor):
    async def handle_call(self, request: Any, caller: Any) -> Any:
        return request


def workers(*specs: tuple[str, str]) -> list[Any]:
    return [child_spec(Worker, id=i, restart=r) for i, r in specs]


def three_level_tree() -> list[Any]:
    mid_a = Supervisor.child_spec(
        workers(*((f"a{i}", "permanent") for i in range(4))),
        id="mid_a",
        strategy="one_for_one",
        max_restarts=50,
        max_seconds=1.0,
    )
    mid_b = Supervisor.child_spec(
        workers(("b0", "permanent"), ("b1", "transient"), ("b2", "permanent")),
        id="mid_b",
        strategy="one_for_all",
        max_restarts=50,
        max_seconds=1.0,
    )
    mid_c = Supervisor.child_spec(
        workers(("c0", "permanent"), ("c1", "transient"), ("c2", "temporary"), ("c3", "permanent")),
        id="mid_c",
        strategy="rest_for_one",
        max_restarts=10,
        max_seconds=1.0,
    )
    return [mid_a, mid_b, mid_c]


@dataclass
class Ledger:
    """Telemetry of the run, grouped by supervisor incarnation."""

    rt: Runtime
    restarts: Counter[tuple[Pid, Any]] = field(default_factory=Counter)
    exits: dict[Pid, list[Any]] = field(default_factory=dict)
    gave_up: list[tuple[Pid, str]] = field(default_factory=list)
    kills: int = 0
    pids: dict[Pid, list[Pid]] = field(default_factory=dict)  # supervisor -> child pids
    mids: list[tuple[Any, ActorRef, Monitor]] = field(default_factory=list)  # incarnations
    top: Pid | None = None
    errors: list[str] = field(default_factory=list)  # a raising handler would be detached

    def record(
        self, event: tuple[str, ...], measurements: Mapping[str, Any], meta: Mapping[str, Any]
    ) -> None:
        if event[1] == "chaos":
            self.kills += 1
            return
        sup = meta["supervisor"]
        if event[1] == "supervisor":
            self.gave_up.append((sup, meta["reason"]))
            return
        what = event[2]
        if what == "exit":
            self.exits.setdefault(sup, []).append(meta["reason"])
        elif what in ("start", "restart"):
            self.pids.setdefault(sup, []).append(meta["pid"])
            if what == "restart":
                self.restarts[(sup, meta["id"])] += 1
                # The k-th restart event of a child carries restarts == k.
                if measurements["restarts"] != self.restarts[(sup, meta["id"])]:
                    self.errors.append(f"restart event {dict(measurements)} {dict(meta)}")
            if sup == self.top:  # a mid supervisor (re)started: watch this incarnation
                self.watch(meta["id"], self.rt.ref_of(meta["pid"]))

    def watch(self, mid_id: Any, ref: ActorRef) -> None:
        self.mids.append((mid_id, ref, self.rt.monitor(ref)))


async def soak(rt: Runtime, crashes: int) -> None:
    ledger = Ledger(rt)
    rt.telemetry.attach(("supervision",), ledger.record)
    top = await Supervisor.start(
        three_level_tree(), strategy="one_for_one", max_restarts=100, max_seconds=1.0
    )
    ledger.top = top.pid
    for info in await Supervisor.which_children(top):  # started before top's pid was known
        assert info.ref is not None
        ledger.watch(info.id, info.ref)

    half = crashes // 2
    killer = await ChaosMonkey.start(top, rate=RATE, seed=1, max_kills=half, reason="kill")
    await rt.sleep(0.5 / RATE)  # allow-sleep: runtime clock (virtual)
    crasher = await ChaosMonkey.start(
        top, rate=RATE, seed=2, max_kills=crashes - half, reason=CHAOS
    )
    for monkey in (killer, crasher):
        assert (await rt.monitor(monkey).wait(None)).reason == "normal"
    await rt.wait_idle()
    assert ledger.errors == []

    # -- every injected crash was one child exit, seen by a mid supervisor ----------------
    stats = [await ChaosMonkey.stats(m) for m in (killer, crasher)]
    assert [s.kills for s in stats] == [half, crashes - half]
    assert [s.skipped for s in stats] == [0, 0]
    assert ledger.kills == crashes
    injected = [r for sup, reasons in ledger.exits.items() if sup != top.pid for r in reasons]
    assert len(injected) == crashes
    assert all(r == "killed" or r is CHAOS for r in injected)

    # -- only mid_c gave up, and top restarted it each time -------------------------------
    current = {info.id: info for info in await Supervisor.which_children(top)}
    assert [(i.id, i.status) for i in current.values()] == [
        ("mid_a", "running"),
        ("mid_b", "running"),
        ("mid_c", "running"),
    ]
    live_mids = {info.ref for info in current.values()}
    gave_up = {sup for sup, _ in ledger.gave_up}
    assert all(reason == "reached_max_restart_intensity" for _, reason in ledger.gave_up)
    assert len(gave_up) == len(ledger.gave_up)  # an incarnation gives up once
    assert top.pid not in gave_up
    assert current["mid_a"].restarts == current["mid_b"].restarts == 0
    assert current["mid_c"].restarts == len(ledger.gave_up) > 0
    assert ledger.exits.get(top.pid, []) == ["shutdown"] * len(ledger.gave_up)
    for mid_id, ref, mon in ledger.mids:
        if ref in live_mids:
            assert mon.down is None
            continue
        assert mid_id == "mid_c"
        assert mon.down is not None and mon.down.reason == "shutdown"
        assert ref.pid in gave_up
        assert not any(rt.ref_of(pid).is_alive for pid in ledger.pids.get(ref.pid, []))
    assert len(ledger.mids) == 3 + len(ledger.gave_up)

    # -- every permanent (and transient) worker of the live tree runs -----------------------
    summed = 0
    for sup in [top, *(info.ref for info in current.values())]:
        assert sup is not None
        for info in await Supervisor.which_children(sup):
            if info.restart != "temporary":
                assert info.status == "running" and info.ref is not None and info.ref.is_alive
            # -- restart counts equal the telemetry, per supervisor and child ------------
            assert info.restarts == ledger.restarts[(sup.pid, info.id)], (sup, info.id)
            summed += info.restarts
    # Supervisors that gave up took their counts with them: their last events hold them.
    summed += sum(n for (sup, _), n in ledger.restarts.items() if sup in gave_up)
    assert summed == sum(ledger.restarts.values())
    # Most crashes were restarted where they happened: few made mid_c give up.
    assert len(ledger.gave_up) < crashes * 0.05

    await top.stop("shutdown")


@pytest.mark.parametrize(
    "crashes",
    [
        pytest.param(500, id="500"),
        pytest.param(10_000, id="10000", marks=[pytest.mark.slow, pytest.mark.timeout(600)]),
    ],
)
async def test_a_three_level_tree_survives_injected_crashes_and_its_counts_match_telemetry(
    runtime: Runtime, clock: VirtualClock, crashes: int
) -> None:
    await soak(runtime, crashes)

"""The client API of ``Supervisor``: start/terminate/restart/delete a child and the three
introspection calls, each addressed by ref and by registered name.

A client error is answered to the caller (the supervisor keeps running), as Erlang's
``{error, Reason}`` replies.
"""

from __future__ import annotations

from typing import Any

import pytest

from foundation import Actor, ActorRef, Caller, Runtime
from supervision import (
    ChildAlreadyPresent,
    ChildAlreadyStarted,
    ChildCounts,
    ChildInfo,
    ChildNotFound,
    ChildRunning,
    ChildSpec,
    InvalidChildSpec,
    StartChildError,
    Supervisor,
    SupervisorStatistics,
)

pytestmark = pytest.mark.anyio


class Boom(Exception):
    """A failing init."""


class Worker(Actor):
    """Journals its start and stop; a trapping child, so a shutdown runs terminate."""

    async def init(self, journal: list[Any], tag: str) -> None:
        self.journal = journal
        self.tag = tag
        self.trap_exits = True
        journal.append(("start", tag))

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        return self.tag

    async def terminate(self, reason: Any) -> None:
        self.journal.append(("stop", self.tag, reason))


class FailingInit(Actor):
    async def init(self, error: Exception) -> None:
        raise error


def worker(journal: list[Any], tag: str, **options: Any) -> ChildSpec:
    return ChildSpec(tag, (Worker, (journal, tag)), **options)


@pytest.fixture(params=["ref", "name"])
def by(request: pytest.FixtureRequest) -> str:
    """Address the supervisor by its ref or by its registered name."""
    return str(request.param)


async def start(journal: list[Any], by: str, children: list[Any], **flags: Any) -> Any:
    """Start a supervisor registered as "sup"; return how the test addresses it."""
    ref = await Supervisor.start(children, name="sup", **flags)
    return ref if by == "ref" else "sup"


async def rows(sup: Any) -> list[tuple[Any, str]]:
    return [(c.id, c.status) for c in await Supervisor.which_children(sup)]


# -- start_child -------------------------------------------------------------------------
async def test_start_child_appends_the_child_at_the_end_and_starts_it(
    runtime: Runtime, by: str
) -> None:
    journal: list[Any] = []
    sup = await start(journal, by, [worker(journal, "a"), worker(journal, "b")])
    ref = await Supervisor.start_child(sup, worker(journal, "c"))
    assert isinstance(ref, ActorRef) and ref.is_alive
    assert await ref.call("ping") == "c"
    assert await rows(sup) == [("a", "running"), ("b", "running"), ("c", "running")]
    journal.clear()
    await runtime.whereis("sup").stop("shutdown")  # type: ignore[union-attr]
    assert [e[1] for e in journal] == ["c", "b", "a"]  # an added child stops first


async def test_start_child_accepts_an_actor_class_or_a_tuple(runtime: Runtime, by: str) -> None:
    journal: list[Any] = []
    sup = await start(journal, by, [])
    await Supervisor.start_child(sup, (Worker, journal, "t"))
    assert await rows(sup) == [("Worker", "running")]
    assert journal == [("start", "t")]


async def test_start_child_with_the_id_of_a_running_child_is_already_started(
    runtime: Runtime, by: str
) -> None:
    journal: list[Any] = []
    sup = await start(journal, by, [worker(journal, "a")])
    (row,) = await Supervisor.which_children(sup)
    with pytest.raises(ChildAlreadyStarted) as exc:
        await Supervisor.start_child(sup, worker(journal, "a"))
    assert (exc.value.child_id, exc.value.ref) == ("a", row.ref)
    assert journal == [("start", "a")]


async def test_start_child_with_the_id_of_a_stopped_child_is_already_present(
    runtime: Runtime, by: str
) -> None:
    journal: list[Any] = []
    sup = await start(journal, by, [worker(journal, "a")])
    await Supervisor.terminate_child(sup, "a")
    with pytest.raises(ChildAlreadyPresent) as exc:
        await Supervisor.start_child(sup, worker(journal, "a"))
    assert exc.value.child_id == "a"
    assert await rows(sup) == [("a", "undefined")]


async def test_a_child_that_fails_to_start_is_not_kept(runtime: Runtime, by: str) -> None:
    journal: list[Any] = []
    sup = await start(journal, by, [worker(journal, "a")])
    error = Boom("no")
    with pytest.raises(StartChildError) as exc:
        await Supervisor.start_child(sup, ChildSpec("f", (FailingInit, (error,))))
    assert exc.value.child_id == "f"
    assert exc.value.__cause__ is error
    assert await rows(sup) == [("a", "running")]
    assert (await Supervisor.count_children(sup)).specs == 1
    assert (await Supervisor.statistics(sup)).restarts_total == 0


async def test_start_child_refuses_a_significant_child_under_auto_shutdown_never(
    runtime: Runtime, by: str
) -> None:
    journal: list[Any] = []
    sup = await start(journal, by, [])
    significant = worker(journal, "s", restart="transient", significant=True)
    with pytest.raises(InvalidChildSpec) as exc:
        await Supervisor.start_child(sup, significant)
    assert exc.value.reason == "bad_combination"
    assert journal == []
    assert await rows(sup) == []


# -- terminate_child ---------------------------------------------------------------------
async def test_terminate_child_stops_the_child_and_keeps_its_spec(
    runtime: Runtime, by: str
) -> None:
    journal: list[Any] = []
    sup = await start(journal, by, [worker(journal, "a"), worker(journal, "b")])
    (row_a, _) = await Supervisor.which_children(sup)
    assert row_a.ref is not None
    mon = runtime.monitor(row_a.ref)
    await Supervisor.terminate_child(sup, "a")
    assert (await mon.wait()).reason == "shutdown"
    assert journal[-1] == ("stop", "a", "shutdown")
    (row_a, _) = await Supervisor.which_children(sup)
    assert row_a == ChildInfo("a", None, "undefined", "worker", "permanent", 0)
    assert await Supervisor.count_children(sup) == ChildCounts(2, 1, 0, 2)


async def test_a_terminated_permanent_child_is_not_restarted(runtime: Runtime, by: str) -> None:
    journal: list[Any] = []
    sup = await start(journal, by, [worker(journal, "a")])
    await Supervisor.terminate_child(sup, "a")
    assert await rows(sup) == [("a", "undefined")]
    assert journal.count(("start", "a")) == 1
    assert (await Supervisor.statistics(sup)).restarts_total == 0


async def test_terminate_child_removes_a_temporary_childs_spec(runtime: Runtime, by: str) -> None:
    journal: list[Any] = []
    sup = await start(journal, by, [worker(journal, "t", restart="temporary")])
    await Supervisor.terminate_child(sup, "t")
    assert await rows(sup) == []
    with pytest.raises(ChildNotFound):
        await Supervisor.restart_child(sup, "t")


async def test_terminate_child_of_a_stopped_child_does_nothing(runtime: Runtime, by: str) -> None:
    journal: list[Any] = []
    sup = await start(journal, by, [worker(journal, "a")])
    await Supervisor.terminate_child(sup, "a")
    await Supervisor.terminate_child(sup, "a")
    assert await rows(sup) == [("a", "undefined")]
    assert journal == [("start", "a"), ("stop", "a", "shutdown")]


async def test_terminate_child_of_an_unknown_id_is_child_not_found(
    runtime: Runtime, by: str
) -> None:
    journal: list[Any] = []
    sup = await start(journal, by, [worker(journal, "a")])
    with pytest.raises(ChildNotFound) as exc:
        await Supervisor.terminate_child(sup, "nope")
    assert exc.value.child_id == "nope"
    assert await rows(sup) == [("a", "running")]


# -- restart_child -----------------------------------------------------------------------
async def test_restart_child_starts_a_terminated_child_again(runtime: Runtime, by: str) -> None:
    journal: list[Any] = []
    sup = await start(journal, by, [worker(journal, "a"), worker(journal, "b")])
    await Supervisor.terminate_child(sup, "a")
    ref = await Supervisor.restart_child(sup, "a")
    assert ref is not None and await ref.call("ping") == "a"
    assert await rows(sup) == [("a", "running"), ("b", "running")]  # in its old place
    assert journal == [("start", "a"), ("start", "b"), ("stop", "a", "shutdown"), ("start", "a")]
    assert (await Supervisor.statistics(sup)).restarts_total == 0  # not an intensity restart


async def test_restart_child_of_a_running_child_is_child_running(runtime: Runtime, by: str) -> None:
    journal: list[Any] = []
    sup = await start(journal, by, [worker(journal, "a")])
    with pytest.raises(ChildRunning) as exc:
        await Supervisor.restart_child(sup, "a")
    assert (exc.value.child_id, exc.value.state) == ("a", "running")
    assert journal == [("start", "a")]


async def test_restart_child_of_an_unknown_id_is_child_not_found(runtime: Runtime, by: str) -> None:
    sup = await start([], by, [])
    with pytest.raises(ChildNotFound):
        await Supervisor.restart_child(sup, "nope")


async def test_restart_child_that_fails_to_start_keeps_the_spec(runtime: Runtime, by: str) -> None:
    error = Boom("no")
    plan = {"fail": False}

    class Sometimes(Actor):
        async def init(self) -> None:
            if plan["fail"]:
                raise error

    sup = await start([], by, [ChildSpec("s", Sometimes)])
    await Supervisor.terminate_child(sup, "s")
    plan["fail"] = True
    with pytest.raises(StartChildError) as exc:
        await Supervisor.restart_child(sup, "s")
    assert exc.value.__cause__ is error
    assert await rows(sup) == [("s", "undefined")]


# -- delete_child ------------------------------------------------------------------------
async def test_delete_child_forgets_a_stopped_child(runtime: Runtime, by: str) -> None:
    journal: list[Any] = []
    sup = await start(journal, by, [worker(journal, "a"), worker(journal, "b")])
    await Supervisor.terminate_child(sup, "a")
    await Supervisor.delete_child(sup, "a")
    assert await rows(sup) == [("b", "running")]
    await Supervisor.start_child(sup, worker(journal, "a"))  # the id is free again
    assert await rows(sup) == [("b", "running"), ("a", "running")]


async def test_delete_child_of_a_running_child_is_child_running(runtime: Runtime, by: str) -> None:
    journal: list[Any] = []
    sup = await start(journal, by, [worker(journal, "a")])
    with pytest.raises(ChildRunning) as exc:
        await Supervisor.delete_child(sup, "a")
    assert exc.value.state == "running"
    assert await rows(sup) == [("a", "running")]


async def test_delete_child_of_an_unknown_id_is_child_not_found(runtime: Runtime, by: str) -> None:
    sup = await start([], by, [])
    with pytest.raises(ChildNotFound):
        await Supervisor.delete_child(sup, "nope")


# -- introspection -----------------------------------------------------------------------
async def test_which_children_lists_every_child_in_start_order(runtime: Runtime, by: str) -> None:
    journal: list[Any] = []
    sub = Supervisor.child_spec([], id="sub", restart="transient")
    children = [worker(journal, "a", restart="temporary"), sub, worker(journal, "b")]
    sup = await start(journal, by, children)
    await Supervisor.terminate_child(sup, "b")
    a, s, b = await Supervisor.which_children(sup)
    assert a.ref is not None and s.ref is not None
    assert a == ChildInfo("a", a.ref, "running", "worker", "temporary", 0)
    assert s == ChildInfo("sub", s.ref, "running", "supervisor", "transient", 0)
    assert b == ChildInfo("b", None, "undefined", "worker", "permanent", 0)
    assert await Supervisor.which_children(s.ref) == []


async def test_count_children_counts_specs_live_children_supervisors_and_workers(
    runtime: Runtime, by: str
) -> None:
    journal: list[Any] = []
    sub = Supervisor.child_spec([], id="sub")
    sup = await start(journal, by, [worker(journal, "a"), sub, worker(journal, "b")])
    assert await Supervisor.count_children(sup) == ChildCounts(3, 3, 1, 2)
    await Supervisor.terminate_child(sup, "sub")
    assert await Supervisor.count_children(sup) == ChildCounts(3, 2, 1, 2)
    await Supervisor.delete_child(sup, "sub")
    assert await Supervisor.count_children(sup) == ChildCounts(2, 2, 0, 2)


async def test_statistics_reports_the_flags_the_window_and_the_counts(
    runtime: Runtime, by: str
) -> None:
    journal: list[Any] = []
    sup = await start(
        journal, by, [worker(journal, "a")], strategy="rest_for_one", max_restarts=7, max_seconds=9
    )
    assert await Supervisor.statistics(sup) == SupervisorStatistics(
        strategy="rest_for_one",
        max_restarts=7,
        max_seconds=9,
        restarts_in_window=0,
        restarts_total=0,
        specs=1,
        active=1,
        supervisors=0,
        workers=1,
    )


async def test_client_errors_leave_the_supervisor_running(runtime: Runtime, by: str) -> None:
    journal: list[Any] = []
    sup = await start(journal, by, [worker(journal, "a")])
    ref = runtime.whereis("sup")
    assert ref is not None
    for call in (
        Supervisor.terminate_child(sup, "x"),
        Supervisor.restart_child(sup, "a"),
        Supervisor.delete_child(sup, "a"),
        Supervisor.start_child(sup, worker(journal, "a")),
    ):
        with pytest.raises((ChildNotFound, ChildRunning, ChildAlreadyStarted)):
            await call
    assert runtime.whereis("sup") is ref and ref.is_alive
    assert await rows(sup) == [("a", "running")]


# -- a start function that answers None (Erlang's ``ignore``) -------------------------------
async def _ignore() -> None:
    return None


async def test_an_ignored_child_is_kept_as_not_running_unless_it_is_temporary(
    runtime: Runtime, by: str
) -> None:
    children = [ChildSpec("p", _ignore), ChildSpec("t", _ignore, restart="temporary")]
    sup = await start([], by, children)
    assert await rows(sup) == [("p", "undefined")]
    assert await Supervisor.start_child(sup, ChildSpec("q", _ignore)) is None
    assert await Supervisor.start_child(sup, ChildSpec("u", _ignore, restart="temporary")) is None
    assert await rows(sup) == [("p", "undefined"), ("q", "undefined")]
    assert await Supervisor.restart_child(sup, "p") is None
    assert await Supervisor.count_children(sup) == ChildCounts(2, 0, 0, 2)

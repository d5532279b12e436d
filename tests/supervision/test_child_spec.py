"""``ChildSpec`` and supervisor flags: one test per validation rule and per default.

Every malformed value raises ``InvalidChildSpec`` (or ``InvalidSupervisorFlags``) with
Erlang's reason tag, at the line that built it; a supervisor with bad flags or children
fails ``Supervisor.start`` before any child starts.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from foundation import Actor, ActorRef, Runtime, current_runtime
from supervision import (
    ChildSpec,
    DynamicSupervisor,
    InvalidChildSpec,
    InvalidSupervisorFlags,
    SupervisionError,
    Supervisor,
    check_child_specs,
    child_spec,
)

pytestmark = pytest.mark.anyio


class Worker(Actor):
    """Writes ``("start", tag)`` into a shared journal when it starts."""

    async def init(self, journal: list[Any], tag: str) -> None:
        journal.append(("start", tag))


class Nested(Supervisor):
    """A module-based supervisor, for the ``type`` default of ``child_spec``."""


def spec(child_id: Any = "a", **options: Any) -> ChildSpec:
    return ChildSpec(child_id, (Worker, ([], child_id)), **options)


def assert_invalid(exc: pytest.ExceptionInfo[InvalidChildSpec], tag: str, got: str) -> None:
    assert exc.value.reason == tag
    assert str(exc.value).startswith(f"{tag}: ")
    assert str(exc.value).endswith(f"got: {got}")


# -- validation of one spec ------------------------------------------------------------
@pytest.mark.parametrize("restart", ["always", "Permanent", None, 1])
def test_an_unknown_restart_type_is_invalid_restart_type(restart: Any) -> None:
    with pytest.raises(InvalidChildSpec) as exc:
        spec(restart=restart)
    assert_invalid(exc, "invalid_restart_type", repr(restart))


@pytest.mark.parametrize("shutdown", [0, 0.0, -1, float("inf"), float("nan"), True, "soon", []])
def test_a_shutdown_that_is_not_positive_seconds_brutal_kill_or_infinity_is_invalid_shutdown(
    shutdown: Any,
) -> None:
    with pytest.raises(InvalidChildSpec) as exc:
        spec(shutdown=shutdown)
    assert_invalid(exc, "invalid_shutdown", repr(shutdown))


@pytest.mark.parametrize("shutdown", [0.001, 1, 5.0, "brutal_kill", "infinity"])
def test_positive_seconds_brutal_kill_and_infinity_are_valid_shutdowns(shutdown: Any) -> None:
    assert spec(shutdown=shutdown).shutdown == shutdown


@pytest.mark.parametrize("child_type", ["process", "Worker", None])
def test_an_unknown_child_type_is_invalid_child_type(child_type: Any) -> None:
    with pytest.raises(InvalidChildSpec) as exc:
        spec(type=child_type)
    assert_invalid(exc, "invalid_child_type", repr(child_type))


def test_a_significant_permanent_child_is_a_bad_combination() -> None:
    with pytest.raises(InvalidChildSpec) as exc:
        spec(restart="permanent", significant=True)
    assert exc.value.reason == "bad_combination"
    assert "permanent" in str(exc.value)


@pytest.mark.parametrize("restart", ["transient", "temporary"])
def test_a_significant_transient_or_temporary_child_is_valid(restart: Any) -> None:
    assert spec(restart=restart, significant=True).significant is True


def test_a_significant_flag_that_is_not_a_bool_is_invalid_significant() -> None:
    with pytest.raises(InvalidChildSpec) as exc:
        spec(restart="transient", significant=1)
    assert_invalid(exc, "invalid_significant", "1")


def test_an_unhashable_id_is_invalid_child_id() -> None:
    with pytest.raises(InvalidChildSpec) as exc:
        spec(child_id=["a"])
    assert_invalid(exc, "invalid_child_id", "['a']")


def sync_start() -> None:
    """Not ``async``: cannot be a start function."""


async def async_start() -> ActorRef:
    ref: ActorRef = await current_runtime().spawn(Worker, [], "fn", link=True)
    return ref


class NotAnActor:
    pass


@pytest.mark.parametrize(
    "start",
    [
        NotAnActor,
        Worker(),
        "Worker",
        (Worker,),
        (Worker, "args"),
        (Worker, (), {"name": "x"}, "extra"),
        (Worker, (), {1: "x"}),
        (NotAnActor, ()),
        sync_start,
        lambda: None,
    ],
    ids=[
        "plain-class",
        "instance",
        "string",
        "no-args",
        "args-not-a-tuple",
        "four-items",
        "non-str-kwargs",
        "not-an-actor-tuple",
        "sync-function",
        "lambda",
    ],
)
def test_a_start_that_is_not_an_actor_a_tuple_or_an_async_function_is_invalid_mfa(
    start: Any,
) -> None:
    with pytest.raises(InvalidChildSpec) as exc:
        ChildSpec("a", start)
    assert_invalid(exc, "invalid_mfa", repr(start))


def test_an_actor_class_a_tuple_and_an_async_function_are_valid_starts() -> None:
    assert ChildSpec("a", Worker)._start == (Worker, (), {})
    assert ChildSpec("a", (Worker, ([], "t")))._start == (Worker, ([], "t"), {})
    assert ChildSpec("a", (Worker, [1], {"name": "n"}))._start == (Worker, (1,), {"name": "n"})
    assert ChildSpec("a", async_start)._start is async_start


def test_every_invalid_child_spec_is_a_value_error_and_a_supervision_error() -> None:
    with pytest.raises(InvalidChildSpec) as exc:
        spec(restart="sometimes")
    assert isinstance(exc.value, ValueError)
    assert isinstance(exc.value, SupervisionError)


# -- defaults ----------------------------------------------------------------------------
def test_a_worker_spec_defaults_to_permanent_five_seconds_worker_not_significant() -> None:
    s = ChildSpec("a", Worker)
    assert (s.restart, s.shutdown, s.type, s.significant) == ("permanent", 5.0, "worker", False)


def test_a_supervisor_spec_defaults_to_an_infinity_shutdown() -> None:
    assert ChildSpec("sub", Supervisor, type="supervisor").shutdown == "infinity"


def test_child_spec_takes_the_class_name_as_id_and_the_name_option_when_given() -> None:
    assert child_spec(Worker, [], "t").id == "Worker"
    assert child_spec(Worker, [], "t", name="w").id == "w"
    assert child_spec(Worker, [], "t", id=7, name="w").id == 7


def test_child_spec_passes_args_and_kwargs_to_init() -> None:
    s = child_spec(Worker, [], "t", name="w", restart="transient", shutdown=2.0)
    assert s._start == (Worker, ([], "t"), {"name": "w"})
    assert (s.restart, s.shutdown, s.type) == ("transient", 2.0, "worker")


def test_child_spec_of_a_supervisor_class_is_a_supervisor_with_infinity_shutdown() -> None:
    for cls in (Supervisor, Nested, DynamicSupervisor):
        s = child_spec(cls)
        assert (s.type, s.shutdown) == ("supervisor", "infinity")


def test_supervisor_child_spec_makes_a_subtree_spec() -> None:
    s = Supervisor.child_spec([spec("a")], id="sub", strategy="one_for_all")
    assert (s.id, s.type, s.shutdown, s.restart) == ("sub", "supervisor", "infinity", "permanent")
    assert s._start == (Supervisor, ([spec("a")],), {"strategy": "one_for_all"})


def test_child_spec_refuses_something_that_is_not_an_actor_class() -> None:
    with pytest.raises(InvalidChildSpec) as exc:
        child_spec(NotAnActor)  # type: ignore[arg-type]
    assert_invalid(exc, "invalid_mfa", repr(NotAnActor))


def test_the_default_intensity_is_elixirs_three_restarts_in_five_seconds() -> None:
    params = inspect.signature(Supervisor.init).parameters
    assert params["max_restarts"].default == 3
    assert params["max_seconds"].default == 5.0
    assert params["strategy"].default == "one_for_one"
    assert params["auto_shutdown"].default == "never"
    dyn = inspect.signature(DynamicSupervisor.init).parameters
    assert (dyn["max_restarts"].default, dyn["max_seconds"].default) == (3, 5.0)
    assert dyn["max_children"].default is None


# -- a list of children ------------------------------------------------------------------
def test_two_children_with_one_id_are_a_duplicate_child_id() -> None:
    with pytest.raises(InvalidChildSpec) as exc:
        check_child_specs([spec("a"), spec("b"), spec("a")])
    assert exc.value.reason == "duplicate_child_id"
    assert "'a'" in str(exc.value)


def test_a_significant_child_under_auto_shutdown_never_is_a_bad_combination() -> None:
    s = spec(restart="transient", significant=True)
    with pytest.raises(InvalidChildSpec) as exc:
        check_child_specs([s])
    assert exc.value.reason == "bad_combination"
    assert "never" in str(exc.value)
    assert check_child_specs([s], "any_significant") == [s]


def test_check_child_specs_accepts_classes_and_tuples_and_keeps_the_order() -> None:
    specs = check_child_specs([spec("a"), Nested, (Worker, [], "t")])
    assert [s.id for s in specs] == ["a", "Nested", "Worker"]
    assert specs[1].type == "supervisor"
    assert specs[2]._start == (Worker, ([], "t"), {})


@pytest.mark.parametrize(
    ("children", "got"), [("ab", "'ab'"), (42, "42"), ([42], "42"), ([spec("a"), None], "None")]
)
def test_children_that_are_not_a_list_of_specs_are_invalid_child_spec(
    children: Any, got: str
) -> None:
    with pytest.raises(InvalidChildSpec) as exc:
        check_child_specs(children)
    assert_invalid(exc, "invalid_child_spec", got)


# -- supervisor flags fail the start before anything starts ----------------------------
BAD_FLAGS = [
    ({"strategy": "one_for_some"}, "invalid_strategy", "'one_for_some'"),
    ({"strategy": "simple_one_for_one"}, "invalid_strategy", "'simple_one_for_one'"),
    ({"max_restarts": -1}, "invalid_intensity", "-1"),
    ({"max_restarts": 2.5}, "invalid_intensity", "2.5"),
    ({"max_restarts": True}, "invalid_intensity", "True"),
    ({"max_seconds": 0}, "invalid_period", "0"),
    ({"max_seconds": -5.0}, "invalid_period", "-5.0"),
    ({"max_seconds": float("inf")}, "invalid_period", "inf"),
    ({"max_seconds": "5"}, "invalid_period", "'5'"),
    ({"auto_shutdown": "always"}, "invalid_auto_shutdown", "'always'"),
]


@pytest.mark.parametrize(("flags", "tag", "got"), BAD_FLAGS, ids=[f[1] for f in BAD_FLAGS])
async def test_bad_supervisor_flags_fail_the_start_before_any_child_starts(
    runtime: Runtime, flags: dict[str, Any], tag: str, got: str
) -> None:
    journal: list[Any] = []
    before = runtime.statistics().spawned
    with pytest.raises(InvalidSupervisorFlags) as exc:
        await Supervisor.start([_journal_spec(journal)], **flags)
    assert exc.value.reason == tag
    assert str(exc.value).endswith(f"got: {got}")
    assert journal == []
    assert runtime.statistics().spawned == before


def _journal_spec(journal: list[Any], child_id: str = "a", **options: Any) -> ChildSpec:
    return ChildSpec(child_id, (Worker, (journal, child_id)), **options)


async def test_an_invalid_child_list_fails_the_start_before_any_child_starts(
    runtime: Runtime,
) -> None:
    journal: list[Any] = []
    before = runtime.statistics().spawned
    with pytest.raises(InvalidChildSpec) as exc:
        await Supervisor.start([_journal_spec(journal, "a"), _journal_spec(journal, "a")])
    assert exc.value.reason == "duplicate_child_id"
    significant = _journal_spec(journal, "s", restart="temporary", significant=True)
    with pytest.raises(InvalidChildSpec) as exc:
        await Supervisor.start([_journal_spec(journal, "a"), significant])
    assert exc.value.reason == "bad_combination"
    assert journal == []
    assert runtime.statistics().spawned == before


async def test_a_generator_of_children_is_started_like_a_list(runtime: Runtime) -> None:
    journal: list[Any] = []
    sup = await Supervisor.start(_journal_spec(journal, t) for t in ("a", "b"))
    assert journal == [("start", "a"), ("start", "b")]
    assert [c.id for c in await Supervisor.which_children(sup)] == ["a", "b"]


async def test_a_bad_max_children_fails_the_dynamic_supervisor_start(runtime: Runtime) -> None:
    before = runtime.statistics().spawned
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(InvalidSupervisorFlags) as exc:
            await DynamicSupervisor.start(max_children=bad)
        assert exc.value.reason == "invalid_max_children"
        assert str(exc.value).endswith(f"got: {bad!r}")
    with pytest.raises(InvalidSupervisorFlags) as exc:
        await DynamicSupervisor.start(max_seconds=0)
    assert exc.value.reason == "invalid_period"
    assert runtime.statistics().spawned == before

"""Every misuse gets a clear error: the right type, and a message that says what to do."""

from __future__ import annotations

import math
from typing import Any

import pytest

import foundation
from foundation import (
    Actor,
    ActorRef,
    AlreadyRegistered,
    Caller,
    Monitor,
    MonitorRef,
    Pid,
    Runtime,
    RuntimeClosed,
    StartError,
    current_runtime,
    current_time,
    self_ref,
)

pytestmark = pytest.mark.anyio

BAD_TIMEOUTS = [0, 0.0, -1, -0.5, math.nan]


class Echo(Actor):
    async def handle_call(self, request: Any, caller: Caller) -> Any:
        return request

    async def handle_cast(self, msg: Any) -> None:
        pass


class BadInit(Actor):
    async def init(self, value: int) -> None:
        raise KeyError(f"no setting {value}")


def not_an_actor() -> None:
    """A plain function, which spawn must refuse."""


# -- spawn -----------------------------------------------------------------------------


async def test_spawning_a_function_says_it_needs_an_actor_subclass(runtime: Runtime) -> None:
    with pytest.raises(TypeError, match=r"spawn\(\) takes an Actor subclass"):
        await runtime.spawn(not_an_actor)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Actor subclass"):
        await runtime.spawn(int)  # type: ignore[arg-type]
    assert runtime.actors() == []


async def test_spawning_an_actor_instance_hints_to_pass_the_class(runtime: Runtime) -> None:
    with pytest.raises(TypeError, match="pass the class, not an instance"):
        await runtime.spawn(Echo())  # type: ignore[arg-type]


async def test_an_init_that_raises_makes_spawn_raise_start_error_with_the_cause(
    runtime: Runtime,
) -> None:
    with pytest.raises(StartError, match="BadInit failed to start") as info:
        await runtime.spawn(BadInit, 3)
    assert isinstance(info.value.__cause__, KeyError)
    assert info.value.reason is info.value.__cause__
    assert info.value.actor == "BadInit"
    assert runtime.actors() == []


async def test_init_arguments_for_an_actor_without_init_are_refused(runtime: Runtime) -> None:
    with pytest.raises(StartError) as info:
        await runtime.spawn(Echo, 1, x=2)
    assert isinstance(info.value.__cause__, TypeError)
    assert "define 'async def init(self, ...)'" in str(info.value.__cause__)


async def test_link_true_from_outside_an_actor_says_what_to_use_instead(
    runtime: Runtime,
) -> None:
    with pytest.raises(RuntimeError, match=r"self\.spawn_link\(\).*monitor=True"):
        await runtime.spawn(Echo, link=True)
    assert runtime.actors() == []


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "10"])
async def test_a_bad_mailbox_size_is_refused(runtime: Runtime, size: Any) -> None:
    with pytest.raises(ValueError, match="mailbox_size must be a positive int or None"):
        await runtime.spawn(Echo, mailbox_size=size)


async def test_an_unknown_overflow_policy_is_refused_with_the_choices(
    runtime: Runtime,
) -> None:
    with pytest.raises(ValueError, match=r"overflow must be one of .*block.*drop_new.*fail"):
        await runtime.spawn(Echo, mailbox_size=2, overflow="drop_oldest")


async def test_spawning_with_a_taken_name_raises_already_registered(runtime: Runtime) -> None:
    first = await runtime.spawn(Echo, name="svc")
    with pytest.raises(AlreadyRegistered, match="'svc' is already registered") as info:
        await runtime.spawn(Echo, name="svc")
    assert info.value.owner == first


# -- outside a runtime -----------------------------------------------------------------


def test_runtime_functions_outside_a_runtime_say_so() -> None:
    for fn in (current_runtime, self_ref, current_time):
        with pytest.raises(RuntimeError, match="must be called from inside a foundation runtime"):
            fn()


async def test_runtime_functions_in_async_code_without_a_runtime_say_so() -> None:
    with pytest.raises(RuntimeError, match="must be called from inside a foundation runtime"):
        current_runtime()
    with pytest.raises(RuntimeError, match="must be called from inside a foundation runtime"):
        self_ref()


async def test_self_ref_outside_an_actor_says_it_needs_an_actor(runtime: Runtime) -> None:
    assert current_runtime() is runtime
    with pytest.raises(RuntimeError, match="inside an actor"):
        self_ref()


async def test_a_runtime_must_be_entered_before_use_and_only_once() -> None:
    rt = Runtime()
    with pytest.raises(RuntimeError, match="not started"):
        await rt.spawn(Echo)
    async with rt:
        pass
    with pytest.raises(RuntimeError, match="entered only once"):
        async with rt:
            pass


# -- timeouts --------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS)
async def test_meaningless_call_and_stop_timeouts_are_refused(
    runtime: Runtime, timeout: float
) -> None:
    ref = await runtime.spawn(Echo)
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        await ref.call("hi", timeout=timeout)
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        await ref.stop(timeout=timeout)
    assert ref.is_alive
    assert await ref.call("hi") == "hi"


@pytest.mark.parametrize("delay", BAD_TIMEOUTS)
async def test_meaningless_timer_delays_are_refused(runtime: Runtime, delay: float) -> None:
    ref = await runtime.spawn(Echo)
    with pytest.raises(ValueError, match="delay must be a positive number of seconds"):
        runtime.send_after(delay, ref, "tick")
    with pytest.raises(ValueError, match="delay must be a positive number of seconds"):
        runtime.cast_after(delay, ref, "tick")
    actor = ref._proc.actor  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="delay must be a positive number of seconds"):
        actor.send_after(delay, "tick")
    with pytest.raises(ValueError, match="delay must be a positive number of seconds"):
        actor.cast_after(delay, "tick")
    assert runtime.statistics().timers_pending == 0


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS)
def test_meaningless_runtime_timeouts_are_refused(timeout: float) -> None:
    with pytest.raises(ValueError, match="shutdown_timeout"):
        Runtime(shutdown_timeout=timeout)
    with pytest.raises(ValueError, match="watchdog"):
        Runtime(watchdog=timeout)


# -- after the runtime stopped ---------------------------------------------------------


async def test_refs_of_a_stopped_runtime_raise_runtime_closed() -> None:
    async with Runtime() as rt:
        ref = await rt.spawn(Echo)
    assert rt.closed
    with pytest.raises(RuntimeClosed, match="has stopped"):
        ref.cast("late")
    with pytest.raises(RuntimeClosed, match="has stopped"):
        ref.send("late")
    with pytest.raises(RuntimeClosed, match="has stopped"):
        await ref.call("late")


async def test_spawning_after_the_runtime_stopped_raises_runtime_closed() -> None:
    async with Runtime() as rt:
        pass
    with pytest.raises(RuntimeClosed, match="the runtime has stopped"):
        await rt.spawn(Echo)
    with pytest.raises(RuntimeClosed):
        rt.backend  # noqa: B018 - the property raises


# -- no public constructors ------------------------------------------------------------


@pytest.mark.parametrize("cls", [ActorRef, Pid, MonitorRef, Caller, Monitor])
def test_runtime_made_objects_have_no_public_constructor(cls: type) -> None:
    with pytest.raises(TypeError, match=rf"^foundation\.{cls.__name__} has no public constructor$"):
        cls()
    with pytest.raises(TypeError, match="has no public constructor"):
        cls(1, 2)


# -- foundation.run --------------------------------------------------------------------


def test_run_with_an_unknown_backend_names_the_supported_ones() -> None:
    async def main() -> None:
        pass

    with pytest.raises(RuntimeError, match="unknown backend 'curio': use 'asyncio' or 'trio'"):
        foundation.run(main, backend="curio")


def test_run_passes_a_lookup_error_of_main_through_unchanged() -> None:
    async def main() -> None:
        raise KeyError("a key the program itself misses")

    with pytest.raises(KeyError, match="a key the program itself misses"):
        foundation.run(main)


def test_run_returns_the_result_of_main() -> None:
    async def main(x: int) -> int:
        return x * 2

    assert foundation.run(main, 21, backend="asyncio", watchdog=None) == 42
    assert foundation.run(main, 21, backend="trio", watchdog=None) == 42

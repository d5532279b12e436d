"""Registry backend conformance, part 2: names, ``via`` names and entry lifetimes.

Each test runs once per backend (``registry_kind``: ``"dict"`` and ``"shm"``, see
conftest.py) and on both anyio backends; ``runtime``'s default registry (the one
``spawn(name=...)`` and ``runtime.whereis`` use) is on a fresh backend of that kind, and
``make_registry`` builds more. Part 1 (test_registry_conformance.py) covers the API.
"""

from __future__ import annotations

import pytest
from registry_helpers import (
    BackendFactory,
    FailsInInit,
    RegistersItself,
    RegistryFactory,
    Worker,
    spawn_workers,
)

from foundation import ActorRef, AlreadyRegistered, Runtime, StartError
from foundation.telemetry import capture
from foundation.testing import VirtualClock, assert_down

pytestmark = pytest.mark.anyio


@pytest.fixture
def runtime(backend_runtime: Runtime) -> Runtime:
    """Every test here runs with its runtime's default registry on the backend under test."""
    return backend_runtime


# -- the runtime's default registry ------------------------------------------------------


async def test_a_runtime_keeps_its_default_registry_on_the_backend_it_was_given(
    make_backend: BackendFactory,
) -> None:
    backend = make_backend()
    async with Runtime(registry=backend) as rt:
        assert rt.registry.backend is backend and rt.registry.keys == "unique"
        ref = await rt.spawn(Worker, "t", name="svc")
        assert rt.whereis("svc") == ref
        assert backend.whereis("svc") == ref  # the entry lives in that backend
        assert backend.count() == 1
    # Shutdown stops every actor, and their names go with them.
    assert backend.count() == 0
    assert backend.select(None) == []


async def test_spawn_with_a_name_registers_it_in_the_default_registry(runtime: Runtime) -> None:
    ref = await runtime.spawn(Worker, "t", name="worker")
    assert runtime.whereis("worker") == ref
    assert runtime.registry.whereis("worker") == ref
    assert runtime.registry.keys_of(ref) == ["worker"]
    assert ref.name == "worker"
    assert await runtime.whereis("worker").call("tag") == "t"  # type: ignore[union-attr]


async def test_spawn_with_a_taken_name_raises_and_leaves_no_half_started_actor(
    runtime: Runtime,
) -> None:
    owner = await runtime.spawn(Worker, name="worker")
    before = runtime.statistics()
    with pytest.raises(AlreadyRegistered) as info:
        await runtime.spawn(Worker, name="worker")
    assert info.value.owner == owner
    after = runtime.statistics()
    assert runtime.actors() == [owner]
    assert (after.actors, after.spawned, after.exited) == (
        before.actors,
        before.spawned,
        before.exited,
    )
    assert runtime.whereis("worker") == owner
    assert runtime.registry.count() == 1


# -- via names -------------------------------------------------------------------------


async def test_spawn_with_a_via_name_registers_it_in_that_registry(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry(name="pool")
    ref = await runtime.spawn(Worker, name=("via", reg, ("shard", 1)))
    assert runtime.whereis(("via", reg, ("shard", 1))) == ref
    assert runtime.whereis(reg.via(("shard", 1))) == ref
    assert reg.via("x") == ("via", reg, "x")
    assert reg.whereis(("shard", 1)) == ref
    assert runtime.whereis(("shard", 1)) is None  # not in the default registry
    assert runtime.registry.count() == 0
    with pytest.raises(AlreadyRegistered):
        await runtime.spawn(Worker, name=reg.via(("shard", 1)))
    assert runtime.actors() == [ref]
    await ref.stop()
    assert runtime.whereis(reg.via(("shard", 1))) is None and reg.count() == 0


async def test_a_via_name_must_name_a_registry(runtime: Runtime) -> None:
    with pytest.raises(TypeError, match="via"):
        await runtime.spawn(Worker, name=("via", {}, "k"))
    assert runtime.actors() == []


# -- names taken during start ----------------------------------------------------------


async def test_a_name_taken_by_an_actor_whose_init_failed_is_free_again(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry()
    with pytest.raises(StartError):
        await runtime.spawn(FailsInInit, name="svc")
    with pytest.raises(StartError):
        await runtime.spawn(FailsInInit, name=reg.via("svc"))
    assert runtime.whereis("svc") is None and reg.whereis("svc") is None
    assert runtime.registry.count() == 0 and reg.count() == 0
    ref = await runtime.spawn(Worker, name="svc")
    assert runtime.whereis("svc") == ref
    other = await runtime.spawn(Worker, name=reg.via("svc"))
    assert reg.whereis("svc") == other


async def test_an_actor_can_register_itself_during_init(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry(keys="duplicate")
    ref = await runtime.spawn(RegistersItself, reg, "group")
    assert reg.lookup("group") == [(ref, {"role": "self"})]
    assert reg.keys_of(ref) == ["group"]
    await ref.stop()
    assert reg.lookup("group") == []
    assert reg.count() == 0


# -- lifetimes -------------------------------------------------------------------------


@pytest.mark.parametrize("death", ["stop", "crash", "kill", "shutdown"])
async def test_entries_vanish_when_their_actor_exits(
    runtime: Runtime, make_registry: RegistryFactory, clock: VirtualClock, death: str
) -> None:
    unique = make_registry()
    dup = make_registry(keys="duplicate")
    ref = await runtime.spawn(Worker, name="named")
    other = await runtime.spawn(Worker)
    unique.register("u", ref)
    assert unique.lookup_or_register("elected", ref) == (ref, True)
    dup.register("d", ref, 1)
    dup.register("d", other, 2)
    if death == "stop":
        await ref.stop()
    elif death == "shutdown":
        await ref.stop(("shutdown", "test"))
    elif death == "crash":
        ref.cast("crash")
        await assert_down(ref, RuntimeError)
    else:
        ref.kill()
        await assert_down(ref, "killed")
    assert runtime.whereis("named") is None
    assert unique.whereis("u") is None and unique.whereis("elected") is None
    assert dup.lookup("d") == [(other, 2)]
    assert unique.keys_of(ref) == [] and dup.keys_of(ref) == []
    assert unique.count() == 0 and dup.count() == 1
    assert runtime.registry.count() == 0
    assert unique.statistics().owners == 0
    assert dup.statistics().owners == 1
    assert [k for k, _, _ in dup.select(None)] == ["d"]


async def test_entries_are_gone_by_the_time_monitors_see_the_down(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry()
    dup = make_registry(keys="duplicate")
    ref = await runtime.spawn(Worker, name="named")
    reg.register("k", ref)
    dup.register("group", ref)
    seen: list[object] = []
    mon = runtime.monitor(ref)
    ref.kill()
    await mon.wait()
    seen.append(reg.whereis("k"))
    seen.append(dup.lookup("group"))
    seen.append(runtime.whereis("named"))
    assert seen == [None, [], None]


async def test_exit_unregisters_emit_telemetry_for_each_key(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry(name="r")
    ref, keep = await spawn_workers(runtime, 2)
    for key in ("a", ("b", 2), 3):
        reg.register(key, ref)
    reg.register("kept", keep)
    async with capture("foundation.registry") as cap:
        await ref.stop()
    got = sorted((e.name[-1], repr(e.metadata["key"]), e.metadata["pid"]) for e in cap.events)
    assert got == sorted(("unregister", repr(k), ref.pid) for k in ("a", ("b", 2), 3))
    assert reg.select(None) == [("kept", keep, None)]


async def test_an_exited_actors_names_can_be_taken_by_a_new_one(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry()
    first = await runtime.spawn(Worker, 1, name="svc")
    reg.register("k", first)
    first.kill()
    await assert_down(first, "killed")
    second = await runtime.spawn(Worker, 2, name="svc")
    reg.register("k", second)
    assert runtime.whereis("svc") == second and reg.whereis("k") == second
    assert await second.call("tag") == 2
    found: list[tuple[ActorRef, object]] = reg.lookup("k")
    assert found == [(second, None)]

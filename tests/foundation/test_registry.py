"""The ``Registry``: unique and duplicate keys, ``via`` names, lifetimes, telemetry."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import pytest

from foundation import (
    Actor,
    ActorDead,
    ActorRef,
    AlreadyRegistered,
    Caller,
    DictBackend,
    Pid,
    Registry,
    Runtime,
    StartError,
)
from foundation.telemetry import capture
from foundation.testing import VirtualClock, assert_down

pytestmark = pytest.mark.anyio


class Worker(Actor):
    async def init(self, tag: Any = None) -> None:
        self.tag = tag

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == "crash":
            raise RuntimeError("boom")
        return self.tag

    async def handle_cast(self, msg: Any) -> None:
        if msg == "crash":
            raise RuntimeError("boom")


class FailsInInit(Actor):
    async def init(self) -> None:
        raise ValueError("bad config")


class RegistersItself(Actor):
    async def init(self, registry: Registry, key: Hashable) -> None:
        registry.register(key, self.ref, {"role": "self"})


async def spawn_workers(rt: Runtime, n: int) -> list[ActorRef]:
    return [await rt.spawn(Worker, i) for i in range(n)]


# -- unique keys -----------------------------------------------------------------------


async def test_a_unique_key_maps_to_one_actor_and_its_metadata(runtime: Runtime) -> None:
    reg = Registry(keys="unique", name="services")
    a, b = await spawn_workers(runtime, 2)
    reg.register("db", a, {"port": 5432})
    reg.register("cache", b)
    assert reg.whereis("db") == a
    assert reg.whereis("cache") == b
    assert reg.whereis("missing") is None
    assert reg.lookup("db") == [(a, {"port": 5432})]
    assert reg.lookup("missing") == []
    assert reg.meta("db") == {"port": 5432}
    assert reg.meta("cache") is None
    with pytest.raises(KeyError):
        reg.meta("missing")
    assert reg.count() == len(reg) == 2
    assert reg.keys_of(a) == ["db"]
    assert "services" in repr(reg) and "unique" in repr(reg)


async def test_registering_a_taken_unique_key_raises_already_registered_with_the_owner(
    runtime: Runtime,
) -> None:
    reg = Registry()
    a, b = await spawn_workers(runtime, 2)
    reg.register("k", a)
    with pytest.raises(AlreadyRegistered) as info:
        reg.register("k", b)
    assert info.value.owner == a and info.value.key == "k"
    assert "'k'" in str(info.value)
    # Erlang's register/2: the owner itself cannot take the name twice either.
    with pytest.raises(AlreadyRegistered):
        reg.register("k", a)
    assert reg.whereis("k") == a and reg.count() == 1


async def test_one_actor_can_hold_several_unique_keys(runtime: Runtime) -> None:
    reg = Registry()
    (a,) = await spawn_workers(runtime, 1)
    for key in ("x", ("y", 1), 3):
        reg.register(key, a)
    assert sorted(map(repr, reg.keys_of(a))) == sorted(map(repr, ["x", ("y", 1), 3]))
    assert reg.statistics().owners == 1
    assert reg.statistics().entries == 3


async def test_unregister_removes_only_the_owners_entry(runtime: Runtime) -> None:
    reg = Registry()
    a, b = await spawn_workers(runtime, 2)
    reg.register("k", a)
    assert reg.unregister("k", b) is False
    assert reg.whereis("k") == a
    assert reg.unregister("k", a) is True
    assert reg.unregister("k", a) is False
    assert reg.whereis("k") is None
    assert reg.keys_of(a) == []
    reg.register("k", b)
    assert reg.whereis("k") == b


async def test_update_meta_replaces_the_metadata_of_the_owner_only(runtime: Runtime) -> None:
    reg = Registry()
    a, b = await spawn_workers(runtime, 2)
    reg.register("k", a, {"v": 1})
    assert reg.update_meta("k", a, {"v": 2}) is True
    assert reg.meta("k") == {"v": 2}
    assert reg.update_meta("k", b, {"v": 3}) is False
    assert reg.update_meta("missing", a, {"v": 3}) is False
    assert reg.meta("k") == {"v": 2}


async def test_lookup_or_register_is_an_atomic_get_or_create(runtime: Runtime) -> None:
    reg = Registry()
    a, b = await spawn_workers(runtime, 2)
    assert reg.lookup_or_register("leader", a, "first") == (a, True)
    assert reg.lookup_or_register("leader", b, "second") == (a, False)
    assert reg.lookup("leader") == [(a, "first")]
    assert reg.count() == 1


async def test_lookup_or_register_needs_unique_keys(runtime: Runtime) -> None:
    reg = Registry(keys="duplicate")
    (a,) = await spawn_workers(runtime, 1)
    with pytest.raises(TypeError, match="unique keys"):
        reg.lookup_or_register("k", a)


async def test_lookup_or_register_emits_register_only_when_it_created(runtime: Runtime) -> None:
    reg = Registry(name="elect")
    a, b = await spawn_workers(runtime, 2)
    async with capture("foundation.registry") as cap:
        reg.lookup_or_register("leader", a)
        reg.lookup_or_register("leader", b)
    assert [(e.name[-1], e.metadata["pid"]) for e in cap.events] == [("register", a.pid)]


# -- duplicate keys --------------------------------------------------------------------


async def test_a_duplicate_key_is_shared_by_many_actors(runtime: Runtime) -> None:
    reg = Registry(keys="duplicate")
    a, b, c = await spawn_workers(runtime, 3)
    reg.register("topic", a, {"qos": 0})
    reg.register("topic", b, {"qos": 1})
    reg.register("other", a)
    assert sorted(reg.lookup("topic")) == [(a, {"qos": 0}), (b, {"qos": 1})]
    assert reg.count() == 3
    assert sorted(reg.keys_of(a)) == ["other", "topic"]
    assert reg.keys_of(c) == []
    # Registering the same (key, ref) again replaces its metadata: one entry per pair.
    reg.register("topic", a, {"qos": 2})
    assert sorted(reg.lookup("topic")) == [(a, {"qos": 2}), (b, {"qos": 1})]
    assert reg.count() == 3
    assert reg.update_meta("topic", b, {"qos": 9}) is True
    assert reg.update_meta("topic", c, {"qos": 9}) is False
    assert reg.unregister("topic", a) is True
    assert reg.unregister("topic", a) is False
    assert reg.lookup("topic") == [(b, {"qos": 9})]
    assert reg.count() == 2


async def test_whereis_on_a_duplicate_registry_raises_type_error_with_a_hint(
    runtime: Runtime,
) -> None:
    reg = Registry(keys="duplicate")
    with pytest.raises(TypeError, match=r"use lookup\(\)"):
        reg.whereis("topic")
    with pytest.raises(TypeError, match=r"use lookup\(\)"):
        runtime.whereis(("via", reg, "topic"))


# -- select ----------------------------------------------------------------------------


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
async def test_select_matches_metadata_fields_or_a_predicate(
    runtime: Runtime, keys: Any
) -> None:
    reg = Registry(keys=keys)
    a, b, c = await spawn_workers(runtime, 3)
    reg.register("a", a, {"capability": "gpu", "mem": 80})
    reg.register("b", b, {"capability": "cpu", "mem": 16})
    reg.register("c", c, "not a mapping")
    assert reg.select({"capability": "gpu"}) == [("a", a, {"capability": "gpu", "mem": 80})]
    assert reg.select({"capability": "gpu", "mem": 16}) == []
    assert reg.select({"missing": None}) == []
    assert sorted(k for k, _, _ in reg.select({})) == ["a", "b"]
    assert sorted(k for k, _, _ in reg.select(None)) == ["a", "b", "c"]
    assert sorted(k for k, _, _ in reg.select()) == ["a", "b", "c"]

    def big(key: Hashable, ref: ActorRef, meta: Any) -> bool:
        return isinstance(meta, dict) and meta["mem"] > 20

    assert reg.select(big) == [("a", a, {"capability": "gpu", "mem": 80})]
    assert [r for _, r, _ in reg.select(lambda k, r, m: r == c)] == [c]


async def test_select_refuses_a_spec_that_is_neither_mapping_nor_callable(
    runtime: Runtime,
) -> None:
    reg = Registry()
    with pytest.raises(TypeError, match="match spec"):
        reg.select(["capability"])  # type: ignore[arg-type]


# -- names: spawn(name=...) and via ----------------------------------------------------


async def test_spawn_with_a_name_registers_it_in_the_default_registry(runtime: Runtime) -> None:
    ref = await runtime.spawn(Worker, "t", name="worker")
    assert runtime.whereis("worker") == ref
    assert runtime.registry.whereis("worker") == ref
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


async def test_spawn_with_a_via_name_registers_it_in_that_registry(runtime: Runtime) -> None:
    reg = Registry(name="pool")
    ref = await runtime.spawn(Worker, name=("via", reg, ("shard", 1)))
    assert runtime.whereis(("via", reg, ("shard", 1))) == ref
    assert runtime.whereis(reg.via(("shard", 1))) == ref
    assert reg.via("x") == ("via", reg, "x")
    assert runtime.whereis(("shard", 1)) is None  # not in the default registry
    with pytest.raises(AlreadyRegistered):
        await runtime.spawn(Worker, name=reg.via(("shard", 1)))
    assert runtime.actors() == [ref]


async def test_a_via_name_must_name_a_registry(runtime: Runtime) -> None:
    with pytest.raises(TypeError, match="via"):
        await runtime.spawn(Worker, name=("via", {}, "k"))
    assert runtime.actors() == []


async def test_a_name_taken_by_an_actor_whose_init_failed_is_free_again(
    runtime: Runtime,
) -> None:
    with pytest.raises(StartError):
        await runtime.spawn(FailsInInit, name="svc")
    assert runtime.whereis("svc") is None
    ref = await runtime.spawn(Worker, name="svc")
    assert runtime.whereis("svc") == ref


async def test_an_actor_can_register_itself_during_init(runtime: Runtime) -> None:
    reg = Registry(keys="duplicate")
    ref = await runtime.spawn(RegistersItself, reg, "group")
    assert reg.lookup("group") == [(ref, {"role": "self"})]
    await ref.stop()
    assert reg.lookup("group") == []


# -- lifetimes -------------------------------------------------------------------------


@pytest.mark.parametrize("death", ["stop", "crash", "kill", "shutdown"])
async def test_entries_vanish_when_their_actor_exits(
    runtime: Runtime, clock: VirtualClock, death: str
) -> None:
    unique = Registry()
    dup = Registry(keys="duplicate")
    ref = await runtime.spawn(Worker, name="named")
    other = await runtime.spawn(Worker)
    unique.register("u", ref)
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
    assert unique.whereis("u") is None
    assert dup.lookup("d") == [(other, 2)]
    assert unique.keys_of(ref) == [] and dup.keys_of(ref) == []
    assert unique.count() == 0 and dup.count() == 1
    assert unique.statistics().owners == 0


async def test_entries_are_gone_by_the_time_monitors_see_the_down(runtime: Runtime) -> None:
    reg = Registry()
    ref = await runtime.spawn(Worker)
    reg.register("k", ref)
    seen: list[ActorRef | None] = []
    mon = runtime.monitor(ref)
    ref.kill()
    await mon.wait()
    seen.append(reg.whereis("k"))
    assert seen == [None]


async def test_registering_a_dead_ref_raises_actor_dead(runtime: Runtime) -> None:
    reg = Registry()
    ref = await runtime.spawn(Worker)
    await ref.stop()
    with pytest.raises(ActorDead) as info:
        reg.register("k", ref)
    assert info.value.reason == "noproc" and info.value.pid == ref.pid
    with pytest.raises(ActorDead):
        reg.lookup_or_register("k", ref)
    assert reg.count() == 0


async def test_only_actor_refs_of_a_runtime_can_be_registered(runtime: Runtime) -> None:
    reg = Registry()
    with pytest.raises(TypeError, match="only ActorRefs"):
        reg.register("k", "not a ref")  # type: ignore[arg-type]
    detached = ActorRef._from_pid(Pid._create(0, 10_000))
    with pytest.raises(ValueError, match="only local actors"):
        reg.register("k", detached)


async def test_unhashable_keys_raise_type_error(runtime: Runtime) -> None:
    reg = Registry()
    dup = Registry(keys="duplicate")
    (a,) = await spawn_workers(runtime, 1)
    for r in (reg, dup):
        with pytest.raises(TypeError, match="hashable"):
            r.register(["list"], a)
        with pytest.raises(TypeError, match="hashable"):
            r.register(("tuple", ["with a list"]), a)
        with pytest.raises(TypeError):
            r.lookup(["list"])
        assert r.count() == 0
    with pytest.raises(TypeError):
        reg.lookup_or_register({"a": 1}, a)
    with pytest.raises(TypeError):
        reg.whereis(["list"])


# -- construction ----------------------------------------------------------------------


def test_an_unknown_backend_name_raises_value_error_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown registry backend 'nope'.*dict"):
        Registry("nope")
    with pytest.raises(ValueError, match="unknown registry backend"):
        Runtime(registry="nope")


def test_a_bad_key_mode_or_backend_object_is_refused() -> None:
    with pytest.raises(ValueError, match="'unique' or 'duplicate'"):
        Registry(keys="many")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RegistryBackend"):
        Registry(backend=object())  # type: ignore[arg-type]


def test_a_registry_accepts_a_backend_instance_or_name() -> None:
    backend = DictBackend()
    assert Registry(backend).backend is backend
    assert isinstance(Registry("dict").backend, DictBackend)
    assert isinstance(Registry().backend, DictBackend)


# -- telemetry and statistics ----------------------------------------------------------


async def test_register_and_unregister_emit_telemetry(runtime: Runtime) -> None:
    reg = Registry(name="svc")
    a, b = await spawn_workers(runtime, 2)
    async with capture("foundation.registry") as cap:
        reg.register("x", a)
        reg.register("y", b)
        assert reg.unregister("x", a)
        assert not reg.unregister("x", a)  # nothing removed: no event
        await b.stop()
    got = [(e.name, e.metadata["key"], e.metadata["pid"]) for e in cap.events]
    assert got == [
        (("foundation", "registry", "register"), "x", a.pid),
        (("foundation", "registry", "register"), "y", b.pid),
        (("foundation", "registry", "unregister"), "x", a.pid),
        (("foundation", "registry", "unregister"), "y", b.pid),
    ]
    assert all(e.metadata["registry"] == "svc" for e in cap.events)


async def test_registry_statistics_are_a_frozen_snapshot(runtime: Runtime) -> None:
    unique = Registry()
    dup = Registry(keys="duplicate")
    a, b = await spawn_workers(runtime, 2)
    unique.register("x", a)
    unique.register("y", a)
    dup.register("t", a)
    dup.register("t", b)
    dup.register("u", b)
    s = unique.statistics()
    assert (s.keys, s.entries, s.distinct_keys, s.owners) == ("unique", 2, 2, 1)
    d = dup.statistics()
    assert (d.keys, d.entries, d.distinct_keys, d.owners) == ("duplicate", 3, 2, 2)
    with pytest.raises(AttributeError):
        s.entries = 0  # type: ignore[misc]
    await b.stop()
    d = dup.statistics()
    assert (d.entries, d.distinct_keys, d.owners) == (1, 1, 1)
    assert s.entries == 2  # a snapshot does not change afterwards

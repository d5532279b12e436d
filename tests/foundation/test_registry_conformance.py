"""Registry backend conformance, part 1: the ``Registry`` API on every backend.

Each test runs once per backend (``registry_kind``: ``"dict"`` and ``"shm"``, see
conftest.py) and on both anyio backends. ``make_registry`` builds a Registry on a fresh
backend (a new randomly named shared table for ``"shm"``, closed and unlinked at
teardown); ``runtime``'s default registry is on the backend under test too. Part 2
(test_registry_conformance_names.py) covers names, ``via`` and lifetimes.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Hashable, Iterable
from typing import Any

import pytest
from registry_helpers import (
    REGISTRY_BACKENDS,
    RegistryFactory,
    register_in_dead_child,
    spawn_workers,
)

from foundation import (
    ActorDead,
    ActorRef,
    AlreadyRegistered,
    DictBackend,
    Pid,
    Registry,
    Runtime,
    SharedMemoryBackend,
)
from foundation.abc import RegistryBackend
from foundation.telemetry import capture

pytestmark = pytest.mark.anyio

BACKEND_TYPES: dict[str, type[RegistryBackend]] = {
    "dict": DictBackend, "shm": SharedMemoryBackend
}


def ordered(keys: Iterable[Hashable]) -> list[Any]:
    """Keys in a stable order, whatever their types."""
    return sorted(keys, key=repr)


@pytest.fixture
def runtime(backend_runtime: Runtime) -> Runtime:
    """Every test here runs with its runtime's default registry on the backend under test."""
    return backend_runtime


# -- unique keys -----------------------------------------------------------------------


async def test_a_unique_key_maps_to_one_actor_and_its_metadata(
    runtime: Runtime, make_registry: RegistryFactory, registry_kind: str
) -> None:
    reg = make_registry(keys="unique", name="services")
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
    text = repr(reg)
    assert "services" in text and "unique" in text
    assert BACKEND_TYPES[registry_kind].__name__ in text


async def test_registering_a_taken_unique_key_raises_already_registered_with_the_owner(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry()
    a, b = await spawn_workers(runtime, 2)
    reg.register("k", a, "first")
    with pytest.raises(AlreadyRegistered) as info:
        reg.register("k", b, "second")
    assert info.value.owner == a and info.value.key == "k"
    assert "'k'" in str(info.value)
    # Erlang's register/2: the owner itself cannot take the name twice either.
    with pytest.raises(AlreadyRegistered):
        reg.register("k", a, "again")
    assert reg.whereis("k") == a and reg.count() == 1
    assert reg.lookup("k") == [(a, "first")]  # the refused writes changed nothing


async def test_one_actor_can_hold_several_unique_keys(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry()
    (a,) = await spawn_workers(runtime, 1)
    for key in ("x", ("y", 1), 3):
        reg.register(key, a)
    assert sorted(map(repr, reg.keys_of(a))) == sorted(map(repr, ["x", ("y", 1), 3]))
    assert reg.whereis(("y", 1)) == a and reg.whereis(3) == a
    assert reg.statistics().owners == 1
    assert reg.statistics().entries == 3


async def test_unregister_removes_only_the_owners_entry(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry()
    a, b = await spawn_workers(runtime, 2)
    reg.register("k", a)
    assert reg.unregister("k", b) is False
    assert reg.whereis("k") == a
    assert reg.unregister("k", a) is True
    assert reg.unregister("k", a) is False
    assert reg.unregister("never", a) is False
    assert reg.whereis("k") is None
    assert reg.keys_of(a) == []
    assert reg.count() == 0
    reg.register("k", b)
    assert reg.whereis("k") == b


async def test_update_meta_replaces_the_metadata_of_the_owner_only(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry()
    a, b = await spawn_workers(runtime, 2)
    reg.register("k", a, {"v": 1})
    assert reg.update_meta("k", a, {"v": 2}) is True
    assert reg.meta("k") == {"v": 2}
    assert reg.update_meta("k", b, {"v": 3}) is False
    assert reg.update_meta("missing", a, {"v": 3}) is False
    assert reg.meta("k") == {"v": 2}
    assert reg.update_meta("k", a, None) is True
    assert reg.lookup("k") == [(a, None)]
    assert reg.count() == 1 and reg.whereis("missing") is None


async def test_lookup_or_register_is_an_atomic_get_or_create(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry()
    a, b = await spawn_workers(runtime, 2)
    assert reg.lookup_or_register("leader", a, "first") == (a, True)
    assert reg.lookup_or_register("leader", b, "second") == (a, False)
    assert reg.lookup_or_register("leader", a, "third") == (a, False)
    assert reg.lookup("leader") == [(a, "first")]
    assert reg.count() == 1
    assert reg.keys_of(a) == ["leader"] and reg.keys_of(b) == []
    assert reg.unregister("leader", a) is True
    assert reg.lookup_or_register("leader", b, "second") == (b, True)
    assert reg.whereis("leader") == b


async def test_lookup_or_register_needs_unique_keys(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry(keys="duplicate")
    (a,) = await spawn_workers(runtime, 1)
    with pytest.raises(TypeError, match="unique keys"):
        reg.lookup_or_register("k", a)
    assert reg.count() == 0


async def test_lookup_or_register_emits_register_only_when_it_created(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry(name="elect")
    a, b = await spawn_workers(runtime, 2)
    async with capture("foundation.registry") as cap:
        reg.lookup_or_register("leader", a)
        reg.lookup_or_register("leader", b)
    assert [(e.name[-1], e.metadata["pid"]) for e in cap.events] == [("register", a.pid)]


# -- duplicate keys --------------------------------------------------------------------


async def test_a_duplicate_key_is_shared_by_many_actors(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry(keys="duplicate")
    a, b, c = await spawn_workers(runtime, 3)
    reg.register("topic", a, {"qos": 0})
    reg.register("topic", b, {"qos": 1})
    reg.register("other", a)
    assert sorted(reg.lookup("topic")) == [(a, {"qos": 0}), (b, {"qos": 1})]
    assert reg.count() == 3
    assert ordered(reg.keys_of(a)) == ["other", "topic"]
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
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry(keys="duplicate")
    with pytest.raises(TypeError, match=r"use lookup\(\)"):
        reg.whereis("topic")
    with pytest.raises(TypeError, match=r"use lookup\(\)"):
        runtime.whereis(("via", reg, "topic"))


# -- select ----------------------------------------------------------------------------


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
async def test_select_matches_metadata_fields_or_a_predicate(
    runtime: Runtime, make_registry: RegistryFactory, keys: Any
) -> None:
    reg = make_registry(keys=keys)
    a, b, c = await spawn_workers(runtime, 3)
    reg.register("a", a, {"capability": "gpu", "mem": 80})
    reg.register("b", b, {"capability": "cpu", "mem": 16})
    reg.register("c", c, "not a mapping")
    assert reg.select({"capability": "gpu"}) == [("a", a, {"capability": "gpu", "mem": 80})]
    assert reg.select({"capability": "gpu", "mem": 16}) == []
    assert reg.select({"missing": None}) == []
    assert ordered(k for k, _, _ in reg.select({})) == ["a", "b"]
    assert ordered(k for k, _, _ in reg.select(None)) == ["a", "b", "c"]
    assert ordered(k for k, _, _ in reg.select()) == ["a", "b", "c"]

    def big(key: Hashable, ref: ActorRef, meta: Any) -> bool:
        return isinstance(meta, dict) and meta["mem"] > 20

    assert reg.select(big) == [("a", a, {"capability": "gpu", "mem": 80})]
    assert [r for _, r, _ in reg.select(lambda k, r, m: r == c)] == [c]
    # select sees metadata updates and removals
    assert reg.update_meta("b", b, {"capability": "gpu", "mem": 16}) is True
    assert ordered(k for k, _, _ in reg.select({"capability": "gpu"})) == ["a", "b"]
    assert reg.unregister("a", a) is True
    assert reg.select({"capability": "gpu"}) == [("b", b, {"capability": "gpu", "mem": 16})]


async def test_select_refuses_a_spec_that_is_neither_mapping_nor_callable(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry()
    with pytest.raises(TypeError, match="match spec"):
        reg.select(["capability"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="match spec"):
        reg.select("capability")  # type: ignore[arg-type]


# -- refused writes --------------------------------------------------------------------


async def test_registering_a_dead_ref_raises_actor_dead(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry()
    (ref,) = await spawn_workers(runtime, 1)
    await ref.stop()
    with pytest.raises(ActorDead) as info:
        reg.register("k", ref)
    assert info.value.reason == "noproc" and info.value.pid == ref.pid
    with pytest.raises(ActorDead):
        reg.lookup_or_register("k", ref)
    dup = make_registry(keys="duplicate")
    with pytest.raises(ActorDead):
        dup.register("k", ref)
    assert reg.count() == 0 and dup.count() == 0 and reg.whereis("k") is None


async def test_only_actor_refs_of_a_runtime_can_be_registered(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry()
    with pytest.raises(TypeError, match="only ActorRefs"):
        reg.register("k", "not a ref")  # type: ignore[arg-type]
    detached = ActorRef._from_pid(Pid._create(0, 10_000))
    with pytest.raises(ValueError, match="only local actors"):
        reg.register("k", detached)
    with pytest.raises(ValueError, match="only local actors"):
        reg.lookup_or_register("k", detached)
    assert reg.count() == 0


async def test_unhashable_keys_raise_type_error(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry()
    dup = make_registry(keys="duplicate")
    (a,) = await spawn_workers(runtime, 1)
    for r in (reg, dup):
        with pytest.raises(TypeError, match="hashable"):
            r.register(["list"], a)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="hashable"):
            r.register(("tuple", ["with a list"]), a)
        with pytest.raises(TypeError):
            r.lookup(["list"])  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            r.unregister(["list"], a)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            r.update_meta(["list"], a, 1)  # type: ignore[arg-type]
        assert r.count() == 0
    with pytest.raises(TypeError):
        reg.lookup_or_register({"a": 1}, a)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        reg.whereis(["list"])  # type: ignore[arg-type]
    assert reg.count() == 0


# -- construction ----------------------------------------------------------------------
# The first two are about the Registry front's argument checks, before any backend
# exists, so they run once and are not parametrised.


def test_an_unknown_backend_name_raises_value_error_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown registry backend 'nope'.*dict.*shm"):
        Registry("nope")
    with pytest.raises(ValueError, match="unknown registry backend"):
        Runtime(registry="nope")


def test_a_bad_key_mode_or_backend_object_is_refused() -> None:
    with pytest.raises(ValueError, match="'unique' or 'duplicate'"):
        Registry(keys="many")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RegistryBackend"):
        Registry(backend=object())  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", REGISTRY_BACKENDS)
def test_a_registry_accepts_a_backend_instance_or_name(kind: str) -> None:
    by_name = Registry(kind, keys="duplicate")
    try:
        backend: RegistryBackend = by_name.backend
        assert isinstance(backend, BACKEND_TYPES[kind])
        assert by_name.keys == "duplicate"
        assert backend.keys == "duplicate"
        assert Registry(backend, keys="duplicate").backend is backend
    finally:
        by_name.backend.close()  # a table made by name is ours: close() unlinks it


def test_the_default_backend_is_a_dict_backend() -> None:
    # dict-only by nature: which backend Registry() picks without being told.
    assert isinstance(Registry().backend, DictBackend)


# -- telemetry and statistics ----------------------------------------------------------


async def test_register_and_unregister_emit_telemetry(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    reg = make_registry(name="svc")
    a, b = await spawn_workers(runtime, 2)
    async with capture("foundation.registry") as cap:
        reg.register("x", a)
        reg.register("y", b)
        assert reg.unregister("x", a)
        assert not reg.unregister("x", a)  # nothing removed: no event
        assert reg.update_meta("y", b, 1)  # metadata changes are not events
        await b.stop()
    got = [(e.name, e.metadata["key"], e.metadata["pid"]) for e in cap.events]
    assert got == [
        (("foundation", "registry", "register"), "x", a.pid),
        (("foundation", "registry", "register"), "y", b.pid),
        (("foundation", "registry", "unregister"), "x", a.pid),
        (("foundation", "registry", "unregister"), "y", b.pid),
    ]
    assert all(e.metadata["registry"] == "svc" for e in cap.events)


async def test_reclaim_removes_dead_processes_entries_and_reports_them(
    runtime: Runtime, make_registry: RegistryFactory, registry_kind: str
) -> None:
    reg = make_registry(name="shared")
    (a,) = await spawn_workers(runtime, 1)
    reg.register("mine", a)
    if registry_kind == "shm":
        # A real second process registers and dies holding its entry.
        assert isinstance(reg.backend, SharedMemoryBackend)
        child = await register_in_dead_child(reg.backend.name, "unique", "theirs")
        assert reg.whereis("theirs") is None  # a dead owner's entry is invisible...
        assert reg.lookup("theirs") == [] and reg.select({"from": "child"}) == []
        assert reg.statistics().entries == 1
        assert child["os_pid"] != 0
    async with capture("foundation.registry") as cap:
        removed = reg.reclaim()
        assert reg.reclaim() == 0  # nothing left to reclaim: no second event
    expected = 1 if registry_kind == "shm" else 0  # in-process backends have none
    assert removed == expected
    assert [(e.name[-1], e.measurements, e.metadata) for e in cap.events] == [
        ("reclaim", {"removed": 1}, {"registry": "shared"})
    ] * expected
    assert reg.whereis("mine") == a and reg.count() == 1
    if registry_kind == "shm":
        reg.register("theirs", a)  # ...and its key is free again
        assert reg.whereis("theirs") == a


async def test_registry_statistics_are_a_frozen_snapshot(
    runtime: Runtime, make_registry: RegistryFactory
) -> None:
    unique = make_registry()
    dup = make_registry(keys="duplicate")
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
        s.entries = 0
    await b.stop()
    d = dup.statistics()
    assert (d.entries, d.distinct_keys, d.owners) == (1, 1, 1)
    assert s.entries == 2  # a snapshot does not change afterwards


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
async def test_an_actor_does_not_keep_alive_a_registry_it_has_left(
    runtime: Runtime, make_registry: RegistryFactory, keys: Any
) -> None:
    (ref,) = await spawn_workers(runtime, 1)
    for _ in range(3):
        reg = make_registry(keys=keys)
        reg.register("a", ref)
        reg.register("b", ref)
        assert reg.unregister("a", ref)
        alive = weakref.ref(reg)
        del reg
        gc.collect()
        assert alive() is not None  # still holds "b": its exit must reach this registry
        reg = alive()
        assert reg is not None
        assert reg.unregister("b", ref)
        del reg
        gc.collect()
        assert alive() is None
    mon = runtime.monitor(ref)
    await ref.stop()
    await mon.wait()

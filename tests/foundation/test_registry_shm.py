"""``SharedMemoryBackend``-specific behaviour, in one process: limits (capacity, key and
metadata sizes, encodability), opening and closing tables by name, two attachments of one
table, tombstones, statistics, key round-trips, and the journal under a write that is
interrupted inside a slot (``_shm_table.fault_hook``).

Two backends attached to one table in this process stand for two processes: they share
nothing but the segment and the lock file. The cross-process (SIGKILL) tests live
elsewhere; the API common to every backend is in test_registry_conformance*.py.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from registry_helpers import Worker, spawn_workers

from foundation import (
    AlreadyRegistered,
    Registry,
    RegistryFull,
    Runtime,
    SharedMemoryBackend,
    SharedMemoryStatistics,
    ValueTooLarge,
)
from foundation._backends import _shm_table
from foundation._backends._shm_codec import STR

pytestmark = pytest.mark.anyio


class Tables:
    """Creates and attaches tables; closes all of them (creators last) at teardown."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self._stack = stack

    def create(self, **options: Any) -> SharedMemoryBackend:
        backend = SharedMemoryBackend(create=True, **options)
        self._stack.callback(backend.close, unlink=True)
        return backend

    def attach(self, name: str, **options: Any) -> SharedMemoryBackend:
        backend = SharedMemoryBackend(name, create=False, **options)
        self._stack.callback(backend.close, unlink=False)
        return backend


@pytest.fixture
def tables() -> Iterator[Tables]:
    with contextlib.ExitStack() as stack:
        yield Tables(stack)


def segment_exists(name: str) -> bool:
    return os.path.exists(f"/dev/shm/{name}")


def names(reg: Registry) -> list[str]:
    return sorted(repr(k) for k, _, _ in reg.select(None))


# -- limits ----------------------------------------------------------------------------


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
async def test_a_full_table_raises_registry_full_and_keeps_every_entry(
    runtime: Runtime, tables: Tables, keys: Any
) -> None:
    reg = Registry(tables.create(capacity=4), keys=keys)
    a, b = await spawn_workers(runtime, 2)
    for i in range(4):
        reg.register(f"k{i}", a, i)
    before = (names(reg), reg.count(), reg.statistics().writes)
    with pytest.raises(RegistryFull, match=r"full \(4 entries\).*capacity"):
        reg.register("k4", a)
    with pytest.raises(RegistryFull, match="capacity"):
        reg.register("k0" if keys == "duplicate" else "k5", b)  # a new (key, ref) pair
    if keys == "unique":
        with pytest.raises(RegistryFull, match="capacity"):
            reg.lookup_or_register("k5", b)
        assert reg.lookup_or_register("k0", b) == (a, False)  # no new slot needed
    assert (names(reg), reg.count(), reg.statistics().writes) == before
    assert reg.lookup("k3") == [(a, 3)] and reg.keys_of(b) == []
    # rewriting an existing pair needs no slot
    if keys == "duplicate":
        reg.register("k1", a, "updated")
    else:
        assert reg.update_meta("k1", a, "updated")
    assert reg.lookup("k1") == [(a, "updated")]
    assert reg.unregister("k0", a) is True
    reg.register("k4", b)
    assert reg.count() == 4 and reg.lookup("k4") == [(b, None)]


async def test_too_long_keys_and_too_large_metadata_raise_value_too_large_and_change_nothing(
    runtime: Runtime, tables: Tables
) -> None:
    reg = Registry(tables.create(capacity=8, key_max=16, meta_max=32))
    (a,) = await spawn_workers(runtime, 1)
    reg.register("k" * 16, a)  # exactly key_max bytes fits
    reg.register("ok", a, "m" * 20)
    before = (names(reg), reg.count(), reg.statistics().writes, reg.lookup("ok"))
    for key in ("k" * 17, "é" * 9, ("t", "x" * 20)):  # "é" is 2 bytes: 18 > 16
        with pytest.raises(ValueTooLarge, match="key_max=16"):
            reg.register(key, a)
        with pytest.raises(ValueTooLarge, match="key_max=16"):
            reg.lookup_or_register(key, a)
    big = "m" * 40
    with pytest.raises(ValueTooLarge, match="meta_max=32"):
        reg.register("new", a, big)
    with pytest.raises(ValueTooLarge, match="meta_max=32"):
        reg.lookup_or_register("new", a, big)
    with pytest.raises(ValueTooLarge, match="meta_max=32"):
        reg.update_meta("ok", a, big)
    with pytest.raises(ValueTooLarge, match="meta_max=32"):
        reg.register("ok", a, {"blob": b"\x00" * 64})
    # update_meta of a key too long to be stored is a miss, like every read of one
    assert reg.update_meta("k" * 17, a, 1) is False
    assert (names(reg), reg.count(), reg.statistics().writes, reg.lookup("ok")) == before
    assert reg.whereis("new") is None


async def test_keys_or_metadata_the_codec_cannot_encode_raise_type_error(
    runtime: Runtime, tables: Tables
) -> None:
    reg = Registry(tables.create(capacity=8))
    (a,) = await spawn_workers(runtime, 1)
    with pytest.raises(TypeError, match=r"foundation\.codec"):
        reg.register(object(), a)
    with pytest.raises(TypeError, match=r"foundation\.codec"):
        reg.lookup_or_register(frozenset({1}), a)
    with pytest.raises(TypeError, match="UTF-8"):
        reg.register("\ud800", a)  # a lone surrogate is no UTF-8 text
    with pytest.raises(TypeError, match="metadata"):
        reg.register("k", a, object())
    reg.register("k", a, 1)
    with pytest.raises(TypeError, match="metadata"):
        reg.update_meta("k", a, {1, 2})
    assert reg.lookup("k") == [(a, 1)] and reg.count() == 1


async def test_reading_a_key_too_long_to_be_stored_simply_misses(
    runtime: Runtime, tables: Tables
) -> None:
    reg = Registry(tables.create(capacity=8, key_max=8))
    dup = Registry(tables.create(capacity=8, key_max=8), keys="duplicate")
    (a,) = await spawn_workers(runtime, 1)
    for key in ("x" * 9, b"y" * 20, ("long", "tuple", 1)):
        assert reg.whereis(key) is None
        assert reg.lookup(key) == [] and dup.lookup(key) == []
        assert reg.unregister(key, a) is False
        assert reg.update_meta(key, a, 1) is False


# -- opening and closing by name ---------------------------------------------------------


def test_creating_a_table_whose_creator_lives_raises_file_exists(tables: Tables) -> None:
    table = tables.create(capacity=8)
    with pytest.raises(FileExistsError, match="exists and its creator"):
        SharedMemoryBackend(table.name, create=True)
    other = tables.attach(table.name)
    assert table.creator and not other.creator
    plain = SharedMemoryBackend(table.name)  # create=None attaches
    try:
        assert not plain.creator
    finally:
        plain.close()


def test_attaching_to_a_missing_table_raises_file_not_found(tables: Tables) -> None:
    table = tables.create(capacity=8)
    missing = table.name + "-missing"
    try:
        with pytest.raises(FileNotFoundError, match="no registry table"):
            SharedMemoryBackend(missing, create=False)
        assert not os.path.exists(f"/dev/shm/{missing}")
    finally:
        # The failed attach leaves its (empty) lock file: removing one that a concurrent
        # opener may hold would break the lock, so the library keeps it.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_shm_table.default_lock_path(missing))


@pytest.mark.parametrize(
    ("label", "value"), [("capacity", 9), ("key_max", 64), ("meta_max", 100)]
)
@pytest.mark.parametrize("create", [False, None])
def test_attaching_with_other_sizes_raises_value_error(
    tables: Tables, label: str, value: int, create: bool | None
) -> None:
    table = tables.create(capacity=8, key_max=32, meta_max=64)
    have = {"capacity": 8, "key_max": 32, "meta_max": 64}[label]
    options: dict[str, Any] = {label: value}
    with pytest.raises(ValueError, match=f"has {label}={have}, not {value}"):
        SharedMemoryBackend(table.name, create=create, **options)
    same = tables.attach(table.name, capacity=8, key_max=32, meta_max=64)  # the same: fine
    assert same.statistics().capacity == 8


def test_a_table_bound_to_unique_keys_refuses_a_duplicate_registry(tables: Tables) -> None:
    table = tables.create(capacity=8)
    Registry(table, keys="unique")
    other = tables.attach(table.name)
    with pytest.raises(ValueError, match="holds unique keys"):
        Registry(other, keys="duplicate")
    assert Registry(other, keys="unique").keys == "unique"
    dup = tables.create(capacity=8)
    Registry(dup, keys="duplicate")
    with pytest.raises(ValueError, match="holds duplicate keys"):
        Registry(tables.attach(dup.name), keys="unique")


async def test_every_operation_after_close_raises_runtime_error(
    runtime: Runtime, tables: Tables
) -> None:
    table = tables.create(capacity=8)
    reg = Registry(table)
    a, b = await spawn_workers(runtime, 2)
    reg.register("k", a)
    table.close()
    table.close()  # closing twice is harmless
    assert "closed" in repr(table)
    calls: list[Callable[[], object]] = [
        lambda: reg.whereis("k"), lambda: reg.whereis(("t", 1)), lambda: reg.lookup("k"),
        lambda: reg.register("x", b), lambda: reg.lookup_or_register("x", b),
        lambda: reg.unregister("k", a), lambda: reg.update_meta("k", a, 1),
        lambda: reg.keys_of(a), lambda: reg.select(None), reg.count, lambda: len(reg),
        reg.statistics, reg.reclaim, lambda: Registry(table),
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match=f"registry table '{table.name}' is closed"):
            call()
    # An actor whose table was closed under it still exits quietly.
    await a.stop()
    assert runtime.actors() == [b] and runtime.statistics().crashed == 0


def test_the_creator_unlinks_the_table_on_close_an_attachment_does_not(tables: Tables) -> None:
    creator = tables.create(capacity=8)
    name, lock = creator.name, _shm_table.default_lock_path(creator.name)
    SharedMemoryBackend(name, create=False).close()
    with SharedMemoryBackend(name, create=False) as attached:  # still there
        assert not attached.creator
    assert os.path.exists(f"/dev/shm/{name}") and os.path.exists(lock)
    creator.close()
    assert not os.path.exists(f"/dev/shm/{name}") and not os.path.exists(lock)
    try:
        with pytest.raises(FileNotFoundError):
            SharedMemoryBackend(name, create=False)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)


# -- two attachments -------------------------------------------------------------------


async def test_two_attachments_see_each_others_entries(runtime: Runtime, tables: Tables) -> None:
    one = Registry(tables.create(capacity=16))
    two = Registry(tables.attach(one.backend.name))  # type: ignore[attr-defined]
    a, b = await spawn_workers(runtime, 2)
    one.register("a", a, {"v": 1})
    assert two.whereis("a") == a and two.lookup("a") == [(a, {"v": 1})]
    assert two.count() == 1 and two.keys_of(a) == ["a"]
    assert one.update_meta("a", a, {"v": 2})
    assert two.lookup("a") == [(a, {"v": 2})] and two.whereis("a") == a
    two.register(("b", 2), b, "from two")
    assert one.whereis(("b", 2)) == b and one.select({}) == [("a", a, {"v": 2})]
    with pytest.raises(AlreadyRegistered) as info:
        two.register("a", b)
    assert info.value.owner == a
    assert two.lookup_or_register("a", b) == (a, False)
    s = two.statistics()
    assert (s.entries, s.distinct_keys, s.owners, s.owner_processes) == (2, 2, 2, 1)
    assert one.unregister("a", a) is True
    assert two.whereis("a") is None and two.lookup("a") == []  # a cached hit is dropped
    await b.stop()  # attachment two registered b: its entry goes with it
    assert one.whereis(("b", 2)) is None and one.count() == two.count() == 0


# -- tombstones, statistics, keys ------------------------------------------------------


def same_home(slots: int, n: int) -> list[str]:
    """``n`` str keys whose probe chains start at one slot."""
    homes: dict[int, list[str]] = {}
    for i in range(100_000):
        key = f"key{i}"
        group = homes.setdefault(zlib.crc32(key.encode(), STR) % slots, [])
        group.append(key)
        if len(group) == n:
            return group
    raise AssertionError("no colliding keys found")


async def test_tombstones_are_reused_and_a_deleted_run_leaves_none(
    runtime: Runtime, tables: Tables
) -> None:
    reg = Registry(tables.create(capacity=8))
    (a,) = await spawn_workers(runtime, 1)
    k1, k2, k3, k4 = same_home(reg.statistics().slots, 4)

    def tombstones() -> int:
        return int(reg.statistics().tombstones)

    for key in (k1, k2, k3):
        reg.register(key, a)
    assert reg.unregister(k1, a) and tombstones() == 1  # k2, k3 still follow it
    assert reg.whereis(k2) == a and reg.whereis(k3) == a and reg.whereis(k1) is None
    reg.register(k4, a)  # takes k1's slot back
    assert tombstones() == 0 and reg.count() == 3
    assert reg.unregister(k4, a) and tombstones() == 1
    assert reg.unregister(k2, a) and tombstones() == 2
    assert reg.whereis(k3) == a
    assert reg.unregister(k3, a) and tombstones() == 0  # the end of the run: all cleared
    assert reg.count() == 0 and reg.statistics().entries == 0
    for key in (k1, k2, k3):
        reg.register(key, a)
    for key in (k3, k2, k1):  # from the tail: never a tombstone
        assert reg.unregister(key, a) and tombstones() == 0


async def test_statistics_describe_the_table(runtime: Runtime, tables: Tables) -> None:
    table = tables.create(capacity=10, key_max=32, meta_max=64)
    reg = Registry(table, keys="duplicate")
    a, b = await spawn_workers(runtime, 2)
    reg.register("t", a, 1)
    reg.register("t", b, 2)
    reg.register("u", b)
    assert reg.update_meta("u", b, 3)
    s = reg.statistics()
    assert isinstance(s, SharedMemoryStatistics)
    assert (s.name, s.keys, s.capacity, s.key_max, s.meta_max) == (
        table.name, "duplicate", 10, 32, 64
    )
    assert s.slots > s.capacity  # room for probing
    assert (s.entries, s.distinct_keys, s.owners, s.owner_processes) == (3, 2, 2, 1)
    assert (s.tombstones, s.writes, s.reclaimed, s.recoveries) == (0, 4, 0, 0)
    with pytest.raises(AttributeError):
        s.entries = 0  # type: ignore[misc]
    await b.stop()
    t = reg.statistics()
    assert (t.entries, t.distinct_keys, t.owners, t.writes) == (1, 1, 1, 6)
    assert s.entries == 3


KEYS: list[Any] = [
    "plain", "ünïcødé ✓", "", "1", 1, -7, 2**40, b"\x00raw", b"", ("t", 1),
    ("nested", ("x", b"y"), 3), (), 2.5,
]


@pytest.mark.parametrize("mode", ["unique", "duplicate"])
async def test_str_int_bytes_and_tuple_keys_round_trip(
    runtime: Runtime, tables: Tables, mode: Any
) -> None:
    reg = Registry(tables.create(capacity=32), keys=mode)
    other = Registry(tables.attach(reg.backend.name), keys=mode)  # type: ignore[attr-defined]
    ref = await runtime.spawn(Worker)
    for i, key in enumerate(KEYS):
        reg.register(key, ref, i)
    expected = sorted(repr(k) for k in KEYS)  # repr tells b"" from "", 1 from "1"
    for r in (reg, other):
        assert sorted(repr(k) for k in r.keys_of(ref)) == expected
        assert sorted(repr(k) for k, _, _ in r.select(None)) == expected
        assert sorted((repr(k), m) for k, _, m in r.select(None)) == sorted(
            (repr(k), i) for i, k in enumerate(KEYS)
        )
        for i, key in enumerate(KEYS):
            assert r.lookup(key) == [(ref, i)], key
    assert reg.count() == len(KEYS)


# -- an interrupted write (the seqlock and the journal) ----------------------------------


class SimulatedCrash(Exception):
    """Raised from ``fault_hook``: the writer 'dies' at that point of the write."""


@contextlib.contextmanager
def crash_at(point: str) -> Iterator[None]:
    def hook(where: str) -> None:
        if where == point:
            raise SimulatedCrash(where)

    _shm_table.fault_hook = hook
    try:
        yield
    finally:
        _shm_table.fault_hook = None


@pytest.mark.parametrize("point", ["journaled", "torn", "counted"])
@pytest.mark.parametrize("op", ["register", "update_meta", "unregister"])
async def test_a_write_interrupted_inside_a_slot_is_invisible_and_undone_by_the_next_write(
    runtime: Runtime, tables: Tables, op: str, point: str
) -> None:
    writer = tables.create(capacity=8)
    mine, theirs = Registry(writer), Registry(tables.attach(writer.name))
    a, b = await spawn_workers(runtime, 2)
    mine.register("k", a, {"v": 1})
    mine.register("z", b, {"v": 0})
    assert theirs.whereis("k") == a  # cached by the reader: the write must invalidate it
    before = theirs.statistics()
    with crash_at(point), pytest.raises(SimulatedCrash):
        if op == "register":
            mine.register("new", b, {"v": 2})
        elif op == "update_meta":
            mine.update_meta("k", a, {"v": 2})
        else:
            mine.unregister("k", a)
    assert writer._table.hget(_shm_table.H_JSLOT) != 0  # the journal is still marked

    def assert_old_state(reg: Registry) -> None:
        assert reg.whereis("k") == a and reg.whereis("new") is None
        assert reg.lookup("k") == [(a, {"v": 1})]
        assert names(reg) == ["'k'", "'z'"] and reg.count() == 2

    assert_old_state(theirs)  # readers see the state before the write...
    assert_old_state(mine)
    s = theirs.statistics()
    assert (s.entries, s.tombstones, s.writes, s.recoveries) == (
        2, before.tombstones, before.writes, 0
    )
    assert theirs.update_meta("z", b, {"v": 5})  # ...until the next write undoes it
    assert writer._table.hget(_shm_table.H_JSLOT) == 0
    s = mine.statistics()
    assert (s.entries, s.tombstones, s.recoveries) == (2, before.tombstones, 1)
    assert mine.lookup("k") == [(a, {"v": 1})] and mine.lookup("z") == [(b, {"v": 5})]
    assert theirs.whereis("new") is None and theirs.count() == 2
    # The interrupted operation can simply be done again.
    if op == "register":
        mine.register("new", b, {"v": 2})
        assert theirs.lookup("new") == [(b, {"v": 2})] and theirs.count() == 3
    elif op == "update_meta":
        assert mine.update_meta("k", a, {"v": 2})
        assert theirs.lookup("k") == [(a, {"v": 2})]
    else:
        assert mine.unregister("k", a)
        assert theirs.whereis("k") is None and theirs.count() == 1
    await b.stop()  # the writer's own bookkeeping survived the crash
    await a.stop()
    assert theirs.count() == 0 and theirs.statistics().recoveries == 1


async def test_a_runtime_closes_the_table_it_made_from_a_backend_name() -> None:
    async with Runtime(registry="shm", watchdog=None) as rt:
        backend = rt.registry.backend
        assert isinstance(backend, SharedMemoryBackend) and backend.creator
        await rt.spawn(Worker, name="svc")
        assert backend.lookup("svc")
        name = backend.name
        assert segment_exists(name)
    assert not segment_exists(name)
    with pytest.raises(RuntimeError, match="closed"):
        backend.count()


async def test_a_runtime_leaves_a_table_passed_as_an_instance_open(tables: Tables) -> None:
    table = tables.create(capacity=8)
    async with Runtime(registry=table, watchdog=None) as rt:
        await rt.spawn(Worker, name="svc")
    assert table.count() == 0  # the actor's name left with it; the table is still usable

"""``SharedMemoryBackend``: one registry table shared by the OS processes of one host.

A node agent and its GPU workers, or several runtimes on one machine, register actors in
one fixed-capacity table in ``multiprocessing.shared_memory`` and look each other up
without a broker: reads are lock-free (a sequence lock per slot), writes are serialised
by a lock file's ``flock`` and journaled, so a writer killed mid-write leaves the table
consistent. Entries carry their owner OS process; entries of a dead owner are invisible
to lookups and reclaimed by the next writer that meets them or by ``reclaim()``.

Keys are ``str`` (stored as UTF-8) or anything ``foundation.codec`` encodes (ints,
bytes, tuples ...); metadata is codec-encoded. Both have per-table size limits
(``key_max``/``meta_max`` bytes); larger values raise ``ValueTooLarge``, a full table
``RegistryFull``. See docs/registry.md for the layout and the guarantees.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import weakref
import zlib
from collections.abc import Hashable, Iterator
from typing import TYPE_CHECKING, Any

from .._exceptions import AlreadyRegistered, RegistryFull
from .._pid import Pid
from .._ref import ActorRef
from ..abc import Keys
from . import _shm_table as T
from ._liveness import Liveness, Owner
from ._shm_codec import EntryCodec
from ._shm_open import open_table
from ._shm_reads import SharedMemoryStatistics as SharedMemoryStatistics
from ._shm_reads import SharedTableReads

if TYPE_CHECKING:
    from multiprocessing.shared_memory import SharedMemory

_MODES = {"unique": T.KEYS_UNIQUE, "duplicate": T.KEYS_DUPLICATE}
_open_backends: weakref.WeakSet[SharedMemoryBackend] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for backend in list(_open_backends):
        backend._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)
_MODE_NAMES = {v: k for k, v in _MODES.items()}



class SharedMemoryBackend(SharedTableReads):
    """A registry table in shared memory, created by one process, attached by others.

    Args:
        name: the segment name other processes attach by (default: a random one; read
            it back from ``.name``).
        create: True creates (``FileExistsError`` if a live creator holds the name),
            False attaches (``FileNotFoundError`` if absent), None does whichever
            applies. A table whose creator died is adopted by the next one to open it.
        capacity: most entries the table holds (default 4096); creation only.
        key_max: most bytes of an encoded key (default 128); creation only.
        meta_max: most bytes of encoded metadata (default 256); creation only.
        liveness_interval: seconds a foreign owner found alive is trusted before its
            next check (lookups hide a dead owner's entries within this delay).
        lock_path: the writer lock file (default: in the temp directory, by name).

    The creator unlinks the segment and the lock file in ``close()``.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        create: bool | None = None,
        capacity: int | None = None,
        key_max: int | None = None,
        meta_max: int | None = None,
        liveness_interval: float = 1.0,
        lock_path: str | None = None,
    ) -> None:
        if name is None:
            name = f"mbreg-{secrets.token_hex(6)}"
        if not isinstance(name, str) or not name or "/" in name or len(name) > 200:
            raise ValueError(f"a table name is a non-empty str without '/', got: {name!r}")
        if create not in (True, False, None):
            raise TypeError(f"create must be True, False or None, got: {create!r}")
        for label, value in (("capacity", capacity), ("key_max", key_max),
                             ("meta_max", meta_max)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{label} must be a positive int, got: {value!r}")
        if (key_max is not None and key_max > 65535) or (meta_max is not None and meta_max > 65535):
            raise ValueError("key_max and meta_max are at most 65535 bytes")
        if not liveness_interval > 0:
            raise ValueError(f"liveness_interval must be positive, got: {liveness_interval!r}")
        self.name = name
        self.keys: Keys = "unique"
        self._live = Liveness(liveness_interval)
        self._hot: dict[Any, tuple[ActorRef, int, list[float], int, int]] = {}
        self._gen = -1
        self._refs: dict[tuple[int, int, int], ActorRef] = {}
        self._local: dict[Pid, set[tuple[int, bytes]]] = {}
        self._closed = False
        self._lock = T.WriterLock(lock_path or T.default_lock_path(name))
        shm = None
        try:
            with self._lock.held():
                shm, self.creator = open_table(
                    name, self._live, create, capacity, key_max, meta_max
                )
                self._table = T.Table(shm)
                self._table.recover()
        except BaseException:
            if shm is not None:
                shm.close()
            self._lock.close()
            raise
        self._shm: SharedMemory = shm
        t = self._table
        self._buf = t.buf
        self._slots, self._key_max, self._meta_max = t.slots, t.key_max, t.meta_max
        self._base, self._slot_size = t.base, t.slot_size
        self._enc = EntryCodec(name, t.key_max, t.meta_max)
        _open_backends.add(self)
        if self.creator:
            self.reclaim()

    def _forked(self) -> None:
        """In a child after fork: nothing the parent cached or registered is ours, and
        the table stays the parent's to unlink."""
        self._hot.clear()
        self._refs.clear()
        self._local.clear()
        self.creator = False

    # -- opening ------------------------------------------------------------------------
    def bind(self, keys: Keys) -> None:
        with self._write():
            mode = self._table.hget(T.H_KEYS)
            if mode == T.KEYS_UNBOUND:
                self._table.hset(T.H_KEYS, _MODES[keys])
            elif mode != _MODES[keys]:
                raise ValueError(
                    f"registry table {self.name!r} holds {_MODE_NAMES[mode]} keys; a "
                    f"registry with keys={keys!r} cannot use it"
                )
        self.keys = keys

    @contextlib.contextmanager
    def _write(self) -> Iterator[T.Table]:
        if self._closed:
            raise RuntimeError(f"registry table {self.name!r} is closed")
        with self._lock.held():
            self._table.recover()
            yield self._table

    def close(self, unlink: bool | None = None) -> None:
        """Detach; the creator (or ``unlink=True``) also removes the segment and lock."""
        if self._closed:
            return
        self._closed = True
        _open_backends.discard(self)
        self._hot.clear()
        self._table.close()
        self._buf = memoryview(b"")
        try:
            self._shm.close()
        finally:
            try:
                if self.creator if unlink is None else unlink:
                    # Under the lock: a process waiting for it then sees the lock file
                    # gone or replaced and opens the current one (WriterLock.held).
                    with self._lock.held():
                        T.unlink_segment(self._shm)
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(self._lock.path)
            finally:
                self._lock.close()

    def __enter__(self) -> SharedMemoryBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"capacity={self._table.capacity}"
        return f"<SharedMemoryBackend {self.name!r} {state}>"

    # -- writes (under the lock) ---------------------------------------------------------
    def _is(self, s: tuple[Any, ...], ref: ActorRef) -> bool:
        """Whether slot copy ``s`` is ``ref``'s entry (a local ref: owned by us)."""
        pid = ref.pid
        if s[9] != pid.node or s[10] != pid.serial:
            return False
        return ref._proc is None or s[7] == self._live.me()[0]

    def _fields(self, kt: int, kb: bytes, mb: bytes, ref: ActorRef) -> tuple[Any, ...]:
        me = self._live.me()
        return (zlib.crc32(kb, kt), T.USED, kt, len(kb), len(mb), 0, me[0], me[1],
                ref.pid.node, ref.pid.serial)

    def _remove(self, t: T.Table, index: int) -> None:
        """Delete a USED slot: a tombstone, or empty (with the tombstones before it)
        when the next slot is empty, so probe chains stay short."""
        slots = self._slots
        nxt = index + 1 if index + 1 < slots else 0
        if self._probe(nxt)[2] != T.EMPTY:
            t.mark(index, T.TOMBSTONE, -1, +1)
            return
        t.mark(index, T.EMPTY, -1, 0)
        prev = index - 1 if index else slots - 1
        while prev != index and self._probe(prev)[2] == T.TOMBSTONE:
            t.mark(prev, T.EMPTY, 0, -1)
            prev = prev - 1 if prev else slots - 1

    def _insert(self, t: T.Table, kt: int, kb: bytes, mb: bytes, ref: ActorRef,
                free: tuple[int, bool] | None) -> None:
        """Add an entry at ``free``, the slot ``_locate`` found for this key."""
        if t.hget(T.H_COUNT) >= t.capacity:
            if not self._reclaim(t):
                raise RegistryFull(
                    f"registry table {self.name!r} is full ({t.capacity} entries); "
                    "choose a larger capacity when creating it"
                )
            free = self._locate(kt, kb)[1]  # the reclaim freed slots on the chain
        if free is None:
            raise RegistryFull(f"registry table {self.name!r} has no free slot")
        index, was_tomb = free
        t.write_slot(index, self._fields(kt, kb, mb, ref), kb, mb, +1, -1 if was_tomb else 0)
        self._local.setdefault(ref.pid, set()).add((kt, kb))

    def _take_over(self, t: T.Table, index: int, kt: int, kb: bytes, mb: bytes,
                   ref: ActorRef) -> None:
        t.write_slot(index, self._fields(kt, kb, mb, ref), kb, mb, 0, 0)
        t.hset(T.H_RECLAIMED, t.hget(T.H_RECLAIMED) + 1)
        self._local.setdefault(ref.pid, set()).add((kt, kb))

    def register(self, key: Hashable, ref: ActorRef, meta: Any) -> None:
        kt, kb = self._enc.key(key, writing=True)  # type: ignore[misc]
        mb = self._enc.meta(meta)
        with self._write() as t:
            found, free = self._locate(kt, kb)
            for index, s in found:
                if self.keys == "unique":
                    if self._live.fresh(self._owner(s)):
                        raise AlreadyRegistered(key, self._ref(s[9], s[10], s[7]))
                    self._take_over(t, index, kt, kb, mb, ref)
                    return
                if self._is(s, ref):
                    t.write_slot(index, self._fields(kt, kb, mb, ref), kb, mb, 0, 0)
                    return
            self._insert(t, kt, kb, mb, ref, free)

    def lookup_or_register(self, key: Hashable, ref: ActorRef, meta: Any) -> tuple[ActorRef, bool]:
        if self.keys != "unique":
            raise TypeError("lookup_or_register needs a registry with unique keys")
        kt, kb = self._enc.key(key, writing=True)  # type: ignore[misc]
        mb = self._enc.meta(meta)
        with self._write() as t:
            found, free = self._locate(kt, kb)
            for index, s in found:
                if self._live.fresh(self._owner(s)):
                    return self._ref(s[9], s[10], s[7]), False
                self._take_over(t, index, kt, kb, mb, ref)
                return ref, True
            self._insert(t, kt, kb, mb, ref, free)
        return ref, True

    def unregister(self, key: Hashable, ref: ActorRef) -> bool:
        found = self._enc.key(key, writing=False)
        if found is None:
            return False
        with self._write() as t:
            for index, s in self._chain(*found):
                if self._is(s, ref):
                    self._remove(t, index)
                    self._forget_local(ref.pid, found)
                    return True
        return False

    def _forget_local(self, pid: Pid, kk: tuple[int, bytes]) -> None:
        keys = self._local.get(pid)
        if keys is not None:
            keys.discard(kk)
            if not keys:
                del self._local[pid]

    def unregister_ref(self, ref: ActorRef) -> list[Hashable]:
        held = self._local.pop(ref.pid, None)
        if not held or self._closed:
            return []
        removed: list[Hashable] = []
        with self._write() as t:
            for kt, kb in held:
                for index, s in self._chain(kt, kb):
                    if self._is(s, ref):
                        self._remove(t, index)
                        removed.append(self._enc.decode_key(kt, kb))
                        break
        return removed

    def update_meta(self, key: Hashable, ref: ActorRef, meta: Any) -> bool:
        found = self._enc.key(key, writing=False)
        if found is None:
            return False
        mb = self._enc.meta(meta)
        kt, kb = found
        with self._write() as t:
            for index, s in self._chain(kt, kb):
                if self._is(s, ref):
                    fields = (*s[1:5], len(mb), *s[6:11])
                    t.write_slot(index, fields, kb, mb, 0, 0)
                    return True
        return False

    def reclaim(self) -> int:
        """Remove every entry whose owner OS process has died; the number removed."""
        with self._write() as t:
            return self._reclaim(t)

    def _reclaim(self, t: T.Table) -> int:
        verdict: dict[Owner, bool] = {}
        removed = 0
        for index, s in list(self._scan()):
            owner = self._owner(s)
            alive = verdict.get(owner)
            if alive is None:
                alive = verdict[owner] = self._live.fresh(owner)
            if not alive:
                self._remove(t, index)
                removed += 1
        if removed:
            t.hset(T.H_RECLAIMED, t.hget(T.H_RECLAIMED) + removed)
        return removed

"""The shared-memory table under ``SharedMemoryBackend``: layout, writer lock, journal.

One ``multiprocessing.shared_memory`` segment holds a header, a one-slot undo journal and
``slots`` fixed-size slots (open addressing, linear probing, tombstones). Each slot
starts with a sequence number: even when stable, odd while a writer rewrites it, so a
reader copies a slot and accepts the copy only if the number was even and unchanged
(a seqlock: readers never block and never keep a torn entry).

Writers are serialised by ``flock`` on a lock file: the kernel releases it when its
holder dies, SIGKILL included. Every write changes exactly one slot plus the header
counters, after saving the slot's old bytes and the counters in the journal; a writer
killed mid-write leaves the journal marked, readers of that slot read the journal's copy
(the state before the write), and the next writer restores it before doing anything
else. Sequence numbers only grow, so a (slot, sequence) pair names one slot content
forever, which lets readers cache decoded entries and validate them with one load. A
write takes effect when its slot's number turns even again: recovery rolls a slot that
is still odd back from the journal and keeps one that is even.

Layout (native byte order and alignment; every process of one host agrees):

=======  =====================================================================
offset   header field (8 bytes each)
=======  =====================================================================
0        magic ``b"MBREG\\x00\\x01\\x00"``
8..56    version, slots, capacity, key_max, meta_max, slot_size, keys mode
64..112  count, tombstones, creator OS pid, creator start time, writes,
         reclaimed, recoveries
120      journal: slot index + 1 (0 = no write in progress)
128,136  journal: count and tombstones before the write
144      initialised flag (written last at creation)
152      generation: odd while a write is in progress, +2 per write (readers' cache check)
192      journal: the slot's bytes before the write
=======  =====================================================================

A slot: ``seq u64 | hash u32 | state u8 | ktype u8 | klen u16 | mlen u16 | pad u16 |
owner_pid u32 | owner_start f64 | node u64 | serial u64 | key[key_max] | meta[meta_max]``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from multiprocessing import resource_tracker, shared_memory
from typing import Any, Final

MAGIC: Final = b"MBREG\x00\x01\x00"
VERSION: Final = 2  # 2: owner start times are boot-relative clock ticks on Linux

EMPTY: Final = 0
USED: Final = 1
TOMBSTONE: Final = 2

KEYS_UNBOUND: Final = 0
KEYS_UNIQUE: Final = 1
KEYS_DUPLICATE: Final = 2

U64: Final = struct.Struct("@Q")
F64: Final = struct.Struct("@d")
SLOT_HEAD: Final = struct.Struct("@QIBBHHHIdQQ")  # 48 bytes, seq first
SLOT_FIELDS: Final = struct.Struct("@IBBHHHIdQQ")  # the same without seq (written at +8)
SLOT_PROBE: Final = struct.Struct("@QIBBH")  # seq, hash, state, ktype, klen (first 16)
SLOT_TAIL: Final = struct.Struct("@HHIdQQ")  # mlen, pad, owner pid/start, node, serial
assert SLOT_HEAD.size == 48

H_VERSION, H_SLOTS, H_CAPACITY, H_KEY_MAX, H_META_MAX, H_SLOT_SIZE, H_KEYS = (
    8, 16, 24, 32, 40, 48, 56,
)
H_COUNT, H_TOMBS, H_CREATOR, H_CREATOR_START, H_WRITES, H_RECLAIMED, H_RECOVERIES = (
    64, 72, 80, 88, 96, 104, 112,
)
H_JSLOT, H_JCOUNT, H_JTOMBS, H_INIT, H_GEN = 120, 128, 136, 144, 152
JOURNAL: Final = 192

#: Test hook: called with a point name inside every write (``"journaled"``: the journal
#: is marked, the slot untouched; ``"torn"``: the slot is half written; ``"counted"``:
#: slot and header counters written, the sequence number still odd). The crash tests
#: SIGKILL their own process from it; None in normal operation.
fault_hook: Callable[[str], None] | None = None


def view(shm: shared_memory.SharedMemory) -> memoryview:
    """The segment's buffer (typed: an open segment always has one)."""
    buf = shm.buf
    assert buf is not None
    return buf


def _align(n: int, to: int = 64) -> int:
    return (n + to - 1) // to * to


def slot_size_for(key_max: int, meta_max: int) -> int:
    return _align(SLOT_HEAD.size + key_max + meta_max, 8)


def default_lock_path(name: str) -> str:
    return os.path.join(tempfile.gettempdir(), f"mabeam-registry-{name}.lock")


def _untrack(shm: shared_memory.SharedMemory) -> None:
    # Python < 3.13 registers every segment, attached ones too, with the resource
    # tracker, which unlinks them when *this* process exits and yanks the table from the
    # others. The table's creator unlinks it explicitly in close() instead.
    with contextlib.suppress(Exception):
        resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]


def open_segment(name: str, create: bool, size: int = 0) -> shared_memory.SharedMemory:
    try:
        shm = shared_memory.SharedMemory(  # type: ignore[call-arg]
            name=name, create=create, size=size, track=False
        )
    except TypeError:  # Python < 3.13 has no ``track``
        shm = shared_memory.SharedMemory(name=name, create=create, size=size)
        _untrack(shm)
    return shm


def unlink_segment(shm: shared_memory.SharedMemory) -> None:
    """Remove the segment's name (mapped views stay valid until each process closes)."""
    if getattr(shm, "_track", None) is None:
        # Python < 3.13: unlink() also unregisters from the resource tracker, which
        # complains about a name we already unregistered; register it back first.
        with contextlib.suppress(Exception):
            resource_tracker.register(shm._name, "shared_memory")  # type: ignore[attr-defined]
    with contextlib.suppress(FileNotFoundError):
        shm.unlink()


class WriterLock:
    """Cross-process writer lock: ``flock`` on a lock file, plus a thread lock (flock
    does not exclude threads that share one file description).

    An ``flock`` belongs to an open file description, which a forked child shares with
    its parent, so a child opens the file afresh before its first lock. And because a
    table's creator unlinks the lock file at close (holding the lock), a holder checks
    after locking that its file is still the one at the path, else reopens and retries.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        self._for_this_process()

    def _for_this_process(self) -> None:
        self._pid = os.getpid()
        self._thread_lock = threading.Lock()
        self._reopen()

    def _reopen(self) -> None:
        """Open the file at the path (closing ours) and remember which file it is."""
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        st = os.fstat(self._fd)
        self._ident = (st.st_ino, st.st_dev)

    def _current(self) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (on_disk.st_ino, on_disk.st_dev) == self._ident

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self._pid != os.getpid():
            self._for_this_process()  # a forked child: its own file description
        with self._thread_lock:
            for _ in range(100):
                fcntl.flock(self._fd, fcntl.LOCK_EX)
                if self._current():
                    break
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                self._reopen()
            else:
                raise RuntimeError(f"the registry lock file {self.path} keeps changing")
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Table:
    """Typed access to one mapped table; writes must hold the ``WriterLock``."""

    def __init__(self, shm: shared_memory.SharedMemory) -> None:
        self.shm = shm
        self.buf: memoryview = view(shm)
        buf = self.buf
        if len(buf) < JOURNAL or bytes(buf[0:8]) != MAGIC:
            raise ValueError(f"shared memory {shm.name!r} is not a registry table")
        if self.hget(H_VERSION) != VERSION:
            raise ValueError(
                f"registry table {shm.name!r} has layout version {self.hget(H_VERSION)}, "
                f"this library reads version {VERSION}"
            )
        self.slots = self.hget(H_SLOTS)
        self.capacity = self.hget(H_CAPACITY)
        self.key_max = self.hget(H_KEY_MAX)
        self.meta_max = self.hget(H_META_MAX)
        self.slot_size = self.hget(H_SLOT_SIZE)
        self.base = _align(JOURNAL + self.slot_size)
        if len(buf) < self.base + self.slots * self.slot_size:
            raise ValueError(f"registry table {shm.name!r} is truncated")

    # -- creation -------------------------------------------------------------------------
    @staticmethod
    def size_for(slots: int, slot_size: int) -> int:
        return _align(JOURNAL + slot_size) + slots * slot_size

    @staticmethod
    def initialise(
        shm: shared_memory.SharedMemory, *, slots: int, capacity: int, key_max: int,
        meta_max: int, creator: tuple[int, float],
    ) -> None:
        buf = view(shm)
        slot_size = slot_size_for(key_max, meta_max)
        buf[0:8] = MAGIC
        for off, value in (
            (H_VERSION, VERSION), (H_SLOTS, slots), (H_CAPACITY, capacity),
            (H_KEY_MAX, key_max), (H_META_MAX, meta_max), (H_SLOT_SIZE, slot_size),
            (H_KEYS, KEYS_UNBOUND), (H_CREATOR, creator[0]),
        ):
            U64.pack_into(buf, off, value)
        F64.pack_into(buf, H_CREATOR_START, creator[1])
        U64.pack_into(buf, H_INIT, 1)

    # -- header ---------------------------------------------------------------------------
    def hget(self, off: int) -> int:
        value: int = U64.unpack_from(self.buf, off)[0]
        return value

    def hset(self, off: int, value: int) -> None:
        U64.pack_into(self.buf, off, value)

    def creator(self) -> tuple[int, float]:
        return self.hget(H_CREATOR), F64.unpack_from(self.buf, H_CREATOR_START)[0]

    def set_creator(self, creator: tuple[int, float]) -> None:
        self.hset(H_CREATOR, creator[0])
        F64.pack_into(self.buf, H_CREATOR_START, creator[1])

    def counters(self) -> tuple[int, int]:
        """``(count, tombstones)`` consistent with what readers see: read between two
        equal, even generations (no write ran meanwhile); while a write is under way, or
        its writer died in it, the journal's counters until its slot is whole again."""
        for _ in range(1000):
            gen = self.hget(H_GEN)
            if gen & 1:
                jslot = self.hget(H_JSLOT)
                if jslot:
                    seq = self.hget(self.slot_offset(jslot - 1))
                    counts = (
                        (self.hget(H_JCOUNT), self.hget(H_JTOMBS))
                        if seq & 1 or seq == self.hget(JOURNAL)
                        else (self.hget(H_COUNT), self.hget(H_TOMBS))
                    )
                    if self.hget(H_GEN) == gen and self.hget(H_JSLOT) == jslot:
                        return counts
                continue
            counts = (self.hget(H_COUNT), self.hget(H_TOMBS))
            if self.hget(H_GEN) == gen:
                return counts
        raise RuntimeError("registry table counters never settled")

    def slot_offset(self, index: int) -> int:
        return self.base + index * self.slot_size

    # -- reads (lock-free) ---------------------------------------------------------------
    def read_slot(self, index: int) -> tuple[Any, ...] | None:
        """A consistent copy of slot ``index``: ``(seq, hash, state, ktype, klen, mlen,
        _, owner_pid, owner_start, node, serial, key_bytes, meta_bytes)``, or None
        when the slot changed under the read (the caller retries)."""
        buf = self.buf
        off = self.base + index * self.slot_size
        head = SLOT_HEAD.unpack_from(buf, off)
        seq = head[0]
        if seq & 1:
            return self._read_journal(index, off, seq)
        data = self._copy_payload(off, head)
        if U64.unpack_from(buf, off)[0] != seq:
            return None
        return head + data

    def probe(self, index: int) -> tuple[int, int, int, int, int] | None:
        """A consistent copy of slot ``index``'s first 16 bytes: ``(seq, hash, state,
        ktype, klen)`` (the journal's while it is mid-write), or None if it changed."""
        buf = self.buf
        off = self.base + index * self.slot_size
        head = SLOT_PROBE.unpack_from(buf, off)
        seq = head[0]
        if seq & 1:
            if self.hget(H_JSLOT) != index + 1:
                return None
            old = SLOT_PROBE.unpack_from(buf, JOURNAL)
            if U64.unpack_from(buf, off)[0] != seq or self.hget(H_JSLOT) != index + 1:
                return None
            return (seq, old[1], old[2], old[3], old[4])
        if U64.unpack_from(buf, off)[0] != seq:
            return None
        return head

    def _copy_payload(self, off: int, head: tuple[Any, ...]) -> tuple[bytes, bytes]:
        klen = min(head[4], self.key_max)
        mlen = min(head[5], self.meta_max)
        start = off + SLOT_HEAD.size
        buf = self.buf
        return (
            bytes(buf[start : start + klen]),
            bytes(buf[start + self.key_max : start + self.key_max + mlen]),
        )

    def _read_journal(self, index: int, off: int, seq: int) -> tuple[Any, ...] | None:
        # A writer is inside this slot (or died there): the journal holds its old bytes.
        buf = self.buf
        if self.hget(H_JSLOT) != index + 1:
            return None
        head = SLOT_HEAD.unpack_from(buf, JOURNAL)
        data = self._copy_payload(JOURNAL, head)
        if U64.unpack_from(buf, off)[0] != seq or self.hget(H_JSLOT) != index + 1:
            return None
        return (seq, *head[1:], *data)

    # -- writes (under the lock) -------------------------------------------------------
    def recover(self) -> bool:
        """Finish what a writer that died holding the lock left marked in the journal.

        A slot whose sequence number is odd was mid-write: its old bytes and the counters
        come back from the journal. An even number means the write either never touched
        the slot or completed it (readers may already have seen it): the mark is cleared
        and the write stands. Either way the table is as after a whole write or none.
        """
        jslot = self.hget(H_JSLOT)
        if not jslot:
            return False
        index = jslot - 1
        buf = self.buf
        off = self.slot_offset(index)
        seq = self.hget(off)
        if seq & 1:
            size = self.slot_size
            buf[off + 8 : off + size] = buf[JOURNAL + 8 : JOURNAL + size]
            self.hset(H_COUNT, self.hget(H_JCOUNT))
            self.hset(H_TOMBS, self.hget(H_JTOMBS))
            U64.pack_into(buf, off, seq + 1)
        gen = self.hget(H_GEN)
        if gen & 1:
            self.hset(H_GEN, gen + 1)
        self.hset(H_JSLOT, 0)
        self.hset(H_RECOVERIES, self.hget(H_RECOVERIES) + 1)
        return True

    def write_slot(
        self, index: int, fields: tuple[Any, ...], key: bytes, meta: bytes,
        count_delta: int, tomb_delta: int,
    ) -> None:
        """Rewrite slot ``index`` as one journaled step.

        ``fields`` are the slot head after ``seq`` (``SLOT_FIELDS``); ``key`` and ``meta``
        its payload (``b""`` keeps nothing). The counters move by the deltas.
        """
        buf = self.buf
        off = self.slot_offset(index)
        size = self.slot_size
        count = self.hget(H_COUNT)
        tombs = self.hget(H_TOMBS)
        # 1. journal: old bytes and counters, then the mark.
        buf[JOURNAL : JOURNAL + size] = buf[off : off + size]
        self.hset(H_JCOUNT, count)
        self.hset(H_JTOMBS, tombs)
        self.hset(H_JSLOT, index + 1)
        hook = fault_hook
        if hook is not None:
            hook("journaled")
        # 2. the slot, between an odd and the next even sequence number.
        seq = self.hget(off)
        gen = self.hget(H_GEN)
        self.hset(H_GEN, gen + 1)  # odd: a write is in progress
        U64.pack_into(buf, off, seq + 1)
        SLOT_FIELDS.pack_into(buf, off + 8, *fields)
        if hook is not None:
            hook("torn")
        start = off + SLOT_HEAD.size
        buf[start : start + len(key)] = key
        mstart = start + self.key_max
        buf[mstart : mstart + len(meta)] = meta
        self.hset(H_COUNT, count + count_delta)
        self.hset(H_TOMBS, tombs + tomb_delta)
        if hook is not None:
            hook("counted")
        U64.pack_into(buf, off, seq + 2)
        self.hset(H_GEN, gen + 2)
        # 3. done: clear the mark.
        self.hset(H_JSLOT, 0)
        self.hset(H_WRITES, self.hget(H_WRITES) + 1)

    def mark(self, index: int, state: int, count_delta: int, tomb_delta: int) -> None:
        """Change only the state of slot ``index`` (tombstone or empty), journaled."""
        head = SLOT_HEAD.unpack_from(self.buf, self.slot_offset(index))
        fields = (head[1], state, *head[3:])
        self.write_slot(index, fields, b"", b"", count_delta, tomb_delta)

    def close(self) -> None:
        self.buf = memoryview(b"")

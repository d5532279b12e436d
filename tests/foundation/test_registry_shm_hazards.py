"""``SharedMemoryBackend`` against process-level hazards: fork, a lock file replaced
under a waiting process, a wall-clock step, failed opens.

Locks are checked with non-blocking ``flock`` probes and forked children report over
pipes, so nothing here waits on time.
"""

from __future__ import annotations

import fcntl
import os
import signal
import warnings
from collections.abc import Callable

import psutil
import pytest
from shm_child import Child, new_name, remove_table
from shm_worker import detached, make_meta

from foundation import SharedMemoryBackend
from foundation._backends import _shm_table


def lock_is_free(path: str) -> bool:
    """Whether an ``flock`` on ``path`` (a fresh file description) is free right now."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def forked(child: Callable[[int, int], None]) -> tuple[int, int, int]:
    """Fork; the child runs ``child(to_parent_fd, from_parent_fd)`` then ``_exit(0)``
    (``_exit(1)`` on any error). Returns ``(pid, from_child_fd, to_child_fd)``."""
    up_r, up_w = os.pipe()
    down_r, down_w = os.pipe()
    with warnings.catch_warnings():  # 3.12+ warns about fork with threads; no lock is held
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.close(up_r)
            os.close(down_w)
            child(up_w, down_r)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(up_w)
    os.close(down_r)
    return pid, up_r, down_w


def reap(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_forked_child_takes_the_writer_lock_on_its_own_file_description(
    make_table: Callable[..., SharedMemoryBackend],
) -> None:
    table = make_table(capacity=8)
    table.register("a", detached(1, 1), None)
    lock_path = table._lock.path

    def child(up: int, down: int) -> None:
        with table._lock.held():  # the inherited backend, used in the child
            os.write(up, b"L")
            os.read(down, 1)  # hold it until the parent has looked

    pid, from_child, to_child = forked(child)
    try:
        assert os.read(from_child, 1) == b"L"
        # The child holds the lock: the parent's own lock must be excluded by it, which
        # it is not when the child locked the file description it shares with us.
        with pytest.raises(BlockingIOError):
            fcntl.flock(table._lock._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert not lock_is_free(lock_path)
    finally:
        os.write(to_child, b"x")
        assert reap(pid) == 0
        os.close(from_child)
        os.close(to_child)
    assert lock_is_free(lock_path)
    table.register("b", detached(1, 2), None)  # the parent's lock still works
    assert table.count() == 2


def test_a_forked_child_neither_unlinks_the_table_nor_serves_the_parents_cache(
    make_table: Callable[..., SharedMemoryBackend],
) -> None:
    table = make_table(capacity=8)
    table.register("a", detached(1, 1), {"v": 1})
    assert table.holds(detached(1, 1))

    def child(up: int, down: int) -> None:
        report = [
            not table.creator,  # the table stays the parent's to unlink
            not table.holds(detached(1, 1)),  # the parent's registrations are not ours
            table.lookup("a") == [(detached(1, 1), {"v": 1})],
        ]
        table.close()
        os.write(up, bytes(int(x) for x in report))

    pid, from_child, to_child = forked(child)
    try:
        assert os.read(from_child, 3) == b"\x01\x01\x01"
    finally:
        assert reap(pid) == 0
        os.close(from_child)
        os.close(to_child)
    assert os.path.exists(f"/dev/shm/{table.name}")
    assert table.whereis("a") == detached(1, 1) and table.count() == 1


def test_a_waiter_on_a_lock_file_the_creator_removed_locks_the_new_one() -> None:
    name = new_name()
    try:
        creator = SharedMemoryBackend(name, create=True, capacity=8)
        waiter = SharedMemoryBackend(name, create=False)  # holds the first lock file open
        creator.close()  # unlinks the segment and that lock file
        successor = SharedMemoryBackend(name, create=True, capacity=8)  # a new lock file
        # The waiter notices its file was replaced and locks the current one, so it
        # excludes the successor instead of running beside it.
        with waiter._lock.held(), pytest.raises(BlockingIOError):
            fcntl.flock(successor._lock._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        waiter.close()
        successor.close()
    finally:
        remove_table(name)


def test_a_wall_clock_step_does_not_make_live_owners_look_dead(
    make_table: Callable[..., SharedMemoryBackend], spawn: Callable[..., Child],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = make_table(capacity=16)
    holder = spawn(mode="hold", name=table.name, wid=3, count=2)
    keys = holder.read()["keys"]
    stepped = psutil.boot_time() + 3600.0
    # The clock steps by an hour: psutil's create_time() (boot time + ticks) moves with it.
    monkeypatch.setattr(psutil, "boot_time", lambda: stepped)
    linux = getattr(psutil, "_pslinux", None)  # where Process.create_time reads it
    if linux is not None:
        monkeypatch.setattr(linux, "boot_time", lambda: stepped)
    assert table.reclaim() == 0
    fresh = SharedMemoryBackend(table.name, create=False, liveness_interval=1e-6)
    try:
        assert fresh.whereis(keys[0]) == detached(4, 0)
        assert fresh.lookup(keys[1]) == [(detached(4, 1), make_meta(keys[1], 3, 1, 0))]
    finally:
        fresh.close()
    assert holder.kill() == -signal.SIGKILL
    assert table.reclaim() == 2  # and a real death is still seen


def test_attaching_with_other_sizes_leaves_the_table_and_its_creator_untouched(
    make_table: Callable[..., SharedMemoryBackend],
) -> None:
    table = make_table(capacity=8)
    before = table._table.creator()
    for create in (None, False):
        with pytest.raises(ValueError, match="capacity=8"):
            SharedMemoryBackend(table.name, create=create, capacity=9)
    assert table._table.creator() == before and table.creator
    assert table.count() == 0
    with pytest.raises(ValueError, match="not a registry table"):
        _shm_table.Table(_BadSegment())  # type: ignore[arg-type]


class _BadSegment:
    """A segment whose bytes are not a registry table."""

    name = "not-a-table"
    buf = memoryview(bytearray(512))

"""Creating, attaching to and adopting a shared registry table by name.

Called with the writer lock held, so a creator finishes the header before anyone else
reads it. A table whose creator died is adopted (the opener becomes the one that unlinks
it); one whose creator died before finishing the header is started afresh.
"""

from __future__ import annotations

from multiprocessing.shared_memory import SharedMemory

from . import _shm_table as T
from ._liveness import Liveness

DEFAULT_CAPACITY = 4096
DEFAULT_KEY_MAX = 128
DEFAULT_META_MAX = 256


def slots_for(capacity: int) -> int:
    """Slots for ``capacity`` entries: a load factor of at most 3/4 keeps probes short."""
    return max(8, capacity + capacity // 3 + 1)


def open_table(
    name: str, live: Liveness, create: bool | None, capacity: int | None,
    key_max: int | None, meta_max: int | None,
) -> tuple[SharedMemory, bool]:
    """The mapped segment and whether this process is (now) its creator."""
    if create is False:
        try:
            shm = T.open_segment(name, False)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no registry table named {name!r} on this host (create it first)"
            ) from None
        _checked(shm, name, capacity, key_max, meta_max).close()
        return shm, False
    cap = capacity or DEFAULT_CAPACITY
    kmax, mmax = key_max or DEFAULT_KEY_MAX, meta_max or DEFAULT_META_MAX
    slots = slots_for(cap)
    try:
        shm = T.open_segment(name, True, T.Table.size_for(slots, T.slot_size_for(kmax, mmax)))
    except FileExistsError:
        shm = T.open_segment(name, False)
    else:
        T.Table.initialise(shm, slots=slots, capacity=cap, key_max=kmax, meta_max=mmax,
                           creator=live.me())
        return shm, True
    buf = T.view(shm)
    if len(buf) < T.JOURNAL or T.U64.unpack_from(buf, T.H_INIT)[0] != 1:
        del buf
        shm.close()  # its creator died before finishing the header
        T.unlink_segment(shm)
        return open_table(name, live, True, capacity, key_max, meta_max)
    table = _checked(shm, name, capacity, key_max, meta_max)
    creator = table.creator()
    if live.fresh(creator):
        if create is True:
            table.close()
            shm.close()
            raise FileExistsError(
                f"registry table {name!r} exists and its creator (OS pid {creator[0]}) is "
                "alive; attach with create=None or create=False"
            )
        return shm, False
    table.set_creator(live.me())  # adopt a table whose creator died
    table.close()
    return shm, True


def _checked(shm: SharedMemory, name: str, capacity: int | None, key_max: int | None,
             meta_max: int | None) -> T.Table:
    """The table in ``shm`` if it is one with the asked sizes; else ``shm`` is closed and
    the ``ValueError`` raised (before anything is written to it)."""
    try:
        table = T.Table(shm)
        check_params(table, name, capacity, key_max, meta_max)
    except ValueError:
        shm.close()
        raise
    return table


def check_params(table: T.Table, name: str, capacity: int | None, key_max: int | None,
                 meta_max: int | None) -> None:
    """Refuse an explicit size that differs from the existing table's."""
    for label, want, have in (("capacity", capacity, table.capacity),
                              ("key_max", key_max, table.key_max),
                              ("meta_max", meta_max, table.meta_max)):
        if want is not None and want != have:
            raise ValueError(f"registry table {name!r} has {label}={have}, not {want}")

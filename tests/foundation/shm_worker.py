"""The child processes of tests/foundation/test_registry_multiprocess.py.

A child runs as ``python shm_worker.py '<json args>'``: results are JSON lines on stdout,
commands lines on stdin (no pickle, no multiprocessing); ``shm_child.Child`` is the
parent's handle.
``args["mode"]`` picks the role: ``stress`` (a runtime whose actors register, update,
unregister and contest keys while checking every entry it reads), ``hammer`` (rewrite
or read one key), ``crash_write`` (one write SIGKILLed inside), ``churn`` (writes until
killed), ``hold`` (registers keys and waits), ``inspect`` (a fresh attachment's dump of
the table, raw slots included) and ``serve`` (lookups on request).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402
import anyio.lowlevel  # noqa: E402

import foundation  # noqa: E402
from foundation import (  # noqa: E402
    Actor,
    ActorRef,
    AlreadyRegistered,
    Pid,
    Registry,
    SharedMemoryBackend,
)
from foundation._backends import _shm_table  # noqa: E402


def emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def detached(node: int, serial: int) -> ActorRef:
    """The ref of an actor of no runtime here (what entries of other processes look like)."""
    ref: ActorRef = ActorRef._create(Pid._create(node, serial), None)
    return ref


def checksum(key: str, wid: int, serial: int, version: int, pad: str) -> int:
    return zlib.crc32(f"{key}|{wid}|{serial}|{version}|{pad}".encode())


def make_meta(key: str, wid: int, serial: int, version: int) -> dict[str, Any]:
    """Self-checking metadata: a torn or mixed-up entry fails ``entry_problem``."""
    pad = (str(version) * 50)[: version * 37 % 120]  # varying length: a torn copy shows
    return {"k": key, "w": wid, "s": serial, "v": version, "p": pad,
            "sum": checksum(key, wid, serial, version, pad)}


def entry_problem(key: Any, node: int, serial: int, meta: Any) -> str | None:
    """Why an entry read back is not one a writer wrote (None if it is consistent)."""
    if not isinstance(meta, dict) or set(meta) != {"k", "w", "s", "v", "p", "sum"}:
        return f"{key!r}: malformed metadata {meta!r}"
    if meta["k"] != key:
        return f"{key!r}: metadata of another key {meta!r}"
    if meta["sum"] != checksum(key, meta["w"], meta["s"], meta["v"], meta["p"]):
        return f"{key!r}: checksum mismatch {meta!r}"
    if node != meta["w"] + 1 or serial != meta["s"]:
        return f"{key!r}: ref <{node}.{serial}> does not match metadata {meta!r}"
    return None


def attach(args: dict[str, Any], **kw: Any) -> SharedMemoryBackend:
    return SharedMemoryBackend(args["name"], create=False, **kw)


# -- stress: a runtime per worker, racing on one table ----------------------------------
class Member(Actor):
    """An actor that only holds registry entries."""


async def readline() -> str:
    line: str = await anyio.to_thread.run_sync(sys.stdin.readline)
    return line.strip()


async def stress(args: dict[str, Any], backend: SharedMemoryBackend) -> None:
    wid, workers, n_keys = args["wid"], args["workers"], args["keys"]
    rng = random.Random(args["seed"] * 1000 + wid)
    reg = Registry(backend, keys="unique", name=f"w{wid}")
    rt = foundation.current_runtime()
    actors = [await rt.spawn(Member) for _ in range(args["actors"])]
    own: dict[str, tuple[ActorRef, dict[str, Any]]] = {}  # what this worker holds
    free = [f"w{wid}-{i}" for i in range(n_keys)]
    seen: dict[str, int] = {}  # newest version read per foreign key (reads never go back)
    errors: list[str] = []
    contested: dict[str, list[Any]] = {}
    reads = hits = 0
    version = 0

    def fail(msg: str) -> None:
        if len(errors) < 20:
            errors.append(msg)

    def check_foreign(key: str, found: list[tuple[ActorRef, Any]]) -> None:
        nonlocal hits
        if len(found) > 1:
            fail(f"{key!r}: {len(found)} entries under a unique key")
        for ref, meta in found:
            hits += 1
            problem = entry_problem(key, ref.pid.node, ref.pid.serial, meta)
            if problem:
                fail(problem)
                continue
            if ref._proc is not None:
                fail(f"{key!r}: another process's entry resolved to a local actor")
            if key.startswith("w") and meta["w"] != int(key[1:].split("-")[0]):
                fail(f"{key!r}: written by worker {meta['w']}")
            if meta["v"] < seen.get(key, -1):
                fail(f"{key!r}: read version {meta['v']} after {seen[key]}")
            seen[key] = meta["v"]

    def check_own(key: str) -> None:
        want = own.get(key)
        found = reg.lookup(key)
        ref = reg.whereis(key)
        if want is None:
            if found or ref is not None:
                fail(f"own {key!r}: unregistered but read back {found!r} {ref!r}")
        elif found != [want] or ref != want[0] or ref is None or ref._proc is None:
            fail(f"own {key!r}: wrote {want!r}, read {found!r} / {ref!r}")

    # A hot key per worker: its owner rewrites it often while the others read it, so
    # reads overlap writes of the very slot they copy.
    hot = f"w{wid}-hot"
    own[hot] = (actors[-1], make_meta(hot, wid, actors[-1].pid.serial, 0))
    reg.register(hot, *own[hot])
    others = [w for w in range(workers) if w != wid]

    emit({"ready": True})
    await readline()  # "go": every worker starts at once
    rounds, per_round = args["rounds"], args["contested"]
    stride = max(1, args["ops"] // (rounds + 1))
    for t in range(args["ops"]):
        if t % stride == 0 and t // stride < rounds:
            # A barrier through the parent, then every worker claims the same keys, each
            # in its own order, so that claims of one key meet (and a worker preempted
            # inside a claim finds others claiming meanwhile).
            emit({"round": t // stride})
            await readline()
            me = actors[0]
            for j in rng.sample(range(per_round), per_round):
                key = f"c{t // stride}-{j}"
                meta = make_meta(key, wid, me.pid.serial, 0)
                if (wid + j) % 2:
                    owner, created = reg.lookup_or_register(key, me, meta)
                else:
                    try:
                        reg.register(key, me, meta)
                        owner, created = me, True
                    except AlreadyRegistered as exc:
                        owner, created = exc.owner, False
                contested[key] = [owner.pid.node, owner.pid.serial, created]
            for key in contested:
                check_foreign(key, [x for x in reg.lookup(key) if x[0]._proc is None])
        if t % 64 == 0:
            await anyio.lowlevel.checkpoint()  # let the runtime's own tasks run
        r = rng.random()
        if r < 0.15 and free:
            key = free.pop(rng.randrange(len(free)))
            actor = actors[rng.randrange(len(actors))]
            version += 1
            meta = make_meta(key, wid, actor.pid.serial, version)
            reg.register(key, actor, meta)
            own[key] = (actor, meta)
            check_own(key)
        elif r < 0.40:
            key = rng.choice(sorted(own)) if r < 0.25 else hot
            actor, _ = own[key]
            version += 1
            meta = make_meta(key, wid, actor.pid.serial, version)
            if not reg.update_meta(key, actor, meta):
                fail(f"own {key!r}: update_meta found no entry")
            own[key] = (actor, meta)
            check_own(key)
        elif r < 0.47 and len(own) > 1:
            key = rng.choice([k for k in sorted(own) if k != hot])
            actor, _ = own.pop(key)
            if not reg.unregister(key, actor):
                fail(f"own {key!r}: unregister found no entry")
            free.append(key)
            check_own(key)
        elif r < 0.49:
            for k, ref, meta in reg.select(None):  # a full scan while others write
                reads += 1
                problem = entry_problem(k, ref.pid.node, ref.pid.serial, meta)
                if problem:
                    fail(f"select: {problem}")
        elif r < 0.75:
            key = f"w{rng.choice(others)}-hot"
            reads += 1
            found = reg.lookup(key)
            if len(found) != 1:
                fail(f"{key!r}: a hot key read as {found!r}")
            check_foreign(key, found)
        else:
            other = rng.choice(others)
            key = f"w{other}-{rng.randrange(n_keys)}"
            reads += 1
            where = reg.whereis(key)
            if where is not None and (where.pid.node != other + 1 or where._proc is not None):
                fail(f"{key!r}: whereis gave {where!r}")
            check_foreign(key, reg.lookup(key))
    for key in list(own) + [f"w{wid}-{i}" for i in range(3)]:
        check_own(key)
    emit({
        "wid": wid,
        "own": {k: [a.pid.node, a.pid.serial, m] for k, (a, m) in own.items()},
        "contested": contested, "reads": reads, "hits": hits, "errors": errors,
    })
    await readline()  # "exit": the parent has checked the table; actors exit now


def run_stress(args: dict[str, Any]) -> None:
    backend = attach(args)

    async def main() -> None:
        await stress(args, backend)

    try:
        # Shutting the runtime down stops the actors: the Registry removes their entries.
        foundation.run(main, node=args["wid"] + 1)
    finally:
        backend.close()


# -- crash and churn: writers killed by SIGKILL --------------------------------------------
def run_crash_write(args: dict[str, Any]) -> None:
    """One write, SIGKILLed inside: at a ``fault_hook`` point (``journaled``, ``torn``) or
    at ``complete`` (slot and counters written, the journal mark not yet cleared)."""
    backend = attach(args)
    point = args["point"]
    armed = False

    def hook(where: str) -> None:
        nonlocal armed
        if where == point:
            os.kill(os.getpid(), signal.SIGKILL)
        armed = True

    if point == "complete":
        hset = _shm_table.Table.hset

        def hset_then_die(table: _shm_table.Table, off: int, value: int) -> None:
            if armed and off == _shm_table.H_JSLOT and value == 0:
                os.kill(os.getpid(), signal.SIGKILL)
            hset(table, off, value)

        _shm_table.Table.hset = hset_then_die  # type: ignore[method-assign,assignment]

    ref = detached(*args["ref"])
    _shm_table.fault_hook = hook
    if args["op"] == "register":
        backend.register(args["key"], ref, args["meta"])
    elif args["op"] == "update_meta":
        backend.update_meta(args["key"], ref, args["meta"])
    else:
        backend.unregister(args["key"], ref)
    emit({"survived": True})  # the hook did not fire: the test fails on this


def run_churn(args: dict[str, Any]) -> None:
    """Writes from a seeded sequence; the parent replays it (``churn_ops``) to know each
    step's effect, and reads how many finished from the progress lines."""
    backend = attach(args)
    emit({"ready": True})
    for i, (op, key, node, serial, meta) in enumerate(churn_ops(args)):
        ref = detached(node, serial)
        if op == "register":
            backend.register(key, ref, meta)
        elif op == "update_meta":
            assert backend.update_meta(key, ref, meta)
        else:
            assert backend.unregister(key, ref)
        emit({"done": i})
    sys.stdin.readline()  # ran out of operations: wait to be killed


def churn_ops(args: dict[str, Any]) -> Iterator[tuple[str, str, int, int, Any]]:
    """The deterministic write sequence of a churn worker (valid from the parent's
    initial table: ``parent_keys`` registered by ``parent_wid``)."""
    rng = random.Random(args["seed"])
    wid, pwid = args["wid"], args["parent_wid"]
    mine: list[str] = []
    free = [f"w{wid}-{i}" for i in range(args["keys"])]
    parent_keys = sorted(args["parent_keys"])
    serials: dict[str, int] = {}
    for version in range(1, args["ops"] + 1):
        r = rng.random()
        if r < 0.4 and free:
            key = free.pop(rng.randrange(len(free)))
            mine.append(key)
            serials[key] = version
            yield "register", key, wid + 1, version, make_meta(key, wid, version, version)
        elif r < 0.7 or not mine:
            key = rng.choice(parent_keys)
            serial = args["parent_keys"][key]
            yield "update_meta", key, pwid + 1, serial, make_meta(key, pwid, serial, version)
        else:
            key = mine.pop(rng.randrange(len(mine)))
            free.append(key)
            yield "unregister", key, wid + 1, serials[key], None


def run_hammer(args: dict[str, Any]) -> None:
    """Rewrite one key ``n`` times (``writer``), or read it ``n`` times checking every copy
    (``reader``); both start on a ``go`` line."""
    backend = attach(args)
    key, (node, serial) = args["key"], args["ref"]
    ref = detached(node, serial)
    emit({"ready": True})
    sys.stdin.readline()
    if args["role"] == "writer":
        for version in range(1, args["n"] + 1):
            assert backend.update_meta(key, ref, make_meta(key, node - 1, serial, version))
        emit({"written": args["n"]})
        return
    errors: list[str] = []
    versions: set[int] = set()
    last = -1
    for _ in range(args["n"]):
        try:
            found = backend.lookup(key)
        except Exception as exc:  # a torn copy may not even decode
            errors.append(f"{key!r}: the read failed: {exc!r}")
            continue
        if len(found) != 1:
            errors.append(f"{key!r} read as {found!r}")
            continue
        got, meta = found[0]
        problem = entry_problem(key, got.pid.node, got.pid.serial, meta)
        if problem is None and meta["v"] < last:
            problem = f"version {meta['v']} read after {last}"
        if problem is not None:
            errors.append(problem)
            continue
        last = meta["v"]
        versions.add(last)
        if last == args["last"]:
            break
    emit({"errors": errors[:20], "versions": len(versions)})


# -- inspection and holding -------------------------------------------------------------------
def dump(backend: SharedMemoryBackend) -> dict[str, Any]:
    """The table as this process reads it: live entries, raw slots, counters."""
    t = backend._table
    raw = []
    for _, s in backend._scan():
        raw.append([backend._enc.decode_key(s[3], s[11]), s[9], s[10], s[7],
                    backend._enc.decode_meta(s[12])])
    tombs = sum(1 for i in range(t.slots) if backend._slot(i)[2] == _shm_table.TOMBSTONE)
    stats = backend.statistics()
    return {
        "live": [[k, r.pid.node, r.pid.serial, r._proc is None, m]
                 for k, r, m in backend.select(None)],
        "raw": raw, "raw_tombstones": tombs, "count": backend.count(),
        "entries": stats.entries, "distinct_keys": stats.distinct_keys,
        "tombstones": stats.tombstones, "recoveries": stats.recoveries,
        "reclaimed": stats.reclaimed, "journal": t.hget(_shm_table.H_JSLOT),
    }


def run_inspect(args: dict[str, Any]) -> None:
    backend = attach(args)
    try:
        out: dict[str, Any] = {"before": dump(backend)}
        if "write" in args:
            key, node, serial, meta = args["write"]
            backend.register(key, detached(node, serial), meta)
            out["after"] = dump(backend)
            backend.unregister(key, detached(node, serial))
        emit(out)
    finally:
        backend.close()


def run_hold(args: dict[str, Any]) -> None:
    if args.get("create"):
        backend = SharedMemoryBackend(args["name"], create=True, capacity=64)
    else:
        backend = attach(args)
    wid = args["wid"]
    keys = [f"w{wid}-{i}" for i in range(args["count"])]
    for i, key in enumerate(keys):
        backend.register(key, detached(wid + 1, i), make_meta(key, wid, i, 0))
    emit({"name": backend.name, "creator": backend.creator, "keys": keys})
    sys.stdin.readline()  # hold the entries until killed


def run_serve(args: dict[str, Any]) -> None:
    # A long liveness interval keeps the per-key cache trusted for the whole test, so
    # only the slot sequence number can tell the cache went stale.
    backend = attach(args, liveness_interval=3600.0)
    emit({"ready": True})
    while line := sys.stdin.readline():
        req = json.loads(line)
        op, key = req["op"], req.get("key")
        if op == "lookup":
            emit([[r.pid.node, r.pid.serial, r._proc is None, m] for r, m in backend.lookup(key)])
        elif op == "whereis":
            ref = backend.whereis(key)
            emit({"ref": None if ref is None else [ref.pid.node, ref.pid.serial],
                  "detached": ref is None or ref._proc is None, "cached": key in backend._hot})
        elif op == "register":
            backend.register(key, detached(*req["ref"]), req["meta"])
            emit({"ok": True})
        else:
            break
    backend.close()


MODES = {
    "stress": run_stress, "crash_write": run_crash_write, "churn": run_churn,
    "hammer": run_hammer, "inspect": run_inspect, "hold": run_hold, "serve": run_serve,
}

if __name__ == "__main__":
    arguments = json.loads(sys.argv[1])
    MODES[arguments["mode"]](arguments)

"""Model-based test of ``Registry``: random operations checked against a plain dict,
once per registry backend (``DictBackend`` and ``SharedMemoryBackend``).

Hypothesis and async fixtures do not mix, so each example is one sync scenario run with
``foundation.run`` on asyncio and then on trio. A pool of actors (replaced when they
die) and a pool of keys are shared by a unique and a duplicate registry, each on a fresh
backend of the kind under test (fresh shared tables per run, closed and unlinked at its
end); after every step both registries must agree with the model on every read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from registry_helpers import REGISTRY_BACKENDS, close_backend, new_backend

import foundation
from foundation import Actor, ActorDead, ActorRef, AlreadyRegistered, Registry
from foundation.abc import Keys
from foundation.testing import VirtualClock

ACTORS = 4
KEYS = ("a", "b", ("c", 1))
MODES: tuple[Keys, ...] = ("unique", "duplicate")
# Backend options: a shared table with room for every (key, actor) pair at once (a full
# table is not part of the model; test_registry_shm.py covers it).
SIZES: dict[str, dict[str, Any]] = {"dict": {}, "shm": {"capacity": ACTORS * len(KEYS)}}


class Member(Actor):
    async def handle_cast(self, msg: Any) -> None:
        raise RuntimeError(f"crash requested: {msg!r}")


actor_ix = st.integers(0, ACTORS - 1)
key_ix = st.integers(0, len(KEYS) - 1)
mode = st.sampled_from(MODES)
meta = st.integers(0, 3)

Op = tuple[Any, ...]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("register"), mode, key_ix, actor_ix, meta),
        st.tuples(st.just("unregister"), mode, key_ix, actor_ix),
        st.tuples(st.just("update_meta"), mode, key_ix, actor_ix, meta),
        st.tuples(st.just("lookup_or_register"), key_ix, actor_ix, meta),
        st.tuples(st.just("die"), actor_ix, st.sampled_from(["stop", "kill", "crash"])),
        st.tuples(st.just("respawn"), actor_ix),
    ),
    max_size=40,
)


@dataclass
class Model:
    """What the registries should hold: actor slots, and entries per mode."""

    alive: list[bool] = field(default_factory=lambda: [True] * ACTORS)
    unique: dict[Any, tuple[int, Any]] = field(default_factory=dict)
    duplicate: dict[Any, dict[int, Any]] = field(default_factory=dict)

    def drop_actor(self, i: int) -> None:
        self.unique = {k: v for k, v in self.unique.items() if v[0] != i}
        for entries in self.duplicate.values():
            entries.pop(i, None)
        self.duplicate = {k: v for k, v in self.duplicate.items() if v}


async def scenario(kind: str, steps: list[Op]) -> None:
    rt = foundation.current_runtime()
    backends = [new_backend(kind, **SIZES[kind]) for _ in MODES]
    try:
        regs: dict[str, Registry] = {
            m: Registry(b, keys=m) for m, b in zip(MODES, backends, strict=True)
        }
        refs: list[ActorRef] = [await rt.spawn(Member) for _ in range(ACTORS)]
        model = Model()
        check(regs, refs, model, ("start",))
        for step in steps:
            await apply(step, rt, regs, refs, model)
            check(regs, refs, model, step)
    finally:
        for backend in backends:
            close_backend(backend)



async def apply(
    step: Op, rt: foundation.Runtime, regs: dict[str, Registry], refs: list[ActorRef],
    model: Model,
) -> None:
    op = step[0]
    if op == "register":
        _, m, k, i, value = step
        key, ref, reg = KEYS[k], refs[i], regs[m]
        if not model.alive[i]:
            with pytest.raises(ActorDead):
                reg.register(key, ref, value)
        elif m == "unique" and key in model.unique:
            with pytest.raises(AlreadyRegistered) as info:
                reg.register(key, ref, value)
            assert info.value.owner == refs[model.unique[key][0]]
        else:
            reg.register(key, ref, value)
            if m == "unique":
                model.unique[key] = (i, value)
            else:
                model.duplicate.setdefault(key, {})[i] = value
    elif op == "unregister":
        _, m, k, i = step
        key = KEYS[k]
        if m == "unique":
            expected = model.unique.get(key, (None,))[0] == i
            if expected:
                del model.unique[key]
        else:
            expected = i in model.duplicate.get(key, {})
            if expected:
                del model.duplicate[key][i]
                if not model.duplicate[key]:
                    del model.duplicate[key]
        assert regs[m].unregister(key, refs[i]) is expected
    elif op == "update_meta":
        _, m, k, i, value = step
        key = KEYS[k]
        if m == "unique":
            expected = model.unique.get(key, (None,))[0] == i
            if expected:
                model.unique[key] = (i, value)
        else:
            expected = i in model.duplicate.get(key, {})
            if expected:
                model.duplicate[key][i] = value
        assert regs[m].update_meta(key, refs[i], value) is expected
    elif op == "lookup_or_register":
        _, k, i, value = step
        key, reg = KEYS[k], regs["unique"]
        if not model.alive[i]:
            with pytest.raises(ActorDead):
                reg.lookup_or_register(key, refs[i], value)
        elif key in model.unique:
            owner = refs[model.unique[key][0]]
            assert reg.lookup_or_register(key, refs[i], value) == (owner, False)
        else:
            assert reg.lookup_or_register(key, refs[i], value) == (refs[i], True)
            model.unique[key] = (i, value)
    elif op == "die":
        _, i, how = step
        if not model.alive[i]:
            return
        ref = refs[i]
        mon = rt.monitor(ref)
        if how == "stop":
            await ref.stop()
        elif how == "kill":
            ref.kill()
        else:
            ref.cast("crash")
        await mon.wait()
        model.alive[i] = False
        model.drop_actor(i)
    elif op == "respawn":
        _, i = step
        if not model.alive[i]:
            refs[i] = await rt.spawn(Member)
            model.alive[i] = True
    else:  # pragma: no cover - the strategy only draws the ops above
        raise AssertionError(op)


def check(regs: dict[str, Registry], refs: list[ActorRef], model: Model, step: Op) -> None:
    def index(ref: ActorRef) -> int:
        return refs.index(ref)

    uni, dup = regs["unique"], regs["duplicate"]
    for key in KEYS:
        want_u = model.unique.get(key)
        assert uni.whereis(key) == (None if want_u is None else refs[want_u[0]]), step
        assert [(index(r), m) for r, m in uni.lookup(key)] == ([] if want_u is None else
                                                                [want_u]), step
        got_d = {index(r): m for r, m in dup.lookup(key)}
        assert got_d == model.duplicate.get(key, {}), step
    n_dup = sum(len(v) for v in model.duplicate.values())
    assert uni.count() == len(model.unique), step
    assert dup.count() == n_dup, step
    for i, ref in enumerate(refs):
        assert sorted(map(repr, uni.keys_of(ref))) == sorted(
            repr(k) for k, (owner, _) in model.unique.items() if owner == i
        ), step
        assert sorted(map(repr, dup.keys_of(ref))) == sorted(
            repr(k) for k, entries in model.duplicate.items() if i in entries
        ), step
    assert sorted((repr(k), index(r), m) for k, r, m in uni.select(None)) == sorted(
        (repr(k), i, m) for k, (i, m) in model.unique.items()
    ), step
    assert sorted((repr(k), index(r), m) for k, r, m in dup.select(lambda k, r, m: m == 0)) == (
        sorted(
            (repr(k), i, m)
            for k, entries in model.duplicate.items()
            for i, m in entries.items()
            if m == 0
        )
    ), step
    s = uni.statistics()
    assert (s.entries, s.distinct_keys) == (len(model.unique), len(model.unique)), step
    assert s.owners == len({i for i, _ in model.unique.values()}), step
    d = dup.statistics()
    assert (d.entries, d.distinct_keys) == (n_dup, len(model.duplicate)), step
    assert d.owners == len({i for entries in model.duplicate.values() for i in entries}), step


@pytest.mark.parametrize("kind", REGISTRY_BACKENDS)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=ops)
def test_registries_agree_with_a_dict_model_under_random_operations(
    kind: str, steps: list[Op]
) -> None:
    for backend in ("asyncio", "trio"):
        foundation.run(
            scenario, kind, steps, backend=backend, clock=VirtualClock(), watchdog=None
        )

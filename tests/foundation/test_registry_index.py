"""``DictBackend(index=...)``: ``select`` on an indexed metadata field reads one bucket,
and the index follows every write (register, update, unregister, actor exit)."""

from __future__ import annotations

from typing import Any

import pytest

from foundation import Actor, ActorRef, DictBackend, Registry, Runtime

pytestmark = pytest.mark.anyio


class Agent(Actor):
    pass


def scan(reg: Registry, spec: dict[str, Any]) -> list[Any]:
    """The same select without the index (a predicate spec always scans)."""
    return sorted(
        (repr(k), r.pid.serial, repr(m))
        for k, r, m in reg.select(lambda k, r, m: all(
            isinstance(m, dict) and f in m and m[f] == v for f, v in spec.items()
        ))
    )


def selected(reg: Registry, spec: dict[str, Any]) -> list[Any]:
    return sorted((repr(k), r.pid.serial, repr(m)) for k, r, m in reg.select(spec))


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
async def test_indexed_select_matches_a_full_scan_through_every_kind_of_write(
    runtime: Runtime, keys: Any
) -> None:
    backend = DictBackend(index=("capability", "status"))
    reg = Registry(backend, keys=keys)
    refs: list[ActorRef] = [await runtime.spawn(Agent) for _ in range(6)]
    caps = ["gpu", "cpu", "gpu", "tpu", "gpu", "cpu"]
    for i, ref in enumerate(refs):
        key = f"agent-{i}" if keys == "unique" else "agents"
        reg.register(key, ref, {"capability": caps[i], "status": "running", "n": i})
    specs = [
        {"capability": "gpu"},
        {"capability": "gpu", "status": "running"},
        {"capability": "none"},
        {"status": "stopped"},
        {"n": 3},  # not indexed: scans
        {"capability": ["gpu"]},  # unhashable wanted value: scans
    ]

    def agree() -> None:
        for spec in specs:
            assert selected(reg, spec) == scan(reg, spec), spec

    agree()
    assert len(reg.select({"capability": "gpu"})) == 3
    key1 = "agent-1" if keys == "unique" else "agents"
    assert reg.update_meta(key1, refs[1], {"capability": "gpu", "status": "stopped"})
    agree()
    assert len(reg.select({"capability": "gpu"})) == 4
    assert [r for _, r, _ in reg.select({"status": "stopped"})] == [refs[1]]
    key2 = "agent-2" if keys == "unique" else "agents"
    assert reg.unregister(key2, refs[2])
    agree()
    mon = runtime.monitor(refs[4])
    refs[4].kill()
    await mon.wait()
    agree()
    assert sorted(r.pid.serial for _, r, _ in reg.select({"capability": "gpu"})) == sorted(
        [refs[0].pid.serial, refs[1].pid.serial]
    )
    # non-mapping and unhashable metadata are stored but never indexed
    extra = await runtime.spawn(Agent)
    reg.register("odd" if keys == "unique" else "agents", extra, ["not", "a", "mapping"])
    late = await runtime.spawn(Agent)
    reg.register("late" if keys == "unique" else "agents", late, {"capability": ["gpu", "cpu"]})
    agree()
    assert reg.statistics().indexed_fields == ("capability", "status")


async def test_indexed_select_does_not_visit_other_buckets(runtime: Runtime) -> None:
    backend = DictBackend(index="capability")
    reg = Registry(backend)
    visited: list[Any] = []
    refs = [await runtime.spawn(Agent) for _ in range(50)]
    for i, ref in enumerate(refs):
        reg.register(i, ref, {"capability": "gpu" if i % 10 == 0 else "cpu"})
    real = backend._idx  # the bucket lookup is what select reads; count entries visited

    class Counting(dict):  # type: ignore[type-arg]
        def get(self, value: Any, default: Any = None) -> Any:
            bucket = super().get(value, default)
            visited.extend(bucket or ())
            return bucket

    backend._idx = {"capability": Counting(real["capability"])}
    assert len(reg.select({"capability": "gpu"})) == 5
    assert len(visited) == 5  # one bucket, not 50 entries


def test_index_fields_must_be_names() -> None:
    with pytest.raises(TypeError, match="field names"):
        DictBackend(index=(1,))  # type: ignore[arg-type]

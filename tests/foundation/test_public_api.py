"""The public surface, checked the way trio checks its own (``test_exports.py``)."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any

import pytest

import foundation
import foundation.codec
import foundation.lowlevel
import foundation.telemetry
import foundation.testing
from foundation import Actor, ActorRef, Caller, Monitor, MonitorRef, Pid, Runtime

PUBLIC_NAMESPACES: tuple[ModuleType, ...] = (
    foundation,
    foundation.testing,
    foundation.telemetry,
    foundation.codec,
    foundation.lowlevel,
)
NO_PUBLIC_CONSTRUCTOR = (Pid, ActorRef, MonitorRef, Caller, Monitor)

pytestmark = pytest.mark.anyio


def private_modules() -> list[ModuleType]:
    """Every ``foundation._*`` module, and every private module below a package."""
    found = []
    for info in pkgutil.walk_packages(foundation.__path__, "foundation."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            found.append(importlib.import_module(info.name))
    return found


@pytest.mark.parametrize("ns", PUBLIC_NAMESPACES, ids=lambda m: m.__name__)
def test_every_name_in_all_exists_and_all_is_a_sorted_tuple_of_unique_names(
    ns: ModuleType,
) -> None:
    names = ns.__all__
    assert isinstance(names, tuple)
    assert len(set(names)) == len(names)
    assert list(names) == sorted(names)
    for name in names:
        assert hasattr(ns, name), f"{ns.__name__}.{name} is in __all__ but missing"


def test_every_exported_class_from_a_private_module_lives_in_exactly_one_namespace() -> None:
    exported: dict[int, list[str]] = {}
    for ns in PUBLIC_NAMESPACES:
        for name in ns.__all__:
            exported.setdefault(id(getattr(ns, name)), []).append(f"{ns.__name__}.{name}")
    public_names = {ns.__name__ for ns in PUBLIC_NAMESPACES}
    checked = 0
    for module in private_modules():
        for name, obj in vars(module).items():
            if name.startswith("_") or not isinstance(obj, type):
                continue
            # Defined in a private module: its __module__ is that module or, rewritten,
            # a public namespace (classes of foundation.abc, say, are imported here).
            home = obj.__module__
            if home not in public_names and not home.startswith("foundation._"):
                continue
            where = exported.get(id(obj))
            if where is None:
                continue
            checked += 1
            assert len(where) == 1, f"{obj!r} is exported more than once: {where}"
            # Its __module__ names the public path, as trio's fixup_module_metadata does.
            assert f"{obj.__module__}.{obj.__qualname__}" == where[0]
    assert checked > 20


def test_the_public_modules_do_not_leak_private_helpers() -> None:
    for ns in PUBLIC_NAMESPACES:
        for name in ns.__all__:
            assert not name.startswith("_")


def test_runtime_made_objects_are_final() -> None:
    for cls in NO_PUBLIC_CONSTRUCTOR:
        assert getattr(cls, "__final__", False) is True, cls
    # Behaviours are meant to be subclassed.
    assert not getattr(Actor, "__final__", False)
    assert not getattr(Runtime, "__final__", False)


# -- value semantics of pids and refs --------------------------------------------------


class Echo(Actor):
    async def init(self) -> None:
        self.seen: list[Any] = []

    async def handle_cast(self, msg: Any) -> None:
        self.seen.append(msg)

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        return list(self.seen)


async def test_pids_and_refs_hash_and_compare_by_value(runtime: Runtime) -> None:
    a = await runtime.spawn(Echo)
    b = await runtime.spawn(Echo)
    same_pid = Pid._create(a.pid.node, a.pid.serial)
    assert same_pid == a.pid and hash(same_pid) == hash(a.pid)
    assert same_pid is not a.pid
    assert a.pid != b.pid and a.pid < b.pid and b.pid >= a.pid
    assert ActorRef._create(same_pid, None) == a
    assert hash(ActorRef._create(same_pid, None)) == hash(a)
    assert a != b and a < b
    assert {a, b, ActorRef._create(same_pid, None)} == {a, b}
    assert a != a.pid  # a ref is not its pid
    assert MonitorRef._create(5) == MonitorRef._create(5)
    assert len({MonitorRef._create(5), MonitorRef._create(5)}) == 1


async def test_refs_round_trip_through_the_codec_bound_to_the_live_actor(
    runtime: Runtime,
) -> None:
    ref = await runtime.spawn(Echo)
    message = {"reply_to": ref, "pid": ref.pid, "path": (ref, 1)}
    decoded = foundation.codec.decode(foundation.codec.encode(message))
    assert decoded == message
    assert decoded["pid"] == ref.pid and type(decoded["pid"]) is Pid
    assert decoded["reply_to"] is ref  # bound to the live actor of this runtime
    assert decoded["reply_to"].is_alive
    decoded["reply_to"].cast("through the decoded ref")
    assert await ref.call("seen") == ["through the decoded ref"]


async def test_a_decoded_ref_of_an_unknown_pid_is_detached_and_dead(runtime: Runtime) -> None:
    ref = await runtime.spawn(Echo)
    await ref.stop()
    decoded = foundation.codec.decode(foundation.codec.encode(ref))
    assert decoded == ref
    assert not decoded.is_alive
    assert "detached" in repr(decoded)
    decoded.cast("dropped")  # like a send to a dead pid: no error


def test_pids_and_refs_refuse_pickle() -> None:
    import pickle

    pid = Pid._create(0, 1)
    with pytest.raises(TypeError, match=r"foundation\.codec"):
        pickle.dumps(pid)
    with pytest.raises(TypeError, match=r"foundation\.codec"):
        pickle.dumps(ActorRef._create(pid, None))

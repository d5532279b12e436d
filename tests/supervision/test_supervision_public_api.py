"""The public surface of ``supervision``, checked as foundation's is (trio's habit)."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import supervision
import supervision.testing

PUBLIC_NAMESPACES: tuple[ModuleType, ...] = (supervision, supervision.testing)


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


@pytest.mark.parametrize("ns", PUBLIC_NAMESPACES, ids=lambda m: m.__name__)
def test_public_classes_show_their_public_module_path(ns: ModuleType) -> None:
    for name in ns.__all__:
        obj = getattr(ns, name)
        if isinstance(obj, type):
            assert obj.__module__ == ns.__name__, f"{name} shows {obj.__module__}"


def test_every_public_class_of_a_private_module_is_exported_exactly_once() -> None:
    exported: dict[int, list[str]] = {}
    for ns in PUBLIC_NAMESPACES:
        for name in ns.__all__:
            exported.setdefault(id(getattr(ns, name)), []).append(f"{ns.__name__}.{name}")
    assert all(len(where) == 1 for where in exported.values())
    for info in pkgutil.walk_packages(supervision.__path__, "supervision."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or not isinstance(obj, type):
                continue
            if obj.__module__.split(".")[0] != "supervision":
                continue  # imported from elsewhere
            if issubclass(obj, Exception) or obj.__doc__ is None:
                continue
            if id(obj) in exported:
                continue
            # Internal helpers are fine when they are not re-exported anywhere.
            assert not any(
                getattr(ns, name, None) is obj for ns in PUBLIC_NAMESPACES
            ), f"{info.name}.{name}"


def test_the_documented_supervisor_defaults_are_the_defaults() -> None:
    import inspect

    from supervision import DynamicSupervisor, Supervisor

    params = inspect.signature(Supervisor.init).parameters
    assert params["strategy"].default == "one_for_one"
    assert params["max_restarts"].default == 3  # Elixir's; Erlang's is 1
    assert params["max_seconds"].default == 5.0
    assert params["auto_shutdown"].default == "never"
    dyn = inspect.signature(DynamicSupervisor.init).parameters
    assert dyn["max_children"].default is None
    assert dyn["max_restarts"].default == 3 and dyn["max_seconds"].default == 5.0

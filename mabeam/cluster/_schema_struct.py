"""``Struct``: the spec of a frame or of a map inside one, tied to a frozen dataclass.

``load`` and ``dump`` run a function generated for the struct (``_schema_compile``):
straight-line checks without the path strings that only an error needs. A value it
does not take goes through the interpreter below, which names the field at fault (or,
should the fast path be stricter than it, takes the value after all).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from ._schema import Spec, bad_type, fail, show

_MISSING: Final = object()


class Slow(Exception):
    """A struct's fast path met a value the interpreter must explain (or may take)."""



class Struct(Spec):
    """A map with exactly the fields of the frozen dataclass ``cls``, one spec each.

    Fields without a default are required; those with one may be left out on the wire.
    ``envelope`` names keys that may appear besides the fields (a frame's "v" and "t").
    ``check`` runs cross-field rules on the built instance (in both directions).
    """

    __slots__ = (
        "_fast_dump",
        "_fast_load",
        "allowed",
        "check",
        "cls",
        "defaults",
        "factories",
        "fields",
        "name",
    )

    def __init__(
        self,
        cls: type,
        specs: Mapping[str, Spec],
        *,
        name: str,
        envelope: frozenset[str] = frozenset(),
        check: Callable[[Any, str], None] | None = None,
    ) -> None:
        fields = dataclasses.fields(cls)
        if [f.name for f in fields] != list(specs):
            raise TypeError(f"specs of {cls.__name__} must follow its fields in order")
        self.cls = cls
        self.name = name
        self.check = check
        self.allowed = frozenset(specs) | envelope
        # A frozen dataclass's __init__ sets each field through object.__setattr__, ~3 us
        # for an 8-field frame; its slot descriptors' __set__ does the same in a third.
        if not hasattr(cls, "__slots__"):
            raise TypeError(f"{cls.__name__} must be a dataclass with slots=True")
        self.fields = tuple(
            (key, spec, f".{key}", getattr(cls, key).__set__) for key, spec in specs.items()
        )
        self.defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
        self.factories: dict[str, Callable[[], Any]] = {
            f.name: f.default_factory
            for f in fields
            if f.default_factory is not dataclasses.MISSING
        }
        self._fast_load: Callable[[Any], Any] | None = None  # made on first use
        self._fast_dump: Callable[[Any], dict[str, Any]] | None = None

    def compiled(self, direction: Literal["load", "dump"]) -> Callable[[Any], Any]:
        """The generated fast path of ``load`` or ``dump`` (raises ``Slow`` instead of
        naming an error), made on first use."""
        from ._schema_compile import compile_struct  # it imports this module

        if direction == "load":
            if self._fast_load is None:
                self._fast_load = compile_struct(self, "load")
            return self._fast_load
        if self._fast_dump is None:
            self._fast_dump = compile_struct(self, "dump")
        return self._fast_dump

    def load(self, value: Any, path: str) -> Any:
        fast = self._fast_load or self.compiled("load")
        try:
            return fast(value)
        except Slow:
            return self.load_checked(value, path)

    def dump(self, value: Any, path: str) -> dict[str, Any]:
        fast = self._fast_dump or self.compiled("dump")
        try:
            out: dict[str, Any] = fast(value)
        except Slow:
            return self.dump_checked(value, path)
        return out

    def load_checked(self, value: Any, path: str) -> Any:
        """``load`` by the interpreter: every check names its path."""
        if type(value) is not dict:
            bad_type(path, "a map", value)
        if not value.keys() <= self.allowed:
            unknown = next(key for key in value if key not in self.allowed)
            fail("unknown_field", f"{path} has an unknown field {show(unknown)}")
        obj: Any = object.__new__(self.cls)  # no __post_init__ to skip: the frames have none
        for key, spec, suffix, setter in self.fields:
            item = value.get(key, _MISSING)
            if item is not _MISSING:
                setter(obj, spec.load(item, path + suffix))
            elif key in self.defaults:
                setter(obj, self.defaults[key])
            elif key in self.factories:
                setter(obj, self.factories[key]())
            else:
                fail("missing_field", f"{path} is missing the field {key!r}")
        if self.check is not None:
            self.check(obj, path)
        return obj

    def dump_checked(self, value: Any, path: str) -> dict[str, Any]:
        """``dump`` by the interpreter: every check names its path."""
        if type(value) is not self.cls:
            bad_type(path, f"a {self.cls.__name__}", value)
        out = {
            key: spec.dump(getattr(value, key), path + suffix)
            for key, spec, suffix, _ in self.fields
        }
        if self.check is not None:
            self.check(value, path)
        return out


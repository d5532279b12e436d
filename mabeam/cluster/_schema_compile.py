"""Generated fast paths of the wire schemas: straight-line code for a valid frame.

The interpreter (each spec's ``load``/``dump`` in ``_schema``) builds a path string for
every field, list item and map entry, to name it should it be wrong, and calls a method
per value. A valid frame needs neither. ``compile_struct`` writes one Python function
per struct (and per list, map or number inside it) that makes exactly the checks of the
interpreter, builds no path, and raises ``Slow`` at the first value it would refuse;
``Struct`` then runs the interpreter on the same value, which raises its usual error. So
an error reads word for word as before, and a valid frame costs a third of the time.

A spec kind this module does not know is called through its own ``load``/``dump``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final, Literal

from . import _schema as s
from ._schema_struct import Slow, Struct

Direction = Literal["load", "dump"]

_INT_MIN: Final = -(1 << 63)
_INT_LIMIT: Final = 1 << 64


class _Writer:
    """The source and namespace of one generated module (one top-level struct)."""

    def __init__(self, direction: Direction) -> None:
        self.direction = direction
        self.ns: dict[str, Any] = {"Slow": Slow, "_NEW": object.__new__, "_MISSING": object()}
        self.lines: list[str] = []
        self._names = 0
        self._done: dict[int, str] = {}

    def const(self, value: Any, hint: str = "c") -> str:
        name = f"_{hint}{self._names}"
        self._names += 1
        self.ns[name] = value
        return name

    def emit(self, header: str, body: list[str]) -> None:
        self.lines.append(header)
        self.lines.extend(f"    {line}" for line in body)
        self.lines.append("")

    # -- inline conditions ---------------------------------------------------------------

    def cond(self, spec: s.Spec, v: str, direction: Direction | None = None) -> str | None:
        """A bool expression over ``v`` that holds iff the interpreter takes ``v`` and
        returns it unchanged; None when the spec transforms its value (use ``fn``)."""
        kind = type(spec)
        dump = (direction or self.direction) == "dump"
        if kind is s.Integer:
            assert isinstance(spec, s.Integer)
            return f"(type({v}) is int and {spec.lo!r} <= {v} <= {spec.hi!r})"
        if kind is s.Boolean:
            return f"type({v}) is bool"
        if kind is s.Text:
            assert isinstance(spec, s.Text)
            text = f"type({v}) is str and len({v}) <= {spec.max_len!r}"
            if spec.pattern is not None:
                text += f" and {self.const(spec.pattern.fullmatch, 'match')}({v}) is not None"
            return f"({text})"
        if kind is s.Choice:
            assert isinstance(spec, s.Choice)
            return f"(type({v}) is str and {v} in {self.const(spec.options, 'options')})"
        if kind is s.Scalar:
            assert isinstance(spec, s.Scalar)
            kinds: set[type] = {float, bool, type(None)} if dump else {int, float, bool, type(None)}
            others = self.const(frozenset(kinds))
            text = f"(type({v}) is str and len({v}) <= {spec.max_len!r}) or type({v}) in {others}"
            if dump:  # an int is checked against msgpack's range first
                text += f" or (type({v}) is int and {_INT_MIN} <= {v} < {_INT_LIMIT})"
            return f"({text})"
        if kind is s.Plain:
            assert isinstance(spec, s.Plain)
            return self._plain(spec, v, dump)
        if kind is s.Optional:
            assert isinstance(spec, s.Optional)
            inner = self.cond(spec.inner, v, direction)
            return None if inner is None else f"({v} is None or {inner})"
        return None

    def _plain(self, spec: s.Plain, v: str, dump: bool) -> str:
        """User data: a leaf passes inline; a container (and, dumped, a long str or an
        int past msgpack's range) is left to the spec's own walk."""
        walk = self.const(_accepts(spec.dump if dump else spec.load), "walk")
        if not dump:
            return f"(type({v}) in {self.const(s._LEAVES, 'leaves')} or {walk}({v}))"
        scalars = self.const(frozenset({float, bool, bytes, type(None)}), "scalars")
        short = spec.limits.max_str_len // 4  # UTF-8 takes at most 4 bytes per char
        return (
            f"((type({v}) is int and {_INT_MIN} <= {v} < {_INT_LIMIT})"
            f" or type({v}) in {scalars} or (type({v}) is str and len({v}) <= {short})"
            f" or {walk}({v}))"
        )

    # -- functions -----------------------------------------------------------------------

    def fn(self, spec: s.Spec) -> str:
        """The name of a function of one value: what the interpreter returns, or Slow."""
        done = self._done.get(id(spec))
        if done is not None:
            return done
        kind = type(spec)
        name = self.const(None, "f")
        self._done[id(spec)] = name
        if kind is Struct:
            assert isinstance(spec, Struct)
            self._struct(name, spec)
        elif kind is s.Sequence:
            assert isinstance(spec, s.Sequence)
            self._sequence(name, spec)
        elif kind is s.MapOf:
            assert isinstance(spec, s.MapOf)
            self._map(name, spec)
        elif kind is s.Number and _finite(spec):
            assert isinstance(spec, s.Number)
            self._number(name, spec)
        elif kind is s.Optional:
            assert isinstance(spec, s.Optional)
            inner = self.fn(spec.inner)
            self.emit(f"def {name}(v):", [f"return None if v is None else {inner}(v)"])
        elif (test := self.cond(spec, "v")) is not None:
            self.emit(f"def {name}(v):", [f"if not {test}:", "    raise Slow", "return v"])
        else:  # a spec kind of its own: its method, any refusal made Slow
            call = self.const(spec.load if self.direction == "load" else spec.dump, "call")
            self.emit(
                f"def {name}(v):",
                ["try:", f"    return {call}(v, '')", "except Exception:", "    raise Slow"],
            )
        return name

    def _value(self, spec: s.Spec, v: str, body: list[str]) -> str:
        """Lines that check ``v`` go to ``body``; the expression of its converted value."""
        test = self.cond(spec, v)
        if test is not None:
            body += [f"if not {test}:", "    raise Slow"]
            return v
        return f"{self.fn(spec)}({v})"

    def _number(self, name: str, spec: s.Number) -> None:
        body = [
            "k = type(v)",
            "if k is int:",
            "    try:",
            "        v = float(v)",
            "    except OverflowError:",
            "        raise Slow from None",
            "elif k is not float:",
            "    raise Slow",
            f"if not {spec.lo!r} <= v <= {spec.hi!r}:",  # NaN and infinities fail too
            "    raise Slow",
        ]
        if spec.positive:
            body += ["if v <= 0:", "    raise Slow"]
        self.emit(f"def {name}(v):", [*body, "return v"])

    def _sequence(self, name: str, spec: s.Sequence) -> None:
        kinds = (
            "type(v) is not list"
            if self.direction == "load"
            else ("type(v) is not list and type(v) is not tuple")
        )
        body = [
            f"if {kinds} or not {spec.min_len} <= len(v) <= {spec.max_len}:",
            "    raise Slow",
        ]
        wrap = "tuple" if self.direction == "load" else "list"
        test = self.cond(spec.item, "x")
        if test is not None:
            body += ["for x in v:", f"    if not {test}:", "        raise Slow"]
            body += [f"return {wrap}(v)"]
        else:
            body += [f"return {wrap}([{self.fn(spec.item)}(x) for x in v])"]
        self.emit(f"def {name}(v):", body)

    def _map(self, name: str, spec: s.MapOf) -> None:
        key_test = self.cond(spec.key, "k", "load")  # keys are loaded both ways
        if key_test is None:
            key_test = f"{self.const(_accepts(spec.key.load), 'key')}(k)"
        body = [f"if type(v) is not dict or len(v) > {spec.max_len}:", "    raise Slow"]
        test = self.cond(spec.value, "x")
        if test is not None:
            body += [
                "for k, x in v.items():",
                f"    if not ({key_test} and {test}):",
                "        raise Slow",
                "return dict(v)",
            ]
        else:
            body += [
                "out = {}",
                "for k, x in v.items():",
                f"    if not {key_test}:",
                "        raise Slow",
                f"    out[k] = {self.fn(spec.value)}(x)",
                "return out",
            ]
        self.emit(f"def {name}(v):", body)

    def _struct(self, name: str, spec: Struct) -> None:
        load = self.direction == "load"
        body = self._struct_load(spec) if load else self._struct_dump(spec)
        if spec.check is not None:  # on the built object (load) or the given one (dump)
            check = self.const(spec.check, "check")
            body += ["try:", f"    {check}({'obj' if load else 'v'}, '')"]
            body += ["except Exception:", "    raise Slow from None"]
        self.emit(f"def {name}(v):", [*body, f"return {'obj' if load else 'out'}"])

    def _struct_load(self, spec: Struct) -> list[str]:
        allowed = self.const(spec.allowed, "allowed")
        body = [
            f"if type(v) is not dict or not v.keys() <= {allowed}:",
            "    raise Slow",
            f"obj = _NEW({self.const(spec.cls, 'cls')})",
            "get = v.get",
        ]
        for i, (key, field, _suffix, setter) in enumerate(spec.fields):
            put = self.const(setter, "set")
            body.append(f"x{i} = get({key!r}, _MISSING)")
            body.append(f"if x{i} is _MISSING:")
            if key in spec.defaults:
                body.append(f"    {put}(obj, {self.const(spec.defaults[key], 'default')})")
            elif key in spec.factories:
                body.append(f"    {put}(obj, {self.const(spec.factories[key], 'factory')}())")
            else:
                body.append("    raise Slow")
            body.append("else:")
            checks: list[str] = []
            value = self._value(field, f"x{i}", checks)
            body += [f"    {line}" for line in checks]
            body.append(f"    {put}(obj, {value})")
        return body

    def _struct_dump(self, spec: Struct) -> list[str]:
        body = [f"if type(v) is not {self.const(spec.cls, 'cls')}:", "    raise Slow"]
        items = []
        for i, (key, field, _suffix, _setter) in enumerate(spec.fields):
            body.append(f"x{i} = v.{key}")
            value = self._value(field, f"x{i}", body)
            items.append(f"{key!r}: {value}")
        body.append("out = {" + ", ".join(items) + "}")
        return body


def _finite(spec: Any) -> bool:
    """A number spec with finite bounds: then ``lo <= x <= hi`` also refuses NaN and
    the infinities, as the interpreter's ``isfinite`` does."""
    return math.isfinite(spec.lo) and math.isfinite(spec.hi)


def _accepts(method: Callable[[Any, str], Any]) -> Callable[[Any], bool]:
    """A predicate from a spec's ``load`` or ``dump``: whether it takes the value."""

    def test(value: Any) -> bool:
        try:
            method(value, "")
        except Exception:
            return False
        return True

    return test


def compile_struct(spec: Struct, direction: Direction) -> Callable[[Any], Any]:
    """The fast path of ``spec``'s ``load`` or ``dump`` (module docstring)."""
    writer = _Writer(direction)
    name = writer.fn(spec)
    source = "\n".join(writer.lines)
    code = compile(source, f"<schema {spec.name} {direction}>", "exec")
    exec(code, writer.ns)  # generated above from the specs alone: no outside text
    fast: Callable[[Any], Any] = writer.ns[name]
    return fast

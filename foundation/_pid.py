"""Process identifiers and monitor references: plain, hashable, ordered values."""

from __future__ import annotations

from typing import Any, NoReturn, final


class _NoPublicConstructor(type):
    """Metaclass that makes ``Cls(...)`` raise; the kernel builds instances via ``_create``."""

    def __call__(cls, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(f"{cls.__module__}.{cls.__qualname__} has no public constructor")

    def _create(cls, *args: Any, **kwargs: Any) -> Any:
        return super().__call__(*args, **kwargs)


@final
class Pid(metaclass=_NoPublicConstructor):
    """Identity of one actor incarnation: ``<node.serial>``; never reused in a runtime.

    ``node`` is the runtime's node number (0 for the local runtime unless configured);
    ``serial`` grows monotonically. Pids compare and hash by value, so a pid decoded
    from the wire equals the local one.
    """

    __slots__ = ("_hash", "node", "serial")

    def __init__(self, node: int, serial: int) -> None:
        self.node = node
        self.serial = serial
        self._hash = hash((node, serial))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if other.__class__ is Pid:
            return self.serial == other.serial and self.node == other.node
        return NotImplemented

    def __lt__(self, other: Pid) -> bool:
        return (self.node, self.serial) < (other.node, other.serial)

    def __le__(self, other: Pid) -> bool:
        return (self.node, self.serial) <= (other.node, other.serial)

    def __gt__(self, other: Pid) -> bool:
        return (self.node, self.serial) > (other.node, other.serial)

    def __ge__(self, other: Pid) -> bool:
        return (self.node, self.serial) >= (other.node, other.serial)

    def __repr__(self) -> str:
        return f"<{self.node}.{self.serial}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("Pid cannot be pickled; encode it with foundation.codec")


@final
class MonitorRef(metaclass=_NoPublicConstructor):
    """The reference a monitor returns; it tags the one ``Down`` that monitor delivers."""

    __slots__ = ("serial",)

    def __init__(self, serial: int) -> None:
        self.serial = serial

    def __hash__(self) -> int:
        return hash(("mref", self.serial))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is MonitorRef:
            return self.serial == other.serial
        return NotImplemented

    def __repr__(self) -> str:
        return f"#Ref<{self.serial}>"

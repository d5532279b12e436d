"""Abstract interfaces for pluggable parts of the kernel: the registry ``Backend``.

A ``Registry`` front validates arguments, ties entries to actor lifetimes and emits
telemetry; every read and write of entries goes through its backend, so a backend is the
single source of truth (the front keeps no side table).

Contract for implementers (complexities are for ``DictBackend``):

================================  ===============================================  =======
operation                         meaning                                          cost
================================  ===============================================  =======
``bind(keys)``                    set ``"unique"`` or ``"duplicate"`` once          O(1)
``whereis(key)``                  unique: the owner ref or None (hot path)         O(1)
``register(key, ref, meta)``      add; unique raises ``AlreadyRegistered``         O(1)
``lookup_or_register(...)``       atomic get-or-create: ``(owner, created)``       O(1)
``unregister(key, ref)``          remove one entry; False if absent                O(1)
``unregister_ref(ref)``           remove every entry of ``ref``; return keys       O(k)
``lookup(key)``                   ``[(ref, meta), ...]`` for the key               O(m)
``keys_of(ref)``                  keys ``ref`` holds                               O(k)
``holds(ref)``                    whether ``ref`` holds any key                    O(1)
``update_meta(key, ref, meta)``   replace the metadata; False if absent            O(1)
``select(spec)``                  ``[(key, ref, meta)]`` matching spec             O(n)
``count()``                       number of entries                                O(1)
``statistics()``                  frozen snapshot                                  O(1)
``reclaim()``                     drop entries of dead OS processes; the number    O(n)
``close()``                       release resources                                -
================================  ===============================================  =======

Concurrency: every method is called from the runtime's event-loop thread and must not
await; a backend shared between OS processes must make each method atomic on its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ._ref import ActorRef

Keys = Literal["unique", "duplicate"]
MatchSpec = Mapping[str, Any] | Callable[[Hashable, "ActorRef", Any], bool] | None


class RegistryBackend(ABC):
    """Storage of registry entries ``(key, ref, meta)``; see the module docstring."""

    keys: Keys = "unique"

    def bind(self, keys: Keys) -> None:
        """Fix the key mode; called once by the ``Registry`` that owns the backend."""
        self.keys = keys

    @abstractmethod
    def whereis(self, key: Hashable) -> ActorRef | None: ...

    @abstractmethod
    def register(self, key: Hashable, ref: ActorRef, meta: Any) -> None: ...

    @abstractmethod
    def lookup_or_register(
        self, key: Hashable, ref: ActorRef, meta: Any
    ) -> tuple[ActorRef, bool]: ...

    @abstractmethod
    def unregister(self, key: Hashable, ref: ActorRef) -> bool: ...

    @abstractmethod
    def unregister_ref(self, ref: ActorRef) -> list[Hashable]: ...

    @abstractmethod
    def lookup(self, key: Hashable) -> list[tuple[ActorRef, Any]]: ...

    @abstractmethod
    def keys_of(self, ref: ActorRef) -> list[Hashable]: ...

    def holds(self, ref: ActorRef) -> bool:
        """Whether ``ref`` holds any entry (override when ``keys_of`` is not cheap)."""
        return bool(self.keys_of(ref))

    @abstractmethod
    def update_meta(self, key: Hashable, ref: ActorRef, meta: Any) -> bool: ...

    @abstractmethod
    def select(self, spec: MatchSpec) -> list[tuple[Hashable, ActorRef, Any]]: ...

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def statistics(self) -> Any: ...

    def reclaim(self) -> int:
        """Remove entries whose owner OS process died; in-process backends have none."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook with a no-op default
        """Release resources (shared memory, files); the default has none."""


def matches(spec: MatchSpec, key: Hashable, ref: ActorRef, meta: Any) -> bool:
    """Evaluate a match spec: None (all), a mapping of metadata fields, or a predicate."""
    if spec is None:
        return True
    if callable(spec):
        return bool(spec(key, ref, meta))
    if not isinstance(meta, Mapping):
        return False
    return all(field in meta and meta[field] == want for field, want in spec.items())

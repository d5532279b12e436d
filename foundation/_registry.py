"""``Registry``: names and metadata for actors, removed automatically when they exit.

The front validates, ties entries to actor lifetimes and emits telemetry; every entry
lives in its backend (``DictBackend`` by default). ``keys="unique"`` maps a key to one
actor (names, ``via`` tuples); ``keys="duplicate"`` lets many actors share a key (pub/sub
groups, capabilities).
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable
from typing import Any

from ._backends import load_registry_backend
from ._context import current_runtime_var
from ._exceptions import ActorDead
from ._ref import ActorRef
from .abc import Keys, MatchSpec, RegistryBackend

_DEAD = 3


class Registry:
    """A registry of actors on a pluggable backend.

    Args:
        backend: a ``RegistryBackend`` instance or a backend name (``"dict"``).
        keys: ``"unique"`` or ``"duplicate"``.
        name: shown in telemetry metadata.
    """

    def __init__(
        self, backend: RegistryBackend | str | None = None, *, keys: Keys = "unique",
        name: str | None = None,
    ) -> None:
        if keys not in ("unique", "duplicate"):
            raise ValueError(f"keys must be 'unique' or 'duplicate', got: {keys!r}")
        if backend is None:
            backend = "dict"
        # A backend made here from a name is the registry's to close; an instance
        # belongs to whoever passed it (a shared table may outlive this registry).
        self._owns_backend = isinstance(backend, str)
        if isinstance(backend, str):
            backend = load_registry_backend(backend)
        if not isinstance(backend, RegistryBackend):
            raise TypeError(f"backend must be a RegistryBackend or a name, got: {backend!r}")
        backend.bind(keys)
        self._waiters: dict[Hashable, list[Any]] | None = None
        self.keys = keys
        self.name = name
        self.backend = backend
        if keys == "unique":
            # The backend's own (C-level for DictBackend) lookup: no extra Python frame.
            self.whereis = backend.whereis  # type: ignore[method-assign]
        else:
            self.whereis = self._whereis_duplicate  # type: ignore[method-assign]

    def whereis(self, key: Hashable) -> ActorRef | None:  # replaced per instance
        """The actor registered under ``key`` (unique registries), else None."""
        return self.backend.whereis(key)

    def _whereis_duplicate(self, key: Hashable) -> ActorRef | None:
        raise TypeError("whereis() needs unique keys; use lookup() on a duplicate registry")

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<Registry{label} keys={self.keys} backend={type(self.backend).__name__}>"

    # -- writes -------------------------------------------------------------------------
    def _check(self, key: Hashable, ref: ActorRef) -> None:
        try:
            hash(key)
        except TypeError:
            raise TypeError(f"registry keys must be hashable, got: {key!r}") from None
        if not isinstance(ref, ActorRef):
            raise TypeError(f"only ActorRefs can be registered, got: {ref!r}")
        proc = ref._proc
        if proc is None:
            raise ValueError(f"{ref!r} is not an actor of this process; only local actors "
                             "can be registered")
        if proc.state == _DEAD:
            raise ActorDead(ref.pid, "noproc")

    def _track(self, ref: ActorRef) -> None:
        proc = ref._proc
        assert proc is not None
        regs = proc.registries
        if regs is None:
            proc.registries = {self}
        else:
            regs.add(self)

    def _untrack(self, ref: ActorRef) -> None:
        """Forget this registry on the actor once it holds no key here (the actor's
        exit then skips it, and a dropped registry is not kept alive by its actors)."""
        proc = ref._proc
        if proc is not None and proc.registries and not self.backend.holds(ref):
            proc.registries.discard(self)

    def _add_waiter(self, key: Hashable, fn: Any) -> None:
        """Call ``fn(ref)`` at the next registration of ``key`` (calls by name across a
        restart wait on it)."""
        if self._waiters is None:
            self._waiters = {}
        self._waiters.setdefault(key, []).append(fn)

    def _remove_waiter(self, key: Hashable, fut: Any) -> None:
        waiters = self._waiters
        if waiters is not None and key in waiters:
            with contextlib.suppress(ValueError):
                waiters[key].remove(fut)
            if not waiters[key]:
                del waiters[key]

    def _wake(self, key: Hashable, ref: ActorRef) -> None:
        waiters = self._waiters
        if waiters is not None and key in waiters:
            for fn in waiters.pop(key):
                fn(ref)

    def _emit(self, ref: ActorRef, what: str, key: Hashable) -> None:
        proc = ref._proc
        if proc is not None and proc.rt.telemetry.active:
            proc.rt.telemetry.emit(
                ("foundation", "registry", what),
                {},
                {"registry": self.name, "key": key, "pid": ref.pid},
            )

    def register(self, key: Hashable, ref: ActorRef, meta: Any = None) -> None:
        """Register ``ref`` under ``key``; it is removed when the actor exits.

        Raises:
            AlreadyRegistered: a unique key is held by another live actor.
            ActorDead: ``ref`` is not alive.
        """
        self._check(key, ref)
        self.backend.register(key, ref, meta)
        self._track(ref)
        self._emit(ref, "register", key)
        if self._waiters:
            self._wake(key, ref)

    def lookup_or_register(
        self, key: Hashable, ref: ActorRef, meta: Any = None
    ) -> tuple[ActorRef, bool]:
        """Atomically return ``(owner, False)`` if ``key`` is taken, else register ``ref``
        and return ``(ref, True)``."""
        self._check(key, ref)
        owner, created = self.backend.lookup_or_register(key, ref, meta)
        if created:
            self._track(ref)
            self._emit(ref, "register", key)
            if self._waiters:
                self._wake(key, ref)
        return owner, created

    def unregister(self, key: Hashable, ref: ActorRef) -> bool:
        """Remove ``ref``'s entry under ``key``; False if there was none."""
        removed = self.backend.unregister(key, ref)
        if removed:
            self._untrack(ref)
            self._emit(ref, "unregister", key)
        return removed

    def update_meta(self, key: Hashable, ref: ActorRef, meta: Any) -> bool:
        """Replace the metadata of ``ref`` under ``key``; False if not registered."""
        return self.backend.update_meta(key, ref, meta)

    def _on_exit(self, proc: Any) -> None:
        keys = self.backend.unregister_ref(proc.ref)
        if keys and proc.rt.telemetry.active:
            for key in keys:
                self._emit(proc.ref, "unregister", key)

    # -- reads --------------------------------------------------------------------------
    def lookup(self, key: Hashable) -> list[tuple[ActorRef, Any]]:
        """``[(ref, meta), ...]`` registered under ``key`` (at most one if unique)."""
        return self.backend.lookup(key)

    def meta(self, key: Hashable) -> Any:
        """Metadata of the unique ``key``; ``KeyError`` if not registered."""
        found = self.backend.lookup(key)
        if not found:
            raise KeyError(key)
        return found[0][1]

    def keys_of(self, ref: ActorRef) -> list[Hashable]:
        """Keys under which ``ref`` is registered."""
        return self.backend.keys_of(ref)

    def select(self, spec: MatchSpec = None) -> list[tuple[Hashable, ActorRef, Any]]:
        """Entries whose metadata matches ``spec``: a mapping of field values
        (``{"capability": "gpu"}``), a predicate ``(key, ref, meta) -> bool``, or None."""
        if spec is not None and not callable(spec) and not hasattr(spec, "items"):
            raise TypeError(f"a match spec is a mapping, a callable or None, got: {spec!r}")
        return self.backend.select(spec)

    def count(self) -> int:
        """Number of entries."""
        return self.backend.count()

    def __len__(self) -> int:
        return self.backend.count()

    def statistics(self) -> Any:
        """The backend's statistics snapshot."""
        return self.backend.statistics()

    def reclaim(self) -> int:
        """Remove entries whose owner OS process died (shared backends); emits
        ``("foundation", "registry", "reclaim")`` with the number removed."""
        removed = self.backend.reclaim()
        if removed:
            rt = current_runtime_var.get()
            if rt is not None and rt.telemetry.active:
                rt.telemetry.emit(
                    ("foundation", "registry", "reclaim"),
                    {"removed": removed},
                    {"registry": self.name},
                )
        return removed

    def close(self) -> None:
        """Close the backend if this registry created it from a name (the runtime calls
        this at shutdown); a backend instance passed in is left to its owner."""
        if self._owns_backend:
            self.backend.close()

    def via(self, key: Hashable) -> tuple[str, Registry, Hashable]:
        """The ``("via", registry, key)`` name to spawn or look up an actor by."""
        return ("via", self, key)

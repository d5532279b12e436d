"""``Agent``: an actor with declared capabilities, a status lifecycle and a load, found
through the registry.

An agent registers itself under ``("agent", name)`` in its runtime's registry before
anything else runs, with ``AgentMeta`` (kind, capabilities, status, load) as metadata,
and keeps that metadata current as it moves through its lifecycle::

    registered -> starting -> running -> stopping -> stopped | failed

``starting`` runs the subclass's ``start_agent``; an exception there fails the start
(the spawner gets ``StartError``). ``stopping`` runs ``stop_agent(reason)`` on the way
out; the agent then ends ``stopped`` (a normal or shutdown exit) or ``failed``. Every
change is emitted as telemetry ``("mabeam", "agent", "status")``, the last two too: the
registry forgets an agent when it exits, the telemetry does not.

Quotas: ``max_children`` bounds the sub-agents it starts with ``start_child_agent``
(its own ``DynamicSupervisor``); past it, ``AgentQuotaError`` says so. The mailbox
bound is a spawn option (``start_agent(..., mailbox_size=N)``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Final, Literal, TypeAlias

from foundation import Actor, ActorRef
from supervision import DynamicSupervisor, MaxChildren, child_spec

__all__ = (
    "AGENT_EVENT",
    "STATUSES",
    "Agent",
    "AgentError",
    "AgentMeta",
    "AgentQuotaError",
    "AgentStatus",
    "agent_key",
)

log = logging.getLogger("mabeam.agents")

AgentStatus: TypeAlias = Literal[
    "registered", "starting", "running", "stopping", "stopped", "failed"
]
STATUSES: Final[tuple[str, ...]] = (
    "registered", "starting", "running", "stopping", "stopped", "failed",
)  # fmt: skip
AGENT_EVENT: Final = ("mabeam", "agent", "status")
_NEXT: Final[dict[str, frozenset[str]]] = {
    "registered": frozenset({"starting", "failed"}),
    "starting": frozenset({"running", "stopping", "failed"}),
    "running": frozenset({"stopping", "failed"}),
    "stopping": frozenset({"stopped", "failed"}),
    "stopped": frozenset(),
    "failed": frozenset(),
}


class AgentError(Exception):
    """Misuse of an agent (a bad name, capability, load or status change)."""


class AgentQuotaError(AgentError):
    """An agent hit one of its quotas; the message names it and its value."""


@dataclass(frozen=True, slots=True)
class AgentMeta:
    """What the registry holds for an agent."""

    name: str
    kind: str
    capabilities: frozenset[str]
    status: AgentStatus
    load: float = 0.0


def agent_key(name: str) -> tuple[str, str]:
    """The registry key of the agent called ``name``."""
    return ("agent", name)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > 200:
        raise AgentError(f"an agent's name must be a non-empty str of at most 200 chars: {name!r}")
    return name


def _check_capabilities(capabilities: Iterable[str]) -> frozenset[str]:
    if isinstance(capabilities, str):
        raise AgentError(
            f"capabilities must be a collection of names, got the str {capabilities!r}"
        )
    found = frozenset(capabilities)
    bad = [c for c in found if not isinstance(c, str) or not c]
    if bad:
        raise AgentError(f"capabilities must be non-empty str, got: {bad!r}")
    return found


class Agent(Actor):
    """Base class of agents: override ``start_agent`` / ``stop_agent`` and the usual
    actor callbacks; declare ``capabilities`` (class attribute, or ``capabilities=``
    when starting). See the module docstring for the lifecycle and quotas."""

    capabilities: ClassVar[frozenset[str]] = frozenset()
    max_children: ClassVar[int | None] = None
    trap_exits = True  # so that stop_agent runs on a supervisor's shutdown too

    async def init(
        self,
        name: str,
        *args: Any,
        capabilities: Iterable[str] | None = None,
        max_children: int | None = None,
        **kwargs: Any,
    ) -> None:
        caps = _check_capabilities(self.capabilities if capabilities is None else capabilities)
        limit = self.max_children if max_children is None else max_children
        if limit is not None and (type(limit) is not int or limit < 0):
            raise AgentError(f"max_children must be an int >= 0 or None, got: {limit!r}")
        self._max_children = limit
        self._children: ActorRef | None = None
        self.meta = AgentMeta(_check_name(name), type(self).__qualname__, caps, "registered")
        self.runtime.registry.register(agent_key(name), self.ref, self.meta)
        self._emit()
        self._set("starting")
        try:
            await self.start_agent(*args, **kwargs)
        except BaseException:
            self._set("failed")
            raise
        self._set("running")

    # -- hooks --------------------------------------------------------------------------

    async def start_agent(self, *args: Any, **kwargs: Any) -> None:
        """Set the agent up (the rest of ``start_agent``'s arguments); raise to fail."""

    async def stop_agent(self, reason: Any) -> None:
        """Clean up on the way out (``reason`` is the exit reason)."""

    # -- status and load ----------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def status(self) -> AgentStatus:
        return self.meta.status

    def set_load(self, load: float) -> None:
        """Publish this agent's load (a number >= 0: lower is picked first)."""
        if isinstance(load, bool) or not isinstance(load, int | float) or not load >= 0:
            raise AgentError(f"load must be a number >= 0, got: {load!r}")
        self._update(replace(self.meta, load=float(load)))

    def _set(self, status: AgentStatus) -> None:
        if status not in _NEXT[self.meta.status]:
            raise AgentError(f"agent {self.name!r} cannot go from {self.meta.status} to {status}")
        self._update(replace(self.meta, status=status))
        self._emit()

    def _update(self, meta: AgentMeta) -> None:
        self.meta = meta
        if meta.status not in ("stopped", "failed"):
            self.runtime.registry.update_meta(agent_key(meta.name), self.ref, meta)

    def _emit(self) -> None:
        telemetry = self.runtime.telemetry
        if telemetry.active:
            meta = self.meta
            telemetry.emit(
                AGENT_EVENT,
                {"load": meta.load},
                {"name": meta.name, "kind": meta.kind, "status": meta.status,
                 "pid": self.ref.pid},
            )  # fmt: skip

    async def terminate(self, reason: Any) -> None:
        meta = getattr(self, "meta", None)
        if meta is None or meta.status in ("stopped", "failed"):
            return  # init failed: nothing was started
        self._set("stopping")
        try:
            await self.stop_agent(reason)
        except Exception:
            log.exception("agent %r: stop_agent failed", self.name)
            self._set("failed")
            return
        normal = reason in ("normal", "shutdown") or (
            isinstance(reason, tuple) and reason[:1] == ("shutdown",)
        )
        self._set("stopped" if normal else "failed")

    # -- sub-agents ---------------------------------------------------------------------

    async def start_child_agent(
        self, cls: type[Agent], name: str, *args: Any, **kwargs: Any
    ) -> ActorRef:
        """Start a sub-agent under this agent's own supervisor (linked to it: it goes
        when this agent goes); ``AgentQuotaError`` past ``max_children``."""
        if self._children is None or not self._children.is_alive:
            self._children = await self.spawn_link(
                DynamicSupervisor, max_children=self._max_children
            )
        spec = child_spec(cls, name, *args, id=("agent", name), restart="temporary", **kwargs)
        try:
            ref = await DynamicSupervisor.start_child(self._children, spec)
        except MaxChildren:
            raise AgentQuotaError(
                f"agent {self.name!r} already runs max_children={self._max_children}"
                f" sub-agents; {name!r} was not started"
            ) from None
        assert ref is not None
        return ref

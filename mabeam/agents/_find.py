"""Finding agents: by capability and status, least loaded first, and starting them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from foundation import ActorRef, current_runtime
from supervision import DynamicSupervisor, child_spec

from ._agent import STATUSES, Agent, AgentError, AgentMeta

__all__ = ("AgentInfo", "find_agents", "start_agent")


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """A live agent as the registry knows it."""

    ref: ActorRef
    meta: AgentMeta


def find_agents(capability: str | None = None, status: str | None = None) -> list[AgentInfo]:
    """The live agents of the current runtime with ``capability`` and in ``status``
    (None: any), least loaded first, then by name."""
    if status is not None and status not in STATUSES:
        raise AgentError(f"status must be one of {', '.join(STATUSES)}, got: {status!r}")

    def matches(key: Any, ref: ActorRef, meta: Any) -> bool:
        return (
            isinstance(meta, AgentMeta)
            and (capability is None or capability in meta.capabilities)
            and (status is None or meta.status == status)
        )

    found = [AgentInfo(ref, meta) for _, ref, meta in current_runtime().registry.select(matches)]
    return sorted(found, key=lambda info: (info.meta.load, info.meta.name))


async def start_agent(
    cls: type[Agent],
    name: str,
    *args: Any,
    supervisor: Any = None,
    mailbox_size: int | None = None,
    restart: Literal["permanent", "transient", "temporary"] = "transient",
    **kwargs: Any,
) -> ActorRef:
    """Start agent ``cls`` called ``name`` (``start_agent``'s arguments after it): under
    ``supervisor`` (a ``DynamicSupervisor``, an agent supervisor) when given, else on its
    own. ``mailbox_size`` bounds its mailbox (senders wait: ``cast_wait``)."""
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise AgentError(f"start_agent takes an Agent subclass, got: {cls!r}")
    options: dict[str, Any] = {}
    if mailbox_size is not None:
        options = {"mailbox_size": mailbox_size, "overflow": "block"}
    if supervisor is None:
        ref: ActorRef = await current_runtime().spawn(cls, name, *args, **options, **kwargs)
        return ref
    spec = child_spec(
        cls,
        name,
        *args,
        id=("agent", name),
        restart=restart,
        **options,
        **kwargs,
    )
    started = await DynamicSupervisor.start_child(supervisor, spec)
    assert started is not None
    return started

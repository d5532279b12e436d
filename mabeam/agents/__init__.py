"""mabeam.agents: actors with capabilities, a status lifecycle and a load, found through
the registry (``find_agents``) and run under supervisors (``start_agent``).

    class Tuner(Agent):
        capabilities = frozenset({"search"})

        async def start_agent(self, space):
            self.space = space

    ref = await start_agent(Tuner, "tuner-1", {"lr": [0.1, 0.01]})
    [info] = find_agents(capability="search", status="running")
"""

from __future__ import annotations

from foundation._public import fixup_module_metadata

from ._agent import (
    AGENT_EVENT,
    STATUSES,
    Agent,
    AgentError,
    AgentMeta,
    AgentQuotaError,
    AgentStatus,
    agent_key,
)
from ._find import AgentInfo, find_agents, start_agent

__all__ = (
    "AGENT_EVENT",
    "STATUSES",
    "Agent",
    "AgentError",
    "AgentInfo",
    "AgentMeta",
    "AgentQuotaError",
    "AgentStatus",
    "agent_key",
    "find_agents",
    "start_agent",
)

fixup_module_metadata(__name__, globals())

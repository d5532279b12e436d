"""Agents: registration with capabilities and status, the lifecycle, lookup, quotas."""

from __future__ import annotations

from typing import Any

import pytest

from foundation import ActorDead, Runtime, StartError, current_runtime
from foundation.testing import until
from mabeam.agents import (
    AGENT_EVENT,
    Agent,
    AgentError,
    AgentQuotaError,
    agent_key,
    find_agents,
    start_agent,
)
from supervision import DynamicSupervisor

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Worker(Agent):
    capabilities = frozenset({"train"})

    async def start_agent(self, *, fail: bool = False, log: list[str] | None = None) -> None:
        self.log = log if log is not None else []
        self.log.append(f"start {self.status}")
        if fail:
            raise RuntimeError("cannot start")

    async def stop_agent(self, reason: Any) -> None:
        self.log.append(f"stop {self.status} {reason!r}")

    async def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "status":
            return self.status
        try:
            if isinstance(request, tuple) and request[0] == "load":
                self.set_load(request[1])
                return None
            if isinstance(request, tuple) and request[0] == "child":
                return await self.start_child_agent(Worker, request[1])
        except AgentError as exc:  # a refusal is an answer, not a crash of the agent
            return exc
        if request == "crash":
            raise ValueError("boom")
        raise ValueError(request)


def statuses(events: list[Any], name: str) -> list[str]:
    return [m["status"] for _, _, m in events if m["name"] == name]


async def test_an_agent_is_registered_with_its_capabilities_and_walks_its_lifecycle() -> None:
    async with Runtime() as rt:
        events: list[Any] = []
        rt.telemetry.attach(AGENT_EVENT, lambda *e: events.append(e))
        log: list[str] = []
        ref = await start_agent(Worker, "w1", log=log)
        assert log == ["start starting"]
        [(found, meta)] = rt.registry.lookup(agent_key("w1"))
        assert found == ref and meta.capabilities == {"train"} and meta.status == "running"
        assert meta.kind == "Worker" and meta.load == 0.0
        assert await ref.call("status") == "running"
        await ref.stop()
        assert log[-1] == "stop stopping 'normal'"
        assert statuses(events, "w1") == [
            "registered",
            "starting",
            "running",
            "stopping",
            "stopped",
        ]
        assert rt.registry.lookup(agent_key("w1")) == []


async def test_a_failed_start_or_a_crash_ends_failed() -> None:
    async with Runtime() as rt:
        events: list[Any] = []
        rt.telemetry.attach(AGENT_EVENT, lambda *e: events.append(e))
        with pytest.raises(StartError):
            await start_agent(Worker, "bad", fail=True)
        assert statuses(events, "bad") == ["registered", "starting", "failed"]
        assert rt.registry.lookup(agent_key("bad")) == []
        ref, down = await rt.spawn(Worker, "crashy", monitor=True)
        with pytest.raises(ActorDead, match="boom"):
            await ref.call("crash")
        await down.wait(5.0)
        assert statuses(events, "crashy")[-2:] == ["stopping", "failed"]


async def test_find_agents_by_capability_and_status_least_loaded_first() -> None:
    class Scorer(Agent):
        capabilities = frozenset({"score"})

    async with Runtime():
        a = await start_agent(Worker, "a")
        b = await start_agent(Worker, "b")
        await start_agent(Scorer, "s", capabilities={"score", "train"})
        await b.call(("load", 0.5))
        await a.call(("load", 2.0))
        assert [i.meta.name for i in find_agents(capability="train")] == ["s", "b", "a"]
        assert [i.meta.name for i in find_agents(capability="score")] == ["s"]
        assert [i.meta.name for i in find_agents(status="running")] == ["s", "b", "a"]
        assert find_agents(capability="nothing") == []
        with pytest.raises(AgentError, match="status must be one of"):
            find_agents(status="sleeping")
        refused = await a.call(("load", -1))
        assert isinstance(refused, AgentError) and "load must be a number >= 0" in str(refused)


async def test_bad_names_and_capabilities_are_clear_errors() -> None:
    async with Runtime() as rt:
        with pytest.raises(StartError) as info:
            await start_agent(Worker, "")
        assert "an agent's name must be a non-empty str" in str(info.value.__cause__)
        with pytest.raises(StartError) as info:
            await start_agent(Worker, "x", capabilities="train")
        assert "capabilities must be a collection of names" in str(info.value.__cause__)
        await start_agent(Worker, "dup")
        with pytest.raises(Exception, match="dup"):
            await start_agent(Worker, "dup")
        with pytest.raises(AgentError, match="takes an Agent subclass"):
            await start_agent(DynamicSupervisor, "nope")  # type: ignore[arg-type]
        assert len(find_agents()) == 1 and rt.registry.lookup(agent_key("x")) == []


async def test_quotas_max_children_and_a_bounded_mailbox() -> None:
    async with Runtime() as rt:
        boss = await start_agent(Worker, "boss", max_children=2)
        kids = [await boss.call(("child", f"kid-{i}")) for i in range(2)]
        refused = await boss.call(("child", "kid-2"))
        assert isinstance(refused, AgentQuotaError)
        assert "agent 'boss' already runs max_children=2 sub-agents" in str(refused)
        assert {i.meta.name for i in find_agents()} == {"boss", "kid-0", "kid-1"}
        await boss.stop()  # its sub-agents go with it
        await until(lambda: not any(k.is_alive for k in kids), timeout=5.0)
        small = await start_agent(Worker, "small", mailbox_size=4)
        info = rt.info(small)
        assert info is not None and info["mailbox"].capacity == 4


async def test_agents_under_an_agent_supervisor_stop_cleanly() -> None:
    async with Runtime():
        sup = await DynamicSupervisor.start(max_children=10, name="agents")
        log: list[str] = []
        ref = await start_agent(Worker, "managed", supervisor="agents", log=log)
        assert find_agents(status="running")[0].ref == ref
        await sup.stop()
        assert log[-1].startswith("stop stopping") and not ref.is_alive
        with pytest.raises(ActorDead):
            await ref.call("status")
        assert current_runtime().registry.lookup(agent_key("managed")) == []

"""Tree dump: ids, pids, restart counts and mailbox lengths of a live tree, as text,
plain data and a rich tree."""

from __future__ import annotations

import io
from typing import Any

import anyio
import pytest
from rich.console import Console

from foundation import Actor, ActorDead, ActorRef, Caller, NoReply, Runtime, codec, telemetry
from foundation.telemetry import Capture
from supervision import (
    DynamicSupervisor,
    Supervisor,
    TreeNode,
    child_spec,
    format_tree,
    tree,
    tree_renderable,
)

pytestmark = pytest.mark.anyio


class Worker(Actor):
    """Crashes on request; ``hold`` answers, then blocks its handler on a gate so the
    messages sent afterwards wait in its mailbox."""

    async def init(self, gate: anyio.Event | None = None) -> None:
        self.gate = gate

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == "crash":
            raise RuntimeError("injected")
        if request == "hold" and self.gate is not None:
            caller.reply("held")
            await self.gate.wait()
            return NoReply
        return "ok"

    async def handle_cast(self, msg: Any) -> None:
        pass


async def start_shop(gate: anyio.Event | None = None) -> ActorRef:
    """shop (one_for_one) -> db, ingest (rest_for_one: reader, parser), jobs (dynamic)."""
    ingest = Supervisor.child_spec(
        [child_spec(Worker, id="reader"), child_spec(Worker, id="parser")],
        id="ingest",
        strategy="rest_for_one",
    )
    jobs = DynamicSupervisor.child_spec(id="jobs", name="jobs")
    sup = await Supervisor.start(
        [child_spec(Worker, gate, id="db"), ingest, jobs], name="shop", max_restarts=10
    )
    for _ in range(2):
        await DynamicSupervisor.start_child("jobs", child_spec(Worker, id="job"))
    return sup


async def child(sup: Any, child_id: Any) -> ActorRef:
    for info in await Supervisor.which_children(sup):
        if info.id == child_id:
            assert info.ref is not None
            return info.ref
    raise LookupError(child_id)


async def crash(events: Capture, sup: Any, child_id: str, restarts: int) -> None:
    """Crash a child and wait until its supervisor restarted it (its ``restarts``-th)."""
    ref = await child(sup, child_id)
    with pytest.raises(ActorDead):
        await ref.call("crash")
    await events.wait(
        "supervision.child.restart",
        match=lambda e: e.metadata["id"] == child_id and e.measurements["restarts"] == restarts,
    )


async def test_the_dump_of_a_three_level_tree_has_its_shape_ids_and_restart_counts(
    runtime: Runtime,
) -> None:
    sup = await start_shop()
    async with telemetry.capture("supervision") as events:
        ingest = await child(sup, "ingest")
        await crash(events, ingest, "reader", 1)  # rest_for_one: the parser restarts too
        await crash(events, ingest, "parser", 2)
        await crash(events, sup, "db", 1)
    node = await tree("shop")
    top = ("shop", "supervisor", "Supervisor", "one_for_one")
    assert (node.id, node.kind, node.actor, node.strategy) == top
    assert node.pid == repr(sup.pid) and node.restarts == 0 and node.status == "running"
    assert [c.id for c in node.children] == ["db", "ingest", "jobs"]
    db, ingest_node, jobs = node.children
    assert (db.kind, db.actor, db.restarts, db.mailbox) == ("worker", "Worker", 1, 0)
    assert db.strategy is None
    assert db.pid == repr((await child(sup, "db")).pid)
    assert (ingest_node.kind, ingest_node.strategy) == ("supervisor", "rest_for_one")
    assert ingest_node.restarts == 0
    assert [(c.id, c.restarts) for c in ingest_node.children] == [("reader", 1), ("parser", 2)]
    assert (jobs.actor, jobs.strategy) == ("DynamicSupervisor", "one_for_one")
    assert [(c.id, c.actor, c.restarts) for c in jobs.children] == [("job", "Worker", 0)] * 2
    assert len(node.walk()) == 8
    assert all(n.children == () for n in node.walk() if n.kind == "worker")


async def test_the_dump_shows_how_many_messages_wait_in_a_mailbox(runtime: Runtime) -> None:
    gate = anyio.Event()
    sup = await start_shop(gate)
    db = await child(sup, "db")
    assert await db.call("hold") == "held"  # its handler now waits on the gate
    for i in range(3):
        db.cast(i)
    node = await tree(sup)
    assert node.children[0].mailbox == 3
    assert "mailbox=3" in format_tree(node).splitlines()[1]
    gate.set()


async def test_the_dict_is_plain_data_that_the_codec_encodes(runtime: Runtime) -> None:
    await start_shop()
    data = (await tree("shop")).to_dict()
    assert codec.decode(codec.encode(data)) == data
    assert data["id"] == "shop" and data["kind"] == "supervisor"
    assert [c["id"] for c in data["children"]] == ["db", "ingest", "jobs"]
    assert data["children"][0] == {
        "id": "db",
        "pid": data["children"][0]["pid"],
        "actor": "Worker",
        "kind": "worker",
        "status": "running",
        "restarts": 0,
        "mailbox": 0,
        "strategy": None,
        "children": [],
    }

    def plain(value: Any) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or (isinstance(value, (str, int)) and not isinstance(value, bool))

    assert plain(data)


async def test_ids_that_are_not_str_or_int_become_their_repr_in_the_dict(
    runtime: Runtime,
) -> None:
    sup = await Supervisor.start([child_spec(Worker, id=("pool", 1))])
    data = (await tree(sup)).to_dict()
    assert data["id"] == repr(sup.pid)  # an unnamed root is known by its pid
    assert data["children"][0]["id"] == "('pool', 1)"


async def test_the_text_names_each_id_once_in_start_order_with_box_drawing(
    runtime: Runtime,
) -> None:
    sup = await start_shop()
    async with telemetry.capture("supervision") as events:
        await crash(events, await child(sup, "ingest"), "parser", 1)
    node = await tree(sup)
    lines = format_tree(node).splitlines()
    pids = {n.id: n.pid for n in node.walk()}
    assert lines[0] == f"shop  {pids['shop']} Supervisor one_for_one"
    assert lines[1] == f"├── db  {pids['db']} Worker  restarts=0  mailbox=0"
    assert lines[2] == f"├── ingest  {pids['ingest']} Supervisor rest_for_one  restarts=0"
    assert lines[3] == f"│   ├── reader  {pids['reader']} Worker  restarts=0  mailbox=0"
    assert lines[4] == f"│   └── parser  {pids['parser']} Worker  restarts=1  mailbox=0"
    assert lines[5] == f"└── jobs  {pids['jobs']} DynamicSupervisor one_for_one  restarts=0"
    assert lines[6].startswith("    ├── job  <") and lines[7].startswith("    └── job  <")
    assert len(lines) == 8
    firsts = [line.lstrip("│├└─ ").split()[0] for line in lines]
    assert firsts == ["shop", "db", "ingest", "reader", "parser", "jobs", "job", "job"]


async def test_a_child_that_is_not_running_is_shown_without_a_pid(runtime: Runtime) -> None:
    sup = await start_shop()
    await Supervisor.terminate_child(sup, "db")
    node = await tree(sup)
    db = node.children[0]
    assert (db.pid, db.actor, db.status, db.mailbox) == (None, None, "undefined", None)
    assert format_tree(node).splitlines()[1] == "├── db  (undefined)  restarts=0"


async def test_the_rich_tree_renders_every_id_and_restart_count(runtime: Runtime) -> None:
    sup = await start_shop()
    async with telemetry.capture("supervision") as events:
        await crash(events, sup, "db", 1)
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(tree_renderable(await tree(sup)))
    text = out.getvalue()
    for ident in ("shop", "db", "ingest", "reader", "parser", "jobs", "job"):
        assert ident in text
    assert "restarts=1" in text and "one_for_one" in text


async def test_a_tree_of_an_unknown_name_raises_actor_dead(runtime: Runtime) -> None:
    with pytest.raises(ActorDead):
        await tree("nobody")


def test_a_tree_node_is_frozen() -> None:
    node = TreeNode("w", "<0.1>", "Worker", "worker", "running", 0, 0)
    with pytest.raises(AttributeError):
        node.restarts = 1  # type: ignore[misc]

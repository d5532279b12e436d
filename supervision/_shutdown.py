"""The shutdown protocol of one child, as Erlang's ``supervisor:shutdown/2``.

The supervisor monitors the child, unlinks it (so its exit does not come back as an
``Exit`` message) and sends it the ``"shutdown"`` exit signal. A child that does not
trap exits dies at once; a trapping one runs ``terminate("shutdown")``. A child still
alive after its ``shutdown`` seconds is a "naughty child": it trapped the signal and
ignores it, or holds the loop in a long handler; it is killed. ``"brutal_kill"`` kills
at once and ``"infinity"`` (subtrees) waits as long as the subtree needs.
"""

from __future__ import annotations

from typing import Any

from foundation import Actor, ActorRef


async def shutdown_child(sup: Actor, ref: ActorRef, shutdown: Any) -> Any:
    """Stop ``ref`` per its ``shutdown`` value; return its exit reason."""
    if not ref.is_alive:
        return "noproc"
    mon = sup.runtime.monitor(ref)
    sup.unlink(ref)
    if shutdown == "brutal_kill":
        sup.exit(ref, "kill")
        return (await mon.wait(None)).reason
    sup.exit(ref, "shutdown")
    if shutdown == "infinity":
        return (await mon.wait(None)).reason
    try:
        return (await mon.wait(shutdown)).reason
    except TimeoutError:
        sup.exit(ref, "kill")
        return (await mon.wait(None)).reason


async def shutdown_all(sup: Actor, children: list[tuple[ActorRef, Any]]) -> list[Any]:
    """Stop many children at once (a dynamic supervisor's children are peers with no
    order): signal them all, then wait for each until its own deadline."""
    rt = sup.runtime
    now = rt.clock.now()
    pending = []
    for ref, shutdown in children:
        if not ref.is_alive:
            continue
        mon = rt.monitor(ref)
        sup.unlink(ref)
        if shutdown == "brutal_kill":
            sup.exit(ref, "kill")
            deadline = None
        else:
            sup.exit(ref, "shutdown")
            deadline = None if shutdown == "infinity" else now + shutdown
        pending.append((ref, mon, deadline))
    reasons = []
    for ref, mon, deadline in pending:
        if deadline is not None:
            remaining = deadline - rt.clock.now()
            try:
                if remaining > 0:
                    reasons.append((await mon.wait(remaining)).reason)
                    continue
                if mon.down is not None:
                    reasons.append(mon.down.reason)
                    continue
            except TimeoutError:
                pass
            sup.exit(ref, "kill")
        reasons.append((await mon.wait(None)).reason)
    return reasons

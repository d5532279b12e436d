"""Test actors shared by the supervisor test files: crashes and failing restarts."""

from __future__ import annotations

from typing import Any

from foundation import Actor


class Boom(Exception):
    """The crash of every failing test actor."""


class Flaky(Actor):
    """Starts fail on the start numbers in ``plan["fail"]``; ``plan["starts"]`` counts."""

    async def init(self, plan: dict[str, Any]) -> None:
        plan["starts"] += 1
        if plan["starts"] in plan["fail"]:
            raise Boom(f"start {plan['starts']}")

    async def handle_cast(self, msg: Any) -> None:
        raise Boom("crash")


class Gated(Actor):
    """The second start blocks on ``plan["gate"]`` and then fails; the others work."""

    async def init(self, plan: dict[str, Any]) -> None:
        plan["starts"] += 1
        if plan["starts"] == 2:
            plan["entered"].set()
            await plan["gate"].wait()
            raise Boom("second start")

    async def handle_cast(self, msg: Any) -> None:
        raise Boom("crash")

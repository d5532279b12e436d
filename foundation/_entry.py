"""``foundation.run``: the synchronous entry point into a fresh runtime."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from ._clock import Clock
from ._runtime import Runtime

T = TypeVar("T")


def run(
    main: Callable[..., Awaitable[T]],
    *args: Any,
    backend: str = "asyncio",
    clock: Clock | None = None,
    **runtime_options: Any,
) -> T:
    """Run ``main(*args)`` inside a fresh ``Runtime`` on ``backend``; return its result."""

    async def _entry() -> T:
        async with Runtime(clock=clock, **runtime_options):
            return await main(*args)

    try:
        return anyio.run(_entry, backend=backend)
    except LookupError as exc:
        raise RuntimeError(
            f"unknown backend {backend!r}: use 'asyncio' or 'trio' "
            "(install trio with: pip install trio)"
        ) from exc


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

    _check_backend(backend)
    return anyio.run(_entry, backend=backend)


def _check_backend(backend: str) -> None:
    """Refuse an unknown or missing backend up front: a ``LookupError`` raised by
    ``main`` itself must reach the caller as it is, never as "unknown backend"."""
    if backend == "asyncio":
        return
    if backend == "trio":
        try:
            import trio  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(
                "the trio backend needs trio (install it with: pip install trio)"
            ) from exc
        return
    raise RuntimeError(f"unknown backend {backend!r}: use 'asyncio' or 'trio'")


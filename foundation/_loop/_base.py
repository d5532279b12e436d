"""The backend protocol: the handful of primitives the kernel needs from an event loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol


class KernelFuture(Protocol):
    """A one-shot result slot that exactly one task awaits (an ``asyncio.Future`` subset)."""

    def done(self) -> bool: ...

    def set_result(self, value: Any) -> None: ...

    def set_exception(self, exc: BaseException) -> None: ...

    def __await__(self) -> Any: ...


class KernelBackend(Protocol):
    """What the runtime asks of an event loop; implemented per anyio backend."""

    name: str
    cancelled_exc: type[BaseException]

    def task_scope(self) -> AbstractAsyncContextManager[None]:
        """Open the scope that owns every kernel task of one runtime."""
        ...

    def new_future(self) -> KernelFuture: ...

    def start(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> Any:
        """Start ``fn(*args)`` as a task of the runtime; return a handle for ``cancel``."""
        ...

    def start_actor(self, proc: Any, serve: Callable[[Any], Coroutine[Any, Any, None]]) -> None:
        """Start ``serve(proc)`` as a task that ``cancel(proc.cancel_handle)`` kills.

        ``serve`` catches ``cancelled_exc`` itself and runs the exit protocol.
        """
        ...

    def cancel(self, handle: Any) -> None: ...

    def checkpoint(self) -> Awaitable[None]: ...

    async def wait_all_blocked(self, cushion: float = 0.0) -> None:
        """Return once no other task is runnable, and has stayed so ``cushion`` real
        seconds (the idleness test of ``wait_idle`` and the autojump clock)."""
        ...

    async def wait_future_until(self, fut: KernelFuture, delay: float | None) -> None:
        """Wait for ``fut`` or until ``delay`` real seconds passed (``None``: no limit)."""
        ...

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None: ...

    async def aclose(self) -> None:
        """Cancel every task still running in the scope and wait for them."""
        ...

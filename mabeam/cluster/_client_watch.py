"""Watching jobs: ``JobEvent`` records and the ``JobWatch`` iterator of ``Client.watch``.

A watch sends one WATCH per 10,000 job ids (the connection actor re-sends them until
the first EVENT, and again after a coordinator restart or a long silence) and reads
the EVENT frames from one stream. The coordinator states each job's current state
first, then every change and progress report; a restated state (same state, same
attempt) is dropped here, and the watch ends once every job is terminal.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from foundation import ActorDead, RuntimeClosed

from . import protocol
from ._client_specs import encoded
from ._limits import MAX_IDS

if TYPE_CHECKING:
    from .client import Client

__all__ = ("JobEvent", "JobWatch")


@dataclass(frozen=True, slots=True)
class JobEvent:
    """A job changed state (``step`` None) or reported progress (``step``, ``metrics``).

    ``value`` is the result on ``succeeded``; ``error`` the cause on ``failed`` and
    ``cancelled``.
    """

    job_id: str
    state: str
    attempt: int = 0
    node_id: str | None = None
    step: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    value: Any = None
    error: str | None = None

    @property
    def terminal(self) -> bool:
        """Whether the job is finished (succeeded, failed or cancelled)."""
        return self.step is None and self.state in protocol.TERMINAL_STATES

    @property
    def is_progress(self) -> bool:
        """Whether this is a progress report rather than a change of state."""
        return self.step is not None

    @classmethod
    def from_frame(cls, frame: protocol.Event) -> JobEvent:
        """The event an EVENT frame carries."""
        return cls(
            frame.job_id,
            frame.state,
            frame.attempt,
            frame.node_id,
            frame.step,
            dict(frame.metrics),
            frame.value,
            frame.error,
        )


class JobWatch:
    """The async iterator ``Client.watch`` returns; also an async context manager that
    stops watching on exit (``aclose``)."""

    def __init__(
        self,
        client: Client,
        job_ids: tuple[str, ...] | None,
        sweep_id: str | None,
        timeout: float | None,
    ) -> None:
        self._client = client
        self._job_ids = job_ids
        self._sweep_id = sweep_id
        self._timeout = timeout
        self._receive: MemoryObjectReceiveStream[Any] | None = None
        self._gid: str | None = None
        self._remaining: set[str] = set()
        self._last: dict[str, tuple[str, int]] = {}
        self._last_report: dict[str, tuple[int, int, list[tuple[str, Any]]]] = {}
        self._finished: set[str] = set()
        self._closed = False

    @property
    def job_ids(self) -> tuple[str, ...]:
        """The watched jobs (resolved from the sweep id on the first ``__anext__``)."""
        return self._job_ids or ()

    async def _open(self) -> MemoryObjectReceiveStream[Any]:
        client = self._client
        if self._job_ids is None:
            assert self._sweep_id is not None
            self._job_ids = await client._sweep_jobs(self._sweep_id)
        ids = list(dict.fromkeys(self._job_ids))
        self._remaining = set(ids)
        frames = []
        for start in range(0, len(ids), MAX_IDS):
            batch = tuple(ids[start : start + MAX_IDS])
            frame = protocol.Watch(request_id=client._request_id(), job_ids=batch)
            frames.append((frame.request_id, encoded(frame)))
        if not frames:
            self._closed = True
            raise StopAsyncIteration
        self._gid = frames[0][0]
        receive: MemoryObjectReceiveStream[Any] = await client._call(
            ("watch", frames, self._timeout)
        )
        self._receive = receive
        return receive

    def __aiter__(self) -> JobWatch:
        return self

    async def __anext__(self) -> JobEvent:
        if self._closed:
            raise StopAsyncIteration
        receive = self._receive if self._receive is not None else await self._open()
        while self._remaining:
            try:
                item = await receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                break
            if isinstance(item, BaseException):
                await self.aclose()
                raise item
            event = self._accept(JobEvent.from_frame(item))
            if event is not None:
                return event
        await self.aclose()
        raise StopAsyncIteration

    def _accept(self, event: JobEvent) -> JobEvent | None:
        job = event.job_id
        if job not in self._remaining:
            return None  # not watched here, or already finished
        if event.step is None:
            key = (event.state, event.attempt)
            if self._last.get(job) == key:
                return None  # restated after a re-sent WATCH
            self._last[job] = key
            if event.terminal:
                self._remaining.discard(job)
        else:
            report = (event.attempt, event.step, sorted(event.metrics.items()))
            if self._last_report.get(job) == report:
                return None  # the same report through a second WATCH of this job
            self._last_report[job] = report
        return event

    async def aclose(self) -> None:
        """Stop watching (the coordinator's events for it are dropped from now on)."""
        if self._closed:
            return
        self._closed = True
        if self._gid is not None:
            with contextlib.suppress(ActorDead, RuntimeClosed):
                self._client._conn.cast(("unwatch", self._gid))
        if self._receive is not None:
            self._receive.close()

    async def __aenter__(self) -> JobWatch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

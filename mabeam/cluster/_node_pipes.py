"""The two pipe actors of a pool worker: one reads its stdout, one finishes writes.

Both wait on an fd with ``anyio.wait_readable`` / ``wait_writable``, so their owner
(``PoolWorker``) never blocks in a handler: its timers and stop requests are served
while a task holds the worker's pipes full. Spawn them linked; the owner kills them
(``_node_link.stop_reader``) before it closes the fds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Final

import anyio

from foundation import Actor, ActorRef

__all__ = ("Chunk", "Eof", "Output", "PipeReader", "PipeWriter", "Written")

_READ_CHUNK: Final = 1 << 16
_READ: Final = "read"


@dataclass(frozen=True, slots=True)
class Output:
    """PipeReader -> owner: bytes read (everything available at one wake-up)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Eof:
    """PipeReader -> owner: the pipe reached its end (the writer is gone)."""


@dataclass(frozen=True, slots=True)
class Written:
    """PipeWriter -> owner: ``size`` bytes handed over are out (or the pipe broke)."""

    size: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """Owner -> PipeWriter: bytes to write after those handed over before."""

    data: bytes


class PipeReader(Actor):
    """Reads a pipe for its owner: casts ``Output`` chunks, then ``Eof``, then exits."""

    async def init(self, fd: int, owner: ActorRef) -> None:
        self._fd = fd
        self._owner = owner
        self.ref.cast(_READ)

    async def handle_cast(self, msg: Any) -> None:
        fd, owner = self._fd, self._owner
        while True:
            await anyio.wait_readable(fd)
            chunks: list[bytes] = []
            eof = False
            while True:
                try:
                    data = os.read(fd, _READ_CHUNK)
                except BlockingIOError:
                    break
                except OSError:
                    eof = True
                    break
                if not data:
                    eof = True
                    break
                chunks.append(data)
            if chunks:
                owner.cast(Output(b"".join(chunks)))
            if eof:
                owner.cast(Eof())
                self.stop()
                return


class PipeWriter(Actor):
    """Finishes writes its owner could not complete without blocking, in order, and
    casts ``Written`` for each; a broken pipe drops the rest (the reader sees the end)."""

    async def init(self, fd: int, owner: ActorRef) -> None:
        self._fd = fd
        self._owner = owner

    async def handle_cast(self, msg: Any) -> None:
        if type(msg) is not Chunk:
            raise ValueError(f"PipeWriter takes bytes, got {msg!r}")
        view = memoryview(msg.data)
        while view:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await anyio.wait_writable(self._fd)
            except OSError:
                break
        self._owner.cast(Written(len(msg.data)))

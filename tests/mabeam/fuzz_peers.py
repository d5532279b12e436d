"""Streams of fuzzed frames into a live coordinator and a live node agent, with the
bookkeeping that says exactly how many rejects each must count.

- ``CoordinatorStream``: one long-lived DEALER that sends every payload it is given to
  a coordinator. It classifies each (``frame_strategies.coordinator_refuses``) and puts
  a good frame (a HEARTBEAT) in front of the one that would be the
  ``MAX_CONSECUTIVE_BAD_FRAMES``-th bad frame in a row, so the peer is never quarantined
  and every frame is decoded, not dropped unread. A frame over ``MAX_FRAME_BYTES`` goes
  out on a throwaway DEALER instead (libzmq drops it and resets that connection; the
  coordinator's code never sees it), and a valid SUBMIT is sent with one fixed
  idempotency key, so only the first creates jobs (the others are refused as
  conflicts: the store does not grow with the run). ``sync`` sends a STATUS and waits
  for its answer, so everything sent before it was handled.
- ``NodeStream``: a fake coordinator (a real ROUTER on 127.0.0.1) for one node. It
  answers the node's HELLO and HEARTBEATs, ACKs every RESULT, and sends the payloads
  it is given (``node_refuses`` counts the bad ones; a valid BYE is left out, as it
  makes the node reconnect and drop the rest of the batch unread). ``sync`` sends a
  DISPATCH of an entrypoint off the node's allow-list and waits for its refused RESULT.
  After a frame over the limit (the node's libzmq resets the connection, and the
  DEALER reconnects by itself) the sync is retried until the node answers again.
- ``feed``: hypothesis draws batches of ``mixed`` payloads (and now and then one
  ``oversized`` frame, or a frame sent as a two-part message) into a stream until it
  has sent ``total`` frames.
- ``TargetProcess``: fuzz_target.py in a subprocess, for the long runs: its RSS is its
  own, and it reports its statistics on request.

Every wait polls a real socket or pipe with a deadline; nothing sleeps.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil  # type: ignore[import-untyped]
import zmq
from frame_strategies import (
    coordinator_refuses,
    decoded,
    mixed,
    node_refuses,
    payloads,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mabeam.cluster import protocol as p
from mabeam.cluster._sockets import configure_router

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WAIT_S = 10.0
MIB = 1024 * 1024
_FILLER = p.encode(p.Heartbeat())
_SUBMIT_KEY = "fuzz-one-key"
NOT_ALLOWED = "fuzz.sync:not_on_the_allow_list"
"""The entrypoint of the sync DISPATCH: a node started with ``allow`` not matching it
refuses it at once (no process is started)."""


class Stream(Protocol):
    """What ``feed`` drives: a stream that sends payloads and can wait for them."""

    sent: int

    def send(self, payload: bytes, *, parts: int = 1) -> None: ...

    def sync(self) -> None: ...

    def keepalive(self) -> None: ...


# -- into a coordinator ------------------------------------------------------------------


@dataclass
class CoordinatorStream:
    """One DEALER streaming payloads into a coordinator; see the module docstring."""

    ctx: zmq.Context[Any]
    endpoint: str
    name: str = "~fuzz~stream"
    sent: int = 0  # messages that reached the coordinator's code (fillers and syncs too)
    refused: int = 0  # of them, those it must count as rejects
    over_limit: int = 0  # over MAX_FRAME_BYTES: dropped by libzmq, on throwaway peers
    fillers: int = 0
    rekeyed: int = 0
    _run: int = 0
    _probes: Any = field(default_factory=itertools.count)
    sock: Any = None

    def __post_init__(self) -> None:
        self.peer = self.name.encode()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTING_ID, self.peer)
        self.sock.connect(self.endpoint)

    def send(self, payload: bytes, *, parts: int = 1) -> None:
        if len(payload) > p.MAX_FRAME_BYTES:
            self._over_limit(payload)
            return
        payload = self._rekeyed(payload)
        bad = parts != 1 or coordinator_refuses(payload, self.peer)
        if bad and self._run == p.MAX_CONSECUTIVE_BAD_FRAMES - 1:
            self.sock.send(_FILLER)  # a good frame ends the run: no quarantine
            self.sent, self.fillers, self._run = self.sent + 1, self.fillers + 1, 0
        self.sock.send_multipart([payload, *([b""] * (parts - 1))])
        self.sent += 1
        self.refused += bad
        self._run = self._run + 1 if bad else 0

    def _rekeyed(self, payload: bytes) -> bytes:
        frame = decoded(payload)
        if not isinstance(frame, p.Submit):
            return payload
        self.rekeyed += 1
        return p.encode(p.Submit(frame.request_id, _SUBMIT_KEY, frame.specs, frame.sweep_id))

    def _over_limit(self, payload: bytes) -> None:
        """Send it from a throwaway DEALER and wait for libzmq to reset that connection."""
        sock = self.ctx.socket(zmq.DEALER)
        monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self.endpoint)
            sock.send(payload)
            if not monitor.poll(int(WAIT_S * 1000)):
                raise AssertionError(
                    "the coordinator kept a connection that sent a frame over MAXMSGSIZE"
                )
            self.over_limit += 1
        finally:
            sock.disable_monitor()
            monitor.close(linger=0)
            sock.close(linger=0)

    def sync(self, timeout: float = WAIT_S) -> None:
        """Send a STATUS (for a job that does not exist) and wait for its answer."""
        request_id = f"probe-{next(self._probes)}"
        self.sock.send(p.encode(p.Status(request_id, ("probe-no-such-job",))))
        self.sent, self._run = self.sent + 1, 0
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self.sock.poll(int(left * 1000) + 1):
                break
            frame = p.decode(self.sock.recv())  # what a coordinator sends is always valid
            if isinstance(frame, p.Error) and frame.in_reply_to == request_id:
                assert frame.code == "unknown_job", frame
                return
        raise AssertionError(f"no answer to STATUS {request_id} within {timeout} s")

    def keepalive(self) -> None:
        """Nothing to do: the coordinator drops no client for silence alone."""

    def close(self) -> None:
        self.sock.close(linger=0)


# -- into a node -------------------------------------------------------------------------


@dataclass
class NodeStream:
    """A fake coordinator streaming payloads into one node; see the module docstring."""

    ctx: zmq.Context[Any]
    node_id: str = "n1"
    sent: int = 0  # messages the node's code received (syncs included)
    refused: int = 0
    over_limit: int = 0
    skipped_byes: int = 0
    hellos: int = 0
    auto_ack: bool = True  # ACK each RESULT as it arrives (as a coordinator would)
    results: dict[str, p.Result] = field(default_factory=dict)
    _syncs: Any = field(default_factory=itertools.count)
    sock: Any = None

    def __post_init__(self) -> None:
        self.sock = self.ctx.socket(zmq.ROUTER)
        configure_router(self.sock)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.peer = self.node_id.encode()

    def handshake(self, timeout: float = 30.0) -> None:
        """Wait for the node's HELLO (it is answered by ``pump``)."""
        self.pump(lambda frame: isinstance(frame, p.Hello), timeout)

    def pump(self, until: Callable[[p.Frame], bool], timeout: float = WAIT_S) -> p.Frame:
        """Handle what the node sends until a frame satisfies ``until``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if not self.sock.poll(int(left * 1000) + 1 if left > 0 else 0):
                break
            peer, payload = self.sock.recv_multipart()
            assert peer.partition(b"#")[0] == self.node_id.encode(), peer
            self.peer = peer  # NODE_ID#RANDOM: new on each of the node's connections
            for frame in p.decode_batch(payload):  # a node only sends valid frames
                assert not isinstance(frame, p.ProtocolError), frame
                if isinstance(frame, p.Hello | p.Heartbeat):
                    self.hellos += isinstance(frame, p.Hello)
                    self._send([_FILLER])  # answered: the node counts as connected
                elif isinstance(frame, p.Result):
                    self.results[frame.job_id] = frame
                    if self.auto_ack:
                        self._send([p.encode(p.Ack(frame.job_id, frame.lease))])
                if until(frame):
                    return frame
        raise AssertionError(f"the node sent nothing awaited within {timeout} s")

    def send(self, payload: bytes, *, parts: int = 1) -> None:
        if len(payload) > p.MAX_FRAME_BYTES:
            self._send([payload])
            self.over_limit += 1
            self.resync()
            return
        if isinstance(decoded(payload), p.Bye):
            self.skipped_byes += 1
            return
        self._send([payload, *([b""] * (parts - 1))])
        self.sent += 1
        self.refused += parts != 1 or node_refuses(payload)

    def send_frame(self, frame: p.Frame) -> None:
        self.send(p.encode(frame))

    def _send(self, parts: list[bytes], timeout: float = WAIT_S) -> bool:
        """Send to the node; False when libzmq knows no connection to it now."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.send_multipart([self.peer, *parts], flags=zmq.NOBLOCK)
                return True
            except zmq.Again:  # its pipe is full: read what it sent meanwhile
                if time.monotonic() > deadline:
                    raise AssertionError("the node stopped reading") from None
                self.pump(lambda frame: True, timeout=0.05)
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EHOSTUNREACH:
                    return False
                raise

    def sync(self, timeout: float = WAIT_S) -> p.Result:
        """A DISPATCH the node refuses at once; its RESULT means all before it was read."""
        job_id = f"sync-{next(self._syncs)}"
        dispatch = p.Dispatch(job_id, 1, f"L-{job_id}", NOT_ALLOWED)
        assert self._send([p.encode(dispatch)]), "the node is not connected"
        self.sent += 1
        result = self.pump(lambda f: isinstance(f, p.Result) and f.job_id == job_id, timeout)
        assert isinstance(result, p.Result) and result.error_kind in ("refused", "handed_back")
        return result

    def serve(self, seconds: float) -> None:
        """Handle what the node sends for ``seconds`` (waiting on the socket)."""
        with contextlib.suppress(AssertionError):
            self.pump(lambda f: False, seconds)

    def until(self, condition: Callable[[], bool], timeout: float = WAIT_S) -> None:
        """Serve the node until ``condition()`` holds (checked every 20 ms at most)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"the node's state did not settle within {timeout} s")
            self.serve(0.02)

    def keepalive(self) -> None:
        """A HEARTBEAT (any frame tells the node its coordinator is alive), and what the
        node sent meanwhile handled: called while hypothesis draws the next batch."""
        self._send([_FILLER])
        self.serve(0.0)

    def resync(self, timeout: float = 20.0) -> None:
        """After a connection reset: DISPATCH again until the node answers one."""
        deadline = time.monotonic() + timeout
        tried: set[str] = set()
        while time.monotonic() < deadline:
            job_id = f"sync-{next(self._syncs)}"
            if not self._send([p.encode(p.Dispatch(job_id, 1, f"L-{job_id}", NOT_ALLOWED))]):
                self.serve(0.05)  # waits on the socket
                continue
            tried.add(job_id)
            with contextlib.suppress(AssertionError):
                self.pump(lambda f: isinstance(f, p.Result) and f.job_id in tried, 1.0)
                self.sent += 1  # (one lost on the dying connection is not counted)
                return
        raise AssertionError(f"the node did not come back within {timeout} s")

    def close(self) -> None:
        self.sock.close(linger=0)


# -- hypothesis drives a stream ----------------------------------------------------------

_CHECKS = list(HealthCheck)
oversized_frames = st.sampled_from(p.FRAME_CLASSES).flatmap(lambda c: payloads(c, "oversized"))


def feed(
    stream: Stream,
    total: int,
    *,
    batch: tuple[int, int] = (10, 30),
    oversized_every: int = 0,
    multipart_every: int = 0,
    on_sync: Callable[[], None] | None = None,
) -> int:
    """Send hypothesis-drawn batches of ``mixed`` payloads until ``total`` were sent;
    each batch ends with ``stream.sync()``. About one batch in ``oversized_every``
    carries an ``oversized`` frame too, one in ``multipart_every`` sends its first
    payload as a two-part message. Returns the batches sent."""
    batches = 0
    draws = st.lists(mixed, min_size=batch[0], max_size=batch[1])

    def now_and_then(data: st.DataObject, every: int) -> bool:
        # Not st.integers(1, every) == 1: hypothesis draws bounds far more often.
        return every > 0 and data.draw(st.randoms(use_true_random=True)).random() * every < 1

    @settings(max_examples=50, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=_CHECKS)  # fmt: skip
    @given(data=st.data())
    def one_batch(data: st.DataObject) -> None:
        nonlocal batches
        stream.keepalive()
        frames = data.draw(draws)
        parts = 2 if now_and_then(data, multipart_every) else 1
        big = data.draw(oversized_frames) if now_and_then(data, oversized_every) else None
        if stream.sent >= total:
            return  # the rest of this run of examples is drawn, not sent
        for index, payload in enumerate(frames):
            stream.send(payload, parts=parts if index == 0 else 1)
        if big is not None:
            stream.send(big)
        stream.sync()
        batches += 1
        if on_sync is not None:
            on_sync()

    while stream.sent < total:
        one_batch()
    return batches


# -- a target in a process of its own ---------------------------------------------------


class TargetProcess:
    """fuzz_target.py running a coordinator or a node; ``statistics()`` asks it."""

    def __init__(self, args: list[str], log: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE / "fuzz_target.py"), *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=HERE,
                env=env,
            )
        self.log = log
        self.ready = self._line(30.0)

    def _line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.proc.kill()
            tail = self.log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"fuzz_target.py gave no answer within {timeout} s:\n{tail}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def statistics(self) -> dict[str, Any]:
        """Its statistics now, with ``rss`` (bytes)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stats\n")
        self.proc.stdin.flush()
        return self._line(WAIT_S)

    def rss(self) -> int:
        rss: int = psutil.Process(self.proc.pid).memory_info().rss
        return rss

    def close(self, timeout: float = 30.0) -> int:
        """EOF on its stdin (it stops gracefully); killed if it does not in time."""
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()


LONG_RUN_FRAMES = 100_000
WARM_UP_FRAMES = 10_000


def long_run(stream: Stream, target: Any, *, oversized_every: int) -> tuple[list[int], float]:
    """Feed ``LONG_RUN_FRAMES`` to ``target`` (a ``fuzz_target.TargetProcess``): its RSS
    after ``WARM_UP_FRAMES`` and at the end, and the wall time of the feed."""
    rss: list[int] = []

    def sample() -> None:
        if not rss and stream.sent >= WARM_UP_FRAMES:
            rss.append(target.rss())

    started = time.monotonic()
    feed(stream, LONG_RUN_FRAMES, oversized_every=oversized_every, multipart_every=10,
         on_sync=sample)  # fmt: skip
    wall = time.monotonic() - started
    rss.append(target.rss())
    return rss, wall

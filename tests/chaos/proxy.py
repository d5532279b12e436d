"""A userspace TCP proxy between node agents and the coordinator that injects faults.

``ChaosProxy(upstream)`` listens on one 127.0.0.1 port per node (``listen(name)``) and
forwards every accepted connection to the coordinator's port over a fresh upstream
connection. One thread runs a ``selectors`` loop over all sockets; the test thread
changes the faults through methods that take effect in that loop.

Each direction's byte stream is cut into ZMTP 3 units (``ZmtpReader``): the 64-byte
greeting (passed through as it comes), then frames (a flags byte: MORE 0x01, LONG 0x02,
COMMAND 0x04; then a 1- or 8-byte length; then the body). A *message* is the data
frames up to one without MORE (NULL mechanism) or one CURVE ``MESSAGE`` command; every
other command (READY, HELLO, WELCOME, INITIATE, ...) is *control* and is never dropped
or duplicated. Under NULL a message's first frame is a mabeam msgpack frame, so the
proxy also knows its type (DISPATCH, RESULT, ...) and counts faults per type.

What each fault does at the protocol level (``Faults`` holds the current ones):

- ``delay``: every unit waits ``delay_s`` (plus up to ``jitter_s``) before it is
  written; order is kept per direction. Frames arrive late, heartbeats included, so a
  long enough delay looks like a silent peer.
- ``drop``: each message is lost with probability ``drop_p``; the connection is then
  reset (RST) by ``cut``. TCP never loses bytes in a live connection: losses come with
  its death, and libzmq reconnects the DEALER by itself right after, so the node agent
  may never learn that the connection changed.
- ``duplicate``: each message is written twice with probability ``dup_p`` (a resent
  frame). Under CURVE libzmq refuses the repeated nonce and drops the connection, so
  there it is a cut.
- ``cut``: both sockets of the pair are closed with RST (``SO_LINGER`` 0); whatever was
  queued or delayed in the proxy is lost.
- ``partition``: nothing is forwarded (held, in order) and new connections are accepted
  but not forwarded either; the connections stay open (half-open: neither side hears
  a FIN). On healing, what was held is delivered, as TCP's retransmissions would, to
  the connections that both ends still hold.
"""

from __future__ import annotations

import contextlib
import errno
import random
import selectors
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack

GREETING: Final = 64
MORE, LONG, COMMAND = 0x01, 0x02, 0x04
_READ_SIZE: Final = 256 * 1024
_MAX_PENDING: Final = 8 * 1024 * 1024  # stop reading a side whose bytes pile up here


@dataclass(frozen=True, slots=True)
class Unit:
    """Bytes that travel together: greeting bytes, one control command, one message."""

    data: bytes
    kind: str  # "greeting", "control" or "message"
    label: str = ""  # a NULL message's mabeam frame type, e.g. "DISPATCH"


class ZmtpReader:
    """Cuts one direction of a ZMTP 3 stream into ``Unit``s (see the module docstring)."""

    def __init__(self) -> None:
        self._greeting = bytearray()
        self._buf = bytearray()
        self._parts: list[bytes] = []
        self._first = b""  # the body of the message's first frame
        self.mechanism = ""

    def feed(self, data: bytes) -> list[Unit]:
        units: list[Unit] = []
        missing = GREETING - len(self._greeting)
        if missing > 0:
            head, data = data[:missing], data[missing:]
            if head:
                self._greeting += head
                units.append(Unit(bytes(head), "greeting"))
            if len(self._greeting) == GREETING:
                self.mechanism = (
                    bytes(self._greeting[12:32]).rstrip(b"\0").decode("ascii", "replace")
                )
        self._buf += data
        while (frame := self._frame()) is not None:
            flags, raw, body = frame
            if flags & COMMAND and not body.startswith(b"\x07MESSAGE"):
                units.append(Unit(raw, "control"))
            elif flags & COMMAND:  # a CURVE MESSAGE: one (encrypted) message
                units.append(Unit(raw, "message"))
            else:
                if not self._parts:
                    self._first = body
                self._parts.append(raw)
                if not flags & MORE:
                    label = _label(self._first) if self.mechanism == "NULL" else ""
                    units.append(Unit(b"".join(self._parts), "message", label))
                    self._parts = []
        return units

    def _frame(self) -> tuple[int, bytes, bytes] | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        flags = buf[0]
        if flags & LONG:
            if len(buf) < 9:
                return None
            size, header = struct.unpack(">Q", buf[1:9])[0], 9
        else:
            size, header = buf[1], 2
        end = header + size
        if len(buf) < end:
            return None
        raw = bytes(buf[:end])
        del buf[:end]
        return flags, raw, raw[header:]


def _label(body: bytes) -> str:
    """The mabeam frame type of a NULL message (``?`` when it is not one)."""
    try:
        frame = msgpack.unpackb(body, raw=False)
    except Exception:
        return "?"
    kind = frame.get("t") if isinstance(frame, dict) else None
    return kind if isinstance(kind, str) else "?"


@dataclass(slots=True)
class Faults:
    """The faults in force for one listener (or all): see the module docstring."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    drop_p: float = 0.0
    dup_p: float = 0.0
    partitioned: bool = False


@dataclass(eq=False, slots=True)
class _Side:
    sock: socket.socket
    reader: ZmtpReader = field(default_factory=ZmtpReader)
    queue: deque[tuple[float, bytes]] = field(default_factory=deque)  # to write, not yet due
    out: bytearray = field(default_factory=bytearray)  # due: being written
    last_due: float = 0.0
    connected: bool = True
    eof: bool = False
    events: int = 0  # what the selector watches the socket for


@dataclass(eq=False, slots=True)
class _Pair:
    name: str
    down: _Side  # the node's connection
    up: _Side  # ours to the coordinator
    dropped: bool = False  # a drop fault lost a message: cut once the batch is through

    def other(self, side: _Side) -> _Side:
        return self.up if side is self.down else self.down


class ChaosProxy:
    """The proxy (see the module docstring); ``close()`` stops its thread."""

    def __init__(self, upstream_port: int, *, seed: int = 0) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.stats: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._faults: dict[str, Faults] = {}
        self._listeners: dict[socket.socket, str] = {}
        self._ports: dict[str, int] = {}
        self._pairs: list[_Pair] = []
        self._sides: dict[socket.socket, tuple[_Pair, _Side]] = {}
        self._calls: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified as units pass
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._stopping = False
        self.error: BaseException | None = None  # what ended the proxy's thread, if not close()
        self._thread = threading.Thread(target=self._run, name="chaos-proxy", daemon=True)
        self._thread.start()

    # -- control, from the test thread --------------------------------------------------

    def listen(self, name: str) -> str:
        """A new listening port for ``name`` (a node): its ``tcp://`` endpoint."""
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(64)
        lsock.setblocking(False)
        port = lsock.getsockname()[1]

        def register() -> None:
            self._listeners[lsock] = name
            self._ports[name] = port
            self._faults.setdefault(name, Faults())
            self._sel.register(lsock, selectors.EVENT_READ)

        self._call(register)
        return f"tcp://127.0.0.1:{port}"

    def set_faults(self, names: list[str], **changes: Any) -> None:
        """Change the faults in force for these listeners (``Faults`` fields)."""

        def apply() -> None:
            for name in names:
                faults = self._faults.setdefault(name, Faults())
                healed = faults.partitioned and changes.get("partitioned") is False
                for key, value in changes.items():
                    setattr(faults, key, value)
                if healed:
                    for pair in self._pairs:
                        if pair.name == name:
                            self._pump(pair)

        self._call(apply)

    def heal(self, names: list[str]) -> None:
        """No fault in force for these listeners any more (held bytes are delivered)."""
        self.set_faults(names, delay_s=0.0, jitter_s=0.0, drop_p=0.0, dup_p=0.0,
                        partitioned=False)  # fmt: skip

    def cut(self, names: list[str]) -> None:
        """Reset (RST) every connection of these listeners now."""

        def cut() -> None:
            for pair in [p for p in self._pairs if p.name in names]:
                self.stats["cut_connections"] += 1
                self._close(pair, reset=True)

        self._call(cut)

    def wait_for(self, predicate: Callable[[Counter[str]], bool], timeout: float = 10.0) -> None:
        """Block until ``predicate(stats)`` holds (re-checked as traffic passes), or
        fail after ``timeout`` s. Every message is counted as ``seen LABEL``."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.stats), timeout):
                raise AssertionError(f"the proxy saw no such traffic in {timeout} s: {self.stats}")

    def connections(self, name: str) -> int:
        """Connections of ``name`` open now (a snapshot)."""
        with self._lock:
            return sum(1 for pair in self._pairs if pair.name == name)

    def close(self) -> None:
        def stop() -> None:
            self._stopping = True

        if self._thread.is_alive():
            self._call(stop)
            self._thread.join(timeout=10)
        for sock in [*self._listeners, *self._sides]:
            with contextlib.suppress(OSError):
                sock.close()
        self._wake_r.close()
        self._wake_w.close()
        self._sel.close()

    def _call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the proxy's thread and wait until it ran."""
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()

        if not self._thread.is_alive():
            raise RuntimeError(f"the chaos proxy's thread is gone: {self.error!r}")
        with self._lock:
            self._calls.append(run)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if not done.wait(10):
            raise RuntimeError(f"the chaos proxy did not answer within 10 s ({self.error!r})")

    # -- the loop, in the proxy's thread ------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # told by the next call, and by the run's checks
            self.error = exc
            raise

    def _loop(self) -> None:
        while not self._stopping:
            timeout = self._next_due()
            for key, mask in self._sel.select(timeout):
                sock = key.fileobj
                if sock is self._wake_r:
                    self._wakeup()
                elif sock in self._listeners:
                    self._accept(sock)  # type: ignore[arg-type]
                elif sock in self._sides:
                    pair, side = self._sides[sock]  # type: ignore[index]
                    if mask & selectors.EVENT_WRITE:
                        self._writable(pair, side)
                    if mask & selectors.EVENT_READ and sock in self._sides:
                        self._readable(pair, side)
            for pair in list(self._pairs):
                self._pump(pair)

    def _wakeup(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(4096)
        while True:
            with self._lock:
                if not self._calls:
                    return
                fn = self._calls.popleft()
            fn()

    def _next_due(self) -> float | None:
        due = [
            side.queue[0][0]
            for pair in self._pairs
            if not self._faults[pair.name].partitioned
            for side in (pair.down, pair.up)
            if side.queue
        ]
        if not due:
            return None
        return max(min(due) - time.monotonic(), 0.0)

    def _accept(self, lsock: socket.socket) -> None:
        name = self._listeners[lsock]
        while True:
            try:
                down, _ = lsock.accept()
            except BlockingIOError:
                return
            down.setblocking(False)
            up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            up.setblocking(False)
            for sock in (down, up):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = _Pair(name, _Side(down), _Side(up, connected=False))
            code = up.connect_ex(self.upstream)
            if code not in (0, errno.EINPROGRESS):
                self.stats["refused_upstream"] += 1
                down.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                down.close()
                up.close()
                continue
            pair.up.connected = code == 0
            with self._lock:
                self._pairs.append(pair)
            self.stats["connections"] += 1
            for side in (pair.down, pair.up):
                self._sides[side.sock] = (pair, side)
                self._interest(pair, side)

    def _readable(self, pair: _Pair, side: _Side) -> None:
        try:
            data = side.sock.recv(_READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self._close(pair, reset=True)
            return
        if not data:
            side.eof = True
            self._close(pair, reset=False)
            return
        faults = self._faults[pair.name]
        target = pair.other(side)
        now = time.monotonic()
        for unit in side.reader.feed(data):
            self._route(pair, target, unit, faults, now)
        with self._changed:
            self._changed.notify_all()
        if pair.dropped:
            self.stats["cut_connections"] += 1
            self._close(pair, reset=True)

    def _route(self, pair: _Pair, target: _Side, unit: Unit, faults: Faults, now: float) -> None:
        copies = 1
        if unit.kind == "message":
            label = unit.label or "message"
            self.stats[f"seen {label}"] += 1
            if faults.drop_p and self._rng.random() < faults.drop_p:
                self.stats[f"dropped {label}"] += 1
                pair.dropped = True  # the connection dies with its lost bytes
                return
            if faults.dup_p and self._rng.random() < faults.dup_p:
                self.stats[f"duplicated {label}"] += 1
                copies = 2
        delay = faults.delay_s + (self._rng.random() * faults.jitter_s if faults.jitter_s else 0)
        if delay:
            self.stats["delayed units"] += 1
        due = max(now + delay, target.last_due)
        target.last_due = due
        for _ in range(copies):
            target.queue.append((due, unit.data))

    def _pump(self, pair: _Pair) -> None:
        """Move due units to the write buffers and write what the sockets take."""
        if pair.down.sock not in self._sides:
            return
        if self._faults[pair.name].partitioned:
            return
        now = time.monotonic()
        for side in (pair.down, pair.up):
            while side.queue and side.queue[0][0] <= now:
                side.out += side.queue.popleft()[1]
            if side.out and side.connected:
                self._write(pair, side)
                if side.sock not in self._sides:
                    return
        self._throttle(pair)

    def _write(self, pair: _Pair, side: _Side) -> None:
        try:
            sent = side.sock.send(side.out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(pair, reset=True)
            return
        del side.out[:sent]
        self._interest(pair, side)

    def _writable(self, pair: _Pair, side: _Side) -> None:
        if not side.connected:
            code = side.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self.stats["refused_upstream"] += 1
                self._close(pair, reset=True)
                return
            side.connected = True
        if side.out and not self._faults[pair.name].partitioned:
            self._write(pair, side)
        else:
            self._interest(pair, side)

    def _interest(self, pair: _Pair, side: _Side) -> None:
        """Read unless the other way is congested; write while bytes are waiting."""
        other = pair.other(side)
        events = 0
        if not side.eof and len(other.out) + len(other.queue) <= _MAX_PENDING:
            events = selectors.EVENT_READ
        if side.out or not side.connected:
            events |= selectors.EVENT_WRITE
        if events == side.events:
            return
        if side.events and events:
            self._sel.modify(side.sock, events)
        elif events:
            self._sel.register(side.sock, events)
        else:
            self._sel.unregister(side.sock)
        side.events = events

    def _throttle(self, pair: _Pair) -> None:
        for side in (pair.down, pair.up):
            self._interest(pair, side)

    def _close(self, pair: _Pair, *, reset: bool) -> None:
        """Close both sockets of ``pair``; first write what is due (a FIN is orderly)."""
        if pair.down.sock not in self._sides:
            return
        for side in (pair.down, pair.up):
            if not reset and side.out and side.connected:
                with contextlib.suppress(OSError):
                    side.sock.send(side.out)
            self._sides.pop(side.sock, None)
            if side.events:
                self._sel.unregister(side.sock)
                side.events = 0
            if reset:
                with contextlib.suppress(OSError):
                    side.sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
            side.sock.close()
        with self._lock:
            self._pairs.remove(pair)

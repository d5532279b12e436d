"""The coordinator's socket actor: one ROUTER for nodes and clients, and the routing.

It binds the ROUTER, spawns a linked ``WireReader``, and for every batch of messages:

1. forgets peers whose last bad frame is past the idle limit (``PeerHealth.expire``),
   and drops the frames of quarantined peers unread;
2. decodes each payload (``protocol.decode``); a bad one is counted in ``PeerHealth``,
   answered with an ERROR when it had a readable ``request_id`` (a client's), else
   dropped; ``max_bad_frames`` in a row disconnect the peer (BYE, session ended,
   watches dropped, frames ignored for ``quarantine_s``);
3. on a CURVE router, checks each frame against its sender's key (the ZAP ``User-Id``
   libzmq attaches to every message): a key no longer in the allow-lists is refused
   (revoked: its node session ends), a client key may not send node frames, a node key
   may not send client requests nor use another node's id. These refusals are ERROR
   ``unauthorized``, counted apart from bad frames (they never quarantine a routing id,
   which an impostor could otherwise get a real node's frames dropped with);
4. routes the valid ones: HELLO starts a node session (or goes to the running one, which
   resets itself), other node frames go to the node's session, client requests to the
   client part. A node frame from a peer without a session (its coordinator restarted)
   gets ERROR ``hello_first``; a frame no peer may send gets ERROR ``unexpected``.

Frames for one receiver travel as one cast per batch. An exception while routing one
frame is logged, counted and answered with ERROR ``internal``; the router goes on.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import zmq

from foundation import Actor, ActorRef, Down, Exit
from supervision import DynamicSupervisor, child_spec

from . import protocol as p
from ._allowlist import Peer
from ._coord_config import CoordinatorConfig
from ._coord_messages import ClientFrames, Disconnect, NodeFrames, PeerGone
from ._coord_session import NodeSession
from ._coord_shared import Outlet, Shared
from ._security import secure_server
from ._sockets import bind_retrying, configure_router, for_address
from ._wire import Incoming, Wire, WireReader

__all__ = ("AUTH_EVENT", "RouterActor")

AUTH_EVENT: Final = ("mabeam", "coordinator", "auth")
"""Telemetry on every refusal for a key: a handshake (ZAP) or a frame (this router)."""

log = logging.getLogger("mabeam.coordinator")

_NODE_TYPES: Final = frozenset({p.Ready, p.Accept, p.Progress, p.Result})
_CLIENT_TYPES: Final = frozenset({p.Submit, p.Watch, p.Status, p.CancelJob, p.Market})
_EITHER: Final = frozenset({p.Heartbeat, p.Bye, p.Error})
_REBIND_TRIES: Final = 40


class RouterActor(Actor):
    """Owns the ROUTER socket and routes what arrives (see the module docstring)."""

    trap_exits = True  # a stop runs terminate, which closes the socket

    async def init(self, config: CoordinatorConfig, shared: Shared) -> None:
        self._config = config
        self._shared = shared
        self._names = shared.names
        self._counters = shared.counters
        self._health = shared.health
        if shared.wire is not None:  # a killed predecessor could not close its socket
            shared.wire.close()
            shared.wire = None
        if shared.zmq_context is None:
            raise RuntimeError("the coordinator's ZeroMQ context is gone (auth not running)")
        self._allow = shared.allow
        sock = shared.zmq_context.socket(zmq.ROUTER)
        try:
            configure_router(sock, handshake_s=config.handshake_s, idle_s=config.connection_idle_s)
            if self._allow is not None:
                assert config.key is not None  # CoordinatorConfig checked it
                secure_server(sock, config.key)
            await self._bind(sock)
        except BaseException:
            sock.close(linger=0)
            raise
        self.wire = shared.wire = Wire(sock, authenticated=self._allow is not None)
        self.outlet = Outlet(self.wire, self._counters)
        self._sessions: dict[bytes, ActorRef] = {}
        self._session_peer: dict[Any, bytes] = {}
        self._node_peer: dict[str, bytes] = {}  # node id -> its session's routing id
        self._from_peer: dict[ActorRef, bytes] = {}
        self._node_keys: dict[bytes, str] = {}  # a node peer -> the key it spoke with
        self._allow_version = self._allow.version if self._allow is not None else 0
        await self.spawn_link(WireReader, self.wire, self.ref)

    async def _bind(self, sock: zmq.Socket[Any]) -> None:
        """Bind the configured address; a restarted router binds the same real port."""
        rebind = self._shared.endpoint
        address = rebind or self._config.bind
        if address.endswith(":0"):
            address = address[:-2] + ":*"
        for_address(sock, address)
        await bind_retrying(sock, address, _REBIND_TRIES if rebind else 1, self.runtime.sleep)
        self._shared.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)

    async def terminate(self, reason: Any) -> None:
        wire = getattr(self, "wire", None)
        if wire is not None:
            wire.close()

    async def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "outlet":
            return self.outlet
        if request == "peers":
            return dict(self._sessions)
        raise ValueError(f"unknown router request {request!r}")

    async def handle_info(self, msg: Any) -> None:
        if type(msg) is Exit:  # the reader died: so does the socket's owner
            self.stop(msg.reason)
        elif type(msg) is Down:
            peer = self._session_peer.pop(msg.pid, None)
            if peer is not None:
                self._node_keys.pop(peer, None)
                node_id = node_of(peer).decode("utf-8", "replace")
                if self._node_peer.get(node_id) == peer:
                    del self._node_peer[node_id]
            ref = self._sessions.get(peer) if peer is not None else None
            if ref is not None and ref.pid == msg.pid:
                del self._sessions[peer]  # type: ignore[arg-type]

    async def handle_cast(self, msg: Any) -> None:
        if type(msg) is not Incoming:
            raise ValueError(f"unknown router message {msg!r}")
        messages, users = msg.messages, msg.users
        counters = self._counters
        counters.frames_in += len(messages)
        now = self.runtime.clock.now()
        health = self._health
        health.expire(now)  # peers idle past the limit are forgotten (cheap when none)
        decode = p.decode_batch
        allow = self._allow
        if allow is not None:
            allow.refresh(now)  # the ZAP handler may have seen the change first
            if allow.version != self._allow_version:
                self._allow_version = allow.version
                self._recheck_sessions(allow)
        to_nodes: dict[ActorRef, list[p.Frame]] = {}
        from_peer = self._from_peer = {}  # session -> the peer its frames came from
        to_clients: list[tuple[bytes, p.Frame]] = []
        owners: dict[bytes, str] = {}
        who: Peer | None = None
        for index, parts in enumerate(messages):
            peer, payload = parts[0], parts[-1]
            if allow is not None:  # the key first: what it may not send is never "bad"
                who = allow.lookup(users[index]) if users is not None else None
                if who is None:
                    self._revoked(peer, _try_decode(payload))
                    continue
                if who.role == "node":
                    if node_of(peer) != who.name.encode():
                        why = _wrong_id(who.name, peer)
                        self._unauthorized(peer, _try_decode(payload), why)
                        continue
                    self._node_keys[peer] = users[index]  # type: ignore[index]
            if len(parts) != 2:  # a multipart message: a frame is one part
                counters.unexpected_frames += 1
                self._bad(peer, "unexpected", now)
                continue
            if health.quarantined(peer, now):
                counters.quarantined_drops += 1
                continue
            try:
                entries = decode(payload)  # one frame, or a BATCH's entries
            except p.ProtocolError as exc:
                self._refuse(peer, exc, now)
                continue
            for index, frame in enumerate(entries):
                if isinstance(frame, p.ProtocolError):  # a bad entry is refused alone
                    self._refuse(peer, frame, now)
                    if health.quarantined(peer, now):  # it was the last bad one allowed
                        counters.quarantined_drops += len(entries) - index - 1
                        break
                    continue
                if who is not None and not self._permitted(peer, frame, who):
                    continue
                try:
                    client = who is not None and who.role == "client"
                    if client:
                        owners[peer] = who.name  # type: ignore[union-attr]
                    if await self._route(peer, frame, now, to_nodes, to_clients, client):
                        health.good(peer)  # ends the peer's run of bad frames
                except Exception as exc:
                    self._internal(peer, frame, exc)
        for ref, batch in to_nodes.items():
            ref.cast(NodeFrames(batch, from_peer.get(ref, b"")))
        if to_clients:
            self._to_clients(ClientFrames(to_clients, owners))

    async def _route(
        self,
        peer: bytes,
        frame: p.Frame,
        now: float,
        to_nodes: dict[ActorRef, list[p.Frame]],
        to_clients: list[tuple[bytes, p.Frame]],
        client: bool = False,
    ) -> bool:
        """Route one valid frame; False when the peer may not send it (counted bad).
        ``client``: the sender holds a client key, so its HEARTBEAT/BYE/ERROR never
        reach a node session, whatever routing id it took."""
        kind = type(frame)
        if kind in _CLIENT_TYPES or (client and kind in _EITHER):
            to_clients.append((peer, frame))
            return True
        session = self._sessions.get(peer)
        if session is not None and not session.is_alive:
            session = None
        if isinstance(frame, p.Hello):
            if frame.node_id.encode() != node_of(peer):
                self._send(peer, p.Error("bad_value", _id_mismatch(frame.node_id, peer)))
                self._bad(peer, "bad_value", now)
                return False
            if session is None:  # a new connection of a node that has a session: move it
                session = self._move_session(frame.node_id, peer)
            if session is None:
                session = await self._start_session(peer, frame)
                if session is None:
                    return True
            to_nodes.setdefault(session, []).append(frame)
            self._from_peer[session] = peer  # a moved session hears its new peer only
            return True
        if kind in _NODE_TYPES or kind in _EITHER:
            if session is not None:
                to_nodes.setdefault(session, []).append(frame)
                self._from_peer[session] = peer
            elif kind is p.Heartbeat or kind is p.Bye:
                to_clients.append((peer, frame))  # a client's, or a forgotten node's
            elif kind is p.Error:
                log.info("ERROR from peer %r without a session: %s", peer, frame)
            else:
                self._send(peer, p.Error("hello_first", _HELLO_FIRST.format(frame.TYPE)))
            return True
        self._counters.unexpected_frames += 1
        message = f"{frame.TYPE} is not a frame a node or a client sends"
        self._send(peer, p.Error("unexpected", message, getattr(frame, "request_id", None)))
        self._bad(peer, "unexpected", now)
        return False

    async def _start_session(self, peer: bytes, hello: p.Hello) -> ActorRef | None:
        spec = child_spec(
            NodeSession,
            hello.node_id,
            self._config,
            self._shared,
            self.outlet,
            id=("node", hello.node_id),
            restart="temporary",
        )
        try:
            ref = await DynamicSupervisor.start_child(self._names.sessions, spec, timeout=10.0)
        except Exception as exc:
            log.error("could not start a session for node %r: %s", hello.node_id, exc)
            self._send(peer, p.Error("internal", f"could not start a session: {exc}"))
            return None
        if ref is None:
            return None
        self._sessions[peer] = ref
        self._session_peer[ref.pid] = peer
        self._node_peer[hello.node_id] = peer
        self.monitor(ref)
        return ref

    def _move_session(self, node_id: str, peer: bytes) -> ActorRef | None:
        """The live session of ``node_id``, now reached through ``peer`` (its node
        reconnected: each connection has its own routing id), or None."""
        old = self._node_peer.get(node_id)
        session = self._sessions.get(old) if old is not None else None
        if session is None or not session.is_alive:
            return None
        del self._sessions[old]  # type: ignore[arg-type]
        self._node_keys.pop(old, None)  # type: ignore[arg-type]
        self._sessions[peer] = session
        self._session_peer[session.pid] = peer
        self._node_peer[node_id] = peer
        return session

    # -- refusals -----------------------------------------------------------------------

    def _permitted(self, peer: bytes, frame: p.Frame, who: Peer) -> bool:
        """Whether the key ``who`` may send ``frame`` from routing id ``peer``."""
        kind = type(frame)
        if who.role == "node":
            if kind in _CLIENT_TYPES:
                why = f"node key {who.name!r} cannot send {frame.TYPE}: that is for client keys"
            elif node_of(peer) != who.name.encode():
                why = _wrong_id(who.name, peer)
            else:
                return True
        elif kind in _NODE_TYPES or kind is p.Hello:
            why = f"client key {who.name!r} cannot send {frame.TYPE}: that is for node keys"
        else:
            return True
        self._unauthorized(peer, frame, why)
        return False

    def _recheck_sessions(self, allow: Any) -> None:
        """The allow-lists changed: end the sessions whose key is gone (or no longer a
        node's) now, so that no DISPATCH goes to them before they next speak."""
        for peer in list(self._sessions):
            key = self._node_keys.get(peer)
            who = allow.lookup(key) if key is not None else None
            if key is not None and (who is None or who.role != "node"):
                self._revoked(peer, None)

    def _revoked(self, peer: bytes, frame: p.Frame | None) -> None:
        """``peer``'s key left the allow-lists: refuse its frame, end its session."""
        why = "this connection's key is not (or no longer) allowed"
        self._unauthorized(peer, frame, why)
        session = self._sessions.pop(peer, None)
        if session is not None:
            log.warning("node %r: its key was revoked; its session ends", peer)
            session.cast(Disconnect("its key was revoked"))
        self._to_clients(PeerGone(peer))  # a client's watches end with its key

    def _unauthorized(self, peer: bytes, frame: p.Frame | None, why: str) -> None:
        self._counters.auth_refused += 1
        log.info("refused a frame from %r: %s", peer, why)
        telemetry = self.runtime.telemetry
        if telemetry.active:
            telemetry.emit(AUTH_EVENT, {"refused": 1}, {"peer": peer, "why": why})
        request_id = getattr(frame, "request_id", None)
        self._send(peer, p.Error("unauthorized", p.clip(why), request_id))

    def _send(self, peer: bytes, frame: p.Frame) -> None:
        try:
            self.outlet.send(peer, frame)
        except p.ProtocolError:  # an ERROR we built is wrong: never worth a crash
            log.exception("could not encode %s for peer %r", frame.TYPE, peer)

    def _refuse(self, peer: bytes, exc: p.ProtocolError, now: float) -> None:
        log.debug("bad frame from %r: %s %s", peer, exc.code, exc.message)
        if exc.request_id is not None:
            self._send(peer, p.error_reply(exc))
        self._bad(peer, exc.code, now)

    def _bad(self, peer: bytes, code: str, now: float) -> None:
        if self._health.bad(peer, code, now):
            self._disconnect(
                peer, f"{self._config.max_bad_frames} bad frames in a row (last: {code})"
            )

    def _disconnect(self, peer: bytes, reason: str) -> None:
        log.warning("disconnecting peer %r: %s", peer, reason)
        self._send(peer, p.Bye(f"disconnected: {reason}"))
        session = self._sessions.pop(peer, None)
        if session is not None:
            session.cast(Disconnect(reason))
        self._to_clients(PeerGone(peer))

    def _internal(self, peer: bytes, frame: p.Frame, exc: Exception) -> None:
        self._counters.internal_errors += 1
        log.error("internal error handling %s from %r", frame.TYPE, peer, exc_info=exc)
        message = f"internal error handling {frame.TYPE}: {type(exc).__name__}: {exc}"
        self._send(peer, p.Error("internal", p.clip(message), getattr(frame, "request_id", None)))

    def _to_clients(self, msg: Any) -> None:
        ref = self.runtime.whereis(self._names.clients)
        if ref is None:  # restarting: clients resend requests that get no answer
            log.warning("client part not running; dropped %s", type(msg).__name__)
            return
        ref.cast(msg)


_HELLO_FIRST: Final = (
    "{} from a node this coordinator has no session for (it restarted, or the node was"
    " dropped): send HELLO first"
)


def _try_decode(payload: bytes) -> p.Frame | None:
    """The frame in ``payload`` (to answer its request id), or None."""
    try:
        return p.decode(payload)
    except p.ProtocolError:
        return None


def node_of(peer: bytes) -> bytes:
    """The node id in a node's routing id: ``NODE_ID#RANDOM`` (a fresh random part per
    connection, so nobody can take over a node's id without knowing it), or ``NODE_ID``."""
    return peer.partition(b"#")[0]


def _wrong_id(name: str, peer: bytes) -> str:
    shown = node_of(peer).decode("utf-8", "replace")
    return f"node key {name!r} may only connect as node id {name!r}, not {shown!r}"


def _id_mismatch(node_id: str, peer: bytes) -> str:
    return (
        f"HELLO.node_id {node_id!r} must equal the connection's routing id {peer!r}"
        " (connect the DEALER with ROUTING_ID = the node id)"
    )

"""The coordinator's ZeroMQ context and its ZAP handler (who may complete a handshake).

``AuthActor`` runs before the router in the coordinator's tree. It creates the
coordinator's own ZeroMQ context (a ZAP handler serves one context, and two
coordinators in one process must not share one) and, unless the coordinator is
``insecure``, binds the ZAP endpoint ``inproc://zeromq.zap.01`` in it: libzmq asks it
about every CURVE handshake on the ROUTER (RFC 27, ZAP 1.0). It answers 200 with the
client's public key (Z85) as the ``User-Id`` when the key is in an allow-list, else
400. Only the CURVE mechanism in the ``mabeam`` domain is accepted.

With ``ZAP_ENFORCE_DOMAIN`` on the ROUTER, a handshake while this actor restarts is
refused, not waved through: the cluster fails closed. Refusals are counted and logged,
at most once a minute per address with the number held back (a refused node retries
every 100 ms; a scanner may try many keys).

The context is destroyed by the coordinator's application once its tree has stopped
(``Shared.close_context``, whatever ended it); a restarted actor keeps using it.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import zmq
from zmq.utils import z85

from foundation import Actor, Exit

from ._coord_config import CoordinatorConfig
from ._coord_shared import Shared
from ._security import ZAP_DOMAIN
from ._sockets import bind_retrying
from ._wire import Incoming, Wire, WireReader

__all__ = ("ZAP_ENDPOINT", "AuthActor")

log = logging.getLogger("mabeam.coordinator")

ZAP_ENDPOINT: Final = "inproc://zeromq.zap.01"
_VERSION: Final = b"1.0"
_LOG_EVERY_S: Final = 60.0
_MAX_LOG_MARKS: Final = 4096
_REBIND_TRIES: Final = 40


class AuthActor(Actor):
    """Owns the coordinator's ZeroMQ context and answers ZAP requests."""

    trap_exits = True  # a stop runs terminate, which closes the socket

    async def init(self, config: CoordinatorConfig, shared: Shared) -> None:
        self._shared = shared
        self._counters = shared.counters
        if shared.zap_wire is not None:  # a killed predecessor could not close its socket
            shared.zap_wire.close()
            shared.zap_wire = None
        if shared.zmq_context is None or shared.zmq_context.closed:
            shared.zmq_context = zmq.Context()
        self._wire: Wire | None = None
        self._logged: dict[str, tuple[float, int]] = {}  # address -> (logged at, since)
        if shared.allow is None:
            return  # plain TCP: no handshake to authenticate
        sock = shared.zmq_context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            await bind_retrying(sock, ZAP_ENDPOINT, _REBIND_TRIES, self.runtime.sleep)
        except BaseException:
            sock.close(linger=0)
            raise
        self._wire = shared.zap_wire = Wire(sock)
        await self.spawn_link(WireReader, self._wire, self.ref)

    async def terminate(self, reason: Any) -> None:
        if self._wire is not None:
            self._wire.close()
            if self._shared.zap_wire is self._wire:
                self._shared.zap_wire = None

    async def handle_info(self, msg: Any) -> None:
        if type(msg) is Exit:  # the reader died: so does the socket's owner
            self.stop(msg.reason)

    async def handle_cast(self, msg: Any) -> None:
        if type(msg) is not Incoming:
            raise ValueError(f"unknown message for the ZAP handler: {msg!r}")
        allow = self._shared.allow
        wire = self._wire
        if allow is None or wire is None:
            return
        allow.refresh(self.runtime.clock.now())
        for parts in msg.messages:
            reply = self._answer(parts)
            if reply is not None and not wire.send_parts(reply):
                log.error("ZAP reply could not be sent (libzmq's pipe is full)")

    def _answer(self, parts: list[bytes]) -> list[bytes] | None:
        """The reply to one request: [peer, b"", version, request_id, code, text,
        user_id, metadata]; None for a message too short to answer."""
        # ROUTER adds [peer, b""] in front of the request's frames.
        if len(parts) < 8 or parts[1] != b"":
            log.error("malformed ZAP request of %d frames ignored", len(parts))
            return None
        peer, _, version, request_id, domain, address, _identity, mechanism = parts[:8]
        credentials = parts[8:]

        def reply(code: bytes, text: str, user: bytes = b"") -> list[bytes]:
            return [peer, b"", _VERSION, request_id, code, text.encode(), user, b""]

        if version != _VERSION:
            return reply(b"500", f"unsupported ZAP version {version!r}")
        where = address.decode("utf-8", "replace")
        if mechanism != b"CURVE" or domain.decode("utf-8", "replace") != ZAP_DOMAIN:
            self._refused(where, "", f"mechanism {mechanism!r} in domain {domain!r}")
            return reply(b"400", "only CURVE in the mabeam domain is accepted")
        if len(credentials) != 1 or len(credentials[0]) != 32:
            self._refused(where, "", "malformed CURVE credentials")
            return reply(b"400", "malformed CURVE credentials")
        key = z85.encode(credentials[0]).decode("ascii")
        allow = self._shared.allow
        peer_info = allow.lookup(key) if allow is not None else None
        if peer_info is None:
            self._refused(where, key, "its key is in no allow-list")
            return reply(b"400", "key not allowed")
        self._counters.handshakes_ok += 1
        log.debug("ZAP: %s %r connected from %s", peer_info.role, peer_info.name, where)
        return reply(b"200", "OK", key.encode("ascii"))

    def _refused(self, address: str, key: str, why: str) -> None:
        self._counters.handshakes_refused += 1
        telemetry = self.runtime.telemetry
        if telemetry.active:
            meta = {"address": address, "key": key, "why": why}
            telemetry.emit(("mabeam", "coordinator", "auth"), {"handshakes_refused": 1}, meta)
        now = self.runtime.clock.now()
        last, quiet = self._logged.get(address, (None, 0))
        if last is not None and now - last < _LOG_EVERY_S:
            self._logged[address] = (last, quiet + 1)  # counted, said with the next line
            return
        if len(self._logged) >= _MAX_LOG_MARKS:
            self._logged.clear()
        self._logged[address] = (now, 0)
        shown = f"key {key} " if key else ""
        more = f"; {quiet} more refused from there since the last line" if quiet else ""
        log.warning("refused a connection from %s: %s(%s)%s", address or "?", shown, why, more)

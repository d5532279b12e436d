"""CurveZMQ on the cluster's sockets, and the loopback rule for plain TCP.

The coordinator's ROUTER is a CURVE server with ``ZAP_DOMAIN`` set and
``ZAP_ENFORCE_DOMAIN=1``: every handshake goes to its ZAP handler (``_coord_zap``),
and with no handler bound libzmq refuses the connection instead of letting any key in
(CURVE without ZAP authenticates nobody: it only encrypts). Nodes and clients are CURVE
clients that pin the coordinator's public key, so they cannot be talked into a
man-in-the-middle either.

Plain TCP is for one machine only: ``check_insecure`` refuses a non-loopback address
for a peer run with ``insecure`` (``--insecure``), whether it binds or connects.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import zmq

from .keys import KeyFileError, KeyPair, Role, load_key

__all__ = (
    "ZAP_DOMAIN",
    "CurveClient",
    "check_insecure",
    "is_loopback",
    "public_key_of",
    "secure_client",
    "secure_server",
)

ZAP_DOMAIN: Final = "mabeam"
_TCP: Final = re.compile(r"tcp://(?P<host>\[[^\]]*\]|[^:/]+):(?P<port>[^:/]+)\Z")


def is_loopback(address: str) -> bool:
    """Whether ``address`` (``tcp://HOST:PORT`` or ``ipc://PATH``) stays on this machine:
    ``localhost``, a 127.0.0.0/8 address, ``::1``, or an ipc socket file."""
    if address.startswith("ipc://"):
        return True
    found = _TCP.match(address)
    if found is None:
        return False
    host = found["host"].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name, "*" or an interface name: not provably local
        return False


def check_insecure(address: str, what: str) -> None:
    """Refuse plain TCP (``insecure``) on ``address`` unless it is a loopback one."""
    if not is_loopback(address):
        raise ValueError(
            f"{what} {address!r} is not a loopback address: plain TCP (insecure) is allowed"
            " only on 127.0.0.1, ::1, localhost or ipc://. Use CurveZMQ keys for anything"
            " reachable from other machines (mabeam keys generate; docs/security.md)"
        )


def public_key_of(value: KeyPair | bytes | str | os.PathLike[str], role: Role) -> bytes:
    """The Z85 public key ``value`` names: a ``KeyPair``, 40 Z85 bytes, or a key file."""
    if isinstance(value, KeyPair):
        if value.role != role:
            raise KeyFileError(
                f"a {role} key is needed here, got the {value.role} key {value.name!r}"
            )
        return value.public
    if isinstance(value, bytes):
        return KeyPair(role, "peer", value).public  # checks the Z85 text
    if isinstance(value, str | os.PathLike):
        return load_key(Path(value), role=role).public
    raise KeyFileError(f"expected a {role} key (KeyPair, Z85 bytes or a key file), got {value!r}")


def secure_server(sock: zmq.Socket[Any], key: KeyPair) -> None:
    """Make ``sock`` a CURVE server under ZAP (call before ``bind``)."""
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, key.require_secret("the coordinator"))
    sock.setsockopt(zmq.CURVE_PUBLICKEY, key.public)
    sock.setsockopt_string(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


def secure_client(sock: zmq.Socket[Any], key: KeyPair, server: bytes) -> None:
    """Make ``sock`` a CURVE client of the server with public key ``server`` (call
    before ``connect``)."""
    sock.setsockopt(zmq.CURVE_SERVERKEY, server)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, key.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, key.require_secret(f"a {key.role}"))


@dataclass(frozen=True, slots=True)
class CurveClient:
    """A node's or client's CURVE settings: its own key pair and the coordinator's
    public key, which it pins."""

    key: KeyPair
    server: bytes

    @classmethod
    def resolve(
        cls,
        key: KeyPair | str | os.PathLike[str] | None,
        server: KeyPair | bytes | str | os.PathLike[str] | None,
        role: Role,
    ) -> CurveClient:
        """Build one from key pairs or key files; a clear error for what is missing."""
        if key is None or server is None:
            missing = "its own key pair" if key is None else "the coordinator's public key"
            raise KeyFileError(
                f"a {role} needs {missing} to connect with CurveZMQ (key=...,"
                " coordinator_key=...; mabeam keys generate), or insecure=True for plain"
                " TCP to a coordinator on this machine"
            )
        pair = key if isinstance(key, KeyPair) else load_key(Path(key), role=role)
        if pair.role != role:
            raise KeyFileError(f"a {role} key is needed, got the {pair.role} key {pair.name!r}")
        pair.require_secret(f"a {role}")
        return cls(pair, public_key_of(server, "coordinator"))

    def apply(self, sock: zmq.Socket[Any]) -> None:
        """Set the CURVE client options on ``sock`` (before ``connect``)."""
        secure_client(sock, self.key, self.server)

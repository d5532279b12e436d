"""``mabeam keys generate``: a CurveZMQ key pair for the coordinator, a node or a client.

    mabeam keys generate --role node --name gpu-1        # keys/gpu-1.key, keys/gpu-1.key_secret

The public ``NAME.key`` goes to the coordinator's operator (into the ``--allow-nodes``
or ``--allow-clients`` directory; the coordinator's own public key goes to every node
and client); the secret ``NAME.key_secret`` (mode 0600) never leaves the machine.
An existing pair is never replaced without ``--force``. docs/security.md.
"""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
from typing import Any

__all__ = ("add_parser", "run")

_PROG = "mabeam keys generate"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``keys generate`` (and its options) to the ``mabeam`` command parser."""
    keys: argparse.ArgumentParser = subparsers.add_parser(
        "keys",
        help="create CurveZMQ key pairs (see: keys generate -h)",
        description="CurveZMQ key pairs for the coordinator, node agents and submitters.",
    )
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    generate = actions.add_parser(
        "generate",
        help="write NAME.key (public) and NAME.key_secret (secret, mode 0600)",
        description="Generate a key pair. Give the public NAME.key to the coordinator's "
        "operator (node and client keys) or to every node and client (the coordinator's "
        "key); keep NAME.key_secret on this machine.",
    )
    generate.add_argument(
        "--role",
        required=True,
        choices=("coordinator", "node", "client"),
        help="whose key: a node key's name is the node id it may use",
    )
    generate.add_argument(
        "--name",
        metavar="NAME",
        default=None,
        help="the key's name (default: 'coordinator', the host name for a node, the user"
        " name for a client)",
    )
    generate.add_argument(
        "--dir", metavar="DIR", default="keys", help="where to write the files (default: ./keys)"
    )
    generate.add_argument(
        "--force", action="store_true", help="replace an existing key pair of that name"
    )
    return keys


def _default_name(role: str) -> str:
    if role == "coordinator":
        return "coordinator"
    if role == "node":
        return socket.gethostname()
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "client"


def run(args: argparse.Namespace) -> int:
    """Run ``keys generate`` with parsed ``args``; return the exit status."""
    from mabeam.cluster.keys import KeyFileError, generate_keys

    if getattr(args, "keys_command", None) != "generate":
        print(f"{_PROG}: error: unknown action (try: mabeam keys generate -h)", file=sys.stderr)
        return 2
    name = args.name or _default_name(args.role)
    try:
        public, secret = generate_keys(args.dir, args.role, name, overwrite=args.force)
    except KeyFileError as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"{_PROG}: error: cannot write into {args.dir}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    where = {
        "coordinator": "give it to every node and client: --coordinator-key",
        "node": "put it in the coordinator's --allow-nodes directory",
        "client": "put it in the coordinator's --allow-clients directory",
    }[args.role]
    print(f"public key  {public}  ({where})")
    print(f"secret key  {secret}  (mode 0600: keep it on this machine)")
    return 0

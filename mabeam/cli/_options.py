"""What the commands share: the client options (submit, status, cancel), argument types,
and ``CommandError``, the one-line failure of a command."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = (
    "BadInput",
    "CommandError",
    "add_client_options",
    "add_security_options",
    "client_security",
    "positive_float",
    "positive_int",
)


class CommandError(Exception):
    """A command cannot do what was asked; ``str(exc)`` is the one line to print and
    ``exit_status`` the exit status (1)."""

    exit_status = 1


class BadInput(CommandError):
    """What the command line names cannot be used (a missing or malformed input file, an
    unknown name in it): exit status 2, as for a bad argument."""

    exit_status = 2


def positive_float(text: str) -> float:
    """argparse type: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return value


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """``--coordinator ADDR`` (default ``$MABEAM_COORDINATOR``, else
    ``tcp://127.0.0.1:5555``), ``--timeout S`` and the security options."""
    parser.add_argument(
        "--coordinator",
        metavar="ADDR",
        default=None,
        help="the coordinator's address (default: $MABEAM_COORDINATOR, else tcp://127.0.0.1:5555)",
    )
    parser.add_argument(
        "--timeout",
        metavar="S",
        type=positive_float,
        default=10.0,
        help="seconds to wait for the coordinator to answer (default: 10)",
    )

    add_security_options(parser, "client")


def add_security_options(parser: argparse.ArgumentParser, role: str) -> None:
    """``--key``, ``--coordinator-key`` (a node's or a client's) and ``--insecure``."""
    parser.add_argument(
        "--key",
        metavar="FILE",
        default=None,
        help=f"this {role}'s secret key file, NAME.key_secret (default: $MABEAM_KEY;"
        f" create one with: mabeam keys generate --role {role})",
    )
    parser.add_argument(
        "--coordinator-key",
        metavar="FILE",
        default=None,
        help="the coordinator's public key file, pinned (default: $MABEAM_COORDINATOR_KEY)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="plain TCP without keys; only to a coordinator on this machine (loopback)",
    )


def client_security(args: argparse.Namespace) -> dict[str, Any]:
    """``connect``'s security keywords from parsed ``add_security_options`` arguments;
    ``CommandError`` naming the flags when neither keys nor ``--insecure`` are given."""
    from mabeam.cluster._env import COORDINATOR_KEY_ENV, KEY_ENV, or_env

    if not args.insecure:
        missing = [
            flag
            for flag, value, env in (
                ("--key FILE.key_secret", args.key, KEY_ENV),
                ("--coordinator-key FILE.key", args.coordinator_key, COORDINATOR_KEY_ENV),
            )
            if not or_env(value, env)
        ]
        if missing:
            raise CommandError(
                f"connecting needs {' and '.join(missing)} (or $MABEAM_KEY and"
                " $MABEAM_COORDINATOR_KEY; docs/security.md), or --insecure for a coordinator"
                " on this machine started with --insecure"
            )
    return {
        "key": args.key,
        "coordinator_key": args.coordinator_key,
        "insecure": bool(args.insecure),
    }

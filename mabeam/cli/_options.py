"""What the commands share: the client options (submit, status, cancel), argument types,
and ``CommandError``, the one-line failure of a command."""

from __future__ import annotations

import argparse

__all__ = ("CommandError", "add_client_options", "positive_float", "positive_int")


class CommandError(Exception):
    """A command cannot do what was asked; ``str(exc)`` is the one line to print."""


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
    ``tcp://127.0.0.1:5555``) and ``--timeout S``."""
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

"""Argument parsing and dispatch for the ``mabeam`` console script.

Bad arguments end in argparse's usage message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version


def _version() -> str:
    try:
        return version("mabeam")
    except PackageNotFoundError:
        return "unknown (not installed; run: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for ``mabeam [--version] COMMAND ...``."""
    parser = argparse.ArgumentParser(
        prog="mabeam",
        description="Erlang/OTP-style actors for Python, and multi-agent ML on top.",
    )
    parser.add_argument("--version", action="version", version=f"mabeam {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser(
        "demo",
        help="run a short local demo of the runtime",
        description="Run a short local demo of the runtime.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mabeam`` console script; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from ._demo import run_demo

            return run_demo()
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command: {args.command!r}")

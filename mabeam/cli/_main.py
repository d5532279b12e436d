"""Argument parsing and dispatch for the ``mabeam`` console script (and ``python -m mabeam``).

Commands: ``run`` (a sweep, locally), ``submit`` / ``status`` / ``cancel`` (against a
running coordinator), ``report`` (a search run's leaderboard and plots), ``coordinator
start`` and ``node start`` (the cluster's processes), ``keys generate`` (their CurveZMQ
keys), ``demo``. Each lives in its own
module with ``add_parser`` and ``run``; ``coordinator``, ``node`` and ``keys`` are
imported only when their command is used, so
``mabeam --help`` stays quick and works without them.

Errors are one line on stderr: bad arguments exit 2 with argparse's usage; everything
else (an unreachable coordinator, a bad spec file, an unknown job) exits 1 as
``mabeam: error: ...``, or 2 for an input that cannot be used (``BadInput``: a missing
or malformed run directory). A bug shows as one line too, with ``MABEAM_DEBUG=1`` giving the
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ._options import CommandError

__all__ = ("build_parser", "main")

# Commands whose module is imported only when the command itself runs.
_LAZY_COMMANDS = {
    "coordinator": ("mabeam.cli._coordinator", "run the coordinator (see: coordinator start -h)"),
    "node": ("mabeam.cli._node", "run a node agent (see: node start -h)"),
    "keys": ("mabeam.cli._keys", "create CurveZMQ key pairs (see: keys generate -h)"),
}


def _version() -> str:
    try:
        return version("mabeam")
    except PackageNotFoundError:
        return "unknown (not installed; run: pip install -e .)"


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """Return the parser for ``mabeam [--version] COMMAND ...``; ``argv`` says which lazy
    command (if any) gets its full parser."""
    from . import _budget, _report, _run, _status, _submit

    parser = argparse.ArgumentParser(
        prog="mabeam",
        description="Erlang/OTP-style actors for Python, and multi-agent ML on top.",
    )
    parser.add_argument("--version", action="version", version=f"mabeam {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _run.add_parser(commands)
    _submit.add_parsers(commands)
    _status.add_parser(commands)
    _report.add_parser(commands)
    _budget.add_parser(commands)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in _LAZY_COMMANDS.items():
        if name != chosen or not _add_lazy(commands, module):
            _placeholder(commands, name, help_text)
    demo = commands.add_parser(
        "demo",
        help="run the digits sweep locally (--runtime: the actor runtime demo)",
        description="Run examples/digits/sweep.toml locally, as `mabeam run` does; with "
        "--runtime, a short demo of the actor runtime and supervision instead.",
    )
    demo.add_argument(
        "--runtime", action="store_true", help="show the actor runtime and supervision demo"
    )
    return parser


def _add_lazy(commands: Any, module: str) -> bool:
    try:
        importlib.import_module(module).add_parser(commands)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return False
    return True


def _placeholder(commands: Any, name: str, help_text: str) -> None:
    sub = commands.add_parser(name, help=help_text, add_help=False)
    sub.add_argument("rest", nargs=argparse.REMAINDER)


def _runner(command: str) -> Callable[[argparse.Namespace], int]:
    if command in _LAZY_COMMANDS:
        module = _LAZY_COMMANDS[command][0]
        try:
            run: Callable[[argparse.Namespace], int] = importlib.import_module(module).run
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            raise CommandError(
                f"`mabeam {command}` is not available: {module} is missing"
            ) from None
        return run
    from . import _budget, _report, _run, _status, _submit

    table: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": _run.run,
        "submit": _submit.run_submit,
        "cancel": _submit.run_cancel,
        "status": _status.run,
        "report": _report.run,
        "budget": _budget.run,
        "demo": _demo,
    }
    return table[command]


def _demo(args: argparse.Namespace) -> int:
    if args.runtime:
        from ._demo import run_demo

        return run_demo()
    from ._run import demo_spec, run_specs

    root, spec = demo_spec()
    return run_specs([spec], import_root=root)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mabeam`` console script; return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    try:
        return int(_runner(args.command)(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        return _report(exc)


def _report(exc: Exception) -> int:
    """One line on stderr for ``exc``; the exit status (1)."""
    from mabeam.cluster._client_errors import ClientError
    from mabeam.ml.spec import SpecError

    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]  # a task group's wrapping of one failure
    if isinstance(exc, ClientError | SpecError | CommandError | OSError):
        message = str(exc)
    elif os.environ.get("MABEAM_DEBUG"):
        raise exc
    else:
        message = f"unexpected {type(exc).__name__}: {exc} (set MABEAM_DEBUG=1 for the traceback)"
    print(f"mabeam: error: {_one_line(message)}", file=sys.stderr)
    return exc.exit_status if isinstance(exc, CommandError) else 1


def _one_line(text: str) -> str:
    return " ".join(text.split())

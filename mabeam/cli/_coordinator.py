"""``mabeam coordinator start``: run the cluster's coordinator in this process.

    mabeam coordinator start --bind tcp://0.0.0.0:5555 --state /var/lib/mabeam/jobs.db

It prints one line once it serves (subprocess tests and scripts wait for it)::

    mabeam coordinator listening on tcp://0.0.0.0:5555 (state /var/lib/mabeam/jobs.db)

and runs until SIGTERM or SIGINT (a graceful stop: nodes get BYE; exit 0). Bad
arguments are one line and exit 2; a state file that cannot be used (not a job store,
a newer schema, a directory that cannot be written) or an address that cannot be bound
is one line and exit 1, never a traceback.

Security (docs/security.md): ``--key keys/coordinator.key_secret --allow-nodes
keys/nodes --allow-clients keys/clients``; plain TCP needs ``--insecure`` and a loopback
``--bind``. The allow-list directories are re-read when they change (revocation).
"""

from __future__ import annotations

import argparse
import logging
import math
import sqlite3
import sys
from pathlib import Path
from typing import Any

__all__ = ("add_parser", "run")

_PROG = "mabeam coordinator start"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _retention(text: str) -> float | None:
    """argparse type: ``forever``, or a duration such as ``7d``, ``12h``, ``30m``, ``90s``."""
    if text == "forever":
        return None
    unit = _UNITS.get(text[-1:].lower())
    try:
        value = float(text[:-1] if unit else text) * (unit or 1.0)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 7d, 12h, 30m, 90s, or forever; got {text!r}"
        )
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``coordinator start`` (and its options) to the ``mabeam`` command parser."""
    from mabeam.cluster._coord_config import DEFAULT_BIND
    from mabeam.cluster._coord_policy import POLICIES

    coordinator: argparse.ArgumentParser = subparsers.add_parser(
        "coordinator",
        help="run the cluster's coordinator (see: coordinator start -h)",
        description="The cluster's coordinator: one endpoint for node agents and clients.",
    )
    actions = coordinator.add_subparsers(dest="coordinator_command", metavar="ACTION")
    actions.required = True
    start = actions.add_parser(
        "start",
        help="start a coordinator and serve until SIGTERM/SIGINT",
        description="Start a coordinator: bind one ZeroMQ endpoint for node agents and "
        "clients, keep every job in a SQLite state file, schedule jobs onto the nodes.",
    )
    start.add_argument(
        "--bind",
        default=DEFAULT_BIND,
        metavar="ADDR",
        help=f"address to listen on, tcp://HOST:PORT (port 0 or * picks a free one; "
        f"default {DEFAULT_BIND})",
    )
    start.add_argument(
        "--state",
        default="mabeam-coordinator.db",
        metavar="PATH",
        help="the job store's SQLite file, created if missing (default "
        "./mabeam-coordinator.db); restart on the same file to keep every job",
    )
    start.add_argument(
        "--policy",
        default="fifo",
        choices=sorted(POLICIES),
        help="scheduling policy: fifo (submission order), priority (highest first) or auction"
        " (free GPUs sold by VCG auction to budgeted teams); default fifo",
    )
    start.add_argument(
        "--heartbeat",
        type=_seconds,
        default=1.0,
        metavar="S",
        help="heartbeat interval in seconds; a node silent for 3 intervals is lost and "
        "its jobs requeued (default 1.0)",
    )
    start.add_argument(
        "--retention",
        type=_retention,
        default=7 * 86400.0,
        metavar="AGE",
        help="delete finished jobs (and forget idempotency keys) this long after: 7d"
        " (default), 12h, 30m, 90s, or forever",
    )
    start.add_argument(
        "--max-queued",
        type=int,
        default=100_000,
        metavar="N",
        help="unfinished jobs one submitter (client key) may have at once (default 100000)",
    )
    start.add_argument(
        "--key",
        metavar="FILE",
        default=None,
        help="the coordinator's secret key file (default: $MABEAM_KEY; create it with:"
        " mabeam keys generate --role coordinator)",
    )
    start.add_argument(
        "--allow-nodes",
        metavar="DIR",
        default=None,
        help="directory of the node agents' public .key files; a node's id is its key's name",
    )
    start.add_argument(
        "--allow-clients",
        metavar="DIR",
        default=None,
        help="directory of the submitters' public .key files",
    )
    start.add_argument(
        "--insecure",
        action="store_true",
        help="plain TCP without keys: only with a loopback --bind (127.0.0.1, ::1, localhost)",
    )
    start.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="log level of the coordinator's log on stderr (default info)",
    )
    return coordinator


def run(args: argparse.Namespace) -> int:
    """Run ``coordinator start`` with parsed ``args``; return the exit status."""
    if getattr(args, "coordinator_command", None) != "start":
        print(f"{_PROG}: error: unknown action (try: mabeam coordinator start -h)", file=sys.stderr)
        return 2
    from mabeam.cluster._env import KEY_ENV, or_env
    from mabeam.cluster.coordinator import CoordinatorConfig, coordinator_app
    from mabeam.cluster.keys import load_key

    try:
        security: dict[str, Any] = {"insecure": True}
        if args.insecure and (args.key or args.allow_nodes or args.allow_clients):
            raise ValueError("--insecure (plain TCP) takes no --key nor --allow-* directories")
        if not args.insecure:
            key_file = or_env(args.key, KEY_ENV)
            if not key_file:
                raise ValueError(
                    "the coordinator needs its key (--key FILE.key_secret, from mabeam keys"
                    " generate --role coordinator) and --allow-nodes/--allow-clients"
                    " directories, or --insecure for plain TCP on a loopback --bind"
                )
            security = {
                "key": load_key(key_file, role="coordinator"),
                "allow_nodes": args.allow_nodes,
                "allow_clients": args.allow_clients,
            }
        config = CoordinatorConfig(
            bind=args.bind,
            state=args.state,
            policy=args.policy,
            heartbeat_s=args.heartbeat,
            retention_s=args.retention,
            max_queued_per_submitter=args.max_queued,
            **security,
        )
    except ValueError as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 2
    problem = check_state(Path(config.state))
    if problem is not None:
        print(f"{_PROG}: error: {problem}", file=sys.stderr)
        return 1
    _log_to_stderr(args.log_level)
    state = Path(config.state)

    mode = "plain TCP, --insecure" if config.insecure else "CurveZMQ"

    def announce(endpoint: str) -> None:
        print(f"mabeam coordinator listening on {endpoint} (state {state}, {mode})", flush=True)

    return coordinator_app(config, on_ready=announce).run()


def check_state(path: Path) -> str | None:
    """Why the job store at ``path`` cannot be used (one line), or None; creates the
    file (and its directory) when missing, as the coordinator would."""
    from mabeam.cluster.store import JobStore, StoreError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with JobStore(path, synchronous="NORMAL"):
            pass
    except StoreError as exc:
        return f"cannot use the state file: {exc}"
    except sqlite3.Error as exc:
        return f"cannot open the state file {path}: {exc}"
    except OSError as exc:
        return f"cannot create the state file {path}: {exc.strerror or exc}"
    return None


def _log_to_stderr(level: str) -> None:
    logger = logging.getLogger("mabeam")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())

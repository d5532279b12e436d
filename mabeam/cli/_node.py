"""``mabeam node start``: join this machine to a cluster as a node agent.

The agent connects to the coordinator, offers its GPUs (or its CPUs) as task slots,
runs what it is dispatched and keeps every result on disk until it is acknowledged.
When the coordinator first answers it prints one line to stdout (a script or a test
waits for it instead of sleeping)::

    mabeam node gpu-box-1 connected to tcp://10.0.0.5:5555

and ``... reconnected to ...`` after it had to reconnect. SIGTERM or Ctrl-C drains it
(no new work; running tasks finish within ``--drain-timeout`` or are handed back to the
coordinator), then it exits 0. Bad arguments (an address that is not
``tcp://HOST:PORT``, ``--slots 0``, a ``--gpus`` value that names no GPU here,
``--task-memory-mb 0``) end in one error line and exit status 2, never a traceback.

``--nice N`` lowers the CPU priority of the agent and of the task processes it starts
(they inherit it) by N, 1 to 19: on a host that also runs the coordinator, which
serves every node, so that neither tasks nor agents starve its event loop.

``--task-memory-mb`` and ``--task-disk-mb`` bound each task's memory and outputs; a
task over either is stopped and fails with ``memory_limit`` / ``disk_limit`` (see
docs/tasks.md, "Limits").

Security: ``--key keys/NAME.key_secret --coordinator-key keys/coordinator.key`` (or
``$MABEAM_KEY`` / ``$MABEAM_COORDINATOR_KEY``), the node id being the key's name;
``--insecure`` (plain TCP) only to a coordinator on this machine. See docs/security.md.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._options import add_security_options

__all__ = ("add_parser", "main", "run")

_LOG_LEVELS = ("debug", "info", "warning", "error")
_MAX_NICE = 19  # the lowest priority there is


def _address(text: str) -> str:
    from mabeam.cluster.node import check_endpoint

    try:
        return check_endpoint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _price(text: str) -> float:
    from mabeam.economics import MICRO, LedgerError, parse_amount

    try:
        return parse_amount(text, "price") / MICRO
    except LedgerError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("price: ")) from None


def _gpus(text: str) -> str:
    from mabeam.cluster.gpus import GpuOptionError, parse_gpus_option

    try:
        parse_gpus_option(text)
    except GpuOptionError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--gpus: ")) from None
    return text


def _int(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def _niceness(text: str) -> int:
    value = _int(0)(text)
    if value > _MAX_NICE:
        raise argparse.ArgumentTypeError(f"must be at most {_MAX_NICE}, got {value}")
    return value


def _seconds(*, zero: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            bound = ">= 0" if zero else "> 0"
            raise argparse.ArgumentTypeError(f"must be a number of seconds {bound}, got {text!r}")
        return value

    return parse


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``node start`` (and its options) to the ``mabeam`` command's subparsers."""
    node = subparsers.add_parser(
        "node",
        help="run a node agent that executes the coordinator's tasks",
        description="Run a node agent: it executes the coordinator's tasks on this machine.",
    )
    actions = node.add_subparsers(dest="node_command", metavar="ACTION", required=True)
    start = actions.add_parser(
        "start",
        help="connect to a coordinator and run tasks until stopped",
        description=(
            "Connect to a coordinator and run its tasks until SIGTERM/Ctrl-C, which "
            "drains the node (running tasks finish or are handed back) and exits 0."
        ),
    )
    start.add_argument(
        "--coordinator",
        required=True,
        type=_address,
        metavar="tcp://HOST:PORT",
        help="the coordinator's address",
    )
    start.add_argument(
        "--node-id",
        metavar="ID",
        help="this node's id (default: its key's name; the host name with --insecure)",
    )
    start.add_argument(
        "--slots",
        type=_int(1),
        metavar="N",
        help="tasks run at once (default: the GPUs selected, or the CPU count)",
    )
    start.add_argument(
        "--prefetch",
        type=_int(0),
        default=0,
        metavar="N",
        help="assignments taken beyond the free slots, queued until a slot frees: hides "
        "the round trip to the coordinator for short tasks (default: 0)",
    )
    start.add_argument(
        "--gpus",
        type=_gpus,
        default="all",
        metavar="SPEC",
        help="GPUs to offer: all (default), none, or indices/UUIDs such as 0,1",
    )
    start.add_argument(
        "--owner",
        default="",
        metavar="ACCOUNT",
        help="market: the ledger account this node's GPU time is paid to (default node:ID)",
    )
    start.add_argument(
        "--price",
        type=_price,
        default=0.0,
        metavar="CREDITS",
        help="market: reserve price per GPU-hour under the auction policy (default: 0)",
    )
    start.add_argument(
        "--allow",
        nargs="+",
        action="extend",
        metavar="PATTERN",
        help="run only entrypoints matching these fnmatch patterns, e.g. 'mylab.*' (default: all)",
    )
    start.add_argument(
        "--work-dir",
        default="mabeam-work",
        metavar="DIR",
        help="attempt directories, logs, outputs and the outbox (default: ./mabeam-work)",
    )
    start.add_argument(
        "--drain-timeout",
        type=_seconds(zero=True),
        default=30.0,
        metavar="S",
        help="on stop, how long running tasks may finish before they are handed back (default: 30)",
    )
    start.add_argument(
        "--max-tasks-per-worker",
        type=_int(1),
        default=100,
        metavar="N",
        help="replace a pool worker after this many tasks (default: 100)",
    )
    start.add_argument(
        "--task-memory-mb",
        type=_int(1),
        metavar="N",
        help="the most memory (MiB, RSS of its processes) a task may use; a job's "
        "resources.memory_mb applies when lower. Over it the task is killed and fails "
        "with memory_limit, not retried (default: no cap)",
    )
    start.add_argument(
        "--task-disk-mb",
        type=_int(1),
        metavar="N",
        help="the most a task may write to its output directory (MiB); over it the task "
        "is killed, or its outputs are not published, and it fails with disk_limit, not "
        "retried (default: no limit)",
    )
    start.add_argument(
        "--limit-check",
        type=_seconds(zero=False),
        default=0.25,
        metavar="S",
        help="how often a task under a memory or disk limit is checked (default: 0.25)",
    )
    start.add_argument(
        "--heartbeat",
        type=_seconds(zero=False),
        default=1.0,
        metavar="S",
        help="heartbeat interval; the coordinator is lost after 3 silent intervals (default: 1)",
    )
    start.add_argument(
        "--nice",
        type=_niceness,
        default=0,
        metavar="N",
        help="run the agent and its tasks N steps (up to 19) below normal CPU priority: on "
        "a host that also runs the coordinator, e.g. 10, so they never starve it (default: 0)",
    )
    start.add_argument(
        "--log-level", choices=_LOG_LEVELS, default="info", help="log level (default: info)"
    )
    add_security_options(start, "node")
    parser: argparse.ArgumentParser = node
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``mabeam node start`` with parsed ``args``; the exit status."""
    from pathlib import Path

    from mabeam.cluster._env import COORDINATOR_KEY_ENV, KEY_ENV, or_env
    from mabeam.cluster.node import NodeConfig, node_app

    # Logs of the set-up (GPU discovery) are held back: shown once it succeeded, so a
    # bad argument ends in its one error line.
    level = getattr(logging, args.log_level.upper())
    root = logging.getLogger()
    root.setLevel(level)
    held = logging.handlers.MemoryHandler(capacity=10_000, flushLevel=logging.CRITICAL + 1)
    root.addHandler(held)
    options: dict[str, Any] = {
        "coordinator": args.coordinator,
        "slots": args.slots,
        "prefetch": args.prefetch,
        "gpus": args.gpus,
        "owner": args.owner,
        "price": args.price,
        "work_dir": Path(args.work_dir),
        "drain_timeout_s": args.drain_timeout,
        "max_tasks_per_worker": args.max_tasks_per_worker,
        "task_memory_mb": args.task_memory_mb,
        "task_disk_mb": args.task_disk_mb,
        "limit_check_s": args.limit_check,
        "heartbeat_s": args.heartbeat,
        "insecure": args.insecure,
    }
    if args.insecure and (args.key or args.coordinator_key):
        print("mabeam node start: error: --insecure (plain TCP) takes no --key nor"
              " --coordinator-key", file=sys.stderr)  # fmt: skip
        return 2
    if not args.insecure:
        options["key"] = or_env(args.key, KEY_ENV)
        options["coordinator_key"] = or_env(args.coordinator_key, COORDINATOR_KEY_ENV)
    if args.node_id is not None:
        options["node_id"] = args.node_id
    if args.allow is not None:
        options["allow"] = tuple(args.allow)
    try:
        config = NodeConfig(**options)
        app = node_app(config)
        app.setup.work_dir.mkdir(parents=True, exist_ok=True)
        if args.nice:
            os.nice(args.nice)  # this process: the task processes it starts inherit it
    except (ValueError, OSError) as exc:
        print(f"mabeam node start: error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        root.removeHandler(held)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if root.handlers:
        held.setTarget(root.handlers[-1])
        held.flush()
    held.close()
    node_id, endpoint = config.node_id, config.coordinator

    def connected(again: bool) -> None:
        what = "reconnected" if again else "connected"
        print(f"mabeam node {node_id} {what} to {endpoint}", flush=True)

    app.on_connected(connected)
    return app.run()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mabeam.cli._node start ...``: the same as ``mabeam node start ...``."""
    parser = argparse.ArgumentParser(prog="mabeam")
    add_parser(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(["node", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

"""``mabeam submit SPEC`` and ``mabeam cancel JOB``: change what a coordinator runs.

``submit`` loads the sweep spec (a bad file is one ``SpecError`` line, exit 1), sends
its trials as one sweep and prints the job ids; with ``--wait`` it then follows the
sweep like ``mabeam run`` does (progress bar, results table, exit 1 if a trial
failed). ``--idempotency-key`` makes a repeated submit return the first one's jobs.
A search that plans as results come in (pbt, evolution, asha, optuna) cannot be sent
whole: ``submit`` then runs its ``SearchAgent`` in this process against the coordinator
(the trials run on the cluster; the command stays until the search ends, recording the
run in ``--run-dir``, default ``runs/NAME-TIME``). ``cancel`` prints each job's state
after the request.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

import foundation

from ._options import add_client_options, client_security

__all__ = ("add_parsers", "run_cancel", "run_submit")

SHOWN_IDS = 20
"""Job ids printed in full up to this many; a longer list shows its first and last."""


def add_parsers(commands: Any) -> None:
    """Add ``submit`` and ``cancel`` to the top-level subparsers."""
    submit = commands.add_parser(
        "submit",
        help="submit a sweep spec to a coordinator",
        description="Submit the trials of a sweep spec (TOML) to a running coordinator.",
    )
    submit.add_argument("spec", metavar="SPEC", help="the sweep spec file (see docs/spec.md)")
    add_client_options(submit)
    submit.add_argument(
        "--wait",
        action="store_true",
        help="follow the sweep until it ends: progress bar, then the results table",
    )
    submit.add_argument(
        "--idempotency-key",
        metavar="KEY",
        default=None,
        help="submitting again with the same key returns the same jobs (default: a new key)",
    )
    submit.add_argument(
        "--run-dir",
        metavar="DIR",
        default=None,
        help="run the sweep through a search agent here and record it for `mabeam report` "
        "(always so for pbt, evolution, asha and optuna; default runs/NAME-TIME)",
    )
    cancel = commands.add_parser(
        "cancel",
        help="cancel jobs",
        description="Cancel jobs: queued ones at once, running ones are stopped by their node.",
    )
    cancel.add_argument("jobs", metavar="JOB", nargs="+", help="a job id (see mabeam status)")
    add_client_options(cancel)


def run_submit(args: argparse.Namespace) -> int:
    """Submit ``args.spec``; follow it with ``--wait``."""
    from mabeam.ml.spec import load_spec

    spec = load_spec(args.spec)
    return foundation.run(_submit, spec, args, Console())


async def _submit(spec: Any, args: argparse.Namespace, console: Console) -> int:
    from mabeam.cluster.client import connect

    from ._run import adaptive
    from ._search_view import check_run_root, default_run_root, run_searches
    from ._sweep_view import follow

    async with connect(args.coordinator, timeout=args.timeout, **client_security(args)) as client:
        if args.run_dir is not None or adaptive(spec):
            root = Path(args.run_dir) if args.run_dir else default_run_root([spec])
            check_run_root(root, [spec])
            console.print(
                f"running the {spec.search.strategy if spec.search else 'grid'} search of "
                f"{spec.name!r} against {client.address} (the agent runs here, its trials "
                "on the cluster)",
                highlight=False,
            )
            return await run_searches(client, [spec], console, root)
        submission = await client.submit(spec, idempotency_key=args.idempotency_key)
        ids = submission.job_ids
        again = " (already submitted with this key)" if submission.duplicate else ""
        console.print(
            f"submitted {len(ids)} job{'s' if len(ids) != 1 else ''} of {spec.name!r} to "
            f"{client.address} as sweep {submission.sweep_id}{again}",
            highlight=False,
        )
        shown = ids if len(ids) <= SHOWN_IDS else (*ids[:3], "...", *ids[-3:])
        for job_id in shown:
            console.print(f"  {job_id}", highlight=False)
        if not args.wait:
            return 0
        return await follow(client, spec, submission, console)


def run_cancel(args: argparse.Namespace) -> int:
    """Cancel each job of ``args.jobs``; print its state after the request."""
    return foundation.run(_cancel, args, Console())


async def _cancel(args: argparse.Namespace, console: Console) -> int:
    from mabeam.cluster.client import connect

    async with connect(args.coordinator, timeout=args.timeout, **client_security(args)) as client:
        for job_id in args.jobs:
            state = await client.cancel(job_id)
            console.print(f"{job_id}: {state}", highlight=False)
    return 0

"""The chaos run's submitter: a real client process that submits the jobs and watches them.

``python tests/chaos/submitter.py --endpoint tcp://... --jobs N --seed S --out FILE``
submits ``N`` jobs of ``chaos_tasks:work`` in chunks, each chunk with its own
idempotency key (a SUBMIT resent across a coordinator restart must not make new jobs),
the next chunk once half of the previous one has ended. It watches every chunk to the
end and appends what it sees to ``FILE``, one JSON object per line:

- ``{"chunk": k, "xs": [...], "job_ids": [...]}`` once chunk ``k`` is acknowledged;
- ``{"job": id, "state": ..., "attempt": ..., "node": ..., "value": ..., "error": ...}``
  for every terminal event the watch delivers;
- ``{"done": true}`` at the end, or ``{"error": "..."}`` if the client gave up.

This is the submitter's view that the history checker holds against the store.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import anyio

from mabeam.cluster import protocol
from mabeam.cluster.client import Client, connect


def specs(args: argparse.Namespace, xs: range) -> list[protocol.JobSpec]:
    """The jobs of ``xs``: pool workers, every ``process_every``-th in a fresh process."""
    params = {"seed": args.seed, "crash_rate": args.crash_rate, "work": args.work}
    return [
        protocol.JobSpec(
            "chaos_tasks:work",
            {"x": x, **params},
            max_retries=args.max_retries,
            isolation="process" if args.process_every and x % args.process_every == 0 else "pool",
        )
        for x in xs
    ]


def record(out: TextIO, entry: dict[str, Any]) -> None:
    out.write(json.dumps(entry) + "\n")
    out.flush()


async def watch(client: Client, job_ids: tuple[str, ...], out: TextIO, half: anyio.Event) -> None:
    """Record the terminal events of ``job_ids``; set ``half`` once half have ended."""
    ended = 0
    async with client.watch(job_ids) as events:
        async for event in events:
            if not event.terminal:
                continue
            ended += 1
            entry = {"job": event.job_id, "state": event.state, "attempt": event.attempt}
            entry |= {"node": event.node_id, "value": event.value, "error": event.error}
            record(out, entry)
            if 2 * ended >= len(job_ids):
                half.set()
    half.set()


async def run(args: argparse.Namespace, out: TextIO) -> None:
    async with connect(
        args.endpoint, timeout=args.timeout, retry_s=0.25, heartbeat_s=args.heartbeat,
        silence_s=args.silence,
        insecure=args.insecure,
    ) as client, anyio.create_task_group() as group:  # fmt: skip
        previous: anyio.Event | None = None
        for k, start in enumerate(range(0, args.jobs, args.chunk)):
            if previous is not None:
                await previous.wait()
            xs = range(start, min(start + args.chunk, args.jobs))
            key = f"chaos-{args.seed}-{k}"
            submission = await client.submit(specs(args, xs), idempotency_key=key)
            record(out, {"chunk": k, "xs": list(xs), "job_ids": list(submission.job_ids)})
            previous = anyio.Event()
            group.start_soon(watch, client, submission.job_ids, out, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--chunk", type=int, default=20)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--crash-rate", type=float, default=0.0)
    parser.add_argument("--work", type=int, default=20_000)
    parser.add_argument("--max-retries", type=int, default=10)
    parser.add_argument("--process-every", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--heartbeat", type=float, default=0.25)
    parser.add_argument("--silence", type=float, default=1.0)
    parser.add_argument("--insecure", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    with open(args.out, "a", encoding="utf-8") as out:
        try:
            anyio.run(run, args, out)
        except Exception as exc:
            record(out, {"error": f"{type(exc).__name__}: {exc}"})
            raise
        record(out, {"done": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())

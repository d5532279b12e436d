"""The peer of the cluster benchmark: Ray's trivial-task throughput on this machine.

``PYTHON benchmarks/_ray_peer.py N CPUS`` (run as a script by an interpreter that has
``ray``; it imports nothing from this repository) starts a local Ray
(``ray.init(num_cpus=CPUS)``), warms the workers up with one round of tasks, then
submits ``N`` ``@ray.remote def echo(x)`` tasks and ``ray.get``s them all: tasks/s from
the first submit to the last result, printed as one JSON line. Ray keeps results in
its in-memory object store (no durable record), so this is an upper reference for a
task system, not a like-for-like durable one.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    n, cpus = int(argv[0]), int(argv[1])
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:

        @ray.remote
        def echo(x: int) -> int:
            return x

        ray.get([echo.remote(i) for i in range(min(n, 1000))])  # workers started
        t0 = time.perf_counter()
        refs = [echo.remote(i) for i in range(n)]
        values = ray.get(refs)
        elapsed = time.perf_counter() - t0
        if values != list(range(n)):
            raise RuntimeError("ray returned wrong values")
    finally:
        ray.shutdown()
    print(json.dumps({"tasks_per_s": n / elapsed, "version": ray.__version__}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

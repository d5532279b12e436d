"""Run a module under cProfile timed by its main thread's CPU clock.

``python -m benchmarks._cpuprofile OUT.prof -m MODULE [ARGS...]`` (what
``MABEAM_BENCH_PROFILE`` puts in front of each benchmark child). cProfile's default
clock is wall time, which on a loaded 2-core machine bills a process for the time it
waited to be scheduled (a send that woke another process shows up as a slow send);
``time.thread_time`` counts only the CPU the main thread used. Other threads (the
store's SQLite thread, ZeroMQ's I/O thread) are not profiled: read their share with
``psutil`` or py-spy.
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "-m":
        raise SystemExit("usage: python -m benchmarks._cpuprofile OUT.prof -m MODULE [ARGS...]")
    out, module = argv[0], argv[2]
    sys.argv = [module, *argv[3:]]
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        profile.disable()
        profile.dump_stats(out)


if __name__ == "__main__":
    main(sys.argv[1:])

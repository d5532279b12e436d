"""Helpers shared by the benchmark modules: RSS, GC hygiene, the memory probe runner."""

from __future__ import annotations

import gc
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]

_PROC = psutil.Process()


def rss() -> int:
    """Resident set size of this process in bytes, after a full collection."""
    gc.collect()
    gc.collect()
    return int(_PROC.memory_info().rss)


def settle() -> None:
    """Collect garbage before a timed section so earlier runs do not bill it."""
    gc.collect()


class ProbeError(RuntimeError):
    """A memory probe subprocess failed; the message carries its stderr tail."""


def run_memory_probe(impl: str, n: int, timeout: float = 120.0) -> float:
    """Measure bytes per idle actor of ``impl`` in a fresh interpreter.

    Memory is measured in a subprocess because RSS deltas inside a process that has
    already allocated and freed (earlier benchmarks) undercount: the allocator hands
    back recycled pages without growing RSS. The child prints one JSON object with
    ``bytes_per_actor`` (see ``benchmarks._memprobe``).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks._memprobe", impl, str(n)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ProbeError(
            f"memory probe {impl!r} failed (rc={proc.returncode}): " + " | ".join(tail)
        )
    try:
        last = proc.stdout.strip().splitlines()[-1]
        return float(json.loads(last)["bytes_per_actor"])
    except (IndexError, KeyError, ValueError) as exc:
        raise ProbeError(f"memory probe {impl!r} printed no result: {proc.stdout!r}") from exc


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }

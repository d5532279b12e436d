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
    """A benchmark subprocess failed; the message carries its stderr tail."""


def run_json_module(
    module: str, args: list[str], label: str, timeout: float, *, python: str | None = None
) -> Any:
    """Run ``python -m module *args`` from the repository root (with ``python``, default
    this interpreter); the JSON object on the last line of its stdout (``ProbeError``
    with the stderr tail when it fails)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [python or sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ProbeError(f"{label} failed (rc={proc.returncode}): " + " | ".join(tail))
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        raise ProbeError(f"{label} printed no result: {proc.stdout!r}") from exc


def run_memory_probe(impl: str, n: int, timeout: float = 120.0) -> float:
    """Measure bytes per idle actor of ``impl`` in a fresh interpreter.

    Memory is measured in a subprocess because RSS deltas inside a process that has
    already allocated and freed (earlier benchmarks) undercount: the allocator hands
    back recycled pages without growing RSS. The child prints one JSON object with
    ``bytes_per_actor`` (see ``benchmarks._memprobe``).
    """
    result = run_json_module("benchmarks._memprobe", [impl, str(n)], f"memory probe {impl!r}",
                             timeout)
    try:
        return float(result["bytes_per_actor"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProbeError(f"memory probe {impl!r} printed no result: {result!r}") from exc


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

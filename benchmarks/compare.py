"""Side-by-side benchmarks: ours vs the minimal actor, raw asyncio and peers.

    python -m benchmarks.compare kernel [--short] [--check] [--json PATH]
    python -m benchmarks.compare supervision [--short] [--check] [--json PATH]
    python -m benchmarks.compare registry [--short] [--check] [--json PATH]
    python -m benchmarks.compare cluster [--short] [--check] [--json PATH] [--ray-python PATH]
    python -m benchmarks.compare agents [--short] [--check] [--json PATH]
    python -m benchmarks.compare economics [--short] [--check] [--json PATH]

Every figure is taken in this one process run (memory in fresh child interpreters, see
``benchmarks._memprobe``), each best of R repetitions interleaved across
implementations, and judged as a ratio against its reference. ``--check`` exits 1 when
a ratio misses its floor by more than the tolerance; absolute times never fail a run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from . import _baselines, _peers
from ._common import run_memory_probe
from ._report import banner, conclude, run_checked
from ._report import render as _render

# --------------------------------------------------------------------------- targets
# DESIGN.md §6. Ratios are ours / reference (for registry: ours_ns / dict_ns). A check
# fails only when it misses its bound by more than TARGETS["tolerance"] (relative):
# ratio >= floor * (1 - tol), ratio <= ceiling * (1 + tol), bytes <= limit * (1 + tol).
TARGETS: dict[str, Any] = {
    "tolerance": 0.10,
    "cast": {"min_vs_minimal": 0.5, "min_vs_raw_queue": 1.0},
    "call": {"min_vs_minimal": 0.6, "min_vs_raw_reply": 0.8},
    "spawn": {"min_vs_minimal": 0.3, "min_vs_pykka": 20.0},
    "memory": {"max_bytes_per_actor": 2048.0},
    "registry": {"max_vs_dict_get": 2.0},
}

# Sizes per mode: messages / round trips / actors per sample, repetitions R.
# Spawn rates fall as live objects pile up (the cyclic GC walks them), so "spawn" is the
# same in both modes: --short then predicts the full run. The pykka spawn ratio is taken
# at one count on both sides (2,000 actors: pykka starts a thread per actor and 10k
# would take ~7-10 s per sample).
SIZES: dict[str, dict[str, int]] = {
    "normal": {
        "reps": 5,
        "mem_reps": 2,
        "cast": 200_000,
        "call": 50_000,
        "spawn": 10_000,
        "pykka_tell": 50_000,
        "pykka_ask": 2_000,
        "pykka_spawn": 2_000,
        "thespian_tell": 50_000,
        "thespian_ask": 10_000,
        "mem_actors": 100_000,
        "mem_pykka": 2_000,
        "reg_keys": 10_000,
        "reg_lookups": 200_000,
    },
    "short": {
        "reps": 3,
        "mem_reps": 1,
        "cast": 50_000,
        "call": 10_000,
        "spawn": 10_000,
        "pykka_tell": 10_000,
        "pykka_ask": 500,
        "pykka_spawn": 2_000,
        "thespian_tell": 10_000,
        "thespian_ask": 2_000,
        "mem_actors": 20_000,
        "mem_pykka": 500,
        "reg_keys": 10_000,
        "reg_lookups": 50_000,
    },
}

COLUMNS = ("ours", "minimal", "raw", "pykka", "thespian")
COLUMN_TITLES = {
    "ours": "ours",
    "minimal": "minimal actor",
    "raw": "raw",
    "pykka": "pykka",
    "thespian": "thespian",
}


@dataclass
class Metric:
    name: str
    unit: str
    higher_is_better: bool
    runners: dict[str, Callable[[], float]]
    reps: int
    note: str = ""
    values: dict[str, float | None] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # column -> why n/a
    errors: dict[str, str] = field(default_factory=dict)  # column -> error


@dataclass
class Check:
    metric: str
    label: str
    kind: str  # "min_ratio" | "max_ratio" | "max_abs" | "info"
    ref: str | None
    bound: float | None
    value: float | None = None
    result: str = "skip"
    reason: str = ""


# --------------------------------------------------------------------------- collection


def _load_ours() -> tuple[Any, str]:
    try:
        from . import _ours
    except ImportError as exc:
        return None, str(exc)
    return _ours, ""


def _build_metrics(sizes: dict[str, int]) -> tuple[list[Metric], Any, str]:
    ours, ours_err = _load_ours()
    reps, mem_reps = sizes["reps"], sizes["mem_reps"]

    def ours_fn(attr: str, n: int) -> Callable[[], float]:
        if ours is None:
            return lambda: _raise(ImportError(ours_err))
        fn = getattr(ours, attr)
        return lambda: fn(n)

    def mem(impl: str, n: int) -> Callable[[], float]:
        if impl == "ours" and ours is None:
            return lambda: _raise(ImportError(ours_err))
        return lambda: run_memory_probe(impl, n)

    s = sizes
    metrics = [
        Metric(
            "cast",
            "msgs/s",
            True,
            {
                "ours": ours_fn("cast_rate", s["cast"]),
                "minimal": lambda: _baselines.minimal_cast_rate(s["cast"]),
                "raw": lambda: _baselines.queue_throughput(s["cast"]),
                "pykka": lambda: _peers.pykka_tell_rate(s["pykka_tell"]),
                "thespian": lambda: _peers.thespian_tell_rate(s["thespian_tell"]),
            },
            reps,
            note="raw = asyncio.Queue 1->1; peers: tell",
        ),
        Metric(
            "call",
            "calls/s",
            True,
            {
                "ours": ours_fn("call_rate", s["call"]),
                "minimal": lambda: _baselines.minimal_call_rate(s["call"]),
                "raw": lambda: _baselines.request_reply_rate(s["call"]),
                "pykka": lambda: _peers.pykka_ask_rate(s["pykka_ask"]),
                "thespian": lambda: _peers.thespian_ask_rate(s["thespian_ask"]),
            },
            reps,
            note="raw = Queue + Future request/reply; peers: ask",
        ),
        Metric(
            "spawn",
            "actors/s",
            True,
            {
                "ours": ours_fn("spawn_rate", s["spawn"]),
                "minimal": lambda: _baselines.minimal_spawn_rate(s["spawn"]),
            },
            reps,
            note=f"{s['spawn']} actors per sample",
        ),
        Metric(
            "spawn_pykka",
            "actors/s",
            True,
            {
                # Same actor count on both sides: pykka's rate falls as its live threads
                # pile up, and so does ours as live objects do.
                "ours": ours_fn("spawn_rate", s["pykka_spawn"]),
                "pykka": lambda: _peers.pykka_spawn_rate(s["pykka_spawn"]),
            },
            max(2, reps - 2),
            note=f"{s['pykka_spawn']} actors per sample on both sides",
        ),
        Metric(
            "memory",
            "bytes/actor",
            False,
            {
                "ours": mem("ours", s["mem_actors"]),
                "minimal": mem("minimal", s["mem_actors"]),
                "raw": mem("task_queue", s["mem_actors"]),
                "pykka": mem("pykka", s["mem_pykka"]),
            },
            mem_reps,
            note="RSS delta in a fresh interpreter; raw = task parked on a Queue",
        ),
    ]
    return metrics, ours, ours_err


def _raise(exc: BaseException) -> float:
    raise exc


_UNAVAILABLE = (ImportError, _peers.PeerUnavailable)


def _collect(metric: Metric, console: Console) -> None:
    best: dict[str, float] = {}
    for _ in range(metric.reps):  # interleave implementations: drift hits all alike
        for col, fn in metric.runners.items():
            if col in metric.missing or col in metric.errors:
                continue
            try:
                v = fn()
            except _UNAVAILABLE as exc:
                metric.missing[col] = str(exc)
                continue
            except Exception as exc:
                metric.errors[col] = f"{type(exc).__name__}: {exc}"
                continue
            if col not in best:
                best[col] = v
            else:
                best[col] = max(best[col], v) if metric.higher_is_better else min(best[col], v)
    for col in COLUMNS:
        metric.values[col] = best.get(col)


def _registry_metric(sizes: dict[str, int], ours: Any, ours_err: str) -> Metric:
    metric = Metric(
        "registry",
        "ns/lookup",
        False,
        {},
        sizes["reps"],
        note=f"{sizes['reg_keys']} keys, random pattern; raw = dict.get",
    )
    n_keys, n_lookups, reps = sizes["reg_keys"], sizes["reg_lookups"], sizes["reps"]
    res: dict[str, float] = {}
    if ours is None:
        metric.missing["ours"] = ours_err
    else:
        try:
            res = ours.registry_lookup_ns(n_keys, n_lookups, reps)
        except Exception as exc:
            metric.errors["ours"] = f"{type(exc).__name__}: {exc}"
    if not res:
        res = _baselines.dict_lookup_ns(n_keys, n_lookups, reps)
    metric.values = {c: None for c in COLUMNS}
    metric.values["ours"] = res.get("whereis")
    metric.values["raw"] = res.get("dict_get")
    metric.values["locked"] = res.get("locked_get")
    return metric


def _checks(metrics: dict[str, Metric]) -> list[Check]:
    t = TARGETS
    checks = [
        Check("cast", "ours / minimal actor", "min_ratio", "minimal", t["cast"]["min_vs_minimal"]),
        Check("cast", "ours / raw Queue", "min_ratio", "raw", t["cast"]["min_vs_raw_queue"]),
        Check("cast", "ours / pykka tell", "info", "pykka", None),
        Check("cast", "ours / thespian tell", "info", "thespian", None),
        Check("call", "ours / minimal actor", "min_ratio", "minimal", t["call"]["min_vs_minimal"]),
        Check("call", "ours / raw req-reply", "min_ratio", "raw", t["call"]["min_vs_raw_reply"]),
        Check("call", "ours / pykka ask", "info", "pykka", None),
        Check("call", "ours / thespian ask", "info", "thespian", None),
        Check(
            "spawn", "ours / minimal actor", "min_ratio", "minimal", t["spawn"]["min_vs_minimal"]
        ),
        Check("spawn_pykka", "ours / pykka", "min_ratio", "pykka", t["spawn"]["min_vs_pykka"]),
        Check("memory", "ours bytes/actor", "max_abs", None, t["memory"]["max_bytes_per_actor"]),
        Check("memory", "ours / pykka", "info", "pykka", None),
        Check("memory", "ours / minimal actor", "info", "minimal", None),
        Check("registry", "ours / dict.get", "max_ratio", "raw", t["registry"]["max_vs_dict_get"]),
        Check("registry", "ours / Lock+dict get", "info", "locked", None),
    ]
    tol = float(t["tolerance"])
    for c in checks:
        m = metrics.get(c.metric)
        if m is None:
            c.reason = "not measured"
            continue
        ours = m.values.get("ours")
        if ours is None:
            err = m.errors.get("ours") or m.missing.get("ours") or "no value"
            c.result, c.reason = ("ERROR", err) if c.kind != "info" else ("skip", err)
            continue
        if c.kind == "max_abs":
            assert c.bound is not None
            c.value = ours
            c.result = _judge(ours <= c.bound, ours <= c.bound * (1 + tol))
            continue
        assert c.ref is not None
        ref = m.values.get(c.ref)
        if ref is None or ref == 0:
            why = m.errors.get(c.ref) or m.missing.get(c.ref) or "no value"
            c.result = "ERROR" if c.ref in m.errors and c.kind != "info" else "skip"
            c.reason = why
            continue
        c.value = ours / ref
        if c.kind == "info":
            c.result = "info"
        elif c.kind == "min_ratio":
            assert c.bound is not None
            c.result = _judge(c.value >= c.bound, c.value >= c.bound * (1 - tol))
        else:
            assert c.bound is not None
            c.result = _judge(c.value <= c.bound, c.value <= c.bound * (1 + tol))
    return checks


def _judge(strict: bool, tolerant: bool) -> str:
    if strict:
        return "pass"
    return "pass~" if tolerant else "FAIL"


# --------------------------------------------------------------------------- output


# --------------------------------------------------------------------------- entry


def run_kernel(short: bool, check: bool, json_path: str | None, console: Console) -> int:
    """Run the kernel suite; with ``check``, a failed floor is measured once more."""
    return run_checked(lambda: _run_kernel_once(short, check, json_path, console), check, console)


def _run_kernel_once(short: bool, check: bool, json_path: str | None, console: Console) -> int:
    mode = "short" if short else "normal"
    sizes = SIZES[mode]
    info = banner(console, "kernel", f"{mode}, best of {sizes['reps']}")
    t_start = time.perf_counter()
    metrics, ours, ours_err = _build_metrics(sizes)
    if ours is None:
        console.print(f"[bold red]kernel unavailable:[/bold red] {ours_err}")
    for m in metrics:
        t0 = time.perf_counter()
        _collect(m, console)
        console.print(f"  [dim]{m.name}: {time.perf_counter() - t0:.1f} s[/dim]")
    t0 = time.perf_counter()
    metrics.append(_registry_metric(sizes, ours, ours_err))
    console.print(f"  [dim]registry: {time.perf_counter() - t0:.1f} s[/dim]")
    checks = _checks({m.name: m for m in metrics})
    total = time.perf_counter() - t_start
    _render(
        metrics,
        checks,
        console,
        f"kernel benchmarks ({mode}, tolerance {TARGETS['tolerance']:.0%}, {total:.1f} s)",
        COLUMNS,
        COLUMN_TITLES,
        float(TARGETS["tolerance"]),
    )
    failed = [c for c in checks if c.result in {"FAIL", "ERROR"}]
    return conclude(
        console,
        json_path,
        check,
        [f"{c.metric} {c.label}" for c in failed],
        (mode, info, sizes, TARGETS, total),
        metrics={
            m.name: {"unit": m.unit, "values": m.values, "missing": m.missing, "errors": m.errors}
            for m in metrics
        },
        checks=[c.__dict__ for c in checks],
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.compare",
        description="Benchmarks measured side by side with their references; see "
        "benchmarks/README.md.",
    )
    sub = p.add_subparsers(dest="suite", required=True, metavar="SUITE")
    suites = {
        "kernel": ("foundation kernel vs minimal actor, raw asyncio, peers", False),
        "supervision": ("supervisor restarts vs plain spawns; pykka bridge", False),
        "registry": ("registry backends (dict, shared memory) vs dict, Lock+dict, Manager", False),
        "cluster": ("coordinator + node agents vs a raw ZeroMQ dispatcher, heartbeats, Ray", True),
        "agents": ("coordination protocols and agent spawns vs the plain calls they wrap", False),
        "economics": (
            "auctions and the market policy vs the hand-written code they replace",
            False,
        ),
    }
    for name, (text, sizes_only) in suites.items():
        suite = sub.add_parser(name, help=text)
        short = "small sizes (CI)" if sizes_only else "small sizes, fewer repetitions (CI)"
        suite.add_argument("--short", action="store_true", help=short)
        suite.add_argument(
            "--check",
            action="store_true",
            help="exit 1 if a ratio misses its bound beyond tolerance",
        )
        suite.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
        if name == "cluster":
            suite.add_argument(
                "--ray-python",
                metavar="PATH",
                help="interpreter with ray installed for the peer (default: $MABEAM_RAY_PYTHON, "
                "else this one if it imports ray)",
            )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.json:
        parent = Path(args.json).expanduser().resolve().parent
        if not parent.is_dir():
            parser.error(f"--json: directory {str(parent)!r} does not exist")
    console = Console()
    if not console.is_terminal or console.width < 150:
        console = Console(width=170)  # CI logs: keep the table on one line per row
    if args.suite == "kernel":
        return run_kernel(args.short, args.check, args.json, console)
    if args.suite == "supervision":
        from ._suite_supervision import run_supervision

        return run_supervision(args.short, args.check, args.json, console)
    if args.suite == "registry":
        from ._suite_registry import run_registry

        return run_registry(args.short, args.check, args.json, console)
    if args.suite == "cluster":
        from ._suite_cluster import run_cluster

        return run_cluster(args.short, args.check, args.json, console, args.ray_python)
    if args.suite == "agents":
        from ._suite_agents import run_agents

        return run_agents(args.short, args.check, args.json, console)
    if args.suite == "economics":
        from ._suite_economics import run_economics

        return run_economics(args.short, args.check, args.json, console)
    return 2  # pragma: no cover - argparse rejects unknown suites


if __name__ == "__main__":
    sys.exit(main())

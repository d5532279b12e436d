"""``python -m benchmarks.compare registry``: the registry backends beside their references.

Four tables, every figure taken side by side in this run (measurements in
``benchmarks._registry_bench`` and, for the second OS process, ``_registry_child``):

1. One process: ``whereis`` on a ``DictBackend`` registry (``Registry(DictBackend())``
   and ``rt.registry``) vs ``dict.get`` and a Lock-guarded get, on 1k hot keys and on
   1M keys (``--short``: 100k) in a random order (best of R, interleaved).
2. Register + unregister cost per write on a warm registry, both backends, vs dict
   set + del and a Lock+dict.
3. A second OS process attached to a ``SharedMemoryBackend`` table (1k keys; full run
   also 100k): a cached hit, a refresh, a first lookup, ``lookup()``, ``dict.get`` and a
   ``multiprocessing.Manager().dict()`` proxy get (median over rounds).
4. Register N entries into an empty registry then unregister them all, both backends and
   the dict references, at 1k / 100k / 1M (``--short``: 1k / 10k / 100k): ops/s and how
   the cost per write grows with N.

Checked (``TARGETS``; a check fails when it misses its bound by more than its
tolerance): ``whereis`` <= 2 x ``dict.get`` (both DictBackend rows, 10 %), and a second
process's cached hit >= 100 x faster than a Manager dict get at 1k keys (25 %: see
benchmarks/README.md). The issue's 1 us hit target is absolute, so it is reported and
never fails a run. Everything else is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from rich.console import Console

from ._report import banner, conclude, render, run_checked

TARGETS: dict[str, Any] = {
    "tolerance": 0.10,
    # DictBackend: ns per whereis / ns per dict.get, same keys, pattern and loop shape.
    "dict_lookup": {"max_vs_dict_get": 2.0},
    # SharedMemoryBackend read from a second OS process, 1k keys (the first shm size):
    # Manager dict get ns / cached whereis ns, both medians; the 1 us is reported only.
    # Its own tolerance: the two sides react differently to a busy machine (the hit is
    # pure CPU, the Manager get mostly wake-up latency): 101-178x measured on an idle
    # 2-core machine, 81-197x with other jobs on it (benchmarks/README.md).
    "shm_lookup": {"min_manager_vs_hit": 100.0, "hit_target_ns": 1000.0, "tolerance": 0.25},
}

SIZES: dict[str, dict[str, Any]] = {
    "normal": {
        "reps": 5,
        "hot_keys": 1_000,
        "hot_lookups": 200_000,
        "big_keys": 1_000_000,
        "big_reps": 3,
        "write_keys": 1_000,
        "write_cycles": 20,
        "write_shm_cycles": 1,
        "shm_keys": [1_000, 100_000],
        "rounds": 9,
        "hit_batch": 20_000,
        "cold_batch": 1_000,
        "lookup_batch": 1_000,
        "manager_batch": 1_000,
        "fill": [1_000, 100_000, 1_000_000],
        "fill_ops_per_rep": 2_000_000,
        "fill_shm_ops_per_rep": 50_000,
        "fill_min_ops": 200_000,
        "fill_shm_min_ops": 20_000,
    },
    "short": {
        "reps": 3,
        "hot_keys": 1_000,
        "hot_lookups": 100_000,
        "big_keys": 100_000,
        "big_reps": 3,
        "write_keys": 1_000,
        "write_cycles": 10,
        "write_shm_cycles": 1,
        "shm_keys": [1_000],
        "rounds": 7,
        "hit_batch": 20_000,
        "cold_batch": 1_000,
        "lookup_batch": 1_000,
        "manager_batch": 1_000,
        "fill": [1_000, 10_000, 100_000],
        "fill_ops_per_rep": 2_000_000,
        "fill_shm_ops_per_rep": 50_000,
        "fill_min_ops": 200_000,
        "fill_shm_min_ops": 20_000,
    },
}

LOOKUP = ("registry", "runtime", "dict", "locked")
WRITE = ("registry", "backend", "shm", "dict", "locked")
FILL = ("registry", "shm", "dict", "locked")
TITLES = {
    "registry": "Registry(dict)",
    "runtime": "rt.registry",
    "backend": "DictBackend",
    "shm": "Registry(shm)",
    "dict": "dict",
    "locked": "Lock+dict",
}
SECOND = ("hit", "refresh", "cold", "lookup", "dict_get", "manager")
SECOND_TITLES = {
    "hit": "whereis hit",
    "refresh": "refresh",
    "cold": "first whereis",
    "lookup": "lookup()",
    "dict_get": "dict.get",
    "manager": "Manager dict",
}

@dataclass
class Metric:
    """One row group of a table (the shape ``_report.render`` reads)."""

    name: str
    unit: str
    note: str = ""
    values: dict[str, float | None] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class Check:
    """One judged (or reported) figure of a metric."""

    metric: str
    label: str
    kind: str  # "max_ratio" | "min_ratio" | "max_abs" (reported) | "info"
    bound: float | None
    gate: bool  # whether --check fails on it
    tolerance: float = 0.0
    value: float | None = None
    target: float | None = None  # "max_abs": the reported target (no bound: never fails)
    result: str = "skip"
    reason: str = ""


def _k(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def _reps(n: int, ops: int, reps: int) -> int:
    """Samples of a fill+drain of ``n``: at most ``reps``, about ``ops`` writes in all,
    at least one."""
    return max(1, min(reps, ops // (2 * n)))


def _loops(n: int, min_ops: int) -> int:
    """Fills+drains per sample, so that a sample makes at least ``min_ops`` writes."""
    return max(1, -(-min_ops // (2 * n)))


# --------------------------------------------------------------------------- measuring


def _attempt(metric: Metric, cols: tuple[str, ...], fn: Callable[[], Any]) -> Any:
    """Run one measurement; on an exception, mark ``cols`` of ``metric`` as errors."""
    try:
        return fn()
    except ImportError as exc:
        for col in cols:
            metric.missing[col] = str(exc)
    except Exception as exc:
        for col in cols:
            metric.errors[col] = f"{type(exc).__name__}: {exc}"
    return None


@dataclass
class Measured:
    """The metrics of each table, and the raw numbers behind them (for the JSON)."""

    lookup: list[Metric] = field(default_factory=list)
    write: list[Metric] = field(default_factory=list)
    second: list[Metric] = field(default_factory=list)
    fill: list[Metric] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def all(self) -> list[Metric]:
        return [*self.lookup, *self.write, *self.second, *self.fill]


def _measure(sizes: dict[str, Any], console: Console) -> Measured:
    from . import _registry_bench as B

    reps = int(sizes["reps"])
    out = Measured()
    raw = out.raw

    def step(m: Metric, cols: tuple[str, ...], fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        res = _attempt(m, cols, fn)
        console.print(f"  [dim]{m.name}: {time.perf_counter() - t0:.1f} s[/dim]")
        return res

    for label, n, n_lookups, r, note in (
        ("hot", sizes["hot_keys"], sizes["hot_lookups"], reps,
         f"{sizes['hot_lookups']:,} random picks among the keys"),
        ("random", sizes["big_keys"], None, sizes["big_reps"],
         "every key once, in a random order"),
    ):
        m = Metric(f"lookup {_k(n)} {label}", "ns/lookup", note=f"{note}; best of {r}")
        res = step(m, LOOKUP, partial(B.dict_lookups, n, n_lookups, r))
        m.values = {c: (res or {}).get(c) for c in LOOKUP}
        raw[m.name] = res
        out.lookup.append(m)

    n = int(sizes["write_keys"])
    m = Metric(
        f"write {_k(n)}",
        "us/op",
        note=f"register then unregister {n:,} keys, x{sizes['write_cycles']} "
        f"(shm x{sizes['write_shm_cycles']}); cost per write, best of {reps}",
    )
    res = step(m, WRITE, partial(
        B.write_cycle_ns, n, sizes["write_cycles"], sizes["write_shm_cycles"], reps))
    m.values = {c: None if res is None else res[c] / 1e3 for c in WRITE}
    raw[m.name] = res
    out.write.append(m)

    for n in sizes["shm_keys"]:
        m = Metric(
            f"shm {_k(n)} keys",
            "ns/lookup",
            note=f"second OS process, median of {sizes['rounds']} rounds; batches: hit "
            f"and dict.get {sizes['hit_batch']:,}, refresh/first/lookup() "
            f"{min(n, sizes['cold_batch']):,}, Manager {sizes['manager_batch']:,}",
        )
        res = step(m, SECOND, partial(B.shm_second_process, n, sizes))
        m.values = {c: None if res is None else res["median_ns"][c] for c in SECOND}
        raw[m.name] = res
        out.second.append(m)

    for n in sizes["fill"]:
        dict_reps = _reps(n, sizes["fill_ops_per_rep"], reps)
        shm_reps = _reps(n, sizes["fill_shm_ops_per_rep"], reps)
        loops, shm_loops = _loops(n, sizes["fill_min_ops"]), _loops(n, sizes["fill_shm_min_ops"])
        m = Metric(
            f"fill+drain {_k(n)}",
            "ops/s",
            note=f"register {n:,} into an empty registry, then unregister them; a sample "
            f"is {loops} (shm {shm_loops}) of those; best of {dict_reps} (shm {shm_reps})",
        )
        res = step(m, FILL, partial(B.fill_drain, n, dict_reps, shm_reps, loops, shm_loops))
        for c in FILL:
            t = None if res is None else res.get(c)
            m.values[c] = None if t is None else 2 * n / (t["register_s"] + t["unregister_s"])
        raw[m.name] = res
        out.fill.append(m)
    return out


# --------------------------------------------------------------------------- judging


def _judge(c: Check) -> None:
    v, b, tol = c.value, c.bound, c.tolerance
    if v is None:
        return
    if c.kind == "max_abs":
        c.result = "info" if c.target is None else ("pass" if v <= c.target else "over")
    elif c.kind == "info" or b is None:
        c.result = "info"
    elif c.kind == "max_ratio":
        c.result = "pass" if v <= b else ("pass~" if v <= b * (1 + tol) else "FAIL")
    else:
        c.result = "pass" if v >= b else ("pass~" if v >= b * (1 - tol) else "FAIL")


def _ratio(
    checks: list[Check], m: Metric, label: str, num: float | None, den: float | None,
    kind: str = "info", bound: float | None = None, why: str = "", gate: bool = False,
    tolerance: float = float(TARGETS["tolerance"]),
) -> None:
    c = Check(m.name, label, kind, bound, gate, tolerance)
    if num is None or not den:
        failed = bool(m.errors)
        c.result = "ERROR" if (gate and failed) else "skip"
        c.reason = why or "; ".join({**m.missing, **m.errors}.values()) or "no value"
    else:
        c.value = num / den
    checks.append(c)


def _checks(ms: Measured) -> list[Check]:
    t = TARGETS
    checks: list[Check] = []
    dict_max = float(t["dict_lookup"]["max_vs_dict_get"])
    for m in ms.lookup:
        v = m.values
        _ratio(checks, m, "Registry(dict) / dict.get", v.get("registry"), v.get("dict"),
               "max_ratio", dict_max, gate=True)
        _ratio(checks, m, "rt.registry / dict.get", v.get("runtime"), v.get("dict"),
               "max_ratio", dict_max, gate=True)
        _ratio(checks, m, "Registry(dict) / Lock+dict", v.get("registry"), v.get("locked"))
    for m in ms.write:
        v = m.values
        _ratio(checks, m, "Registry(dict) / dict set+del", v.get("registry"), v.get("dict"))
        _ratio(checks, m, "DictBackend / dict set+del", v.get("backend"), v.get("dict"))
        _ratio(checks, m, "Registry(dict) / Lock+dict", v.get("registry"), v.get("locked"))
        _ratio(checks, m, "Registry(shm) / Registry(dict)", v.get("shm"), v.get("registry"))
    shm = t["shm_lookup"]
    for i, m in enumerate(ms.second):
        v = m.values
        if i == 0:
            _ratio(checks, m, "Manager / hit", v.get("manager"), v.get("hit"), "min_ratio",
                   float(shm["min_manager_vs_hit"]), gate=True,
                   tolerance=float(shm["tolerance"]))
        else:  # larger tables: reported (the hit is then bound by memory latency)
            _ratio(checks, m, "Manager / hit", v.get("manager"), v.get("hit"))
        checks.append(Check(
            m.name, f"hit <= {shm['hit_target_ns'] / 1e3:g} us target (reported)", "max_abs",
            None, False, value=v.get("hit"), target=float(shm["hit_target_ns"]),
        ))
        _ratio(checks, m, "hit / dict.get", v.get("hit"), v.get("dict_get"))
        _ratio(checks, m, "Manager / first whereis", v.get("manager"), v.get("cold"))
        _ratio(checks, m, "Manager / lookup()", v.get("manager"), v.get("lookup"))
    fill = ms.fill
    base = fill[0].values if fill else {}
    for i, m in enumerate(fill):
        v = m.values
        if i:
            # cost per write at N over the cost per write at the first size (rates inverted)
            _ratio(checks, m, f"Registry(dict) per-op vs {fill[0].name.split()[-1]}",
                   base.get("registry"), v.get("registry"))
            _ratio(checks, m, f"Registry(shm) per-op vs {fill[0].name.split()[-1]}",
                   base.get("shm"), v.get("shm"))
        _ratio(checks, m, "Registry(dict) cost / dict", v.get("dict"), v.get("registry"))
        _ratio(checks, m, "Registry(shm) cost / Registry(dict)", v.get("registry"), v.get("shm"))
    for c in checks:
        _judge(c)
    return checks


# --------------------------------------------------------------------------- entry


def run_registry(short: bool, check: bool, json_path: str | None, console: Console) -> int:
    """Run the suite; with ``check``, a failed bound is measured once more (noise)."""
    return run_checked(lambda: _run_once(short, check, json_path, console), check, console)


def _run_once(short: bool, check: bool, json_path: str | None, console: Console) -> int:
    mode = "short" if short else "normal"
    sizes = SIZES[mode]
    info = banner(
        console, "registry",
        f"{mode}, best of {sizes['reps']}; second process: median of {sizes['rounds']} rounds",
    )
    t0 = time.perf_counter()
    ms = _measure(sizes, console)
    checks = _checks(ms)
    total = time.perf_counter() - t0
    tol = float(TARGETS["tolerance"])
    shm_tol = float(TARGETS["shm_lookup"]["tolerance"])
    for metrics, title, cols, titles, t in (
        (ms.lookup, f"registry lookups, one process ({mode}, tolerance {tol:.0%}, "
         f"{total:.1f} s in all)", LOOKUP, TITLES, tol),
        (ms.write, "register + unregister on a warm registry (us per write)", WRITE, TITLES,
         tol),
        (ms.second, "SharedMemoryBackend read from a second OS process (median ns per lookup;"
         f" tolerance {shm_tol:.0%})", SECOND, SECOND_TITLES, shm_tol),
        (ms.fill, "register N into an empty registry, then unregister them (writes per second)",
         FILL, TITLES, tol),
    ):
        render(metrics, checks, console, title, cols, titles, t)
    failed = [c for c in checks if c.gate and c.result in {"FAIL", "ERROR"}]
    return conclude(
        console, json_path, check, [f"{c.metric} {c.label}" for c in failed],
        (mode, info, sizes, TARGETS, total),
        measured=ms.raw,
        metrics={
            m.name: {"unit": m.unit, "values": m.values, "missing": m.missing,
                     "errors": m.errors}
            for m in ms.all()
        },
        checks=[c.__dict__ for c in checks],
    )

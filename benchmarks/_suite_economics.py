"""``python -m benchmarks.compare economics``: auctions and the market policy beside the
code they replace.

Rows (each taken side by side in this run):

- the sealed-bid Vickrey auction actor among N live ``Bidder`` actors vs the same N
  bids gathered by direct calls and cleared with ``vickrey()``: auctions per second,
  ratio checked (``benchmarks._economics_actors``);
- the pure clearings of 1,000 bids: ``vickrey`` vs ``heapq.nlargest(2)``, ``vcg`` on
  unit bids for 8 units vs a sort-based multi-unit Vickrey, ``vcg`` on bundles of 1-4
  units vs a greedy fill: clearings per second, ratios checked (``benchmarks._economics``);
- slot freed -> pick: ``AuctionPolicy.assign`` vs ``FifoPolicy.assign`` with Q jobs of
  T teams queued, mean and p99 microseconds, ratio of the means checked;
- value allocated by ``auction`` vs ``fifo`` in a seeded discrete-event simulation
  (``benchmarks._economics_sim``): ratio checked with no tolerance (it is
  deterministic), budgets kept, the same figures with budgets that bind (reported).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from rich.console import Console

from ._report import banner, conclude_rows, render_rows, run_checked

TARGETS: dict[str, Any] = {
    "tolerance": 0.10,
    # Measured 0.41-0.44 x (an asker actor, a monitor and a record per bidder).
    "sealed_auction": {"min_vs_direct": 0.25},
    # Measured 0.16-0.28 x: the mechanisms check every bid (type, range, duplicates) and
    # keep the tie rule; the peers trust their input.
    "clearing": {"min_vs_peer": 0.1},
    # Measured 12.5-19.9 x with T = 4: an auction among each team's first 2 jobs against
    # one heap pop; independent of Q, linear in T (T = 16: ~45 x, reported).
    "assign": {"max_vs_fifo": 35.0},
    # Deterministic for the seeds: 1.22 (short), 1.18 (full); one seed alone: 1.01-1.31.
    "value": {"min_vs_fifo": 1.1},
}

SIZES: dict[str, dict[str, Any]] = {
    "normal": {
        "reps": 5, "bidders": 1_000, "rounds": 10, "bids": 1_000, "clear_s": 0.3,
        "picks": 5_000, "queues": [(1_000, 4), (10_000, 4), (10_000, 16)],
        "seeds": list(range(1, 21)), "horizon_h": 168.0,
    },
    "short": {
        "reps": 3, "bidders": 1_000, "rounds": 3, "bids": 1_000, "clear_s": 0.1,
        "picks": 1_000, "queues": [(1_000, 4), (10_000, 4)],
        "seeds": list(range(1, 9)), "horizon_h": 48.0,
    },
}  # fmt: skip


def _best(fn: Callable[[], dict[str, float]], reps: int) -> dict[str, float]:
    """Per key, the lowest value (a time) over ``reps`` runs."""
    best: dict[str, float] = {}
    for _ in range(reps):
        for k, v in fn().items():
            best[k] = min(v, best.get(k, v))
    return best


def _timed(console: Console, name: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    out = fn()
    console.print(f"  [dim]{name}: {time.perf_counter() - t0:.1f} s[/dim]")
    return out


def _measure(sizes: dict[str, Any], console: Console) -> dict[str, Any]:
    from . import _economics as E
    from . import _economics_actors as A
    from . import _economics_sim as S

    reps = sizes["reps"]
    out: dict[str, Any] = {}
    out["sealed"] = _timed(
        console,
        "sealed-bid auction",
        lambda: _best(lambda: A.sealed_round(sizes["bidders"], sizes["rounds"]), reps),
    )
    out["clearing"] = _timed(
        console, "clearing", lambda: E.clearing_rates(sizes["bids"], sizes["clear_s"], reps)
    )

    def assign(queued: int, teams: int) -> dict[str, float]:
        return _best(lambda: E.assign_latency(queued, teams, sizes["picks"]), reps)

    out["assign"] = {}
    for q, t in sizes["queues"]:
        out["assign"][f"{q}x{t}"] = _timed(console, f"assign Q={q} T={t}", partial(assign, q, t))
    seeds, horizon = sizes["seeds"], sizes["horizon_h"]
    out["value"] = _timed(console, "value", lambda: S.compare(seeds, horizon, S.BUDGETS))
    out["tight"] = _timed(
        console, "value, tight budgets", lambda: S.compare(seeds, horizon, S.TIGHT)
    )
    return out


def _judge(ok: bool, near: bool) -> str:
    return "pass" if ok else ("pass~" if near else "FAIL")


def _row(
    metric: str,
    ours: str,
    reference: str,
    ratio: float,
    bound: float | None,
    ceiling: bool = False,
    tol: float | None = None,
) -> dict[str, Any]:
    """One row; ``bound`` None: reported only. ``tol`` defaults to the suite's."""
    tol = float(TARGETS["tolerance"]) if tol is None else tol
    row = {"metric": metric, "ours": ours, "reference": reference, "ratio": f"{ratio:.2f}x",
           "value": ratio, "checked": bound is not None}  # fmt: skip
    if bound is None:
        row.update(bound="reported", result="info")
    elif ceiling:
        row.update(
            bound=f"<= {bound:g}x (fail > {bound * (1 + tol):.3g})",
            result=_judge(ratio <= bound, ratio <= bound * (1 + tol)),
        )
    else:
        fail = f"fail < {bound * (1 - tol):.3g}" if tol else "no tolerance"
        row.update(
            bound=f">= {bound:g}x ({fail})",
            result=_judge(ratio >= bound, ratio >= bound * (1 - tol)),
        )
    return row


def _rate(per_s: float) -> str:
    return f"{per_s / 1e3:.1f} k/s" if per_s >= 1e3 else f"{per_s:.1f} /s"


def _market_rows(m: dict[str, Any], n: int) -> list[dict[str, Any]]:
    s, c = m["sealed"], m["clearing"]
    floor = TARGETS["clearing"]["min_vs_peer"]
    auction, direct = 1 / s["auction_s"], 1 / s["direct_s"]
    return [
        _row(
            f"sealed-bid Vickrey auction, {n:,} Bidders", _rate(auction),
            f"{_rate(direct)} direct calls gathered + vickrey()", auction / direct,
            TARGETS["sealed_auction"]["min_vs_direct"],
        ),
        _row(
            "vickrey() on 1,000 bids", _rate(c["vickrey"]),
            f"{_rate(c['nlargest'])} heapq.nlargest(2)", c["vickrey"] / c["nlargest"], floor,
        ),
        _row(
            "vcg() on 1,000 unit bids, 8 units", _rate(c["vcg_unit"]),
            f"{_rate(c['multi_unit'])} sort: top 8 pay the 9th", c["vcg_unit"] / c["multi_unit"],
            floor,
        ),
        _row(
            "vcg() on 1,000 bundles of 1/2/4, 8 units", _rate(c["vcg_bundle"]),
            f"{_rate(c['greedy'])} greedy fill, pay as bid", c["vcg_bundle"] / c["greedy"], floor,
        ),
    ]  # fmt: skip


def _assign_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, a in m["assign"].items():
        queued, teams = (int(x) for x in key.split("x"))
        checked = teams == 4
        rows.append(
            _row(
                f"slot freed -> pick, Q={queued:,} T={teams}",
                f"{a['auction_mean']:.1f} us (p99 {a['auction_p99']:.0f})",
                f"{a['fifo_mean']:.1f} us (p99 {a['fifo_p99']:.0f}) FifoPolicy",
                a["auction_mean"] / a["fifo_mean"],
                TARGETS["assign"]["max_vs_fifo"] if checked else None,
                ceiling=True,
            )
        )
    return rows


def _value_rows(m: dict[str, Any], sizes: dict[str, Any]) -> list[dict[str, Any]]:
    v, t = m["value"], m["tight"]
    what = f"{len(sizes['seeds'])} seeds x {sizes['horizon_h']:g} h"

    def credits(x: float) -> str:
        return f"{x:,.0f} credits"

    def spread(r: dict[str, Any]) -> str:
        return f" (seeds {r['seed_min']:.2f}-{r['seed_max']:.2f})"

    kept = v["spent_share"] <= 1.0 and t["spent_share"] <= 1.0
    return [
        _row(
            f"value allocated, {what}", credits(v["value"]["auction"]) + spread(v),
            f"{credits(v['value']['fifo'])} fifo", v["ratio"],
            TARGETS["value"]["min_vs_fifo"], tol=0.0,
        ),
        _row(
            "value allocated, budgets that bind", credits(t["value"]["auction"]) + spread(t),
            f"{credits(t['value']['fifo'])} fifo (pays nothing)", t["ratio"], None,
        ),
        {
            "metric": "budgets kept, charges = rate x hours",
            "ours": f"max {max(v['spent_share'], t['spent_share']):.2%} spent",
            "reference": f"of budget (leases the ledger refused: {v['refused'] + t['refused']})",
            "ratio": "", "bound": "<= 100%", "result": "pass" if kept else "FAIL",
            "checked": True, "value": max(v["spent_share"], t["spent_share"]),
        },
        {
            "metric": "simulation deterministic for a seed",
            "ours": "same outcome twice" if v["deterministic"] else "outcomes differ",
            "reference": "", "ratio": "", "bound": "equal",
            "result": "pass" if v["deterministic"] and t["deterministic"] else "FAIL",
            "checked": True, "value": float(v["deterministic"] and t["deterministic"]),
        },
    ]  # fmt: skip


def run_economics(short: bool, check: bool, json_path: str | None, console: Console) -> int:
    """Run the suite; with ``check``, a failed ratio is measured once more (noise)."""
    return run_checked(lambda: _run_once(short, check, json_path, console), check, console)


def _run_once(short: bool, check: bool, json_path: str | None, console: Console) -> int:
    mode = "short" if short else "normal"
    sizes = SIZES[mode]
    info = banner(console, "economics", f"{mode}, best of {sizes['reps']}")
    t0 = time.perf_counter()
    measured = _measure(sizes, console)
    rows = [
        *_market_rows(measured, sizes["bidders"]),
        *_assign_rows(measured),
        *_value_rows(measured, sizes),
    ]
    total = time.perf_counter() - t0
    render_rows(
        rows,
        console,
        f"economics benchmarks ({mode}, tolerance {TARGETS['tolerance']:.0%}, {total:.1f} s)",
    )
    return conclude_rows(
        console, json_path, check, rows, (mode, info, sizes, TARGETS, total), measured
    )

"""``python -m benchmarks.compare agents``: agents and coordination beside plain actors.

Rows (each taken side by side in this run, best of R repetitions):

- a vote among N agents, per round (median of the rounds of a repetition) vs the same N
  ``VoteRequest`` calls made directly and gathered concurrently: ratio checked against
  ``TARGETS`` (the protocol's overhead: an asker actor, a monitor and a message per
  participant, the running tally);
- a contract net with N contractors vs the N calls for proposals gathered directly, the
  best bid picked and one award call: ratio checked;
- agent spawn rate: ``start_agent`` vs a plain ``Runtime.spawn``: ratio checked;
- SearchAgent overhead per trial vs submitting the same jobs directly, on a real
  in-process cluster (``benchmarks._agents_search``): the whole grid at once, and paced
  to the node's 2 slots as an adaptive search runs (ask, submit, watch per result).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from ._report import banner, conclude_rows, render_rows, run_checked

TARGETS: dict[str, Any] = {
    "tolerance": 0.10,
    "vote": {"max_vs_gather": 4.0},
    "contract_net": {"max_vs_direct": 4.0},
    "spawn": {"min_vs_plain": 0.2},
    # Measured 1.2-1.3x (whole grid) and 1.5-1.6x (paced) on a shared 2-core machine.
    "search_agent": {"max_vs_direct": 2.0, "paced_max_vs_direct": 3.0},
}

SIZES: dict[str, dict[str, int]] = {
    "normal": {"reps": 5, "agents": 1_000, "rounds": 10, "spawn": 5_000, "trials": 300},
    "short": {"reps": 3, "agents": 1_000, "rounds": 3, "spawn": 2_000, "trials": 100},
}


def _best(
    fn: Callable[[], dict[str, float]], reps: int, keys: tuple[str, ...], higher: bool = False
) -> dict[str, float]:
    """Per key, the best value over ``reps`` runs (lowest time, or highest rate)."""
    best: dict[str, float] = {}
    for _ in range(reps):
        for k, v in fn().items():
            if k in keys:
                best[k] = (max if higher else min)(v, best.get(k, v))
    return best


def _measure(sizes: dict[str, int], console: Console) -> dict[str, Any]:
    from . import _agents as A

    n, rounds, reps = sizes["agents"], sizes["rounds"], sizes["reps"]
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    out["vote"] = _best(lambda: A.vote_round(n, rounds), reps, ("vote_s", "gather_s"))
    console.print(f"  [dim]vote: {time.perf_counter() - t0:.1f} s[/dim]")
    t0 = time.perf_counter()
    out["contract_net"] = _best(
        lambda: A.contract_round(n, rounds), reps, ("contract_s", "direct_s")
    )
    console.print(f"  [dim]contract_net: {time.perf_counter() - t0:.1f} s[/dim]")
    t0 = time.perf_counter()
    out["spawn"] = _best(
        lambda: A.agent_spawn(sizes["spawn"]), reps, ("start_agent_per_s", "spawn_per_s"), True
    )
    console.print(f"  [dim]spawn: {time.perf_counter() - t0:.1f} s[/dim]")
    t0 = time.perf_counter()
    from . import _agents_search

    trials = sizes["trials"]
    search = _agents_search.measure(trials, max(1, reps // 2))
    out["search_agent"] = {k: v / trials for k, v in search.items()}
    console.print(f"  [dim]search agent: {time.perf_counter() - t0:.1f} s[/dim]")
    return out


def _judge(ok: bool, near: bool) -> str:
    return "pass" if ok else ("pass~" if near else "FAIL")


def _ratio_row(
    metric: str, ours: float, ref: float, ref_text: str, unit: str, bound: float, ceiling: bool
) -> dict[str, Any]:
    tol = float(TARGETS["tolerance"])
    ratio = ours / ref

    def fmt(value: float) -> str:
        return f"{value * 1e3:.1f} ms" if unit == "s" else f"{value / 1e3:.1f} k/s"

    if ceiling:
        text = f"<= {bound:g}x (fail > {bound * (1 + tol):.2f})"
        result = _judge(ratio <= bound, ratio <= bound * (1 + tol))
    else:
        text = f">= {bound:g}x (fail < {bound * (1 - tol):.2f})"
        result = _judge(ratio >= bound, ratio >= bound * (1 - tol))
    return {
        "metric": metric,
        "ours": fmt(ours),
        "reference": f"{fmt(ref)} {ref_text}",
        "ratio": f"{ratio:.2f}x",
        "bound": text,
        "result": result,
        "checked": True,
        "value": ratio,
    }


def _search_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    """The SearchAgent rows: seconds per trial through the agent vs direct submission."""
    s, t = m["search_agent"], TARGETS["search_agent"]
    return [
        _ratio_row(
            "SearchAgent per trial (whole grid)", s["agent"], s["direct"],
            "direct submit + watch", "s", t["max_vs_direct"], True,
        ),
        _ratio_row(
            "SearchAgent per trial (paced, 2 slots)", s["paced"], s["direct"],
            "direct submit + watch", "s", t["paced_max_vs_direct"], True,
        ),
    ]  # fmt: skip


def _rows(m: dict[str, Any], n: int) -> list[dict[str, Any]]:
    v, c, s = m["vote"], m["contract_net"], m["spawn"]
    return [
        _ratio_row(
            f"vote among {n} agents (per round)", v["vote_s"], v["gather_s"],
            "direct calls gathered", "s", TARGETS["vote"]["max_vs_gather"], True,
        ),
        _ratio_row(
            f"contract net, {n} contractors", c["contract_s"], c["direct_s"],
            "gather + best + award", "s", TARGETS["contract_net"]["max_vs_direct"], True,
        ),
        _ratio_row(
            "agent spawn rate", s["start_agent_per_s"], s["spawn_per_s"],
            "plain spawn", "/s", TARGETS["spawn"]["min_vs_plain"], False,
        ),
        *_search_rows(m),
    ]  # fmt: skip


def _render(rows: list[dict[str, Any]], console: Console, title: str) -> None:
    render_rows(rows, console, title)


def run_agents(short: bool, check: bool, json_path: str | None, console: Console) -> int:
    """Run the suite; with ``check``, a failed ratio is measured once more (noise)."""
    return run_checked(lambda: _run_once(short, check, json_path, console), check, console)


def _run_once(short: bool, check: bool, json_path: str | None, console: Console) -> int:
    mode = "short" if short else "normal"
    sizes = SIZES[mode]
    info = banner(console, "agents", f"{mode}, best of {sizes['reps']}")
    t0 = time.perf_counter()
    measured = _measure(sizes, console)
    rows = _rows(measured, sizes["agents"])
    total = time.perf_counter() - t0
    _render(
        rows,
        console,
        f"agent benchmarks ({mode}, N={sizes['agents']}, "
        f"tolerance {TARGETS['tolerance']:.0%}, {total:.1f} s)",
    )
    return conclude_rows(
        console, json_path, check, rows, (mode, info, sizes, TARGETS, total), measured
    )

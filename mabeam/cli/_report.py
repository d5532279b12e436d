"""``mabeam report RUN``: a search run's leaderboard, and its learning curves and lineage
drawn into a PNG.

RUN is a run directory (the ``run.jsonl`` a ``RunLog`` wrote) or a directory of runs,
one subdirectory per agent of a multi-agent search: one leaderboard table per run (best
first: rank, trial, score, state, params, parent, why it stopped) and one summary line
each. The PNG (default ``RUN/report.png``) has one row per run: the metric per step of
every trial, and the trials by generation with their parent links (``_report_plot``).
A missing or malformed run and an unknown ``--metric`` are one line on stderr and exit
status 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._options import BadInput

if TYPE_CHECKING:
    from mabeam.ml.runlog import RunRecord, TrialRecord

__all__ = ("add_parser", "leaderboard_table", "run", "summary_line")

DEFAULT_TOP = 20
_STATE_STYLE = {
    "succeeded": "green",
    "stopped": "yellow",
    "failed": "red",
    "cancelled": "red",
    "running": "cyan",
}


def add_parser(commands: Any) -> None:
    """Add ``report`` to the top-level subparsers."""
    parser = commands.add_parser(
        "report",
        help="show a search run's leaderboard; draw its learning curves and lineage (PNG)",
        description="Print the leaderboard of a search run (a directory a RunLog wrote, or "
        "a directory of them, one per agent) and draw its learning curves and trial "
        "lineage into a PNG.",
    )
    parser.add_argument(
        "run_dir", metavar="RUN", help="a run directory (run.jsonl), or a directory of runs"
    )
    parser.add_argument(
        "--out",
        metavar="FILE.png",
        default=None,
        help="where to write the PNG (default: RUN/report.png)",
    )
    parser.add_argument(
        "--top",
        metavar="N",
        type=_top,
        default=DEFAULT_TOP,
        help=f"rows of each leaderboard (default: {DEFAULT_TOP}; 0: every trial)",
    )
    parser.add_argument(
        "--metric",
        metavar="NAME",
        default=None,
        help="rank and plot by this metric (a trial's result entry, else its last report) "
        "instead of the run's own",
    )
    parser.add_argument(
        "--mode",
        choices=("min", "max"),
        default=None,
        help="whether lower or higher --metric is better (default: the run's mode)",
    )
    parser.add_argument("--no-plot", action="store_true", help="print the tables only")


def _top(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Print the leaderboards and summaries, write the PNG; 0, or 2 for a bad RUN/metric."""
    from mabeam.ml.runlog import RunLogError, load_runs

    try:
        runs = load_runs(args.run_dir)
    except RunLogError as exc:
        raise BadInput(str(exc)) from None
    _check_metric(runs, args.metric)
    console = Console()
    for record in runs:
        console.print(leaderboard_table(record, args.metric, args.mode, args.top))
        console.print(summary_line(record, args.metric, args.mode), highlight=False)
    if not args.no_plot:
        from ._report_plot import write_png

        source = Path(args.run_dir)
        out = Path(args.out) if args.out else (source.parent if source.is_file() else source)
        if not args.out:
            out = out / "report.png"
        write_png(runs, out, metric=args.metric, mode=args.mode)
        console.print(f"wrote {out}", highlight=False)
    return 0


def _check_metric(runs: Sequence[RunRecord], metric: str | None) -> None:
    if metric is None:
        return
    known: set[str] = set()
    for record in runs:
        known |= record.metric_names()
    if metric not in known:
        listed = ", ".join(sorted(known)) or "none"
        raise BadInput(f"unknown metric {metric!r}: the trials report {listed}")


def leaderboard_table(
    record: RunRecord,
    metric: str | None = None,
    mode: Literal["min", "max"] | None = None,
    top: int = DEFAULT_TOP,
) -> Table:
    """The run's trials best first (``RunRecord.leaderboard``), the first ``top`` (0: all)."""
    from ._sweep_view import format_value

    ranked = record.leaderboard(metric, mode)
    shown = ranked[:top] if top else ranked
    name = metric or record.metric or "score"
    spec = record.spec if isinstance(record.spec, dict) else {}
    hide = set(spec.get("hide") or ())  # fixed params and the agent's own: not shown
    table = Table(
        title=f"{record.name} ({record.strategy}): {len(ranked)} trials, "
        f"best {name} ({mode or record.mode}) first"
    )
    table.add_column("#", justify="right")
    table.add_column("trial", no_wrap=True)
    table.add_column(name, justify="right", style="bold", no_wrap=True)
    table.add_column("state", no_wrap=True)
    with_gen = any(trial.generation for trial in ranked)
    if with_gen:
        table.add_column("gen", justify="right")
    table.add_column("params")
    table.add_column("parent", no_wrap=True)
    table.add_column("why it stopped")
    for rank, trial in enumerate(shown, 1):
        score = trial.final(metric)
        parent = "-" if trial.parent is None else f"{trial.parent} ({trial.reason})"
        cells: list[str | Text] = [
            str(rank),
            Text(trial.trial_id, style="bold" if trial.trial_id == record.best else ""),
            "-" if score is None else format_value(score),
            Text(trial.state, style=_STATE_STYLE.get(trial.state, "")),
        ]
        if with_gen:
            cells.append(str(trial.generation))
        params = {k: v for k, v in trial.params.items() if k not in hide}
        cells += [format_value(params, 60) or "-", parent, _why(trial)]
        table.add_row(*cells)
    if len(shown) < len(ranked):
        table.caption = f"and {len(ranked) - len(shown)} more (--top 0 shows every trial)"
    return table


def _why(trial: TrialRecord) -> str:
    parts = []
    if trial.cached:
        parts.append("cached")
    if trial.stop_reason:
        parts.append(trial.stop_reason)
    elif trial.state not in ("succeeded", "running"):
        parts.append(trial.state)
    return "; ".join(parts) or "-"


def summary_line(
    record: RunRecord, metric: str | None = None, mode: Literal["min", "max"] | None = None
) -> str:
    """One line: the run, its trials by state, the best trial and whether it finished."""
    from ._sweep_view import format_value

    counts = record.counts()
    states = ", ".join(f"{counts[state]} {state}" for state in sorted(counts)) or "no trials"
    ranked = record.leaderboard(metric, mode)
    best_id = record.best if metric is None and record.best else None
    best = record.trials.get(best_id) if best_id else (ranked[0] if ranked else None)
    score = best.final(metric) if best is not None else None
    if best is None or score is None:
        best_text = "no scored trial"
    else:
        best_text = f"best {best.trial_id} {metric or record.metric or 'score'} "
        best_text += format_value(score)
    ending = "finished" if record.finished else "not finished (running, or stopped early)"
    line = f"{record.name}: {record.strategy}, {len(ranked)} trials ({states}); {best_text}; "
    line += ending
    if record.resumed:
        line += f"; resumed {record.resumed} time{'s' if record.resumed != 1 else ''}"
    if record.skipped_lines:
        plural = "s" if record.skipped_lines != 1 else ""
        line += f"; {record.skipped_lines} unreadable line{plural} skipped"
    return line

"""The PNG of ``mabeam report``: per run, the learning curves and the lineage.

Left, the metric per step of every trial: a trial started from another (PBT's next
segment) continues its parent's line (its steps shifted past the parent's last one
when they start over), so each member reads as one curve across segments; a marker
shows where a member took over another's weights (exploit) or mutated. Colours follow
lineage (a trial has the colour of its first ancestor), stopped trials are dashed,
failed ones dotted, and the best trial and its ancestors are drawn thick. Right, the
trials by generation with an edge from each parent, coloured and labelled by why the
child was made (exploit, mutation, continue); grid and random runs have no edges, and
the panel says so.

matplotlib is imported here only, with the Agg canvas (no display, no pyplot state).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ._options import CommandError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from mabeam.ml.runlog import RunRecord, TrialRecord

__all__ = ("write_png",)

DPI = 100
_ROW_HEIGHT_IN = 4.4
_WIDTH_IN = 12.0
_MAX_NODE_LABELS = 40
_MAX_EDGE_LABELS = 24
_STYLES = {"stopped": "--", "failed": ":", "cancelled": ":"}
_EDGE_COLORS = {"exploit": "tab:red", "mutation": "tab:orange", "continue": "tab:gray"}
_JUMP_MARKERS = {"exploit": "*", "mutation": "D"}
_NODE_MARKERS = {"stopped": "s", "failed": "X", "cancelled": "X", "running": "P"}


def _kind(reason: str) -> str:
    """The kind of a lineage reason: its first word ("exploit t0003; explore lr*0.8" ->
    "exploit", "mutation of t0002: ..." -> "mutation"), the key of the styles above."""
    word = reason.split(" ", 1)[0].rstrip(":;,") if reason else ""
    return word or "other"


def write_png(
    runs: Sequence[RunRecord],
    path: Path,
    *,
    metric: str | None = None,
    mode: Literal["min", "max"] | None = None,
) -> None:
    """Draw ``runs`` (one row each) into the PNG file ``path``."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise CommandError(
            "drawing the report needs matplotlib: pip install 'mabeam[ml]' (or pass --no-plot)"
        ) from None
    figure = Figure(figsize=(_WIDTH_IN, _ROW_HEIGHT_IN * len(runs)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(runs), 2, squeeze=False, width_ratios=[3, 2])
    for (curves, lineage), record in zip(axes, runs, strict=True):
        view = _RunView(record, metric, mode)
        view.draw_curves(curves)
        view.draw_lineage(lineage)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI)


class _RunView:
    """What both panels of one run share: the metric, colours, the best trial's path."""

    def __init__(
        self, record: RunRecord, metric: str | None, mode: Literal["min", "max"] | None
    ) -> None:
        from matplotlib import colormaps

        self.record = record
        self.metric = metric or record.metric
        ranked = record.leaderboard(metric, mode)
        best = record.best if metric is None and record.best in record.trials else None
        if best is None and ranked and ranked[0].final(metric) is not None:
            best = ranked[0].trial_id
        self.best_path = self._ancestors(best) if best else set()
        self.best = best
        roots = {trial_id: self._root(trial_id) for trial_id in record.trials}
        families = list(dict.fromkeys(roots.values()))
        cmap = colormaps["tab10" if len(families) <= 10 else "tab20"]
        self.colors = {
            trial_id: cmap(families.index(root) % cmap.N) for trial_id, root in roots.items()
        }

    def _parent(self, trial_id: str) -> TrialRecord | None:
        parent = self.record.trials[trial_id].parent
        return self.record.trials.get(parent) if parent is not None else None

    def _ancestors(self, trial_id: str) -> set[str]:
        """``trial_id`` and every trial up its parent chain (a cycle stops the walk)."""
        seen: set[str] = set()
        current: str | None = trial_id
        while current is not None and current not in seen and current in self.record.trials:
            seen.add(current)
            parent = self._parent(current)
            current = parent.trial_id if parent is not None else None
        return seen

    def _root(self, trial_id: str) -> str:
        """The first ancestor of ``trial_id`` (itself when it has no parent here)."""
        seen: set[str] = set()
        current = trial_id
        while (parent := self._parent(current)) is not None and parent.trial_id not in seen:
            seen.add(current)
            current = parent.trial_id
        return current

    # -- learning curves ----------------------------------------------------------------

    def draw_curves(self, ax: Axes) -> None:
        from matplotlib.lines import Line2D
        from matplotlib.ticker import MaxNLocator

        record, metric = self.record, self.metric
        ax.set_title(f"{record.name}: {metric or 'no metric'} per step ({record.strategy})")
        if metric is None:
            _say(ax, "the run names no metric: pass --metric NAME")
            return
        ends: dict[str, tuple[float, float]] = {}  # each trial's last drawn point
        jumps: set[str] = set()
        styles: set[Any] = set()  # matplotlib wants its linestyle literals
        for trial in record.trials.values():
            points = trial.points(metric)
            if not points:
                continue
            parent = self._parent(trial.trial_id)
            start = ends.get(parent.trial_id) if parent is not None else None
            shift = start[0] if start is not None and points[0][0] <= start[0] else 0.0
            xs = [step + shift for step, _ in points]
            ys = [value for _, value in points]
            if start is not None:
                xs.insert(0, start[0])
                ys.insert(0, start[1])
            ends[trial.trial_id] = (xs[-1], ys[-1])
            on_best = trial.trial_id in self.best_path
            style = _STYLES.get(trial.state, "-")
            styles.add(style)
            ax.plot(
                xs,
                ys,
                linestyle=style,
                color=self.colors[trial.trial_id],
                linewidth=2.8 if on_best else 1.1,
                alpha=1.0 if on_best else 0.75,
                marker="o" if len(xs) == 1 else None,
                markersize=3,
                zorder=3 if on_best else 2,
            )
            marker = _JUMP_MARKERS.get(_kind(trial.reason))
            if start is not None and marker is not None:
                jumps.add(_kind(trial.reason))
                ax.plot(
                    *start,
                    marker=marker,
                    markersize=9 if marker == "*" else 5,
                    color=self.colors[trial.trial_id],
                    markeredgecolor="black",
                    markeredgewidth=0.6,
                    linestyle="none",
                    zorder=4,
                )
        if not ends:
            _say(ax, f"no trial reported {metric}")
            return
        if self.best in ends:
            x, y = ends[self.best]
            score = record.trials[self.best].final(metric)
            label = f"best {self.best}" + (f": {score:.4g}" if score is not None else "")
            ax.annotate(
                label, (x, y), xytext=(-4, -14), textcoords="offset points", fontsize=8, ha="right"
            )
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        names = {"-": "finished", "--": "stopped early", ":": "failed / cancelled"}
        handles: list[Any] = [
            Line2D([], [], color="black", linestyle=s, label=names[s]) for s in sorted(styles)
        ]
        if self.best in ends:
            handles.append(Line2D([], [], color="black", linewidth=2.8, label="best and ancestors"))
        for reason in sorted(jumps):
            handles.append(
                Line2D(
                    [],
                    [],
                    marker=_JUMP_MARKERS[reason],
                    color="grey",
                    markeredgecolor="black",
                    linestyle="none",
                    label=reason,
                )
            )
        ax.legend(handles=handles, fontsize=8, loc="best")

    # -- lineage ------------------------------------------------------------------------

    def draw_lineage(self, ax: Axes) -> None:
        from matplotlib.lines import Line2D
        from matplotlib.ticker import MaxNLocator

        record = self.record
        ax.set_title("lineage by generation")
        edges = [(p, c, r) for p, c, r in record.lineage() if p in record.trials]
        if not edges:
            _say(
                ax,
                f"no lineage: every {record.strategy} trial\nstarts fresh (no parent links)",
            )
            return
        where = self._layout()
        reasons: set[str] = set()
        for parent, child, reason in edges:
            color = _EDGE_COLORS.get(_kind(reason), "tab:purple")
            reasons.add(_kind(reason))
            ax.annotate(
                "",
                xy=where[child],
                xytext=where[parent],
                arrowprops={"arrowstyle": "->", "color": color, "lw": 1.0, "shrinkB": 5},
                zorder=1,
            )
            if reason != "continue" and len(edges) <= _MAX_EDGE_LABELS:
                (x0, y0), (x1, y1) = where[parent], where[child]
                ax.text(
                    (x0 + x1) / 2,
                    (y0 + y1) / 2,
                    reason,
                    fontsize=6,
                    color=color,
                    ha="center",
                    va="bottom",
                )
        for trial_id, (x, y) in where.items():
            trial = record.trials[trial_id]
            best = trial_id == self.best
            ax.scatter(
                [x],
                [y],
                s=90 if best else 36,
                marker=_NODE_MARKERS.get(trial.state, "o"),
                color=self.colors[trial_id],
                edgecolors="black" if best else "none",
                linewidths=1.5,
                zorder=3,
            )
            if len(where) <= _MAX_NODE_LABELS:
                ax.annotate(
                    trial_id,
                    (x, y),
                    xytext=(0, 5),
                    textcoords="offset points",
                    fontsize=6,
                    ha="center",
                )
        generations = sorted({x for x, _ in where.values()})
        if len(generations) <= 12:
            ax.set_xticks(generations)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("generation")
        ax.set_yticks([])
        ax.margins(x=0.12, y=0.12)
        handles = [
            Line2D([], [], color=_EDGE_COLORS.get(kind, "tab:purple"), label=kind)
            for kind in sorted(reasons)
        ]
        ax.legend(
            handles=handles,
            fontsize=8,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.12),
            ncol=max(1, len(handles)),
            frameon=False,
        )

    def _layout(self) -> dict[str, tuple[float, float]]:
        """Each trial's (generation, height): a trial keeps its parent's row when it can
        (a ``continue`` child first), so a PBT member reads as one horizontal track; the
        others take the free row nearest their parent's. Rows run top to bottom."""
        by_gen: dict[int, list[TrialRecord]] = {}
        for trial in self.record.trials.values():
            by_gen.setdefault(trial.generation, []).append(trial)
        rows: dict[str, int] = {}
        for generation in sorted(by_gen):
            members = by_gen[generation]
            taken: set[int] = set()
            waiting = sorted(members, key=lambda t: t.reason != "continue")  # stable
            for trial in waiting:
                row = rows.get(trial.parent) if trial.parent is not None else None
                if row is not None and row not in taken:
                    rows[trial.trial_id] = row
                    taken.add(row)
            for trial in members:
                if trial.trial_id in rows:
                    continue
                wanted = rows.get(trial.parent, 0) if trial.parent is not None else 0
                # A row inside this generation's width (one its parents' left free) first.
                free = [r for r in range(len(members)) if r not in taken]
                row = min(free, key=lambda r: (abs(r - wanted), r)) if free else max(taken) + 1
                rows[trial.trial_id] = row
                taken.add(row)
        return {
            trial_id: (float(self.record.trials[trial_id].generation), -float(row))
            for trial_id, row in rows.items()
        }


def _say(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])

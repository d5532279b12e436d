"""Write two made-up search runs for ``mabeam report`` to show (no cluster, no training).

``python -m examples.report.make_runs runs/`` writes ``runs/pbt`` (population-based
training: 4 members, 6 segments of 5 steps; each segment is a trial whose parent is the
segment it continued, or the better member it copied at an exploit, with a mutated
learning rate) and ``runs/grid`` (a 3 x 2 grid, one trial diverging). Then::

    mabeam report runs/pbt
    mabeam report runs/grid

The curves are a formula, not training: accuracy rises towards a ceiling that depends
on the learning rate, with seeded noise, so the output is the same on every machine.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

from mabeam.ml import RunLog

__all__ = ("write_grid_run", "write_pbt_run")

SEGMENT_STEPS = 5


def _accuracy(lr: float, hidden: int, step: int, rng: random.Random) -> float:
    """A learning curve: best near lr 0.1, a little better with more hidden units."""
    ceiling = 0.97 - 0.25 * abs(math.log10(lr) + 1.0) ** 1.5 + 0.01 * math.log2(hidden / 32)
    return ceiling * (1.0 - math.exp(-step / 6.0)) + rng.gauss(0.0, 0.006)


def write_pbt_run(directory: Path, seed: int = 7) -> None:
    """A PBT run: every segment, the worst member exploits the best one."""
    rng = random.Random(seed)
    members = [{"lr": lr, "hidden": 64} for lr in (0.5, 0.2, 0.03, 0.008)]
    current: list[str | None] = [None] * len(members)
    reasons = ["initial"] * len(members)
    with RunLog(directory) as log:
        log.run_started(name="pbt-digits", strategy="pbt", metric="accuracy", mode="max")
        scores: dict[str, float] = {}
        job = 0
        for generation in range(6):
            for index, params in enumerate(members):
                trial_id = f"m{index}-g{generation}"
                job += 1
                log.trial_started(
                    trial_id,
                    params=params,
                    job_id=f"job-{job:03d}",
                    parent=current[index],
                    reason=reasons[index],
                    generation=generation,
                )
                first = generation * SEGMENT_STEPS + 1
                for step in range(first, first + SEGMENT_STEPS):
                    value = _accuracy(params["lr"], params["hidden"], step, rng)
                    log.trial_progress(trial_id, step, {"accuracy": value, "lr": params["lr"]})
                scores[trial_id] = value
                log.trial_finished(
                    trial_id, state="succeeded", score=value, result={"accuracy": value}
                )
                current[index] = trial_id
            ranked = sorted(range(len(members)), key=lambda i: scores[str(current[i])])
            worst, best = ranked[0], ranked[-1]
            log.note("exploit", member=worst, source=best, generation=generation)
            members[worst] = {**members[best], "lr": members[best]["lr"] * rng.choice((0.8, 1.25))}
            reasons = ["continue"] * len(members)
            reasons[worst] = "exploit"
            current[worst] = current[best]
        last = [str(trial_id) for trial_id in current]
        log.run_finished(best=max(last, key=scores.__getitem__))


def write_grid_run(directory: Path, seed: int = 3) -> None:
    """A grid run: 3 learning rates x 2 hidden sizes; lr 3.0 diverges and fails."""
    rng = random.Random(seed)
    with RunLog(directory) as log:
        log.run_started(name="grid-digits", strategy="grid", metric="accuracy", mode="max")
        scores: dict[str, float] = {}
        for index, (lr, hidden) in enumerate((a, b) for a in (3.0, 0.1, 0.01) for b in (32, 64)):
            trial_id = f"t{index}"
            log.trial_started(trial_id, params={"lr": lr, "hidden": hidden}, job_id=f"job-{index}")
            if lr > 1:
                log.trial_progress(trial_id, 1, {"accuracy": 0.1})
                log.trial_finished(
                    trial_id, state="failed", score=None, reason="training diverged at epoch 2"
                )
                continue
            for step in range(1, 21):
                value = _accuracy(lr, hidden, step, rng)
                log.trial_progress(trial_id, step, {"accuracy": value})
            scores[trial_id] = value
            log.trial_finished(trial_id, state="succeeded", score=value)
        log.run_finished(best=max(scores, key=scores.__getitem__))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m examples.report.make_runs DIRECTORY", file=sys.stderr)
        return 2
    root = Path(argv[0])
    write_pbt_run(root / "pbt")
    write_grid_run(root / "grid")
    print(f"wrote {root / 'pbt'} and {root / 'grid'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

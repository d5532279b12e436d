"""An in-process driver for search strategies, and synthetic training tasks for it.

``drive`` plays the cluster's part: it asks for up to ``workers`` trials, "trains" one
running trial at a time (picked by a seeded draw, so results come back out of order),
reports every step's metrics, and tells the result. A trial starts from the state its
``checkpoint_from`` trial ended with, as a real task resumes from a checkpoint.

``NoisyQuadratic`` is the noisy quadratic model of SGD (Zhang et al. 2019, "Which
algorithmic choices matter at which batch sizes?"): the expected loss of SGD with noisy
gradients on an ill-conditioned quadratic, computed exactly (no sampling, so the score
of a schedule is deterministic). A large learning rate makes fast early progress but
stalls at a noise floor proportional to it, so the best rate falls as training goes on:
a schedule beats every constant rate.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mabeam.ml import Strategy, TrialPlan

__all__ = ("Driven", "NoisyQuadratic", "drive")


@dataclass(frozen=True)
class State:
    """A model checkpoint: per dimension the mean and variance of the weight, and how
    many steps trained it."""

    mean: tuple[float, ...]
    var: tuple[float, ...]
    steps: int = 0


class NoisyQuadratic:
    """Expected loss ``0.5 * sum(h_i * E[w_i^2])`` under SGD whose gradient noise has
    variance ``sigma^2 * h_i``: per step ``mean *= 1 - lr*h`` and
    ``var = (1 - lr*h)^2 * var + lr^2 * sigma^2 * h``.

    Params: ``lr``, or one rate per dimension ``lr0``, ``lr1``, ... (as per-layer rates),
    and ``half_life`` (optional, in steps: the rates halve every ``half_life`` steps of
    the model's own training). The score is the loss (``mode =
    "min"``); a diverging run is capped at a large finite loss.
    """

    def __init__(
        self,
        curvatures: tuple[float, ...] = (1.0, 0.3, 0.1, 0.03),
        start: float = 3.0,
        sigma: float = 1.0,
        steps: int = 40,
    ) -> None:
        self.h = curvatures
        self.start = State(tuple(start for _ in curvatures), tuple(0.0 for _ in curvatures))
        self.sigma = sigma
        self.steps = steps

    def loss(self, state: State) -> float:
        total = 0.0
        for h, m, v in zip(self.h, state.mean, state.var, strict=True):
            total += 0.5 * h * (m * m + v)
        return min(total, 1e12)

    def step(self, state: State, params: Mapping[str, Any]) -> State:
        factor = 1.0
        if "half_life" in params:
            factor = 0.5 ** (state.steps / float(params["half_life"]))
        means, variances = [], []
        for i, (h, m, v) in enumerate(zip(self.h, state.mean, state.var, strict=True)):
            lr = float(params["lr"] if "lr" in params else params[f"lr{i}"]) * factor
            a = 1.0 - lr * h
            means.append(min(abs(a * m), 1e6))
            variances.append(min(a * a * v + lr * lr * self.sigma**2 * h, 1e12))
        return State(tuple(means), tuple(variances), state.steps + 1)


@dataclass
class Driven:
    """What a drive saw: every plan in ask order, the stops, and the final states."""

    plans: list[TrialPlan] = field(default_factory=list)
    stopped: dict[str, str] = field(default_factory=dict)
    states: dict[str, State] = field(default_factory=dict)
    total_steps: int = 0


def drive(
    strategy: Strategy,
    task: NoisyQuadratic,
    *,
    workers: int = 4,
    seed: int = 0,
    fail: Callable[[TrialPlan], bool] = lambda plan: False,
    metric: str = "loss",
) -> Driven:
    """Run ``strategy`` to the end on ``task``; ``fail(plan)`` marks trials that fail."""
    pick = random.Random(f"order:{seed}")
    out = Driven()
    running: list[TrialPlan] = []
    while not strategy.finished:
        new = strategy.ask(workers - len(running))
        out.plans.extend(new)
        running.extend(new)
        if not running:
            raise AssertionError("the strategy is not finished but plans nothing")
        plan = running.pop(pick.randrange(len(running)))
        if fail(plan):
            strategy.tell(plan.trial_id, None, state="failed")
            continue
        state = task.start if plan.checkpoint_from is None else out.states[plan.checkpoint_from]
        stopped = False
        for step in range(1, (plan.steps or task.steps) + 1):
            state = task.step(state, plan.params)
            out.total_steps += 1
            if not strategy.report(plan.trial_id, step, {metric: task.loss(state)}):
                stopped = True
                break
        out.states[plan.trial_id] = state
        if stopped:
            out.stopped[plan.trial_id] = strategy.stop_reason(plan.trial_id) or ""
            strategy.tell(plan.trial_id, None, state="stopped")
        else:
            strategy.tell(plan.trial_id, {metric: task.loss(state), "checkpoint": plan.trial_id})
    return out

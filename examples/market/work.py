"""A short numpy training step: the trials the two teams of two_teams.py buy GPUs for."""

from __future__ import annotations

from typing import Any

import numpy as np


def train_step(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """A few steps of least squares on random data; returns the loss and the device."""
    rng = np.random.default_rng(params["seed"])
    x = rng.normal(size=(256, 16))
    y = x @ rng.normal(size=16)
    w = np.zeros(16)
    for step in range(50):
        w -= 0.01 * x.T @ (x @ w - y) / len(x)
        if step % 25 == 0:
            ctx.report(step=step, loss=float(np.mean((x @ w - y) ** 2)))
    return {"loss": float(np.mean((x @ w - y) ** 2)), "device": ctx.device}

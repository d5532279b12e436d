"""One PBT segment of the digits MLP: the entrypoint of pbt.toml.

``train_segment(params, ctx)`` trains ``pbt_steps`` epochs, starting from the weights in
``params["checkpoint"]`` (a ``checkpoint.npz`` an earlier segment published) or from
fresh weights when it is None, and saves its own weights to ``ctx.output_dir``. Its
result names that file by its published path (``ctx.published_dir``): the search agent
hands it to the next segment of this member, or of a member that exploits this one.
Epochs are numbered across segments (the reported ``step``), so learning curves join
up. It trains in numpy (the same network and SGD as ``train.py``); on a cluster the
nodes must see each other's work directories at the same path (one host, or a shared
file system).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .train import Config, Context, init_weights, load_data, numpy_epochs

__all__ = ("CHECKPOINT", "train_segment")

CHECKPOINT = "checkpoint.npz"


class SegmentContext(Context, Protocol):
    """``Context`` plus the output directories ``train_segment`` writes to."""

    output_dir: Path
    published_dir: Path


def train_segment(params: dict[str, Any], ctx: SegmentContext) -> dict[str, Any]:
    """Train one segment; return accuracy, loss, the epoch reached and the checkpoint."""
    params = dict(params)
    steps = params.pop("pbt_steps", None)
    checkpoint = params.pop("checkpoint", None)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"pbt_steps must be an int >= 1, got {steps!r}")
    if checkpoint is not None and not isinstance(checkpoint, str):
        raise ValueError(f"checkpoint must be a path or None, got {checkpoint!r}")
    config = dataclasses.replace(Config.from_params(params), epochs=steps)
    began = time.perf_counter()
    if checkpoint is None:
        weights = init_weights(config.hidden, np.random.default_rng(config.seed))
        done = 0
    else:
        weights, done = _load(Path(checkpoint), config.hidden)
    rng = np.random.default_rng([config.seed, done])
    data = load_data(config.seed, config.test_fraction)
    accuracy, loss = numpy_epochs(
        config, data, weights, rng, range(done + 1, done + steps + 1), ctx
    )
    np.savez(ctx.output_dir / CHECKPOINT, epoch=np.int64(done + steps), **weights)
    return {
        "accuracy": accuracy,
        "loss": loss,
        "epoch": done + steps,
        "checkpoint": str(ctx.published_dir / CHECKPOINT),
        "train_s": round(time.perf_counter() - began, 3),
    }


def _load(path: Path, hidden: int) -> tuple[dict[str, np.ndarray], int]:
    """The weights and epoch count in ``path``; a clear error for a missing file or a
    network of another size (``hidden`` is not a PBT-searched parameter)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist (on a cluster, the nodes' work directories "
            "must be shared)"
        )
    with np.load(path) as saved:
        weights = {name: saved[name].copy() for name in ("w1", "b1", "w2", "b2")}
        epoch = int(saved["epoch"])
    if weights["w1"].shape[1] != hidden:
        raise ValueError(
            f"checkpoint {path} has {weights['w1'].shape[1]} hidden units, params say {hidden}"
        )
    return weights, epoch

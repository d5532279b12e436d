"""Train a small MLP classifier on scikit-learn's 8x8 digits: the entrypoint of sweep.toml.

``train(params, ctx)`` is a mabeam task (docs/tasks.md): it reads its hyper-parameters
from ``params``, reports the loss and test accuracy after every epoch with
``ctx.report``, and returns the final metrics. The data ships inside scikit-learn
(``load_digits``: 1,797 images, nothing to download); a seeded quarter of it is the
test set.

The model is a one-hidden-layer ReLU network trained with mini-batch SGD on the softmax
cross-entropy. It runs in numpy, forward and backward by hand, or in torch on the GPU
when torch is installed and ``torch.cuda.is_available()`` (on a node that assigned this
task a GPU, ``ctx.device`` names it). Both are seeded: the same params give the same
numbers on the same device.
"""

from __future__ import annotations

import os

# One trial holds one CPU slot; BLAS threads beyond it would only fight the other trials.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import math  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, fields  # noqa: E402
from typing import Any, Protocol  # noqa: E402

import numpy as np  # noqa: E402

__all__ = ("Config", "init_weights", "load_data", "numpy_epochs", "train")

CLASSES = 10
FEATURES = 64


class Context(Protocol):
    """What ``train`` uses of the task context (``mabeam.cluster.task.TaskContext``)."""

    device: str

    def report(self, step: int | None = None, **metrics: Any) -> None: ...


@dataclass(frozen=True)
class Config:
    """The hyper-parameters, with the defaults used when ``params`` leaves one out."""

    lr: float = 0.1
    hidden: int = 64
    epochs: int = 20
    batch_size: int = 32
    seed: int = 0
    test_fraction: float = 0.25

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Config:
        """Read ``params``; a ``ValueError`` names an unknown or out-of-range one."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r} (known: {', '.join(known)})")
        values: dict[str, Any] = {}
        for name, value in params.items():
            kind = float if known[name].type == "float" else int
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"parameter {name!r} must be a number, got {value!r}")
            if kind is int and value != int(value):
                raise ValueError(f"parameter {name!r} must be a whole number, got {value!r}")
            values[name] = kind(value)
        config = cls(**values)
        if not (config.lr > 0 and math.isfinite(config.lr)):
            raise ValueError(f"lr must be a positive number, got {config.lr}")
        if min(config.hidden, config.epochs, config.batch_size) < 1:
            raise ValueError("hidden, epochs and batch_size must be >= 1")
        if not 0 < config.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {config.test_fraction}")
        return config


def load_data(seed: int, test_fraction: float) -> tuple[np.ndarray, ...]:
    """``(x_train, y_train, x_test, y_test)``: pixels scaled to [0, 1], split by ``seed``."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32) / 16.0
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = max(1, int(len(y) * test_fraction))
    test, fit = order[:n_test], order[n_test:]
    return x[fit], y[fit], x[test], y[test]


def train(params: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Train with ``params``; report each epoch; return accuracy, loss, epochs, device."""
    config = Config.from_params(params)
    data = load_data(config.seed, config.test_fraction)
    began = time.perf_counter()
    if _cuda_ready():
        accuracy, loss, device = _train_torch(config, data, ctx)
    else:
        (accuracy, loss), device = _train_numpy(config, data, ctx), "cpu"
    return {
        "accuracy": accuracy,
        "loss": loss,
        "epochs": config.epochs,
        "device": device,
        "train_s": round(time.perf_counter() - began, 3),
    }


# -- numpy ------------------------------------------------------------------------------


def _train_numpy(config: Config, data: tuple[np.ndarray, ...], ctx: Context) -> tuple[float, float]:
    rng = np.random.default_rng(config.seed)
    weights = init_weights(config.hidden, rng)
    return numpy_epochs(config, data, weights, rng, range(1, config.epochs + 1), ctx)


def init_weights(hidden: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Fresh He-initialised weights of the network (``w1``, ``b1``, ``w2``, ``b2``)."""
    return {
        "w1": rng.normal(0.0, math.sqrt(2.0 / FEATURES), (FEATURES, hidden)).astype(np.float32),
        "b1": np.zeros(hidden, np.float32),
        "w2": rng.normal(0.0, math.sqrt(2.0 / hidden), (hidden, CLASSES)).astype(np.float32),
        "b2": np.zeros(CLASSES, np.float32),
    }


def numpy_epochs(
    config: Config,
    data: tuple[np.ndarray, ...],
    weights: dict[str, np.ndarray],
    rng: np.random.Generator,
    epochs: range,
    ctx: Context,
) -> tuple[float, float]:
    """Train ``weights`` in place for ``epochs`` (their numbers are the reported steps);
    return the last (accuracy, loss)."""
    x_train, y_train, x_test, y_test = (np.asarray(a) for a in data)
    w1, b1, w2, b2 = weights["w1"], weights["b1"], weights["w2"], weights["b2"]
    n = len(y_train)
    loss = math.nan
    accuracy = 0.0
    for epoch in epochs:
        order = rng.permutation(n)
        losses = []
        for start in range(0, n, config.batch_size):
            batch = order[start : start + config.batch_size]
            xb, yb = x_train[batch], y_train[batch]
            z1 = xb @ w1 + b1
            a1 = np.maximum(z1, 0.0)
            probs = _softmax(a1 @ w2 + b2)
            rows = np.arange(len(yb))
            losses.append(float(-np.log(probs[rows, yb] + 1e-12).mean()))
            # Backward: d(loss)/d(logits) of softmax cross-entropy is probs - onehot.
            grad = probs
            grad[rows, yb] -= 1.0
            grad /= len(yb)
            grad_a1 = grad @ w2.T
            grad_a1[z1 <= 0.0] = 0.0
            w2 -= config.lr * (a1.T @ grad)
            b2 -= config.lr * grad.sum(axis=0)
            w1 -= config.lr * (xb.T @ grad_a1)
            b1 -= config.lr * grad_a1.sum(axis=0)
        loss = float(np.mean(losses))
        logits = np.maximum(x_test @ w1 + b1, 0.0) @ w2 + b2
        accuracy = float((logits.argmax(axis=1) == y_test).mean())
        if not math.isfinite(loss):
            raise FloatingPointError(f"training diverged at epoch {epoch} (lr {config.lr})")
        ctx.report(step=epoch, loss=loss, accuracy=accuracy)
    return accuracy, loss


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    out: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return out


# -- torch on the GPU -------------------------------------------------------------------


def _cuda_ready() -> bool:
    """Whether torch is importable and sees a GPU (a CPU task sees none: its
    ``CUDA_VISIBLE_DEVICES`` is empty)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _train_torch(
    config: Config, data: tuple[np.ndarray, ...], ctx: Context
) -> tuple[float, float, str]:
    import torch

    torch.manual_seed(config.seed)
    device = torch.device("cuda:0")
    x_train, y_train, x_test, y_test = (torch.as_tensor(a, device=device) for a in data)
    y_train, y_test = y_train.long(), y_test.long()
    model = torch.nn.Sequential(
        torch.nn.Linear(FEATURES, config.hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(config.hidden, CLASSES),
    ).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    n = len(y_train)
    loss = math.nan
    accuracy = 0.0
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(n, generator=generator).to(device)
        total = torch.zeros((), device=device)
        batches = 0
        for start in range(0, n, config.batch_size):
            batch = order[start : start + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            batch_loss = torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            batch_loss.backward()
            optimizer.step()
            total += batch_loss.detach()
            batches += 1
        with torch.no_grad():
            predictions = model(x_test).argmax(dim=1)
            accuracy = float((predictions == y_test).float().mean().item())
        loss = float(total.item()) / batches
        if not math.isfinite(loss):
            raise FloatingPointError(f"training diverged at epoch {epoch} (lr {config.lr})")
        ctx.report(step=epoch, loss=loss, accuracy=accuracy)
    return accuracy, loss, f"cuda ({torch.cuda.get_device_name(0)})"

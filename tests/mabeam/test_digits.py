"""The digits example: its training function on a tiny budget, and its sweep spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from examples.digits.train import Config, load_data, train
from mabeam.cluster._client_specs import derive_code_version, wire_specs
from mabeam.ml.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SWEEP = ROOT / "examples" / "digits" / "sweep.toml"


class FakeContext:
    """Records what the task reports, as a node's TaskContext would send it."""

    device = "cpu"

    def __init__(self) -> None:
        self.reports: list[tuple[int | None, dict[str, Any]]] = []

    def report(self, step: int | None = None, **metrics: Any) -> None:
        self.reports.append((step, metrics))


def test_train_beats_chance_on_a_tiny_budget_and_reports_every_epoch() -> None:
    ctx = FakeContext()
    result = train({"lr": 0.5, "hidden": 16, "epochs": 3, "batch_size": 32}, ctx)
    assert result["accuracy"] > 0.5  # chance is 0.1
    assert result["epochs"] == 3 and result["device"] == "cpu"
    assert result["loss"] > 0
    assert [step for step, _ in ctx.reports] == [1, 2, 3]
    assert all({"loss", "accuracy"} <= set(metrics) for _, metrics in ctx.reports)
    assert ctx.reports[-1][1]["accuracy"] == result["accuracy"]


def test_train_is_seeded_so_the_same_params_give_the_same_numbers() -> None:
    params = {"lr": 0.1, "hidden": 8, "epochs": 2, "seed": 3}
    first, second = train(params, FakeContext()), train(params, FakeContext())
    assert (first["accuracy"], first["loss"]) == (second["accuracy"], second["loss"])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"lrr": 0.1}, "unknown parameter 'lrr'"),
        ({"lr": "fast"}, "parameter 'lr' must be a number"),
        ({"hidden": 1.5}, "parameter 'hidden' must be a whole number"),
        ({"lr": -1}, "lr must be a positive number"),
        ({"epochs": 0}, "must be >= 1"),
    ],
)
def test_bad_params_are_a_clear_value_error(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Config.from_params(params)


def test_the_data_split_keeps_a_quarter_for_testing() -> None:
    x_train, y_train, x_test, y_test = load_data(seed=0, test_fraction=0.25)
    assert x_train.shape[1] == 64 and len(x_train) + len(x_test) == 1797
    assert len(y_test) == 449 and len(y_train) == 1348
    assert x_train.min() >= 0.0 and x_train.max() <= 1.0


def test_the_sweep_spec_loads_and_expands_into_six_trials() -> None:
    spec = load_spec(SWEEP)
    assert spec.entrypoint == "examples.digits.train:train"
    assert (spec.metric, spec.mode) == ("accuracy", "max")
    trials = spec.trials()
    assert len(trials) == spec.num_trials == 6
    assert {(t.params["lr"], t.params["hidden"]) for t in trials} == {
        (lr, h) for lr in (0.3, 0.1, 0.01) for h in (32, 64)
    }
    for trial in trials:
        Config.from_params(trial.params)  # every trial's params are valid for train()


def test_the_sweep_gets_a_code_version_from_the_source_of_train_py(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    version = derive_code_version("examples.digits.train:train")
    assert version is not None and version.startswith("src:") and len(version) == 16
    specs = wire_specs(load_spec(SWEEP))
    assert {s.code_version for s in specs} == {version}

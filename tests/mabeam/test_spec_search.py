"""Trials of a sweep spec: grid order, seeded random draws within their ranges, and the
trial content hash (stable, order-independent, type-aware)."""

from __future__ import annotations

import itertools
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mabeam.ml._search import canonical_bytes
from mabeam.ml.spec import (
    GridSearch,
    RandomSearch,
    Trial,
    load_spec,
    parse_spec,
    trial_hash,
)

SPECS = Path(__file__).parent / "specs"
HEADER = 'name = "t"\nentrypoint = "pkg.mod:fn"\n'

# Golden values, computed once by this implementation and pinned: if one changes, every
# result cache keyed by trial hashes (and every seeded sweep) silently changes with it.
GOLDEN_PARAMS: dict[str, Any] = {
    "lr": 0.1,
    "hidden": 64,
    "amp": True,
    "act": "relu",
    "opt": {"betas": [0.9, 0.999], "name": "adam"},
    "note": None,
}
GOLDEN_HASH_V1 = "9e0b70e1f676b7080af583c156aa5196e226ed46015ffffa9ef4f11b0086ac4d"
GOLDEN_HASH_NO_VERSION = "9bd4a62245aad4ef5c87cfa2d82652236d4da884b93edf32353c57172497aaa9"


def random_spec(space: str, n: int = 8, seed: int = 0, extra: str = "") -> str:
    return (
        HEADER
        + extra
        + f'[search]\nstrategy = "random"\nn = {n}\nseed = {seed}\n[search.space]\n{space}\n'
    )


# -- grid -------------------------------------------------------------------------------


def test_grid_trials_are_the_cartesian_product_first_parameter_slowest() -> None:
    spec = load_spec(SPECS / "grid.toml")
    trials = spec.trials()
    assert [t.index for t in trials] == list(range(6))
    assert [t.params for t in trials] == [
        {"epochs": 5, "lr": 0.1, "hidden": 32},
        {"epochs": 5, "lr": 0.1, "hidden": 64},
        {"epochs": 5, "lr": 0.1, "hidden": 128},
        {"epochs": 5, "lr": 0.01, "hidden": 32},
        {"epochs": 5, "lr": 0.01, "hidden": 64},
        {"epochs": 5, "lr": 0.01, "hidden": 128},
    ]
    for trial in trials:
        assert trial.hash == trial_hash(spec.entrypoint, trial.params, spec.code_version)
    assert len({t.hash for t in trials}) == 6


def test_iter_trials_matches_trials_and_num_trials() -> None:
    for name in ("grid.toml", "random.toml", "minimal.toml", "full.toml"):
        spec = load_spec(SPECS / name)
        assert list(spec.iter_trials()) == spec.trials()
        assert len(spec.trials()) == spec.num_trials


def test_trials_never_share_mutable_values() -> None:
    text = HEADER + '[params]\nlayers = [1, 2]\n[search]\nstrategy = "grid"\n'
    spec = parse_spec(text + "[search.grid]\nshape = [[3], [4]]\n")
    first, second = spec.trials()
    first.params["layers"].append(99)
    first.params["shape"].append(99)
    assert second.params == {"layers": [1, 2], "shape": [4]}
    assert spec.params["layers"] == [1, 2]
    assert spec.trials()[0].params == {"layers": [1, 2], "shape": [3]}


def test_a_code_version_changes_every_hash() -> None:
    text = HEADER + '[search]\nstrategy = "grid"\n[search.grid]\nlr = [0.1, 0.2]\n'
    plain = parse_spec(text).trials()
    versioned = parse_spec('code_version = "v2"\n' + text).trials()
    assert [t.params for t in plain] == [t.params for t in versioned]
    assert not {t.hash for t in plain} & {t.hash for t in versioned}


def test_trials_are_hashable_by_index_and_hash() -> None:
    trials = load_spec(SPECS / "grid.toml").trials()
    assert len(set(trials)) == 6
    assert Trial(0, {"a": 1}, "h") == Trial(0, {"a": 1}, "h")


def toml_value(value: Any) -> str:
    """A tiny TOML writer for the scalar values and arrays the property tests use."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return "[" + ", ".join(toml_value(item) for item in value) + "]"


toml_text = st.text(st.characters(codec="utf-8"), max_size=8)
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    toml_text,
)
grid_values = st.lists(scalars, min_size=1, max_size=4, unique_by=canonical_bytes)
grids = st.dictionaries(toml_text, grid_values, min_size=1, max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grid=grids, fixed=st.dictionaries(toml_text, scalars, max_size=3))
def test_random_valid_grids_expand_to_their_product_with_unique_hashes(
    grid: dict[str, list[Any]], fixed: dict[str, Any]
) -> None:
    grid = {f"g {name}": values for name, values in grid.items()}  # names never collide
    fixed = {f"f {name}": value for name, value in fixed.items()}
    lines = [HEADER, "[params]"]
    lines += [f"{toml_value(k)} = {toml_value(v)}" for k, v in fixed.items()]
    lines += ["[search]", 'strategy = "grid"', "[search.grid]"]
    lines += [f"{toml_value(k)} = {toml_value(v)}" for k, v in grid.items()]
    spec = parse_spec("\n".join(lines) + "\n")

    assert isinstance(spec.search, GridSearch)
    trials = spec.trials()
    assert len(trials) == spec.num_trials == math.prod(len(v) for v in grid.values())
    assert [t.index for t in trials] == list(range(len(trials)))
    expected = [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    for trial, combo in zip(trials, expected, strict=True):
        assert canonical_bytes(trial.params) == canonical_bytes({**fixed, **combo})
    assert len({t.hash for t in trials}) == len(trials)


# -- random -----------------------------------------------------------------------------


def test_random_trials_are_reproducible_by_seed_and_differ_across_seeds() -> None:
    spec = load_spec(SPECS / "random.toml")
    again = load_spec(SPECS / "random.toml")
    assert spec.trials() == again.trials()
    assert isinstance(spec.search, RandomSearch)
    text = (SPECS / "random.toml").read_text()
    other = parse_spec(text.replace("seed = 42", "seed = 43"))
    assert other.search != spec.search
    ours = [t.params["lr"] for t in spec.trials()]
    theirs = [t.params["lr"] for t in other.trials()]
    assert len(set(ours)) == 8
    assert not set(ours) & set(theirs)


def test_random_draws_keep_to_their_ranges_and_choices() -> None:
    spec = load_spec(SPECS / "random.toml")
    for trial in spec.trials():
        p = trial.params
        assert set(p) == {"epochs", "lr", "dropout", "hidden", "activation", "optimizer"}
        assert p["epochs"] == 5
        assert isinstance(p["lr"], float) and 1e-4 <= p["lr"] < 0.1
        assert isinstance(p["dropout"], float) and 0.0 <= p["dropout"] < 0.5
        assert type(p["hidden"]) is int and 16 <= p["hidden"] <= 256
        assert p["activation"] in ("relu", "tanh")
        assert p["optimizer"] in ("sgd", "adam")


def test_seeded_draws_are_pinned_across_versions() -> None:
    space = (
        'x = { distribution = "uniform", low = -1, high = 1 }\n'
        'k = { distribution = "int", low = 0, high = 9 }\n'
        'c = ["a", "b", "c"]'
    )
    trials = parse_spec(random_spec(space, n=3, seed=7)).trials()
    assert [t.params for t in trials] == [
        {"x": 0.03727778967993012, "k": 0, "c": "b"},
        {"x": -0.1155614244341634, "k": 5, "c": "b"},
        {"x": -0.14830444554861533, "k": 6, "c": "a"},
    ]


def test_raising_n_keeps_the_first_trials_and_adding_a_parameter_keeps_the_others() -> None:
    space = 'x = { distribution = "uniform", low = 0, high = 1 }'
    five = parse_spec(random_spec(space, n=5)).trials()
    ten = parse_spec(random_spec(space, n=10)).trials()
    assert ten[:5] == five
    wider = parse_spec(random_spec(space + "\ny = [1, 2]", n=5)).trials()
    assert [t.params["x"] for t in wider] == [t.params["x"] for t in five]


def test_loguniform_spreads_evenly_over_orders_of_magnitude() -> None:
    space = 'lr = { distribution = "loguniform", low = 1e-6, high = 1.0 }'
    draws = [t.params["lr"] for t in parse_spec(random_spec(space, n=2000)).trials()]
    assert all(1e-6 <= v < 1.0 for v in draws)
    below = sum(v < 1e-3 for v in draws) / len(draws)  # half the decades lie below 1e-3
    assert 0.45 < below < 0.55
    plain = 'lr = { distribution = "uniform", low = 1e-6, high = 1.0 }'
    uniform = [t.params["lr"] for t in parse_spec(random_spec(plain, n=2000)).trials()]
    assert sum(v < 1e-3 for v in uniform) / len(uniform) < 0.01


def test_int_and_choice_draws_cover_every_value() -> None:
    space = 'k = { distribution = "int", low = -1, high = 1 }\nc = [1, 1.0, true]'
    trials = parse_spec(random_spec(space, n=200)).trials()
    assert {t.params["k"] for t in trials} == {-1, 0, 1}
    assert {canonical_bytes(t.params["c"]) for t in trials} == {
        canonical_bytes(1),
        canonical_bytes(1.0),
        canonical_bytes(True),
    }


finite = st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False)


@settings(max_examples=100, deadline=None)
@given(
    a=finite,
    b=finite,
    exp_low=st.integers(-300, 300),
    decades=st.integers(1, 8),
    ints=st.tuples(st.integers(-(2**62), 2**62), st.integers(0, 2**62 - 1)),
    seed=st.integers(-(2**63), 2**63 - 1),
)
def test_every_draw_lies_within_its_declared_range(
    a: float, b: float, exp_low: int, decades: int, ints: tuple[int, int], seed: int
) -> None:
    low, high = sorted((a, b))
    if low == high:
        high = math.nextafter(low, math.inf)
    log_low, log_high = 10.0**exp_low, 10.0 ** min(exp_low + decades, 307)
    int_low, int_high = ints[0], ints[0] + ints[1]
    space = (
        f'u = {{ distribution = "uniform", low = {low!r}, high = {high!r} }}\n'
        f'g = {{ distribution = "loguniform", low = {log_low!r}, high = {log_high!r} }}\n'
        f'i = {{ distribution = "int", low = {int_low}, high = {int_high} }}'
    )
    for trial in parse_spec(random_spec(space, n=20, seed=seed)).trials():
        assert low <= trial.params["u"] < high
        assert log_low <= trial.params["g"] < log_high
        assert int_low <= trial.params["i"] <= int_high


# -- the trial hash -----------------------------------------------------------------------


def test_a_str_subclass_entrypoint_hashes_as_its_str_not_as_an_equal_str() -> None:
    """The hash state of (entrypoint, code version) is cached by value; a str subclass
    equal to a cached str but encoded by its ``str()`` must not get that entry."""

    class Entry(str):
        def __str__(self) -> str:  # as a (str, Enum) member's is: "Class.MEMBER"
            return "Entry.TRAIN"

    entry = Entry("mylab.train:main")
    assert entry == "mylab.train:main" and hash(entry) == hash("mylab.train:main")
    plain = trial_hash("mylab.train:main", {"lr": 0.1}, "v1")  # cached now
    assert trial_hash(entry, {"lr": 0.1}, "v1") == trial_hash("Entry.TRAIN", {"lr": 0.1}, "v1")
    assert trial_hash(entry, {"lr": 0.1}, "v1") != plain


def test_the_trial_hash_is_pinned() -> None:
    entry = "examples.digits.train:train"
    assert trial_hash(entry, GOLDEN_PARAMS, "v1") == GOLDEN_HASH_V1
    assert trial_hash(entry, GOLDEN_PARAMS, None) == GOLDEN_HASH_NO_VERSION
    assert trial_hash(entry, GOLDEN_PARAMS, "") == GOLDEN_HASH_NO_VERSION


def test_the_canonical_encoding_is_pinned() -> None:
    assert canonical_bytes({"b": [1, 1.0, True, None], "a": "\u00e9"}) == (
        b"d2:s1:as2:\xc3\xa9s1:bl4:i1;f" + struct.pack(">d", 1.0) + b"TN"
    )


def test_the_trial_hash_is_the_same_in_a_fresh_process_with_another_hash_seed() -> None:
    code = (
        "import json, sys\n"
        "from mabeam.ml.spec import trial_hash\n"
        "print(trial_hash('examples.digits.train:train', json.loads(sys.argv[1]), 'v1'))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(GOLDEN_PARAMS)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env=env,
    )
    assert out.stdout.strip() == GOLDEN_HASH_V1


def test_one_one_point_oh_and_true_hash_differently() -> None:
    hashes = {trial_hash("m:f", {"x": v}, None) for v in (1, 1.0, True, "1", [1], None)}
    assert len(hashes) == 6
    assert trial_hash("m:f", {"x": 0}, None) != trial_hash("m:f", {"x": False}, None)
    assert trial_hash("m:f", {"x": 0.0}, None) != trial_hash("m:f", {"x": -0.0}, None)


def test_lists_and_tuples_hash_alike_and_every_nan_is_one_value() -> None:
    assert trial_hash("m:f", {"b": (0.9, 0.999)}, None) == trial_hash(
        "m:f", {"b": [0.9, 0.999]}, None
    )
    other_nan = struct.unpack(">d", bytes.fromhex("7ff8000000000001"))[0]
    assert trial_hash("m:f", {"x": math.nan}, None) == trial_hash("m:f", {"x": other_nan}, None)


def test_the_entrypoint_and_code_version_are_part_of_the_hash() -> None:
    base = trial_hash("m:f", {"x": 1}, "v1")
    assert base != trial_hash("m:g", {"x": 1}, "v1")
    assert base != trial_hash("m:f", {"x": 1}, "v2")
    assert base != trial_hash("m:f", {"x": 1}, None)
    # no ambiguity between where the entrypoint ends and the code version begins
    assert trial_hash("ab", {}, "c") != trial_hash("a", {}, "bc")


def test_bad_values_raise_clear_type_and_value_errors() -> None:
    with pytest.raises(TypeError, match=r"^value\['a'\]\[1\] has unsupported type set"):
        trial_hash("m:f", {"a": [1, {2}]}, None)
    with pytest.raises(TypeError, match=r"^value\['a'\] has a non-str key 2; keys must be str"):
        trial_hash("m:f", {"a": {2: "x"}}, None)
    with pytest.raises(TypeError, match=r"^value has a non-str key 1"):
        trial_hash("m:f", {1: "x"}, None)  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"^value\['s'\] holds a string that is not valid"):
        trial_hash("m:f", {"s": "\ud800"}, None)
    deep: list[Any] = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValueError, match=r"^value\['d'\](\[0\]){63} is nested deeper than 64"):
        trial_hash("m:f", {"d": deep}, None)
    with pytest.raises(TypeError, match="params must be a mapping, got list"):
        trial_hash("m:f", [], None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="entrypoint must be a str, got int"):
        trial_hash(1, {}, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="code_version must be a str or None, got int"):
        trial_hash("m:f", {}, 1)  # type: ignore[arg-type]


def reorder(value: Any) -> Any:
    """The same value with every table's keys in reverse insertion order."""
    if isinstance(value, dict):
        return {k: reorder(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reorder(item) for item in value]
    return value


def typed(value: Any) -> Any:
    """An oracle for "same parameters": equality that tells 1, 1.0 and True apart, compares
    floats bit for bit, and ignores dict order."""
    if isinstance(value, dict):
        return ("d", frozenset((k, typed(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("l", tuple(typed(item) for item in value))
    if isinstance(value, float):
        return ("f", struct.pack(">d", value))
    return (type(value).__name__, value)


params_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False)
    | st.text(st.characters(codec="utf-8"), max_size=6),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)
params_dicts = st.dictionaries(st.text(max_size=5), params_values, max_size=5)


@settings(max_examples=150, deadline=None)
@given(params=params_dicts)
def test_the_hash_ignores_dict_order_at_every_level(params: dict[str, Any]) -> None:
    assert trial_hash("m:f", reorder(params), "v") == trial_hash("m:f", params, "v")


@settings(max_examples=150, deadline=None)
@given(a=params_dicts, b=params_dicts)
def test_equal_hashes_mean_equal_typed_params(a: dict[str, Any], b: dict[str, Any]) -> None:
    same_hash = trial_hash("m:f", a, None) == trial_hash("m:f", b, None)
    assert same_hash == (typed(a) == typed(b))


@settings(max_examples=100, deadline=None)
@given(value=params_values)
def test_int_float_and_bool_forms_of_a_value_never_collide(value: Any) -> None:
    if isinstance(value, bool):
        others = [int(value), float(value)]
    elif isinstance(value, int) and abs(value) < 2**53:
        others = [float(value), *([bool(value)] if value in (0, 1) else [])]
    else:
        return
    digest = trial_hash("m:f", {"x": value}, None)
    for other in others:
        assert trial_hash("m:f", {"x": other}, None) != digest

"""Validation of the adaptive searches' tables (``[search.pbt]``, ``[search.evolution]``,
``[search.asha]``, ``[search.optuna]``), in the same one-``SpecError`` style as the rest
of the spec parser (format in docs/search.md).

Private to ``mabeam.ml._spec_parse``, which calls ``adaptive`` with itself as the parser.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, cast

from ._spec_text import key_path, show
from .spec import (
    ASHASearch,
    Distribution,
    EvolutionSearch,
    OptunaSearch,
    PBTSearch,
)

if TYPE_CHECKING:
    from ._spec_parse import Parser

__all__ = ("ADAPTIVE_KEYS", "PBT_PARAMS", "SUB_KEYS", "adaptive")

#: The keys each adaptive strategy's own table accepts.
SUB_KEYS: dict[str, tuple[str, ...]] = {
    "pbt": (
        "population",
        "interval",
        "max_steps",
        "truncation",
        "perturb",
        "resample_probability",
        "seed",
    ),
    "evolution": (
        "population",
        "generations",
        "selection",
        "tournament_size",
        "truncation",
        "mutation_scale",
        "resample_probability",
        "seed",
    ),
    "asha": ("n", "max_steps", "min_steps", "eta", "seed"),
    "optuna": (
        "n",
        "sampler",
        "seed",
        "startup_trials",
        "pruner",
        "pruner_startup_trials",
        "pruner_warmup_steps",
    ),
}
#: The keys ``[search]`` accepts with each adaptive strategy.
ADAPTIVE_KEYS = {name: ("strategy", name, "space") for name in SUB_KEYS}
#: Parameters a PBT trial gets from the strategy, so a spec may not set or search them.
PBT_PARAMS = ("pbt_steps", "checkpoint")
_EXAMPLES = {
    "pbt": "e.g. population = 8, interval = 2, max_steps = 20",
    "evolution": "e.g. population = 8, generations = 5",
    "asha": "e.g. n = 27, max_steps = 27, min_steps = 1, eta = 3",
    "optuna": 'e.g. n = 50, sampler = "tpe"',
}
_REQUIRED = {"pbt": ("max_steps",), "evolution": (), "asha": ("n", "max_steps"), "optuna": ("n",)}
_SPACE_EXAMPLE = 'e.g. lr = { distribution = "loguniform", low = 1e-4, high = 0.1 }'

Adaptive = PBTSearch | EvolutionSearch | ASHASearch | OptunaSearch


def adaptive(
    parser: Parser, strategy: str, table: dict[str, Any], params: dict[str, Any]
) -> Adaptive:
    """``[search]`` with strategy pbt/evolution/asha/optuna -> its dataclass."""
    path = f"search.{strategy}"
    if strategy in _REQUIRED and _REQUIRED[strategy] and strategy not in table:
        parser.fail(path, f'is required with strategy = "{strategy}" ({_EXAMPLES[strategy]})')
    sub = parser.table(table.get(strategy, {}), path, _EXAMPLES[strategy])
    parser.check_keys(sub, path, SUB_KEYS[strategy])
    for key in _REQUIRED[strategy]:
        if key not in sub:
            parser.fail(key_path(path, key), f"is required ({_EXAMPLES[strategy]})")
    space = _space(parser, table, params, strategy)
    reader = _Reader(parser, path, sub)
    if strategy == "pbt":
        return _pbt(reader, space)
    if strategy == "evolution":
        return _evolution(reader, space)
    if strategy == "asha":
        return _asha(reader, space)
    return _optuna(reader, space)


def _space(
    parser: Parser, table: dict[str, Any], params: dict[str, Any], strategy: str
) -> MappingProxyType[str, Distribution]:
    raw = parser.named_table(table, "space", _SPACE_EXAMPLE)
    space: dict[str, Distribution] = {}
    for name, value in raw.items():
        path = key_path("search.space", name)
        parser.not_fixed(name, path, params)
        if strategy == "pbt" and name in PBT_PARAMS:
            parser.fail(path, 'is set by strategy = "pbt" for each trial: choose another name')
        space[name] = parser.distribution(value, path, _SPACE_EXAMPLE)
    if strategy == "pbt":
        for name in PBT_PARAMS:
            if name in params:
                parser.fail(
                    key_path("params", name),
                    'is set by strategy = "pbt" for each trial: choose another name',
                )
    return MappingProxyType(space)


class _Reader:
    """Reads one key of a strategy table with its default, failing with its full path."""

    def __init__(self, parser: Parser, path: str, table: dict[str, Any]) -> None:
        self.parser = parser
        self.path = path
        self.table = table

    def where(self, key: str) -> str:
        return key_path(self.path, key)

    def integer(self, key: str, default: int, low: int) -> int:
        return self.parser.integer(self.table.get(key, default), self.where(key), low=low)

    def seed(self) -> int:
        return self.parser.integer(self.table.get("seed", 0), self.where("seed"))

    def fraction(self, key: str, default: float, *, low_open: bool, high: float) -> float:
        """A number in (0, high] (``low_open``) or [0, high]."""
        value = self.table.get(key, default)
        bound = f"in (0, {high:g}]" if low_open else f"in [0, {high:g}]"
        number = self.parser.number(value, self.where(key), f"a number {bound}")
        if number > high or number < 0 or (low_open and number == 0):
            self.parser.fail(self.where(key), f"must be a number {bound}, got {show(value)}")
        return number

    def choice(self, key: str, default: str, options: tuple[str, ...]) -> str:
        return self.parser.one_of(self.table.get(key, default), self.where(key), options)

    def factors(self) -> tuple[float, ...]:
        value = self.table.get("perturb", [0.8, 1.2])
        path = self.where("perturb")
        if not isinstance(value, list) or not value:
            self.parser.fail(path, f"must be a non-empty array of factors > 0, got {show(value)}")
        factors = []
        for i, item in enumerate(value):
            factor = self.parser.number(item, f"{path}[{i}]", "a factor > 0")
            if factor <= 0:
                self.parser.fail(f"{path}[{i}]", f"must be a factor > 0, got {show(item)}")
            factors.append(factor)
        return tuple(factors)


def _pbt(reader: _Reader, space: MappingProxyType[str, Distribution]) -> PBTSearch:
    population = reader.integer("population", 8, 2)
    interval = reader.integer("interval", 1, 1)
    max_steps = reader.integer("max_steps", 1, 1)
    search = PBTSearch(
        space=space,
        max_steps=max_steps,
        population=population,
        interval=interval,
        truncation=reader.fraction("truncation", 0.2, low_open=True, high=0.5),
        perturb=reader.factors(),
        resample_probability=reader.fraction("resample_probability", 0.25, low_open=False, high=1),
        seed=reader.seed(),
    )
    segments = math.ceil(max_steps / interval)
    jobs = population * segments
    if jobs > reader.parser.max_trials:
        reader.parser.fail(
            reader.path,
            f"makes {jobs} trials (population {population} x {segments} segments of "
            f"{interval} steps), more than the limit of {reader.parser.max_trials}",
        )
    return search


def _evolution(reader: _Reader, space: MappingProxyType[str, Distribution]) -> EvolutionSearch:
    population = reader.integer("population", 8, 2)
    generations = reader.integer("generations", 5, 1)
    jobs = population * generations
    if jobs > reader.parser.max_trials:
        reader.parser.fail(
            reader.path,
            f"makes up to {jobs} trials (population {population} x {generations} "
            f"generations), more than the limit of {reader.parser.max_trials}",
        )
    selection = reader.choice("selection", "tournament", ("tournament", "truncation"))
    return EvolutionSearch(
        space=space,
        population=population,
        generations=generations,
        selection="truncation" if selection == "truncation" else "tournament",
        tournament_size=reader.integer("tournament_size", 3, 1),
        truncation=reader.fraction("truncation", 0.5, low_open=True, high=1),
        mutation_scale=reader.fraction("mutation_scale", 0.1, low_open=True, high=1),
        resample_probability=reader.fraction("resample_probability", 0.1, low_open=False, high=1),
        seed=reader.seed(),
    )


def _n(reader: _Reader) -> int:
    n = reader.integer("n", 1, 1)
    if n > reader.parser.max_trials:
        reader.parser.fail(
            reader.where("n"), f"is {n}, more than the limit of {reader.parser.max_trials} trials"
        )
    return n


def _asha(reader: _Reader, space: MappingProxyType[str, Distribution]) -> ASHASearch:
    n = _n(reader)
    max_steps = reader.integer("max_steps", 1, 2)
    min_steps = reader.integer("min_steps", 1, 1)
    if min_steps >= max_steps:
        reader.parser.fail(
            reader.where("min_steps"),
            f"must be less than max_steps ({max_steps}), got {min_steps}",
        )
    eta = reader.integer("eta", 3, 2)
    return ASHASearch(
        space=space, n=n, max_steps=max_steps, min_steps=min_steps, eta=eta, seed=reader.seed()
    )


def _optuna(reader: _Reader, space: MappingProxyType[str, Distribution]) -> OptunaSearch:
    n = _n(reader)
    sampler = reader.choice("sampler", "tpe", ("tpe", "random", "cmaes", "qmc"))
    pruner = reader.choice("pruner", "none", ("none", "median", "successive_halving"))
    return OptunaSearch(
        space=space,
        n=n,
        sampler=cast(Literal["tpe", "random", "cmaes", "qmc"], sampler),
        seed=reader.seed(),
        startup_trials=reader.integer("startup_trials", 10, 0),
        pruner=cast(Literal["none", "median", "successive_halving"], pruner),
        pruner_startup_trials=reader.integer("pruner_startup_trials", 5, 0),
        pruner_warmup_steps=reader.integer("pruner_warmup_steps", 0, 0),
    )

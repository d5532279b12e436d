"""The adaptive searches' spec tables: defaults, job counts, and one clear SpecError per
problem, naming the key path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mabeam.ml import (
    ASHASearch,
    Choice,
    EvolutionSearch,
    LogUniform,
    OptunaSearch,
    PBTSearch,
    SpecError,
    parse_spec,
)

HEADER = 'name = "t"\nentrypoint = "pkg.mod:fn"\nmetric = "loss"\nmode = "min"\n'
SPACE = '[search.space]\nlr = { distribution = "loguniform", low = 1e-4, high = 0.1 }\n'
LR = {"lr": LogUniform(1e-4, 0.1)}


@pytest.mark.parametrize(
    ("body", "search", "jobs"),
    [
        (
            "[search]\nstrategy = 'pbt'\n[search.pbt]\nmax_steps = 20\n",
            PBTSearch(space=LR, max_steps=20),
            8 * 20,
        ),
        (
            "[search]\nstrategy = 'pbt'\n[search.pbt]\npopulation = 4\ninterval = 3\n"
            "max_steps = 10\ntruncation = 0.25\nperturb = [0.5, 2]\nresample_probability = 0\n"
            "seed = 7\n",
            PBTSearch(LR, 10, 4, 3, 0.25, (0.5, 2.0), 0.0, 7),
            4 * 4,
        ),
        ("[search]\nstrategy = 'evolution'\n", EvolutionSearch(space=LR), 8 * 5),
        (
            "[search]\nstrategy = 'evolution'\n[search.evolution]\npopulation = 6\n"
            "generations = 2\nselection = 'truncation'\ntournament_size = 2\ntruncation = 0.3\n"
            "mutation_scale = 0.5\nresample_probability = 1\nseed = 2\n",
            EvolutionSearch(LR, 6, 2, "truncation", 2, 0.3, 0.5, 1.0, 2),
            12,
        ),
        (
            "[search]\nstrategy = 'asha'\n[search.asha]\nn = 27\nmax_steps = 27\n",
            ASHASearch(space=LR, n=27, max_steps=27),
            27,
        ),
        (
            "[search]\nstrategy = 'optuna'\n[search.optuna]\nn = 50\n",
            OptunaSearch(space=LR, n=50),
            50,
        ),
        (
            "[search]\nstrategy = 'optuna'\n[search.optuna]\nn = 5\nsampler = 'qmc'\nseed = 1\n"
            "startup_trials = 0\npruner = 'median'\npruner_startup_trials = 1\n"
            "pruner_warmup_steps = 2\n",
            OptunaSearch(LR, 5, "qmc", 1, 0, "median", 1, 2),
            5,
        ),
    ],
)
def test_adaptive_searches_parse_with_their_defaults(body: str, search: object, jobs: int) -> None:
    spec = parse_spec(HEADER + body + SPACE)
    assert spec.search == search
    assert spec.num_trials == jobs


ERRORS = [
    (
        "[search]\nstrategy = 'pbt'\n" + SPACE,
        "search.pbt",
        'is required with strategy = "pbt" (e.g. population = 8, interval = 2, max_steps = 20)',
    ),
    (
        "[search]\nstrategy = 'pbt'\n[search.pbt]\npopulation = 8\n" + SPACE,
        "search.pbt.max_steps",
        "is required (e.g. population = 8, interval = 2, max_steps = 20)",
    ),
    (
        "[search]\nstrategy = 'pbt'\n[search.pbt]\nmax_steps = 5\npopulation = 1\n" + SPACE,
        "search.pbt.population",
        "must be an int >= 2, got 1",
    ),
    (
        "[search]\nstrategy = 'pbt'\n[search.pbt]\nmax_steps = 5\ninterval = 0\n" + SPACE,
        "search.pbt.interval",
        "must be an int >= 1, got 0",
    ),
    (
        "[search]\nstrategy = 'pbt'\n[search.pbt]\nmax_steps = 5\ntruncation = 0.6\n" + SPACE,
        "search.pbt.truncation",
        "must be a number in (0, 0.5], got 0.6",
    ),
    (
        "[search]\nstrategy = 'pbt'\n[search.pbt]\nmax_steps = 5\nperturb = 1.2\n" + SPACE,
        "search.pbt.perturb",
        "must be a non-empty array of factors > 0, got 1.2",
    ),
    (
        "[search]\nstrategy = 'pbt'\n[search.pbt]\nmax_steps = 5\nperturb = [0.8, -1]\n" + SPACE,
        "search.pbt.perturb[1]",
        "must be a factor > 0, got -1",
    ),
    (
        "[search]\nstrategy = 'pbt'\n[search.pbt]\nmax_steps = 5\nresample_probability = 2\n"
        + SPACE,
        "search.pbt.resample_probability",
        "must be a number in [0, 1], got 2",
    ),
    (
        "[search]\nstrategy = 'pbt'\n[search.pbt]\nmax_steps = 5\npopulaton = 4\n" + SPACE,
        "search.pbt.populaton",
        "is not a known key; did you mean search.pbt.population?",
    ),
    (
        "[search]\nstrategy = 'pbt'\n[search.pbt]\nmax_steps = 5\n"
        "[search.space]\npbt_steps = [1, 2]\n",
        "search.space.pbt_steps",
        'is set by strategy = "pbt" for each trial: choose another name',
    ),
    (
        "[params]\ncheckpoint = 'x'\n[search]\nstrategy = 'pbt'\n[search.pbt]\nmax_steps = 5\n"
        + SPACE,
        "params.checkpoint",
        'is set by strategy = "pbt" for each trial: choose another name',
    ),
    (
        "[search]\nstrategy = 'pbt'\n[search.pbt]\nmax_steps = 100000\ninterval = 1\n" + SPACE,
        "search.pbt",
        "makes 800000 trials (population 8 x 100000 segments of 1 steps), more than "
        "the limit of 100000",
    ),
    (
        "[search]\nstrategy = 'pbt'\nseed = 1\n[search.pbt]\nmax_steps = 5\n" + SPACE,
        "search.seed",
        "belongs in [search.pbt]: search.pbt.seed",
    ),
    (
        "[search]\nstrategy = 'pbt'\ngrid = {}\n",
        "search.grid",
        'is only used with strategy = "grid" (this search is "pbt")',
    ),
    (
        "[search]\nstrategy = 'random'\nn = 2\npbt = {}\n" + SPACE,
        "search.pbt",
        'is only used with strategy = "pbt" (this search is "random")',
    ),
    (
        "[search]\nstrategy = 'evolution'\n",
        "search.space",
        'is required with strategy = "evolution" (e.g. lr = { distribution = '
        '"loguniform", low = 1e-4, high = 0.1 })',
    ),
    (
        "[search]\nstrategy = 'evolution'\nevolution = 3\n" + SPACE,
        "search.evolution",
        "must be a table (e.g. population = 8, generations = 5), got 3",
    ),
    (
        "[search]\nstrategy = 'evolution'\n[search.evolution]\nselection = 'roulette'\n" + SPACE,
        "search.evolution.selection",
        'must be one of "tournament", "truncation", got "roulette"',
    ),
    (
        "[search]\nstrategy = 'evolution'\n[search.evolution]\ngenerations = 0\n" + SPACE,
        "search.evolution.generations",
        "must be an int >= 1, got 0",
    ),
    (
        "[search]\nstrategy = 'evolution'\n[search.evolution]\nmutation_scale = 0\n" + SPACE,
        "search.evolution.mutation_scale",
        "must be a number in (0, 1], got 0",
    ),
    (
        "[search]\nstrategy = 'asha'\n[search.asha]\nn = 5\n" + SPACE,
        "search.asha.max_steps",
        "is required (e.g. n = 27, max_steps = 27, min_steps = 1, eta = 3)",
    ),
    (
        "[search]\nstrategy = 'asha'\n[search.asha]\nn = 5\nmax_steps = 9\nmin_steps = 9\n" + SPACE,
        "search.asha.min_steps",
        "must be less than max_steps (9), got 9",
    ),
    (
        "[search]\nstrategy = 'asha'\n[search.asha]\nn = 5\nmax_steps = 9\neta = 1\n" + SPACE,
        "search.asha.eta",
        "must be an int >= 2, got 1",
    ),
    (
        "[search]\nstrategy = 'asha'\n[search.asha]\nn = 0\nmax_steps = 9\n" + SPACE,
        "search.asha.n",
        "must be an int >= 1, got 0",
    ),
    (
        "[search]\nstrategy = 'optuna'\n[search.optuna]\nn = 5\nsampler = 'tpee'\n" + SPACE,
        "search.optuna.sampler",
        'must be one of "tpe", "random", "cmaes", "qmc", got "tpee"; did you mean "tpe"?',
    ),
    (
        "[search]\nstrategy = 'optuna'\n[search.optuna]\nn = 5\npruner = 'hyperband'\n" + SPACE,
        "search.optuna.pruner",
        'must be one of "none", "median", "successive_halving", got "hyperband"',
    ),
    (
        "[search]\nstrategy = 'optuna'\nn = 5\n" + SPACE,
        "search.n",
        "belongs in [search.optuna]: search.optuna.n",
    ),
    (
        "[search]\nstrategy = 'optuna'\n[search.optuna]\nn = 200000\n" + SPACE,
        "search.optuna.n",
        "is 200000, more than the limit of 100000 trials",
    ),
]


@pytest.mark.parametrize(("body", "path", "problem"), ERRORS, ids=[e[1] for e in ERRORS])
def test_every_bad_table_names_its_key_path(body: str, path: str, problem: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(HEADER + body, "sweep.toml")
    assert (info.value.path, info.value.problem) == (path, problem)
    assert str(info.value) == f"sweep.toml: {path} {problem}"


def test_an_adaptive_search_needs_a_metric() -> None:
    body = "[search]\nstrategy = 'asha'\n[search.asha]\nn = 5\nmax_steps = 9\n" + SPACE
    with pytest.raises(SpecError) as info:
        parse_spec('name = "t"\nentrypoint = "pkg.mod:fn"\n' + body, "s.toml")
    assert str(info.value) == (
        's.toml: metric is required with strategy = "asha": the result key that ranks '
        'trials, e.g. metric = "accuracy"'
    )


def test_choices_and_other_distributions_carry_over() -> None:
    spec = parse_spec(
        HEADER + "[search]\nstrategy = 'pbt'\n[search.pbt]\nmax_steps = 4\n"
        "[search.space]\nact = ['relu', 'tanh']\n"
    )
    assert isinstance(spec.search, PBTSearch)
    assert spec.search.space == {"act": Choice(("relu", "tanh"))}


def test_the_examples_in_docs_search_md_parse_with_the_defaults_they_state() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "search.md").read_text()
    blocks = [b.split("```", 1)[0] for b in doc.split("```toml\n")[1:]]
    searches = [parse_spec(HEADER + block, "docs example").search for block in blocks]
    space = {"lr": LogUniform(1e-4, 0.1)}
    assert searches[0] == PBTSearch(space=space, max_steps=20, interval=2)
    assert isinstance(searches[1], EvolutionSearch)
    assert dataclasses.replace(searches[1], space=space) == EvolutionSearch(space=space)
    assert searches[2:] == [ASHASearch(space=space, n=27, max_steps=27), OptunaSearch(space, 50)]

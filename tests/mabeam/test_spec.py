"""Sweep spec files: valid specs parse to the expected dataclasses, and every invalid one
raises a SpecError whose one-line message names the file, the key path and what was
expected."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mabeam.ml.spec import (
    DEFAULT_MAX_TRIALS,
    Choice,
    GridSearch,
    IntUniform,
    LogUniform,
    RandomSearch,
    Resources,
    SpecError,
    SweepSpec,
    Uniform,
    load_spec,
    parse_spec,
)

SPECS = Path(__file__).parent / "specs"
HEADER = 'name = "t"\nentrypoint = "pkg.mod:fn"\n'


# -- valid specs --------------------------------------------------------------------------


def test_the_grid_example_parses_to_the_expected_dataclass() -> None:
    path = SPECS / "grid.toml"
    spec = load_spec(path)
    assert spec == SweepSpec(
        name="digits-grid",
        entrypoint="examples.digits.train:train",
        metric="accuracy",
        resources=Resources(gpus=0, cpus=1.0, memory_mb=0),
        params={"epochs": 5},
        search=GridSearch(grid={"lr": (0.1, 0.01), "hidden": (32, 64, 128)}),
    )
    assert spec.source == str(path)
    assert spec.num_trials == 6


def test_the_random_example_parses_every_distribution_shape() -> None:
    spec = load_spec(SPECS / "random.toml")
    assert spec == SweepSpec(
        name="digits-random",
        entrypoint="examples.digits.train:train",
        metric="loss",
        mode="min",
        params={"epochs": 5},
        search=RandomSearch(
            n=8,
            seed=42,
            space={
                "lr": LogUniform(1e-4, 0.1),
                "dropout": Uniform(0.0, 0.5),
                "hidden": IntUniform(16, 256),
                "activation": Choice(("relu", "tanh")),
                "optimizer": Choice(("sgd", "adam")),
            },
        ),
    )
    assert spec.num_trials == 8


def test_a_minimal_spec_gets_the_documented_defaults_and_one_trial() -> None:
    spec = load_spec(str(SPECS / "minimal.toml"))
    assert spec == SweepSpec(name="hello", entrypoint="mypkg.tasks:hello")
    assert (spec.code_version, spec.description, spec.metric) == (None, "", None)
    assert spec.resources == Resources(gpus=0, cpus=1.0, memory_mb=0)
    assert (spec.max_retries, spec.timeout_s, spec.priority) == (3, None, 0)
    assert (spec.isolation, spec.mode, dict(spec.params), spec.search) == (
        "process",
        "max",
        {},
        None,
    )
    [trial] = spec.trials()
    assert (trial.index, trial.params) == (0, {})


def test_a_spec_with_every_key_keeps_every_value() -> None:
    spec = load_spec(SPECS / "full.toml")
    assert spec == SweepSpec(
        name="full",
        description="every key of the format",
        entrypoint="mypkg.train:main",
        code_version="git:4f2a9c1",
        resources=Resources(gpus=2, cpus=0.5, memory_mb=4096),
        max_retries=5,
        timeout_s=90.5,
        priority=-3,
        isolation="pool",
        metric="accuracy",
        mode="max",
        params={
            "dataset": "digits",
            "layers": [64, 32],
            "optimizer": {"name": "adam", "betas": [0.9, 0.999]},
        },
    )


def test_retries_is_an_alias_of_max_retries_and_ints_become_floats() -> None:
    spec = parse_spec(HEADER + "retries = 0\ntimeout_s = 30\n[resources]\ncpus = 2\n")
    assert spec.max_retries == 0
    assert spec.timeout_s == 30.0 and isinstance(spec.timeout_s, float)
    assert spec.resources.cpus == 2.0 and isinstance(spec.resources.cpus, float)


def test_a_spec_is_frozen_and_its_tables_are_read_only() -> None:
    spec = load_spec(SPECS / "grid.toml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.params["epochs"] = 6  # type: ignore[index]
    assert isinstance(spec.search, GridSearch)
    with pytest.raises(TypeError):
        spec.search.grid["lr"] = (1.0,)  # type: ignore[index]


def test_quoted_keys_and_a_utf8_bom_are_accepted() -> None:
    spec = parse_spec(
        "\ufeff" + HEADER + '[search]\nstrategy = "grid"\n[search.grid]\n"layer.size" = [1, 2]\n'
    )
    assert isinstance(spec.search, GridSearch)
    assert dict(spec.search.grid) == {"layer.size": (1, 2)}


def test_grid_values_may_be_arrays_and_tables() -> None:
    text = HEADER + '[search]\nstrategy = "grid"\n[search.grid]\nshape = [[1, 2], [3], {a = 1}]\n'
    spec = parse_spec(text)
    assert [t.params for t in spec.trials()] == [
        {"shape": [1, 2]},
        {"shape": [3]},
        {"shape": {"a": 1}},
    ]


def test_the_trial_cap_is_configurable() -> None:
    text = HEADER + '[search]\nstrategy = "grid"\n[search.grid]\na = [1, 2, 3]\nb = [1, 2]\n'
    assert parse_spec(text, max_trials=6).num_trials == 6
    with pytest.raises(SpecError) as info:
        parse_spec(text, "cap.toml", max_trials=5)
    assert str(info.value) == (
        "cap.toml: search.grid expands to 6 trials (3 x 2), more than the limit of 5"
    )
    assert DEFAULT_MAX_TRIALS == 100_000


def test_parse_spec_refuses_bytes_with_a_type_error() -> None:
    with pytest.raises(TypeError, match="needs the TOML text as str, got bytes"):
        parse_spec(HEADER.encode())  # type: ignore[arg-type]


# -- errors: one line, naming the file and the key path ----------------------------------

RANDOM = '[search]\nstrategy = "random"\nn = 4\n[search.space]\n'
GRID = '[search]\nstrategy = "grid"\n[search.grid]\n'
TOP_KEYS = (
    "name, description, entrypoint, code_version, resources, retries, max_retries, "
    "timeout_s, priority, isolation, metric, mode, params, search, market"
)

# (body appended to HEADER, or a whole document when it starts with "!"), key path, message
ERRORS: list[tuple[str, str, str]] = [
    # the top level
    ("entrypont = 'a:b'", "entrypont", "is not a known key; did you mean entrypoint?"),
    ("gpus = 1", "gpus", "is not a known key; did you mean resources.gpus?"),
    ("seed = 1", "seed", "is not a known key; did you mean search.seed?"),
    (
        "lr = 0.1",
        "lr",
        "is not a known key; fixed parameters go in [params], searched ones in [search] "
        f"(known at the top level: {TOP_KEYS})",
    ),
    ('!entrypoint = "a:b"', "name", 'is required (a short label, e.g. name = "digits-lr")'),
    ('!name = 3\nentrypoint = "a:b"', "name", "must be a string, got 3"),
    (
        '!name = "  "\nentrypoint = "a:b"',
        "name",
        'must be a non-empty single line of at most 200 characters, got "  "',
    ),
    (
        '!name = "a\\nb"\nentrypoint = "a:b"',
        "name",
        'must be a non-empty single line of at most 200 characters, got "a\\nb"',
    ),
    (
        '!name = "t"',
        "entrypoint",
        'is required: the function to run, as "package.module:function"',
    ),
    (
        '!name = "t"\nentrypoint = ["a:b"]',
        "entrypoint",
        'must be a string, got ["a:b"] (an array)',
    ),
    (
        '!name = "t"\nentrypoint = "train.py"',
        "entrypoint",
        'must look like "package.module:function" (a dotted module path, not a file path), '
        'got "train.py"',
    ),
    (
        '!name = "t"\nentrypoint = "pkg.train"',
        "entrypoint",
        'must look like "package.module:function" (the module, a colon, then the function '
        'name), got "pkg.train"',
    ),
    (
        '!name = "t"\nentrypoint = "pkg.class:fn"',
        "entrypoint",
        'must look like "package.module:function", got "pkg.class:fn"',
    ),
    (
        '!name = "t"\nentrypoint = "pkg.mod:"',
        "entrypoint",
        'must look like "package.module:function", got "pkg.mod:"',
    ),
    (
        'code_version = ""',
        "code_version",
        'must be a non-empty single line of at most 200 characters, got ""',
    ),
    ("description = 1.5", "description", "must be a string, got 1.5"),
    # resources
    ("resources = 2", "resources", "must be a table (gpus, cpus, memory_mb), got 2"),
    ("[resources]\ngpus = -1", "resources.gpus", "must be an int >= 0, got -1"),
    ("[resources]\ngpus = 1.0", "resources.gpus", "must be an int >= 0, got 1.0"),
    ("[resources]\ngpus = true", "resources.gpus", "must be an int >= 0, got true (a boolean)"),
    ("[resources]\ngpu = 1", "resources.gpu", "is not a known key; did you mean resources.gpus?"),
    (
        "[resources]\nvram = 1",
        "resources.vram",
        "is not a known key (known at [resources]: gpus, cpus, memory_mb)",
    ),
    ("[resources]\ncpus = 0", "resources.cpus", "must be a number > 0, got 0"),
    ('[resources]\ncpus = "2"', "resources.cpus", 'must be a number > 0, got "2" (a string)'),
    ("[resources]\ncpus = inf", "resources.cpus", "must be a number > 0, got inf"),
    ("[resources]\nmemory_mb = -5", "resources.memory_mb", "must be an int >= 0, got -5"),
    (
        "[resources]\nmemory_mb = 9223372036854775808",
        "resources.memory_mb",
        "must be an int >= 0 that fits in 64 bits, got 9223372036854775808",
    ),
    # policy
    (
        "retries = 1\nmax_retries = 2",
        "retries",
        "and max_retries are the same setting; give only one",
    ),
    ("retries = -1", "retries", "must be an int >= 0, got -1"),
    ("max_retries = 1.5", "max_retries", "must be an int >= 0, got 1.5"),
    ("timeout_s = 0", "timeout_s", "must be a number > 0, got 0"),
    ("timeout_s = -2.5", "timeout_s", "must be a number > 0, got -2.5"),
    ('timeout_s = "1h"', "timeout_s", 'must be a number > 0, got "1h" (a string)'),
    ("priority = 1.5", "priority", "must be an int, got 1.5"),
    (
        'isolation = "thread"',
        "isolation",
        'must be one of "process", "pool", got "thread"',
    ),
    (
        'isolation = "pol"',
        "isolation",
        'must be one of "process", "pool", got "pol"; did you mean "pool"?',
    ),
    ('metric = ""', "metric", 'must be a non-empty single line of at most 200 characters, got ""'),
    ("mode = 1", "mode", 'must be one of "max", "min", got 1'),
    (
        'mode = "mx"',
        "mode",
        'must be one of "max", "min", got "mx"; did you mean "max"?',
    ),
    # params
    (
        "params = [1]",
        "params",
        "must be a table (name = value for each fixed parameter), got [1] (an array)",
    ),
    (
        "[params]\nstart = 1979-05-27",
        "params.start",
        "must be a string, number, boolean, array or table, got 1979-05-27 (a date); "
        "write dates and times as strings",
    ),
    (
        "[params]\nopt = { betas = [0.9, 07:32:00] }",
        "params.opt.betas[1]",
        "must be a string, number, boolean, array or table, got 07:32:00 (a time); "
        "write dates and times as strings",
    ),
    (
        "[params]\nx = nan",
        "params.x",
        "is nan, which cannot be a parameter value (it equals nothing)",
    ),
    (
        "[params]\nx = 99999999999999999999",
        "params.x",
        "is too large: ints must fit in 64 bits, got 99999999999999999999",
    ),
    # search
    (
        'search = "grid"',
        "search",
        'must be a table (strategy = "grid" or "random"), got "grid" (a string)',
    ),
    (
        "[search]\nn = 3",
        "search.strategy",
        'is required: one of "grid", "random", "pbt", "evolution", "asha", "optuna"',
    ),
    (
        '[search]\nstrategy = "hyperband"',
        "search.strategy",
        '"hyperband" is not available yet (available: "grid", "random", "pbt", "evolution", '
        '"asha", "optuna")',
    ),
    (
        '[search]\nstrategy = "bayes"',
        "search.strategy",
        '"bayes" is not available yet (available: "grid", "random", "pbt", "evolution", '
        '"asha", "optuna")',
    ),
    (
        '[search]\nstrategy = "gird"',
        "search.strategy",
        'must be one of "grid", "random", "pbt", "evolution", "asha", "optuna", got "gird"; '
        'did you mean "grid"?',
    ),
    (
        "[search]\nstrategy = 1",
        "search.strategy",
        'must be one of "grid", "random", "pbt", "evolution", "asha", "optuna", got 1',
    ),
    (
        '[search]\nstrategy = "grid"\nseed = 3',
        "search.seed",
        'is only used with strategy = "random" (this search is "grid")',
    ),
    (
        '[search]\nstrategy = "random"\ngrid = {}',
        "search.grid",
        'is only used with strategy = "grid" (this search is "random")',
    ),
    (
        '[search]\nstrategy = "grid"\ngird = {}',
        "search.gird",
        "is not a known key; did you mean search.grid?",
    ),
    # grid
    (
        '[search]\nstrategy = "grid"',
        "search.grid",
        'is required with strategy = "grid" (e.g. lr = [0.1, 0.01])',
    ),
    (
        '[search]\nstrategy = "grid"\ngrid = [1]',
        "search.grid",
        "must be a table (e.g. lr = [0.1, 0.01]), got [1] (an array)",
    ),
    (GRID, "search.grid", "is empty: give at least one parameter (e.g. lr = [0.1, 0.01])"),
    (
        GRID + "lr = 0.1",
        "search.grid.lr",
        "must be an array of values, got 0.1; a single fixed value belongs in [params]",
    ),
    (GRID + "lr = []", "search.grid.lr", "is an empty array: give at least one value"),
    (
        GRID + "lr = [0.1, 0.01, 0.1]",
        "search.grid.lr[2]",
        "repeats 0.1 from search.grid.lr[0]: list each value once",
    ),
    (
        GRID + '"a b" = [1, 2, 1]',
        'search.grid."a b"[2]',
        'repeats 1 from search.grid."a b"[0]: list each value once',
    ),
    (
        GRID + "x = [1, 2, 1979-05-27T07:32:00]",
        "search.grid.x[2]",
        "must be a string, number, boolean, array or table, got 1979-05-27T07:32:00 "
        "(a date-time); write dates and times as strings",
    ),
    (
        "[params]\nlr = 0.1\n" + GRID + "lr = [0.1, 0.2]",
        "search.grid.lr",
        "is also set in [params] as params.lr: a parameter is either fixed or searched, not both",
    ),
    (
        GRID + "\n".join(f"p{i} = [{', '.join(str(v) for v in range(10))}]" for i in range(6)),
        "search.grid",
        "expands to 1000000 trials (10 x 10 x 10 x 10 x 10 x 10), more than the limit of 100000",
    ),
    # random
    (
        '[search]\nstrategy = "random"',
        "search.n",
        'is required with strategy = "random": the number of trials, e.g. n = 20',
    ),
    ('[search]\nstrategy = "random"\nn = 0', "search.n", "must be an int >= 1, got 0"),
    ('[search]\nstrategy = "random"\nn = 2.0', "search.n", "must be an int >= 1, got 2.0"),
    (
        '[search]\nstrategy = "random"\nn = 100001',
        "search.n",
        "is 100001, more than the limit of 100000 trials",
    ),
    (
        '[search]\nstrategy = "random"\nn = 3\nseed = "x"',
        "search.seed",
        'must be an int, got "x" (a string)',
    ),
    (
        '[search]\nstrategy = "random"\nn = 3',
        "search.space",
        'is required with strategy = "random" (e.g. lr = { distribution = "loguniform", '
        "low = 1e-4, high = 0.1 })",
    ),
    (
        RANDOM,
        "search.space",
        'is empty: give at least one parameter (e.g. lr = { distribution = "loguniform", '
        "low = 1e-4, high = 0.1 })",
    ),
    (
        RANDOM + "lr = 0.1",
        "search.space.lr",
        'must be a distribution table (e.g. lr = { distribution = "loguniform", low = 1e-4, '
        "high = 0.1 }) or an array of choices, got 0.1",
    ),
    (
        RANDOM + "act = []",
        "search.space.act",
        "is an empty array: a choice needs at least one value",
    ),
    (
        RANDOM + 'act = ["relu", "tanh", "relu"]',
        "search.space.act[2]",
        'repeats "relu" from search.space.act[0]: list each value once',
    ),
    (
        "[params]\nlr = 0.1\n" + RANDOM + 'lr = { distribution = "uniform", low = 0, high = 1 }',
        "search.space.lr",
        "is also set in [params] as params.lr: a parameter is either fixed or searched, not both",
    ),
    (
        RANDOM + "lr = { low = 0, high = 1 }",
        "search.space.lr.distribution",
        'is required: one of "uniform", "loguniform", "int", "choice"',
    ),
    (
        RANDOM + 'lr = { distribution = "log-uniform", low = 0.1, high = 1 }',
        "search.space.lr.distribution",
        'must be one of "uniform", "loguniform", "int", "choice", got "log-uniform"; '
        'did you mean "loguniform"?',
    ),
    (
        RANDOM + 'lr = { distribution = "uniform", lo = 0, high = 1 }',
        "search.space.lr.lo",
        "is not a known key; did you mean search.space.lr.low?",
    ),
    (
        RANDOM + 'lr = { distribution = "uniform", low = 0, high = 1, step = 2 }',
        "search.space.lr.step",
        "is not a known key (known at [search.space.lr]: distribution, low, high)",
    ),
    (
        RANDOM + 'lr = { distribution = "uniform", low = 0 }',
        "search.space.lr.high",
        'is required for distribution = "uniform"',
    ),
    (
        RANDOM + 'lr = { distribution = "uniform", low = "0", high = 1 }',
        "search.space.lr.low",
        'must be a number, got "0" (a string)',
    ),
    (
        RANDOM + 'lr = { distribution = "uniform", low = -inf, high = 1 }',
        "search.space.lr.low",
        "must be a number, got -inf",
    ),
    (
        RANDOM + 'lr = { distribution = "uniform", low = 1, high = 1 }',
        "search.space.lr.high",
        "must be greater than low (1), got 1",
    ),
    (
        RANDOM + 'lr = { distribution = "loguniform", low = 0, high = 1 }',
        "search.space.lr.low",
        'must be a number > 0 for distribution = "loguniform", got 0',
    ),
    (
        RANDOM + 'lr = { distribution = "loguniform", low = 1e-2, high = 1e-3 }',
        "search.space.lr.high",
        "must be greater than low (0.01), got 0.001",
    ),
    (
        RANDOM + 'h = { distribution = "int", low = 16.0, high = 64 }',
        "search.space.h.low",
        "must be an int, got 16.0",
    ),
    (
        RANDOM + 'h = { distribution = "int", low = 16, high = 8 }',
        "search.space.h.high",
        "must be >= low (16), got 8",
    ),
    (
        RANDOM + 'a = { distribution = "choice", values = [] }',
        "search.space.a.values",
        "must be a non-empty array, got [] (an array)",
    ),
    (
        RANDOM + 'a = { distribution = "choice", values = "relu" }',
        "search.space.a.values",
        'must be a non-empty array, got "relu" (a string)',
    ),
    (
        RANDOM + 'a = { distribution = "choice", values = [1, 1.0, true, 1] }',
        "search.space.a.values[3]",
        "repeats 1 from search.space.a.values[0]: list each value once",
    ),
    (
        RANDOM + 'a = { distribution = "choice", values = [1, 2], low = 1 }',
        "search.space.a.low",
        "is not a known key (known at [search.space.a]: distribution, values)",
    ),
    (
        RANDOM + "[search.space.lr]\nlow = 1",
        "search.space.lr.distribution",
        'is required: one of "uniform", "loguniform", "int", "choice"',
    ),
]


@pytest.mark.parametrize(("body", "path", "message"), ERRORS, ids=[e[1] for e in ERRORS])
def test_every_invalid_spec_names_the_file_the_key_path_and_the_expectation(
    body: str, path: str, message: str
) -> None:
    text = body[1:] if body.startswith("!") else HEADER + body + "\n"
    with pytest.raises(SpecError) as info:
        parse_spec(text, "sweep.toml")
    error = info.value
    assert str(error) == f"sweep.toml: {path} {message}"
    assert (error.source, error.path, error.problem) == ("sweep.toml", path, message)
    assert (error.line, error.column) == (None, None)
    assert "\n" not in str(error)


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(SpecError, ValueError)


def test_the_default_source_name_is_string() -> None:
    with pytest.raises(SpecError, match=r"^<string>: resources.gpus must be an int >= 0"):
        parse_spec(HEADER + "[resources]\ngpus = -1\n")


# -- errors in the TOML itself and in reading the file -----------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "reason"),
    [
        ('name = "t"\nentrypoint = = "a:b"\n', 2, 14, "Invalid value"),
        ('name = "t"\n[resources]\n[resources]\n', 3, 11, "Cannot declare ('resources',) twice"),
        ('name = "t"\nname = "u"\n', 2, 11, "Cannot overwrite a value"),
        ('name = "unterminated', 1, 21, "Unterminated string"),
        ("params = [1, 2\n", 2, 1, "Unclosed array"),
    ],
)
def test_toml_syntax_errors_give_line_and_column(
    text: str, line: int, column: int, reason: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "sweep.toml")
    assert str(info.value) == f"sweep.toml:{line}:{column}: invalid TOML: {reason}"
    assert (info.value.line, info.value.column, info.value.path) == (line, column, "")


def test_absurdly_nested_toml_is_an_error_not_a_crash() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec("x = " + "[" * 5000 + "]" * 5000, "deep.toml")
    assert str(info.value) == (
        "deep.toml: invalid TOML: arrays or inline tables are nested too deeply"
    )


def test_parameters_may_nest_63_arrays_deep_but_not_64() -> None:
    deepest = parse_spec(HEADER + "[params]\nx = " + "[" * 63 + "]" * 63 + "\n")
    [trial] = deepest.trials()  # and the content hash can encode it
    assert len(trial.hash) == 64
    with pytest.raises(SpecError) as info:
        parse_spec(HEADER + "[params]\nx = " + "[" * 64 + "]" * 64 + "\n", "deep.toml")
    assert (
        str(info.value) == "deep.toml: params.x" + "[0]" * 63 + " is nested deeper than 64 levels"
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bad_syntax.toml", "{path}:4:8: invalid TOML: Invalid value"),
        ("bad_gpus.toml", "{path}: resources.gpus must be an int >= 0, got -1"),
        (
            "bad_unknown_key.toml",
            "{path}: resources.gpu is not a known key; did you mean resources.gpus?",
        ),
        (
            "bad_space_low.toml",
            '{path}: search.space.lr.low must be a number > 0 for distribution = "loguniform", '
            "got 0.0",
        ),
        (
            "bad_strategy.toml",
            '{path}: search.strategy "hyperband" is not available yet (available: '
            '"grid", "random", "pbt", "evolution", "asha", "optuna")',
        ),
    ],
)
def test_bad_spec_files_are_named_by_the_path_given(name: str, message: str) -> None:
    path = SPECS / name
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == message.format(path=path)
    assert info.value.source == str(path)


def test_a_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{path}: cannot read the spec file: no such file"


def test_a_directory_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not a spec file"


def test_a_file_that_is_not_utf8_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{path}: is not UTF-8 text (byte 0xe9 at offset 11)"


def test_long_values_are_cut_in_messages() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(HEADER + f"[resources]\ngpus = [{', '.join(['1'] * 10_000)}]\n", "s.toml")
    message = str(info.value)
    assert message.startswith("s.toml: resources.gpus must be an int >= 0, got [1, 1, ")
    assert message.endswith("...] (an array)")
    assert len(message) < 160


def test_the_examples_in_docs_spec_md_parse() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "spec.md").read_text()
    blocks = [b.split("```", 1)[0] for b in doc.split("```toml\n")[1:]]
    full = parse_spec(blocks[0], "docs example")
    assert [t.params for t in full.trials()][:2] == [
        {"epochs": 20, "batch_size": 64, "lr": 0.3, "hidden": 32},
        {"epochs": 20, "batch_size": 64, "lr": 0.3, "hidden": 64},
    ]
    assert full.num_trials == 6
    for block in blocks[1:]:
        spec = parse_spec(HEADER + block, "docs example")
        assert spec.search is not None and spec.num_trials >= 1


def test_market_table_names_the_team_and_its_value() -> None:
    spec = parse_spec(HEADER + '[market]\nteam = "vision"\nvalue = 2.5\n', "sweep.toml")
    assert (spec.team, spec.value) == ("vision", 2.5)
    assert (parse_spec(HEADER, "sweep.toml").team, parse_spec(HEADER, "sweep.toml").value) == (
        "",
        None,
    )
    for body, path in (
        ('[market]\nteam = "a b"', "market.team"),
        ("[market]\nvalue = 2", "market.team"),
        ('[market]\nteam = "t"\nvalue = -1', "market.value"),
        ("[market]\nteem = 1", "market.teem"),
    ):
        with pytest.raises(SpecError) as info:
            parse_spec(HEADER + body + "\n", "sweep.toml")
        assert info.value.path == path

"""Sweep specs: a TOML file describing a training sweep, parsed into frozen dataclasses.

``load_spec(path)`` / ``parse_spec(text)`` validate everything up front; each problem
raises one ``SpecError`` naming the file, the key path and what was expected.
``SweepSpec.trials()`` expands the search into ``Trial`` objects, each with a content
hash (``trial_hash``) that keys the coordinator's result cache. Format: docs/spec.md.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from . import _search

__all__ = (
    "DEFAULT_MAX_TRIALS",
    "ASHASearch",
    "Choice",
    "Distribution",
    "EvolutionSearch",
    "GridSearch",
    "IntUniform",
    "LogUniform",
    "OptunaSearch",
    "PBTSearch",
    "RandomSearch",
    "Search",
    "Resources",
    "SpecError",
    "SweepSpec",
    "Trial",
    "Uniform",
    "load_spec",
    "parse_spec",
    "trial_hash",
)

#: Default cap on the number of trials one spec may expand to (``max_trials=``).
DEFAULT_MAX_TRIALS = 100_000

_HASH_DOMAIN = b"mabeam.trial.v1\x00"


class SpecError(ValueError):
    """A spec file is invalid: ``str(err)`` is one line naming the file, the key path and
    what was expected; the parts are also attributes (``path`` is "" for file-level
    problems, ``line``/``column`` are set for TOML syntax errors)."""

    def __init__(
        self,
        source: str,
        path: str,
        problem: str,
        *,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.source = source
        self.path = path
        self.problem = problem
        self.line = line
        self.column = column
        where = source if line is None else f"{source}:{line}:{column}"
        subject = f"{path} {problem}" if path else problem
        super().__init__(f"{where}: {subject}")


# -- distributions ----------------------------------------------------------------------


@dataclass(frozen=True)
class Uniform:
    """A float drawn uniformly from [low, high)."""

    low: float
    high: float

    def sample(self, bits: int) -> float:
        u = _search.unit_float(bits)
        return _clamp(self.low * (1.0 - u) + self.high * u, self.low, self.high)


@dataclass(frozen=True)
class LogUniform:
    """A float in [low, high) whose logarithm is uniform (0 < low < high): for learning
    rates and other scale parameters."""

    low: float
    high: float

    def sample(self, bits: int) -> float:
        u = _search.unit_float(bits)
        lo, hi = math.log(self.low), math.log(self.high)
        return _clamp(math.exp(lo * (1.0 - u) + hi * u), self.low, self.high)


@dataclass(frozen=True)
class IntUniform:
    """An int drawn uniformly from low..high, both included (TOML ``distribution = "int"``)."""

    low: int
    high: int

    def sample(self, bits: int) -> int:
        return self.low + ((bits * (self.high - self.low + 1)) >> 64)


@dataclass(frozen=True)
class Choice:
    """One of ``values``, each equally likely."""

    values: tuple[Any, ...]

    def sample(self, bits: int) -> Any:
        return self.values[(bits * len(self.values)) >> 64]


Distribution: TypeAlias = Uniform | LogUniform | IntUniform | Choice


def _clamp(value: float, low: float, high: float) -> float:
    """Keep a rounded float draw inside [low, high)."""
    if value >= high:
        return math.nextafter(high, low)
    return max(value, low)


# -- the spec ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Resources:
    """What one trial needs from a node."""

    gpus: int = 0
    cpus: float = 1.0
    memory_mb: int = 0


@dataclass(frozen=True)
class GridSearch:
    """Every combination of the listed values (cartesian product, declaration order)."""

    grid: Mapping[str, tuple[Any, ...]]
    strategy: Literal["grid"] = "grid"


@dataclass(frozen=True)
class RandomSearch:
    """``n`` trials, each parameter drawn from its distribution, reproducible by ``seed``."""

    n: int
    space: Mapping[str, Distribution]
    seed: int = 0
    strategy: Literal["random"] = "random"


@dataclass(frozen=True)
class PBTSearch:
    """Population-based training: ``population`` members train in segments of
    ``interval`` steps up to ``max_steps`` each; after a segment a member in the bottom
    ``truncation`` of the population copies a top member (exploit) and perturbs its
    parameters (explore). Run by ``make_strategy``; the rules are in docs/search.md."""

    space: Mapping[str, Distribution]
    max_steps: int
    population: int = 8
    interval: int = 1
    truncation: float = 0.2
    perturb: tuple[float, ...] = (0.8, 1.2)
    resample_probability: float = 0.25
    seed: int = 0
    strategy: Literal["pbt"] = "pbt"


@dataclass(frozen=True)
class EvolutionSearch:
    """Generational evolution: ``population`` genomes per generation for ``generations``
    generations; parents chosen by ``selection`` among the best so far, children mutated
    (perturbed or resampled); a genome is never planned twice."""

    space: Mapping[str, Distribution]
    population: int = 8
    generations: int = 5
    selection: Literal["tournament", "truncation"] = "tournament"
    tournament_size: int = 3
    truncation: float = 0.5
    mutation_scale: float = 0.1
    resample_probability: float = 0.1
    seed: int = 0
    strategy: Literal["evolution"] = "evolution"


@dataclass(frozen=True)
class ASHASearch:
    """Asynchronous successive halving: ``n`` sampled trials of up to ``max_steps`` steps;
    at each rung (``min_steps * eta**k`` steps) a trial goes on only if its score is in the
    top ``1/eta`` of the scores recorded at that rung so far."""

    space: Mapping[str, Distribution]
    n: int
    max_steps: int
    min_steps: int = 1
    eta: int = 3
    seed: int = 0
    strategy: Literal["asha"] = "asha"


@dataclass(frozen=True)
class OptunaSearch:
    """``n`` trials proposed by one of Optuna's samplers through its ask/tell interface,
    optionally pruned by an Optuna pruner from the reported progress."""

    space: Mapping[str, Distribution]
    n: int
    sampler: Literal["tpe", "random", "cmaes", "qmc"] = "tpe"
    seed: int = 0
    startup_trials: int = 10
    pruner: Literal["none", "median", "successive_halving"] = "none"
    pruner_startup_trials: int = 5
    pruner_warmup_steps: int = 0
    strategy: Literal["optuna"] = "optuna"


#: Every kind of ``[search]``: the first two expand to a fixed list of trials, the others
#: plan trials as results come in (``mabeam.ml.make_strategy``).
Search: TypeAlias = (
    GridSearch | RandomSearch | PBTSearch | EvolutionSearch | ASHASearch | OptunaSearch
)


@dataclass(frozen=True)
class Trial:
    """One concrete run: its position in the sweep, its full parameters (fixed and
    searched, a fresh dict ready to send) and its content hash."""

    index: int
    params: dict[str, Any]
    hash: str

    def __hash__(self) -> int:
        return hash((self.index, self.hash))


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: what to run, with which resources, over which parameters.

    Build it with ``load_spec``/``parse_spec`` (direct construction is not validated).
    ``code_version=None`` means "not given": the caller may derive one and use
    ``dataclasses.replace(spec, code_version=...)`` before ``trials()``. ``team`` and
    ``value`` (``[market]``) say who pays for its GPU time under the auction policy.
    """

    name: str
    entrypoint: str
    code_version: str | None = None
    description: str = ""
    resources: Resources = field(default_factory=Resources)
    max_retries: int = 3
    timeout_s: float | None = None
    priority: int = 0
    isolation: Literal["process", "pool"] = "process"
    metric: str | None = None
    mode: Literal["max", "min"] = "max"
    params: Mapping[str, Any] = field(default_factory=_empty)
    search: Search | None = None
    team: str = ""
    value: float | None = None
    source: str = field(default="<string>", compare=False)

    @property
    def num_trials(self) -> int:
        """How many trials (jobs) the sweep runs, without generating them: exact for grid,
        random, pbt (``population * ceil(max_steps / interval)``), asha and optuna; for
        evolution the most it may run (``population * generations``)."""
        search = self.search
        if isinstance(search, GridSearch):
            return _search.grid_size(search.grid)
        if isinstance(search, RandomSearch | ASHASearch | OptunaSearch):
            return search.n
        if isinstance(search, PBTSearch):
            return search.population * -(-search.max_steps // search.interval)
        if isinstance(search, EvolutionSearch):
            return search.population * search.generations
        return 1

    def iter_trials(self) -> Iterator[Trial]:
        """Generate the trials one by one (same order and content as ``trials()``).
        Raises ``ValueError`` for an adaptive search (pbt, evolution, asha, optuna), whose
        trials depend on results: drive those with ``mabeam.ml.make_strategy``."""
        combos: Iterator[dict[str, Any]]
        if isinstance(self.search, GridSearch):
            combos = _search.expand_grid(self.search.grid)
        elif isinstance(self.search, RandomSearch):
            combos = _search.sample_space(self.search.space, self.search.n, self.search.seed)
        elif self.search is None:
            combos = iter([{}])
        else:
            raise ValueError(
                f"strategy {self.search.strategy!r} plans its trials from results as they "
                "come in; drive it with mabeam.ml.make_strategy(spec) instead of trials()"
            )
        return self._with_fixed(combos)

    def _with_fixed(self, combos: Iterator[dict[str, Any]]) -> Iterator[Trial]:
        fixed = dict(self.params)
        for index, searched in enumerate(combos):
            params = {name: _search.fresh(value) for name, value in fixed.items()}
            params.update(searched)
            yield Trial(index, params, trial_hash(self.entrypoint, params, self.code_version))

    def trials(self) -> list[Trial]:
        """All trials: grid order, or random draws 0..n-1; fixed params merged in."""
        return list(self.iter_trials())


def trial_hash(entrypoint: str, params: Mapping[str, Any], code_version: str | None) -> str:
    """The content hash of a trial, the key of the result cache: SHA-256 hex of the
    canonical encoding of (entrypoint, code_version, params); ``None`` and ``""`` are the
    same "no code version".

    Stable across processes, platforms and Python versions, independent of dict order,
    and distinguishes ``1``, ``1.0`` and ``True`` (lists and tuples hash alike). Raises
    ``TypeError`` for a value that cannot be a parameter (see ``canonical_bytes``) and
    ``ValueError`` for nesting deeper than 64 levels or a string with a lone surrogate.
    """
    if not isinstance(entrypoint, str):
        raise TypeError(f"entrypoint must be a str, got {type(entrypoint).__name__}")
    if code_version is not None and not isinstance(code_version, str):
        raise TypeError(f"code_version must be a str or None, got {type(code_version).__name__}")
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping, got {type(params).__name__}")
    # == canonical_bytes([entrypoint, code_version or "", params]), with params' nesting
    # counted from the params table itself (as the spec parser counts it).
    digest = _prefix(entrypoint, code_version or "").copy()
    digest.update(_search.canonical_bytes(params))
    return digest.hexdigest()


_PREFIXES: dict[tuple[str, str], hashlib._Hash] = {}
_MAX_PREFIXES = 1024


def _prefix(entrypoint: str, code_version: str) -> hashlib._Hash:
    """The hash state after the entrypoint and code version: a sweep's trials share them,
    so each trial hashes only its params (a copy of this state, then the params)."""
    key = (entrypoint, code_version)
    exact = type(entrypoint) is str and type(code_version) is str  # a subclass may equal
    state = _PREFIXES.get(key) if exact else None  # a str yet encode as another one
    if state is None:
        state = hashlib.sha256(_HASH_DOMAIN + b"l3:")
        state.update(_search.canonical_bytes(entrypoint))
        state.update(_search.canonical_bytes(code_version))
        if exact:
            if len(_PREFIXES) >= _MAX_PREFIXES:
                _PREFIXES.clear()  # many distinct entrypoints: start over, never grow
            _PREFIXES[key] = state
    return state


def parse_spec(
    text: str, source: str = "<string>", *, max_trials: int = DEFAULT_MAX_TRIALS
) -> SweepSpec:
    """Parse and validate a spec from TOML text; ``source`` names it in error messages.
    Raises ``SpecError`` for any problem, including more than ``max_trials`` trials."""
    if not isinstance(text, str):
        raise TypeError(f"parse_spec() needs the TOML text as str, got {type(text).__name__}")
    from ._spec_parse import Parser

    return Parser(source, max_trials).document(text)


def load_spec(path: str | os.PathLike[str], *, max_trials: int = DEFAULT_MAX_TRIALS) -> SweepSpec:
    """Read, parse and validate a spec file; an unreadable file is a ``SpecError`` too."""
    from ._spec_parse import Parser, read_text

    source = os.fspath(path)
    return Parser(source, max_trials).document(read_text(source))

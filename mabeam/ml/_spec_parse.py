"""Validation of sweep spec files: TOML text -> ``SweepSpec``, or one ``SpecError`` that
names the file, the key path and what was expected (the format is in docs/spec.md).

Private to ``mabeam.ml.spec``, which imports it lazily (this module needs its types).
"""

from __future__ import annotations

import difflib
import keyword
import math
import re
import tomllib
from types import MappingProxyType
from typing import Any, NoReturn

from ..cluster._limits import ACCOUNT_NAME
from . import _search, _spec_search
from ._spec_text import key_path, quoted, render, show
from .spec import (
    Choice,
    Distribution,
    GridSearch,
    IntUniform,
    LogUniform,
    RandomSearch,
    Resources,
    Search,
    SpecError,
    SweepSpec,
    Uniform,
)

__all__ = ("Parser", "read_text")

# -- parsing and validation -------------------------------------------------------------

_STRATEGY_KEYS = {
    "grid": ("strategy", "grid"),
    "random": ("strategy", "n", "seed", "space"),
    **_spec_search.ADAPTIVE_KEYS,
}
_RESERVED_STRATEGIES = ("hyperband", "bayes")
_DISTRIBUTIONS = {
    "uniform": ("low", "high"),
    "loguniform": ("low", "high"),
    "int": ("low", "high"),
    "choice": ("values",),
}
_TOP_KEYS = (
    "name",
    "description",
    "entrypoint",
    "code_version",
    "resources",
    "retries",
    "max_retries",
    "timeout_s",
    "priority",
    "isolation",
    "metric",
    "mode",
    "params",
    "search",
    "market",
)
_RESOURCE_KEYS = ("gpus", "cpus", "memory_mb")
_MARKET_KEYS = ("team", "value")
_TEAM = re.compile(ACCOUNT_NAME + r"\Z")
_MAX_VALUE = 1e12
# Keys a user may write at the top level that belong in a table.
_ELSEWHERE = {key: f"resources.{key}" for key in _RESOURCE_KEYS} | {
    key: f"search.{key}" for key in ("strategy", "grid", "n", "seed", "space")
}
_INT64 = (-(2**63), 2**63 - 1)
_MSGPACK_INT = (-(2**63), 2**64 - 1)
_TOML_POSITION = re.compile(r" ?\(at line (\d+), column (\d+)\)\Z")
_TOML_AT_END = " (at end of document)"


def read_text(source: str) -> str:
    """The file's text; any OS or encoding problem becomes a ``SpecError``."""
    try:
        with open(source, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise SpecError(source, "", "cannot read the spec file: no such file") from None
    except IsADirectoryError:
        raise SpecError(source, "", "is a directory, not a spec file") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SpecError(source, "", f"cannot read the spec file: {reason}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        byte = data[exc.start]
        problem = f"is not UTF-8 text (byte 0x{byte:02x} at offset {exc.start})"
        raise SpecError(source, "", problem) from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Parser:
    """Turns a TOML document into a ``SweepSpec``, failing on the first problem."""

    def __init__(self, source: str, max_trials: int) -> None:
        self.source = source
        self.max_trials = max_trials

    def fail(self, path: str, problem: str) -> NoReturn:
        raise SpecError(self.source, path, problem)

    def document(self, text: str) -> SweepSpec:
        try:
            doc = tomllib.loads(text.removeprefix("\ufeff"))
        except tomllib.TOMLDecodeError as exc:
            message = str(exc)
            found = _TOML_POSITION.search(message)
            if found is not None:
                line, column = int(found.group(1)), int(found.group(2))
                reason = message[: found.start()]
            elif message.endswith(_TOML_AT_END):  # give the end's line and column instead
                lines = text.split("\n")
                line, column = len(lines), len(lines[-1]) + 1
                reason = message[: -len(_TOML_AT_END)]
            else:
                raise SpecError(self.source, "", f"invalid TOML: {message}") from None
            problem = f"invalid TOML: {reason}"
            raise SpecError(self.source, "", problem, line=line, column=column) from None
        except RecursionError:  # tomllib recurses once per nested array or inline table
            problem = "invalid TOML: arrays or inline tables are nested too deeply"
            raise SpecError(self.source, "", problem) from None
        return self.spec(doc)

    def spec(self, doc: dict[str, Any]) -> SweepSpec:
        """Check the keys in file order of importance: identity, resources, policy, search."""
        self.check_keys(doc, "", _TOP_KEYS)
        name = self.text(doc.get("name"), "name", 'a short label, e.g. name = "digits-lr"')
        entrypoint = self.entrypoint(doc.get("entrypoint"))
        version = doc.get("code_version")
        code_version = None if version is None else self.text(version, "code_version", "")
        description = self.string(doc.get("description", ""), "description")
        resources = self.resources(doc.get("resources", {}))
        if "retries" in doc and "max_retries" in doc:
            self.fail("retries", "and max_retries are the same setting; give only one")
        retries_key = "retries" if "retries" in doc else "max_retries"
        max_retries = self.integer(doc.get(retries_key, 3), retries_key, low=0)
        timeout = doc.get("timeout_s")
        timeout_s = None if timeout is None else self.positive(timeout, "timeout_s")
        priority = self.integer(doc.get("priority", 0), "priority")
        pool = self.one_of(doc.get("isolation", "process"), "isolation", ("process", "pool"))
        metric = None if "metric" not in doc else self.text(doc["metric"], "metric", "")
        minimize = self.one_of(doc.get("mode", "max"), "mode", ("max", "min")) == "min"
        team, value = self.market(doc.get("market", {}))
        params = self.params(doc.get("params", {}))
        search = self.search(doc["search"], params) if "search" in doc else None
        if metric is None and search is not None and search.strategy in _spec_search.SUB_KEYS:
            self.fail(
                "metric",
                f'is required with strategy = "{search.strategy}": the result key that '
                'ranks trials, e.g. metric = "accuracy"',
            )
        return SweepSpec(
            name=name,
            entrypoint=entrypoint,
            code_version=code_version,
            description=description,
            resources=resources,
            max_retries=max_retries,
            timeout_s=timeout_s,
            priority=priority,
            isolation="pool" if pool == "pool" else "process",
            metric=metric,
            mode="min" if minimize else "max",
            params=MappingProxyType(params),
            search=search,
            team=team,
            value=value,
            source=self.source,
        )

    # -- generic checks -----------------------------------------------------------------

    def check_keys(self, table: dict[str, Any], path: str, known: tuple[str, ...]) -> None:
        for key in table:
            if key in known:
                continue
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            if not path and key in _ELSEWHERE:
                self.fail(key, f"is not a known key; did you mean {_ELSEWHERE[key]}?")
            if close:
                suggestion = key_path(path, close[0])
                self.fail(key_path(path, key), f"is not a known key; did you mean {suggestion}?")
            hint = ""
            if not path:
                hint = "; fixed parameters go in [params], searched ones in [search]"
            where = f"[{path}]" if path else "the top level"
            known_list = ", ".join(known)
            self.fail(
                key_path(path, key), f"is not a known key{hint} (known at {where}: {known_list})"
            )

    def table(self, value: Any, path: str, example: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, f"must be a table ({example}), got {show(value)}")
        return value

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            self.fail(path, f"must be a string, got {show(value)}")
        return value

    def text(self, value: Any, path: str, example: str) -> str:
        """A required, non-empty, single-line string of at most 200 characters."""
        if value is None:
            self.fail(path, f"is required ({example})")
        text = self.string(value, path)
        if not text.strip() or len(text) > 200 or any(ord(c) < 32 for c in text):
            self.fail(
                path,
                f"must be a non-empty single line of at most 200 characters, got {render(text)}",
            )
        return text

    def one_of(self, value: Any, path: str, options: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in options:
            close = difflib.get_close_matches(value, options, n=1) if isinstance(value, str) else []
            hint = f'; did you mean "{close[0]}"?' if close else ""
            got = render(value) if isinstance(value, str) else show(value)
            self.fail(path, f"must be one of {quoted(options)}, got {got}{hint}")
        return value

    def integer(self, value: Any, path: str, *, low: int | None = None) -> int:
        bound = "" if low is None else f" >= {low}"
        if not _is_int(value) or (low is not None and value < low):
            self.fail(path, f"must be an int{bound}, got {show(value)}")
        if not _INT64[0] <= value <= _INT64[1]:
            self.fail(path, f"must be an int{bound} that fits in 64 bits, got {value}")
        return int(value)

    def number(self, value: Any, path: str, requirement: str = "a number") -> float:
        if not _is_number(value) or not math.isfinite(value):
            self.fail(path, f"must be {requirement}, got {show(value)}")
        return float(value)

    def positive(self, value: Any, path: str) -> float:
        number = self.number(value, path, "a number > 0")
        if number <= 0:
            self.fail(path, f"must be a number > 0, got {show(value)}")
        return number

    def param_value(self, value: Any, path: str, depth: int = 1) -> None:
        """Parameters travel as msgpack and feed the content hash: plain values only.
        ``depth`` counts the containers around ``value``, the params table being the first."""
        if isinstance(value, bool | str):
            return
        if _is_int(value):
            if not _MSGPACK_INT[0] <= value <= _MSGPACK_INT[1]:
                self.fail(path, f"is too large: ints must fit in 64 bits, got {value}")
        elif isinstance(value, float):
            if math.isnan(value):
                self.fail(path, "is nan, which cannot be a parameter value (it equals nothing)")
        elif isinstance(value, list | dict) and depth >= _search.MAX_DEPTH:
            self.fail(path, f"is nested deeper than {_search.MAX_DEPTH} levels")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.param_value(item, f"{path}[{i}]", depth + 1)
        elif isinstance(value, dict):
            for key, item in value.items():
                self.param_value(item, key_path(path, key), depth + 1)
        else:
            self.fail(
                path,
                f"must be a string, number, boolean, array or table, got "
                f"{show(value)}; write dates and times as strings",
            )

    def distinct(self, values: list[Any], path: str) -> tuple[Any, ...]:
        """Validate each value and refuse repeats (1, 1.0 and true count as different)."""
        seen: dict[bytes, int] = {}
        for i, value in enumerate(values):
            self.param_value(value, f"{path}[{i}]")
            first = seen.setdefault(_search.canonical_bytes(value), i)
            if first != i:
                self.fail(
                    f"{path}[{i}]",
                    f"repeats {render(value)} from {path}[{first}]: list each value once",
                )
        return tuple(values)

    # -- sections -----------------------------------------------------------------------

    def entrypoint(self, value: Any) -> str:
        if value is None:
            self.fail(
                "entrypoint", 'is required: the function to run, as "package.module:function"'
            )
        text = self.string(value, "entrypoint")
        module, colon, function = text.partition(":")
        parts = [*module.split("."), function]
        if colon and all(p.isidentifier() and not keyword.iskeyword(p) for p in parts):
            return text
        if "/" in text or "\\" in text or module.endswith(".py"):
            hint = " (a dotted module path, not a file path)"
        elif not colon:
            hint = " (the module, a colon, then the function name)"
        else:
            hint = ""
        self.fail(
            "entrypoint", f'must look like "package.module:function"{hint}, got {render(text)}'
        )

    def market(self, value: Any) -> tuple[str, float | None]:
        """``[market]``: the team (ledger account) that pays, and what a GPU-hour is worth
        to it (credits; absent: derived from its budget and the sweep's priority)."""
        table = self.table(value, "market", "team, value")
        self.check_keys(table, "market", _MARKET_KEYS)
        team = table.get("team", "")
        if not isinstance(team, str) or (team and not _TEAM.match(team)):
            self.fail(
                "market.team",
                "must be an account name: 1 to 64 chars of A-Z a-z 0-9 . _ : / @ + = -,"
                f" starting with a letter or digit, got {show(team)}",
            )
        if "value" not in table:
            return team, None
        worth = self.number(table["value"], "market.value", "a number of credits >= 0")
        if worth < 0 or worth > _MAX_VALUE:
            self.fail(
                "market.value", f"must be between 0 and {_MAX_VALUE:g} credits, got {show(worth)}"
            )
        if not team:
            self.fail("market.team", "is required with market.value: the team that pays")
        return team, worth

    def resources(self, value: Any) -> Resources:
        table = self.table(value, "resources", "gpus, cpus, memory_mb")
        self.check_keys(table, "resources", _RESOURCE_KEYS)
        return Resources(
            gpus=self.integer(table.get("gpus", 0), "resources.gpus", low=0),
            cpus=self.positive(table.get("cpus", 1), "resources.cpus"),
            memory_mb=self.integer(table.get("memory_mb", 0), "resources.memory_mb", low=0),
        )

    def params(self, value: Any) -> dict[str, Any]:
        table = self.table(value, "params", "name = value for each fixed parameter")
        for name, item in table.items():
            self.param_value(item, key_path("params", name))
        return table

    def search(self, value: Any, params: dict[str, Any]) -> Search:
        table = self.table(value, "search", 'strategy = "grid" or "random"')
        strategy = table.get("strategy")
        if strategy is None:
            self.fail("search.strategy", f"is required: one of {quoted(list(_STRATEGY_KEYS))}")
        if isinstance(strategy, str) and strategy in _RESERVED_STRATEGIES:
            self.fail(
                "search.strategy",
                f'"{strategy}" is not available yet (available: {quoted(list(_STRATEGY_KEYS))})',
            )
        strategy = self.one_of(strategy, "search.strategy", tuple(_STRATEGY_KEYS))
        known = _STRATEGY_KEYS[strategy]
        for key in table:
            if key not in known and key in _spec_search.SUB_KEYS.get(strategy, ()):
                self.fail(
                    key_path("search", key),
                    f"belongs in [search.{strategy}]: {key_path(f'search.{strategy}', key)}",
                )
            if key not in known and any(key in keys for keys in _STRATEGY_KEYS.values()):
                other = next(s for s, keys in _STRATEGY_KEYS.items() if key in keys)
                self.fail(
                    key_path("search", key),
                    f'is only used with strategy = "{other}" (this search is "{strategy}")',
                )
        self.check_keys(table, "search", known)
        if strategy == "grid":
            return self.grid(table, params)
        if strategy == "random":
            return self.random(table, params)
        return _spec_search.adaptive(self, strategy, table, params)

    def named_table(self, table: dict[str, Any], key: str, example: str) -> dict[str, Any]:
        """search.grid / search.space: a required, non-empty table of parameters."""
        path = f"search.{key}"
        if key not in table:
            self.fail(path, f'is required with strategy = "{table["strategy"]}" ({example})')
        found = self.table(table[key], path, example)
        if not found:
            self.fail(path, f"is empty: give at least one parameter ({example})")
        return found

    def not_fixed(self, name: str, path: str, params: dict[str, Any]) -> None:
        if name in params:
            self.fail(
                path,
                f"is also set in [params] as {key_path('params', name)}: a parameter is "
                "either fixed or searched, not both",
            )

    def grid(self, table: dict[str, Any], params: dict[str, Any]) -> GridSearch:
        raw = self.named_table(table, "grid", "e.g. lr = [0.1, 0.01]")
        grid: dict[str, tuple[Any, ...]] = {}
        for name, values in raw.items():
            path = key_path("search.grid", name)
            self.not_fixed(name, path, params)
            if not isinstance(values, list):
                self.fail(
                    path,
                    f"must be an array of values, got {show(values)}; a single "
                    "fixed value belongs in [params]",
                )
            if not values:
                self.fail(path, "is an empty array: give at least one value")
            grid[name] = self.distinct(values, path)
        size = _search.grid_size(grid)
        if size > self.max_trials:
            factors = " x ".join(str(len(v)) for v in grid.values())
            self.fail(
                "search.grid",
                f"expands to {size} trials ({factors}), more than the limit of {self.max_trials}",
            )
        return GridSearch(grid=MappingProxyType(grid))

    def random(self, table: dict[str, Any], params: dict[str, Any]) -> RandomSearch:
        if "n" not in table:
            self.fail(
                "search.n",
                'is required with strategy = "random": the number of trials, e.g. n = 20',
            )
        n = self.integer(table["n"], "search.n", low=1)
        if n > self.max_trials:
            self.fail("search.n", f"is {n}, more than the limit of {self.max_trials} trials")
        seed = self.integer(table.get("seed", 0), "search.seed")
        example = 'e.g. lr = { distribution = "loguniform", low = 1e-4, high = 0.1 }'
        raw = self.named_table(table, "space", example)
        space: dict[str, Distribution] = {}
        for name, value in raw.items():
            path = key_path("search.space", name)
            self.not_fixed(name, path, params)
            space[name] = self.distribution(value, path, example)
        return RandomSearch(n=n, space=MappingProxyType(space), seed=seed)

    def distribution(self, value: Any, path: str, example: str) -> Distribution:
        if isinstance(value, list):  # shorthand for a choice
            if not value:
                self.fail(path, "is an empty array: a choice needs at least one value")
            return Choice(self.distinct(value, path))
        if not isinstance(value, dict):
            self.fail(
                path,
                f"must be a distribution table ({example}) or an array of "
                f"choices, got {show(value)}",
            )
        kinds = tuple(_DISTRIBUTIONS)
        if "distribution" not in value:
            self.fail(f"{path}.distribution", f"is required: one of {quoted(kinds)}")
        kind = self.one_of(value["distribution"], f"{path}.distribution", kinds)
        self.check_keys(value, path, ("distribution", *_DISTRIBUTIONS[kind]))
        for key in _DISTRIBUTIONS[kind]:
            if key not in value:
                self.fail(f"{path}.{key}", f'is required for distribution = "{kind}"')
        if kind == "choice":
            values = value["values"]
            if not isinstance(values, list) or not values:
                self.fail(f"{path}.values", f"must be a non-empty array, got {show(values)}")
            return Choice(self.distinct(values, f"{path}.values"))
        if kind == "int":
            low = self.integer(value["low"], f"{path}.low")
            high = self.integer(value["high"], f"{path}.high")
            if high < low:
                self.fail(f"{path}.high", f"must be >= low ({low}), got {high}")
            return IntUniform(low, high)
        if kind == "loguniform":
            lo = self.number(value["low"], f"{path}.low", "a number > 0")
            if lo <= 0:
                self.fail(
                    f"{path}.low",
                    f'must be a number > 0 for distribution = "loguniform", '
                    f"got {show(value['low'])}",
                )
        else:
            lo = self.number(value["low"], f"{path}.low")
        hi = self.number(value["high"], f"{path}.high")
        if hi <= lo:
            self.fail(
                f"{path}.high",
                f"must be greater than low ({render(value['low'])}), got {show(value['high'])}",
            )
        return LogUniform(lo, hi) if kind == "loguniform" else Uniform(lo, hi)

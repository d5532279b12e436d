"""The JSON form of run-log values (params, metrics, results): msgpack's types in JSON.

JSON has no bytes, no NaN or infinity and only string keys, so ``to_json`` tags them
and ``from_json`` undoes the tags; a value survives the round trip exactly except where
noted:

| value | in run.jsonl | read back as |
| --- | --- | --- |
| ``b"..."`` (bytes, bytearray, memoryview) | ``{"$bytes": "<base64>"}`` | ``bytes`` |
| ``nan``, ``inf``, ``-inf`` | ``{"$float": "nan"}`` / ``"inf"`` / ``"-inf"`` | the float |
| a dict whose only key is ``$bytes``, ``$float`` or ``$dict`` | ``{"$dict": {...}}`` | the dict |
| a tuple | a list | a list |
| a dict with non-string keys | keys as ``str(key)`` | string keys |
| an int-like or float-like object (numpy scalars) | ``int(v)`` / ``float(v)`` | int / float |
| anything else; nesting past ``MAX_DEPTH`` | ``"<unencodable TYPE: repr>"`` | that string |

Encoding never raises: a search agent logs whatever a trial returned and keeps running.
"""

from __future__ import annotations

import base64
import binascii
import math
import numbers
from typing import Any

__all__ = ("MAX_DEPTH", "from_json", "to_json")

#: Nesting deeper than this is written as a placeholder string.
MAX_DEPTH = 64

_TAGS = frozenset({"$bytes", "$float", "$dict"})
_FLOAT_NAMES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_REPR_LIMIT = 80


def to_json(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON types (str/int/float/bool/None/list/dict), tagged where
    JSON lacks the type; see the module docstring."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else {"$float": _float_name(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if depth >= MAX_DEPTH:
        return f"<unencodable: nested deeper than {MAX_DEPTH}>"
    if isinstance(value, dict):
        out = {str(key): to_json(item, depth + 1) for key, item in value.items()}
        return {"$dict": out} if len(out) == 1 and next(iter(out)) in _TAGS else out
    if isinstance(value, list | tuple):
        return [to_json(item, depth + 1) for item in value]
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return to_json(float(value), depth)
    return _placeholder(value)


def from_json(value: Any) -> Any:
    """Undo ``to_json``'s tags: bytes, non-finite floats and escaped dicts come back; a
    malformed tag is left as the dict it is."""
    if isinstance(value, list):
        return [from_json(item) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, item),) = value.items()
        if key == "$bytes" and isinstance(item, str):
            try:
                return base64.b64decode(item, validate=True)
            except (binascii.Error, ValueError):
                return value
        if key == "$float" and item in _FLOAT_NAMES:
            return _FLOAT_NAMES[item]
        if key == "$dict" and isinstance(item, dict):
            return {k: from_json(v) for k, v in item.items()}
    return {key: from_json(item) for key, item in value.items()}


def _float_name(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"


def _placeholder(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not stop the log
        text = f"repr failed: {type(exc).__name__}"
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 3] + "..."
    return f"<unencodable {type(value).__name__}: {text}>"

"""How a sweep spec's error messages write keys and values: TOML dotted key paths and
values shown the way they would appear in TOML, cut to fit one line."""

from __future__ import annotations

import datetime
import json
import math
import re
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def key_path(parent: str, key: str) -> str:
    """A key path in TOML dotted form, quoting keys that are not bare keys."""
    part = key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)
    return f"{parent}.{part}" if parent else part


def render(value: Any, room: int = 60) -> str:
    """A value the way it would appear in TOML, cut to about ``room`` characters."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and not math.isfinite(value):
        text = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    elif isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, str):
        text = json.dumps(value[:room], ensure_ascii=False)
        text = text if len(value) <= room else text[:-1] + '..."'
    elif isinstance(value, list | dict):
        text = render_items(value, room)
    elif isinstance(value, datetime.date | datetime.time):
        text = value.isoformat()
    else:
        text = repr(value)
    return text if len(text) <= room else text[: room - 3] + "..."


def render_items(value: list[Any] | dict[str, Any], room: int) -> str:
    """An array or inline table, rendering only as many items as fit in ``room``."""
    pairs = value.items() if isinstance(value, dict) else (("", item) for item in value)
    parts: list[str] = []
    used = 2
    for key, item in pairs:
        part = render(item, max(room - used, 8))
        part = f"{key_path('', key)} = {part}" if isinstance(value, dict) else part
        if parts and used + len(part) > room - 5:  # keep room for ", ..."
            parts.append("...")
            break
        parts.append(part)
        used += len(part) + 2
    open_, close = ("{", "}") if isinstance(value, dict) else ("[", "]")
    return open_ + ", ".join(parts) + close


def show(value: Any) -> str:
    """``render`` plus the kind of value, except for numbers (which speak for themselves)."""
    if isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, int | float):
        return render(value)
    elif isinstance(value, str):
        kind = "a string"
    elif isinstance(value, list):
        kind = "an array"
    elif isinstance(value, dict):
        kind = "a table"
    elif isinstance(value, datetime.datetime):
        kind = "a date-time"
    elif isinstance(value, datetime.date):
        kind = "a date"
    elif isinstance(value, datetime.time):
        kind = "a time"
    else:
        kind = type(value).__name__
    return f"{render(value)} ({kind})"


def quoted(options: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f'"{option}"' for option in options)

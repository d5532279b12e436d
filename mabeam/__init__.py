"""mabeam: multi-agent ML coordination on the foundation actor runtime.

The cluster (``mabeam.cluster``: a coordinator and node agents over ZeroMQ, its job
store and protocol) runs training sweeps (``mabeam.ml``: sweep specs). ``connect``
opens a client to a coordinator (``mabeam.cluster.client``); the ``mabeam`` console
script is in ``mabeam.cli``. Agents, coordination protocols and economics are in
progress.

``connect`` is loaded on first use: every task's worker process imports this package,
and it should not pay for ZeroMQ it does not use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ("connect",)


def __getattr__(name: str) -> Any:
    if name != "connect":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = importlib.import_module(".cluster.client", __name__).connect
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

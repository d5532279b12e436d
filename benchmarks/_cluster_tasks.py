"""Task entrypoints of the cluster benchmark (``benchmarks._cluster_tasks:echo``).

A trivial task measures the platform, not the work: ``echo`` returns its input.
"""

from __future__ import annotations

from typing import Any


def echo(params: dict[str, Any], ctx: Any) -> Any:
    """Return ``params["x"]`` unchanged: the cheapest task a node can run."""
    return params.get("x")

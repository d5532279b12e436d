"""mabeam.cluster: the coordinator, node agents, the client and their ZeroMQ protocol.

``coordinator`` (an Application: socket actor, durable job store, scheduler, one
session per node), ``node`` (an Application: connection, runners, worker pool, outbox),
``client`` (``connect``: submit, watch, result, cancel, status), ``protocol``
(versioned, schema-checked msgpack frames and the socket options), ``store`` (the SQLite
job store with leases, fencing, retries, idempotency and the result cache), ``task`` /
``worker`` (the task model and the worker process), ``keys`` (CurveZMQ key pairs) and
``gpus`` (NVML discovery with a CPU-only fallback). docs/cluster.md is the operating guide.

The names below are loaded on first use: every task's worker process imports this
package, and it should not pay for SQLite or ZeroMQ it does not use. ``protocol`` and
``store`` each have their own ``JobSpec`` / ``Resources``: the wire records and the
stored, validated form (``store.JobSpec.from_dict`` reads the wire form).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "JobStore": "store",
    "JobRecord": "store",
    "StoreError": "store",
    "UnknownJobError": "store",
    "InvalidSpecError": "store",
    "IdempotencyConflictError": "store",
    "ProtocolError": "protocol",
    "PeerHealth": "protocol",
    "PROTOCOL_VERSION": "protocol",
    "TaskContext": "task",
    "TaskOutcome": "task",
    "EntrypointError": "task",
    "load_entrypoint": "task",
    "entrypoint_allowed": "task",
    "connect": "client",
    "Client": "client",
    "Submission": "client",
    "JobEvent": "client",
    "ClusterStatus": "client",
    "ClientError": "client",
    "CoordinatorUnreachable": "client",
    "JobFailed": "client",
    "BadSpec": "client",
    "BadRequest": "client",
    "UnknownJob": "client",
    "UnknownSweep": "client",
    "RequestRefused": "client",
    "ResultTimeout": "client",
    "Unauthorized": "client",
    "QuotaExceeded": "client",
    "NoSuchAccount": "client",
    "BadBudget": "client",
    "KeyPair": "keys",
    "KeyFileError": "keys",
    "generate_keys": "keys",
    "load_key": "keys",
    "NodeConfig": "node",
    "NodeHandle": "node",
    "NodeStatistics": "node",
    "NodeApplication": "node",
    "node_app": "node",
    "start_node": "node",
    "CoordinatorConfig": "coordinator",
    "CoordinatorHandle": "coordinator",
    "CoordinatorStatistics": "coordinator",
    "coordinator_app": "coordinator",
    "start_coordinator": "coordinator",
    "discover_gpus": "gpus",
    "visible_devices_env": "gpus",
}

__all__ = tuple(sorted(_LAZY))


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

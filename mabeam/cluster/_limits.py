"""The protocol's version, heartbeat timing and size limits (``mabeam.cluster.protocol``
re-exports the public ones; docs/protocol.md explains each)."""

from __future__ import annotations

from typing import Final

PROTOCOL_VERSION: Final = 2
"""Both sides must speak exactly this version; any schema change bumps it."""

HEARTBEAT_INTERVAL_S: Final = 1.0
"""A peer that has sent nothing for this long sends a HEARTBEAT (any frame counts as one)."""
HEARTBEAT_LIVENESS: Final = 3
"""Intervals of silence after which a peer is dead (Paranoid Pirate's liveness)."""
PEER_TIMEOUT_S: Final = HEARTBEAT_INTERVAL_S * HEARTBEAT_LIVENESS

MAX_FRAME_BYTES: Final = 1 << 20
"""Largest payload; sockets set MAXMSGSIZE to it and ``encode`` refuses anything larger."""
MAX_DEPTH: Final = 16
MAX_STR_BYTES: Final = 256 * 1024
MAX_ARRAY_LEN: Final = 100_000
MAX_MAP_LEN: Final = 10_000

MAX_ID_LEN: Final = 128
MAX_NAME_LEN: Final = 256
MAX_TEXT_LEN: Final = 64 * 1024
MAX_SPECS_PER_SUBMIT: Final = 1_000
MAX_BATCH_FRAMES: Final = 1_000
MAX_IDS: Final = 10_000
MAX_GPUS: Final = 256
MAX_RUNNING: Final = 4_096
MAX_METRICS: Final = 256
MAX_PARAMS: Final = 1_024
MAX_STATUS_ITEMS: Final = 10_000
MAX_COUNT: Final = (1 << 63) - 1  # fits an SQLite INTEGER
MAX_CREDIT: Final = 1_000_000
MAX_RETRIES: Final = 1_000
MAX_TIMEOUT_S: Final = 1e9
ACCOUNT_NAME: Final = r"[A-Za-z0-9][A-Za-z0-9._:/@+=-]{0,63}"
"""A ledger account as jobs (``team``) and nodes (``owner``) name it: 1 to 64 chars."""
MAX_VALUE: Final = 1e12
"""The largest ``value`` (credits per GPU-hour) a job spec may state."""

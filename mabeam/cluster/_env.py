"""The environment variables the cluster's commands and client read (no imports: worker
processes use this module too)."""

from __future__ import annotations

import os
from typing import Final, TypeVar

__all__ = ("ADDRESS_ENV", "COORDINATOR_KEY_ENV", "KEY_ENV", "PRIVATE_ENV", "or_env")

ADDRESS_ENV: Final = "MABEAM_COORDINATOR"
"""The coordinator's address when none is given."""
KEY_ENV: Final = "MABEAM_KEY"
"""This peer's own key file (``.key_secret``) when none is given."""
COORDINATOR_KEY_ENV: Final = "MABEAM_COORDINATOR_KEY"
"""The coordinator's public key file (``.key``) when none is given."""
PRIVATE_ENV: Final = (KEY_ENV, COORDINATOR_KEY_ENV)
"""Not passed on to task processes: the agent's keys are not the task's business."""

T = TypeVar("T")


def or_env(value: T | None, name: str) -> T | str | None:
    """``value`` if given, else the environment variable ``name`` (None when unset or
    empty)."""
    return value if value is not None else os.environ.get(name) or None

"""The files of one task attempt: its log, the temporary output directory the task
writes into, and the publication of that directory by an atomic rename on success."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Final

LOG_NAME: Final = "task.log"
_LOG_TAIL_BYTES: Final = 4000


def partial_dir(output_dir: Path) -> Path:
    """The temporary sibling a task writes into before ``output_dir`` is published."""
    return output_dir.with_name(f".{output_dir.name}.partial")


def published_dir(work_dir: Path) -> Path:
    """Where ``work_dir`` (a ``partial_dir``) ends up once published: the inverse."""
    name = work_dir.name
    if name.startswith(".") and name.endswith(".partial"):
        return work_dir.with_name(name[1 : -len(".partial")])
    return work_dir


def publish(work_dir: Path, output_dir: Path) -> None:
    """Move a finished attempt's outputs into place (replacing an earlier run's)."""
    if output_dir.exists():  # an earlier run of this same attempt published
        shutil.rmtree(output_dir)
    os.rename(work_dir, output_dir)


def log_tail(log_path: str | Path) -> str:
    """The end of an attempt's log (what a crash report shows), or "" if unreadable."""
    try:
        with open(log_path, "rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - _LOG_TAIL_BYTES))
            return log.read().decode(errors="replace")
    except OSError:
        return ""

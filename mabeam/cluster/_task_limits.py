"""Per-task limits on a node: the memory of a task's processes and the size of its outputs.

A task's memory limit is the job's ``resources.memory_mb`` when it names one, and the
node's ``task_memory_mb`` (``--task-memory-mb``) caps it: the lower of the two applies,
so an operator's cap holds whatever a job asks for. The memory counted is the resident
set (RSS) of the task's process and all its descendants, summed (pages a forked child
shares with its parent count in both: the sum can only over-state). The outputs limit
is the node's ``task_disk_mb`` (``--task-disk-mb``): the apparent size (``st_size``) of
the files under an attempt's output directory, symlinks not followed.

Everything here is synchronous and cheap enough for a watchdog tick: the process tree
is read from ``/proc/<pid>/task/<tid>/children`` (only the task's own processes, not a
scan of every process on the machine), and a walk of a running task's outputs stops
once it is over the limit or has seen ``WALK_ENTRIES`` entries.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import psutil  # type: ignore[import-untyped]

__all__ = (
    "DEFAULT_LIMIT_CHECK_S",
    "LIMIT_KINDS",
    "WALK_ENTRIES",
    "LimitKind",
    "TaskLimits",
    "disk_error",
    "memory_error",
    "output_bytes",
    "outputs_over",
    "process_tree",
    "tree_rss",
)

LimitKind = Literal["memory_limit", "disk_limit"]
LIMIT_KINDS: Final = frozenset({"memory_limit", "disk_limit"})

DEFAULT_LIMIT_CHECK_S: Final = 0.25
"""How often the node's watchdog samples a limited task (``NodeConfig.limit_check_s``)."""

WALK_ENTRIES: Final = 10_000
"""A watchdog tick looks at most at this many entries of one output directory (~28 ms
on the 2-core development machine, ~2.7 us an entry); the check when the attempt ends
walks the whole directory. A process tree costs ~60 us a process to sample."""

MIB: Final = 1024 * 1024
_JOB_SOURCE: Final = "resources.memory_mb"
_NODE_SOURCE: Final = "the node's --task-memory-mb"


@dataclass(frozen=True, slots=True)
class TaskLimits:
    """The limits one attempt runs under (None: no limit of that kind)."""

    memory_mb: int | None = None
    memory_source: str = ""  # which setting the memory limit comes from
    disk_mb: int | None = None

    @classmethod
    def of(
        cls, job_memory_mb: int, node_memory_mb: int | None, node_disk_mb: int | None
    ) -> TaskLimits | None:
        """The limits of a job asking for ``job_memory_mb`` (0: nothing) on a node with
        these caps; None when no limit applies (the task is not watched at all)."""
        memory, source = node_memory_mb, _NODE_SOURCE
        if job_memory_mb > 0 and (memory is None or job_memory_mb <= memory):
            memory, source = job_memory_mb, _JOB_SOURCE
        if memory is None and node_disk_mb is None:
            return None
        return cls(memory, source if memory is not None else "", node_disk_mb)


def memory_error(used: int, limits: TaskLimits) -> str:
    """The error of a task killed for using ``used`` bytes."""
    return (
        f"task used {math.ceil(used / MIB)} MiB (RSS of its processes), over its memory "
        f"limit of {limits.memory_mb} MiB ({limits.memory_source}); killed with SIGKILL"
    )


def disk_error(size: int, disk_mb: int, *, running: bool) -> str:
    """The error of an attempt whose outputs came to ``size`` bytes (at least)."""
    when = "; killed with SIGKILL while running" if running else ""
    return (
        f"task wrote {'over ' if running else ''}{math.ceil(size / MIB)} MiB to its output "
        f"directory, over the node's limit of {disk_mb} MiB for task outputs "
        f"(--task-disk-mb){when}; its outputs were removed"
    )


# -- processes ---------------------------------------------------------------------------


_PROC_CHILDREN: Final = os.path.exists(f"/proc/self/task/{os.getpid()}/children")
"""Whether this kernel lists a thread's children in /proc (CONFIG_PROC_CHILDREN)."""


def _children(pid: int) -> list[int]:
    """The pids of ``pid``'s children (of each of its threads), from /proc."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []  # it ended
    pids: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as file:
                pids.extend(int(p) for p in file.read().split())
        except OSError:
            continue  # the thread ended
    return pids


def process_tree(root: psutil.Process) -> list[psutil.Process]:
    """``root`` and every process descended from it now (``root`` first); empty when
    ``root`` is gone. The ``Process`` objects guard against a reused pid on ``kill``."""
    if not root.is_running():
        return []
    if not _PROC_CHILDREN:  # psutil scans every process of the machine for this
        try:
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return [root]
    tree = [root]
    todo = [root.pid]
    while todo:
        for child in _children(todo.pop()):
            try:
                tree.append(psutil.Process(child))
            except psutil.Error:
                continue  # it ended since
            todo.append(child)
    return tree


def tree_rss(tree: list[psutil.Process]) -> int:
    """The summed resident set of these processes, in bytes (those gone count 0)."""
    total = 0
    for proc in tree:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return int(total)


# -- outputs -----------------------------------------------------------------------------


def output_bytes(
    directory: Path, *, stop_above: int | None = None, max_entries: int | None = None
) -> int:
    """The summed size of the files under ``directory`` (0 if it does not exist).

    Stops early once the sum passes ``stop_above`` or ``max_entries`` entries were seen
    (the result is then a lower bound). Files that vanish during the walk count 0.
    """
    total, seen = 0, 0
    todo = [os.fspath(directory)]
    while todo:
        try:
            entries = os.scandir(todo.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                seen += 1
                try:
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
                    else:
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
                if (stop_above is not None and total > stop_above) or (
                    max_entries is not None and seen >= max_entries
                ):
                    return total
    return total


def outputs_over(work_dir: Path, disk_mb: int | None) -> str | None:
    """When an attempt ends: the error if its outputs are over ``disk_mb``, else None."""
    if disk_mb is None:
        return None
    size = output_bytes(work_dir)  # all of it, for an exact figure: once per attempt
    return disk_error(size, disk_mb, running=False) if size > disk_mb * MIB else None

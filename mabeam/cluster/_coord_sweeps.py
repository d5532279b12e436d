"""The client part's cache of sweep membership (job ids by sweep id, and back).

A SUBMIT that names a sweep adds its jobs; a WATCH of a sweep notes what the store
listed; retention's ``Prune`` removes the jobs it deleted. It is only a cache: after a
restart the store's idempotency records give the members again (``sweep_jobs``).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ("SweepCache",)


class SweepCache:
    """Job ids by sweep id, in submission order, and each job's sweep."""

    def __init__(self) -> None:
        self._members: dict[str, list[str]] = {}
        self._sweep_of: dict[str, str] = {}

    def members(self, sweep_id: str | None) -> list[str]:
        """The sweep's known jobs (a copy; none for None)."""
        return list(self._members.get(sweep_id, ())) if sweep_id is not None else []

    def sweep_of(self, job_id: str) -> str | None:
        return self._sweep_of.get(job_id)

    def add(self, sweep_id: str, job_ids: Iterable[str]) -> None:
        """A SUBMIT of ``sweep_id`` recorded these jobs (repeats are kept once)."""
        members = self._members.setdefault(sweep_id, [])
        known = set(members)
        for job_id in job_ids:
            if job_id not in known:
                members.append(job_id)
                self._sweep_of[job_id] = sweep_id

    def note(self, sweep_id: str, job_ids: Iterable[str]) -> None:
        """The store listed these jobs as ``sweep_id``'s (each keeps a sweep it has)."""
        for job_id in job_ids:
            self._sweep_of.setdefault(job_id, sweep_id)

    def forget(self, job_ids: Iterable[str]) -> None:
        """Retention deleted these jobs."""
        gone = set(job_ids)
        touched = {self._sweep_of.pop(job_id) for job_id in gone if job_id in self._sweep_of}
        for sweep_id in touched:
            left = [j for j in self._members.get(sweep_id, ()) if j not in gone]
            if left:
                self._members[sweep_id] = left
            else:
                self._members.pop(sweep_id, None)

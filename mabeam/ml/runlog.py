"""Run logs: what a search run did, trial by trial, in ``DIRECTORY/run.jsonl``.

A search agent writes one ``RunLog`` per run; ``load_run`` reads it back as a
``RunRecord`` and ``mabeam report RUN`` prints its leaderboard and draws its learning
curves and lineage::

    log = RunLog("runs/pbt-1")
    log.run_started(name="pbt-1", strategy="pbt", metric="accuracy", mode="max")
    log.trial_started("t0", params={"lr": 0.1}, job_id="j-17")
    log.trial_progress("t0", 1, {"accuracy": 0.61})
    log.trial_finished("t0", state="succeeded", score=0.61)
    log.trial_started("t1", params={"lr": 0.08}, job_id="j-18", parent="t0",
                      reason="exploit", generation=1)
    ...
    log.run_finished(best="t1")
    log.close()

The file holds one JSON object a line (``{"event": ..., "t": time.time(), ...}``),
appended and flushed line by line and fsynced at ``run_finished`` and ``close``, so a
crash loses at most the line being written; ``load_run`` skips such a truncated line
and counts it in ``RunRecord.skipped_lines``. Values (params, metrics, results) are
msgpack's types; JSON's missing ones (bytes, NaN, infinity) are tagged as
``mabeam.ml._runlog_json`` describes. JSON, not pickle: the file is data, safe to read.

A directory holds one run. ``RunLog`` refuses a directory that already has a
``run.jsonl`` unless ``resume=True`` (a restarted agent appending to its own run; the
new ``run_started`` counts in ``RunRecord.resumed``), and two open ``RunLog``s never
share a file (an advisory lock). Several agents searching together write one
subdirectory each; ``load_runs`` reads a run directory or a directory of them.
The format and the report: docs/report.md.
"""

from __future__ import annotations

import json
import numbers
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from ._runlog_json import from_json, to_json
from ._runlog_records import FINISHED_STATES, RunRecord, TrialRecord, as_score

__all__ = (
    "LOG_NAME",
    "RunLog",
    "RunLogError",
    "RunRecord",
    "TrialRecord",
    "load_run",
    "load_runs",
)

#: The file name of a run log inside its directory.
LOG_NAME = "run.jsonl"
_VERSION = 1


class RunLogError(Exception):
    """A run log cannot be written or read: a directory that already holds one, a
    closed log, a missing directory or file, or a file that is not a run log."""


class RunLog:
    """Append-only record of one search run in ``DIRECTORY/run.jsonl`` (module docstring)."""

    def __init__(self, directory: str | os.PathLike[str], *, resume: bool = False) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOG_NAME
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = self.path.stat().st_size if self.path.exists() else 0
        if existing and not resume:
            raise RunLogError(
                f"{self.directory} already holds a run log ({LOG_NAME}); use a new directory,"
                " or resume=True to append to it"
            )
        self._file: IO[bytes] | None = open(self.path, "ab+")  # noqa: SIM115
        try:
            _lock(self._file, self.path)
            if existing:
                self._file.seek(existing - 1)
                if self._file.read(1) != b"\n":  # a crash cut the last line: end it
                    self._file.write(b"\n")
                    self._file.flush()
        except BaseException:
            self._file.close()
            raise
        self._started = bool(existing)  # a resumed log has its run_started already
        self._announced = False

    # -- records ------------------------------------------------------------------------

    def run_started(
        self,
        *,
        name: str,
        strategy: str,
        metric: str | None,
        mode: str,
        spec: Mapping[str, Any] | None = None,
        agent: str | None = None,
    ) -> None:
        """The first record: the run's name, search strategy, and the metric the search
        optimizes (``mode`` ``"min"`` or ``"max"``); ``spec`` is kept as given."""
        _check_text("name", name)
        _check_text("strategy", strategy)
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if metric is not None:
            _check_text("metric", metric)
        if self._announced:
            raise RunLogError(f"{self.path}: run_started was logged already")
        self._write(
            "run_started",
            v=_VERSION,
            name=name,
            strategy=strategy,
            metric=metric,
            mode=mode,
            spec=to_json(dict(spec)) if spec is not None else None,
            agent=agent,
            opening=True,
        )
        self._started = self._announced = True

    def trial_started(
        self,
        trial_id: str,
        *,
        params: Mapping[str, Any],
        job_id: str,
        parent: str | None = None,
        reason: str = "initial",
        generation: int = 0,
        agent: str | None = None,
    ) -> None:
        """A trial was submitted as job ``job_id``; ``parent`` (with ``reason``: exploit,
        mutation, continue...) is the trial it was derived from, if any."""
        _check_text("trial_id", trial_id)
        if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
            raise ValueError(f"generation must be an int >= 0, got {generation!r}")
        self._write(
            "trial_started",
            trial=trial_id,
            params=to_json(dict(params)),
            job_id=str(job_id),
            parent=parent,
            reason=str(reason),
            generation=generation,
            agent=agent,
        )

    def trial_progress(self, trial_id: str, step: int, metrics: Mapping[str, Any]) -> None:
        """The trial reported ``metrics`` at ``step`` (its ``ctx.report``)."""
        _check_text("trial_id", trial_id)
        if isinstance(step, bool) or not isinstance(step, int):
            raise TypeError(f"step must be an int, got {step!r}")
        self._write("trial_progress", trial=trial_id, step=step, metrics=to_json(dict(metrics)))

    def trial_finished(
        self,
        trial_id: str,
        *,
        state: str,
        score: float | None,
        result: Any = None,
        reason: str | None = None,
        cached: bool = False,
    ) -> None:
        """The trial ended: ``state`` is succeeded, failed, cancelled or stopped (an early
        stop by the search); ``reason`` says why it was stopped or failed; ``cached``
        when the result cache answered instead of a run."""
        _check_text("trial_id", trial_id)
        if state not in FINISHED_STATES:
            raise ValueError(f"state must be one of {sorted(FINISHED_STATES)}, got {state!r}")
        if score is not None and not _is_real(score):
            raise TypeError(f"score must be a number or None, got {score!r}")
        self._write(
            "trial_finished",
            trial=trial_id,
            state=state,
            score=to_json(float(score)) if score is not None else None,
            result=to_json(result),
            reason=reason,
            cached=bool(cached),
        )

    def note(self, kind: str, **data: Any) -> None:
        """Anything else worth keeping (a vote, a contract award), as ``kind`` and data."""
        _check_text("kind", kind)
        self._write("note", kind=kind, data=to_json(data))

    def run_finished(self, *, best: str | None) -> None:
        """The last record: the run ended and ``best`` (a trial id) won; synced to disk."""
        self._write("run_finished", best=best)
        self._sync()

    def close(self) -> None:
        """Sync and close the file (idempotent); later records raise ``RunLogError``."""
        if self._file is not None:
            try:
                self._sync()
            finally:
                self._file.close()
                self._file = None

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------

    def _write(self, event: str, opening: bool = False, **fields: Any) -> None:
        if self._file is None:
            raise RunLogError(f"{self.path}: the run log is closed")
        if not (self._started or opening):
            raise RunLogError(f"{self.path}: log run_started before {event}")
        record = {"event": event, "t": time.time(), **fields}
        line = json.dumps(record, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
        self._file.write(line.encode("ascii") + b"\n")
        self._file.flush()

    def _sync(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty str, got {value!r}")


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _lock(file: IO[bytes], path: Path) -> None:
    """Hold an advisory lock on ``file`` while it is open: one writer per run log."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunLogError(f"{path}: another RunLog is writing this run") from None


# -- reading ----------------------------------------------------------------------------


def load_run(directory: str | os.PathLike[str]) -> RunRecord:
    """Read the run in ``directory`` (or a ``run.jsonl`` path); ``RunLogError`` for a
    missing directory, no run log, or a first line that is not ``run_started``."""
    path = Path(directory)
    file = path / LOG_NAME if path.is_dir() else path
    if not path.exists():
        raise RunLogError(f"{path}: no such run directory")
    if not file.is_file():
        raise RunLogError(f"{path}: not a run directory (no {LOG_NAME} in it)")
    lines = file.read_bytes().split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise RunLogError(f"{file}: empty run log")
    first = _parse(lines[0])
    if first is None or first.get("event") != "run_started":
        raise RunLogError(f"{file}: not a run log (the first line is not a run_started record)")
    run = RunRecord(name="", strategy="", metric=None, mode="max", directory=str(path))
    if not _apply(run, first):
        raise RunLogError(f"{file}: the run_started record on the first line is malformed")
    for line in lines[1:]:
        record = _parse(line)
        if record is None or not _apply(run, record):
            run.skipped_lines += 1
    return run


def load_runs(directory: str | os.PathLike[str]) -> list[RunRecord]:
    """The run in ``directory``, or else the runs in its subdirectories (one per agent
    of a multi-agent search), by name; ``RunLogError`` when there is none."""
    path = Path(directory)
    if not path.exists():
        raise RunLogError(f"{path}: no such run directory")
    if path.is_file() or (path / LOG_NAME).exists():
        return [load_run(path)]
    subdirs = sorted(child for child in path.iterdir() if (child / LOG_NAME).is_file())
    if not subdirs:
        raise RunLogError(
            f"{path}: not a run directory (no {LOG_NAME} in it or in its subdirectories)"
        )
    return [load_run(child) for child in subdirs]


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:  # a truncated or corrupt line (UnicodeDecodeError is one too)
        return None
    if not isinstance(record, dict) or not isinstance(record.get("event"), str):
        return None
    return record


def _apply(run: RunRecord, record: dict[str, Any]) -> bool:
    """Fold one record into ``run``; False when it is malformed or unknown."""
    event = record["event"]
    t = _opt_float(record.get("t"))
    if event == "run_started":
        mode = record.get("mode")
        if mode not in ("min", "max"):
            return False
        if run.started_at is not None:
            run.resumed += 1
        run.name = str(record.get("name") or "")
        run.strategy = str(record.get("strategy") or "")
        run.metric = _opt_str(record.get("metric"))
        run.mode = mode
        run.spec = from_json(record.get("spec"))
        run.agent = _opt_str(record.get("agent"))
        run.started_at = run.started_at if run.started_at is not None else t
        run.finished = False
        return True
    if event == "note":
        kind = record.get("kind")
        data = from_json(record.get("data"))
        if not isinstance(kind, str) or not isinstance(data, dict):
            return False
        run.notes.append({"kind": kind, "t": t, **data})
        return True
    if event == "run_finished":
        run.finished = True
        run.best = _opt_str(record.get("best"))
        run.finished_at = t
        return True
    trial_id = record.get("trial")
    if not isinstance(trial_id, str) or not trial_id:
        return False
    # Records of a trial may arrive before its trial_started (progress relayed first).
    trial = run.trials.get(trial_id) or run.trials.setdefault(trial_id, TrialRecord(trial_id))
    if event == "trial_started":
        return _started(trial, record, t)
    if event == "trial_progress":
        return _progress(trial, record)
    if event == "trial_finished":
        return _finished(trial, record, t)
    return False


def _started(trial: TrialRecord, record: dict[str, Any], t: float | None) -> bool:
    params = from_json(record.get("params"))
    generation = record.get("generation", 0)
    if not isinstance(params, dict) or isinstance(generation, bool):
        return False
    if not isinstance(generation, int):
        return False
    trial.params = params
    trial.job_id = str(record.get("job_id") or "")
    trial.parent = _opt_str(record.get("parent"))
    trial.reason = str(record.get("reason") or "initial")
    trial.generation = generation
    trial.agent = _opt_str(record.get("agent"))
    trial.started_at = t
    return True


def _progress(trial: TrialRecord, record: dict[str, Any]) -> bool:
    step = record.get("step")
    metrics = from_json(record.get("metrics"))
    if isinstance(step, bool) or not isinstance(step, int) or not isinstance(metrics, dict):
        return False
    # Keep the curve in step order; a step reported again (a retried attempt) replaces.
    curve = trial.curve
    if curve and curve[-1][0] < step:
        curve.append((step, metrics))
        return True
    kept = [(s, m) for s, m in curve if s != step]
    kept.append((step, metrics))
    kept.sort(key=lambda point: point[0])
    trial.curve = kept
    return True


def _finished(trial: TrialRecord, record: dict[str, Any], t: float | None) -> bool:
    state = record.get("state")
    if state not in FINISHED_STATES:
        return False
    trial.state = str(state)
    score = from_json(record.get("score"))
    trial.score = float(score) if as_score(score) is not None or isinstance(score, float) else None
    trial.result = from_json(record.get("result"))
    trial.stop_reason = _opt_str(record.get("reason"))
    trial.cached = record.get("cached") is True
    trial.finished_at = t
    return True


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _opt_float(value: Any) -> float | None:
    return as_score(value)

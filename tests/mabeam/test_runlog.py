"""RunLog and load_run: the round trip through run.jsonl (odd values included), a crash's
truncated last line, out-of-order progress, the leaderboard and lineage, clear errors."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from mabeam.ml import RunLog, RunLogError, load_run, load_runs
from mabeam.ml._runlog_json import MAX_DEPTH


def _started(log: RunLog, mode: str = "max", metric: str | None = "accuracy") -> None:
    log.run_started(name="r", strategy="pbt", metric=metric, mode=mode)


def test_every_record_comes_back_as_written(tmp_path: Path) -> None:
    with RunLog(tmp_path / "run") as log:
        log.run_started(
            name="pbt-1",
            strategy="pbt",
            metric="accuracy",
            mode="max",
            spec={"population": 4},
            agent="searcher-1",
        )
        log.trial_started("a", params={"lr": 0.1, "hidden": 64}, job_id="j1", agent="searcher-1")
        log.trial_progress("a", 1, {"accuracy": 0.5, "loss": 1.2})
        log.trial_progress("a", 2, {"accuracy": 0.7, "loss": 0.9})
        log.trial_finished("a", state="succeeded", score=0.7, result={"accuracy": 0.7})
        log.trial_started(
            "b", params={"lr": 0.08}, job_id="j2", parent="a", reason="exploit", generation=1
        )
        log.trial_finished("b", state="stopped", score=0.6, reason="below median", cached=True)
        log.note("vote", winner="a", ballots=[1, 2])
        log.run_finished(best="a")
    run = load_run(tmp_path / "run")
    assert (run.name, run.strategy, run.metric, run.mode) == ("pbt-1", "pbt", "accuracy", "max")
    assert (run.spec, run.agent, run.finished, run.best) == (
        {"population": 4},
        "searcher-1",
        True,
        "a",
    )
    assert list(run.trials) == ["a", "b"]
    a, b = run.trials["a"], run.trials["b"]
    assert a.params == {"lr": 0.1, "hidden": 64}
    assert (a.job_id, a.parent, a.reason, a.generation, a.agent) == (
        "j1",
        None,
        "initial",
        0,
        "searcher-1",
    )
    assert a.curve == [(1, {"accuracy": 0.5, "loss": 1.2}), (2, {"accuracy": 0.7, "loss": 0.9})]
    assert (a.state, a.score, a.result, a.stop_reason, a.cached) == (
        "succeeded",
        0.7,
        {"accuracy": 0.7},
        None,
        False,
    )
    assert (b.parent, b.reason, b.generation, b.state, b.stop_reason, b.cached) == (
        "a",
        "exploit",
        1,
        "stopped",
        "below median",
        True,
    )
    assert a.started_at is not None and a.finished_at is not None
    assert run.started_at is not None and run.started_at <= a.started_at <= a.finished_at
    assert [(n["kind"], n["winner"], n["ballots"]) for n in run.notes] == [("vote", "a", [1, 2])]
    assert (run.skipped_lines, run.resumed) == (0, 0)


def test_values_json_lacks_survive_and_the_file_stays_strict_json(tmp_path: Path) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "Opaque()"

    deep: Any = "bottom"
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    params = {
        "blob": b"\x00\xffraw",
        "nan": math.nan,
        "inf": math.inf,
        "ninf": -math.inf,
        "tagged": {"$bytes": "not really"},  # a user dict that looks like a tag
        "tuple": (1, 2.5, "x"),
        "intkeys": {1: "one"},
        "fraction": Fraction(1, 4),
        "opaque": Opaque(),
        "unicode": "λ → ✓",
        "deep": deep,
    }
    with RunLog(tmp_path) as log:
        _started(log)
        log.trial_started("t", params=params, job_id="j")
        log.trial_finished("t", state="failed", score=math.nan, result=bytearray(b"ab"))
    text = (tmp_path / "run.jsonl").read_text(encoding="ascii")

    def no_constants(name: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {name}")

    for line in text.splitlines():
        json.loads(line, parse_constant=no_constants)
    trial = load_run(tmp_path).trials["t"]
    got = trial.params
    assert got["blob"] == b"\x00\xffraw"
    assert math.isnan(got["nan"]) and got["inf"] == math.inf and got["ninf"] == -math.inf
    assert got["tagged"] == {"$bytes": "not really"}
    assert got["tuple"] == [1, 2.5, "x"]
    assert got["intkeys"] == {"1": "one"}
    assert got["fraction"] == 0.25
    assert got["opaque"] == "<unencodable Opaque: Opaque()>"
    assert got["unicode"] == "λ → ✓"
    depth = 0
    value = got["deep"]
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    assert value == f"<unencodable: nested deeper than {MAX_DEPTH}>" and depth < MAX_DEPTH + 5
    assert trial.score is not None and math.isnan(trial.score)
    assert trial.result == b"ab"


def test_a_truncated_last_line_is_skipped_and_counted(tmp_path: Path) -> None:
    log = RunLog(tmp_path)
    _started(log)
    log.trial_started("t", params={}, job_id="j")
    log.trial_progress("t", 1, {"accuracy": 0.3})
    log.close()
    with open(tmp_path / "run.jsonl", "ab") as file:  # a crash in the middle of a write
        file.write(b'{"event":"trial_progress","t":1.0,"trial":"t","st')
    run = load_run(tmp_path)
    assert run.skipped_lines == 1
    assert run.trials["t"].curve == [(1, {"accuracy": 0.3})]
    assert not run.finished and run.trials["t"].state == "running"

    # The restarted agent resumes: the cut line is ended, new records read back.
    with RunLog(tmp_path, resume=True) as log:
        _started(log)
        log.trial_progress("t", 2, {"accuracy": 0.4})
        log.trial_finished("t", state="succeeded", score=0.4)
        log.run_finished(best="t")
    run = load_run(tmp_path)
    assert (run.skipped_lines, run.resumed, run.finished) == (1, 1, True)
    assert [step for step, _ in run.trials["t"].curve] == [1, 2]


def test_progress_out_of_order_or_before_its_start_is_kept_in_step_order(tmp_path: Path) -> None:
    with RunLog(tmp_path) as log:
        _started(log)
        log.trial_progress("t", 3, {"accuracy": 0.3})  # relayed before trial_started
        log.trial_started("t", params={"lr": 1}, job_id="j")
        log.trial_progress("t", 1, {"accuracy": 0.1})
        log.trial_progress("t", 2, {"accuracy": 0.2})
        log.trial_progress("t", 2, {"accuracy": 0.25})  # a retried attempt reports again
        log.trial_progress("t", 5, {"accuracy": 0.5, "note": "not a number"})
    trial = load_run(tmp_path).trials["t"]
    assert trial.params == {"lr": 1}
    assert [(step, m["accuracy"]) for step, m in trial.curve] == [
        (1, 0.1),
        (2, 0.25),
        (3, 0.3),
        (5, 0.5),
    ]
    assert trial.points("note") == []
    assert trial.final("accuracy") == 0.5


def _scored_run(tmp_path: Path, mode: str) -> Path:
    with RunLog(tmp_path / mode) as log:
        _started(log, mode=mode)
        for trial_id, score, state in [
            ("a", 0.5, "succeeded"),
            ("b", 0.9, "succeeded"),
            ("c", None, "failed"),
            ("d", math.nan, "succeeded"),
            ("e", 0.7, "stopped"),
            ("f", 0.5, "succeeded"),
            ("g", None, "cancelled"),
        ]:
            log.trial_started(trial_id, params={}, job_id=trial_id)
            log.trial_progress(trial_id, 1, {"loss": {"a": 3.0, "b": 1.0}.get(trial_id, 2.0)})
            log.trial_finished(trial_id, state=state, score=score)
        log.trial_started("h", params={}, job_id="h")  # still running: no score
    return tmp_path / mode


def test_the_leaderboard_ranks_by_mode_with_unscored_trials_last(tmp_path: Path) -> None:
    best_high = load_run(_scored_run(tmp_path, "max")).leaderboard()
    assert [t.trial_id for t in best_high] == ["b", "e", "a", "f", "c", "d", "g", "h"]
    best_low = load_run(_scored_run(tmp_path, "min")).leaderboard()
    assert [t.trial_id for t in best_low] == ["a", "f", "e", "b", "c", "d", "g", "h"]
    # By another metric (the last report), with its own mode.
    by_loss = load_run(tmp_path / "max").leaderboard("loss", "min")
    assert [t.trial_id for t in by_loss][:2] == ["b", "c"]
    assert [t.trial_id for t in by_loss][-2:] == ["a", "h"]


def test_lineage_lists_each_parent_link_of_a_pbt_run_in_start_order(tmp_path: Path) -> None:
    with RunLog(tmp_path) as log:
        _started(log)
        for member in ("m0", "m1"):
            log.trial_started(f"{member}-g0", params={"lr": 0.1}, job_id=member)
        log.trial_started(
            "m0-g1", params={}, job_id="x", parent="m0-g0", reason="continue", generation=1
        )
        log.trial_started(
            "m1-g1", params={}, job_id="y", parent="m0-g0", reason="exploit", generation=1
        )
        log.trial_started(
            "m1-g2", params={}, job_id="z", parent="m1-g1", reason="mutation", generation=2
        )
    run = load_run(tmp_path)
    assert run.lineage() == [
        ("m0-g0", "m0-g1", "continue"),
        ("m0-g0", "m1-g1", "exploit"),
        ("m1-g1", "m1-g2", "mutation"),
    ]
    assert run.trials["m1-g2"].generation == 2


def test_a_directory_of_runs_loads_one_record_per_agent_by_name(tmp_path: Path) -> None:
    for agent in ("b-agent", "a-agent"):
        with RunLog(tmp_path / agent) as log:
            log.run_started(name=agent, strategy="random", metric=None, mode="min")
    (tmp_path / "not-a-run").mkdir()
    assert [run.name for run in load_runs(tmp_path)] == ["a-agent", "b-agent"]
    assert [run.name for run in load_runs(tmp_path / "a-agent")] == ["a-agent"]
    assert [run.name for run in load_runs(tmp_path / "a-agent" / "run.jsonl")] == ["a-agent"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such run directory"),
        (b"", "empty run log"),
        (b'{"event":"trial_started","trial":"t"}\n', "first line is not a run_started"),
        (b"not json\n", "first line is not a run_started"),
        (
            b'{"event":"run_started","mode":"best"}\n',
            "run_started record on the first line is malformed",
        ),
    ],
)
def test_load_run_refuses_what_is_not_a_run_log(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    where = tmp_path / "run"
    if content is not None:
        where.mkdir()
        (where / "run.jsonl").write_bytes(content)
    with pytest.raises(RunLogError, match=message):
        load_run(where)


def test_a_directory_without_a_run_log_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(RunLogError, match=r"not a run directory \(no run\.jsonl in it\)"):
        load_run(tmp_path)
    with pytest.raises(RunLogError, match=r"no run\.jsonl in it or in its subdirectories"):
        load_runs(tmp_path)


def test_a_run_directory_has_one_writer_and_is_never_appended_to_by_accident(
    tmp_path: Path,
) -> None:
    log = RunLog(tmp_path)
    _started(log)
    with pytest.raises(RunLogError, match="another RunLog is writing this run"):
        RunLog(tmp_path, resume=True)
    log.close()
    log.close()  # idempotent
    with pytest.raises(RunLogError, match="already holds a run log"):
        RunLog(tmp_path)
    with pytest.raises(RunLogError, match="the run log is closed"):
        log.note("late")


def test_bad_records_are_refused_with_what_was_expected(tmp_path: Path) -> None:
    with RunLog(tmp_path) as log:
        with pytest.raises(RunLogError, match="log run_started before trial_started"):
            log.trial_started("t", params={}, job_id="j")
        with pytest.raises(ValueError, match="mode must be 'min' or 'max', got 'best'"):
            log.run_started(name="r", strategy="grid", metric=None, mode="best")
        _started(log)
        with pytest.raises(RunLogError, match="run_started was logged already"):
            _started(log)
        with pytest.raises(ValueError, match="state must be one of"):
            log.trial_finished("t", state="done", score=None)
        with pytest.raises(TypeError, match=r"score must be a number or None, got '0\.5'"):
            log.trial_finished("t", state="succeeded", score="0.5")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="step must be an int"):
            log.trial_progress("t", True, {})
        with pytest.raises(ValueError, match="trial_id must be a non-empty str"):
            log.trial_started("", params={}, job_id="j")
        with pytest.raises(ValueError, match="generation must be an int >= 0"):
            log.trial_started("t", params={}, job_id="j", generation=-1)
    assert load_run(tmp_path).trials == {}

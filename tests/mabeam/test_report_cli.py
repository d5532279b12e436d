"""``mabeam report RUN``: the leaderboard table, the PNG (a real file, checked by its
header, size and pixels), a directory of runs, and one-line errors with exit status 2."""

from __future__ import annotations

import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from mabeam.cli import main
from mabeam.ml import RunLog

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
needs_matplotlib = pytest.mark.skipif(
    find_spec("matplotlib") is None, reason="needs the ml extra (matplotlib)"
)


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")


def _pbt_run(directory: Path) -> Path:
    """Two members, three segments; member 1 exploits member 0 after the first one."""
    curves = {
        "m0-g0": [0.30, 0.50],
        "m1-g0": [0.20, 0.30],
        "m0-g1": [0.60, 0.70],
        "m1-g1": [0.62, 0.66],
        "m0-g2": [0.75, 0.80],
        "m1-g2": [0.70, 0.72],
    }
    parents = {
        "m0-g1": ("m0-g0", "continue"),
        "m1-g1": ("m0-g0", "exploit"),
        "m0-g2": ("m0-g1", "continue"),
        "m1-g2": ("m1-g1", "mutation"),
    }
    with RunLog(directory) as log:
        log.run_started(name="pbt-small", strategy="pbt", metric="accuracy", mode="max")
        for trial_id, values in curves.items():
            generation = int(trial_id[-1])
            parent, reason = parents.get(trial_id, (None, "initial"))
            log.trial_started(
                trial_id,
                params={"lr": 0.1 if trial_id.startswith("m0") else 0.05},
                job_id=f"job-{trial_id}",
                parent=parent,
                reason=reason,
                generation=generation,
            )
            for offset, value in enumerate(values, 1):
                step = generation * 2 + offset
                log.trial_progress(trial_id, step, {"accuracy": value, "loss": 1 - value})
            state = "stopped" if trial_id == "m1-g2" else "succeeded"
            reason_text = "population shrank" if state == "stopped" else None
            log.trial_finished(trial_id, state=state, score=values[-1], reason=reason_text)
        log.run_finished(best="m0-g2")
    return directory


def _grid_run(directory: Path) -> Path:
    with RunLog(directory) as log:
        log.run_started(name="grid-small", strategy="grid", metric="loss", mode="min")
        for index, lr in enumerate((0.3, 0.1, 0.01)):
            trial_id = f"t{index}"
            log.trial_started(trial_id, params={"lr": lr}, job_id=f"j{index}")
            for step in (1, 2, 3):
                log.trial_progress(trial_id, step, {"loss": lr * 10 / step})
            log.trial_finished(trial_id, state="succeeded", score=lr * 10 / 3)
        log.trial_started("t3", params={"lr": 3.0}, job_id="j3")
        log.trial_finished("t3", state="failed", score=None, reason="diverged at step 2")
        log.run_finished(best="t2")
    return directory


def _png_pixels(path: Path) -> tuple[int, int, float, float]:
    """(height, width, share of non-white pixels in the left and the right half)."""
    import numpy as np
    from matplotlib.image import imread

    pixels = imread(str(path))
    height, width = pixels.shape[:2]
    inked = np.asarray((pixels[:, :, :3] < 0.9).any(axis=2))
    half = width // 2
    return height, width, float(inked[:, :half].mean()), float(inked[:, half:].mean())


def _rows(out: str) -> list[str]:
    """The trial ids of the table rows, in order."""
    rows = []
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) > 3 and cells[1].isdigit():
            rows.append(cells[2])
    return rows


@needs_matplotlib
def test_a_pbt_run_prints_its_leaderboard_and_writes_curves_and_lineage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _pbt_run(tmp_path / "pbt")
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "pbt-small (pbt): 6 trials, best accuracy (max) first" in out
    assert _rows(out) == ["m0-g2", "m1-g2", "m0-g1", "m1-g1", "m0-g0", "m1-g0"]
    best = next(line for line in out.splitlines() if "│ m0-g2 " in line)
    assert "0.8" in best and "m0-g1 (continue)" in best and "lr=0.1" in best
    stopped = next(line for line in out.splitlines() if "│ m1-g2 " in line)
    assert "stopped" in stopped and "population shrank" in stopped and "(mutation)" in stopped
    assert (
        "pbt-small: pbt, 6 trials (1 stopped, 5 succeeded); best m0-g2 accuracy 0.8; finished"
        in out
    )
    png = run / "report.png"
    assert f"wrote {png}" in out
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 20_000
    height, width, left, right = _png_pixels(png)
    assert (height, width) == (440, 1200)  # one row of two panels at 100 dpi
    assert left > 0.02 and right > 0.01  # curves on the left, the lineage graph on the right


@needs_matplotlib
def test_options_pick_the_output_the_rows_and_the_metric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _pbt_run(tmp_path / "pbt")
    out_file = tmp_path / "elsewhere" / "pbt.png"
    assert (
        main(
            [
                "report",
                str(run),
                "--out",
                str(out_file),
                "--top",
                "2",
                "--metric",
                "loss",
                "--mode",
                "min",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "best loss (min) first" in out
    assert _rows(out) == ["m0-g2", "m1-g2"]
    assert "and 4 more (--top 0 shows every trial)" in out
    assert out_file.read_bytes()[:8] == PNG_MAGIC
    assert not (run / "report.png").exists()

    assert main(["report", str(run), "--no-plot"]) == 0
    assert "wrote" not in capsys.readouterr().out
    assert not (run / "report.png").exists()


@needs_matplotlib
def test_a_directory_of_runs_gets_a_table_and_summary_each_and_one_png(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _pbt_run(tmp_path / "agents" / "a-pbt")
    _grid_run(tmp_path / "agents" / "b-grid")
    assert main(["report", str(tmp_path / "agents")]) == 0
    out = capsys.readouterr().out
    assert _rows(out) == [
        "m0-g2",
        "m1-g2",
        "m0-g1",
        "m1-g1",
        "m0-g0",
        "m1-g0",
        "t2",
        "t1",
        "t0",
        "t3",
    ]
    assert "grid-small (grid): 4 trials, best loss (min) first" in out
    assert (
        "grid-small: grid, 4 trials (1 failed, 3 succeeded); best t2 loss 0.03333; finished" in out
    )
    failed = next(line for line in out.splitlines() if "│ t3 " in line)
    assert "failed" in failed and "diverged at step 2" in failed
    height, width, _, _ = _png_pixels(tmp_path / "agents" / "report.png")
    assert (height, width) == (880, 1200)


def test_an_unfinished_run_with_a_cut_line_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = RunLog(tmp_path)
    log.run_started(name="cut", strategy="asha", metric="accuracy", mode="max")
    log.trial_started("t0", params={"lr": 0.1}, job_id="j0")
    log.trial_progress("t0", 1, {"accuracy": 0.4})
    log.close()
    with open(tmp_path / "run.jsonl", "ab") as file:
        file.write(b'{"event":"trial_fin')
    assert main(["report", str(tmp_path), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert _rows(out) == ["t0"]
    assert "not finished (running, or stopped early); 1 unreadable line skipped" in out


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        ("nothing", [], "no such run directory"),
        ("empty dir", [], "not a run directory (no run.jsonl in it or in its subdirectories)"),
        ("not a log", [], "not a run log (the first line is not a run_started record)"),
        ("pbt", ["--metric", "f1"], "unknown metric 'f1': the trials report accuracy, loss"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str, args: list[str], message: str
) -> None:
    where = tmp_path / "run"
    if make == "empty dir":
        where.mkdir()
    elif make == "not a log":
        where.mkdir()
        (where / "run.jsonl").write_text('{"event": "note", "kind": "x"}\n')
    elif make == "pbt":
        _pbt_run(where)
    assert main(["report", str(where), *args]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("mabeam: error: ") and message in captured.err
    assert captured.err.count("\n") == 1
    assert not (where / "report.png").exists()


def test_without_matplotlib_the_table_prints_and_the_error_says_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _grid_run(tmp_path / "grid")
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    assert main(["report", str(run)]) == 1
    captured = capsys.readouterr()
    assert _rows(captured.out) == ["t2", "t1", "t0", "t3"]
    assert "pip install 'mabeam[ml]'" in captured.err and "--no-plot" in captured.err


def test_the_console_script_reports_a_missing_run_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mabeam", "report", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == f"mabeam: error: {tmp_path / 'missing'}: no such run directory\n"
    assert result.stdout == ""

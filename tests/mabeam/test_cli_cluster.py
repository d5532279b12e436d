"""The cluster commands of the ``mabeam`` CLI: errors are one line, ``run`` works end to end.

Commands run as real subprocesses (``python -m mabeam ...``). The ones that need a
coordinator start one as a subprocess too (``mabeam coordinator start`` on a free port,
its "listening" line read from its stdout instead of sleeping) and stop it with SIGTERM.
``mabeam run`` runs a tiny sweep of entrypoints from task_entrypoints.py end to end.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import pytest
from cluster_harness import Coordinator, Keys, Node
from cluster_harness import mabeam_cli as mabeam
from rich.console import Console

from mabeam.cli import main
from mabeam.cli._sweep_view import TrialRow, rank, results_table
from mabeam.ml import load_run
from mabeam.ml.spec import parse_spec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SPECS = HERE / "specs"


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if find_spec(m) is None]


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``mabeam: error:`` line on stderr (and nothing else there)."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mabeam: error: ")
    return lines[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- errors -----------------------------------------------------------------------------


def test_python_dash_m_mabeam_is_the_console_script() -> None:
    result = mabeam("--help")
    assert result.returncode == 0
    for command in ("run", "submit", "status", "cancel", "coordinator", "node", "demo"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["run", "submit", "status", "cancel", "demo"])
def test_each_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert f"usage: mabeam {command}" in capsys.readouterr().out


def test_a_bad_spec_file_is_one_line_naming_the_key_and_exit_1() -> None:
    line = one_error_line(mabeam("submit", str(SPECS / "bad_gpus.toml")))
    assert line.endswith("bad_gpus.toml: resources.gpus must be an int >= 0, got -1")
    line = one_error_line(mabeam("run", "no/such/spec.toml"))
    assert "no/such/spec.toml: cannot read the spec file: no such file" in line


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """``mabeam ARGS`` run in this process; its single ``mabeam: error:`` line."""
    assert main(list(args)) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mabeam: error: "), captured.err
    assert "Traceback" not in captured.out + captured.err
    return lines[0]


def test_an_unreachable_coordinator_is_one_line_naming_the_address(
    capsys: pytest.CaptureFixture[str],
) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    line = one_error_line(
        mabeam("status", "--coordinator", address, "--timeout", "0.3", "--insecure")
    )
    assert f"no answer from the coordinator at {address} within 0.3 s" in line
    for args in (["cancel", "j-1"], ["submit", str(SPECS / "grid.toml")]):
        line = in_process(capsys, *args, "--coordinator", address, "--timeout", "0.2", "--insecure")
        assert f"no answer from the coordinator at {address} within 0.2 s" in line


def test_the_address_defaults_to_the_environment_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MABEAM_COORDINATOR", address)
    assert address in in_process(capsys, "status", "--timeout", "0.2", "--insecure")


def test_a_malformed_address_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    line = in_process(capsys, "status", "--coordinator", "localhost:5555", "--insecure")
    assert "cannot connect to 'localhost:5555'" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "x.toml", "--slots", "0"], "argument --slots: expected a number >= 1, got '0'"),
        (["status", "--timeout", "soon"], "argument --timeout: expected a number of seconds"),
        (["cancel"], "the following arguments are required: JOB"),
        (
            ["run", "x.toml", "--policy", "lottery"],
            "argument --policy: expected one of auction, fifo",
        ),
    ],
)
def test_bad_arguments_exit_2_with_usage(args: list[str], message: str) -> None:
    result = mabeam(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "usage: mabeam" in result.stderr
    assert "Traceback" not in result.stderr


# -- the results table ------------------------------------------------------------------

TABLE_SPEC = """
name = "table"
entrypoint = "a.b:c"
metric = "accuracy"
mode = "max"
[search]
strategy = "grid"
[search.grid]
lr = [0.1, 0.2, 0.3, 0.4]
"""


@pytest.mark.parametrize("mode", ["max", "min"])
def test_the_results_table_puts_the_best_trial_first_and_failures_last(mode: str) -> None:
    spec = parse_spec(TABLE_SPEC.replace('"max"', f'"{mode}"'))
    rows = [
        TrialRow(0, "j-0", {"lr": 0.1}, "succeeded", {"accuracy": 0.5}, duration_s=1.0),
        TrialRow(1, "j-1", {"lr": 0.2}, "failed", None, "Traceback...\nValueError: no"),
        TrialRow(2, "j-2", {"lr": 0.3}, "succeeded", {"accuracy": 0.9}, duration_s=2.0),
        TrialRow(3, "j-3", {"lr": 0.4}, "succeeded", {"loss": 1.0}),
    ]
    ordered = rank(spec, rows)
    best_first = [2, 0] if mode == "max" else [0, 2]
    assert [r.index for r in ordered] == [*best_first, 3, 1]
    console = Console(record=True, width=120)
    console.print(results_table(spec, ordered))
    text = console.export_text()
    assert f"table: 4 trials, best accuracy ({mode}) first" in text
    lines = [line for line in text.splitlines() if "j-" in line]
    assert "0.9" in lines[0 if mode == "max" else 1] and "2.00 s" in text
    assert "failed" in lines[-1]


# -- against a live coordinator ---------------------------------------------------------


@pytest.fixture
def coordinator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Coordinator]:
    """``mabeam coordinator start`` on a free port with CurveZMQ keys (the client key in
    this process's environment, for the ``mabeam`` commands), stopped with SIGTERM."""
    keys = Keys(tmp_path / "keys")
    for name, value in keys.client_env.items():
        monkeypatch.setenv(name, value)
    coord = Coordinator(
        "coordinator", tmp_path / "jobs.db", "tcp://127.0.0.1:0", 1.0, "info",
        keys.coordinator_args(),
    )  # fmt: skip
    coord.keys = keys  # type: ignore[attr-defined]
    try:
        yield coord
    finally:
        coord.terminate()
        coord.close()


def test_submit_wait_runs_on_a_node_and_status_lists_it(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    spec = tmp_path / "count.toml"
    spec.write_text(COUNT_SPEC)
    keys = coordinator.keys  # type: ignore[attr-defined]
    node = Node(
        "cli-node", coordinator.endpoint, tmp_path / "node",
        ["--slots", "2", *keys.node_args("cli-node")],
    )  # fmt: skip
    try:
        result = mabeam("submit", str(spec), "--wait", "--coordinator", coordinator.endpoint)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "submitted 3 jobs of 'counting'" in result.stdout
        assert "3 of 3 trials succeeded" in result.stdout
        status = mabeam("status", "--coordinator", coordinator.endpoint)
        assert status.returncode == 0, status.stderr
        assert re.search(r"cli-node\s+│\s+-\s+│\s+\d+\s+│.*│\s+2\s+│", status.stdout)
        assert re.search(r"│\s+0\s+│\s+0\s+│\s+0\s+│\s+3\s+│", status.stdout)  # 3 succeeded
    finally:
        assert node.terminate() == 0
        node.close()


def test_cancel_of_an_unknown_job_is_one_line(coordinator: Coordinator) -> None:
    line = one_error_line(mabeam("cancel", "j-nope-1", "--coordinator", coordinator.endpoint))
    assert "j-nope-1" in line


def test_submit_then_status_shows_the_queue_and_the_jobs(coordinator: Coordinator) -> None:
    submitted = mabeam("submit", str(SPECS / "grid.toml"), "--coordinator", coordinator.endpoint)
    assert submitted.returncode == 0, submitted.stderr
    assert "submitted 6 jobs of 'digits-grid'" in submitted.stdout
    job_ids = re.findall(r"^\s+(j-\S+)$", submitted.stdout, re.MULTILINE)
    assert len(job_ids) == 6
    status = mabeam("status", "--coordinator", coordinator.endpoint)
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert f"nodes of {coordinator.endpoint}" in out and "no node connected" in out
    assert "jobs by state" in out and "queued" in out
    assert all(job_id in out for job_id in job_ids)
    cancelled = mabeam("cancel", job_ids[0], "--coordinator", coordinator.endpoint)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"{job_ids[0]}: cancelled"
    shown = mabeam("status", job_ids[0], "--coordinator", coordinator.endpoint)
    assert re.search(rf"{job_ids[0]}\s+.*cancelled", shown.stdout)


# -- mabeam run, end to end -------------------------------------------------------------

COUNT_SPEC = """
name = "counting"
entrypoint = "task_entrypoints:count"
max_retries = 0

[search]
strategy = "grid"

[search.grid]
n = [1, 2, 3]
"""

FAIL_SPEC = """
name = "failing"
entrypoint = "task_entrypoints:fail"
max_retries = 0

[params]
lr = -1
"""


def test_run_executes_a_sweep_locally_and_prints_the_results_table(tmp_path: Path) -> None:
    spec = tmp_path / "count.toml"
    spec.write_text(COUNT_SPEC)
    result = mabeam("run", str(spec), "--slots", "2", cwd=HERE)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Traceback" not in out + result.stderr
    assert "mabeam run" in out and "3 trials of 'counting'" in out
    assert "counting: 3 trials" in out  # the results table's title
    rows = [line for line in out.splitlines() if "succeeded" in line and "j-" in line]
    assert len(rows) == 3
    # count(n) returns 0 + 1 + ... + (n - 1): 0, 1 and 3.
    assert sorted(int(row.split("│")[4].strip()) for row in rows) == [0, 1, 3]
    assert "3 of 3 trials succeeded" in out
    assert "(temporary)" in out and "cached" not in out


def test_run_again_on_a_kept_state_file_answers_from_the_result_cache(tmp_path: Path) -> None:
    spec = tmp_path / "count.toml"
    spec.write_text(COUNT_SPEC)
    state = tmp_path / "kept.db"
    first = mabeam("run", str(spec), "--state", str(state), cwd=HERE)
    assert first.returncode == 0 and "(kept)" in first.stdout, first.stdout + first.stderr
    again = mabeam("run", str(spec), "--state", str(state), cwd=HERE)
    assert again.returncode == 0, again.stdout + again.stderr
    rows = [line for line in again.stdout.splitlines() if "succeeded" in line and "j-" in line]
    assert len(rows) == 3 and all("cached" in row for row in rows)


def test_run_lists_a_failed_trial_with_its_error_and_exits_1(tmp_path: Path) -> None:
    spec = tmp_path / "fail.toml"
    spec.write_text(FAIL_SPEC)
    state = tmp_path / "kept.db"
    result = mabeam("run", str(spec), "--state", str(state), cwd=HERE)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ValueError: bad learning rate -1" in result.stdout
    assert "0 of 1 trials succeeded" in result.stdout
    assert state.exists()


@pytest.mark.skipif(bool(_missing("numpy", "sklearn")), reason="needs the examples extra")
def test_demo_runs_the_digits_sweep_and_ranks_real_accuracies(tmp_path: Path) -> None:
    result = mabeam("demo", cwd=tmp_path)  # the examples are found from the package
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "6 trials of 'digits-mlp'" in out and "best accuracy (max) first" in out
    rows = [line.split("│") for line in out.splitlines() if "succeeded" in line and "j-" in line]
    assert len(rows) == 6
    accuracies = [float(row[5]) for row in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert accuracies[0] > 0.9
    assert "6 of 6 trials succeeded" in out


def test_the_nodes_table_summarises_gpus_and_memory() -> None:
    from mabeam.cli._status import counts_table, gpu_summary, nodes_table
    from mabeam.cluster import protocol

    gpus = tuple(protocol.Gpu(f"GPU-{i}", "NVIDIA H100", 81_559) for i in range(2))
    node = protocol.NodeInfo(
        protocol.Inventory("box-1", gpus, cpus=16, ram_mb=131_072, slots=2),
        credit=1,
        running=1,
        last_seen_s=0.4,
    )
    assert gpu_summary(gpus) == "2 x NVIDIA H100 (80 GiB)" and gpu_summary(()) == "-"
    console = Console(record=True, width=150)
    console.print(nodes_table([node], "tcp://h:1"))
    console.print(counts_table({"running": 1, "queued": 4, "weird": 2}))
    text = console.export_text()
    assert "box-1" in text and "128.0 GiB" in text and "0.4 s ago" in text
    assert re.search(r"queued\s+┃\s+running\s+┃\s+weird\s+┃\s+total", text)


PBT_SPEC = """
name = "curve-pbt"
entrypoint = "search_tasks:curve"
metric = "score"
isolation = "pool"
[search]
strategy = "pbt"
[search.pbt]
population = 4
interval = 2
max_steps = 4
[search.space]
x = { distribution = "uniform", low = -1.0, high = 1.0 }
"""


def test_submit_of_a_pbt_search_runs_its_agent_here_and_the_trials_on_the_nodes(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    spec = tmp_path / "pbt.toml"
    spec.write_text(PBT_SPEC)
    keys = coordinator.keys  # type: ignore[attr-defined]
    nodes = [
        Node(name, coordinator.endpoint, tmp_path / name, ["--slots", "1", *keys.node_args(name)])
        for name in ("pbt-a", "pbt-b")
    ]
    try:
        run_dir = tmp_path / "run"
        result = mabeam(
            "submit", str(spec), "--coordinator", coordinator.endpoint, "--run-dir", str(run_dir)
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "running the pbt search of 'curve-pbt'" in result.stdout
        assert "curve-pbt: pbt, 8 trials (8 succeeded)" in result.stdout
        record = load_run(run_dir)
        assert record.finished and len(record.trials) == 8
        # Second segments start from the first ones' checkpoints, on either node.
        seconds = [t for t in record.trials.values() if t.generation == 1]
        assert all(t.params["checkpoint"].endswith("ckpt.json") for t in seconds)
        assert {t.result["step"] for t in seconds} >= {4}
    finally:
        for node in nodes:
            assert node.terminate() == 0
            node.close()


def test_a_run_dir_that_holds_a_run_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    (tmp_path / "run.jsonl").write_text("{}\n")
    spec = tmp_path / "pbt.toml"
    spec.write_text(PBT_SPEC)
    line = one_error_line(mabeam("run", str(spec), "--run-dir", str(tmp_path)))
    assert "already holds a run" in line and str(tmp_path) in line
    line = one_error_line(mabeam("run", str(spec), "--run-dir", str(spec)))
    assert "exists and is not a directory" in line

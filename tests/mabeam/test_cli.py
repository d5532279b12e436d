"""The ``mabeam`` console script: version, clear argparse errors for bad input, and the
runtime demo (``mabeam demo --runtime``; plain ``mabeam demo`` runs the digits sweep,
tested in test_cli_cluster.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mabeam.cli import main


def _mabeam(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "mabeam"
    if not script.exists():
        pytest.fail(f"console script {script} is missing; install with: pip install -e '.[test]'")
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_version_prints_the_distribution_version_and_exits_0() -> None:
    from importlib.metadata import version

    result = _mabeam("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"mabeam {version('mabeam')}"


def test_an_unknown_subcommand_exits_2_with_usage_and_no_traceback() -> None:
    result = _mabeam("frobnicate")
    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr
    assert "usage: mabeam" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_missing_subcommand_exits_2_and_names_what_is_missing() -> None:
    result = _mabeam()
    assert result.returncode == 2
    assert "required: COMMAND" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_option_exits_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--no-such-option"])
    assert info.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "submit", "status", "cancel", "coordinator", "node", "demo"):
        assert f"    {command}" in out


def test_demo_runtime_exits_0_and_prints_the_tree_with_restart_counts_after_the_chaos() -> None:
    result = _mabeam("demo", "--runtime")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Traceback" not in out + result.stderr
    # The kernel part still runs first.
    assert "foundation demo: a crash, seen from every side" in out
    # The supervision part: every node of the three-level tree, with restart counts.
    lines = out.splitlines()
    root = next(i for i, line in enumerate(lines) if line.startswith("demo  <"))
    assert "Supervisor one_for_one" in lines[root]
    tree_lines = lines[root + 1 : root + 13]
    ids = [line.lstrip("│├└─ ").split()[0] for line in tree_lines]
    assert ids == [
        "ingest", "reader", "parser",
        "training", "trainer-0", "trainer-1", "trainer-2",
        "jobs", "job-0", "job-1", "job-2", "job-3",
    ]  # fmt: skip
    assert all("restarts=" in line for line in tree_lines)
    worker_restarts = [
        int(line.split("restarts=")[1].split()[0]) for line in tree_lines if "Stage" in line
    ]
    assert len(worker_restarts) == 9 and sum(worker_restarts) > 0
    assert "rest_for_one" in tree_lines[0] and "one_for_all" in tree_lines[3]
    assert "DynamicSupervisor" in tree_lines[7]
    # The summary: crashes injected and restarts seen by telemetry agree with the tree.
    assert "crashes injected" in out and "restarts observed" in out
    summary = next(line for line in lines if "workers alive" in line)
    assert summary.startswith("9 of 9 workers alive")
    assert f"add up to {sum(worker_restarts)}" in " ".join(lines[lines.index(summary) :])

"""The ``mabeam`` console script: version, and clear argparse errors for bad input."""

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


def test_help_lists_the_demo_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "demo" in capsys.readouterr().out

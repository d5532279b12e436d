"""``mabeam coordinator start``: argument and state-file errors, and a real process.

The subprocess test reads the coordinator's listening line from its stdout (a
``selectors`` wait with a deadline, never a sleep), talks to it over tcp, and stops it
with SIGTERM (exit 0).
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import zmq

from mabeam.cli import _coordinator
from mabeam.cluster import protocol as p
from mabeam.cluster.store import JobStore

MAIN = (
    "import argparse, sys\n"
    "from mabeam.cli import _coordinator\n"
    "parser = argparse.ArgumentParser(prog='mabeam')\n"
    "_coordinator.add_parser(parser.add_subparsers(dest='command', required=True))\n"
    "sys.exit(_coordinator.run(parser.parse_args(sys.argv[1:])))\n"
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mabeam")
    _coordinator.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["coordinator", "start", *argv])


def test_bad_arguments_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad in (["--heartbeat", "-1"], ["--heartbeat", "soon"], ["--policy", "random"]):
        with pytest.raises(SystemExit) as info:
            parse(*bad)
        assert info.value.code == 2
        assert "error:" in capsys.readouterr().err
    state = str(tmp_path / "s.db")
    code = _coordinator.run(parse("--bind", "tcp://nowhere", "--state", state, "--insecure"))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("mabeam coordinator start: error: bind must be an address like")


@pytest.mark.parametrize("case", ["not a database", "a foreign sqlite file", "a file as dir"])
def test_a_state_file_that_cannot_be_used_exits_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    path = tmp_path / "state.db"
    if case == "not a database":
        path.write_text("hello, I am a text file\n" * 100)
    elif case == "a foreign sqlite file":
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE other (x)")
            conn.execute("PRAGMA application_id = 1234")
    else:
        (tmp_path / "plain").write_text("")
        path = tmp_path / "plain" / "state.db"
    code = _coordinator.run(
        parse("--bind", "tcp://127.0.0.1:0", "--state", str(path), "--insecure")
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("mabeam coordinator start: error: cannot ")
    assert str(path) in err or "state file" in err


def read_line(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> str:
    """One line of the child's stdout, waited for with a deadline."""
    assert proc.stdout is not None
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"no line from the coordinator in {timeout} s: {buf!r}")
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"the coordinator exited ({proc.wait()}): {err}")
            buf += chunk
    return buf.decode().splitlines()[0]


def test_a_coordinator_process_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "deep" / "state.db"  # the directory is created
    proc = subprocess.Popen(
        [sys.executable, "-c", MAIN, "coordinator", "start", "--bind", "tcp://127.0.0.1:0",
         "--state", str(state), "--heartbeat", "0.5", "--insecure"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        line = read_line(proc)
        prefix = "mabeam coordinator listening on tcp://127.0.0.1:"
        assert line.startswith(prefix) and line.endswith(f" (state {state}, plain TCP, --insecure)")
        endpoint = line.split()[4]
        client = ctx.socket(zmq.DEALER)
        client.setsockopt(zmq.LINGER, 0)
        client.connect(endpoint)
        client.send(p.encode(p.Submit("r1", "k1", (p.JobSpec("pkg.mod:f"),))))
        assert client.poll(10_000), "no SUBMITTED"
        submitted = p.decode(client.recv())
        assert isinstance(submitted, p.Submitted) and len(submitted.job_ids) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        with JobStore(state) as store:
            assert store.job(submitted.job_ids[0]).state == "queued"  # durable
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        ctx.destroy(linger=0)


def test_an_address_in_use_exits_1_with_one_line(tmp_path: Path) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    holder = ctx.socket(zmq.ROUTER)
    try:
        port = holder.bind_to_random_port("tcp://127.0.0.1")
        proc = subprocess.run(
            [sys.executable, "-c", MAIN, "coordinator", "start",
             "--bind", f"tcp://127.0.0.1:{port}", "--state", str(tmp_path / "s.db"), "--insecure"],
            capture_output=True,
            timeout=30,
        )  # fmt: skip
    finally:
        holder.close(linger=0)
        ctx.term()
    assert proc.returncode == 1 and proc.stdout == b""
    err = proc.stderr.decode()
    assert "Traceback" not in err, err
    assert "Address already in use" in err.splitlines()[-1]

"""The task model and its worker process: real subprocesses, real pipes, no sleeps.

Entrypoints live in tests/mabeam/task_entrypoints.py and are imported by the workers
through PYTHONPATH. Timeouts are short (1-2 s) and every blocking task waits on an event.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest

from foundation import CodecError
from mabeam.cluster._runner import LOG_NAME, TaskProcess, partial_dir
from mabeam.cluster.task import (
    MAX_MESSAGE_BYTES,
    EntrypointError,
    EntrypointNotAllowed,
    FrameBuffer,
    Progress,
    TaskContext,
    TaskJob,
    TaskOutcome,
    check_entrypoint_allowed,
    entrypoint_allowed,
    job_from_wire,
    job_to_wire,
    load_entrypoint,
    pack_frame,
    parse_entrypoint,
)

HERE = Path(__file__).resolve().parent
CHILD_ENV = {
    "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
}


def _job(tmp_path: Path, name: str, params: dict[str, Any] | None = None) -> TaskJob:
    entrypoint = name if ":" in name else f"task_entrypoints:{name}"
    return TaskJob(entrypoint, params or {}, job_id="job-7", attempt=2, output_dir=tmp_path / "out")


def _run(
    tmp_path: Path,
    name: str,
    params: dict[str, Any] | None = None,
    *,
    timeout_s: float = 20.0,
    grace_s: float = 1.0,
    device: Any = "cpu",
    on_progress: Any = None,
) -> tuple[TaskOutcome, list[Progress]]:
    seen: list[Progress] = []

    def record(progress: Progress) -> None:
        seen.append(progress)
        if on_progress is not None:
            on_progress(progress, task)

    job = _job(tmp_path, name, params)
    with TaskProcess.start(job, device, tmp_path / "attempt", CHILD_ENV) as task:
        outcome = task.run_to_end(timeout_s, record, grace_s=grace_s)
    return outcome, seen


def _gone(pid: int) -> bool:
    """Whether ``pid`` dies within 5 s; a zombie counts (init reaps it on its own time)."""
    deadline = time.monotonic() + 5
    try:
        process = psutil.Process(pid)
        while time.monotonic() < deadline:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
            try:
                process.wait(timeout=0.05)
            except psutil.TimeoutExpired:
                continue
            return True
    except psutil.NoSuchProcess:
        return True
    return False


# ----------------------------------------------------------------------------- success


def test_progress_arrives_in_order_then_the_result(tmp_path: Path) -> None:
    progress: list[Progress] = []
    with TaskProcess.start(_job(tmp_path, "count", {"n": 5}), "cpu", tmp_path, CHILD_ENV) as task:
        outcome = task.run_to_end(20, progress.append)
        assert task.run_to_end(20) is outcome  # asking again gives the same answer
    assert outcome.ok, outcome
    assert outcome.value == 0 + 1 + 2 + 3 + 4
    assert [p.step for p in progress] == [0, 1, 2, 3, 4]
    assert progress[3].metrics == {"loss": 0.25, "tag": "s3"}
    assert outcome.kind is None and outcome.error == ""


def test_params_and_identity_round_trip(tmp_path: Path) -> None:
    # the blob is bigger than a pipe buffer: the job is written as the worker reads it
    blob = bytes(range(256)) * 1200
    params = {"lr": 0.001, "layers": [64, 32], "name": "ü", "blob": blob, "t": (1, 2)}
    outcome, _ = _run(tmp_path, "echo", params)
    assert outcome.ok, outcome
    assert outcome.value["params"] == params
    assert outcome.value["job_id"] == "job-7"
    assert outcome.value["attempt"] == 2
    assert outcome.value["device"] == "cpu"
    # the task wrote into the temporary sibling that was then published
    assert outcome.value["output_dir"] == str(partial_dir(tmp_path / "out"))
    assert outcome.output_dir == str(tmp_path / "out")


def test_the_messages_iterator_yields_progress_then_the_final_outcome(tmp_path: Path) -> None:
    with TaskProcess.start(_job(tmp_path, "count", {"n": 3}), "cpu", tmp_path, CHILD_ENV) as task:
        messages = list(task.messages(timeout=20))
        assert task.wait(timeout=20) == 0
    assert [type(m).__name__ for m in messages] == ["Progress"] * 3 + ["TaskOutcome"]
    final = messages[-1]
    assert isinstance(final, TaskOutcome) and final.ok and final.value == 3


# ----------------------------------------------------------------------------- failures


def test_an_exception_becomes_a_failure_with_the_raising_line(tmp_path: Path) -> None:
    outcome, _ = _run(tmp_path, "fail", {"lr": 0.5})
    assert not outcome.ok
    assert outcome.kind == "exception"
    assert outcome.error == "task_entrypoints:fail raised ValueError: bad learning rate 0.5"
    assert "task_entrypoints.py" in outcome.traceback
    assert "# the raising line" in outcome.traceback
    assert "mabeam/cluster/worker.py" not in outcome.traceback
    assert outcome.log_path == str(tmp_path / "attempt" / LOG_NAME)


def test_os_exit_in_the_task_is_a_crash_with_its_code(tmp_path: Path) -> None:
    outcome, progress = _run(tmp_path, "exit_hard", {"code": 3})
    assert [p.step for p in progress] == [0]
    assert outcome.kind == "crashed"
    assert outcome.exit_code == 3 and outcome.signal is None
    assert "exited with code 3 before sending a result" in outcome.error


def test_sigkill_of_the_worker_is_a_crash_naming_the_signal(tmp_path: Path) -> None:
    outcome, _ = _run(tmp_path, "kill_self")
    assert outcome.kind == "crashed"
    assert outcome.signal == signal.SIGKILL and outcome.exit_code is None
    assert "SIGKILL (9)" in outcome.error


def test_a_result_msgpack_cannot_encode_is_bad_result(tmp_path: Path) -> None:
    outcome, _ = _run(tmp_path, "unencodable")
    assert outcome.kind == "bad_result"
    assert outcome.error.startswith("result is not encodable: ")
    assert "object" in outcome.error


def test_a_result_over_the_frame_limit_is_bad_result(tmp_path: Path) -> None:
    outcome, _ = _run(tmp_path, "big", {"n": MAX_MESSAGE_BYTES + 1})
    assert outcome.kind == "bad_result"
    assert "exceeds" in outcome.error or "too" in outcome.error


@pytest.mark.parametrize(
    ("entrypoint", "expected"),
    [
        ("no_such_module_xyz:run", "cannot import module 'no_such_module_xyz'"),
        ("task_entrypoints:nope", "has no attribute 'nope'"),
        ("task_entrypoints:three_args", "must accept (params, ctx)"),
        ("task_entrypoints:not_callable", "is a int, not a function"),
    ],
)
def test_a_bad_entrypoint_fails_with_a_clear_message(
    tmp_path: Path, entrypoint: str, expected: str
) -> None:
    outcome, _ = _run(tmp_path, entrypoint)
    assert outcome.kind == "bad_entrypoint"
    assert expected in outcome.error
    assert entrypoint in outcome.error


# ----------------------------------------------------------------------------- stopping


def _run_blocked(tmp_path: Path, params: dict[str, Any], timeout_s: float, grace_s: float) -> Any:
    """Start ``block``, wait until it is blocked, then run it to its timeout."""
    with TaskProcess.start(_job(tmp_path, "block", params), "cpu", tmp_path, CHILD_ENV) as task:
        ready = task.poll(timeout=20)  # the timeout below starts once the task is blocked
        assert isinstance(ready, Progress) and ready.metrics == {"ready": True}
        return task.run_to_end(timeout_s, grace_s=grace_s)


def test_a_task_past_its_timeout_is_stopped_with_sigterm(tmp_path: Path) -> None:
    outcome = _run_blocked(tmp_path, {}, timeout_s=0.5, grace_s=5.0)
    assert outcome.kind == "timeout"
    assert outcome.error == "timed out after 0.5 s; stopped with SIGTERM"
    assert outcome.exit_code == 128 + signal.SIGTERM  # TaskTerminated unwound the task
    assert not (tmp_path / "out").exists() and not partial_dir(tmp_path / "out").exists()


def test_a_task_ignoring_sigterm_gets_sigkill_after_the_grace(tmp_path: Path) -> None:
    outcome = _run_blocked(tmp_path, {"ignore_sigterm": True}, timeout_s=0.5, grace_s=0.5)
    assert outcome.kind == "timeout"
    assert outcome.error == "timed out after 0.5 s; stopped with SIGKILL after 0.5 s grace"
    assert outcome.signal == signal.SIGKILL


def test_cancel_from_another_thread_wakes_the_runner(tmp_path: Path) -> None:
    ready = threading.Event()

    def on_progress(progress: Progress, task: TaskProcess) -> None:
        cancelling.task = task
        ready.set()

    class Canceller(threading.Thread):
        task: TaskProcess | None = None

        def run(self) -> None:
            if ready.wait(timeout=20) and self.task is not None:
                self.task.cancel()

    cancelling = Canceller()
    cancelling.start()
    outcome, _ = _run(tmp_path, "block", timeout_s=30, grace_s=5.0, on_progress=on_progress)
    cancelling.join(timeout=20)
    assert outcome.kind == "cancelled"
    assert outcome.error == "cancelled; stopped with SIGTERM"


def test_grandchildren_die_with_the_group_on_cancel(tmp_path: Path) -> None:
    pids: list[int] = []

    def on_progress(progress: Progress, task: TaskProcess) -> None:
        pids.append(progress.metrics["grandchild"])
        assert psutil.pid_exists(pids[0])
        task.cancel()

    outcome, _ = _run(tmp_path, "spawn_grandchild", {"block": True}, on_progress=on_progress)
    assert outcome.kind == "cancelled"
    assert _gone(pids[0])


def test_a_grandchild_left_behind_by_a_finished_task_is_killed(tmp_path: Path) -> None:
    outcome, _ = _run(tmp_path, "spawn_grandchild")
    assert outcome.ok
    assert _gone(outcome.value)


def test_a_worker_whose_parent_goes_away_kills_its_group(tmp_path: Path) -> None:
    job = _job(tmp_path, "spawn_grandchild", {"block": True})
    with TaskProcess.start(job, "cpu", tmp_path, CHILD_ENV) as task:
        first = task.poll(timeout=20)
        assert isinstance(first, Progress)
        assert task._stdin is not None
        task._stdin.close()  # what the kernel does when the node agent dies
        assert task.wait(timeout=20) == -signal.SIGKILL
        assert _gone(first.metrics["grandchild"])
    assert "the job pipe closed while a task was running" in (tmp_path / LOG_NAME).read_text()


# ----------------------------------------------------------------------------- isolation


def test_prints_go_to_the_log_not_the_message_stream(tmp_path: Path) -> None:
    outcome, progress = _run(tmp_path, "noisy")
    assert outcome.ok and outcome.value == "quiet result"
    assert [p.metrics for p in progress] == [{"after_print": True}]
    log = (tmp_path / "attempt" / LOG_NAME).read_text()
    assert "hello from the task stdout" in log
    assert "hello from the task stderr" in log
    assert "raw bytes on fd 1" in log


def test_the_task_stdin_is_not_the_job_pipe(tmp_path: Path) -> None:
    outcome, _ = _run(tmp_path, "read_stdin")
    assert outcome.ok and outcome.value == ""


def test_outputs_are_published_only_on_success(tmp_path: Path) -> None:
    good, _ = _run(tmp_path / "a", "write_output", {"text": "weights"})
    assert good.ok
    assert (tmp_path / "a" / "out" / "model.txt").read_text() == "weights"
    assert not partial_dir(tmp_path / "a" / "out").exists()

    bad, _ = _run(tmp_path / "b", "write_output", {"text": "weights", "fail": True})
    assert bad.kind == "exception"
    assert not (tmp_path / "b" / "out").exists()
    assert not partial_dir(tmp_path / "b" / "out").exists()


def test_the_task_sees_its_gpus_as_uuids_in_pci_order(tmp_path: Path) -> None:
    gpus = ["GPU-11111111-2222-3333-4444-555555555555", "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"]
    outcome, _ = _run(tmp_path / "gpu", "cuda_env", device=gpus)
    assert outcome.value == {
        "CUDA_VISIBLE_DEVICES": ",".join(gpus),
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "device": ",".join(gpus),
        "gpus": gpus,
    }
    cpu, _ = _run(tmp_path / "cpu", "cuda_env", device="cpu")
    assert cpu.value["CUDA_VISIBLE_DEVICES"] == ""
    assert cpu.value["device"] == "cpu" and cpu.value["gpus"] == []


def test_params_that_cannot_be_encoded_are_refused_before_spawning(tmp_path: Path) -> None:
    job = TaskJob("task_entrypoints:echo", {"x": object()}, job_id="j")
    with pytest.raises(ValueError, match="job 'j' cannot be sent to a worker"):
        TaskProcess.start(job, "cpu", tmp_path, CHILD_ENV)
    assert not (tmp_path / LOG_NAME).exists()


@contextlib.contextmanager
def pool_worker(stderr: Any = subprocess.DEVNULL) -> Iterator[subprocess.Popen[bytes]]:
    """A ``mabeam.cluster.worker --pool`` process with pipes to its stdin and stdout;
    killed, reaped and its pipes closed on the way out."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mabeam.cluster.worker", "--pool"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env={**os.environ, **CHILD_ENV},
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def seq_job(tmp_path: Path, name: str, seq: int, params: dict[str, Any] | None = None) -> bytes:
    """The job frame of ``task_entrypoints:name`` as job ``j<seq>``, callable off by ``seq``."""
    task = TaskJob(f"task_entrypoints:{name}", params or {}, job_id=f"j{seq}")
    return pack_frame(job_to_wire(task, work_dir=tmp_path / f"w{seq}", gpus=[], seq=seq))


def call_off_running(
    proc: subprocess.Popen[bytes], next_message: Callable[[], Any], frame: bytes, seq: int
) -> None:
    """Send a job that reports progress and blocks, then call it off once it runs: the
    worker must stop it as SIGTERM would (exit 143)."""
    assert proc.stdin is not None
    proc.stdin.write(frame)
    proc.stdin.flush()
    assert next_message()["t"] == "progress"
    proc.stdin.write(pack_frame({"skip": seq}))
    proc.stdin.flush()
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM


def messages_of(proc: subprocess.Popen[bytes]) -> Callable[[], Any]:
    """A function returning the pool worker's next message (20 s at most)."""
    assert proc.stdout is not None
    frames, out = FrameBuffer(), proc.stdout.fileno()
    unread: list[Any] = []

    def next_message() -> Any:
        while not unread:
            ready, _, _ = select.select([out], [], [], 20)
            assert ready, "no message from the pool worker in 20 s"
            data = os.read(out, 65536)
            assert data, f"the pool worker closed its stdout (exit {proc.poll()})"
            unread.extend(frames.feed(data))
        return unread.pop(0)

    return next_message


def test_the_pool_worker_runs_queued_jobs_in_turn_with_a_log_per_printing_task(
    tmp_path: Path,
) -> None:
    def job(name: str, job_id: str) -> bytes:
        job = TaskJob(f"task_entrypoints:{name}", {"id": job_id}, job_id=job_id)
        wire = job_to_wire(
            job, work_dir=tmp_path / f"w-{job_id}", gpus=[], log_path=tmp_path / f"{job_id}.log"
        )
        return pack_frame(wire)

    def results(frames: FrameBuffer, fd: int, n: int) -> list[Any]:
        got: list[Any] = []
        while sum(m["t"] == "result" for m in got) < n:
            ready, _, _ = select.select([fd], [], [], 20)
            assert ready, "no message from the pool worker in 20 s"
            data = os.read(fd, 65536)
            assert data, "the pool worker closed its stdout"
            got.extend(frames.feed(data))
        return [m for m in got if m["t"] == "result"]

    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as stderr, pool_worker(stderr) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        # All three at once: the worker queues what arrives while a task runs.
        proc.stdin.write(job("pid", "j1") + job("noisy", "j2") + job("echo", "j3"))
        proc.stdin.flush()
        got = results(FrameBuffer(), proc.stdout.fileno(), 3)
        proc.stdin.close()  # idle: a clean stop
        assert proc.wait(timeout=20) == 0
    assert [r["ok"] for r in got] == [True, True, True]
    assert got[0]["value"] == proc.pid and got[1]["value"] == "quiet result"
    assert got[2]["value"]["job_id"] == "j3"
    # A task that prints gets its own log; a silent one costs no file, and one that never
    # touches ctx.output_dir no directory. Raw fd writes land in the worker's own log.
    assert (tmp_path / "j2.log").read_text() == (
        "hello from the task stdout\nhello from the task stderr\n"
    )
    assert not (tmp_path / "j1.log").exists() and not (tmp_path / "j3.log").exists()
    assert not (tmp_path / "w-j1").exists() and (tmp_path / "w-j3").is_dir()
    assert "raw bytes on fd 1" in worker_log.read_text()


def test_a_pool_worker_skips_a_queued_job_called_off_and_stops_a_running_one(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)

    def job(name: str, seq: int, params: dict[str, Any] | None = None) -> bytes:
        return seq_job(tmp_path, name, seq, params)

    with pool_worker() as proc:
        assert proc.stdin is not None and proc.stdout is not None
        next_message = messages_of(proc)
        # 1 waits on the FIFO; 2 and 3 queue behind it; 2 is called off while queued.
        proc.stdin.write(job("wait_fifo", 1, {"path": str(fifo)}) + job("pid", 2) + job("pid", 3))
        proc.stdin.write(pack_frame({"skip": 2}))
        proc.stdin.flush()
        assert next_message()["t"] == "progress"  # 1 runs (and has read the call-off)
        fifo.write_text("go")
        assert next_message()["value"] == "go"
        assert next_message() == {"t": "skipped"}  # 2 never ran
        assert next_message()["value"] == proc.pid  # 3 did
        # A call-off that finds its job running stops it, as SIGTERM would.
        call_off_running(proc, next_message, job("block_pid", 4), 4)


@pytest.mark.parametrize("to", ["default", "ignore"])
def test_a_task_that_replaces_the_sigio_handler_breaks_no_later_task(
    tmp_path: Path, to: str
) -> None:
    def job(name: str, seq: int, params: dict[str, Any] | None = None) -> bytes:
        return seq_job(tmp_path, name, seq, params)

    with pool_worker() as proc:
        assert proc.stdin is not None and proc.stdout is not None
        next_message = messages_of(proc)
        proc.stdin.write(job("reset_sigio", 1, {"to": to}))
        proc.stdin.flush()
        assert next_message()["value"] == proc.pid
        # The worker is idle: the next job's SIGIO must not kill it (SIG_DFL), and a
        # call-off must still reach the running task (not SIG_IGN).
        call_off_running(proc, next_message, job("block_pid", 2), 2)


def test_a_pool_worker_takes_a_deep_backlog_of_jobs_streaming_in_while_it_runs(
    tmp_path: Path,
) -> None:
    # Jobs keep arriving while tasks run, so the SIGIO drain fires inside the worker's
    # own reads of the job pipe: every job must still come back, in order.
    n = 2000
    frames = [
        pack_frame(
            job_to_wire(
                TaskJob("task_entrypoints:pid", {}, job_id=f"j{i}"),
                work_dir=tmp_path / f"w{i}",
                gpus=[],
                log_path=tmp_path / f"j{i}.log",
            )
        )
        for i in range(n)
    ]
    pending = memoryview(b"".join(frames))
    buffer, got = FrameBuffer(), 0
    with pool_worker(subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        jobs, out = proc.stdin.fileno(), proc.stdout.fileno()
        os.set_blocking(jobs, False)
        while got < n:
            ready, writable, _ = select.select([out], [jobs] if pending else [], [], 20)
            assert ready or writable, f"the pool worker stalled after {got} of {n} results"
            if writable:
                pending = pending[os.write(jobs, pending[:4096]) :]
            if ready:
                data = os.read(out, 1 << 16)
                assert data, f"the pool worker exited after {got} of {n} results: " + (
                    proc.stderr.read().decode(errors="replace")
                )
                messages = buffer.feed(data)
                assert all(m["ok"] and m["value"] == proc.pid for m in messages)
                got += len(messages)
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0


# ----------------------------------------------------------------------------- in-process pieces


def test_parse_entrypoint_accepts_dotted_names_and_refuses_the_rest() -> None:
    assert parse_entrypoint("pkg.mod:train") == ("pkg.mod", "train")
    assert parse_entrypoint("m:Cls.run") == ("m", "Cls.run")
    for bad in ("pkg.mod", "pkg.mod:", ":f", "a b:f", "pkg:f:g", "1pkg:f", "pkg.mod.train"):
        with pytest.raises(EntrypointError, match="malformed entrypoint"):
            parse_entrypoint(bad)
    with pytest.raises(EntrypointError, match="must be a string"):
        parse_entrypoint(3)


def test_load_entrypoint_returns_the_function() -> None:
    import task_entrypoints

    assert load_entrypoint("task_entrypoints:echo") is task_entrypoints.echo
    with pytest.raises(EntrypointError, match="must accept"):
        load_entrypoint("task_entrypoints:three_args")


def test_a_checked_entrypoint_is_checked_again_once_its_function_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import task_entrypoints

    assert load_entrypoint("task_entrypoints:pid") is task_entrypoints.pid
    assert load_entrypoint("task_entrypoints:pid") is task_entrypoints.pid  # remembered
    monkeypatch.setattr(task_entrypoints, "pid", task_entrypoints.three_args)
    with pytest.raises(EntrypointError, match="must accept"):
        load_entrypoint("task_entrypoints:pid")
    monkeypatch.setattr(task_entrypoints, "pid", 42)
    with pytest.raises(EntrypointError, match="not a function"):
        load_entrypoint("task_entrypoints:pid")


def test_a_job_validates_its_fields() -> None:
    with pytest.raises(EntrypointError):
        TaskJob("nonsense", {}, job_id="j")
    with pytest.raises(TypeError, match="params must be a dict"):
        TaskJob("m:f", [], job_id="j")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attempt must be an int >= 1"):
        TaskJob("m:f", {}, job_id="j", attempt=0)


def test_report_refuses_a_bad_step_and_unencodable_metrics(tmp_path: Path) -> None:
    sent: list[bytes] = []
    ctx = TaskContext(job_id="j", attempt=1, gpus=(), output_dir=tmp_path, send=sent.append)
    ctx.report(step=2, loss=0.5)
    ctx.report(note="no step")
    assert [FrameBuffer().feed(frame)[0] for frame in sent] == [
        {"t": "progress", "step": 2, "metrics": {"loss": 0.5}},
        {"t": "progress", "step": None, "metrics": {"note": "no step"}},
    ]
    with pytest.raises(TypeError, match="step must be an int or None"):
        ctx.report(step=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="metrics are not encodable"):
        ctx.report(step=3, tensor=object())
    assert len(sent) == 2
    assert ctx.device == "cpu"


def test_a_context_makes_its_output_dir_on_first_use_from_a_str_or_a_path(
    tmp_path: Path,
) -> None:
    for given in (str(tmp_path / "a" / ".output.partial"), tmp_path / "b" / ".output.partial"):
        ctx = TaskContext(job_id="j", attempt=1, gpus=(), output_dir=given, send=print)
        assert not Path(given).exists()  # nothing until the task asks
        assert ctx.published_dir == Path(given).parent / "output"
        assert not Path(given).exists()
        made = ctx.output_dir
        assert made == Path(given) and made.is_dir() and ctx.output_dir is made
        assert str(given) in repr(ctx)


def test_the_allow_list_matches_fnmatch_patterns_and_explains_refusals() -> None:
    patterns = ["examples.*", "mylab.train:main"]
    assert entrypoint_allowed("examples.digits.train:run", patterns)
    assert entrypoint_allowed("mylab.train:main", patterns)
    assert not entrypoint_allowed("mylab.train:other", patterns)
    assert not entrypoint_allowed("os:system", [])
    assert entrypoint_allowed("anything:at_all", ["*"])
    for _ in range(2):  # a tuple (a node's own list) is answered from a cache
        assert entrypoint_allowed("examples.digits.train:run", tuple(patterns))
        assert not entrypoint_allowed("mylab.train:other", tuple(patterns))
        assert not entrypoint_allowed("os:system", ())
    check_entrypoint_allowed("examples.x:y", patterns)
    with pytest.raises(EntrypointNotAllowed) as refused:
        check_entrypoint_allowed("os:system", patterns)
    assert str(refused.value) == (
        "entrypoint 'os:system' is not allowed on this node; "
        "allowed patterns: 'examples.*', 'mylab.train:main'"
    )
    with pytest.raises(EntrypointNotAllowed, match="none \\(the list is empty\\)"):
        check_entrypoint_allowed("os:system", [])


def test_outcomes_round_trip_through_their_wire_form() -> None:
    outcomes = [
        TaskOutcome.success({"acc": 0.97}, output_dir="/o", log_path="/l"),
        TaskOutcome.failure("crashed", "worker exited", exit_code=3, log_path="/l"),
        TaskOutcome.failure("timeout", "timed out", signal=9, traceback="tb"),
    ]
    for outcome in outcomes:
        assert TaskOutcome.from_wire(outcome.to_wire()) == outcome
    with pytest.raises(ValueError, match="unknown error kind"):
        TaskOutcome.from_wire({"ok": False, "kind": "weird", "error": "", "traceback": ""})
    with pytest.raises(ValueError, match="ok: true or false"):
        TaskOutcome.from_wire({"value": 1})


def test_crash_outcomes_name_the_exit_code_or_the_signal() -> None:
    assert TaskOutcome.crashed(3).error == "worker exited with code 3 before sending a result"
    killed = TaskOutcome.crashed(-9, traceback="log tail")
    assert killed.error == "worker killed by SIGKILL (9) before sending a result"
    assert (killed.signal, killed.exit_code, killed.traceback) == (9, None, "log tail")


def test_job_frames_are_checked_field_by_field() -> None:
    job = TaskJob("m:f", {"a": 1}, job_id="j", attempt=3)
    wire = job_to_wire(job, work_dir=Path("/w"), gpus=["GPU-1"])
    assert job_from_wire(wire) == wire
    with pytest.raises(ValueError, match="unsupported job wire version"):
        job_from_wire({**wire, "v": 99})
    with pytest.raises(ValueError, match="job field 'attempt' is missing or mistyped"):
        job_from_wire({**wire, "attempt": "3"})
    with pytest.raises(ValueError, match="must list strings"):
        job_from_wire({**wire, "gpus": [0]})


def test_frames_reassemble_from_any_chunking_and_refuse_oversized_headers() -> None:
    stream = pack_frame({"a": 1}) + pack_frame([1, 2, 3]) + pack_frame("x" * 1000)
    buffer = FrameBuffer()
    got: list[Any] = []
    for i in range(0, len(stream), 7):
        got.extend(buffer.feed(stream[i : i + 7]))
    assert got == [{"a": 1}, [1, 2, 3], "x" * 1000]
    assert buffer.pending == 0
    with pytest.raises(CodecError, match="exceeds"):
        FrameBuffer().feed((MAX_MESSAGE_BYTES + 1).to_bytes(4, "big"))

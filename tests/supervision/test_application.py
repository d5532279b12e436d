"""``Application``: a named top supervisor started and stopped as a unit, signals, exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from foundation import Actor, Runtime
from foundation.testing import VirtualClock
from supervision import Application, ExitStatus, InvalidChildSpec, Supervisor, child_spec

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


class Recorder(Actor):
    """Writes its start and its terminate to a shared journal (traps exits, so
    ``terminate`` runs when its supervisor shuts it down)."""

    async def init(self, label: str, journal: list[tuple[str, str]]) -> None:
        self.trap_exits = True
        self.label = label
        self.journal = journal
        journal.append(("start", label))

    async def terminate(self, reason: Any) -> None:
        self.journal.append(("stop", self.label))


class Flaky(Actor):
    """Crashes right after every start: a restart loop that exhausts any intensity."""

    async def init(self) -> None:
        self.ref.cast("crash")

    async def handle_cast(self, msg: Any) -> None:
        raise RuntimeError("boom")


class Broken(Actor):
    async def init(self) -> None:
        raise ValueError("no database")


class Finisher(Actor):
    """Does its job and exits normally (a significant child of an auto_shutdown tree)."""

    async def init(self) -> None:
        self.ref.cast("done")

    async def handle_cast(self, msg: Any) -> None:
        self.stop("normal")


class Signaller(Actor):
    """Sends its own process a signal once started: the tree is up when it arrives."""

    async def init(self, signum: int) -> None:
        os.kill(os.getpid(), signum)


def recorders(journal: list[tuple[str, str]], *labels: str) -> list[Any]:
    return [child_spec(Recorder, label, journal, id=label) for label in labels]


async def test_an_application_starts_children_in_order_and_stops_them_in_reverse(
    runtime: Runtime,
) -> None:
    journal: list[tuple[str, str]] = []
    app = Application("shop", children=recorders(journal, "db", "cache", "web"))
    sup = await app.start()
    assert journal == [("start", "db"), ("start", "cache"), ("start", "web")]
    assert runtime.whereis("shop") == sup and app.is_running
    assert [c.id for c in await Supervisor.which_children(sup)] == ["db", "cache", "web"]
    await app.stop()
    assert journal[3:] == [("stop", "web"), ("stop", "cache"), ("stop", "db")]
    assert not sup.is_alive and not app.is_running
    assert app.exit_status == ExitStatus(0, "shutdown", "shop: stopped")


async def test_running_yields_the_top_supervisor_and_stops_the_tree_on_the_way_out(
    runtime: Runtime,
) -> None:
    journal: list[tuple[str, str]] = []
    app = Application("shop", children=recorders(journal, "a", "b"))
    with pytest.raises(LookupError):
        async with app.running() as sup:
            assert runtime.whereis("shop") == sup
            assert app.exit_status is None
            raise LookupError("the body failed")
    assert journal == [("start", "a"), ("start", "b"), ("stop", "b"), ("stop", "a")]
    assert not sup.is_alive and runtime.whereis("shop") is None
    assert app.exit_status is not None and app.exit_status.code == 0


async def test_stop_is_a_no_op_when_the_application_is_not_running(runtime: Runtime) -> None:
    app = Application("shop", children=[])
    await app.stop()
    async with app.running():
        pass
    await app.stop()
    assert app.exit_status is not None and app.exit_status.code == 0


async def test_an_application_can_run_again_after_it_stopped(runtime: Runtime) -> None:
    journal: list[tuple[str, str]] = []
    app = Application("shop", children=recorders(journal, "a"))
    async with app.running() as first:
        pass
    async with app.running() as second:
        assert second != first
        with pytest.raises(RuntimeError, match="already running"):
            await app.start()
    assert journal == [("start", "a"), ("stop", "a")] * 2


async def test_a_subclass_names_itself_and_defines_its_children(runtime: Runtime) -> None:
    journal: list[tuple[str, str]] = []

    class Shop(Application):
        name = "shop"
        strategy = "one_for_all"

        def children(self) -> list[Any]:
            return recorders(journal, "db", "web")

    async with Shop().running() as sup:
        stats = await Supervisor.statistics(sup)
        assert stats.strategy == "one_for_all" and stats.specs == 2
    assert journal == [("start", "db"), ("start", "web"), ("stop", "web"), ("stop", "db")]


async def test_the_top_supervisor_takes_the_application_flags(runtime: Runtime) -> None:
    app = Application("shop", children=[], strategy="rest_for_one", max_restarts=7, max_seconds=2.5)
    async with app.running() as sup:
        stats = await Supervisor.statistics(sup)
    assert (stats.strategy, stats.max_restarts, stats.max_seconds) == ("rest_for_one", 7, 2.5)


def test_bad_arguments_fail_when_the_application_is_made() -> None:
    with pytest.raises(TypeError, match="non-empty str"):
        Application("", children=[])
    with pytest.raises(TypeError, match="no children"):
        Application("shop")
    with pytest.raises(InvalidChildSpec, match="duplicate_child_id"):
        Application("shop", children=[child_spec(Broken, id="x"), child_spec(Flaky, id="x")])
    with pytest.raises(ValueError, match="invalid_strategy"):
        Application("shop", children=[], strategy="one_for_some")
    with pytest.raises(ValueError, match="shutdown_timeout"):
        Application("shop", children=[], shutdown_timeout=0)


async def test_a_crash_beyond_intensity_ends_serve_with_exit_code_1_and_one_line(
    runtime: Runtime, clock: VirtualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    app = Application("shop", children=[child_spec(Flaky, id="flaky")])
    code = await app.serve()
    assert code == 1
    status = app.exit_status
    assert status is not None
    assert (status.code, status.reason, status.child) == (1, "shutdown", "flaky")
    assert isinstance(status.child_reason, RuntimeError)
    expected = (
        "shop: reached max restart intensity: 3 restarts in 5 s; "
        "child 'flaky' last exited with RuntimeError: boom"
    )
    assert status.message == expected
    assert expected in capsys.readouterr().err.splitlines()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_stop_signal_ends_serve_gracefully_with_exit_code_0(
    runtime: Runtime, signum: signal.Signals
) -> None:
    journal: list[tuple[str, str]] = []
    children = [*recorders(journal, "db", "web"), child_spec(Signaller, int(signum), id="sig")]
    app = Application("shop", children=children)
    assert await app.serve() == 0
    assert journal == [("start", "db"), ("start", "web"), ("stop", "web"), ("stop", "db")]
    status = app.exit_status
    assert status == ExitStatus(0, "shutdown", f"shop: stopped by {signum.name}", signum.name)
    assert runtime.whereis("shop") is None


async def test_a_tree_that_ends_by_auto_shutdown_exits_0(runtime: Runtime) -> None:
    app = Application(
        "batch",
        children=[child_spec(Finisher, id="job", restart="transient", significant=True)],
        auto_shutdown="any_significant",
    )
    assert await app.serve() == 0
    status = app.exit_status
    assert status is not None and status.code == 0 and status.child == "job"
    assert "significant child 'job' exited" in status.message


async def test_a_killed_top_supervisor_ends_with_exit_code_1(runtime: Runtime) -> None:
    app = Application("shop", children=[])
    async with app.running() as sup:
        sup.kill()
        await runtime.monitor(sup).wait()
    status = app.exit_status
    assert status == ExitStatus(1, "killed", "shop: top supervisor exited with 'killed'")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_returns_1_and_names_the_child_when_the_tree_fails_to_start(
    backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = Application("shop", children=[child_spec(Broken, id="db")])
    assert app.run(backend=backend) == 1
    err = capsys.readouterr().err
    assert "shop: failed to start: child 'db' failed: ValueError: no database" in err


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_is_a_console_main_that_returns_1_past_the_restart_intensity(
    backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = Application("shop", children=[child_spec(Flaky, id="flaky")], max_restarts=1)
    with pytest.raises(SystemExit) as info:
        raise SystemExit(app.run(backend=backend))
    assert info.value.code == 1
    assert "shop: reached max restart intensity: 1 restarts in 5 s" in capsys.readouterr().err


SCRIPT = """
import sys

from foundation import Actor
from supervision import Application, child_spec


class Loud(Actor):
    async def init(self, label, last):
        self.trap_exits = True
        self.label = label
        print("start", label, flush=True)
        if last:
            print("ready", flush=True)

    async def terminate(self, reason):
        print("terminate", self.label, reason, flush=True)


app = Application(
    "shop",
    children=[child_spec(Loud, label, label == "c", id=label) for label in ("a", "b", "c")],
)

if __name__ == "__main__":
    raise SystemExit(app.run(backend=sys.argv[1]))
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_the_process_gracefully_with_exit_code_0(
    tmp_path: Path, signum: signal.Signals, backend: str
) -> None:
    script = tmp_path / "shop.py"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.Popen(
        [sys.executable, str(script), backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        started = []
        for line in proc.stdout:  # blocks until the child says "ready"; no sleeps
            if line.strip() == "ready":
                break
            started.append(line.strip())
        assert started == ["start a", "start b", "start c"]
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.splitlines() == [
        "terminate c shutdown",
        "terminate b shutdown",
        "terminate a shutdown",
    ]
    assert "Traceback" not in err

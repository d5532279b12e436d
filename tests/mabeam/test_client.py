"""The cluster client against a fake coordinator: a raw ZeroMQ ROUTER driven by the test.

The fake answers (or does not answer) each request exactly as the test says, so retries,
unreachable coordinators, ERROR replies, watch streams and SUBMIT chunking are checked
frame by frame. Every wait is on a socket (``Wire.receive``) under ``anyio.fail_after``.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import zmq

from foundation import Runtime
from mabeam.cluster import protocol
from mabeam.cluster._client_specs import chunks, derive_code_version, module_source
from mabeam.cluster._sockets import configure_router
from mabeam.cluster._wire import Incoming, Wire, context
from mabeam.cluster.client import (
    BadRequest,
    BadSpec,
    Client,
    ClientError,
    CoordinatorUnreachable,
    JobFailed,
    RequestRefused,
    ResultTimeout,
    Submission,
    UnknownJob,
    UnknownSweep,
    connect,
    default_address,
)
from mabeam.cluster.store import JobSpec as StoreJobSpec
from mabeam.ml.spec import parse_spec

pytestmark = pytest.mark.anyio

WAIT_S = 5.0
FAST: dict[str, Any] = {"timeout": 5.0, "retry_s": 0.05, "insecure": True}  # a fake ROUTER


class FakeCoordinator:
    """A ROUTER on a free loopback port; the test reads frames and writes replies."""

    def __init__(self) -> None:
        sock = context().socket(zmq.ROUTER)
        configure_router(sock)
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.wire = Wire(sock)
        self._queue: list[list[bytes]] = []
        self._seen: set[str] = set()

    async def next(
        self, *, skip_heartbeats: bool = True, repeat: bool = False
    ) -> tuple[bytes, protocol.Frame]:
        """The next frame from any peer. HEARTBEATs are skipped unless asked for, and so
        are re-sent requests (a request id seen before) unless ``repeat``."""
        with anyio.fail_after(WAIT_S):
            while True:
                if not self._queue:
                    self._queue.extend((await self.wire.receive()).messages)
                peer, payload = self._queue.pop(0)
                frame = protocol.decode(payload)
                if skip_heartbeats and isinstance(frame, protocol.Heartbeat):
                    continue
                request_id = getattr(frame, "request_id", None)
                if request_id is not None:
                    if request_id in self._seen and not repeat:
                        continue
                    self._seen.add(request_id)
                return peer, frame

    async def expect(self, kind: type[Any], *, repeat: bool = False) -> tuple[bytes, Any]:
        peer, frame = await self.next(repeat=repeat)
        assert isinstance(frame, kind), f"expected {kind.__name__}, got {frame!r}"
        return peer, frame

    def send(self, peer: bytes, frame: Any) -> None:
        assert self.wire.send_to(peer, protocol.encode(frame)) == "sent"

    def close(self) -> None:
        self.wire.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeCoordinator]:
    coordinator = FakeCoordinator()
    try:
        yield coordinator
    finally:
        coordinator.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def spec(n: int = 0) -> dict[str, Any]:
    return {"entrypoint": "task_entrypoints:echo", "params": {"n": n}}


# -- submit, retries, unreachable -----------------------------------------------------


async def test_submit_sends_one_submit_and_returns_the_stored_job_ids(
    fake: FakeCoordinator,
) -> None:
    async with Runtime(), connect(fake.endpoint, **FAST) as client:
        async with anyio.create_task_group() as tg:
            result: list[Submission] = []

            async def submit() -> None:
                result.append(await client.submit([spec(1), spec(2)], idempotency_key="k1"))

            tg.start_soon(submit)
            peer, frame = await fake.expect(protocol.Submit)
            assert peer.startswith(b"client-")
            assert frame.idempotency_key == "k1" and frame.sweep_id is None
            assert [s.params for s in frame.specs] == [{"n": 1}, {"n": 2}]
            assert frame.specs[0].entrypoint == "task_entrypoints:echo"
            fake.send(peer, protocol.Submitted(frame.request_id, ("j-1", "j-2"), None, False))
        assert result == [Submission(("j-1", "j-2"), None, False)]


async def test_an_unanswered_request_is_resent_with_the_same_request_id_and_key(
    fake: FakeCoordinator,
) -> None:
    async with Runtime(), connect(fake.endpoint, **FAST) as client:
        async with anyio.create_task_group() as tg:
            result: list[Submission] = []

            async def submit() -> None:
                result.append(await client.submit(spec(), idempotency_key="again"))

            tg.start_soon(submit)
            peer, first = await fake.expect(protocol.Submit)  # lost: no reply
            _, second = await fake.expect(protocol.Submit, repeat=True)
            assert second == first
            fake.send(peer, protocol.Submitted(first.request_id, ("j-7",), None, True))
            # A late second answer to the same request is dropped without harm.
            fake.send(peer, protocol.Submitted(first.request_id, ("j-7",), None, True))
        assert result == [Submission(("j-7",), None, True)]
        # The connection still serves the next request.
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.cancel, "j-7")
            peer, cancel = await fake.expect(protocol.CancelJob)
            fake.send(peer, protocol.Cancelled(cancel.request_id, "j-7", "succeeded"))


async def test_nothing_listening_raises_coordinator_unreachable_naming_the_address() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    async with (
        Runtime() as rt,
        connect(address, timeout=0.3, retry_s=0.05, insecure=True) as client,
    ):
        began = rt.clock.now()
        with pytest.raises(CoordinatorUnreachable) as info:
            await client.status()
        assert 0.3 <= rt.clock.now() - began < 3.0
    assert address in str(info.value)
    assert info.value.address == address and info.value.timeout == 0.3
    assert isinstance(info.value, ConnectionError)


async def test_a_coordinator_that_never_answers_is_unreachable_too(
    fake: FakeCoordinator,
) -> None:
    async with connect(fake.endpoint, timeout=0.3, retry_s=0.05, insecure=True) as client:
        with pytest.raises(CoordinatorUnreachable, match=fake.endpoint):
            await client.submit(spec())
    sent = []
    while fake.wire.sock.poll(0):
        sent += [protocol.decode(payload) for _, payload in (await fake.wire.receive()).messages]
    submits = [f for f in sent if isinstance(f, protocol.Submit)]
    assert len(submits) >= 2 and len({f.request_id for f in submits}) == 1


async def test_connect_starts_a_runtime_of_its_own_when_none_is_running(
    fake: FakeCoordinator,
) -> None:
    async with connect(fake.endpoint, **FAST) as client, anyio.create_task_group() as tg:
        tg.start_soon(client.cancel, "j-1")
        peer, frame = await fake.expect(protocol.CancelJob)
        fake.send(peer, protocol.Cancelled(frame.request_id, "j-1", "cancelled"))


async def test_a_malformed_address_is_one_clear_client_error() -> None:
    with pytest.raises(ClientError, match="cannot connect to 'localhost:5555'"):
        async with connect("localhost:5555"):
            pass


async def test_the_default_address_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MABEAM_COORDINATOR", raising=False)
    assert default_address() == "tcp://127.0.0.1:5555"
    monkeypatch.setenv("MABEAM_COORDINATOR", "tcp://10.0.0.1:6000")
    assert default_address() == "tcp://10.0.0.1:6000"


# -- ERROR replies --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "exc_type"),
    [("bad_spec", BadSpec), ("unknown_job", UnknownJob), ("internal", RequestRefused)],
)
async def test_an_error_reply_raises_its_client_error(
    fake: FakeCoordinator, code: str, exc_type: type[Exception]
) -> None:
    async with connect(fake.endpoint, **FAST) as client, anyio.create_task_group() as tg:
        raised: list[BaseException] = []

        async def cancel() -> None:
            try:
                await client.cancel("j-404")
            except ClientError as exc:
                raised.append(exc)

        tg.start_soon(cancel)
        peer, frame = await fake.expect(protocol.CancelJob)
        fake.send(peer, protocol.Error(code, f"the {code} message", frame.request_id))
    (exc,) = raised
    assert type(exc) is exc_type
    assert "message" in str(exc) and getattr(exc, "code", None) == code


async def test_a_spec_the_client_can_check_is_refused_before_sending(
    fake: FakeCoordinator,
) -> None:
    async with connect(fake.endpoint, **FAST) as client:
        with pytest.raises(BadSpec, match=r"specs\[1\]: spec.entrypoint"):
            await client.submit([spec(), {"entrypoint": "no-colon"}])
        with pytest.raises(BadSpec, match=r"specs\[0\]: spec: unknown key 'lr'"):
            await client.submit({"entrypoint": "a.b:c", "lr": 1})
        with pytest.raises(BadSpec, match="max_retries"):
            await client.submit(StoreJobSpec("a.b:c", max_retries=5000))
        with pytest.raises(BadSpec, match="at least one"):
            await client.submit([])
        # The first frame the coordinator ever sees is the next good request.
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.cancel, "j-1")
            peer, frame = await fake.next()
            assert isinstance(frame, protocol.CancelJob)
            fake.send(peer, protocol.Cancelled(frame.request_id, "j-1", "cancelled"))


# -- watch, result, cancel, status ----------------------------------------------------


def event(request_id: str, job: str, state: str, **fields: Any) -> protocol.Event:
    return protocol.Event(request_id=request_id, job_id=job, state=state, **fields)


async def test_watch_yields_states_and_progress_and_ends_when_all_jobs_are_terminal(
    fake: FakeCoordinator,
) -> None:
    async with connect(fake.endpoint, **FAST, heartbeat_s=0.05) as client:
        seen: list[tuple[str, str, int | None]] = []
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                async for ev in client.watch(["j-1", "j-2"]):
                    seen.append((ev.job_id, ev.state, ev.step))

            tg.start_soon(consume)
            peer, watch = await fake.expect(protocol.Watch)
            assert watch.job_ids == ("j-1", "j-2")
            rid = watch.request_id
            fake.send(peer, event(rid, "j-1", "running", attempt=1, node_id="n1"))
            fake.send(peer, event(rid, "j-2", "succeeded", attempt=1, value=5))
            # A watcher sends HEARTBEATs while its jobs run.
            heartbeat = await fake.next(skip_heartbeats=False)
            assert isinstance(heartbeat[1], protocol.Heartbeat)
            fake.send(peer, event(rid, "j-1", "running", attempt=1, step=3, metrics={"loss": 0.5}))
            # The same report again (a second WATCH of the job on the coordinator): dropped.
            fake.send(peer, event(rid, "j-1", "running", attempt=1, step=3, metrics={"loss": 0.5}))
            fake.send(peer, event(rid, "j-1", "running", attempt=1))  # restated: dropped
            fake.send(peer, event(rid, "j-9", "failed", error="not watched"))  # dropped
            fake.send(peer, event(rid, "j-1", "succeeded", attempt=1, value=7))
        assert seen == [
            ("j-1", "running", None),
            ("j-2", "succeeded", None),
            ("j-1", "running", 3),
            ("j-1", "succeeded", None),
        ]


async def test_a_watch_is_resent_until_the_first_event_and_after_hello_first(
    fake: FakeCoordinator,
) -> None:
    async with connect(fake.endpoint, **FAST) as client:
        async with anyio.create_task_group() as tg:
            states: list[str] = []

            async def consume() -> None:
                async for ev in client.watch("j-1"):
                    states.append(ev.state)

            tg.start_soon(consume)
            peer, first = await fake.expect(protocol.Watch)  # lost
            _, second = await fake.expect(protocol.Watch, repeat=True)
            assert second == first
            fake.send(peer, event(first.request_id, "j-1", "queued"))
            # The coordinator restarted and asks this peer to introduce itself again.
            fake.send(peer, protocol.Error("hello_first", "say HELLO first"))
            _, third = await fake.expect(protocol.Watch, repeat=True)
            assert third == first
            fake.send(peer, event(first.request_id, "j-1", "queued"))  # restated
            fake.send(peer, event(first.request_id, "j-1", "cancelled", error="by request"))
        assert states == ["queued", "cancelled"]


async def test_result_returns_the_value_or_raises_job_failed(fake: FakeCoordinator) -> None:
    async with connect(fake.endpoint, **FAST) as client, anyio.create_task_group() as tg:
        outcome: dict[str, Any] = {}

        async def results() -> None:
            outcome["ok"] = await client.result("j-1")
            try:
                await client.result("j-2")
            except JobFailed as exc:
                outcome["failed"] = exc

        tg.start_soon(results)
        peer, watch = await fake.expect(protocol.Watch)
        fake.send(peer, event(watch.request_id, "j-1", "succeeded", value={"accuracy": 0.9}))
        peer, watch = await fake.expect(protocol.Watch)
        trace = "Traceback (most recent call last):\n  ...\nValueError: bad lr -1\n"
        fake.send(peer, event(watch.request_id, "j-2", "failed", error=trace))
    assert outcome["ok"] == {"accuracy": 0.9}
    failed = outcome["failed"]
    assert (failed.job_id, failed.state, failed.error) == ("j-2", "failed", trace)
    assert str(failed) == "job j-2 failed: ValueError: bad lr -1"


async def test_result_with_a_timeout_raises_result_timeout(fake: FakeCoordinator) -> None:
    async with connect(fake.endpoint, **FAST) as client, anyio.create_task_group() as tg:
        raised: list[BaseException] = []

        async def wait() -> None:
            try:
                await client.result("j-1", timeout=0.2)
            except ResultTimeout as exc:
                raised.append(exc)

        tg.start_soon(wait)
        peer, watch = await fake.expect(protocol.Watch)
        fake.send(peer, event(watch.request_id, "j-1", "running"))
    assert len(raised) == 1 and isinstance(raised[0], TimeoutError)


async def test_an_error_for_a_watch_ends_it_with_that_error(fake: FakeCoordinator) -> None:
    async with connect(fake.endpoint, **FAST) as client, anyio.create_task_group() as tg:
        raised: list[BaseException] = []

        async def consume() -> None:
            try:
                async for _ in client.watch(["j-x"]):
                    pass
            except UnknownJob as exc:
                raised.append(exc)

        tg.start_soon(consume)
        peer, watch = await fake.expect(protocol.Watch)
        fake.send(peer, protocol.Error("unknown_job", "unknown job 'j-x'", watch.request_id))
    assert [str(e) for e in raised] == ["unknown job 'j-x'"]


async def test_frames_for_a_watch_whose_reader_has_gone_never_end_the_connection(
    fake: FakeCoordinator,
) -> None:
    # A watch ends on the caller's side (its reader closes the stream, then the
    # connection actor gets "unwatch") while more frames for it are on their way: a
    # duplicated terminal EVENT, the restatement of a re-sent WATCH, an ERROR. Frames
    # queued before the "unwatch" reach a closed stream; the actor must drop the watch,
    # not die (the chaos suite's submitter lost its connection that way). The frames are
    # handed to the actor as its socket reader would, ahead of the "unwatch".
    async with connect(fake.endpoint, **FAST) as client, anyio.create_task_group() as tg:
        watch = client.watch(["j-1"])
        states: list[str] = []
        ended = anyio.Event()

        async def consume() -> None:
            states.append((await watch.__anext__()).state)
            ended.set()

        tg.start_soon(consume)
        peer, frame = await fake.expect(protocol.Watch)
        fake.send(peer, event(frame.request_id, "j-1", "succeeded", attempt=1, value=3))
        with anyio.fail_after(WAIT_S):
            await ended.wait()
        assert watch._receive is not None
        watch._receive.close()  # what aclose does, before its "unwatch" is handled
        late = [event(frame.request_id, "j-1", "succeeded", attempt=1, value=3),
                protocol.Error("internal", "a late refusal", frame.request_id)]  # fmt: skip
        for item in late:
            client._conn.cast(Incoming([[protocol.encode(item)]]))
        await watch.aclose()

        async def status() -> None:
            got.append(await client.status())

        got: list[Any] = []
        tg.start_soon(status)
        peer, ask = await fake.expect(protocol.Status)
        fake.send(peer, protocol.StatusReply(ask.request_id, (), (), {}))
    assert states == ["succeeded"] and got[0].counts == {}


async def test_status_returns_nodes_jobs_and_counts(fake: FakeCoordinator) -> None:
    node = protocol.NodeInfo(
        protocol.Inventory("n1", slots=2), credit=1, running=1, last_seen_s=0.2
    )
    job = protocol.JobInfo("j-1", "running", 1, "a.b:c", node_id="n1", sweep_id="s-1")
    async with connect(fake.endpoint, **FAST) as client, anyio.create_task_group() as tg:
        got: list[Any] = []

        async def status() -> None:
            got.append(await client.status(["j-1"]))

        tg.start_soon(status)
        peer, frame = await fake.expect(protocol.Status)
        assert frame.job_ids == ("j-1",)
        fake.send(peer, protocol.StatusReply(frame.request_id, (node,), (job,), {"running": 1}))
    (status,) = got
    assert status.nodes == (node,) and status.jobs == (job,) and status.counts == {"running": 1}


async def test_watching_a_sweep_of_another_session_asks_status_for_its_jobs(
    fake: FakeCoordinator,
) -> None:
    job = protocol.JobInfo("j-1", "succeeded", 1, "a.b:c", sweep_id="s-1", value=3)
    async with connect(fake.endpoint, **FAST) as client, anyio.create_task_group() as tg:
        values: list[Any] = []

        async def consume() -> None:
            async for ev in client.watch(sweep_id="s-1"):
                values.append(ev.value)
            with pytest.raises(UnknownSweep):
                async for _ in client.watch(sweep_id="s-2"):
                    pass

        tg.start_soon(consume)
        peer, status = await fake.expect(protocol.Status)
        assert status.sweep_id == "s-1"
        fake.send(peer, protocol.StatusReply(status.request_id, (), (job,), {}))
        peer, watch = await fake.expect(protocol.Watch)
        assert watch.job_ids == ("j-1",)
        fake.send(peer, event(watch.request_id, "j-1", "succeeded", value=3))
        peer, status = await fake.expect(protocol.Status)
        fake.send(peer, protocol.StatusReply(status.request_id, (), (), {}))
    assert values == [3]


# -- chunking and sweeps --------------------------------------------------------------


async def test_more_specs_than_one_submit_carries_go_in_chunks_with_derived_keys(
    fake: FakeCoordinator,
) -> None:
    total = 125 + 250 + 500 + protocol.MAX_SPECS_PER_SUBMIT * 2 + 300
    # Decoding a 1,000-spec SUBMIT takes the fake a while: no re-sends meanwhile.
    async with (
        connect(fake.endpoint, retry_s=5.0, insecure=True) as client,
        anyio.create_task_group() as tg,
    ):
        result: list[Submission] = []

        async def submit() -> None:
            specs = [spec(i) for i in range(total)]
            result.append(await client.submit(specs, idempotency_key="big", sweep_id="s-1"))

        tg.start_soon(submit)
        keys, sizes = [], []
        for _ in range(6):
            peer, frame = await fake.expect(protocol.Submit)
            keys.append(frame.idempotency_key)
            sizes.append(len(frame.specs))
            assert frame.sweep_id == "s-1"
            first = frame.specs[0].params["n"]
            ids = tuple(f"j-{first + i}" for i in range(len(frame.specs)))
            fake.send(peer, protocol.Submitted(frame.request_id, ids, "s-1", False))
    # Small first frames (the first jobs start sooner), doubling up to the limit.
    assert sizes == [125, 250, 500, 1000, 1000, 300]
    assert keys == ["big#0", "big#125", "big#375", "big#875", "big#1875", "big#2875"]
    assert result[0].job_ids == tuple(f"j-{i}" for i in range(total))


def test_chunks_split_by_frame_size_too_and_keep_one_key_for_one_chunk() -> None:
    specs = [protocol.JobSpec("a.b:c", params={"blob": "x" * 5000}) for _ in range(300)]
    parts = chunks(specs, "k")
    assert len(parts) > 1 and sum(len(p.specs) for p in parts) == 300
    assert [p.idempotency_key for p in parts] == [f"k#{p.start}" for p in parts]
    assert all(len(protocol.encode(protocol.Submit("r", "k", p.specs))) <= 1 << 20 for p in parts)
    assert [p.idempotency_key for p in chunks(specs[:2], "k")] == ["k"]


SWEEP = """
name = "tiny sweep"
entrypoint = "task_entrypoints:echo"
max_retries = 1
[resources]
cpus = 0.5
[params]
epochs = 2
[search]
strategy = "grid"
[search.grid]
lr = [0.1, 0.2]
"""


async def test_a_sweep_is_one_job_per_trial_under_a_sweep_id_with_a_derived_code_version(
    fake: FakeCoordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    sweep = parse_spec(SWEEP)
    async with connect(fake.endpoint, **FAST) as client, anyio.create_task_group() as tg:
        result: list[Submission] = []

        async def submit() -> None:
            result.append(await client.submit(sweep))

        tg.start_soon(submit)
        peer, frame = await fake.expect(protocol.Submit)
        fake.send(peer, protocol.Submitted(frame.request_id, ("j-1", "j-2"), None, False))
    assert frame.sweep_id == frame.idempotency_key and frame.sweep_id.startswith("tiny-sweep-")
    assert [s.params for s in frame.specs] == [{"epochs": 2, "lr": 0.1}, {"epochs": 2, "lr": 0.2}]
    first = frame.specs[0]
    assert first.max_retries == 1 and first.resources.cpus == 1  # fractions round up
    assert first.code_version == derive_code_version("task_entrypoints:echo")
    assert first.code_version is not None and first.code_version.startswith("src:")
    assert result[0].sweep_id == frame.sweep_id
    # A spec that names its code version keeps it.
    pinned = dataclasses.replace(sweep, code_version="v1")
    from mabeam.cluster._client_specs import wire_specs

    assert {s.code_version for s in wire_specs(pinned)} == {"v1"}


def test_the_derived_code_version_follows_the_source_file(tmp_path: Any) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('never executed')\n")
    (package / "train.py").write_text("def train(p, c): return 1\n")
    assert module_source("pkg.train", [str(tmp_path)]) == package / "train.py"
    assert module_source("pkg.missing", [str(tmp_path)]) is None
    assert module_source("nowhere.at.all", [str(tmp_path)]) is None
    assert derive_code_version("nowhere_at_all.mod:f") is None


async def test_a_closed_client_refuses_requests_with_a_client_error(
    fake: FakeCoordinator,
) -> None:
    async with Runtime():
        async with connect(fake.endpoint, **FAST) as client:
            pass
        assert isinstance(client, Client)
        with pytest.raises(ClientError, match="closed"):
            await client.status()


async def test_a_watch_is_resent_when_the_coordinator_stays_silent(
    fake: FakeCoordinator,
) -> None:
    options = {**FAST, "heartbeat_s": 0.05, "silence_s": 0.3}
    async with connect(fake.endpoint, **options) as client, anyio.create_task_group() as tg:
        states: list[str] = []

        async def consume() -> None:
            async for ev in client.watch("j-1"):
                states.append(ev.state)

        tg.start_soon(consume)
        peer, first = await fake.expect(protocol.Watch)
        fake.send(peer, event(first.request_id, "j-1", "running", attempt=1))
        # Nothing more from the coordinator: after silence_s the client asks again.
        _, again = await fake.expect(protocol.Watch, repeat=True)
        assert again == first
        fake.send(peer, event(first.request_id, "j-1", "running", attempt=1))  # restated
        fake.send(peer, event(first.request_id, "j-1", "succeeded", attempt=1, value=1))
    assert states == ["running", "succeeded"]


async def test_connect_checks_its_timing_arguments() -> None:
    for name in ("timeout", "retry_s", "heartbeat_s", "silence_s"):
        with pytest.raises(ValueError, match=name):
            async with connect("tcp://127.0.0.1:1", **{name: 0}):
                pass


async def test_garbage_and_a_bye_from_the_coordinator_never_break_the_client(
    fake: FakeCoordinator,
) -> None:
    async with connect(fake.endpoint, **FAST) as client, anyio.create_task_group() as tg:
        states: list[str] = []

        async def consume() -> None:
            async for ev in client.watch("j-1"):
                states.append(ev.state)

        tg.start_soon(consume)
        peer, first = await fake.expect(protocol.Watch)
        fake.wire.send_to(peer, b"\xc1 not msgpack")
        fake.wire.send_to(peer, b"extra")  # a frame of an unexpected type follows
        fake.send(peer, protocol.Ack(job_id="j-1", lease="l-1"))
        fake.send(peer, event(first.request_id, "j-1", "running"))
        # The coordinator stops; the watch asks again until a coordinator answers.
        fake.send(peer, protocol.Bye(reason="coordinator stopping"))
        _, again = await fake.expect(protocol.Watch, repeat=True)
        assert again == first
        fake.send(peer, event(first.request_id, "j-1", "succeeded", value=1))
    assert states == ["running", "succeeded"]


def test_mabeam_connect_is_the_client_connect_and_loads_only_when_used() -> None:
    import subprocess
    import sys

    import mabeam

    assert mabeam.connect is connect
    probe = (
        "import sys, mabeam; print('zmq' in sys.modules, 'mabeam.cluster.client' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert out.split() == ["False", "False"]


async def test_a_request_the_protocol_cannot_carry_is_bad_request_and_never_sent(
    fake: FakeCoordinator,
) -> None:
    async with connect(fake.endpoint, **FAST) as client:
        with pytest.raises(BadRequest, match=r"CANCEL\.job_id"):
            await client.cancel("not a job id!")
        with pytest.raises(BadRequest, match=r"WATCH\.job_ids"):
            async for _ in client.watch(["-bad-"]):
                pass
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.cancel, "j-1")
            peer, frame = await fake.next()  # the first frame sent at all
            assert isinstance(frame, protocol.CancelJob) and frame.job_id == "j-1"
            fake.send(peer, protocol.Cancelled(frame.request_id, "j-1", "cancelled"))

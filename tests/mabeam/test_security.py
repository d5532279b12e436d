"""CurveZMQ on the cluster: who may connect, as what, and what a revoked key gets.

A real coordinator with allow-list directories of real key files (``mabeam keys
generate``'s code), real node agents and clients, and raw CURVE DEALERs where a test
needs to send what the real peers never would (a client key saying HELLO, a node key
submitting, a node key under another node's id). Waits are on sockets, socket monitors
and telemetry: no sleeps.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.auth
from coord_helpers import FakeNode, Peer, spec, zmq_context
from node_helpers import WAIT_S, ep, node_config, settled
from zmq.utils.monitor import recv_monitor_message

from foundation import current_runtime
from foundation.testing import until
from mabeam.cluster import protocol as p
from mabeam.cluster._allowlist import AllowList
from mabeam.cluster._allowlist import Peer as AllowedPeer
from mabeam.cluster._security import ZAP_DOMAIN, is_loopback, secure_client, secure_server
from mabeam.cluster.client import QuotaExceeded, Unauthorized, connect
from mabeam.cluster.coordinator import CoordinatorConfig, CoordinatorHandle, start_coordinator
from mabeam.cluster.keys import KeyFileError, KeyPair, generate_keys, load_key, write_keys
from mabeam.cluster.node import NodeConfig, start_node

pytestmark = pytest.mark.anyio
AUTH = ("mabeam", "coordinator", "auth")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- key files ------------------------------------------------------------------------


def test_generated_key_files_have_safe_modes_and_load_back(tmp_path: Path) -> None:
    public, secret = generate_keys(tmp_path / "k", "node", "gpu-1")
    assert (public.name, secret.name) == ("gpu-1.key", "gpu-1.key_secret")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    pair, pub = load_key(secret), load_key(public, role="node")
    assert (pair.role, pair.name, pair.public) == ("node", "gpu-1", pub.public)
    assert pair.secret is not None and pub.secret is None
    assert zmq.curve_public(pair.secret) == pair.public
    assert "secret" not in public.read_text() and "<hidden>" in repr(pair)
    # The ZPL format of czmq/pyzmq: their loader reads our files.
    assert zmq.auth.load_certificate(secret) == (pair.public, pair.secret)


def test_key_files_are_refused_with_a_clear_reason(tmp_path: Path) -> None:
    public, secret = generate_keys(tmp_path, "client", "alice")
    with pytest.raises(KeyFileError, match="exists; pass overwrite=True"):
        generate_keys(tmp_path, "client", "alice")
    os.chmod(secret, 0o644)
    with pytest.raises(KeyFileError, match=r"readable by other users .* chmod 600"):
        load_key(secret)
    with pytest.raises(KeyFileError, match="holds a client key, but a node key is needed"):
        load_key(public, role="node")
    with pytest.raises(KeyFileError, match="does not exist"):
        load_key(tmp_path / "nope.key")
    bad = tmp_path / "bad.key"
    bad.write_text('curve\n    public-key = "short"\n')
    with pytest.raises(KeyFileError, match="40 Z85 characters"):
        load_key(bad)
    bad.write_text("metadata\n    nonsense line\n")
    with pytest.raises(KeyFileError, match="line 2: expected"):
        load_key(bad)
    other = KeyPair.generate("node", "x")
    with pytest.raises(KeyFileError, match="does not belong"):
        KeyPair("node", "x", other.public, KeyPair.generate("node", "y").secret)
    with pytest.raises(KeyFileError, match="name must be"):
        KeyPair.generate("node", "has space")
    # A foreign certificate (pyzmq's, no metadata) takes the role asked for and its file name.
    foreign_public, _ = zmq.auth.create_certificates(str(tmp_path), "legacy")
    assert (load_key(foreign_public, role="node").role, load_key(foreign_public).name) == (
        "node",
        "legacy",
    )


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("tcp://127.0.0.1:5555", True),
        ("tcp://127.3.4.5:1", True),
        ("tcp://localhost:5555", True),
        ("tcp://[::1]:5555", True),
        ("ipc:///tmp/mabeam.sock", True),
        ("tcp://0.0.0.0:5555", False),
        ("tcp://*:5555", False),
        ("tcp://10.0.0.5:5555", False),
        ("tcp://gpu-box:5555", False),
        ("tcp://eth0:5555", False),
    ],
)
def test_loopback_addresses(address: str, local: bool) -> None:
    assert is_loopback(address) is local


def test_insecure_is_refused_on_a_non_loopback_address(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a loopback address: plain TCP"):
        CoordinatorConfig(bind="tcp://0.0.0.0:5555", state=tmp_path / "s.db", insecure=True)
    with pytest.raises(ValueError, match="not a loopback address"):
        NodeConfig(coordinator="tcp://10.0.0.5:5555", node_id="n1", insecure=True)
    with pytest.raises(ValueError, match="needs its CurveZMQ key pair"):
        CoordinatorConfig(bind="tcp://0.0.0.0:5555", state=tmp_path / "s.db")
    with pytest.raises(ValueError, match="needs its own key pair"):
        NodeConfig(coordinator="tcp://10.0.0.5:5555")
    coordinator, node = KeyPair.generate("coordinator", "c"), KeyPair.generate("node", "gpu-1")
    with pytest.raises(ValueError, match="differs from its key's name 'gpu-1'"):
        NodeConfig(
            coordinator="tcp://10.0.0.5:1", node_id="n2", key=node, coordinator_key=coordinator
        )
    keyed = NodeConfig(coordinator="tcp://10.0.0.5:1", key=node, coordinator_key=coordinator)
    assert keyed.node_id == "gpu-1"  # a keyed node's id is its key's name


async def test_an_insecure_client_is_refused_on_a_non_loopback_address() -> None:
    with pytest.raises(Exception, match="not a loopback address"):
        async with connect("tcp://10.0.0.5:5555", insecure=True):
            pass


# -- a secure cluster -----------------------------------------------------------------


@dataclass
class Secure:
    """A CURVE coordinator with allow-list directories, and the keys around it."""

    coord: CoordinatorHandle
    root: Path
    key: KeyPair  # the coordinator's
    ctx: zmq.Context[Any]

    @property
    def server(self) -> bytes:
        return self.key.public

    def allow(self, role: str, name: str) -> KeyPair:
        """A fresh key pair whose public file is put in the ``role`` allow-list."""
        pair = KeyPair.generate(role, name)  # type: ignore[arg-type]
        write_keys(pair, self.root / "secret" / role)
        public = self.root / "secret" / role / f"{name}.key"
        os.replace(public, self.root / f"{role}s" / f"{name}.key")
        return pair

    def revoke(self, role: str, name: str) -> None:
        (self.root / f"{role}s" / f"{name}.key").unlink()

    def peer(self, pair: KeyPair, routing_id: bytes | None = None) -> Peer:
        return Peer(self.ctx, self.coord.endpoint, routing_id, curve=(pair, self.server))

    def node_config(self, pair: KeyPair, tmp_path: Path, **overrides: Any) -> NodeConfig:
        return node_config(
            self.coord.endpoint,
            tmp_path / f"work-{pair.name}",
            node_id=pair.name,
            key=pair,
            coordinator_key=self.key.public_only(),
            **overrides,
        )


@asynccontextmanager
async def secure(tmp_path: Path, **options: Any) -> AsyncIterator[Secure]:
    root = tmp_path / "keys"
    for folder in ("nodes", "clients"):
        (root / folder).mkdir(parents=True)
    key = KeyPair.generate("coordinator", "coordinator")
    config = CoordinatorConfig(
        bind="tcp://127.0.0.1:0",
        state=tmp_path / "state.db",
        synchronous="NORMAL",
        key=key,
        allow_nodes=root / "nodes",
        allow_clients=root / "clients",
        **options,
    )
    with zmq_context() as ctx:
        async with start_coordinator(config) as coord:
            yield Secure(coord, root, key, ctx)


async def test_allowed_node_and_client_run_a_job(tmp_path: Path) -> None:
    async with secure(tmp_path) as env:
        node, client = env.allow("node", "n1"), env.allow("client", "alice")
        async with start_node(env.node_config(node, tmp_path)) as handle:
            await handle.connected.wait()
            async with connect(env.coord.endpoint, key=client, coordinator_key=env.key) as c:
                job = (await c.submit(p.JobSpec(ep("square"), {"x": 7}))).job_ids[0]
                assert (await c.result(job, timeout=WAIT_S))["y"] == 49
        stats = await env.coord.statistics()
        assert stats.handshakes_ok >= 2 and stats.handshakes_refused == 0
        assert stats.auth_refused == 0


async def test_an_unauthenticated_node_is_refused_at_the_handshake(tmp_path: Path) -> None:
    async with secure(tmp_path) as env:
        stranger = KeyPair.generate("node", "stranger")  # in no allow-list
        async with start_node(env.node_config(stranger, tmp_path)) as handle:
            await settled(handle, lambda s: s.key_refused)
            assert not handle.connected.is_set()
        stats = await env.coord.statistics()
        assert stats.handshakes_refused >= 1 and stats.nodes == ()


async def test_an_unauthenticated_client_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    async with secure(tmp_path) as env:
        stranger = KeyPair.generate("client", "mallory")
        with pytest.raises(Unauthorized, match="refused this client's key 'mallory'"):
            async with connect(env.coord.endpoint, key=stranger, coordinator_key=env.key) as c:
                await c.status()
        # A client pinning another server key never talks to this coordinator either.
        alice = env.allow("client", "alice")
        impostor_server = KeyPair.generate("coordinator", "fake")
        with pytest.raises(Exception, match="no answer from the coordinator"):
            async with connect(
                env.coord.endpoint, key=alice, coordinator_key=impostor_server, timeout=0.5
            ) as c:
                await c.status()


async def test_a_client_key_cannot_act_as_a_node(tmp_path: Path) -> None:
    async with secure(tmp_path) as env:
        alice = env.allow("client", "alice")
        fake = FakeNode(env.ctx, env.coord.endpoint, "alice", curve=(alice, env.server))
        try:
            fake.hello(credit=2)
            error = await fake.expect(p.Error)
            assert error.code == "unauthorized" and "client key 'alice' cannot send HELLO" in (
                error.message
            )
            # The real node agent with that key material, relabelled as a node key.
            as_node = KeyPair("node", "alice", alice.public, alice.secret)
            async with start_node(env.node_config(as_node, tmp_path)) as handle:
                await until(lambda: env.coord.counters.auth_refused >= 3, on=AUTH, timeout=WAIT_S)
                assert not handle.connected.is_set()
            assert (await env.coord.statistics()).nodes == ()
        finally:
            fake.close()


async def test_a_node_key_cannot_submit_nor_pose_as_another_node(tmp_path: Path) -> None:
    async with secure(tmp_path) as env:
        n1, n2 = env.allow("node", "n1"), env.allow("node", "n2")
        peer = env.peer(n1, b"n1")
        impostor: FakeNode | None = None
        try:
            peer.send(p.Submit("r1", "k1", (spec(),)))
            error = await peer.expect(p.Error)
            assert (error.code, error.in_reply_to) == ("unauthorized", "r1")
            assert "node key 'n1' cannot send SUBMIT" in error.message
            # n2's key under routing id n1 (libzmq hands the id over to the newest
            # connection: the impostor gets n1's traffic, but none of its rights).
            impostor = FakeNode(env.ctx, env.coord.endpoint, "n1", curve=(n2, env.server))
            impostor.hello(credit=1)
            error = await impostor.expect(p.Error)
            assert "node key 'n2' may only connect as node id 'n2', not 'n1'" in error.message
            stats = await env.coord.statistics()
            assert stats.nodes == () and sum(stats.jobs.values()) == 0
            # The real client API with a node's key is refused the same way.
            as_client = KeyPair("client", "n1", n1.public, n1.secret)
            with pytest.raises(Unauthorized, match="as node id 'n1', not 'client-"):
                async with connect(env.coord.endpoint, key=as_client, coordinator_key=env.key) as c:
                    await c.status()
        finally:
            peer.close()
            if impostor is not None:
                impostor.close()


async def test_a_revoked_key_is_cut_off_at_its_next_message(tmp_path: Path) -> None:
    async with secure(tmp_path) as env:
        node, alice = env.allow("node", "n1"), env.allow("client", "alice")
        async with (
            start_node(env.node_config(node, tmp_path)) as handle,
            connect(env.coord.endpoint, key=alice, coordinator_key=env.key) as client,
        ):
            await handle.connected.wait()
            assert [n.inventory.node_id for n in (await client.status()).nodes] == ["n1"]
            env.revoke("client", "alice")
            with pytest.raises(Unauthorized, match=r"not \(or no longer\) allowed"):
                await client.status()
            rt = current_runtime()
            assert rt.whereis(("node", "n1")) is not None
            env.revoke("node", "n1")  # its next HEARTBEAT is refused, its session ends
            await until(lambda: rt.whereis(("node", "n1")) is None, timeout=WAIT_S)
            assert env.coord.counters.sessions_lost == 1
            await settled(handle, lambda s: s.key_refused)  # the node knows, and says so
        assert env.coord.counters.auth_refused >= 2


async def test_each_submitter_has_its_own_quota_of_unfinished_jobs(tmp_path: Path) -> None:
    async with secure(tmp_path, max_queued_per_submitter=2) as env:  # no node: jobs wait
        alice, bob = env.allow("client", "alice"), env.allow("client", "bob")
        async with (
            connect(env.coord.endpoint, key=alice, coordinator_key=env.key) as a,
            connect(env.coord.endpoint, key=bob, coordinator_key=env.key) as b,
        ):
            held = (await a.submit([spec(), spec()])).job_ids
            with pytest.raises(QuotaExceeded, match="submitter 'alice' has 2 unfinished jobs"):
                await a.submit(spec())
            assert len((await b.submit([spec(), spec()])).job_ids) == 2
            await a.cancel(held[0])  # a queued job is cancelled at once: a place frees
            assert len((await a.submit(spec())).job_ids) == 1
        stats = await env.coord.statistics()
        assert stats.jobs.get("queued") == 4 and stats.jobs.get("cancelled") == 1


def test_without_a_zap_handler_no_curve_client_gets_in() -> None:
    """ZAP_ENFORCE_DOMAIN: a CURVE server whose context has no ZAP handler refuses every
    handshake (without it, libzmq lets any key in)."""
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        server = ctx.socket(zmq.ROUTER)
        server_key = KeyPair.generate("coordinator", "c")
        secure_server(server, server_key)
        port = server.bind_to_random_port("tcp://127.0.0.1")
        client = ctx.socket(zmq.DEALER)
        secure_client(client, KeyPair.generate("client", "a"), server_key.public)
        monitor = server.get_monitor_socket()  # the server's side of each handshake
        client.connect(f"tcp://127.0.0.1:{port}")
        client.send(b"hello")
        ends = {
            zmq.EVENT_HANDSHAKE_SUCCEEDED,
            zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
            zmq.EVENT_HANDSHAKE_FAILED_AUTH,
        }
        event = None
        while event not in ends:
            assert monitor.poll(WAIT_S * 1000), "no handshake event"
            event = recv_monitor_message(monitor)["event"]
        assert event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL  # refused: no ZAP handler
        assert not server.poll(0) and server.getsockopt_string(zmq.ZAP_DOMAIN) == ZAP_DOMAIN
        for sock in (monitor, client, server):
            sock.close(linger=0)
    finally:
        ctx.destroy(linger=0)


# -- allow-lists and the command line ---------------------------------------------------


def test_an_allow_list_reloads_and_skips_what_it_cannot_trust(tmp_path: Path) -> None:
    nodes, clients = tmp_path / "nodes", tmp_path / "clients"
    nodes.mkdir(), clients.mkdir()
    a_public, _ = generate_keys(tmp_path / "own", "node", "a")
    os.replace(a_public, nodes / "a.key")
    allow = AllowList(nodes, clients, rescan_s=1e9)
    a = load_key(nodes / "a.key")
    assert allow.lookup(a.public_text) == AllowedPeer("node", "a")
    # A stray file, a client key in the nodes dir, a key whose name is not its file's:
    # skipped (the operator names a key by its file, not its holder by its metadata).
    (nodes / "notes.key").write_text("not a key\n")
    c_public, _ = generate_keys(tmp_path / "own", "client", "c")
    os.replace(c_public, nodes / "c.key")
    twin = KeyPair.generate("node", "a")
    write_keys(twin, tmp_path / "twin")
    os.replace(tmp_path / "twin" / "a.key", nodes / "b.key")
    version = allow.version
    allow.refresh(1.0)  # the directory changed: read again, the same keys
    assert allow.version == version and allow.lookup(twin.public_text) is None
    assert allow.lookup(a.public_text) == AllowedPeer("node", "a")
    assert allow.lookup(load_key(nodes / "c.key", role="client").public_text) is None
    (nodes / "a.key").unlink()  # revoked
    assert allow.refresh(2.0) and allow.lookup(a.public_text) is None
    with pytest.raises(KeyFileError, match="is not a directory"):
        AllowList(tmp_path / "missing", None)


def test_keys_generate_on_the_command_line(tmp_path: Path, capsys: Any) -> None:
    from mabeam.cli import main

    assert (
        main(["keys", "generate", "--role", "node", "--name", "gpu-7", "--dir", str(tmp_path)]) == 0
    )
    out = capsys.readouterr().out
    assert "gpu-7.key" in out and "--allow-nodes" in out and "mode 0600" in out
    assert load_key(tmp_path / "gpu-7.key_secret").name == "gpu-7"
    again = ["keys", "generate", "--role", "node", "--name", "gpu-7", "--dir", str(tmp_path)]
    assert main(again) == 1
    assert "exists" in capsys.readouterr().err
    assert main([*again, "--force"]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bind", "tcp://0.0.0.0:5555", "--insecure"], "not a loopback address"),
        (["--bind", "tcp://127.0.0.1:0"], "needs its key (--key FILE.key_secret"),
    ],
)
def test_coordinator_start_refuses_plain_tcp_off_loopback_and_a_missing_key(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    from mabeam.cli import main

    monkeypatch.delenv("MABEAM_KEY", raising=False)
    code = main(["coordinator", "start", "--state", str(tmp_path / "s.db"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


async def test_a_killed_zap_handler_comes_back_and_the_cluster_fails_closed_meanwhile(
    tmp_path: Path,
) -> None:
    async with secure(tmp_path) as env:
        alice = env.allow("client", "alice")
        rt = current_runtime()
        for _ in range(3):  # killed (no terminate: its socket is left open) three times
            auth = rt.whereis(env.coord.names.auth)
            assert auth is not None
            gone = rt.monitor(auth)
            auth.kill()
            await gone.wait(WAIT_S)
            await until(lambda: rt.whereis(env.coord.names.router) is not None, timeout=WAIT_S)
            async with connect(env.coord.endpoint, key=alice, coordinator_key=env.key) as c:
                assert (await c.status()).nodes == ()
        stranger = KeyPair.generate("client", "mallory")
        with pytest.raises(Unauthorized):
            async with connect(env.coord.endpoint, key=stranger, coordinator_key=env.key) as c:
                await c.status()
    assert env.coord.app.shared.zmq_context is None  # destroyed when the coordinator stopped


async def test_a_revoked_nodes_session_ends_when_the_allow_list_changes(tmp_path: Path) -> None:
    """Not at its next message only: a silent node is not sent more work meanwhile."""
    async with secure(tmp_path, heartbeat_s=60.0) as env:  # no HEARTBEAT in this test
        node, alice = env.allow("node", "n1"), env.allow("client", "alice")
        fake = FakeNode(env.ctx, env.coord.endpoint, "n1", curve=(node, env.server))
        try:
            fake.hello(credit=1)
            rt = current_runtime()
            await until(lambda: rt.whereis(("node", "n1")) is not None, timeout=WAIT_S)
            env.revoke("node", "n1")
            async with connect(env.coord.endpoint, key=alice, coordinator_key=env.key) as c:
                await c.submit(spec())  # the client's SUBMIT makes the router re-read
                await until(lambda: rt.whereis(("node", "n1")) is None, timeout=WAIT_S)
            error = await fake.expect(p.Error)
            assert error.code == "unauthorized"
            await fake.quiet(0.3)  # no DISPATCH came
        finally:
            fake.close()

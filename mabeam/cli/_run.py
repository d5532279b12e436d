"""``mabeam run SPEC``: run a sweep locally, the default way (no cluster to set up).

One process embeds a coordinator (bound to 127.0.0.1 on a free port, its job store in
a fresh temporary directory unless ``--state PATH`` keeps it) and one node agent with
``--slots`` task slots (default: the number of CPUs) and this machine's GPUs, allowed
to run the spec's entrypoint only. The trials are submitted through the ordinary
client, so the run behaves as it would on a cluster: retries, timeouts, the result
cache (a kept ``--state`` file skips trials that already succeeded). The worker
processes can import modules from the current directory (it is put first on their
``PYTHONPATH``), as the spec's ``entrypoint`` usually lives there.

``mabeam demo`` runs ``examples/digits/sweep.toml`` this way.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console

import foundation

from ._options import CommandError, positive_int

__all__ = ("add_parser", "demo_spec", "run", "run_specs")

NODE_ID = "local"
CONNECT_TIMEOUT_S = 30.0
"""How long the embedded node may take to reach the embedded coordinator."""


def add_parser(commands: Any) -> None:
    """Add ``run`` to the top-level subparsers."""
    parser = commands.add_parser(
        "run",
        help="run a sweep locally (embedded coordinator and node)",
        description="Run the trials of a sweep spec on this machine: an embedded "
        "coordinator and one node agent in this process, a progress bar while it "
        "runs, and the results table, best trial first.",
    )
    parser.add_argument(
        "specs",
        metavar="SPEC",
        nargs="+",
        help="the sweep spec file (see docs/spec.md); several run at once, sharing the "
        "slots by contract net",
    )
    parser.add_argument(
        "--run-dir",
        metavar="DIR",
        default=None,
        help="record the run here for `mabeam report` (default for searches other than "
        "a single grid or random sweep: runs/NAME-TIME)",
    )
    parser.add_argument(
        "--policy",
        type=_policy,
        default="fifo",
        help="the coordinator's scheduling policy: fifo (default) or priority",
    )
    parser.add_argument(
        "--slots",
        type=positive_int,
        default=None,
        metavar="N",
        help="trials run at once (default: the number of CPUs)",
    )
    parser.add_argument(
        "--state",
        metavar="PATH",
        default=None,
        help="keep the job store in this file (default: a temporary file, removed after "
        "the run); run again with the same file to reuse finished trials",
    )


def _policy(name: str) -> str:
    """argparse type: a scheduling policy the coordinator knows."""
    try:
        from mabeam.cluster._coord_policy import POLICIES
    except ImportError:  # checked again by the coordinator's config
        return name
    if name not in POLICIES:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(sorted(POLICIES))}, got {name!r}"
        )
    return name


def run(args: argparse.Namespace) -> int:
    """Load the spec and run it locally; the exit status is 0 if every trial succeeded."""
    from mabeam.ml.spec import load_spec

    specs = [load_spec(path) for path in args.specs]
    return run_specs(
        specs, policy=args.policy, slots=args.slots, state=args.state, run_dir=args.run_dir
    )


def demo_spec() -> tuple[Path, Any]:
    """The source checkout's root and its ``examples/digits/sweep.toml``, loaded; a
    ``DemoUnavailable`` says what is missing (the examples, scikit-learn or numpy)."""
    from importlib.util import find_spec

    from mabeam.ml.spec import load_spec

    root = Path(__file__).resolve().parents[2]
    path = root / "examples" / "digits" / "sweep.toml"
    if not path.is_file():
        raise DemoUnavailable(
            f"the digits demo needs the examples/ folder of a mabeam source checkout "
            f"(looked for {path}); `mabeam demo --runtime` runs without it"
        )
    missing = [name for name in ("numpy", "sklearn") if find_spec(name) is None]
    if missing:
        raise DemoUnavailable(
            f"the digits demo needs numpy and scikit-learn ({', '.join(missing)} missing): "
            "pip install 'mabeam[examples]', or run `mabeam demo --runtime`"
        )
    return root, load_spec(path)


class DemoUnavailable(CommandError):
    """The digits demo cannot run here: its files or packages are missing."""


def run_specs(
    specs: list[Any],
    *,
    policy: str = "fifo",
    slots: int | None = None,
    state: str | os.PathLike[str] | None = None,
    import_root: Path | None = None,
    run_dir: str | os.PathLike[str] | None = None,
) -> int:
    """Run the sweeps of ``specs`` at once in an embedded coordinator and node; print the
    progress and the results; return the exit status. One plain sweep is submitted
    whole; a search (pbt, asha, ...), several specs, or a ``run_dir`` go through search
    agents that record the run. ``import_root`` (default: the current directory) is put
    first on the workers' ``PYTHONPATH``."""
    from mabeam.cluster.coordinator import CoordinatorConfig
    from mabeam.cluster.keys import KeyPair
    from mabeam.cluster.node import NodeConfig

    # CurveZMQ even on loopback, with key pairs that live only as long as this run.
    coordinator_key = KeyPair.generate("coordinator", "local-coordinator")
    node_key = KeyPair.generate("node", NODE_ID)
    client_key = KeyPair.generate("client", "local-client")
    root = (import_root or Path.cwd()).resolve()
    slots = slots or os.cpu_count() or 1
    with (
        _importable(root),
        _quiet_services(),
        tempfile.TemporaryDirectory(prefix="mabeam-run-") as scratch,
    ):
        coordinator = CoordinatorConfig(
            bind="tcp://127.0.0.1:0",
            state=Path(state) if state is not None else Path(scratch) / "jobs.db",
            policy=policy,
            # A temporary store only has to survive this process; a kept one, power loss.
            synchronous="FULL" if state is not None else "NORMAL",
            name="local-coordinator",
            key=coordinator_key,
            allow_keys=(node_key, client_key),
        )
        node = NodeConfig(
            coordinator="tcp://127.0.0.1:1",  # the real port is known once bound
            node_id=NODE_ID,
            slots=slots,
            allow=tuple(dict.fromkeys(spec.entrypoint for spec in specs)),
            work_dir=Path(scratch) / "node",
            pythonpath=(str(root),),
            key=node_key,
            coordinator_key=coordinator_key.public_only(),
        )
        searched = run_dir is not None or len(specs) > 1 or adaptive(specs[0])
        root_dir: Path | None = None
        if searched:
            from ._search_view import check_run_root, default_run_root

            root_dir = Path(run_dir) if run_dir is not None else default_run_root(specs)
            check_run_root(root_dir, specs)
        status: int = foundation.run(
            _local, specs, coordinator, node, client_key, Console(), root_dir
        )
        return status


def adaptive(spec: Any) -> bool:
    """Whether the spec's search needs an agent (anything but grid and random)."""
    return spec.search is not None and spec.search.strategy not in ("grid", "random")


@contextlib.contextmanager
def _importable(root: Path) -> Iterator[None]:
    """``root`` first on ``sys.path`` while the run lasts: the client finds the
    entrypoint's source there to derive the sweep's code version."""
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(root))


@contextlib.contextmanager
def _quiet_services() -> Iterator[None]:
    """Only errors from the embedded coordinator and node: their routine warnings (a
    node said BYE, a reconnect) are not the user's concern here, and a trial that
    failed shows in the results table."""
    loggers = [logging.getLogger(name) for name in ("mabeam.coordinator", "mabeam.node")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


async def _local(
    specs: list[Any],
    coordinator: Any,
    node_config: Any,
    client_key: Any,
    console: Console,
    run_root: Path | None,
) -> int:
    from mabeam.cluster.client import connect
    from mabeam.cluster.coordinator import start_coordinator
    from mabeam.cluster.node import start_node

    from ._search_view import run_searches
    from ._sweep_view import follow

    async with start_coordinator(coordinator) as coord:
        node_config = dataclasses.replace(node_config, coordinator=coord.endpoint)
        async with start_node(node_config) as node:
            for spec in specs:
                _check_fits(spec, node.app.setup.inventory)
            with anyio.move_on_after(CONNECT_TIMEOUT_S):
                await node.connected.wait()
            if not node.connected.is_set():
                raise CommandError(
                    f"the local node did not reach the embedded coordinator at "
                    f"{coord.endpoint} within {CONNECT_TIMEOUT_S:g} s"
                )
            kept = "kept" if coordinator.synchronous == "FULL" else "temporary"
            plural = "s" if node_config.slots != 1 else ""
            what = " and ".join(
                f"{spec.num_trials} trials of {spec.name!r}"
                + (f" ({spec.search.strategy})" if adaptive(spec) else "")
                for spec in specs
            )
            console.print(
                f"[bold]mabeam run[/]: {what} on "
                f"{node_config.slots} local slot{plural}\n  coordinator {coord.endpoint}, "
                f"job store {coordinator.state} ({kept})",
                highlight=False,
            )
            async with connect(
                coord.endpoint, key=client_key, coordinator_key=coordinator.key
            ) as client:
                if run_root is not None:
                    return await run_searches(
                        client, specs, console, run_root, slots=node_config.slots
                    )
                submission = await client.submit(specs[0])
                return await follow(client, specs[0], submission, console)


def _check_fits(spec: Any, inventory: Any) -> None:
    """``CommandError`` when one trial needs more than this machine has (its jobs would
    wait in the queue forever)."""
    need = spec.resources
    short = []
    if need.gpus > len(inventory.gpus):
        short.append(f"{need.gpus} GPUs (this machine has {len(inventory.gpus)})")
    if need.cpus > inventory.cpus:
        short.append(f"{need.cpus:g} CPUs (this machine has {inventory.cpus})")
    if inventory.ram_mb and need.memory_mb > inventory.ram_mb:
        short.append(f"{need.memory_mb} MiB of memory (this machine has {inventory.ram_mb})")
    if short:
        raise CommandError(
            f"{spec.source}: a trial needs {' and '.join(short)}; lower [resources] in the "
            "spec, or submit it to a cluster with `mabeam submit`"
        )

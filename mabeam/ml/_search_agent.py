"""``SearchAgent``: the agent that runs a search strategy against the cluster.

It asks its strategy (``mabeam.ml.strategy``) for trials while it has room, submits each
as a job through the cluster client (idempotency key ``RUN/TRIAL``, ``RUN`` fresh for
each agent unless ``run_key`` is given: a restarted agent given the same key and asking
the same deterministic strategy gets the same jobs back; trials already finished in the
store are answered by the result cache either way), follows the jobs' events through a
linked ``JobPump`` per submission, feeds progress to the strategy (``report``;
``False`` cancels the job: early stopping) and results (``tell``), and
records everything in a ``RunLog`` when it has a run directory. A PBT trial that starts
from a checkpoint gets ``params["checkpoint"]``: the ``"checkpoint"`` entry of the
result of the trial it continues (``TrialPlan.checkpoint_from``).

How many trials run at once is the agent's ``limit`` (``max_parallel``; by default the
cluster's task slots for adaptive strategies, unbounded for grid and random), or, with
an ``allocator``, one trial per slot it is awarded (``SlotAllocator``). A refused
submission fails its trials (five in a row fail the agent); a watch that ends early is
opened again (five times in a row for the same jobs fail the agent). ``wait()`` answers
once the strategy is finished and no trial runs.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from foundation import ActorRef, Caller, Exit, NoReply, current_time

from ..agents import Agent
from ..cluster._client_errors import ClientError
from ..coordination import Award, Bid, CallForProposals, VoteRequest
from ._allocator import StopProposal
from ._search_pump import JobPump, PumpDone
from ._search_types import SearchOutcome, TrialState, count_states
from ._strategy_base import metric_score
from .spec import SweepSpec
from .strategy import Strategy, TrialPlan, make_strategy

if TYPE_CHECKING:
    from ..cluster.client import Client, JobEvent
    from .runlog import RunLog

__all__ = ("SearchAgent", "SearchOutcome", "TrialState")

log = logging.getLogger("mabeam.search")

#: A watch that fails this many times in a row (coordinator gone) fails the agent.
MAX_WATCH_FAILURES: Final = 5
#: So many refused submissions in a row fail the agent (a strategy would retry forever).
MAX_SUBMIT_FAILURES: Final = 5
_UNBOUNDED: Final = frozenset({"grid", "random"})


@dataclass(frozen=True)
class _Fill:
    """Ask the strategy for as many trials as there is room for."""


class SearchAgent(Agent):
    """Drives one strategy over the cluster; see the module docstring."""

    capabilities = frozenset({"search"})

    async def start_agent(
        self,
        spec: SweepSpec,
        client: Client,
        *,
        strategy: Strategy | None = None,
        max_parallel: int | None = None,
        run_dir: str | Path | None = None,
        run_key: str | None = None,
        on_event: Callable[[TrialState], None] | None = None,
        allocator: ActorRef | None = None,
    ) -> None:
        from ..cluster._client_specs import with_code_version

        if max_parallel is not None and (type(max_parallel) is not int or max_parallel < 1):
            raise ValueError(f"max_parallel must be an int >= 1, got {max_parallel!r}")
        self.spec = spec = with_code_version(spec)
        self.client = client
        self.strategy = strategy if strategy is not None else make_strategy(spec)
        self.run_key = run_key or f"{spec.name}-{uuid.uuid4().hex[:12]}"
        self.on_event = on_event
        self.trials: dict[str, TrialState] = {}
        self.by_job: dict[str, str] = {}
        self.open: dict[str, TrialState] = {}  # submitted, not yet told: the running ones
        self.pumps: dict[Any, tuple[tuple[str, ...], int]] = {}  # pid -> jobs, failures
        self.submit_failures = 0
        self.waiters: list[Caller] = []
        self.outcome: SearchOutcome | None = None
        self.allocator = allocator  # None: the limit alone bounds the run
        self.pending: list[TrialPlan] = []  # asked, waiting for a slot award
        self.awards: dict[str, tuple[Caller, float]] = {}  # trial -> its award's caller
        self.halted: str | None = None  # why the search was stopped from outside
        if max_parallel is None and self.strategy.name not in _UNBOUNDED:
            max_parallel = await self._cluster_slots()
        self.limit = max_parallel
        self.runlog: RunLog | None = None
        self.run_dir = str(run_dir) if run_dir is not None else None
        if run_dir is not None:
            from .runlog import RunLog

            self.runlog = RunLog(run_dir)
            self.runlog.run_started(
                name=spec.name,
                strategy=self.strategy.name,
                metric=spec.metric,
                mode=spec.mode,
                spec={
                    "source": spec.source,
                    "entrypoint": spec.entrypoint,
                    # What the report leaves out of its params column: the same in
                    # every trial, or the agent's own (checkpoint, segment length).
                    "hide": sorted({*spec.params, "checkpoint", "pbt_steps"}),
                },
                agent=self.name,
            )
        self.ref.cast(_Fill())

    async def _cluster_slots(self) -> int:
        """The task slots of the connected nodes (at least 1): the default limit."""
        status = await self.client.status()
        slots = sum(node.inventory.slots for node in status.nodes)
        return max(1, slots)

    # -- messages -----------------------------------------------------------------------

    async def handle_cast(self, msg: Any) -> None:
        if isinstance(msg, _Fill):
            await self._fill()
        elif isinstance(msg, tuple) and len(msg) == 2 and msg[0] == "event":
            await self._on_event(msg[1])
        elif isinstance(msg, PumpDone):
            self.pumps.pop(msg.pump, None)
        elif isinstance(msg, tuple) and len(msg) == 3 and msg[0] == "stop_search":
            await self._halt(str(msg[1]), bool(msg[2]))
        else:
            log.warning("search agent %s: unknown message %r dropped", self.name, msg)

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        if request == "wait":
            if self.outcome is not None:
                return self.outcome
            self.waiters.append(caller)
            return NoReply
        if request == "snapshot":
            return self._snapshot()
        if isinstance(request, CallForProposals):
            return self._bid()
        if isinstance(request, Award):
            return await self._awarded(caller)
        if isinstance(request, VoteRequest):
            return self._ballot(request.proposal)
        return ValueError(f"search agent: unknown request {request!r}")

    async def handle_info(self, msg: Any) -> None:
        if isinstance(msg, Exit) and msg.pid in self.pumps:
            jobs, failures = self.pumps.pop(msg.pid)
            if msg.reason in ("normal", "shutdown"):
                return
            failures += 1
            if failures >= MAX_WATCH_FAILURES:
                raise RuntimeError(
                    f"the watch of {len(jobs)} jobs failed {failures} times in a row, last: "
                    f"{msg.reason!r}"
                )
            left = tuple(j for j in jobs if not self.trials[self.by_job[j]].terminal)
            log.warning(
                "search agent %s: a watch ended (%r); watching %d jobs again",
                self.name,
                msg.reason,
                len(left),
            )
            if left:
                await self._watch(left, failures)
            return
        await super().handle_info(msg)

    async def stop_agent(self, reason: Any) -> None:
        if self.runlog is not None:
            if self.outcome is None:
                self.runlog.note("stopped", reason=str(reason))
            self.runlog.close()

    # -- the loop -----------------------------------------------------------------------

    @property
    def running(self) -> int:
        """Trials submitted and not finished."""
        return len(self.open)

    def _room(self) -> int:
        if self.limit is None:
            return 1 << 30
        return max(0, self.limit - self.running)

    async def _fill(self) -> None:
        if self.outcome is not None:
            return
        if self.halted is None:
            if self.allocator is not None:
                self._top_up()
                if self.pending:
                    self.allocator.cast(("demand", self.name))
            else:
                room = self._room()
                plans = self.strategy.ask(room) if room > 0 else []
                if plans:
                    await self._submit(plans)
        self.set_load(float(self.running))
        idle = self.running == 0 and not self.pending
        if idle and (self.halted is not None or self.strategy.finished):
            self._finish()

    def _top_up(self) -> None:
        """Hold one planned trial for the next slot award (allocator mode)."""
        if not self.pending and self.halted is None:
            self.pending.extend(self.strategy.ask(1))

    # -- sharing the cluster: bids, awards, votes ---------------------------------------

    def _bid(self) -> Bid | None:
        """Bid for a slot while a trial is ready: priority first, then the agent that
        started fewer trials so far (the allocator takes the highest bid): equal sweeps
        take turns."""
        if self.outcome is not None:
            return None
        self._top_up()
        if not self.pending:
            return None
        return Bid(self.spec.priority * 1e6 - len(self.trials))

    async def _awarded(self, caller: Caller) -> Any:
        """A slot is ours: run one trial on it; the award is answered when it ends."""
        self._top_up()
        if not self.pending or self.outcome is not None:
            return {"trial": None}  # nothing to run after all: the slot goes back
        plan = self.pending.pop(0)
        self.awards[plan.trial_id] = (caller, current_time())
        await self._submit([plan])
        return NoReply

    def _ballot(self, proposal: Any) -> str:
        """Vote on stopping another search: yes when this one's best beats that one's
        by more than the margin, on the same metric and mode; never for itself."""
        if not isinstance(proposal, StopProposal):
            return "abstain"
        if proposal.stop == self.name:
            return "no"
        if (proposal.metric, proposal.mode) != (self.spec.metric, self.spec.mode):
            return "abstain"
        best = self.strategy.best()
        if best is None:
            return "abstain"
        sign = 1.0 if self.spec.mode == "max" else -1.0
        return "yes" if sign * (best[1] - proposal.score) > proposal.margin else "no"

    async def _halt(self, reason: str, accepted: bool) -> None:
        """A stop vote about this search ended: record it; if accepted, stop asking and
        cancel the running trials (they end as stopped, with ``reason``)."""
        if self.runlog is not None:
            self.runlog.note("stop_vote", reason=reason, accepted=accepted)
        if not accepted or self.halted is not None or self.outcome is not None:
            return
        self.halted = reason
        self.pending.clear()
        for trial in list(self.open.values()):
            if trial.stop_reason is None:
                trial.stop_reason = reason
                await self._cancel(trial)
        await self._fill()

    async def _submit(self, plans: list[TrialPlan]) -> None:
        from ..cluster._client_specs import trial_job

        try:
            specs = [trial_job(self.spec, self._params(plan)) for plan in plans]
            submission = await self.client.submit(
                specs, idempotency_key=f"{self.run_key}/{plans[0].trial_id}", sweep_id=self.run_key
            )
        except ClientError as exc:
            await self._refused(plans, exc)
            return
        self.submit_failures = 0
        for plan, job, job_id in zip(plans, specs, submission.job_ids, strict=True):
            trial = TrialState(plan, job_id)
            self.trials[plan.trial_id] = self.open[plan.trial_id] = trial
            self.by_job[job_id] = plan.trial_id
            if self.runlog is not None:
                self.runlog.trial_started(
                    plan.trial_id,
                    params=job.params,
                    job_id=job_id,
                    parent=plan.parent,
                    reason=plan.reason,
                    generation=plan.generation,
                    agent=self.name,
                )
            self._notify(trial)
        await self._watch(submission.job_ids)

    async def _refused(self, plans: list[TrialPlan], exc: ClientError) -> None:
        """The coordinator refused (or never answered) a SUBMIT: those trials fail."""
        self.submit_failures += 1
        if self.submit_failures >= MAX_SUBMIT_FAILURES:
            raise RuntimeError(
                f"{self.submit_failures} submissions in a row were refused, last: {exc}"
            )
        log.warning("search agent %s: %d trials not submitted: %s", self.name, len(plans), exc)
        for plan in plans:
            trial = TrialState(plan, "-", state="failed", error=f"not submitted: {exc}")
            self.trials[plan.trial_id] = trial
            if self.runlog is not None:
                self.runlog.trial_started(
                    plan.trial_id, params=plan.params, job_id="-", parent=plan.parent,
                    reason=plan.reason, generation=plan.generation, agent=self.name,
                )  # fmt: skip
                self.runlog.trial_finished(
                    plan.trial_id, state="failed", score=None, reason=trial.error
                )
            self.strategy.tell(plan.trial_id, None, state="failed")
            self._notify(trial)
            award = self.awards.pop(plan.trial_id, None)
            if award is not None:
                award[0].reply(
                    {"trial": plan.trial_id, "state": "failed", "awarded_at": award[1],
                     "agent": self.name}
                )  # fmt: skip

    async def _cancel(self, trial: TrialState) -> None:
        """Ask the coordinator to stop a trial's job; a refusal is logged, not fatal."""
        try:
            await self.client.cancel(trial.job_id)
        except ClientError as exc:
            log.warning("search agent %s: cancel of %s failed: %s", self.name, trial.job_id, exc)

    def _params(self, plan: TrialPlan) -> dict[str, Any]:
        params = dict(plan.params)
        if plan.checkpoint_from is not None:
            parent = self.trials.get(plan.checkpoint_from)
            value = parent.result if parent is not None else None
            ref = value.get("checkpoint") if isinstance(value, Mapping) else None
            if ref is None:
                log.warning(
                    "search agent %s: trial %s starts from %s, whose result names no "
                    "checkpoint: it starts from scratch",
                    self.name,
                    plan.trial_id,
                    plan.checkpoint_from,
                )
            params["checkpoint"] = ref
        return params

    async def _watch(self, job_ids: tuple[str, ...], failures: int = 0) -> None:
        pump = await self.spawn_link(JobPump, self.client, job_ids, self.ref)
        self.pumps[pump.pid] = (job_ids, failures)

    async def _on_event(self, event: JobEvent) -> None:
        trial_id = self.by_job.get(event.job_id)
        if trial_id is None:
            return
        trial = self.trials[trial_id]
        if trial.terminal:
            return
        if event.is_progress:
            await self._on_progress(trial, event)
            return
        trial.node_id = event.node_id or trial.node_id
        if not event.terminal:
            trial.state = event.state
            self._notify(trial)
            return
        await self._on_end(trial, event)

    async def _on_progress(self, trial: TrialState, event: JobEvent) -> None:
        assert event.step is not None
        trial.step = event.step
        score = metric_score(event.metrics, self.spec.metric)
        if score is not None:
            trial.score = score
        if self.runlog is not None:
            self.runlog.trial_progress(trial.plan.trial_id, event.step, event.metrics)
        if trial.stop_reason is None and trial.state != "stopping":
            keep = self.strategy.report(trial.plan.trial_id, event.step, event.metrics)
            if not keep:
                reason = self.strategy.stop_reason(trial.plan.trial_id) or "stopped early"
                trial.stop_reason = reason
                await self._cancel(trial)
        self._notify(trial)

    async def _on_end(self, trial: TrialState, event: JobEvent) -> None:
        tid = trial.plan.trial_id
        del self.open[tid]
        if event.state == "succeeded":
            trial.result = event.value
            value = event.value if isinstance(event.value, Mapping) else {"value": event.value}
            if self.spec.metric:
                trial.score = metric_score(value, self.spec.metric)
            if trial.stop_reason is not None:
                trial.state = "stopped"  # it finished before the cancel reached it
                self.strategy.tell(tid, None, state="stopped")
            else:
                trial.state = "succeeded"
                self.strategy.tell(tid, value)
        elif event.state == "cancelled" and trial.stop_reason is not None:
            trial.state = "stopped"
            self.strategy.tell(tid, None, state="stopped")
        else:
            trial.state = event.state
            trial.error = event.error
            self.strategy.tell(tid, None, state=event.state)
        if self.runlog is not None:
            self.runlog.trial_finished(
                tid,
                state=trial.state,
                score=trial.score,
                result=trial.result,
                reason=trial.stop_reason or trial.error,
            )
        self._notify(trial)
        award = self.awards.pop(tid, None)
        if award is not None:
            award[0].reply(
                {"trial": tid, "state": trial.state, "awarded_at": award[1], "agent": self.name}
            )
        await self._fill()

    def _notify(self, trial: TrialState) -> None:
        if self.on_event is not None:
            try:
                self.on_event(trial)
            except Exception:
                log.exception("search agent %s: on_event raised", self.name)

    def _finish(self) -> None:
        best = self.strategy.best()
        self.outcome = SearchOutcome(
            name=self.spec.name,
            strategy=self.strategy.name,
            best=best[0] if best else None,
            best_score=best[1] if best else None,
            trials=tuple(self.trials.values()),
            run_dir=self.run_dir,
        )
        if self.runlog is not None:
            self.runlog.run_finished(best=self.outcome.best)
        for caller in self.waiters:
            caller.reply(self.outcome)
        self.waiters.clear()

    def _snapshot(self) -> dict[str, Any]:
        best = self.strategy.best()
        return {
            "running": self.running,
            "counts": count_states(self.trials.values()),
            "finished": len(self.trials) - len(self.open),
            "done": self.outcome is not None,
            "metric": self.spec.metric,
            "mode": self.spec.mode,
            "best_score": best[1] if best else None,
        }

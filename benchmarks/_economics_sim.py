"""The value a scheduling policy allocates: a discrete-event simulation on virtual time.

A seeded workload (``workload``): 3 teams send GPU jobs over ``horizon_h`` hours, each
with a value per GPU-hour, 1 or 2 GPUs and a run time; together they ask for more
GPU-hours than the cluster has, so the policy's choice matters. Team ``alpha`` sends
few jobs worth a lot, ``beta`` many bulk jobs worth little, ``gamma`` a mix. The
cluster (``simulate``) is 4 nodes x 2 GPUs; nodes are listed at a reserve of 1 credit
per GPU-hour. Whenever jobs arrive or GPUs free, the policy under test (the real
``AuctionPolicy`` or ``FifoPolicy``) is asked to ``assign`` the free GPUs, as the
coordinator's scheduler asks it; no sleeps, no real cluster.

Money goes through a real ``Ledger`` (in memory), as the job store moves it: each
team's budget (credits per hour of the horizon: ``BUDGETS``, or ``TIGHT`` where the
budgets bind) is set at the start; a pick with ``terms`` holds ``terms.hold`` (a hold
the team cannot pay refuses the lease and the job goes back in line); a job that ends
settles its hold at ``terms.rate`` per hour for the hours it ran (``int(rate * held_s /
3600)``, the store's formula), and a job still running at the horizon is settled for
the hours up to it. The policy hears each team's available balance after every move
(``set_balance``) and each completion as a success of the node (its reputation).

The figure: the value (value per GPU-hour x GPUs x hours) of the work done before the
horizon. ``simulate`` checks what the store's ledger must hold: every team spent
exactly the sum of its charges (rate x hours from ``terms``), no more than its budget,
no charge above its hold, and the ledger verifies.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

try:
    from mabeam.cluster._coord_market import AuctionPolicy
    from mabeam.cluster._coord_policy import NodeCapacity, ReadyJob, SchedulingPolicy, make_policy
    from mabeam.economics import MICRO, Ledger, Overdraft
except Exception as exc:  # ImportError, or an error raised while the packages import
    raise ImportError(f"cannot import mabeam: {exc!r}") from exc

NODES: Final = 4
GPUS_PER_NODE: Final = 2
RESERVE: Final = 1.0
"""Each node's reserve, credits per GPU-hour."""

# team -> (share of the jobs, value per GPU-hour range in credits)
TEAMS: Final = {"alpha": (0.2, (8, 20)), "beta": (0.5, (1, 5)), "gamma": (0.3, (2, 14))}
BUDGETS: Final = {"alpha": 25.0, "beta": 20.0, "gamma": 30.0}
"""Credits per hour of the horizon: enough for what each team wins (alpha comes closest)."""
TIGHT: Final = {"alpha": 8.0, "beta": 8.0, "gamma": 8.0}
"""Budgets that bind: every team runs dry before the horizon."""
LOAD: Final = 1.6
"""GPU-hours asked per GPU-hour the cluster has."""


@dataclass(frozen=True, slots=True)
class SimJob:
    """One job of the workload: when it arrives, what it needs, how long it runs."""

    arrive_h: float
    job: ReadyJob
    hours: float

    @property
    def value(self) -> float:
        """Credits per GPU-hour."""
        assert self.job.value is not None
        return self.job.value


@dataclass
class Outcome:
    """What one policy did with one workload."""

    policy: str
    value: float = 0.0  # credits of value per GPU-hour x GPU-hours, within the horizon
    gpu_hours: float = 0.0
    jobs_run: int = 0
    refused: int = 0  # leases the ledger refused (the team could not pay the hold)
    budget: dict[str, int] = field(default_factory=dict)  # micro-credits
    spent: dict[str, int] = field(default_factory=dict)
    value_by_team: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "policy": self.policy,
            "value": round(self.value, 3),
            "gpu_hours": round(self.gpu_hours, 3),
            "jobs_run": self.jobs_run,
            "refused": self.refused,
            "budget": dict(self.budget),
            "spent": dict(self.spent),
            "value_by_team": {k: round(v, 3) for k, v in sorted(self.value_by_team.items())},
        }


def workload(seed: int, horizon_h: float) -> list[SimJob]:
    """Jobs arriving as a Poisson stream over ``horizon_h`` hours at ``LOAD`` times the
    cluster's GPU-hours; teams, values, sizes and run times drawn from ``seed``."""
    rng = random.Random(seed)
    names = list(TEAMS)
    shares = [TEAMS[t][0] for t in names]
    mean_gpu_hours = (0.7 * 1 + 0.3 * 2) * (0.5 + 4.0) / 2
    rate = LOAD * NODES * GPUS_PER_NODE / mean_gpu_hours  # jobs per hour
    jobs: list[SimJob] = []
    now = rng.expovariate(rate)
    while now < horizon_h:
        team = rng.choices(names, weights=shares)[0]
        low, high = TEAMS[team][1]
        hours = rng.uniform(0.5, 4.0)
        seq = len(jobs)
        job = ReadyJob(
            f"j{seq}",
            seq,
            gpus=1 if rng.random() < 0.7 else 2,
            team=team,
            value=round(rng.uniform(low, high), 2),
            timeout_s=math.ceil(hours * 1.25 * 3600),  # what the user asks for: a margin
        )
        jobs.append(SimJob(now, job, hours))
        now += rng.expovariate(rate)
    return jobs


class _Cluster:
    """Free GPUs per node, the ledger and the running jobs, on a virtual clock (hours)."""

    def __init__(
        self,
        policy: SchedulingPolicy,
        outcome: Outcome,
        horizon_h: float,
        budgets: Mapping[str, float],
    ) -> None:
        self.policy = policy
        self.out = outcome
        self.horizon_h = horizon_h
        self.now_h = 0.0
        self.free = {f"n{i}": GPUS_PER_NODE for i in range(NODES)}
        self.ledger = Ledger.open(":memory:", clock=lambda: self.now_h * 3600.0)
        # job -> (job, node, start hour, hold id, rate per hour, hold)
        self.running: dict[str, tuple[SimJob, str, float, int | None, int, int]] = {}
        self.charges: dict[str, int] = {t: 0 for t in TEAMS}
        for team in TEAMS:
            budget = round(budgets[team] * horizon_h * MICRO)
            self.ledger.set_budget(team, budget)
            outcome.budget[team] = budget
        for node in self.free:
            self.ledger.ensure_account(f"owner-{node}", "owner")
            if isinstance(policy, AuctionPolicy):
                policy.list_node(node, f"owner-{node}", RESERVE)
        self._balances()

    def _balances(self) -> None:
        if isinstance(self.policy, AuctionPolicy):
            for team in TEAMS:
                self.policy.set_balance(team, self.ledger.account(team).available)

    def dispatch(self, jobs: dict[str, SimJob], ends: list[tuple[float, int, str]]) -> None:
        """Ask the policy for the free GPUs; start what it picks (hold first)."""
        nodes = [
            NodeCapacity(n, credit=g, gpus=g, cpus=8.0 * g, memory_mb=1 << 20)
            for n, g in self.free.items()
            if g > 0
        ]
        if not nodes:
            return
        for job, node in self.policy.assign(nodes):
            terms = self.policy.terms(job.job_id)
            hold_id, rate, hold = None, 0, 0
            if terms is not None:
                try:
                    placed = self.ledger.hold(
                        terms.team, terms.hold, payee=terms.payee, job=job.job_id
                    )
                except Overdraft:  # the store refuses the lease: the job waits
                    self.out.refused += 1
                    self.policy.add(job)
                    continue
                hold_id, rate, hold = placed.hold_id, terms.rate, terms.hold
            sim = jobs[job.job_id]
            self.free[node.node_id] -= job.gpus
            self.running[job.job_id] = (sim, node.node_id, self.now_h, hold_id, rate, hold)
            heapq.heappush(ends, (self.now_h + sim.hours, job.seq, job.job_id))
        self._balances()

    def finish(self, job_id: str, at_h: float) -> None:
        """``job_id`` ends (or is cut by the horizon) at ``at_h``: count its value, settle
        its hold by the hours it ran, free its GPUs."""
        sim, node, start_h, hold_id, rate, hold = self.running.pop(job_id)
        ran_h = at_h - start_h
        gpu_hours = ran_h * sim.job.gpus
        self.out.value += sim.value * gpu_hours
        self.out.value_by_team[sim.job.team] = (
            self.out.value_by_team.get(sim.job.team, 0.0) + sim.value * gpu_hours
        )
        self.out.gpu_hours += gpu_hours
        self.out.jobs_run += 1
        self.free[node] += sim.job.gpus
        if hold_id is not None:
            held_s = ran_h * 3600.0
            charge = int(rate * held_s / 3600.0)  # the store's settle
            assert charge <= hold, f"{job_id}: charge {charge} over its hold {hold}"
            self.ledger.settle(hold_id, charge)
            self.charges[sim.job.team] += charge
        if isinstance(self.policy, AuctionPolicy):
            self.policy.reputation.record(node, True, at_h * 3600.0)

    def audit(self) -> None:
        """The ledger holds what the charges say, and nobody spent over budget."""
        self.ledger.verify()
        for team, budget in self.out.budget.items():
            account = self.ledger.account(team)
            assert account.held == 0, f"{team}: {account.held} still held"
            assert account.spent == self.charges[team], (team, account.spent, self.charges)
            assert account.spent <= budget, f"{team} spent {account.spent} of {budget}"
            assert account.available == budget - account.spent, (team, account)
            self.out.spent[team] = account.spent
        self.ledger.close()


def simulate(
    policy_name: str, jobs: list[SimJob], horizon_h: float, budgets: Mapping[str, float]
) -> Outcome:
    """Run ``jobs`` through a fresh policy named ``policy_name`` until ``horizon_h``, the
    teams holding ``budgets`` credits per hour of it."""
    now_s = [0.0]
    policy: SchedulingPolicy = (
        AuctionPolicy(clock=lambda: now_s[0])
        if policy_name == "auction"
        else make_policy(policy_name)
    )
    out = Outcome(policy_name)
    cluster = _Cluster(policy, out, horizon_h, budgets)
    by_id = {sim.job.job_id: sim for sim in jobs}
    arrivals = sorted(jobs, key=lambda sim: (sim.arrive_h, sim.job.seq))
    ends: list[tuple[float, int, str]] = []  # (end hour, seq, job)
    k = 0
    while True:
        t_arrive = arrivals[k].arrive_h if k < len(arrivals) else math.inf
        t_end = ends[0][0] if ends else math.inf
        now = min(t_arrive, t_end)
        if now >= horizon_h:
            break
        cluster.now_h = now
        now_s[0] = now * 3600.0
        while ends and ends[0][0] == now:
            cluster.finish(heapq.heappop(ends)[2], now)
        while k < len(arrivals) and arrivals[k].arrive_h == now:
            policy.add(arrivals[k].job)
            k += 1
        cluster.dispatch(by_id, ends)
    cluster.now_h = horizon_h
    for job_id in sorted(cluster.running):  # cut at the horizon: the hours so far
        cluster.finish(job_id, horizon_h)
    cluster.audit()
    return out


def compare(seeds: list[int], horizon_h: float, budgets: Mapping[str, float]) -> dict[str, Any]:
    """``auction`` and ``fifo`` on the workload of each seed: the ratio of the values
    summed over the seeds (``ratio``), the lowest and highest ratio of one seed, the
    highest share of its budget a team spent, the leases the ledger refused, and each
    seed's outcomes. The first seed's auction runs twice: ``deterministic`` if equal."""
    runs: list[dict[str, Any]] = []
    ratios: list[float] = []
    totals = {"auction": 0.0, "fifo": 0.0}
    hours = {"auction": 0.0, "fifo": 0.0}
    spent_share = 0.0
    for seed in seeds:
        jobs = workload(seed, horizon_h)
        run = {p: simulate(p, jobs, horizon_h, budgets) for p in ("auction", "fifo")}
        ratios.append(run["auction"].value / run["fifo"].value)
        for p, out in run.items():
            totals[p] += out.value
            hours[p] += out.gpu_hours
        spent = run["auction"].spent
        spent_share = max(spent_share, *(spent[t] / b for t, b in run["auction"].budget.items()))
        runs.append({"seed": seed, "jobs": len(jobs), **{p: o.as_dict() for p, o in run.items()}})
    again = simulate("auction", workload(seeds[0], horizon_h), horizon_h, budgets)
    return {
        "ratio": totals["auction"] / totals["fifo"],
        "seed_min": min(ratios),
        "seed_max": max(ratios),
        "value": totals,
        "gpu_hours": hours,
        "spent_share": spent_share,
        "refused": sum(r["auction"]["refused"] for r in runs),
        "deterministic": again.as_dict() == runs[0]["auction"],
        "runs": runs,
    }

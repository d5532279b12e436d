"""mabeam.ml: sweep specs (TOML -> typed dataclasses) and their trials.

``load_spec(path)`` reads a sweep file, ``SweepSpec.trials()`` expands its ``grid`` or
``random`` search into trials, each with a content hash of (entrypoint, params, code
version) that the cluster's result cache keys on. ``make_strategy(spec)`` builds the
search strategy a spec selects (grid, random, pbt, evolution, asha, optuna): a pure
planner of trials that a driver asks, reports progress to and tells results.
``RunLog`` records what a search run did (trials, progress, lineage) in
``DIRECTORY/run.jsonl``; ``load_run`` / ``load_runs`` read it back for ``mabeam report``.
A ``SearchAgent`` runs a strategy against the cluster; several share its slots through a
``SlotAllocator`` (contract net).
"""

from foundation._public import fixup_module_metadata

from ._allocator import SLOT_EVENT as SLOT_EVENT
from ._allocator import SlotAllocator as SlotAllocator
from ._allocator import SlotAward as SlotAward
from ._allocator import StopProposal as StopProposal
from ._search_agent import SearchAgent as SearchAgent
from ._search_types import SearchOutcome as SearchOutcome
from ._search_types import TrialState as TrialState
from .runlog import RunLog as RunLog
from .runlog import RunLogError as RunLogError
from .runlog import RunRecord as RunRecord
from .runlog import TrialRecord as TrialRecord
from .runlog import load_run as load_run
from .runlog import load_runs as load_runs
from .spec import DEFAULT_MAX_TRIALS as DEFAULT_MAX_TRIALS
from .spec import ASHASearch as ASHASearch
from .spec import Choice as Choice
from .spec import Distribution as Distribution
from .spec import EvolutionSearch as EvolutionSearch
from .spec import GridSearch as GridSearch
from .spec import IntUniform as IntUniform
from .spec import LogUniform as LogUniform
from .spec import OptunaSearch as OptunaSearch
from .spec import PBTSearch as PBTSearch
from .spec import RandomSearch as RandomSearch
from .spec import Resources as Resources
from .spec import Search as Search
from .spec import SpecError as SpecError
from .spec import SweepSpec as SweepSpec
from .spec import Trial as Trial
from .spec import Uniform as Uniform
from .spec import load_spec as load_spec
from .spec import parse_spec as parse_spec
from .spec import trial_hash as trial_hash
from .strategy import TRIAL_STATES as TRIAL_STATES
from .strategy import Strategy as Strategy
from .strategy import TrialPlan as TrialPlan
from .strategy import make_strategy as make_strategy

__all__ = (
    "SLOT_EVENT",
    "DEFAULT_MAX_TRIALS",
    "TRIAL_STATES",
    "ASHASearch",
    "Choice",
    "Distribution",
    "EvolutionSearch",
    "GridSearch",
    "IntUniform",
    "LogUniform",
    "OptunaSearch",
    "PBTSearch",
    "RandomSearch",
    "Resources",
    "RunLog",
    "RunLogError",
    "RunRecord",
    "Search",
    "SearchAgent",
    "SearchOutcome",
    "SlotAllocator",
    "SlotAward",
    "StopProposal",
    "SpecError",
    "Strategy",
    "SweepSpec",
    "Trial",
    "TrialPlan",
    "TrialRecord",
    "TrialState",
    "Uniform",
    "load_run",
    "load_runs",
    "load_spec",
    "make_strategy",
    "parse_spec",
    "trial_hash",
)

fixup_module_metadata(__name__, globals())

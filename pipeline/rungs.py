"""Successive halving on several scores at once, without Ray: rungs, the promotion rule, its state.

Asynchronous successive halving (ASHA; Li et al. 2020) judges a trial when it reaches a rung, a
fixed training step `grace * eta**k`, against the trials that reached that rung before it: it
continues when it is among the best 1/eta of them, else it stops. Ray Tune's ASHA orders them by
one scalar; MO-ASHA (Schmucker et al. 2021) orders them by several objectives at once, which is
what the paper's ranking needs (Rec down; MIG, FactorVAE score, SAP up). Here the order is one of

- `pareto`: non-dominated sorting (NSGA-II's fronts), and within a front the tie-break `mean_rank`
  (the paper's mean rank among that front's members) or `crowding` (NSGA-II's crowding distance);
- `mean_rank`: the paper's mean rank over the rung's trials.

A trial that is the p-th of the n trials at a rung (itself included) continues when
p <= ceil(n / eta): the first trial at a rung always continues, as in Ray's ASHA, whose percentile
cut-off this matches. Decisions are final: a trial that reports the same rung again (a resumed
trial) gets the decision it got the first time. `pipeline/scheduler.py` wraps this for Ray Tune;
`bench/sweep.py` replays it on recorded scores.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from tcwae.metrics import PAPER_RANKING, mean_rank_order, pareto_order

SCHEDULERS = ("fifo", "mo-asha")
SELECTIONS = ("pareto", "mean_rank")
# The scores a rung evaluation computes (`tcwae.metrics.evaluate` restricted to the fast ones),
# reported and logged as `rung/<score>`.
RUNG_SCORES = ("rec", "mig", "factor_vae", "sap")
RUNG_PREFIX = "rung/"
STEP_KEY = "step"


def rung_steps(grace: int, eta: int, steps: int) -> tuple[int, ...]:
    """The rungs below a budget of `steps`: grace, grace * eta, grace * eta**2, ... < steps."""
    if grace < 1 or eta < 2:
        raise ValueError(f"need grace >= 1 and eta >= 2, got grace={grace}, eta={eta}")
    rungs = []
    step = grace
    while step < steps:
        rungs.append(step)
        step *= eta
    return tuple(rungs)


def rung_metric(score: str) -> str:
    """The result / MLflow key of a rung score, e.g. 'rung/mig'."""
    return f"{RUNG_PREFIX}{score}"


@dataclasses.dataclass(frozen=True)
class RungCheck:
    """What a trial's rank 0 computes at each rung step: `scores` (of RUNG_SCORES) with the
    metric sizes of evaluation profile `profile`, reported and logged as `rung/<score>`."""

    steps: tuple[int, ...]
    profile: str
    scores: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class SchedulerSpec:
    """A profile's `scheduler:` block: which scheduler, its rungs and how it orders trials."""

    type: str = "fifo"
    grace: int = 1
    eta: int = 3
    rank_by: tuple[tuple[str, str], ...] = PAPER_RANKING
    selection: str = "pareto"
    tie_break: str = "mean_rank"
    rung_profile: str = "smoke"

    def rungs(self, steps: int) -> tuple[int, ...]:
        """The rung steps for a budget of `steps` (none for fifo)."""
        return rung_steps(self.grace, self.eta, steps) if self.type == "mo-asha" else ()

    def rung_check(self, steps: int) -> RungCheck | None:
        """The rung scores a trial of `steps` steps must report (None for fifo)."""
        rungs = self.rungs(steps)
        if not rungs:
            return None
        return RungCheck(rungs, self.rung_profile, tuple(score for score, _ in self.rank_by))

    def describe_order(self) -> str:
        scores = ", ".join(score for score, _ in self.rank_by)
        if self.selection == "mean_rank":
            return f"mean rank on {scores}"
        return f"Pareto fronts on {scores}, ties by {self.tie_break.replace('_', ' ')}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "grace": self.grace,
            "eta": self.eta,
            "rank_by": dict(self.rank_by),
            "selection": self.selection,
            "tie_break": self.tie_break,
            "rung_profile": self.rung_profile,
        }


def rung_order(table: Sequence[Mapping[str, float]], spec: SchedulerSpec) -> list[int]:
    """Indices of `table` (the rung's scores, in arrival order) best first, as `spec` orders."""
    if spec.selection == "mean_rank":
        return mean_rank_order(table, spec.rank_by)
    return pareto_order(table, spec.rank_by, spec.tie_break)


def kept_at_rung(arrived: int, eta: int) -> int:
    """How many of the `arrived` trials at a rung continue: the best ceil(arrived / eta)."""
    return math.ceil(arrived / eta)


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the scheduler decided for one trial at one rung, and why."""

    trial_id: str
    step: int
    rung: int  # 1-based
    rungs: int
    position: int  # 1-based among `arrived`
    arrived: int
    kept: int
    proceed: bool
    order: str

    def reason(self) -> str:
        verdict = "continues" if self.proceed else "stopped"
        return (
            f"{verdict} at rung {self.rung} of {self.rungs} (step {self.step}): "
            f"{_ordinal(self.position)} of {self.arrived} trials at this rung by {self.order}; "
            f"the best {self.kept} continue"
        )


class SuccessiveHalving:
    """The rungs of one sweep: the scores each trial brought to each rung (in arrival order) and
    the decisions. `judge` is the whole algorithm; `state` / `from_state` round-trip it as plain
    data (for Tune's experiment checkpoint)."""

    def __init__(self, spec: SchedulerSpec, steps: int) -> None:
        self.spec = spec
        self.steps = steps
        self.rungs = spec.rungs(steps)
        self.arrivals: dict[int, list[tuple[str, dict[str, float]]]] = {r: [] for r in self.rungs}
        self.decisions: dict[str, list[Decision]] = {}

    def judge(self, trial_id: str, step: int, scores: Mapping[str, float]) -> Decision | None:
        """The decision for `trial_id` reaching `step` with these rung scores; None when `step`
        is not a rung. A rung the trial already reached gets its earlier decision."""
        if step not in self.arrivals:
            return None
        for earlier in self.decisions.get(trial_id, []):
            if earlier.step == step:
                return earlier
        arrivals = self.arrivals[step]
        arrivals.append((trial_id, {key: float(value) for key, value in scores.items()}))
        order = rung_order([entry for _, entry in arrivals], self.spec)
        position = order.index(len(arrivals) - 1) + 1
        kept = kept_at_rung(len(arrivals), self.spec.eta)
        decision = Decision(
            trial_id=trial_id,
            step=step,
            rung=self.rungs.index(step) + 1,
            rungs=len(self.rungs),
            position=position,
            arrived=len(arrivals),
            kept=kept,
            proceed=position <= kept,
            order=self.spec.describe_order(),
        )
        self.decisions.setdefault(trial_id, []).append(decision)
        return decision

    def stopped(self, trial_id: str) -> Decision | None:
        """The decision that stopped `trial_id`, or None if it was never stopped."""
        for decision in self.decisions.get(trial_id, []):
            if not decision.proceed:
                return decision
        return None

    def state(self) -> dict[str, Any]:
        return {
            "spec": dataclasses.asdict(self.spec),
            "steps": self.steps,
            "arrivals": {
                step: [list(entry) for entry in rows] for step, rows in self.arrivals.items()
            },
            "decisions": {
                trial: [dataclasses.asdict(d) for d in made]
                for trial, made in self.decisions.items()
            },
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SuccessiveHalving:
        spec = dict(state["spec"])
        spec["rank_by"] = tuple(tuple(pair) for pair in spec["rank_by"])
        halving = cls(SchedulerSpec(**spec), state["steps"])
        halving.arrivals = {
            int(step): [(trial, dict(scores)) for trial, scores in rows]
            for step, rows in state["arrivals"].items()
        }
        halving.decisions = {
            trial: [Decision(**d) for d in made] for trial, made in state["decisions"].items()
        }
        return halving


def _ordinal(number: int) -> str:
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{'th' if 10 <= number % 100 <= 20 else suffix}"

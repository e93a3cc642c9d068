"""Multi-objective successive halving without Ray: rungs, the promotion rule and its state.

A trial reaching a rung (step `grace * eta**k`) is ranked against the trials that reached it
before (asynchronous, as ASHA; Li et al. 2020), or, with `synchronous`, against every trial that
can reach it (Jamieson and Talwalkar 2016); the best ceil(n / eta) continue. Trials are ordered on
several scores at once (MO-ASHA; Schmucker et al. 2021): by Pareto fronts with a `mean_rank` or
`crowding` tie-break, or by the paper's mean rank. The first trial at an asynchronous rung always
continues, as in Ray's ASHA. Decisions are final: a resumed trial gets its first decision again.
`pipeline.search.tune_scheduler` wraps this for Ray Tune; `bench/sweep.py` replays it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from tcwae.metrics import PAPER_RANKING, mean_rank_order, pareto_order

SCHEDULERS = ("fifo", "mo-asha")
SELECTIONS = ("pareto", "mean_rank")
# The fast scores a rung evaluation computes, reported and logged as `rung/<score>`.
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
    return f"{RUNG_PREFIX}{score}"


@dataclasses.dataclass(frozen=True)
class RungCheck:
    """What a trial's rank 0 scores at each rung step, with evaluation profile `profile`."""

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
    synchronous: bool = False

    def rungs(self, steps: int) -> tuple[int, ...]:
        return rung_steps(self.grace, self.eta, steps) if self.type == "mo-asha" else ()

    def rung_check(self, steps: int) -> RungCheck | None:
        rungs = self.rungs(steps)
        scores = tuple(score for score, _ in self.rank_by)
        return RungCheck(rungs, self.rung_profile, scores) if rungs else None

    def describe_order(self) -> str:
        scores = ", ".join(score for score, _ in self.rank_by)
        if self.selection == "mean_rank":
            return f"mean rank on {scores}"
        return f"Pareto fronts on {scores}, ties by {self.tie_break.replace('_', ' ')}"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "rank_by": dict(self.rank_by)}


def rung_order(table: Sequence[Mapping[str, float]], spec: SchedulerSpec) -> list[int]:
    """Indices of `table` (a rung's scores in arrival order), best first."""
    if spec.selection == "mean_rank":
        return mean_rank_order(table, spec.rank_by)
    return pareto_order(table, spec.rank_by, spec.tie_break)


def kept_at_rung(arrived: int, eta: int) -> int:
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
    """One sweep's rungs: each rung's arrivals (trial, scores) in order, and the decisions;
    `state` / `from_state` round-trip it as plain data for Tune's experiment checkpoint."""

    def __init__(self, spec: SchedulerSpec, steps: int, trials: int | None = None) -> None:
        if spec.synchronous and trials is None:
            raise ValueError("synchronous successive halving needs the sweep's number of trials")
        self.spec = spec
        self.steps = steps
        self.trials = trials
        self.rungs = spec.rungs(steps)
        self.arrivals: dict[int, list[tuple[str, dict[str, float]]]] = {r: [] for r in self.rungs}
        self.decisions: dict[str, list[Decision]] = {}
        self.ended: list[str] = []  # trials that ended on their own (errors), synchronous only
        self.closed: list[int] = []  # synchronous rungs that have decided

    def judge(self, trial_id: str, step: int, scores: Mapping[str, float]) -> Decision | None:
        """Asynchronous: the decision for `trial_id` reaching `step`; None off the rungs."""
        decisions = self.arrive(trial_id, step, scores)
        return decisions[0] if decisions else None

    def arrive(self, trial_id: str, step: int, scores: Mapping[str, float]) -> list[Decision]:
        """The decisions `trial_id` reaching `step` settles: its own when asynchronous; when
        synchronous none until the rung's last trial comes, then all of the rung's."""
        if step not in self.arrivals:
            return []
        earlier = self.decision_at(trial_id, step)
        if earlier is not None:
            return [earlier]
        arrivals = self.arrivals[step]
        if trial_id not in self.arrived(step):
            arrivals.append((trial_id, {key: float(value) for key, value in scores.items()}))
        if self.spec.synchronous:
            return self._close_ready()
        order = rung_order([entry for _, entry in arrivals], self.spec)
        return [self._decide(trial_id, step, order.index(len(arrivals) - 1) + 1, len(arrivals))]

    def end(self, trial_id: str) -> list[Decision]:
        """Synchronous: `trial_id` ended on its own; the rungs stop waiting for it."""
        if not self.spec.synchronous or trial_id in self.ended:
            return []
        self.ended.append(trial_id)
        return self._close_ready()

    def release(self) -> list[Decision]:
        """Synchronous: decide the lowest waiting rung with the trials it has (no more come)."""
        rung = next((r for r in self.rungs if r not in self.closed and self.arrivals[r]), None)
        return [] if rung is None or not self.spec.synchronous else self._close(rung)

    def waiting(self, trial_id: str) -> bool:
        """Synchronous: `trial_id` has reached a rung that has not decided yet."""
        open_rungs = (rung for rung in self.rungs if rung not in self.closed)
        return self.spec.synchronous and any(trial_id in self.arrived(r) for r in open_rungs)

    def arrived(self, step: int) -> list[str]:
        return [trial for trial, _ in self.arrivals[step]]

    def decision_at(self, trial_id: str, step: int) -> Decision | None:
        return next((d for d in self.decisions.get(trial_id, []) if d.step == step), None)

    def _expected(self, index: int) -> int:
        """How many trials can still reach rung `index` (0-based) that have not yet."""
        step = self.rungs[index]
        arrived = set(self.arrived(step))
        if index == 0:
            gone = {trial for trial in self.ended if trial not in arrived}
            return self.trials - len(arrived) - len(gone)
        before = self.rungs[index - 1]
        promoted = {t for t in self.arrived(before) if self.decision_at(t, before).proceed}
        return len(promoted - arrived - set(self.ended))

    def _close_ready(self) -> list[Decision]:
        settled: list[Decision] = []
        for index, step in enumerate(self.rungs):
            if step in self.closed:
                continue
            if not self.arrivals[step] or self._expected(index) > 0:
                break
            settled.extend(self._close(step))
        return settled

    def _close(self, step: int) -> list[Decision]:
        self.closed.append(step)
        arrivals = self.arrivals[step]
        order = rung_order([entry for _, entry in arrivals], self.spec)
        return [
            self._decide(trial_id, step, order.index(index) + 1, len(arrivals))
            for index, (trial_id, _) in enumerate(arrivals)
        ]

    def _decide(self, trial_id: str, step: int, position: int, arrived: int) -> Decision:
        kept, rung = kept_at_rung(arrived, self.spec.eta), self.rungs.index(step) + 1
        order = self.spec.describe_order()
        decision = Decision(
            trial_id, step, rung, len(self.rungs), position, arrived, kept, position <= kept, order
        )
        self.decisions.setdefault(trial_id, []).append(decision)
        return decision

    def stopped(self, trial_id: str) -> Decision | None:
        """The decision that stopped `trial_id`, or None."""
        return next((d for d in self.decisions.get(trial_id, []) if not d.proceed), None)

    def state(self) -> dict[str, Any]:
        return {
            "spec": dataclasses.asdict(self.spec),
            "steps": self.steps,
            "trials": self.trials,
            "ended": list(self.ended),
            "closed": list(self.closed),
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
        halving = cls(SchedulerSpec(**spec), state["steps"], state.get("trials"))
        halving.ended = list(state.get("ended", []))
        halving.closed = [int(step) for step in state.get("closed", [])]
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

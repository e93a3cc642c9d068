"""Multi-objective successive halving as a Ray Tune scheduler (MO-ASHA; see `pipeline.rungs`).

`MultiObjectiveAsha` reads the `rung/<score>` values a trial reports at a rung step and answers
CONTINUE or STOP by `pipeline.rungs.SuccessiveHalving`. Ray Tune 2.60 saves the searcher and the
callbacks with the experiment but never calls a scheduler's `save` / `restore`, so
`SchedulerCallback` carries the scheduler's state in the experiment checkpoint (saved at the same
moment as the trials' states, restored before they are re-queued): after `Tuner.restore` the
scheduler remembers every rung and decision, and a resumed trial that reports a rung again gets
its first decision. The callback also hands every stopped trial to `on_stop` (the sweep marks its
MLflow run there). `PruningOptunaSearch` tells Optuna that such a trial was pruned.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from typing import Any

from ray.tune import Callback
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from pipeline.rungs import STEP_KEY, Decision, SchedulerSpec, SuccessiveHalving, rung_metric

StopHandler = Callable[[str, Decision], None]


class MultiObjectiveAsha(FIFOScheduler):
    """Asynchronous successive halving on the spec's `rank_by` scores; trials run in FIFO order.

    A result is judged when it carries a rung step (`step`) and every `rung/<score>`; every other
    result continues. Results are never buffered, so each rung report is judged as it comes."""

    _supports_buffered_results = False

    def __init__(self, spec: SchedulerSpec, steps: int) -> None:
        super().__init__()
        self.halving = SuccessiveHalving(spec, steps)

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Tune passes the searcher's metric and mode; this scheduler uses its own scores."""
        return True

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        scores = rung_scores(result, self.halving.spec)
        if scores is None:
            return TrialScheduler.CONTINUE
        decision = self.halving.judge(trial.trial_id, int(result[STEP_KEY]), scores)
        if decision is None or decision.proceed:
            return TrialScheduler.CONTINUE
        return TrialScheduler.STOP

    def debug_string(self) -> str:
        stopped = sum(1 for trial in self.halving.decisions if self.halving.stopped(trial))
        rungs = ", ".join(f"{step}: {len(rows)}" for step, rows in self.halving.arrivals.items())
        return f"MO-ASHA: {stopped} stopped; trials at rungs {rungs or 'none'}"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.halving.state(), handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.halving = SuccessiveHalving.from_state(pickle.load(handle))


def rung_scores(result: Mapping[str, Any], spec: SchedulerSpec) -> dict[str, float] | None:
    """The `rank_by` scores of a rung report, or None when `result` is not one."""
    keys = {score: rung_metric(score) for score, _ in spec.rank_by}
    if STEP_KEY not in result or not all(key in result for key in keys.values()):
        return None
    return {score: float(result[key]) for score, key in keys.items()}


class SchedulerCallback(Callback):
    """Keeps `scheduler`'s state in Tune's experiment checkpoint and reports stopped trials."""

    def __init__(self, scheduler: MultiObjectiveAsha, on_stop: StopHandler | None = None) -> None:
        self.scheduler = scheduler
        self.on_stop = on_stop

    def get_state(self) -> dict[str, Any]:
        return {"halving": self.scheduler.halving.state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.scheduler.halving = SuccessiveHalving.from_state(state["halving"])

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        decision = self.scheduler.halving.stopped(trial.trial_id)
        if decision is not None and self.on_stop is not None:
            self.on_stop(trial.trial_id, decision)


class PruningOptunaSearch(OptunaSearch):
    """OptunaSearch that records a multi-objective trial stopped before its final scores as
    PRUNED. Ray's OptunaSearch prunes such a trial only for a single objective: with several it
    tells Optuna a list of None, Optuna refuses it, and the trial stays RUNNING in the study."""

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        if result and not error and any(result.get(metric) is None for metric in metrics):
            result = None  # OptunaSearch tells PRUNED for a trial without a result
        super().on_trial_complete(trial_id, result=result, error=error)

"""Multi-objective successive halving as a Ray Tune scheduler (MO-ASHA; see `successive_halving`).

`MultiObjectiveAsha` reads the `rung/<score>` values a trial reports at a rung step and answers
CONTINUE or STOP by `SuccessiveHalving`. Ray Tune 2.60 saves the searcher and the callbacks with
the experiment but never calls a scheduler's `save` / `restore`, so `SchedulerCallback` carries the
scheduler's state in the experiment checkpoint (saved at the same moment as the trials' states,
restored before they are re-queued): after `Tuner.restore` the scheduler remembers every rung and
decision, and a resumed trial that reports a rung again gets its first decision. The callback also
hands every stopped trial to `on_stop` (the sweep marks its MLflow run there).
`PruningOptunaSearch` tells Optuna that such a trial was pruned.

With a synchronous spec a trial that reaches a rung before the others is PAUSED (Tune saves it and
frees its workers; its Ray Train run resumes from the checkpoint it wrote at the rung step when
Tune restarts it). When the rung's last trial arrives the scheduler stops the paused losers and
hands the paused winners back to Tune, at most `max_concurrent` running at once. Tune's own
concurrency limit counts a paused trial as running, which would leave every slot to trials that
wait; `RungConcurrencyLimiter` does not count them.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from pipeline.search.successive_halving import (
    STEP_KEY,
    Decision,
    SchedulerSpec,
    SuccessiveHalving,
    rung_metric,
)

StopHandler = Callable[[str, Decision], None]
# Told every decision as it is made, with the sweep's trials (whose configs name them).
DecisionHandler = Callable[[list[Decision], list[Trial]], None]


class MultiObjectiveAsha(FIFOScheduler):
    """Successive halving on the spec's `rank_by` scores (asynchronous, or synchronous when the
    spec says so); trials start in FIFO order.

    A result is judged when it carries a rung step (`step`) and every `rung/<score>`; every other
    result continues. Results are never buffered, so each rung report is judged as it comes."""

    _supports_buffered_results = False

    def __init__(
        self,
        spec: SchedulerSpec,
        steps: int,
        trials: int | None = None,
        max_concurrent: int = 1,
        on_decisions: DecisionHandler | None = None,
    ) -> None:
        super().__init__()
        self.halving = SuccessiveHalving(spec, steps, trials if spec.synchronous else None)
        self.max_concurrent = max_concurrent
        self.on_decisions = on_decisions
        self.paused: set[str] = set()  # trials this scheduler paused that have not run again

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Tune passes the searcher's metric and mode; this scheduler uses its own scores."""
        return True

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if self.halving.waiting(trial.trial_id):
            # A trial restarted by --resume while its rung waits goes back to waiting.
            return self._pause(tune_controller, trial.trial_id)
        if self.halving.stopped(trial.trial_id) is not None:
            return TrialScheduler.STOP  # restarted by --resume after its rung stopped it
        scores = reported_rung_scores(result, self.halving.spec)
        if scores is None:
            return TrialScheduler.CONTINUE
        step = int(result[STEP_KEY])
        self._settle(tune_controller, self.halving.arrive(trial.trial_id, step, scores))
        own = self.halving.decision_at(trial.trial_id, step)
        if own is None:
            return self._pause(tune_controller, trial.trial_id)
        return TrialScheduler.CONTINUE if own.proceed else TrialScheduler.STOP

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._ended(tune_controller, trial.trial_id)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._ended(tune_controller, trial.trial_id)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._ended(tune_controller, trial.trial_id)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """A pending trial first; else a paused trial its rung promoted, while fewer than
        `max_concurrent` trials run; never one that waits at a rung."""
        trials = tune_controller.get_trials()
        for trial in trials:
            if trial.status == Trial.PENDING and not self.halving.waiting(trial.trial_id):
                return trial
        running = sum(trial.status == Trial.RUNNING for trial in trials)
        paused = [trial for trial in trials if trial.status == Trial.PAUSED]
        if paused and not running and tune_controller.search_alg.is_finished():
            # Every trial there will be waits at a rung that still expects more: decide it.
            self._settle(tune_controller, self.halving.release())
        for trial in paused:
            if running < self.max_concurrent and not self.halving.waiting(trial.trial_id):
                self._set_paused(tune_controller, self.paused - {trial.trial_id})
                return trial
        return None

    def _ended(self, tune_controller: Any, trial_id: str) -> None:
        if self.halving.stopped(trial_id) is None:
            self._settle(tune_controller, self.halving.end(trial_id))
        self._set_paused(tune_controller, self.paused - {trial_id})

    def _pause(self, tune_controller: Any, trial_id: str) -> str:
        self._set_paused(tune_controller, self.paused | {trial_id})
        return TrialScheduler.PAUSE

    def _settle(self, tune_controller: Any, decisions: list[Decision]) -> None:
        """Stop the waiting trials that `decisions` stop; promoted ones wait for
        `choose_trial_to_run`. A running one (the trial being judged, or one that --resume
        restarted) gets STOP at its next result."""
        if decisions and self.on_decisions is not None:
            self.on_decisions(decisions, tune_controller.get_trials())
        losers = {d.trial_id for d in decisions if not d.proceed}
        if not self.halving.spec.synchronous or not losers:
            return
        for trial in tune_controller.get_trials():
            if trial.trial_id in losers and trial.status in (Trial.PAUSED, Trial.PENDING):
                tune_controller.stop_trial(trial)

    def _set_paused(self, tune_controller: Any, paused: set[str]) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        limiter = getattr(tune_controller.search_alg, "searcher", None)
        if isinstance(limiter, RungConcurrencyLimiter):
            limiter.parked = set(paused)

    def debug_string(self) -> str:
        stopped = sum(1 for trial in self.halving.decisions if self.halving.stopped(trial))
        rungs = ", ".join(f"{step}: {len(rows)}" for step, rows in self.halving.arrivals.items())
        waiting = f", {len(self.paused)} paused" if self.halving.spec.synchronous else ""
        return f"MO-ASHA: {stopped} stopped{waiting}; trials at rungs {rungs or 'none'}"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.halving.state(), handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.halving = SuccessiveHalving.from_state(pickle.load(handle))


class RungConcurrencyLimiter(ConcurrencyLimiter):
    """Tune's ConcurrencyLimiter, less the trials that `MultiObjectiveAsha` paused at a rung
    (`parked`, which the scheduler keeps current): those hold no workers, and counting them would
    leave no slot for the trials the rung is waiting for."""

    def __init__(self, searcher: Searcher, max_concurrent: int) -> None:
        super().__init__(searcher, max_concurrent)
        self.parked: set[str] = set()

    def suggest(self, trial_id: str) -> dict | None:
        if not self._limit_concurrency:
            return self.searcher.suggest(trial_id)
        if len(self.live_trials - self.parked) >= self.max_concurrent:
            return None
        suggestion = self.searcher.suggest(trial_id)
        if suggestion not in (None, Searcher.FINISHED):
            self.live_trials.add(trial_id)
            self.num_unfinished_live_trials += 1
        return suggestion

    def get_state(self) -> dict:
        """`parked` is not saved: after --resume the scheduler pauses waiting trials afresh."""
        state = super().get_state()
        state.pop("parked", None)
        return state


def reported_rung_scores(result: Mapping[str, Any], spec: SchedulerSpec) -> dict[str, float] | None:
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

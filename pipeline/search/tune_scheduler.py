"""MO-ASHA as a Ray Tune scheduler: `MultiObjectiveAsha` answers CONTINUE, STOP or PAUSE by
`successive_halving.SuccessiveHalving` from the `rung/<score>` values a trial reports.

Ray Tune 2.60 never calls a scheduler's `save` / `restore`, so `SchedulerCallback` keeps its state
in the experiment checkpoint (after `Tuner.restore` a resumed trial gets its first decision) and
hands each stopped trial to `on_stop`; `PruningOptunaSearch` tells Optuna such a trial was pruned.
A synchronous rung PAUSES early arrivals (they resume from their rung checkpoint) and runs the
promoted ones again at most `max_concurrent` at once; `RungConcurrencyLimiter` does not count
paused trials, which Tune's limiter would count as running.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
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


class MultiObjectiveAsha(FIFOScheduler):
    """Successive halving on the spec's `rank_by` scores; trials start in FIFO order. A result
    with a `step` and every `rung/<score>` is judged as it comes (never buffered)."""

    _supports_buffered_results = False

    def __init__(
        self,
        spec: SchedulerSpec,
        steps: int,
        trials: int | None = None,
        max_concurrent: int = 1,
        on_decisions: Callable[[list[Decision], list[Trial]], None] | None = None,
    ) -> None:
        super().__init__()
        self.halving = SuccessiveHalving(spec, steps, trials if spec.synchronous else None)
        self.max_concurrent = max_concurrent
        self.on_decisions = on_decisions
        self.paused: set[str] = set()  # trials this scheduler paused that have not run again

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """The searcher's metric and mode: this scheduler uses its own scores."""
        return True

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if self.halving.waiting(trial.trial_id):
            # A trial restarted by --resume while its rung waits goes back to waiting.
            return self._pause(tune_controller, trial.trial_id)
        if self.halving.stopped(trial.trial_id) is not None:
            return TrialScheduler.STOP  # restarted by --resume after its rung stopped it
        keys = [(score, rung_metric(score)) for score, _ in self.halving.spec.rank_by]
        if STEP_KEY not in result or any(key not in result for _, key in keys):
            return TrialScheduler.CONTINUE  # not a rung report
        scores = {score: float(result[key]) for score, key in keys}
        step = int(result[STEP_KEY])
        self._settle(tune_controller, self.halving.arrive(trial.trial_id, step, scores))
        own = self.halving.decision_at(trial.trial_id, step)
        if own is None:
            return self._pause(tune_controller, trial.trial_id)
        return TrialScheduler.CONTINUE if own.proceed else TrialScheduler.STOP

    def on_trial_remove(self, tune_controller: Any, trial: Any, result: dict | None = None) -> None:
        if self.halving.stopped(trial.trial_id) is None:
            self._settle(tune_controller, self.halving.end(trial.trial_id))
        self._set_paused(tune_controller, self.paused - {trial.trial_id})

    on_trial_complete = on_trial_error = on_trial_remove

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

    def _pause(self, tune_controller: Any, trial_id: str) -> str:
        self._set_paused(tune_controller, self.paused | {trial_id})
        return TrialScheduler.PAUSE

    def _settle(self, tune_controller: Any, decisions: list[Decision]) -> None:
        """Stop the waiting trials that `decisions` stop (a running one gets STOP at its next
        result); promoted ones wait for `choose_trial_to_run`."""
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
    """Tune's ConcurrencyLimiter, not counting the trials paused at a rung (`parked`, kept by
    `MultiObjectiveAsha`): they hold no workers, and the rung waits for the others."""

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


class SchedulerCallback(Callback):
    """Keeps `scheduler`'s state in Tune's experiment checkpoint and reports stopped trials."""

    def __init__(
        self, scheduler: MultiObjectiveAsha, on_stop: Callable[[str, Decision], None] | None = None
    ) -> None:
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
    """OptunaSearch that records a stopped multi-objective trial as PRUNED (Ray's tells Optuna
    a list of None, which Optuna refuses, leaving the trial RUNNING)."""

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        if result and not error and any(result.get(metric) is None for metric in metrics):
            result = None  # OptunaSearch tells PRUNED for a trial without a result
        super().on_trial_complete(trial_id, result=result, error=error)

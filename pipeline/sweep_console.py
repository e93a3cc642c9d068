"""What a person watching a sweep sees: a line per trial report, rung decision and trial end;
with --verbose also Tune's trial table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import tune
from ray.tune import CLIReporter

from pipeline import cluster
from pipeline.metric_keys import PROGRESS_KEY
from pipeline.report_ranking import METHOD_HYPERPARAMETERS
from pipeline.search.successive_halving import Decision
from tcwae.metrics import PAPER_SCORES

TUNE_RESOURCE_LINE = "Logical resource usage"


class SweepTable(CLIReporter):
    """Tune's trial table with chosen metric columns; Tune's resource line, which counts only the
    trials' one-byte drivers ('0/2 CPUs' while two trials train), replaced by the real one."""

    def __init__(self, columns: Mapping[str, str], every_s: int) -> None:
        super().__init__(metric_columns=dict(columns), max_report_frequency=every_s)

    def report(self, trials: list[Any], done: bool, *sys_info: str) -> None:
        kept = [line for line in sys_info if not line.startswith(TUNE_RESOURCE_LINE)]
        super().report(trials, done, *kept, cluster.resources_in_use())


class ProgressLines(tune.Callback):
    """One line per trial report (the worker's progress line), and one when a trial ends."""

    def __init__(self, prog: str) -> None:
        self.prog = prog

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info):
        line = result.get(PROGRESS_KEY)
        if line:
            self._say(trial, line)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info):
        last = trial.last_result or {}
        scores = ", ".join(f"{key} {last[key]:.4g}" for key in PAPER_SCORES if key in last)
        self._say(trial, f"finished: {scores}" if scores else "stopped at its rung, not ranked")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info):
        self._say(trial, "failed (its MLflow run holds the error)")

    def _say(self, trial: Any, text: str) -> None:
        print(f"{self.prog}: {trial.trial_id} {trial_label(trial.config)}: {text}", flush=True)


class RungLines:
    """The scheduler's decisions, a line a trial a rung, best first, each once (a trial resumed at
    its rung is told again)."""

    def __init__(self, prog: str) -> None:
        self.prog = prog
        self.told: set[tuple[str, int]] = set()

    def __call__(self, decisions: list[Decision], trials: list[Any]) -> None:
        configs = {trial.trial_id: trial.config for trial in trials}
        for decision in sorted(decisions, key=lambda d: (d.step, d.position)):
            if (decision.trial_id, decision.step) not in self.told:
                self.told.add((decision.trial_id, decision.step))
                label = trial_label(configs.get(decision.trial_id, {}))
                print(f"{self.prog}: {decision.trial_id} {label}: {decision.reason()}", flush=True)


def trial_label(config: Mapping[str, Any]) -> str:
    """'tcwae_mws beta=10 gamma=5 seed=0': a trial's method, its hyper-parameters and seed."""
    method = config.get("method", "?")
    names = METHOD_HYPERPARAMETERS.get(method, ())
    values = [f"{name}={config[name]:g}" for name in names if name in config]
    return " ".join([method, *values, f"seed={config.get('seed', '?')}"])

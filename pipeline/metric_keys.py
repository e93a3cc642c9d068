"""Names of what a training run reports, for the worker that logs them and the modules that read
them back. Plain strings, so reading a key imports no torch, Ray or MLflow; the final scores keep
`tcwae`'s names (`tcwae.metrics.SCORES`, `tcwae.sequence_eval.SEQUENCE_SCORES`).
"""

from __future__ import annotations

from collections.abc import Mapping

TRAIN_PREFIX = "train/"
LOSS_METRIC = f"{TRAIN_PREFIX}loss"
REC_CURVE_METRIC = f"{TRAIN_PREFIX}rec"
MIG_CURVE_METRIC = f"{TRAIN_PREFIX}mig"  # every `mig_every` steps, on the eval profile's sizes
SPEED_METRIC = f"{TRAIN_PREFIX}steps_per_second"
RESUMED_METRIC = "resumed_from_step"
# Seconds from the run's launch (its TorchTrainer starting, or train_in_process) to the first
# training step: worker start-up, data loading, model building and restoring.
STARTUP_METRIC = "startup_s"
PROGRESS_KEY = "progress"  # the report's one-line summary, for the console


def train_metrics(losses: Mapping[str, float]) -> dict[str, float]:
    """The trainer's losses under their logged names, `train/<term>`."""
    return {f"{TRAIN_PREFIX}{key}": value for key, value in losses.items()}

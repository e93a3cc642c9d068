"""The names of what a training run reports, defined once for the worker that logs them and the
sweep, console, report and ablation that read them back.

Plain strings only: importing this module costs nothing (no torch, Ray or MLflow), so a module
that only reads a key need not import the training loop. The final scores keep the names that
`tcwae` gives them (`tcwae.metrics.SCORES`, `tcwae.sequence_eval.SEQUENCE_SCORES`).
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

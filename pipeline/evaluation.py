"""What rank 0 measures and keeps of a model: its scores at a successive-halving rung and, after
training, its final scores, pictures, checkpoint and encoder. Apart from the training loop so that
`bench/record_rungs.py` scores a model as a trial does; every draw has its own seed stream, so
measuring does not change training.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.checkpoints import CHECKPOINT_FILE
from pipeline.model_registry import log_encoder
from pipeline.search.successive_halving import RungCheck, rung_metric
from pipeline.tracking import Tracking
from tcwae.eval_profiles import PROFILES
from tcwae.methods.registry import method_card

EVAL_SEED_STREAM = 7
RUNG_SEED_STREAM = 13  # seeds each rung's draws from (seed, step), apart from training's streams
PICTURE_IMAGES = 256
RECONSTRUCTION_IMAGES = 16
TRAVERSALS = "traversals.png"
PICTURES = (TRAVERSALS, "reconstructions.png", "samples.png")


def model_scores(
    trainer: Any, rng: np.random.Generator, profile: str, scores: Sequence[str] | None = None
) -> dict[str, float]:
    """`rec` on the profile's `rec_images` and, for data with factors, `tcwae.metrics.evaluate`
    with the profile's sizes: all scores, or those in `scores` (the final and the rung scores)."""
    from tcwae import metrics

    result = {}
    if scores is None or "rec" in scores:
        result["rec"] = trainer.reconstruction_error(PROFILES[profile].rec_images, rng)
    factor_scores = None if scores is None else [score for score in scores if score != "rec"]
    if trainer.has_factors and (factor_scores is None or factor_scores):
        codebook = trainer.codebook()
        data = (trainer.dataset, trainer.represent, rng, profile, factor_scores)
        result.update(metrics.evaluate(*data, codebook=codebook))
    return {key: float(value) for key, value in result.items()}


def score_at_rung(trainer: Any, check: RungCheck) -> dict[str, float]:
    """`rung/<score>` of the model now with the check's profile, drawn from (seed, step)."""
    rng = np.random.default_rng([trainer.cfg.seed, RUNG_SEED_STREAM, trainer.step])
    scores = model_scores(trainer, rng, check.profile, check.scores)
    return {rung_metric(score): scores[score] for score in check.scores if score in scores}


def evaluate_and_log(
    trainer: Any, dataset: Any, tracking: Tracking, run_id: str, data_root: str | None = None
) -> dict[str, float]:
    """Log the run's scores, pictures and last checkpoint, and an image model's encoder as an
    MLflow model; return the scores. A sequence model's judge is trained once and cached under
    `data_root` (default: `tcwae.data.data_root()`)."""
    cfg, model = trainer.cfg, trainer.autoencoder
    rng = np.random.default_rng([cfg.seed, EVAL_SEED_STREAM])
    example = None
    with tempfile.TemporaryDirectory(prefix="tcwae-artifacts-") as name:
        folder = Path(name)
        if method_card(cfg.method).sequences:
            from tcwae.data import data_root as default_root
            from tcwae.sequence_eval import score_and_draw

            judge_root = Path(data_root or default_root())
            scores, paths = score_and_draw(
                model, dataset, judge_root, cfg.eval_profile, rng, folder, cfg.cost
            )
            scores = {key: float(value) for key, value in scores.items()}
            tracking.log_metrics(run_id, scores, trainer.step)
        else:
            from tcwae import pictures

            scores = model_scores(trainer, rng, cfg.eval_profile)
            tracking.log_metrics(run_id, scores, trainer.step)
            picks = rng.choice(len(dataset), min(PICTURE_IMAGES, len(dataset)), replace=False)
            images = dataset.images[torch.from_numpy(picks)]
            paths = [folder / name for name in PICTURES]
            pictures.save_traversals(model, images, paths[0])
            pictures.save_reconstructions(model, images[:RECONSTRUCTION_IMAGES], paths[1])
            pictures.save_samples(model, paths[2], seed=cfg.seed)
            example = images[:2].float().div(255.0).numpy()  # the encoder's input example
        for path in paths:
            tracking.log_artifact(run_id, path)
        trainer.save(folder / CHECKPOINT_FILE)
        tracking.log_artifact(run_id, folder / CHECKPOINT_FILE, "checkpoint")
    if example is not None:
        log_encoder(tracking, run_id, model, example, trainer.step)
    return scores

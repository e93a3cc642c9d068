"""What rank 0 measures and keeps of a model: the scores at a successive-halving sweep's rungs
and, at the end of training, the final scores, pictures, checkpoint and encoder.

Apart from the training loop (`pipeline.worker`) so that the bench (`bench/record_rungs.py`)
scores a model exactly as a sweep trial is scored without importing the loop. Every draw comes
from its own seed stream, never from training's, so measuring does not change training.
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
    """`rec` on the profile's `rec_images` and, for data sets with factors, the scores of
    `tcwae.metrics.evaluate` with `profile`'s sizes (with its `eval_*` sizes); all of them, or
    those in `scores`. Both the final scores and the rung scores come from here."""
    from tcwae import metrics

    result = {}
    if scores is None or "rec" in scores:
        result["rec"] = trainer.reconstruction_error(PROFILES[profile].rec_images, rng)
    factor_scores = None if scores is None else [score for score in scores if score != "rec"]
    if trainer.has_factors and (factor_scores is None or factor_scores):
        codebook = trainer.codebook()
        result.update(
            metrics.evaluate(
                trainer.dataset, trainer.represent, rng, profile, factor_scores, codebook=codebook
            )
        )
    return {key: float(value) for key, value in result.items()}


def score_at_rung(trainer: Any, check: RungCheck) -> dict[str, float]:
    """`rung/<score>` of the model now, with the check's profile; draws come from (seed, step),
    never from the training streams."""
    rng = np.random.default_rng([trainer.cfg.seed, RUNG_SEED_STREAM, trainer.step])
    scores = model_scores(trainer, rng, check.profile, check.scores)
    return {rung_metric(score): scores[score] for score in check.scores if score in scores}


def evaluate_and_log(
    trainer: Any, dataset: Any, tracking: Tracking, run_id: str, data_root: str | None = None
) -> dict[str, float]:
    """The run's final record: its scores, pictures and last checkpoint, and for an image model
    its encoder as an MLflow model. Returns the scores. A sequence model's judge is trained once
    and cached under `data_root` (default: `tcwae.data.data_root()`)."""
    rng = np.random.default_rng([trainer.cfg.seed, EVAL_SEED_STREAM])
    example = None
    with tempfile.TemporaryDirectory(prefix="tcwae-artifacts-") as name:
        folder = Path(name)
        if method_card(trainer.cfg.method).sequences:
            scores, pictures = _sequence_scores(trainer, dataset, rng, folder, data_root)
            tracking.log_metrics(run_id, scores, trainer.step)
        else:
            scores = model_scores(trainer, rng, trainer.cfg.eval_profile)
            tracking.log_metrics(run_id, scores, trainer.step)
            pictures, example = _draw_pictures(trainer, dataset, rng, folder)
        for picture in pictures:
            tracking.log_artifact(run_id, picture)
        trainer.save(folder / CHECKPOINT_FILE)
        tracking.log_artifact(run_id, folder / CHECKPOINT_FILE, "checkpoint")
    if example is not None:
        log_encoder(tracking, run_id, trainer.autoencoder, example, trainer.step)
    return scores


def _draw_pictures(
    trainer: Any, dataset: Any, rng: np.random.Generator, folder: Path
) -> tuple[list[Path], np.ndarray]:
    """Traversals, reconstructions and samples of an image model (`tcwae.pictures` handles its
    device and mode), and two of the drawn images as the encoder's input example."""
    from tcwae import pictures

    autoencoder = trainer.autoencoder
    picks = rng.choice(len(dataset), size=min(PICTURE_IMAGES, len(dataset)), replace=False)
    images = dataset.images[torch.from_numpy(picks)]
    traversals, reconstructions, samples = (folder / name for name in PICTURES)
    pictures.save_traversals(autoencoder, images, traversals)
    pictures.save_reconstructions(autoencoder, images[:RECONSTRUCTION_IMAGES], reconstructions)
    pictures.save_samples(autoencoder, samples, seed=trainer.cfg.seed)
    return [traversals, reconstructions, samples], images[:2].float().div(255.0).numpy()


def _sequence_scores(
    trainer: Any, dataset: Any, rng: np.random.Generator, folder: Path, data_root: str | None
) -> tuple[dict[str, float], list[Path]]:
    """The judge's accuracy and the judged scores of `tcwae.sequence_eval.score_and_draw`, with
    its swap and generated-sequence pictures."""
    from tcwae.data import data_root as default_root
    from tcwae.sequence_eval import score_and_draw

    cfg = trainer.cfg
    judge_root = Path(data_root or default_root())
    scores, pictures = score_and_draw(
        trainer.autoencoder, dataset, judge_root, cfg.eval_profile, rng, folder, cfg.cost
    )
    return {key: float(value) for key, value in scores.items()}, pictures

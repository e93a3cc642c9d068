"""The judge: a classifier of every factor of a sequence, trained once on the procedural labels.

The literature judges generated Sprites with a classifier trained on the real training sequences'
labels (DSVAE, S3VAE, C-DSVAE ship theirs as a checkpoint); ours is trained on the training part
of sprite videos (the part the models train on, `tcwae.data.sprite_videos.split_indices`) and
cached under `<data root>/judges/`, keyed by grid, a digest of the training part and the
renderer version (`split_digest`), training steps and seed, so that a judge trained on other
sequences (e.g. on every sequence, before the split) is never reused. Its accuracy on the
held-out part is stored with it and reported. Architecture (ours): the T frames stacked as T x C
channels (early fusion, so that motion and rotation are visible to the first layer), four
convolutions (two of stride 2) and a global max pool over the canvas to 128 features, then one
linear head per factor; Adam (lr 1e-3), batch 64, each training sequence rolled by a random
(dy, dx) on the torus. Why: on renderer version 2 a sprite starts anywhere on the torus at any
angle, and the Table-3 encoder with its position-bound linear layer (format 2) judged 0.04 of
the held-out sequences right at 1,500 steps (shape and rotation at chance); pooling makes the
features translation-invariant, and since the canvas is a torus a rolled sequence is exactly
another sequence of the same factors (issue 32, RESULTS.md).
"""

from __future__ import annotations

import logging
import os
import pickle
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tcwae.data.sprite_videos import split_digest

log = logging.getLogger(__name__)

JUDGE_FORMAT = 3  # 1: on 80% of every sequence; 2: on the training part; 3: pooled, rolled
WIDTH = 32  # channels of the first convolution; the trunk ends with 4 x WIDTH = 128 features
BATCH_SIZE = 64
LEARNING_RATE = 1e-3


# The metric a trial logs for its judge's held-out accuracy (and `<this>_<factor>`).
JUDGE_ACCURACY = "judge_accuracy"


class Judge(nn.Module):
    """Sequences [B, T, C, 64, 64] in [0, 1] -> logits of each factor, one head a factor."""

    def __init__(self, frames: int, channels: int, factor_sizes: Sequence[int]) -> None:
        super().__init__()
        self.frames, self.channels = frames, channels
        self.factor_sizes = tuple(int(size) for size in factor_sizes)
        self.trunk = nn.Sequential(
            nn.Conv2d(frames * channels, WIDTH, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(WIDTH, 2 * WIDTH, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(2 * WIDTH, 2 * WIDTH, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(2 * WIDTH, 4 * WIDTH, 3, 1, 1),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.heads = nn.ModuleList(nn.Linear(4 * WIDTH, size) for size in self.factor_sizes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.trunk(x.flatten(1, 2))
        return [head(features) for head in self.heads]


@dataclass(frozen=True)
class JudgeRecord:
    """What a cached judge was trained on and how well it judges held-out real sequences."""

    dataset: str
    factor_sizes: tuple[int, ...]
    factor_names: tuple[str, ...]
    steps: int
    seed: int
    trained_on: int  # sequences of the training part
    held_out: int
    accuracy: float  # every factor of a held-out sequence right
    factor_accuracy: tuple[float, ...]

    def scores(self) -> dict[str, float]:
        """`judge_accuracy` and `judge_accuracy_<factor>` for logging."""
        scores = {JUDGE_ACCURACY: self.accuracy}
        for name, value in zip(self.factor_names, self.factor_accuracy, strict=True):
            scores[f"{JUDGE_ACCURACY}_{name}"] = value
        return scores


@torch.no_grad()
def judge_probabilities(
    judge: Judge, sequences: torch.Tensor, batch_size: int = 256
) -> list[np.ndarray]:
    """Softmax predictions of each factor, [n, size] float64 each, for float sequences in [0, 1]."""
    judge.eval()
    device = next(judge.parameters()).device
    parts: list[list[torch.Tensor]] = [[] for _ in judge.factor_sizes]
    for start in range(0, len(sequences), batch_size):
        logits = judge(sequences[start : start + batch_size].to(device).float())
        for part, head in zip(parts, logits, strict=True):
            part.append(F.softmax(head.float(), dim=1).cpu())
    return [torch.cat(part).double().numpy() for part in parts]


def accuracy_on(judge: Judge, dataset) -> tuple[float, tuple[float, ...]]:
    """(all factors right, per-factor accuracy) of the judge on every sequence of `dataset`."""
    probs = judge_probabilities(judge, dataset.float_batch(np.arange(len(dataset))))
    truth = dataset.factor_classes
    hits = np.stack([p.argmax(1) == truth[:, k] for k, p in enumerate(probs)], axis=1)
    return float(hits.all(axis=1).mean()), tuple(float(h) for h in hits.mean(axis=0))


def roll_on_torus(sequences: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each sequence [T, C, H, W] of the batch shifted by its own random (dy, dx), every frame
    alike: on the torus canvas of sprite videos this is the same sequence started elsewhere."""
    height, width = sequences.shape[-2:]
    shifts = torch.stack(
        [
            torch.randint(height, (len(sequences),), generator=generator),
            torch.randint(width, (len(sequences),), generator=generator),
        ],
        dim=1,
    )
    return torch.stack(
        [
            torch.roll(x, (int(dy), int(dx)), dims=(-2, -1))
            for x, (dy, dx) in zip(sequences, shifts, strict=True)
        ]
    )


def train_judge(dataset, held_out, steps: int, seed: int = 0) -> tuple[Judge, JudgeRecord]:
    """Train a judge on every sequence of `dataset` (the training part: uint8 sequences with
    factor classes) and measure it on `held_out` (the held-out part of the same grid)."""
    if dataset.num_frames is None:
        raise ValueError(f"{dataset.name} holds images, not sequences: nothing to judge")
    train = np.arange(len(dataset))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        judge = Judge(dataset.num_frames, dataset.num_channels, dataset.factor_sizes)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(judge.parameters(), lr=LEARNING_RATE)
    targets = torch.from_numpy(dataset.factor_classes)
    judge.train()
    for _ in range(steps):
        pick = torch.from_numpy(train)[
            torch.randint(len(train), (BATCH_SIZE,), generator=generator)
        ]
        logits = judge(roll_on_torus(dataset.float_batch(pick), generator))
        loss = sum(F.cross_entropy(head, targets[pick, k]) for k, head in enumerate(logits))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    accuracy, per_factor = accuracy_on(judge, held_out)
    record = JudgeRecord(
        dataset.name,
        tuple(dataset.factor_sizes),
        tuple(dataset.factor_names),
        steps,
        seed,
        len(dataset),
        len(held_out),
        accuracy,
        per_factor,
    )
    return judge, record


def judge_path(root: Path, dataset, steps: int, seed: int) -> Path:
    """Where the judge trained on `dataset` (the training part) for `steps` from `seed` lives."""
    sizes = "x".join(str(size) for size in dataset.factor_sizes)
    name = f"{dataset.name}-{sizes}-train{split_digest(dataset)}-steps{steps}-seed{seed}.pt"
    return Path(root) / "judges" / name


def load_or_train_judge(
    dataset, held_out, root: Path, steps: int, seed: int = 0
) -> tuple[Judge, JudgeRecord]:
    """The cached judge for (training part, steps, seed) under `root/judges/`, trained on
    `dataset` and measured on `held_out`, written (atomically) on first use. A file that does not
    match is retrained and replaced."""
    path = judge_path(root, dataset, steps, seed)
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            record = JudgeRecord(
                **{
                    **saved["record"],
                    "factor_sizes": tuple(saved["record"]["factor_sizes"]),
                    "factor_names": tuple(saved["record"]["factor_names"]),
                    "factor_accuracy": tuple(saved["record"]["factor_accuracy"]),
                }
            )
            if saved["format"] == JUDGE_FORMAT and record.factor_sizes == dataset.factor_sizes:
                judge = Judge(dataset.num_frames, dataset.num_channels, dataset.factor_sizes)
                judge.load_state_dict(saved["state_dict"])
                return judge.eval(), record
        except (OSError, RuntimeError, KeyError, TypeError, ValueError, pickle.UnpicklingError):
            log.warning("judge %s is unreadable; training a new one to replace it", path)
    judge, record = train_judge(dataset, held_out, steps, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        state = {"format": JUDGE_FORMAT, "record": asdict(record), "state_dict": judge.state_dict()}
        torch.save(state, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return judge.eval(), record

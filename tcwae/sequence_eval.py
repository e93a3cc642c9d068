"""A trained sequence model judged the literature's way, on held-out sequences, and its pictures.

Everything is measured on the held-out part of sprite videos (`tcwae.data.sprite_videos.
held_out_part`), which neither the model nor the judge trained on. Each held-out sequence's codes
(posterior means) are split; sequences are generated that keep the static code and draw the
dynamics (and the action code, if any) from the priors, and conversely keep the dynamics (and
action) and draw the static code from N(0, I). Real sequences are taken class by class: the same
number of generations for every class of the kept label (`generations_per_class`), each from a
held-out sequence of that class (cycling through them in a seeded order) with a fresh prior draw.
The judge (`tcwae.metrics.sequence_judge`) scores each direction
(`tcwae.metrics.sequences.kept_factor_scores`): `kept_<direction>_acc` on the kept factors,
`kept_<direction>_resampled_acc` on the redrawn ones (against the real sequence's labels), IS,
H(y|x), H(y) of the kept label, each with its standard error `<score>_se`. `kept_dynamics_*` are
the numbers the Sprites literature reports (its "fix motion, sample content"). Pictures (swap and
generated sequences, of held-out sequences) are tile grids, one row a sequence, one column a
frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tcwae.costs import PER_IMAGE_COSTS
from tcwae.data.sprite_videos import DYNAMIC_FACTORS, STATIC_FACTORS, held_out_part
from tcwae.metrics.sequence_judge import Judge, judge_probabilities, load_or_train_judge
from tcwae.metrics.sequences import joint_labels, kept_factor_scores
from tcwae.pictures import save_tile_grid
from tcwae.sequence_nets import SequenceCodes

# Generated sequences a direction, spread evenly over the classes of its kept label, and judge
# training steps, by evaluation profile (the names of tcwae.metrics.PROFILES). On the full grid
# (72 static, 24 dynamic classes) `quick` is 20 generations a static class and 60 a dynamic one.
SEQUENCE_EVAL_SIZES = {"smoke": 24, "rung": 288, "quick": 1440, "paper": 4320}
JUDGE_STEPS = {"smoke": 30, "rung": 3000, "quick": 3000, "paper": 3000}
GENERATE_BATCH = 64
PICTURE_PAIRS = 3  # swap picture: pairs of real sequences
PICTURE_SEQUENCES = 4  # generated-sequence picture: real sequences (and as many prior samples)
SWAP_PICTURE, SEQUENCES_PICTURE = "swap.png", "sequences.png"
KEPT = ("static", "dynamics")
# Judged scores of each direction a search may rank on (`kept_<direction>_<score>`); a run also
# logs the accuracy of each factor (`kept_<direction>_acc_<factor>`, `..._resampled_acc_<factor>`)
# and every score's standard error (`<score>_se`).
KEPT_SCORES = ("acc", "is", "h_y_given_x", "h_y")
RESAMPLED_SCORES = ("resampled_acc",)
SEQUENCE_SCORES = tuple(
    f"kept_{keep}_{score}" for keep in KEPT for score in KEPT_SCORES + RESAMPLED_SCORES
)


def _device(autoencoder: SequenceCodes) -> torch.device:
    return next(autoencoder.parameters()).device


def random_actions(count: int, num_actions: int, generator: torch.Generator) -> torch.Tensor:
    """One-hot actions drawn from the uniform prior p(a): [count, num_actions]."""
    if not num_actions:
        return torch.zeros(count, 0)
    drawn = torch.randint(num_actions, (count,), generator=generator)
    return F.one_hot(drawn, num_actions).float()


@torch.no_grad()
def generate_from_codes(
    autoencoder: SequenceCodes,
    codes: dict[str, torch.Tensor],
    keep: str,
    frames: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Sequences in [0, 1] that keep the `keep` part ('static' or 'dynamics') of `codes` (from
    `infer`) and draw the other part from its prior; on the CPU."""
    if keep not in KEPT:
        raise ValueError(f"keep must be one of {KEPT}, got {keep!r}")
    device = _device(autoencoder)
    count = len(codes["s"])
    if keep == "static":
        noise = torch.randn(count, frames, autoencoder.dz, generator=generator)
        s = codes["s"].to(device)
        z = autoencoder.sample_dynamics(noise.to(device))
        action = random_actions(count, autoencoder.num_actions, generator).to(device)
    else:
        s = torch.randn(count, autoencoder.ds, generator=generator).to(device)
        z, action = codes["z"].to(device), codes["action"].to(device)
    return torch.sigmoid(autoencoder.decode(s, z, action).float()).cpu()


@torch.no_grad()
def generate_keeping(
    autoencoder: SequenceCodes, x: torch.Tensor, keep: str, generator: torch.Generator
) -> torch.Tensor:
    """Sequences in [0, 1] like x [n, T, C, 64, 64] that keep x's `keep` code ('static' or
    'dynamics', posterior means) and draw the other part from its prior; on the CPU."""
    if keep not in KEPT:
        raise ValueError(f"keep must be one of {KEPT}, got {keep!r}")
    codes = autoencoder.infer(x.to(_device(autoencoder)))
    return generate_from_codes(autoencoder, codes, keep, x.shape[1], generator)


@torch.no_grad()
def generate_from_priors(
    autoencoder: SequenceCodes, count: int, frames: int, generator: torch.Generator
) -> torch.Tensor:
    """Sequences in [0, 1] with every code drawn from its prior: [count, frames, C, 64, 64]."""
    device = _device(autoencoder)
    s = torch.randn(count, autoencoder.ds, generator=generator)
    noise = torch.randn(count, frames, autoencoder.dz, generator=generator)
    action = random_actions(count, autoencoder.num_actions, generator)
    z = autoencoder.sample_dynamics(noise.to(device))
    logits = autoencoder.decode(s.to(device), z, action.to(device))
    return torch.sigmoid(logits.float()).cpu()


@torch.no_grad()
def infer_all(autoencoder: SequenceCodes, dataset) -> dict[str, torch.Tensor]:
    """`infer` codes (on the CPU) of every sequence of `dataset`, in batches."""
    parts = []
    for start in range(0, len(dataset), GENERATE_BATCH):
        batch = dataset.float_batch(np.arange(start, min(start + GENERATE_BATCH, len(dataset))))
        parts.append(
            {k: v.cpu() for k, v in autoencoder.infer(batch.to(_device(autoencoder))).items()}
        )
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}


@torch.no_grad()
def sequence_reconstruction_error(
    autoencoder: SequenceCodes, sequences: torch.Tensor, cost: str
) -> float:
    """Mean per-sequence cost (summed over frames and pixels) of sequences [n, T, C, 64, 64] in
    [0, 1] decoded from their posterior means."""
    device, total = _device(autoencoder), 0.0
    for batch in sequences.split(GENERATE_BATCH):
        batch = batch.to(device)
        codes = autoencoder.infer(batch)
        logits = autoencoder.decode(codes["s"], codes["z"], codes["action"]).float()
        total += PER_IMAGE_COSTS[cost](logits.flatten(0, 1), batch.flatten(0, 1)).sum().item()
    return total / len(sequences)


def generations_per_class(total: int, classes: int) -> int:
    """Generations for each class of a kept label: `total` spread evenly, at least one."""
    return max(1, math.ceil(total / classes))


def class_balanced_sources(
    labels: np.ndarray, per_class: int, rng: np.random.Generator
) -> np.ndarray:
    """Row indices, `per_class` for every class present in `labels`: each class's rows in a
    seeded order, repeated as often as needed (so every real sequence of a class is used about
    equally)."""
    picks = []
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        picks.append(rows[np.arange(per_class) % len(rows)])
    return np.concatenate(picks)


def judge_direction(
    autoencoder: SequenceCodes,
    held_out,
    codes: dict[str, torch.Tensor],
    judge: Judge,
    keep: str,
    kept_names: Sequence[str],
    total: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    """`kept_<keep>_*` scores of about `total` sequences generated keeping the `keep` code of
    held-out sequences, the same number for every class of the kept label."""
    axes = [held_out.factor_names.index(name) for name in kept_names]
    sizes = [held_out.factor_sizes[axis] for axis in axes]
    labels = joint_labels(held_out.factor_classes[:, axes], sizes)
    per_class = generations_per_class(total, math.prod(sizes))
    sources = class_balanced_sources(labels, per_class, rng)
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    parts: list[list[np.ndarray]] = [[] for _ in held_out.factor_names]
    for start in range(0, len(sources), GENERATE_BATCH):
        rows = torch.from_numpy(sources[start : start + GENERATE_BATCH])
        chosen = {key: value[rows] for key, value in codes.items()}
        generated = generate_from_codes(autoencoder, chosen, keep, held_out.num_frames, generator)
        for part, probs in zip(parts, judge_probabilities(judge, generated), strict=True):
            part.append(probs)
    probs = {
        name: np.concatenate(part) for name, part in zip(held_out.factor_names, parts, strict=True)
    }
    factors = held_out.factor_classes[sources]
    scores = kept_factor_scores(
        probs, factors, held_out.factor_names, held_out.factor_sizes, kept_names, rng
    )
    scores["per_class"] = float(per_class)
    return {f"kept_{keep}_{name}": value for name, value in scores.items()}


def evaluate_sequence_model(
    autoencoder: SequenceCodes,
    held_out,
    judge: Judge,
    rng: np.random.Generator,
    generations: int,
    cost: str = "xent",
    static_factors: Sequence[str] = STATIC_FACTORS,
    dynamic_factors: Sequence[str] = DYNAMIC_FACTORS,
) -> dict[str, float]:
    """`rec` (cost per held-out sequence) and the judged scores of both directions,
    `kept_static_*` and `kept_dynamics_*` (`judge_direction`), on the sequences of `held_out`,
    about `generations` generated sequences a direction."""
    was_training = autoencoder.training
    autoencoder.eval()
    try:
        real = held_out.float_batch(np.arange(len(held_out))).cpu()
        scores = {"rec": sequence_reconstruction_error(autoencoder, real, cost)}
        codes = infer_all(autoencoder, held_out)
        for keep, kept_names in (("static", static_factors), ("dynamics", dynamic_factors)):
            scores.update(
                judge_direction(
                    autoencoder, held_out, codes, judge, keep, kept_names, generations, rng
                )
            )
    finally:
        autoencoder.train(was_training)
    scores["eval_sequences"] = float(generations)
    scores["eval_held_out"] = float(len(held_out))
    return scores


def score_and_draw(
    autoencoder: SequenceCodes,
    dataset,
    judge_root: Path,
    eval_profile: str,
    rng: np.random.Generator,
    folder: Path,
    cost: str = "xent",
) -> tuple[dict[str, float], list[Path]]:
    """What a run records for a sequence model trained on `dataset` (the training part of sprite
    videos): the judge's accuracy on the held-out part (`judge_accuracy*`, the judge trained once
    on `dataset` and cached under `judge_root`), the judged scores of `evaluate_sequence_model`
    on the held-out part, and the swap and generated-sequence pictures of held-out sequences
    written into `folder` (their paths are returned)."""
    held_out = held_out_part(dataset)
    judge, record = load_or_train_judge(dataset, held_out, judge_root, JUDGE_STEPS[eval_profile])
    device = _device(autoencoder)
    judge.to(device)
    scores = record.scores()
    scores.update(
        evaluate_sequence_model(
            autoencoder, held_out, judge, rng, SEQUENCE_EVAL_SIZES[eval_profile], cost
        )
    )
    picks = torch.from_numpy(rng.choice(len(held_out), size=2 * PICTURE_PAIRS, replace=False))
    images = held_out.images[picks].cpu()
    folder = Path(folder)
    save_swap_picture(
        autoencoder, images[:PICTURE_PAIRS], images[PICTURE_PAIRS:], folder / SWAP_PICTURE
    )
    save_generated_sequences(
        autoencoder,
        images[:PICTURE_SEQUENCES],
        folder / SEQUENCES_PICTURE,
        num_prior=PICTURE_SEQUENCES,
        seed=int(rng.integers(2**31)),
    )
    return scores, [folder / SWAP_PICTURE, folder / SEQUENCES_PICTURE]


def save_swap_picture(
    autoencoder: SequenceCodes, first: torch.Tensor, second: torch.Tensor, path: str | Path
) -> None:
    """For each pair (A, B) of uint8 sequences: rows A, B, static of A with the dynamics of B,
    static of B with the dynamics of A (DSVAE Fig. 2's swap)."""
    device = _device(autoencoder)
    a, b = first.float().div(255.0), second.float().div(255.0)
    was_training = autoencoder.training
    autoencoder.eval()
    try:
        with torch.no_grad():
            code_a, code_b = autoencoder.infer(a.to(device)), autoencoder.infer(b.to(device))
            a_on_b = autoencoder.decode(code_a["s"], code_b["z"], code_b["action"])
            b_on_a = autoencoder.decode(code_b["s"], code_a["z"], code_a["action"])
    finally:
        autoencoder.train(was_training)
    rows, labels = [], []
    for pair in range(len(a)):
        rows += [a[pair], b[pair], torch.sigmoid(a_on_b[pair].float()).cpu()]
        rows.append(torch.sigmoid(b_on_a[pair].float()).cpu())
        labels += [f"A{pair}", f"B{pair}", f"s(A{pair}) z(B{pair})", f"s(B{pair}) z(A{pair})"]
    save_tile_grid(torch.stack(rows), path, row_labels=labels, column_labels=_frame_labels(a))


def save_generated_sequences(
    autoencoder: SequenceCodes,
    real: torch.Tensor,
    path: str | Path,
    num_prior: int = 4,
    seed: int = 0,
) -> None:
    """For each uint8 sequence of `real`: the sequence, then one generated with its static code and
    prior dynamics, one with its dynamics and a prior static code; then `num_prior` sequences
    with every code from the priors."""
    generator = torch.Generator().manual_seed(seed)
    x = real.float().div(255.0)
    was_training = autoencoder.training
    autoencoder.eval()
    try:
        kept_static = generate_keeping(autoencoder, x, "static", generator)
        kept_dynamics = generate_keeping(autoencoder, x, "dynamics", generator)
        prior = generate_from_priors(autoencoder, num_prior, x.shape[1], generator)
    finally:
        autoencoder.train(was_training)
    rows, labels = [], []
    for index in range(len(x)):
        rows += [x[index], kept_static[index], kept_dynamics[index]]
        labels += [f"real {index}", "its s, prior z", "prior s, its z"]
    rows += list(prior)
    labels += ["prior"] * num_prior
    save_tile_grid(torch.stack(rows), path, row_labels=labels, column_labels=_frame_labels(x))


def _frame_labels(sequences: torch.Tensor) -> list[str]:
    return [f"t={t + 1}" for t in range(sequences.shape[1])]

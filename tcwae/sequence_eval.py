"""A trained sequence model judged the literature's way, and its pictures.

For real sequences drawn uniformly from the factor grid: the codes of each (posterior means) are
split; sequences are generated that keep the static code and draw the dynamics (and the action
code, if any) from the priors, and conversely keep the dynamics (and action) and draw the static
code from N(0, I). The judge (`tcwae.metrics.sequence_judge`) then scores each direction on its
kept factors (`tcwae.metrics.sequences.kept_factor_scores`): `kept_dynamics_acc` and its IS,
H(y|x), H(y) are the numbers the Sprites literature reports (its "fix motion, sample content");
`kept_static_*` the converse. Pictures (swap and generated sequences) are tile grids, one row a
sequence, one column a frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tcwae.costs import PER_IMAGE_COSTS
from tcwae.data.sprite_videos import DYNAMIC_FACTORS, STATIC_FACTORS
from tcwae.metrics.sequence_judge import Judge, judge_probabilities, load_or_train_judge
from tcwae.metrics.sequences import kept_factor_scores
from tcwae.sequence_nets import SequenceAutoencoder
from tcwae.viz import _save_tile_grid

# Real sequences drawn per evaluation (each generates one sequence per direction) and judge
# training steps, by evaluation profile (the names of tcwae.metrics.PROFILES).
SEQUENCE_EVAL_SIZES = {"smoke": 32, "rung": 128, "quick": 512, "paper": 2048}
JUDGE_STEPS = {"smoke": 30, "rung": 1500, "quick": 1500, "paper": 1500}
GENERATE_BATCH = 64
PICTURE_PAIRS = 3  # swap picture: pairs of real sequences
PICTURE_SEQUENCES = 4  # generated-sequence picture: real sequences (and as many prior samples)
SWAP_PICTURE, SEQUENCES_PICTURE = "swap.png", "sequences.png"
KEPT = ("static", "dynamics")
# Judged scores of each direction a search may rank on (`kept_<direction>_<score>`); a run also
# logs the accuracy of each kept factor (`kept_<direction>_acc_<factor>`).
KEPT_SCORES = ("acc", "is", "h_y_given_x", "h_y")
SEQUENCE_SCORES = tuple(f"kept_{keep}_{score}" for keep in KEPT for score in KEPT_SCORES)


def _device(autoencoder: SequenceAutoencoder) -> torch.device:
    return next(autoencoder.parameters()).device


def random_actions(count: int, num_actions: int, generator: torch.Generator) -> torch.Tensor:
    """One-hot actions drawn from the uniform prior p(a): [count, num_actions]."""
    if not num_actions:
        return torch.zeros(count, 0)
    drawn = torch.randint(num_actions, (count,), generator=generator)
    return F.one_hot(drawn, num_actions).float()


@torch.no_grad()
def generate_keeping(
    autoencoder: SequenceAutoencoder, x: torch.Tensor, keep: str, generator: torch.Generator
) -> torch.Tensor:
    """Sequences in [0, 1] like x [n, T, C, 64, 64] that keep x's `keep` code ('static' or
    'dynamics', posterior means) and draw the other part from its prior; on the CPU."""
    if keep not in KEPT:
        raise ValueError(f"keep must be one of {KEPT}, got {keep!r}")
    device = _device(autoencoder)
    codes = autoencoder.infer(x.to(device))
    count, frames = x.shape[:2]
    if keep == "static":
        noise = torch.randn(count, frames, autoencoder.dz, generator=generator)
        s = codes["s"]
        z = autoencoder.sample_dynamics(noise.to(device))
        action = random_actions(count, autoencoder.num_actions, generator).to(device)
    else:
        s = torch.randn(count, autoencoder.ds, generator=generator).to(device)
        z, action = codes["z"], codes["action"]
    return torch.sigmoid(autoencoder.decode(s, z, action).float()).cpu()


@torch.no_grad()
def generate_from_priors(
    autoencoder: SequenceAutoencoder, count: int, frames: int, generator: torch.Generator
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
def sequence_reconstruction_error(
    autoencoder: SequenceAutoencoder, sequences: torch.Tensor, cost: str
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


def evaluate_sequence_model(
    autoencoder: SequenceAutoencoder,
    dataset,
    judge: Judge,
    rng: np.random.Generator,
    num_sequences: int,
    cost: str = "xent",
    static_factors: Sequence[str] = STATIC_FACTORS,
    dynamic_factors: Sequence[str] = DYNAMIC_FACTORS,
) -> dict[str, float]:
    """`rec` (cost per sequence) and the judged scores of both directions, `kept_static_*` and
    `kept_dynamics_*` (see `kept_factor_scores`), on `num_sequences` real sequences."""
    was_training = autoencoder.training
    autoencoder.eval()
    try:
        factors = dataset.sample_factors(num_sequences, rng)
        real = dataset.float_batch(dataset.index_of(factors)).cpu()
        generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
        scores = {"rec": sequence_reconstruction_error(autoencoder, real, cost)}
        for keep, kept_names in (("static", static_factors), ("dynamics", dynamic_factors)):
            generated = torch.cat(
                [
                    generate_keeping(autoencoder, batch, keep, generator)
                    for batch in real.split(GENERATE_BATCH)
                ]
            )
            probs = dict(
                zip(dataset.factor_names, judge_probabilities(judge, generated), strict=True)
            )
            kept = kept_factor_scores(
                probs, factors, dataset.factor_names, dataset.factor_sizes, kept_names
            )
            scores.update({f"kept_{keep}_{name}": value for name, value in kept.items()})
    finally:
        autoencoder.train(was_training)
    scores["eval_sequences"] = float(num_sequences)
    return scores


def score_and_draw(
    autoencoder: SequenceAutoencoder,
    dataset,
    judge_root: Path,
    eval_profile: str,
    rng: np.random.Generator,
    folder: Path,
    cost: str = "xent",
) -> tuple[dict[str, float], list[Path]]:
    """What a run records for a sequence model: the judge's own held-out accuracy
    (`judge_accuracy*`, the judge trained once and cached under `judge_root`), the judged scores
    of `evaluate_sequence_model`, and the swap and generated-sequence pictures written into
    `folder` (their paths are returned)."""
    judge, record = load_or_train_judge(dataset, judge_root, JUDGE_STEPS[eval_profile])
    device = _device(autoencoder)
    judge.to(device)
    scores = record.scores()
    scores.update(
        evaluate_sequence_model(
            autoencoder, dataset, judge, rng, SEQUENCE_EVAL_SIZES[eval_profile], cost
        )
    )
    picks = torch.from_numpy(rng.choice(len(dataset), size=2 * PICTURE_PAIRS, replace=False))
    images = dataset.images[picks].cpu()
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
    autoencoder: SequenceAutoencoder, first: torch.Tensor, second: torch.Tensor, path: str | Path
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
    _save_tile_grid(torch.stack(rows), path, row_labels=labels, column_labels=_frame_labels(a))


def save_generated_sequences(
    autoencoder: SequenceAutoencoder,
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
    _save_tile_grid(torch.stack(rows), path, row_labels=labels, column_labels=_frame_labels(x))


def _frame_labels(sequences: torch.Tensor) -> list[str]:
    return [f"t={t + 1}" for t in range(sequences.shape[1])]

"""Scores of generated sequences from a judge classifier's predictions (pure numpy).

The protocol of the sequential-disentanglement literature on Sprites (DSVAE, Li and Mandt 2018;
S3VAE, Zhu et al. 2020; C-DSVAE, Bai et al. 2021; R-WAE, seed 002): a classifier ("judge")
trained on the data's labels looks at sequences generated with one part of a real sequence's code
kept and the other part drawn from the prior. The kept factors should survive: the judge's
accuracy on them is the disentanglement score. Inception score, H(y|x) and H(y) of the judge's
predictions measure how recognisable (low H(y|x)) and how diverse (high H(y)) the generated
sequences are; the literature computes them on the kept label after taking the same number of
sequences of each true class (as C-DSVAE's evaluation code does), which we follow. The published
tables also give the accuracy of the resampled factors against the real sequence's labels: near
chance when the drawn code really replaced them, high when the kept code still carries them.
Every figure comes with its standard error (`_se`): binomial for accuracies, a class-stratified
bootstrap for IS, H(y|x) and H(y). All entropies are in nats.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

_EPS = 1e-16
BOOTSTRAP_REPLICATES = 200


def _check_probabilities(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) == 0:
        raise ValueError(f"probabilities must be [n >= 1, classes], got shape {probs.shape}")
    if (probs < 0).any() or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("each row of probabilities must be non-negative and sum to 1")
    return probs


def conditional_entropy(probs: np.ndarray) -> float:
    """H(y|x) = mean_i H(p(y | x_i)): low when the judge is sure about each sequence."""
    probs = _check_probabilities(probs)
    return float(-(probs * np.log(probs + _EPS)).sum(axis=1).mean())


def marginal_entropy(probs: np.ndarray) -> float:
    """H(y) = H(mean_i p(y | x_i)): high when the sequences cover the classes evenly."""
    marginal = _check_probabilities(probs).mean(axis=0)
    return float(-(marginal * np.log(marginal + _EPS)).sum())


def inception_score(probs: np.ndarray) -> float:
    """IS = exp(mean_i KL(p(y | x_i) || p(y))) with p(y) the mean prediction (Salimans et al.
    2016); between 1 and the number of classes."""
    probs = _check_probabilities(probs)
    marginal = probs.mean(axis=0, keepdims=True)
    kl = (probs * (np.log(probs + _EPS) - np.log(marginal + _EPS))).sum(axis=1)
    return float(np.exp(kl.mean()))


def balanced_rows(labels: np.ndarray) -> np.ndarray:
    """Indices taking the first m rows of each class present, m the rarest class's count, so that
    H(y) and IS are not biased by an uneven draw of true classes."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(classes) == 0:
        raise ValueError("no labels to balance")
    count = min(int((labels == label).sum()) for label in classes)
    return np.concatenate([np.flatnonzero(labels == label)[:count] for label in classes])


def joint_probabilities(factor_probs: Sequence[np.ndarray]) -> np.ndarray:
    """p(y_1, ..., y_k | x) as the product of the judge's per-factor predictions, flattened in
    mixed-radix order (the judge predicts each factor with its own head): [n, prod sizes]."""
    joint = np.ones((len(factor_probs[0]), 1))
    for probs in factor_probs:
        joint = (joint[:, :, None] * np.asarray(probs, dtype=np.float64)[:, None, :]).reshape(
            len(joint), -1
        )
    return joint


def joint_labels(factors: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """Mixed-radix index of each row of factor classes [n, k] with the given sizes."""
    return np.ravel_multi_index(tuple(np.asarray(factors).T), tuple(sizes))


def binomial_standard_error(accuracy: float, count: int) -> float:
    """Standard error sqrt(p (1 - p) / n) of an accuracy p measured on n independent trials."""
    return float(np.sqrt(accuracy * (1.0 - accuracy) / count))


def bootstrap_standard_error(
    statistic: Callable[[np.ndarray], float],
    probs: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    replicates: int = BOOTSTRAP_REPLICATES,
) -> float:
    """Standard deviation of `statistic(probs[rows])` over bootstrap replicates that redraw, with
    replacement, the same number of rows within each class of `labels` (so a class-balanced set
    stays balanced): the standard error of the statistic (Efron and Tibshirani 1993, Sec. 6.2)."""
    groups = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    values = []
    for _ in range(replicates):
        rows = np.concatenate([rng.choice(group, size=len(group)) for group in groups])
        values.append(statistic(probs[rows]))
    return float(np.std(values, ddof=1))


def accuracy_scores(
    factor_probs: Mapping[str, np.ndarray],
    factors: np.ndarray,
    factor_names: Sequence[str],
    names: Sequence[str],
    prefix: str = "",
) -> dict[str, float]:
    """`<prefix>acc_<factor>` for each factor of `names` (the judge's argmax equals the label in
    `factors` [n, k]), `<prefix>acc` (all of them right), each with its binomial `_se`."""
    factors = np.asarray(factors)
    scores: dict[str, float] = {}
    correct = np.ones(len(factors), dtype=bool)
    for name in names:
        hits = (
            np.asarray(factor_probs[name]).argmax(axis=1)
            == factors[:, list(factor_names).index(name)]
        )
        scores[f"{prefix}acc_{name}"] = float(hits.mean())
        correct &= hits
    scores[f"{prefix}acc"] = float(correct.mean())
    for key in list(scores):
        scores[f"{key}_se"] = binomial_standard_error(scores[key], len(factors))
    return scores


def kept_factor_scores(
    factor_probs: Mapping[str, np.ndarray],
    factors: np.ndarray,
    factor_names: Sequence[str],
    factor_sizes: Sequence[int],
    kept: Sequence[str],
    rng: np.random.Generator | None = None,
) -> dict[str, float]:
    """Scores of generated sequences whose factors `kept` were taken from real sequences with
    classes `factors` [n, k] and whose other factors were drawn afresh: `acc_<factor>` for each
    kept factor and `acc` (all kept factors right); `resampled_acc_<factor>` and `resampled_acc`
    for the other factors against the real sequence's labels; `is`, `h_y_given_x`, `h_y` of the
    joint kept label on a class-balanced subset. With `rng`, each score's standard error
    `<score>_se` (the bootstrap draws from `rng`)."""
    axes = [list(factor_names).index(name) for name in kept]
    resampled = [name for name in factor_names if name not in kept]
    factors = np.asarray(factors)
    scores = accuracy_scores(factor_probs, factors, factor_names, kept)
    scores.update(accuracy_scores(factor_probs, factors, factor_names, resampled, "resampled_"))
    joint = joint_probabilities([factor_probs[name] for name in kept])
    labels = joint_labels(factors[:, axes], [factor_sizes[axis] for axis in axes])
    rows = balanced_rows(labels)
    statistics = {
        "is": inception_score,
        "h_y_given_x": conditional_entropy,
        "h_y": marginal_entropy,
    }
    for name, statistic in statistics.items():
        scores[name] = statistic(joint[rows])
        if rng is not None:
            scores[f"{name}_se"] = bootstrap_standard_error(
                statistic, joint[rows], labels[rows], rng
            )
    if rng is None:
        scores = {key: value for key, value in scores.items() if not key.endswith("_se")}
    return scores

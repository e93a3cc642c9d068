"""DCI: disentanglement, completeness and informativeness (Eastwood & Williams 2018).

As the reference library: an importance matrix `[codes, factors]` from gradient-boosted trees
fitted per factor, disentanglement = importance-weighted mean over codes of 1 - (entropy of the
code's importances over factors, base = number of factors), completeness the same per factor over
codes, informativeness = prediction accuracy on the train and test points. The trees are
sklearn's default `GradientBoostingClassifier` (`estimator="sklearn-gbt"`, the reference, minutes
per model) or the same model grown by `tcwae.metrics.boosting` (`"fast"`, the default, an order of
magnitude faster; its module docstring states how far it can differ).
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier

from tcwae.metrics._checks import train_and_test, varying_factors
from tcwae.metrics.boosting import fit_boosted_trees_parallel

ESTIMATORS = ("fast", "sklearn-gbt")
_ENTROPY_FLOOR = 1e-11  # the reference adds it before taking entropies


def _normalised_entropy(weights: np.ndarray) -> np.ndarray:
    """Entropy of each column of non-negative `weights` (normalised to sum 1), divided by the
    log of the number of rows. A single row has nothing to spread over: entropy 0."""
    num_rows = weights.shape[0]
    if num_rows == 1:
        return np.zeros(weights.shape[1])
    shifted = weights + _ENTROPY_FLOOR
    probabilities = shifted / shifted.sum(axis=0, keepdims=True)
    return -(probabilities * np.log(probabilities)).sum(axis=0) / np.log(num_rows)


def _check_importance(importance: np.ndarray) -> np.ndarray:
    matrix = np.asarray(importance, dtype=np.float64)
    if matrix.ndim != 2 or matrix.size == 0:
        raise ValueError(
            f"importance must be a non-empty [codes, factors] matrix, got {matrix.shape}"
        )
    if not np.isfinite(matrix).all():
        raise ValueError("importance contains NaN or infinite values")
    return np.abs(matrix)


def dci_disentanglement(importance: np.ndarray) -> float:
    """Disentanglement of an importance matrix `[codes, factors]` (reference `disentanglement`)."""
    matrix = _check_importance(importance)
    per_code = 1.0 - _normalised_entropy(matrix.T)
    if matrix.sum() == 0.0:
        matrix = np.ones_like(matrix)
    code_weight = matrix.sum(axis=1) / matrix.sum()
    return float(np.sum(per_code * code_weight))


def dci_completeness(importance: np.ndarray) -> float:
    """Completeness of an importance matrix `[codes, factors]` (reference `completeness`)."""
    matrix = _check_importance(importance)
    per_factor = 1.0 - _normalised_entropy(matrix)
    if matrix.sum() == 0.0:
        matrix = np.ones_like(matrix)
    factor_weight = matrix.sum(axis=0) / matrix.sum()
    return float(np.sum(per_factor * factor_weight))


def importance_matrix(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    estimator: str = "fast",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Importance `[codes, factors]` and train / test accuracy per factor `[factors]`.

    `estimator="sklearn-gbt"` fits `GradientBoostingClassifier()` (the reference); `"fast"` fits the
    same model with `tcwae.metrics.boosting`. Factors that take one value in the training points are
    left out (see `varying_factors`). `seed` fixes the tie-breaking between equally good splits.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    train_codes, train_factors, test_codes, test_factors = train_and_test(
        train_codes, train_factors, test_codes, test_factors
    )
    kept = varying_factors(train_factors)
    train_labels, test_labels = train_factors[:, kept], test_factors[:, kept]
    if estimator == "fast":
        model = fit_boosted_trees_parallel(train_codes, train_labels, test_codes, seed)
        importance = model.importances
        train_predictions, test_predictions = model.train_predictions, model.test_predictions
    else:
        rng = np.random.default_rng(seed)
        importance = np.zeros((train_codes.shape[1], len(kept)))
        train_predictions = np.zeros_like(train_labels)
        test_predictions = np.zeros_like(test_labels)
        for column in range(len(kept)):
            reference = GradientBoostingClassifier(random_state=int(rng.integers(2**31)))
            reference.fit(train_codes, train_labels[:, column])
            importance[:, column] = np.abs(reference.feature_importances_)
            train_predictions[:, column] = reference.predict(train_codes)
            test_predictions[:, column] = reference.predict(test_codes)
    train_accuracy = np.mean(train_predictions == train_labels, axis=0)
    test_accuracy = np.mean(test_predictions == test_labels, axis=0)
    return importance, train_accuracy, test_accuracy


def dci(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    estimator: str = "fast",
    seed: int = 0,
) -> dict[str, float]:
    """DCI scores: `disentanglement`, `completeness`, `informativeness_train`,
    `informativeness_test` (mean accuracy over factors)."""
    importance, train_accuracy, test_accuracy = importance_matrix(
        train_codes, train_factors, test_codes, test_factors, estimator, seed
    )
    return {
        "disentanglement": dci_disentanglement(importance),
        "completeness": dci_completeness(importance),
        "informativeness_train": float(np.mean(train_accuracy)),
        "informativeness_test": float(np.mean(test_accuracy)),
    }

"""Separated Attribute Predictability (Kumar et al. 2018), the reference library's `SAP_score`."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from tcwae.metrics._checks import train_and_test, varying_factors

_MIN_VARIANCE = 1e-12  # the reference scores a code with smaller variance 0


def sap_score_matrix(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    continuous: bool = False,
) -> np.ndarray:
    """Predictability of each factor from each single code `[codes, factors]`.

    Continuous: squared correlation on the train points. Discrete: test accuracy of a linear SVM
    (C=0.01, balanced classes) fitted on the code alone. Factors with a single value in the train
    points are left out.
    """
    train_codes, train_factors, test_codes, test_factors = train_and_test(
        train_codes, train_factors, test_codes, test_factors
    )
    kept = varying_factors(train_factors)
    train_factors, test_factors = train_factors[:, kept], test_factors[:, kept]
    if continuous:
        centred_codes = train_codes - train_codes.mean(axis=0)
        centred_factors = train_factors - train_factors.mean(axis=0)
        scale = len(train_codes) - 1
        covariance = centred_codes.T @ centred_factors / scale
        code_variance = (centred_codes**2).sum(axis=0) / scale
        factor_variance = (centred_factors**2).sum(axis=0) / scale
        scores = covariance**2 / np.outer(np.maximum(code_variance, _MIN_VARIANCE), factor_variance)
        scores[code_variance <= _MIN_VARIANCE] = 0.0
        return scores
    scores = np.zeros((train_codes.shape[1], len(kept)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        for code in range(train_codes.shape[1]):
            for factor in range(len(kept)):
                classifier = LinearSVC(C=0.01, class_weight="balanced")
                classifier.fit(train_codes[:, [code]], train_factors[:, factor])
                prediction = classifier.predict(test_codes[:, [code]])
                scores[code, factor] = np.mean(prediction == test_factors[:, factor])
    return scores


def sap(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    continuous: bool = False,
) -> float:
    """SAP: mean over factors of the gap between the two most predictive codes (with a single
    code, the gap to nothing: its own score)."""
    scores = sap_score_matrix(train_codes, train_factors, test_codes, test_factors, continuous)
    ranked = -np.sort(-scores, axis=0)
    second = ranked[1] if len(ranked) > 1 else np.zeros(ranked.shape[1])
    return float(np.mean(ranked[0] - second))

"""SAP: the reference library's `sap_score_test` cases (continuous), the discrete mode against
sklearn directly, and degenerate input."""

import numpy as np
import pytest
from metric_datasets import sample
from sklearn.svm import LinearSVC

from tcwae.metrics import sap, sap_score_matrix


def _train_test(num_points=3000):
    (train_codes, train_factors), (test_codes, test_factors) = (
        sample(num_points, seed=0),
        sample(num_points, seed=1),
    )
    return train_codes, train_factors, test_codes, test_factors


def test_identity_codes_score_near_one():
    train_codes, train_factors, test_codes, test_factors = _train_test()
    assert 0.9 <= sap(train_codes, train_factors, test_codes, test_factors, continuous=True) <= 1.0


def test_all_zero_codes_score_near_zero():
    train_codes, train_factors, test_codes, test_factors = _train_test()
    score = sap(0 * train_codes, train_factors, 0 * test_codes, test_factors, continuous=True)
    assert 0.0 <= score <= 0.2


def test_duplicated_codes_score_near_zero():
    train_codes, train_factors, test_codes, test_factors = _train_test()
    score = sap(
        np.hstack([train_codes, train_codes]),
        train_factors,
        np.hstack([test_codes, test_codes]),
        test_factors,
        continuous=True,
    )
    assert 0.0 <= score <= 0.2


def test_discrete_scores_are_the_reference_svm_accuracies():
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 4, size=(1200, 2))
    codes = np.column_stack([factors[:, 0] + 0.3 * rng.normal(size=1200), rng.normal(size=1200)])
    matrix = sap_score_matrix(codes[:800], factors[:800], codes[800:], factors[800:])
    for code in range(2):
        for factor in range(2):
            model = LinearSVC(C=0.01, class_weight="balanced")
            model.fit(codes[:800, [code]], factors[:800, factor])
            accuracy = np.mean(model.predict(codes[800:, [code]]) == factors[800:, factor])
            assert matrix[code, factor] == pytest.approx(accuracy)
    assert sap(codes[:800], factors[:800], codes[800:], factors[800:]) == pytest.approx(
        np.mean(np.abs(matrix[0] - matrix[1]))
    )


def test_single_code_and_constant_factor_are_defined():
    train_codes, train_factors, test_codes, test_factors = _train_test(1000)
    single = sap(train_codes[:, :1], train_factors, test_codes[:, :1], test_factors, True)
    assert single == pytest.approx(0.1, abs=0.01)  # factor 0 perfectly, the others not at all
    train_factors[:, 0] = 0
    kept = sap(train_codes, train_factors, test_codes, test_factors, continuous=True)
    assert 0.9 <= kept <= 1.0
    with pytest.raises(ValueError, match="single value"):
        sap(train_codes, 0 * train_factors, test_codes, test_factors)


def test_mismatched_train_and_test_raise_value_error():
    train_codes, train_factors, test_codes, test_factors = _train_test(100)
    with pytest.raises(ValueError, match="dimensions"):
        sap(train_codes, train_factors, test_codes[:, :3], test_factors)
    with pytest.raises(ValueError, match="points"):
        sap(train_codes, train_factors[:50], test_codes, test_factors)

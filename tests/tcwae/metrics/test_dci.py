"""DCI: the reference library's `dci_test` cases (importance matrices and the identity data), the
fast estimator against sklearn's gradient boosting, and degenerate input."""

import numpy as np
import pytest
from metric_datasets import sample
from scipy.stats import ortho_group

from tcwae.metrics import dci, dci_completeness, dci_disentanglement, importance_matrix

DIAGONAL = np.diag(5.0 * np.ones(5))
ONE_MINUS_LN2_LN10 = 1.0 - np.log(2) / np.log(10)

IMPORTANCE_CASES = {
    # name: (matrix, disentanglement, completeness)
    "diagonal": (DIAGONAL, 1.0, 1.0),
    "diagonal_empty_codes": (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 1.0, 1.0),
    "zero": (np.zeros((10, 10)), 0.0, 0.0),
    "redundant_codes": (np.vstack([DIAGONAL, DIAGONAL]), 1.0, ONE_MINUS_LN2_LN10),
    "missed_factors": (DIAGONAL[:2, :], 1.0, 1.0),
    "one_code_two_factors": (np.hstack([DIAGONAL, DIAGONAL]), ONE_MINUS_LN2_LN10, 1.0),
}


@pytest.mark.parametrize("name", IMPORTANCE_CASES)
def test_importance_matrix_cases_match_the_reference(name):
    matrix, disentanglement, completeness = IMPORTANCE_CASES[name]
    np.testing.assert_allclose(dci_disentanglement(matrix), disentanglement, atol=1e-7)
    np.testing.assert_allclose(dci_completeness(matrix), completeness, atol=1e-7)


def _split(codes, factors, num_train=1000):
    return codes[:num_train], factors[:num_train], codes[num_train:], factors[num_train:]


def test_identity_codes_score_near_one():
    codes, factors = sample(2000)
    scores = dci(*_split(codes, factors))
    assert 0.9 <= scores["disentanglement"] <= 1.0
    assert 0.9 <= scores["completeness"] <= 1.0
    assert scores["informativeness_test"] == pytest.approx(1.0)


def test_codes_independent_of_the_factors_score_near_zero():
    codes, factors = sample(2000)
    rng = np.random.default_rng(0)
    shuffled = np.stack([rng.permutation(column) for column in codes.T], axis=1)
    scores = dci(*_split(shuffled, factors))
    assert 0.0 <= scores["disentanglement"] <= 0.2
    assert 0.0 <= scores["completeness"] <= 0.2


def test_duplicated_codes_split_completeness():
    codes, factors = sample(2000)
    scores = dci(*_split(np.hstack([codes, codes]), factors))
    assert 0.9 <= scores["disentanglement"] <= 1.0
    assert abs(scores["completeness"] - ONE_MINUS_LN2_LN10) <= 0.1


def _representations():
    """Factor sizes include a binary factor (sklearn fits one tree per stage for it)."""
    rng = np.random.default_rng(7)
    factor_sizes = np.array([4, 3, 5, 2])
    factors = rng.integers(0, factor_sizes, size=(900, 4))
    standardised = factors / (factor_sizes - 1) * 2 - 1
    rotation = ortho_group.rvs(4, random_state=3)
    return factors, {
        "identity": standardised,
        "rotation": standardised @ rotation,
        "noisy": standardised + 0.3 * rng.normal(size=standardised.shape),
        "duplicated": np.hstack([standardised, standardised]),
    }


@pytest.mark.parametrize("name", ["identity", "rotation", "noisy", "duplicated"])
def test_fast_estimator_agrees_with_sklearn_gradient_boosting(name):
    factors, representations = _representations()
    split = _split(representations[name], factors, num_train=600)
    fast = dci(*split, estimator="fast")
    reference = dci(*split, estimator="sklearn-gbt")
    assert fast["disentanglement"] == pytest.approx(reference["disentanglement"], abs=0.05)
    assert fast["completeness"] == pytest.approx(reference["completeness"], abs=0.05)
    assert fast["informativeness_test"] == pytest.approx(
        reference["informativeness_test"], abs=0.05
    )


def test_fast_importances_equal_sklearn_when_every_value_has_its_own_bin():
    factors, representations = _representations()
    codes = np.round(representations["rotation"], 2)  # fewer distinct values than bins
    split = _split(codes, factors, num_train=600)
    fast, _, _ = importance_matrix(*split, estimator="fast")
    reference, _, _ = importance_matrix(*split, estimator="sklearn-gbt")
    np.testing.assert_allclose(fast, reference, atol=0.02)


def test_degenerate_input_is_defined_or_rejected():
    codes, factors = sample(600, factor_sizes=(3, 4, 5))
    constant = dci(*_split(np.zeros_like(codes), factors, 400))
    assert constant["disentanglement"] == pytest.approx(0.0, abs=1e-7)
    assert constant["completeness"] == pytest.approx(0.0, abs=1e-7)
    single = dci(*_split(codes[:, :1], factors, 400))
    assert single["completeness"] == pytest.approx(1.0)
    factors[:, 1] = 2
    kept = dci(*_split(codes, factors, 400))
    assert kept["disentanglement"] >= 0.9  # the constant factor is left out
    with pytest.raises(ValueError, match="estimator"):
        dci(*_split(codes, factors, 400), estimator="lightgbm")
    with pytest.raises(ValueError, match="NaN"):
        dci(np.full((400, 3), np.nan), factors[:400], codes[400:], factors[400:])
    with pytest.raises(ValueError, match="importance"):
        dci_disentanglement(np.zeros(3))

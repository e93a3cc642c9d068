"""MIG: the reference library's `mig_test` cases on the identity data, and degenerate input."""

import numpy as np
import pytest
from metric_datasets import sample

from tcwae.metrics import mig


def test_identity_codes_score_near_one():
    codes, factors = sample(3000)
    assert 0.9 <= mig(codes, factors) <= 1.0


def test_all_zero_codes_score_near_zero():
    codes, factors = sample(3000)
    assert 0.0 <= mig(np.zeros_like(codes), factors) <= 0.2


def test_duplicated_codes_score_near_zero():
    codes, factors = sample(3000)
    assert 0.0 <= mig(np.hstack([codes, codes]), factors) <= 0.1


def test_matches_the_reference_formula_on_random_codes():
    from sklearn.metrics import mutual_info_score

    rng = np.random.default_rng(3)
    factors = rng.integers(0, 5, size=(1000, 3))
    codes = factors @ rng.normal(size=(3, 4)) + rng.normal(size=(1000, 4))
    binned = np.stack([np.digitize(c, np.histogram(c, 20)[1][:-1]) for c in codes.T], axis=1)
    mutual_info = np.array(
        [[mutual_info_score(factors[:, j], binned[:, i]) for j in range(3)] for i in range(4)]
    )
    entropy = np.array([mutual_info_score(f, f) for f in factors.T])
    ranked = np.sort(mutual_info, axis=0)[::-1]
    expected = np.mean((ranked[0] - ranked[1]) / entropy)
    assert mig(codes, factors) == pytest.approx(expected, abs=1e-12)


def test_a_single_code_dimension_gaps_against_nothing():
    codes, factors = sample(2000)
    score = mig(codes[:, :1], factors)
    assert score == pytest.approx(0.1, abs=0.01)  # one factor of ten captured completely


def test_a_factor_with_one_value_is_left_out():
    codes, factors = sample(2000)
    factors[:, 3] = 7
    assert mig(codes, factors) == pytest.approx(mig(codes, np.delete(factors, 3, axis=1)))
    with pytest.raises(ValueError, match="single value"):
        mig(codes, np.zeros_like(factors))


def test_bad_input_raises_value_error():
    codes, factors = sample(100)
    with pytest.raises(ValueError, match="points"):
        mig(codes[:50], factors)
    codes[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mig(codes, factors)
    with pytest.raises(ValueError, match="integer"):
        mig(np.ones((100, 2)), np.full((100, 1), 0.5))

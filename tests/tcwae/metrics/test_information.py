"""Discretisation, entropy and mutual information: the reference library's `utils_test` cases."""

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from tcwae.metrics import discrete_entropy, discrete_mutual_info, histogram_discretize


def test_histogram_discretize_matches_reference_case():
    codes = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]]).T
    expected = np.array([[1, 1, 2, 2, 3, 3], [3, 3, 2, 2, 1, 1]]).T
    np.testing.assert_array_equal(histogram_discretize(codes, num_bins=3), expected)


def test_histogram_discretize_matches_numpy_histogram_binning():
    codes = np.random.default_rng(0).normal(size=(500, 4))
    binned = histogram_discretize(codes, num_bins=20)
    for dim in range(4):
        edges = np.histogram(codes[:, dim], 20)[1]
        np.testing.assert_array_equal(binned[:, dim], np.digitize(codes[:, dim], edges[:-1]))
    assert binned.min() == 1 and binned.max() == 20


def test_histogram_discretize_puts_a_constant_dimension_in_one_bin():
    binned = histogram_discretize(np.full((10, 2), 3.0))
    assert len(np.unique(binned[:, 0])) == 1


def test_discrete_entropy_matches_reference_case():
    labels = np.array([[1, 1, 2, 2, 3, 3], [3, 3, 2, 2, 1, 1]]).T
    np.testing.assert_allclose(discrete_entropy(labels), [np.log(3), np.log(3)])


def test_discrete_mutual_info_matches_reference_case():
    first = np.array([[1, 2, 1, 2], [1, 1, 2, 2]]).T
    second = np.array([[1, 2, 1, 2], [2, 2, 1, 1]]).T
    expected = np.array([[np.log(2), 0.0], [0.0, np.log(2)]])
    np.testing.assert_allclose(discrete_mutual_info(first, second), expected, atol=1e-12)


def test_discrete_mutual_info_equals_sklearn_for_every_pair():
    rng = np.random.default_rng(1)
    first = rng.integers(0, 20, size=(2000, 6))
    second = rng.integers(-3, 7, size=(2000, 4))
    second[:, 0] = first[:, 0] // 3
    result = discrete_mutual_info(first, second)
    expected = np.array(
        [[mutual_info_score(second[:, j], first[:, i]) for j in range(4)] for i in range(6)]
    )
    np.testing.assert_allclose(result, expected, atol=1e-12)


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        (np.array([[0.0, np.nan], [1.0, 2.0]]), "NaN"),
        (np.zeros(5), "2-D"),
        (np.zeros((1, 3)), "at least 2 points"),
    ],
)
def test_histogram_discretize_rejects_bad_codes(codes, message):
    with pytest.raises(ValueError, match=message):
        histogram_discretize(codes)


def test_discrete_mutual_info_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="points"):
        discrete_mutual_info(np.zeros((5, 2)), np.zeros((4, 2)))


def test_continuous_discrete_mutual_info_handles_tied_codes_and_single_label_points():
    from tcwae.metrics import continuous_discrete_mutual_info

    labels = np.random.default_rng(2).integers(0, 2, size=(4000, 1))
    codes = labels.astype(np.float64)  # every code value tied with half of the points
    estimate = continuous_discrete_mutual_info(codes, labels)
    assert estimate[0, 0] == pytest.approx(discrete_entropy(labels)[0], abs=0.01)
    labels[0, 0] = 5  # a label seen once is left out, as sklearn does
    assert continuous_discrete_mutual_info(codes, labels)[0, 0] == pytest.approx(
        estimate[0, 0], abs=0.01
    )
    with pytest.raises(ValueError, match="points"):
        continuous_discrete_mutual_info(codes[:10], labels)

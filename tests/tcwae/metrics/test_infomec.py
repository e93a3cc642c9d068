"""InfoMEC on identity, random and permuted codes; modularity (the reference library's
`modularity_explicitness_test` matrices) and explicitness."""

import numpy as np
import pytest
from metric_datasets import sample

from tcwae.metrics import explicitness, infomec, modularity, normalised_mutual_info

DIAGONAL = np.diag(5.0 * np.ones(5))

MODULARITY_CASES = {
    "diagonal": (DIAGONAL, 1.0),
    "diagonal_empty_codes": (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 2.0 / 3.0),
    "zero": (np.zeros((10, 10)), 0.0),
    "redundant_codes": (np.vstack([DIAGONAL, DIAGONAL]), 1.0),
    "missed_factors": (DIAGONAL[:2, :], 1.0),
    "one_code_two_factors": (np.hstack([DIAGONAL, DIAGONAL]), 1.0 - 1.0 / 9),
}


@pytest.mark.parametrize("name", MODULARITY_CASES)
def test_modularity_matrix_cases_match_the_reference(name):
    matrix, expected = MODULARITY_CASES[name]
    np.testing.assert_allclose(modularity(matrix), expected)


def test_modularity_with_a_single_factor_is_defined():
    assert modularity(np.array([[0.5], [0.0]])) == pytest.approx(0.5)


def test_identity_codes_score_near_one():
    codes, factors = sample(3000, factor_sizes=(6,) * 5)
    scores = infomec(codes, factors)
    assert scores["infom"] >= 0.9
    assert scores["infoc"] >= 0.9
    assert scores["infoe"] >= 0.95


def test_random_codes_carry_no_information():
    _, factors = sample(5000, factor_sizes=(6,) * 5)
    codes = np.random.default_rng(1).normal(size=(5000, 5))
    assert normalised_mutual_info(codes, factors).max() <= 0.02
    # InfoM and InfoC are ratios within the NMI matrix, so for codes without information they
    # compare estimation noise (as in the reference); InfoE measures the information itself
    assert 0.0 <= infomec(codes, factors)["infoe"] <= 0.02


def test_nmi_matches_sklearn_mutual_info_classif():
    from sklearn.feature_selection import mutual_info_classif
    from sklearn.metrics import mutual_info_score

    rng = np.random.default_rng(4)
    factors = rng.integers(0, 5, size=(1500, 2))
    codes = np.column_stack([factors[:, 0] + rng.normal(size=1500), rng.normal(size=1500)])
    nmi = normalised_mutual_info(codes, factors)
    for i in range(2):
        entropy = mutual_info_score(factors[:, i], factors[:, i])
        for j in range(2):
            expected = mutual_info_classif(
                codes[:, [j]], factors[:, i], n_neighbors=10, random_state=0
            )[0]
            assert nmi[i, j] == pytest.approx(expected / entropy, abs=1e-4)


def test_permuting_codes_leaves_infom_and_infoc_unchanged():
    codes, factors = sample(2000, factor_sizes=(6,) * 5)
    rng = np.random.default_rng(2)
    mixed = codes + 0.5 * codes[:, ::-1] + rng.normal(size=codes.shape)
    permuted = mixed[:, rng.permutation(5)]
    original, shuffled = infomec(mixed, factors), infomec(permuted, factors)
    assert shuffled["infom"] == pytest.approx(original["infom"], abs=1e-12)
    assert shuffled["infoc"] == pytest.approx(original["infoc"], abs=1e-12)
    assert 0.1 < original["infom"] < 0.9  # partly disentangled: the check is not vacuous


def test_normalised_mutual_info_is_one_for_a_copied_factor():
    codes, factors = sample(2000, factor_sizes=(4, 5))
    nmi = normalised_mutual_info(codes, factors, discrete_latents=True)
    np.testing.assert_allclose(np.diag(nmi), 1.0)
    assert nmi.shape == (2, 2)


def test_discrete_latents_and_inactive_codes():
    codes, factors = sample(2000, factor_sizes=(4, 5, 3))
    discrete = infomec(codes, factors, discrete_latents=True)
    assert discrete["infom"] >= 0.9 and discrete["infoe"] >= 0.95
    padded = np.hstack([codes, np.full((2000, 2), 0.25), 1e-3 * codes[:, :1]])
    assert infomec(padded, factors)["infom"] == pytest.approx(infomec(codes, factors)["infom"])
    assert infomec(np.zeros_like(codes), factors) == {"infom": 0.0, "infoc": 0.0, "infoe": 0.0}


def test_single_code_and_constant_factor_are_defined():
    codes, factors = sample(2000, factor_sizes=(4, 5, 3))
    single = infomec(codes[:, :1], factors)
    # one code: factor 0 is compact, the two factors it carries nothing about count as 0
    assert single["infoc"] == pytest.approx(1 / 3)
    factors[:, 1] = 0
    assert infomec(codes, factors) == infomec(codes, np.delete(factors, 1, axis=1))
    with pytest.raises(ValueError, match="NaN"):
        infomec(np.full_like(codes, np.nan), factors)


def test_explicitness_separates_good_from_random_codes():
    codes, factors = sample(3000, factor_sizes=(4, 5, 3))
    good = explicitness(codes[:2000], factors[:2000], codes[2000:], factors[2000:])
    noise = np.random.default_rng(0).normal(size=codes.shape)
    bad = explicitness(noise[:2000], factors[:2000], noise[2000:], factors[2000:])
    assert good["test"] >= 0.9
    assert 0.4 <= bad["test"] <= 0.6

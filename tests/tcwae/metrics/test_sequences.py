"""Judged scores of generated sequences: IS, H(y|x), H(y), balancing, kept-factor accuracy."""

import math

import numpy as np
import pytest

from tcwae.metrics.sequences import (
    balanced_rows,
    binomial_standard_error,
    bootstrap_standard_error,
    conditional_entropy,
    inception_score,
    joint_labels,
    joint_probabilities,
    kept_factor_scores,
    marginal_entropy,
)


def test_entropies_and_inception_score_of_sure_and_unsure_judges() -> None:
    sure = np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]]  # confident and even over 4 classes
    unsure = np.full((8, 4), 0.25)
    assert conditional_entropy(sure) == pytest.approx(0.0, abs=1e-12)
    assert marginal_entropy(sure) == pytest.approx(math.log(4))
    assert inception_score(sure) == pytest.approx(4.0)
    assert conditional_entropy(unsure) == pytest.approx(math.log(4))
    assert inception_score(unsure) == pytest.approx(1.0)
    collapsed = np.eye(4)[[2] * 8]  # confident but always the same class
    assert marginal_entropy(collapsed) == pytest.approx(0.0, abs=1e-12)
    assert inception_score(collapsed) == pytest.approx(1.0)


def test_inception_score_by_hand() -> None:
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    marginal = np.array([0.75, 0.25])
    kl_first = math.log(1 / 0.75)
    kl_second = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert inception_score(probs) == pytest.approx(math.exp((kl_first + kl_second) / 2))
    assert marginal_entropy(probs) == pytest.approx(-(marginal * np.log(marginal)).sum())
    assert conditional_entropy(probs) == pytest.approx(math.log(2) / 2)
    # IS = exp(H(y) - H(y|x)) for any predictions.
    rng = np.random.default_rng(0)
    random = rng.dirichlet(np.ones(5), size=50)
    expected = math.exp(marginal_entropy(random) - conditional_entropy(random))
    assert inception_score(random) == pytest.approx(expected, rel=1e-9)


def test_balanced_rows_take_the_rarest_class_count_of_each() -> None:
    np.testing.assert_array_equal(balanced_rows(np.array([0, 0, 1, 2, 2, 2])), [0, 2, 3])
    np.testing.assert_array_equal(balanced_rows(np.array([5, 3, 5, 3])), [1, 3, 0, 2])


def test_joint_probabilities_and_labels_in_mixed_radix_order() -> None:
    first = np.array([[0.2, 0.8]])
    second = np.array([[0.1, 0.3, 0.6]])
    expected = [[0.02, 0.06, 0.12, 0.08, 0.24, 0.48]]
    np.testing.assert_allclose(joint_probabilities([first, second]), expected)
    np.testing.assert_array_equal(joint_labels(np.array([[1, 2], [0, 1]]), (2, 3)), [5, 1])


def test_kept_factor_scores_of_a_perfect_and_of_a_blind_judge() -> None:
    names, sizes = ("shape", "motion", "rotation"), (3, 4, 2)
    factors = np.stack(np.unravel_index(np.arange(24), sizes), axis=1)  # every combination once
    perfect = {
        name: np.eye(size)[factors[:, k]]
        for k, (name, size) in enumerate(zip(names, sizes, strict=True))
    }
    scores = kept_factor_scores(perfect, factors, names, sizes, ("motion", "rotation"))
    assert scores["acc"] == scores["acc_motion"] == scores["acc_rotation"] == 1.0
    assert scores["is"] == pytest.approx(8.0) and scores["h_y"] == pytest.approx(math.log(8))
    assert scores["h_y_given_x"] == pytest.approx(0.0, abs=1e-12)
    kept = {"acc", "acc_motion", "acc_rotation", "is", "h_y", "h_y_given_x"}
    assert set(scores) == kept | {"resampled_acc", "resampled_acc_shape"}
    assert scores["resampled_acc"] == scores["resampled_acc_shape"] == 1.0  # shape kept too

    blind = dict(perfect, motion=np.eye(4)[np.zeros(24, dtype=int)])  # always says motion 0
    scores = kept_factor_scores(blind, factors, names, sizes, ("motion", "rotation"))
    assert scores["acc_motion"] == pytest.approx(0.25) and scores["acc_rotation"] == 1.0
    assert scores["acc"] == pytest.approx(0.25)
    assert scores["is"] == pytest.approx(2.0)  # only rotation is told apart


def test_resampled_accuracy_and_standard_errors() -> None:
    names, sizes = ("shape", "motion"), (3, 4)
    factors = np.tile(np.stack(np.unravel_index(np.arange(12), sizes), axis=1), (10, 1))
    rng = np.random.default_rng(0)
    # The judge sees the kept motion; the shape was redrawn, so it is right a third of the time.
    drawn = rng.integers(3, size=len(factors))
    probs = {"shape": np.eye(3)[drawn], "motion": np.eye(4)[factors[:, 1]]}
    scores = kept_factor_scores(probs, factors, names, sizes, ("motion",), rng)
    assert scores["acc"] == 1.0 and scores["acc_se"] == 0.0
    expected = float((drawn == factors[:, 0]).mean())
    assert scores["resampled_acc"] == scores["resampled_acc_shape"] == expected
    assert scores["resampled_acc_se"] == pytest.approx(math.sqrt(expected * (1 - expected) / 120))
    # Sure and balanced predictions: every bootstrap replicate gives the same IS and entropies.
    for name in ("is", "h_y", "h_y_given_x"):
        assert scores[f"{name}_se"] == pytest.approx(0.0, abs=1e-9)
    assert binomial_standard_error(0.5, 100) == pytest.approx(0.05)


def test_bootstrap_standard_error_of_a_mean_matches_the_formula() -> None:
    rng = np.random.default_rng(1)
    values = rng.random((400, 1))
    probs = np.concatenate([values, 1 - values], axis=1)
    labels = np.zeros(400, dtype=int)
    se = bootstrap_standard_error(lambda p: float(p[:, 0].mean()), probs, labels, rng, 400)
    assert se == pytest.approx(values.std() / math.sqrt(400), rel=0.15)


def test_probabilities_must_be_rows_that_sum_to_one() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        inception_score(np.array([[0.5, 0.6]]))
    with pytest.raises(ValueError, match=r"\[n >= 1, classes\]"):
        marginal_entropy(np.zeros((0, 3)))

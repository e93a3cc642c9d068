"""FactorVAE score: the reference library's `factor_vae_test` cases, active dimensions counted
right, and the encoder cache (each distinct observation encoded once)."""

import numpy as np
import pytest
from metric_datasets import IdentityData, identity, zeros

from tcwae.metrics import CachedEncoder, cached_encoder, factor_vae_score

REFERENCE_SIZES = {
    "batch_size": 5,
    "num_train": 3000,
    "num_eval": 2000,
    "num_variance_estimate": 2500,
}


def test_identity_codes_score_near_one():
    scores = factor_vae_score(IdentityData(), identity, np.random.default_rng(0), **REFERENCE_SIZES)
    assert 0.9 <= scores["train_accuracy"] <= 1.0
    assert 0.9 <= scores["eval_accuracy"] <= 1.0
    assert scores["num_active_dims"] == 10


def test_all_zero_codes_score_zero_with_no_active_dimension():
    scores = factor_vae_score(IdentityData(), zeros, np.random.default_rng(0), **REFERENCE_SIZES)
    assert 0.0 <= scores["train_accuracy"] <= 0.2
    assert 0.0 <= scores["eval_accuracy"] <= 0.2
    assert scores["num_active_dims"] == 0


def test_active_dimensions_are_the_ones_kept():
    def half_collapsed(observations):
        codes = identity(observations)
        codes[:, 6:] *= 0.001  # standard deviation ~0.003 < 0.05: pruned
        return codes

    scores = factor_vae_score(
        IdentityData(), half_collapsed, np.random.default_rng(0), **REFERENCE_SIZES
    )
    assert scores["num_active_dims"] == 6
    # votes for factors 6..9 land on some active dimension and are mostly wrong
    assert 0.5 <= scores["eval_accuracy"] <= 0.8


def test_a_factor_with_one_value_is_never_the_fixed_one():
    data = IdentityData((10, 10, 1, 10))
    scores = factor_vae_score(data, identity, np.random.default_rng(0), **REFERENCE_SIZES)
    assert scores["eval_accuracy"] >= 0.95
    with pytest.raises(ValueError, match="single value"):
        factor_vae_score(IdentityData((1, 1)), identity, np.random.default_rng(0))


def test_nan_codes_raise_value_error():
    def broken(observations):
        codes = identity(observations)
        codes[0, 0] = np.nan
        return codes

    with pytest.raises(ValueError, match="NaN"):
        factor_vae_score(IdentityData(), broken, np.random.default_rng(0), **REFERENCE_SIZES)


class CountingRepresent:
    """Identity codes that remember which observations it was asked to encode."""

    def __init__(self):
        self.rows: list[np.ndarray] = []

    def __call__(self, observations):
        self.rows.append(np.asarray(observations).copy())
        return identity(observations)


@pytest.mark.parametrize("with_index", [True, False])
def test_cached_encoder_encodes_each_distinct_observation_once(with_index):
    data = IdentityData((3, 4, 5), with_index=with_index)
    represent = CountingRepresent()
    encoder = CachedEncoder(data, represent, batch_size=7)
    rng = np.random.default_rng(0)
    first, second = data.sample_factors(200, rng), data.sample_factors(300, rng)
    np.testing.assert_array_equal(encoder(first), first)
    np.testing.assert_array_equal(encoder(second), second)
    encoded = np.concatenate(represent.rows)
    assert len(encoded) == len(np.unique(encoded, axis=0)) == encoder.num_encoded
    assert encoder.num_encoded == len(np.unique(np.concatenate([first, second]), axis=0))
    assert max(len(rows) for rows in represent.rows) <= 7


def test_factor_vae_score_shares_the_evaluation_cache():
    data = IdentityData((4, 5, 6))
    represent = CountingRepresent()
    encoder = cached_encoder(data, represent)
    sizes = {"num_train": 500, "num_eval": 300, "num_variance_estimate": 400, "batch_size": 8}
    first = factor_vae_score(data, represent, np.random.default_rng(0), **sizes, encoder=encoder)
    calls = len(represent.rows)
    again = factor_vae_score(data, represent, np.random.default_rng(0), **sizes, encoder=encoder)
    assert again == first
    assert len(represent.rows) == calls  # the second run found every code in the cache
    assert encoder.num_encoded <= 4 * 5 * 6
    with pytest.raises(ValueError, match="different dataset"):
        factor_vae_score(
            IdentityData((4, 5, 6)), represent, np.random.default_rng(0), encoder=encoder
        )


def test_encoder_rejects_codes_of_the_wrong_shape():
    encoder = CachedEncoder(IdentityData((3, 3)), lambda observations: np.zeros(len(observations)))
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        encoder(np.zeros((4, 2), dtype=np.int64))

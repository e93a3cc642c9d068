"""`evaluate`: every score, the profile sizes recorded, one encoding per distinct observation."""

import time

import numpy as np
import pytest
from metric_datasets import IdentityData, identity

from tcwae.config import EVAL_PROFILES
from tcwae.metrics import PROFILES, evaluate

SCORE_KEYS = {
    "mig",
    "factor_vae",
    "factor_vae_train",
    "factor_vae_active_dims",
    "sap",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness_train",
    "dci_informativeness_test",
    "infom",
    "infoc",
    "infoe",
    "modularity",
}


class CountingRepresent:
    def __init__(self):
        self.encoded: list[np.ndarray] = []

    def __call__(self, observations):
        self.encoded.append(np.asarray(observations).copy())
        return identity(observations)


def test_smoke_profile_scores_identity_codes_quickly():
    data = IdentityData((4, 5, 6, 3))
    represent = CountingRepresent()
    start = time.process_time()
    scores = evaluate(data, represent, np.random.default_rng(0), "smoke")
    assert time.process_time() - start < 10.0
    assert SCORE_KEYS <= set(scores)
    assert all(isinstance(value, float) for value in scores.values())
    for name, value in PROFILES["smoke"].metric_sizes.items():
        assert scores[f"eval_{name}"] == value
    for key in ("mig", "factor_vae", "dci_disentanglement", "dci_completeness", "infoe"):
        assert scores[key] >= 0.8, key
    assert scores["factor_vae_active_dims"] == 4
    encoded = np.concatenate(represent.encoded)
    assert len(encoded) == len(np.unique(encoded, axis=0)) == scores["eval_encoded"]
    assert scores["eval_encoded"] <= 4 * 5 * 6 * 3


def test_same_generator_seed_gives_the_same_scores():
    data = IdentityData((4, 5, 6, 3))
    first = evaluate(data, identity, np.random.default_rng(5), "smoke")
    assert evaluate(data, identity, np.random.default_rng(5), "smoke") == first


def test_profiles_name_the_reference_sizes_and_smaller_ones():
    assert set(PROFILES) == set(EVAL_PROFILES)  # what TrainConfig.eval_profile accepts
    paper, quick, smoke, rung = (
        PROFILES[name].metric_sizes for name in ("paper", "quick", "smoke", "rung")
    )
    assert paper["num_train"] == 10_000
    assert paper["num_test"] == 5_000
    assert paper["factor_vae_batch"] == 64
    assert PROFILES["paper"].rec_images == 10_000
    for name in paper:
        assert smoke[name] <= quick[name] <= paper[name]
        assert smoke[name] <= rung[name] <= quick[name]
    assert PROFILES["smoke"].rec_images <= PROFILES["quick"].rec_images <= 10_000
    assert PROFILES["smoke"].rec_images <= PROFILES["rung"].rec_images


def test_a_subset_of_scores_equals_the_full_call_and_skips_the_rest():
    data = IdentityData((4, 5, 6, 3))
    full = evaluate(data, identity, np.random.default_rng(5), "smoke")
    wanted = {"mig", "factor_vae", "sap"}
    subset = evaluate(data, identity, np.random.default_rng(5), "smoke", scores=wanted)
    assert {key for key in subset if not key.startswith("eval_")} == wanted
    assert {key: subset[key] for key in wanted} == {key: full[key] for key in wanted}
    nothing = evaluate(data, identity, np.random.default_rng(5), "smoke", scores=())
    assert set(nothing) == {key for key in full if key.startswith("eval_")}
    assert nothing["eval_encoded"] < subset["eval_encoded"]  # no FactorVAE votes encoded
    with pytest.raises(ValueError, match="unknown score 'rec'"):
        evaluate(data, identity, np.random.default_rng(5), "smoke", scores={"rec", "mig"})


def test_bad_profile_or_factorless_dataset_raise_value_error():
    with pytest.raises(ValueError, match="profile"):
        evaluate(IdentityData((3, 3)), identity, np.random.default_rng(0), "full")
    with pytest.raises(ValueError, match="no ground-truth factors"):
        evaluate(IdentityData(()), identity, np.random.default_rng(0), "smoke")

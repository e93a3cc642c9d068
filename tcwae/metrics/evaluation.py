"""Every score of one model in one call, with sample sizes named by profile (`tcwae.eval_profiles`).

All array metrics share one train draw and one test draw (each metric's value has the distribution
it would have with its own draw), and every code comes through one `CachedEncoder`, so each
distinct observation is encoded once per evaluation.
"""

from __future__ import annotations

import numpy as np

from tcwae.eval_profiles import PROFILES
from tcwae.metrics._checks import varying_factors
from tcwae.metrics.dci_scores import dci
from tcwae.metrics.factor_vae import GroundTruthData, Represent, cached_encoder, factor_vae_score
from tcwae.metrics.info_metrics import infomec, modularity
from tcwae.metrics.information import discrete_entropy
from tcwae.metrics.mutual_info_gap import mig_from_mutual_info, mutual_info_matrix
from tcwae.metrics.sap_score import sap


def evaluate(
    dataset: GroundTruthData,
    represent: Represent,
    rng: np.random.Generator,
    profile: str,
) -> dict[str, float]:
    """All disentanglement scores of `represent` on `dataset`, plus the `eval_*` sample sizes and
    `eval_encoded` (distinct observations encoded)."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {tuple(PROFILES)}, got {profile!r}")
    if len(dataset.factor_sizes) == 0:
        raise ValueError("the dataset has no ground-truth factors to score against")
    sizes = PROFILES[profile].metric_sizes
    encoder = cached_encoder(dataset, represent)
    train_factors = dataset.sample_factors(sizes["num_train"], rng)
    test_factors = dataset.sample_factors(sizes["num_test"], rng)
    train_codes, test_codes = encoder(train_factors), encoder(test_factors)
    factor_vae = factor_vae_score(
        dataset,
        represent,
        rng,
        num_train=sizes["factor_vae_train"],
        num_eval=sizes["factor_vae_eval"],
        num_variance_estimate=sizes["factor_vae_variance"],
        batch_size=sizes["factor_vae_batch"],
        encoder=encoder,
    )
    varying = train_factors[:, varying_factors(train_factors)]
    mutual_info = mutual_info_matrix(train_codes, varying)
    scores = dci(
        train_codes, train_factors, test_codes, test_factors, seed=int(rng.integers(2**31))
    )
    info = infomec(train_codes, train_factors)
    results = {
        "mig": mig_from_mutual_info(mutual_info, discrete_entropy(varying)),
        "factor_vae": factor_vae["eval_accuracy"],
        "factor_vae_train": factor_vae["train_accuracy"],
        "factor_vae_active_dims": factor_vae["num_active_dims"],
        "sap": sap(train_codes, train_factors, test_codes, test_factors),
        "dci_disentanglement": scores["disentanglement"],
        "dci_completeness": scores["completeness"],
        "dci_informativeness_train": scores["informativeness_train"],
        "dci_informativeness_test": scores["informativeness_test"],
        "infom": info["infom"],
        "infoc": info["infoc"],
        "infoe": info["infoe"],
        "modularity": modularity(mutual_info),
    }
    results.update({f"eval_{name}": float(value) for name, value in sizes.items()})
    results["eval_encoded"] = float(encoder.num_encoded)
    return results

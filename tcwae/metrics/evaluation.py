"""Every score of one model in one call, with sample sizes named by profile (`tcwae.eval_profiles`).

All array metrics share one train draw and one test draw (each metric's value has the distribution
it would have with its own draw), and every code comes through one `CachedEncoder`, so each
distinct observation is encoded once per evaluation. `scores` restricts the call to some scores
(a successive-halving rung needs MIG, FactorVAE score and SAP, not DCI's boosted trees); the
scores it computes are the values a full call with the same generator gives.

Quantised models (FactorQVAE, QVAE) pass their `codebook`: their codes are discrete, so InfoMEC
runs in its discrete mode and DCI's trees read each latent's code index, as the FactorQVAE
reference code scores them; MIG, SAP and the FactorVAE score read the code values.
"""

from __future__ import annotations

from collections.abc import Collection
from types import MappingProxyType

import numpy as np

from tcwae.eval_profiles import PROFILES
from tcwae.metrics._checks import varying_factors
from tcwae.metrics.dci_scores import dci
from tcwae.metrics.factor_vae import GroundTruthData, Represent, cached_encoder, factor_vae_score
from tcwae.metrics.info_metrics import infomec, modularity
from tcwae.metrics.information import discrete_entropy
from tcwae.metrics.mutual_info_gap import mig_from_mutual_info, mutual_info_matrix
from tcwae.metrics.sap_score import sap


def code_indices(codes: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """The index in `codebook` [K] of each code value of `codes` [n, d] (its nearest entry)."""
    codebook = np.asarray(codebook, dtype=np.float64).reshape(-1)
    return np.abs(np.asarray(codes, dtype=np.float64)[..., None] - codebook).argmin(axis=-1)


# The scores `evaluate` returns, grouped by the computation that yields them.
SCORE_GROUPS = MappingProxyType(
    {
        "mig": ("mig",),
        "factor_vae": ("factor_vae", "factor_vae_train", "factor_vae_active_dims"),
        "sap": ("sap",),
        "dci": (
            "dci_disentanglement",
            "dci_completeness",
            "dci_informativeness_train",
            "dci_informativeness_test",
        ),
        "infomec": ("infom", "infoc", "infoe"),
        "modularity": ("modularity",),
    }
)
SCORE_NAMES = tuple(name for names in SCORE_GROUPS.values() for name in names)


def evaluate(
    dataset: GroundTruthData,
    represent: Represent,
    rng: np.random.Generator,
    profile: str,
    scores: Collection[str] | None = None,
    codebook: np.ndarray | None = None,
) -> dict[str, float]:
    """The disentanglement scores of `represent` on `dataset` (all of SCORE_NAMES, or those in
    `scores`), plus the `eval_*` sample sizes and `eval_encoded` (distinct observations encoded).
    `codebook` (the code values of a quantised model, in index order) marks the codes as
    discrete."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {tuple(PROFILES)}, got {profile!r}")
    if len(dataset.factor_sizes) == 0:
        raise ValueError("the dataset has no ground-truth factors to score against")
    wanted = set(SCORE_NAMES if scores is None else scores)
    unknown = sorted(wanted - set(SCORE_NAMES))
    if unknown:
        raise ValueError(f"unknown score {unknown[0]!r}; evaluate computes {SCORE_NAMES}")
    groups = {group for group, names in SCORE_GROUPS.items() if wanted & set(names)}
    sizes = PROFILES[profile].metric_sizes
    encoder = cached_encoder(dataset, represent)
    train_factors = dataset.sample_factors(sizes["num_train"], rng)
    test_factors = dataset.sample_factors(sizes["num_test"], rng)
    train_codes, test_codes = encoder(train_factors), encoder(test_factors)
    results: dict[str, float] = {}
    if "factor_vae" in groups:
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
        results["factor_vae"] = factor_vae["eval_accuracy"]
        results["factor_vae_train"] = factor_vae["train_accuracy"]
        results["factor_vae_active_dims"] = factor_vae["num_active_dims"]
    if groups & {"mig", "modularity"}:
        varying = train_factors[:, varying_factors(train_factors)]
        mutual_info = mutual_info_matrix(train_codes, varying)
        if "mig" in groups:
            results["mig"] = mig_from_mutual_info(mutual_info, discrete_entropy(varying))
        if "modularity" in groups:
            results["modularity"] = modularity(mutual_info)
    if "sap" in groups:
        results["sap"] = sap(train_codes, train_factors, test_codes, test_factors)
    discrete = codebook is not None
    if "dci" in groups:
        dci_train, dci_test = (
            (code_indices(train_codes, codebook), code_indices(test_codes, codebook))
            if discrete
            else (train_codes, test_codes)
        )
        dci_scores = dci(
            dci_train, train_factors, dci_test, test_factors, seed=int(rng.integers(2**31))
        )
        results.update({f"dci_{name}": value for name, value in dci_scores.items()})
    if "infomec" in groups:
        results.update(infomec(train_codes, train_factors, discrete_latents=discrete))
    results = {name: float(value) for name, value in results.items() if name in wanted}
    results.update({f"eval_{name}": float(value) for name, value in sizes.items()})
    results["eval_encoded"] = float(encoder.num_encoded)
    return results

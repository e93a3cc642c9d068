"""Mutual Information Gap (Chen et al. 2018), the reference library's `discrete_mig`."""

from __future__ import annotations

import numpy as np

from tcwae.metrics._checks import codes_and_factors, varying_factors
from tcwae.metrics.information import discrete_entropy, discrete_mutual_info, histogram_discretize


def mutual_info_matrix(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Plug-in MI in nats `[codes, factors]` between binned codes and factors."""
    codes, factors = codes_and_factors(codes, factors)
    return discrete_mutual_info(histogram_discretize(codes, num_bins), factors)


def mig_from_mutual_info(mutual_info: np.ndarray, factor_entropy: np.ndarray) -> float:
    """Mean over factors of (largest - second largest MI over codes) / factor entropy.

    Factors with zero entropy are left out; with a single code the second largest MI is 0.
    """
    informative = factor_entropy > 0
    if not informative.any():
        raise ValueError("every factor takes a single value: MIG is undefined")
    ranked = -np.sort(-mutual_info[:, informative], axis=0)
    second = ranked[1] if len(ranked) > 1 else np.zeros(ranked.shape[1])
    return float(np.mean((ranked[0] - second) / factor_entropy[informative]))


def mig(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> float:
    """MIG of codes `[n, d]` for factors `[n, k]`: codes cut into `num_bins` equal-width bins."""
    codes, factors = codes_and_factors(codes, factors)
    factors = factors[:, varying_factors(factors)]
    return mig_from_mutual_info(
        mutual_info_matrix(codes, factors, num_bins), discrete_entropy(factors)
    )

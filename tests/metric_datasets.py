"""Small ground-truth datasets for the metric tests, built without files or rendering.

`IdentityData` is the reference library's `IdentityObservationsData` (10 factors with 10 values;
the observation is the factor vector itself), so `represent` functions act on factors directly.
"""

from __future__ import annotations

import numpy as np


class IdentityData:
    """Observations equal to the factor classes; `index_of` is the mixed-radix grid position."""

    def __init__(self, factor_sizes: tuple[int, ...] = (10,) * 10, with_index: bool = True):
        self.factor_sizes = tuple(factor_sizes)
        self.num_factors = len(self.factor_sizes)
        if with_index:
            self.index_of = self._index_of

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, np.array(self.factor_sizes), size=(n, self.num_factors))

    def observations(self, factors: np.ndarray) -> np.ndarray:
        return np.asarray(factors, dtype=np.float32)

    def _index_of(self, factors: np.ndarray) -> np.ndarray:
        return np.ravel_multi_index(tuple(np.asarray(factors).T), self.factor_sizes)


def identity(observations: np.ndarray) -> np.ndarray:
    return np.asarray(observations, dtype=np.float64)


def zeros(observations: np.ndarray) -> np.ndarray:
    return np.zeros(observations.shape, dtype=np.float64)


def duplicated(observations: np.ndarray) -> np.ndarray:
    codes = np.asarray(observations, dtype=np.float64)
    return np.hstack([codes, codes])


def sample(
    num_points: int, seed: int = 0, factor_sizes: tuple[int, ...] = (10,) * 10
) -> tuple[np.ndarray, np.ndarray]:
    """Factors `[n, k]` drawn uniformly and their identity codes (float)."""
    factors = IdentityData(factor_sizes).sample_factors(num_points, np.random.default_rng(seed))
    return factors.astype(np.float64), factors

"""FactorVAE score (Kim & Mnih 2018) and the encoder cache that makes it affordable.

The score draws 15,000 batches of 64 images (plus 10,000 for the variances) from a finite grid:
on dSprites' 737,280 images about 540,000 of the 970,000 draws are distinct. Codes are therefore
looked up through `CachedEncoder`, which encodes every distinct observation once, in large batches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

Represent = Callable[[np.ndarray], np.ndarray]
VOTE_CHUNK_ROWS = 65_536  # rows of codes held at once while counting votes


class GroundTruthData(Protocol):
    """What the dataset-level metrics need (`tcwae.data.FactorDataset` has it)."""

    factor_sizes: tuple[int, ...]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray: ...

    def observations(self, factors: np.ndarray) -> np.ndarray: ...


class CachedEncoder:
    """Codes of factor combinations `[n, k]` -> `[n, d]`, each distinct observation encoded once.

    The key of an observation is `dataset.index_of(factors)` when the dataset has it (the stored
    image), else the combination's mixed-radix position in the factor grid.
    """

    def __init__(self, dataset: GroundTruthData, represent: Represent, batch_size: int = 512):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset = dataset
        self.represent = represent
        self.batch_size = batch_size
        self._keys = np.zeros(0, dtype=np.int64)  # sorted
        self._rows = np.zeros(0, dtype=np.int64)  # row in self._codes of each key
        self._codes = np.empty((0, 0))
        self._size = 0

    @property
    def num_encoded(self) -> int:
        """How many distinct observations have been encoded so far."""
        return self._size

    def _key(self, factors: np.ndarray) -> np.ndarray:
        index_of = getattr(self.dataset, "index_of", None)
        if index_of is not None:
            return np.asarray(index_of(factors), dtype=np.int64)
        return np.ravel_multi_index(tuple(factors.T), tuple(self.dataset.factor_sizes)).astype(
            np.int64
        )

    def _encode(self, factors: np.ndarray) -> np.ndarray:
        batches = []
        for start in range(0, len(factors), self.batch_size):
            chunk = factors[start : start + self.batch_size]
            codes = np.asarray(self.represent(self.dataset.observations(chunk)), dtype=np.float64)
            if codes.ndim != 2 or len(codes) != len(chunk):
                raise ValueError(
                    f"represent must return [n, d] codes for n={len(chunk)} observations, "
                    f"got shape {codes.shape}"
                )
            if not np.isfinite(codes).all():
                raise ValueError("represent returned NaN or infinite codes")
            batches.append(codes)
        return np.concatenate(batches)

    def _store(self, keys: np.ndarray, codes: np.ndarray) -> None:
        if self._size == 0:
            self._codes = np.empty((max(len(codes), 1024), codes.shape[1]))
        elif codes.shape[1] != self._codes.shape[1]:
            raise ValueError(
                f"represent returned {codes.shape[1]} dimensions, earlier {self._codes.shape[1]}"
            )
        needed = self._size + len(codes)
        if needed > len(self._codes):
            grown = np.empty((max(needed, 2 * len(self._codes)), self._codes.shape[1]))
            grown[: self._size] = self._codes[: self._size]
            self._codes = grown
        self._codes[self._size : needed] = codes
        keys_all = np.concatenate([self._keys, keys])
        rows_all = np.concatenate([self._rows, np.arange(self._size, needed)])
        order = np.argsort(keys_all, kind="stable")
        self._keys, self._rows, self._size = keys_all[order], rows_all[order], needed

    def __call__(self, factors: np.ndarray) -> np.ndarray:
        factors = np.asarray(factors, dtype=np.int64)
        if factors.ndim != 2 or factors.shape[1] != len(self.dataset.factor_sizes):
            raise ValueError(
                f"factors must have shape [n, {len(self.dataset.factor_sizes)}], "
                f"got {factors.shape}"
            )
        keys = self._key(factors)
        distinct, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        position = np.searchsorted(self._keys, distinct)
        known = position < len(self._keys)
        known[known] = self._keys[position[known]] == distinct[known]
        if not known.all():
            self._store(distinct[~known], self._encode(factors[first[~known]]))
            position = np.searchsorted(self._keys, distinct)
        return self._codes[self._rows[position][inverse.ravel()]]


def cached_encoder(
    dataset: GroundTruthData, represent: Represent, batch_size: int = 512
) -> CachedEncoder:
    """The memoising wrapper `evaluate` shares between all metrics of one evaluation."""
    return CachedEncoder(dataset, represent, batch_size)


def _votes(
    encoder: CachedEncoder,
    rng: np.random.Generator,
    num_votes: int,
    batch_size: int,
    candidate_factors: np.ndarray,
    global_variances: np.ndarray,
    active: np.ndarray,
) -> np.ndarray:
    """Vote matrix `[factors, active dims]`: each vote fixes one factor across a batch and points
    at the active dimension with the smallest variance relative to its global variance."""
    dataset = encoder.dataset
    num_factors = len(dataset.factor_sizes)
    fixed = candidate_factors[rng.integers(len(candidate_factors), size=num_votes)]
    factors = dataset.sample_factors(num_votes * batch_size, rng).reshape(
        num_votes, batch_size, num_factors
    )
    votes = np.arange(num_votes)
    factors[votes, :, fixed] = factors[votes, 0, fixed][:, None]
    codes = encoder(factors.reshape(-1, num_factors))
    chosen = np.empty(num_votes, dtype=np.int64)
    per_chunk = max(1, VOTE_CHUNK_ROWS // batch_size)
    for start in range(0, num_votes, per_chunk):
        stop = min(start + per_chunk, num_votes)
        batch_codes = codes[start * batch_size : stop * batch_size, active]
        local = batch_codes.reshape(stop - start, batch_size, -1).var(axis=1, ddof=1)
        chosen[start:stop] = np.argmin(local / global_variances[active], axis=1)
    matrix = np.zeros((num_factors, int(active.sum())), dtype=np.int64)
    np.add.at(matrix, (fixed, chosen), 1)
    return matrix


def factor_vae_score(
    dataset: GroundTruthData,
    represent: Represent,
    rng: np.random.Generator,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance_estimate: int = 10_000,
    batch_size: int = 64,
    prune_threshold: float = 0.05,
    *,
    encoder: CachedEncoder | None = None,
) -> dict[str, float]:
    """FactorVAE score: `train_accuracy`, `eval_accuracy` of the majority-vote classifier from
    the lowest-variance dimension to the fixed factor, and `num_active_dims`.

    Dimensions whose global standard deviation (over `num_variance_estimate` random observations)
    is below `prune_threshold` are pruned; with none left both accuracies are 0. Factors with a
    single value are never the fixed one (fixing them changes nothing). `num_active_dims` counts
    the dimensions kept (the reference reports the total number of dimensions instead). Pass the
    `encoder` of an evaluation to reuse its cached codes (it must wrap the same dataset; it then
    encodes with its own `represent`).
    """
    for name, value in (
        ("num_train", num_train),
        ("num_eval", num_eval),
        ("num_variance_estimate", num_variance_estimate),
    ):
        if value < 1:
            raise ValueError(f"{name} must be positive, got {value}")
    if num_variance_estimate < 2 or batch_size < 2:
        raise ValueError("variances need num_variance_estimate >= 2 and batch_size >= 2")
    if encoder is None:
        encoder = CachedEncoder(dataset, represent)
    elif encoder.dataset is not dataset:
        raise ValueError("the encoder wraps a different dataset")
    candidate_factors = np.flatnonzero(np.asarray(dataset.factor_sizes) > 1)
    if candidate_factors.size == 0:
        raise ValueError("every factor takes a single value: there is nothing to score")

    global_codes = encoder(dataset.sample_factors(num_variance_estimate, rng))
    global_variances = global_codes.var(axis=0, ddof=1)
    active = np.sqrt(global_variances) >= prune_threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}

    train_votes = _votes(
        encoder, rng, num_train, batch_size, candidate_factors, global_variances, active
    )
    classifier = np.argmax(train_votes, axis=0)  # majority factor of each active dimension
    dims = np.arange(train_votes.shape[1])
    train_accuracy = train_votes[classifier, dims].sum() / train_votes.sum()
    eval_votes = _votes(
        encoder, rng, num_eval, batch_size, candidate_factors, global_variances, active
    )
    eval_accuracy = eval_votes[classifier, dims].sum() / eval_votes.sum()
    return {
        "train_accuracy": float(train_accuracy),
        "eval_accuracy": float(eval_accuracy),
        "num_active_dims": float(active.sum()),
    }

"""Input checks shared by the metrics: bad input fails here, with a message, not deep in sklearn."""

from __future__ import annotations

import numpy as np


def as_codes(codes: np.ndarray, name: str = "codes") -> np.ndarray:
    """Codes as float64 `[n, d]`; rejects other ranks, empty arrays and NaN or infinite values."""
    array = np.asarray(codes, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array [points, dimensions], got shape {array.shape}"
        )
    if array.shape[0] < 2 or array.shape[1] < 1:
        raise ValueError(f"{name} needs at least 2 points and 1 dimension, got shape {array.shape}")
    if not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ValueError(f"{name} contain {bad} NaN or infinite values")
    return array


def as_factors(factors: np.ndarray, num_points: int, name: str = "factors") -> np.ndarray:
    """Factor classes as int64 `[n, k]` with `n == num_points`; rejects non-integer values."""
    array = np.asarray(factors)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [points, factors], got shape {array.shape}")
    if array.shape[0] != num_points:
        raise ValueError(f"{name} have {array.shape[0]} points but the codes have {num_points}")
    if array.shape[1] < 1:
        raise ValueError(f"{name} must have at least one factor column")
    if not np.issubdtype(array.dtype, np.integer):
        if not np.isfinite(array).all() or (np.asarray(array) != np.round(array)).any():
            raise ValueError(f"{name} must hold integer classes")
    return array.astype(np.int64)


def codes_and_factors(
    codes: np.ndarray, factors: np.ndarray, prefix: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Checked codes and factors of the same points."""
    codes = as_codes(codes, f"{prefix}codes")
    return codes, as_factors(factors, len(codes), f"{prefix}factors")


def train_and_test(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked train and test sets that share the code and factor dimensions."""
    train_codes, train_factors = codes_and_factors(train_codes, train_factors, "train_")
    test_codes, test_factors = codes_and_factors(test_codes, test_factors, "test_")
    if test_codes.shape[1] != train_codes.shape[1]:
        raise ValueError(
            f"train codes have {train_codes.shape[1]} dimensions, test codes {test_codes.shape[1]}"
        )
    if test_factors.shape[1] != train_factors.shape[1]:
        raise ValueError(
            f"train factors have {train_factors.shape[1]} columns, test factors "
            f"{test_factors.shape[1]}"
        )
    return train_codes, train_factors, test_codes, test_factors


def varying_factors(factors: np.ndarray) -> np.ndarray:
    """Indices of the factor columns that take more than one value.

    A factor with a single value carries no information, so every metric leaves it out (the
    reference divides by its zero entropy or fails to fit a classifier); with none left there is
    nothing to score.
    """
    varying = np.flatnonzero((factors != factors[:1]).any(axis=0))
    if varying.size == 0:
        raise ValueError("every factor takes a single value: there is nothing to score")
    return varying

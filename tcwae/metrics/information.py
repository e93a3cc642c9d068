"""Plug-in (histogram) information measures between discrete columns, vectorised.

These are the reference library's `_histogram_discretize`, `discrete_entropy` and
`discrete_mutual_info`, laid out points x dimensions. Mutual information for all column pairs comes
from one sparse one-hot product (a contingency table per pair), not from a loop over pairs.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import digamma

from tcwae.metrics._checks import as_codes


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Bin each code dimension into `num_bins` equal-width bins between its own min and max.

    Returns int64 `[n, d]` bin numbers in 1..num_bins, exactly as the reference (`np.histogram`
    edges, `np.digitize` on the left edges): a constant dimension lands in a single bin.
    """
    if num_bins < 1:
        raise ValueError(f"num_bins must be at least 1, got {num_bins}")
    codes = as_codes(codes)
    binned = np.empty(codes.shape, dtype=np.int64)
    for dim in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, dim], bins=num_bins)
        binned[:, dim] = np.digitize(codes[:, dim], edges[:-1])
    return binned


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's values as 0..m_j-1, and the column offsets into a concatenated one-hot."""
    columns = [np.unique(column, return_inverse=True)[1] for column in labels.T]
    sizes = [int(column.max()) + 1 for column in columns]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return np.stack(columns, axis=1) + offsets[:-1], offsets


def _as_labels(labels: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D array [points, columns], got {array.shape}"
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return array


def discrete_entropy(labels: np.ndarray) -> np.ndarray:
    """Empirical entropy in nats of each column of `labels` `[n, k]` -> `[k]`."""
    labels = _as_labels(labels, "labels")
    entropies = np.empty(labels.shape[1])
    for column in range(labels.shape[1]):
        _, counts = np.unique(labels[:, column], return_counts=True)
        probabilities = counts / len(labels)
        entropies[column] = -np.sum(probabilities * np.log(probabilities))
    return np.maximum(entropies, 0.0)


def discrete_mutual_info(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Plug-in mutual information in nats between every column of `first` `[n, a]` and of
    `second` `[n, b]` -> `[a, b]` (sklearn's `mutual_info_score` for each pair)."""
    first = _as_labels(first, "first")
    second = _as_labels(second, "second")
    if len(first) != len(second):
        raise ValueError(f"first has {len(first)} points but second has {len(second)}")
    num_points = len(first)
    first_labels, first_offsets = _relabel(first)
    second_labels, second_offsets = _relabel(second)
    rows = np.repeat(np.arange(num_points), first.shape[1])
    first_hot = sp.csr_matrix(
        (np.ones(first_labels.size), (rows, first_labels.ravel())),
        shape=(num_points, first_offsets[-1]),
    )
    rows = np.repeat(np.arange(num_points), second.shape[1])
    second_hot = sp.csr_matrix(
        (np.ones(second_labels.size), (rows, second_labels.ravel())),
        shape=(num_points, second_offsets[-1]),
    )
    joint = (first_hot.T @ second_hot).tocoo()
    first_marginal = np.asarray(first_hot.sum(axis=0)).ravel() / num_points
    second_marginal = np.asarray(second_hot.sum(axis=0)).ravel() / num_points
    probability = joint.data / num_points
    terms = probability * (
        np.log(probability) - np.log(first_marginal[joint.row]) - np.log(second_marginal[joint.col])
    )
    first_block = np.searchsorted(first_offsets, joint.row, side="right") - 1
    second_block = np.searchsorted(second_offsets, joint.col, side="right") - 1
    pair = first_block * second.shape[1] + second_block
    mutual_info = np.bincount(pair, weights=terms, minlength=first.shape[1] * second.shape[1])
    return np.maximum(mutual_info.reshape(first.shape[1], second.shape[1]), 0.0)


def continuous_discrete_mutual_info(
    codes: np.ndarray, labels: np.ndarray, num_neighbors: int = 10, seed: int = 0
) -> np.ndarray:
    """Mutual information in nats between every continuous code `[n, d]` and every discrete
    label column `[n, k]` -> `[d, k]`: Ross's k-nearest-neighbour estimator, as sklearn's
    `mutual_info_classif` (codes divided by their standard deviation, ties broken by noise of
    relative size 1e-10 from `seed`, points whose label occurs once left out, negative estimates
    set to 0).

    In one dimension a point's k nearest neighbours form a contiguous run of the sorted values, so
    the k-th neighbour distance is the smallest over the k + 1 ways of taking a neighbours below and
    k - a above; everything is sorting and vectorised arithmetic, no neighbour trees.
    """
    codes = as_codes(codes)
    labels = _as_labels(labels, "labels")
    if len(labels) != len(codes):
        raise ValueError(f"codes have {len(codes)} points but labels have {len(labels)}")
    if num_neighbors < 1:
        raise ValueError(f"num_neighbors must be positive, got {num_neighbors}")
    spread = codes.std(axis=0)
    scaled = codes / np.where(spread > 0, spread, 1.0)
    noise = np.random.default_rng(seed).standard_normal(scaled.shape)
    scaled = scaled + 1e-10 * np.maximum(1.0, np.abs(scaled).mean(axis=0)) * noise
    result = np.zeros((codes.shape[1], labels.shape[1]))
    for factor in range(labels.shape[1]):
        _, classes = np.unique(labels[:, factor], return_inverse=True)
        class_sizes = np.bincount(classes)
        kept = class_sizes[classes] > 1
        if not kept.any():
            continue
        for dim in range(codes.shape[1]):
            result[dim, factor] = _ross_estimate(scaled[kept, dim], classes[kept], num_neighbors)
    return result


def _ross_estimate(values: np.ndarray, classes: np.ndarray, num_neighbors: int) -> float:
    """Ross (2014) MI estimate of one continuous column against class labels (each class has at
    least two points)."""
    num_points = len(values)
    class_sizes = np.bincount(classes)
    order = np.lexsort((values, classes))  # by class, then by value
    ordered, ordered_classes = values[order], classes[order]
    class_start = np.concatenate([[0], np.cumsum(class_sizes)])[ordered_classes]
    rank = np.arange(num_points) - class_start  # position within the point's class
    size = class_sizes[ordered_classes]
    k = np.minimum(num_neighbors, size - 1)
    steps = np.arange(num_neighbors + 1)[:, None]
    below = np.where(
        rank >= steps,
        ordered - ordered[np.maximum(np.arange(num_points) - steps, 0)],
        np.inf,
    )
    above = np.where(
        rank + steps < size,
        ordered[np.minimum(np.arange(num_points) + steps, num_points - 1)] - ordered,
        np.inf,
    )
    remaining = k - steps  # neighbours still to take above after `steps` below
    above_needed = np.take_along_axis(above, np.clip(remaining, 0, num_neighbors), axis=0)
    candidates = np.where(remaining >= 0, np.maximum(below, above_needed), np.inf)
    radius = np.nextafter(candidates.min(axis=0), 0)
    within = _count_within(np.sort(values), ordered, radius)
    estimate = (
        digamma(num_points)
        + np.mean(digamma(k))
        - np.mean(digamma(size))
        - np.mean(digamma(within))
    )
    return max(0.0, float(estimate))


def _count_within(sorted_values: np.ndarray, centres: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """How many of `sorted_values` lie within `radius` of each centre, |value - centre| <= radius
    evaluated as a neighbour tree does (centre +- radius can round across a value)."""
    last = len(sorted_values) - 1
    upper = np.searchsorted(sorted_values, centres + radius, side="right")
    lower = np.searchsorted(sorted_values, centres - radius, side="left")
    while True:
        outside = (upper > 0) & (sorted_values[np.maximum(upper - 1, 0)] - centres > radius)
        inside = (upper <= last) & (sorted_values[np.minimum(upper, last)] - centres <= radius)
        if not (outside.any() or inside.any()):
            break
        upper = upper - outside + inside
    while True:
        outside = (lower <= last) & (centres - sorted_values[np.minimum(lower, last)] > radius)
        inside = (lower > 0) & (centres - sorted_values[np.maximum(lower - 1, 0)] <= radius)
        if not (outside.any() or inside.any()):
            break
        lower = lower + outside - inside
    return upper - lower

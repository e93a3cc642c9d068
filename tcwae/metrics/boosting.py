"""Gradient-boosted trees for DCI importances: sklearn's default model, vectorised over classes.

The reference DCI fits `sklearn.ensemble.GradientBoostingClassifier()` per factor: 100 stages of
depth-3 regression trees on the negative log-loss gradient, one tree per class and stage (one for
two classes), learning rate 0.1, Newton leaf values, importance = the squared-error reduction of
every split summed over all trees. That is 100 x (number of classes) trees fitted one after the
other, about 4 minutes of CPU on dSprites-sized inputs. This module fits the same model with the
same split rule, leaf values, float32 features and importance, but grows the trees of every class
and factor of a stage together: codes are cut into at most 256 bins per dimension, and one sparse
product per tree level gives the gradient histograms of every node of every tree.

With at most 256 distinct values per dimension every value has its own bin and the fitted model is
sklearn's (importances agree to about 0.005, up to random tie-breaking). With more, bin edges are
quantiles, and in the late, overfitting stages sklearn makes many splits that cut one or a few
points off a node, which coarse bins cannot; so the points nearest each end of every node are also
scanned one by one (`edge_window`). What remains is a small downward bias of DCI disentanglement
and completeness for noisy codes (on dSprites-sized inputs: about 0.01 with noise 0.1 and 0.05 with
noise 0.3 on codes scaled to [-1, 1]; none on identity, rotated or duplicated codes; see
BENCHMARKS.md). An exact search over all thresholds costs as much as sklearn itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

NUM_STAGES = 100
MAX_DEPTH = 3
LEARNING_RATE = 0.1
MAX_BINS = 256
EDGE_WINDOW = 64  # at most this many sorted points scanned exactly at each end of a node


@dataclass(frozen=True)
class BoostedTrees:
    """What DCI needs from the fitted models, one column per label column (factor)."""

    importances: np.ndarray  # [d, k], each column sums to 1 (all zero if it never split)
    train_predictions: np.ndarray  # [n_train, k] class labels
    test_predictions: np.ndarray  # [n_test, k] class labels


def bin_thresholds(column: np.ndarray, max_bins: int) -> np.ndarray:
    """Split thresholds of one code dimension: midpoints between neighbouring distinct values
    (sklearn's candidate thresholds), thinned to `max_bins - 1` quantiles when there are more."""
    distinct = np.unique(column).astype(np.float64)
    midpoints = (distinct[:-1] + distinct[1:]) / 2
    if len(midpoints) < max_bins:
        return midpoints
    quantiles = np.quantile(column, np.linspace(0, 1, max_bins + 1)[1:-1], method="midpoint")
    return np.unique(quantiles)


def _bin(codes: np.ndarray, thresholds: list[np.ndarray]) -> np.ndarray:
    """Bin number of each value: how many thresholds lie below it (value <= threshold goes left)."""
    return np.stack(
        [
            np.searchsorted(edges, codes[:, dim], side="left")
            for dim, edges in enumerate(thresholds)
        ],
        axis=1,
    )


@dataclass(frozen=True)
class _Grid:
    """The training codes sorted per dimension, for the exact scans at the edges of nodes."""

    order: np.ndarray  # [d, n] point indices by increasing value
    sorted_values: np.ndarray  # [d, n] float64
    bin_start: np.ndarray  # [d, bins + 1] first sorted position of each bin
    coarse: np.ndarray  # dims with more distinct values than bins: the ones scanned
    window: int
    num_points: int


class _Forest:
    """The trees of one stage for every label column: column j has one tree per class, or a single
    tree when it has two classes (binary log-loss), exactly as sklearn fits one model per column."""

    def __init__(self, labels: np.ndarray):
        num_points = len(labels)
        self.classes, targets, initial, scale, group = [], [], [], [], []
        for column, values in enumerate(labels.T):
            classes, encoded = np.unique(values, return_inverse=True)
            if len(classes) < 2:
                raise ValueError(f"label column {column} has a single class")
            priors = np.bincount(encoded, minlength=len(classes)) / num_points
            if len(classes) == 2:
                targets.append((encoded == 1)[:, None].astype(np.float64))
                initial.append([np.log(priors[1] / priors[0])])
                scale.append([1.0])
            else:
                targets.append(np.eye(len(classes))[encoded])
                initial.append(np.log(priors))
                scale.append(np.full(len(classes), (len(classes) - 1) / len(classes)))
            group.append(np.full(len(initial[-1]), column))
            self.classes.append(classes)
        self.target = np.concatenate(targets, axis=1)  # [n, trees]
        self.initial = np.concatenate(initial)
        self.leaf_scale = np.concatenate(scale)  # sklearn's (K - 1) / K factor for K > 2
        self.group = np.concatenate(group)  # label column of each tree
        self.starts = np.flatnonzero(np.diff(self.group, prepend=-1))
        self.binary = np.array([len(classes) == 2 for classes in self.classes])

    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        """Softmax over each column's trees; a binary column has an implicit zero logit, which
        makes its single probability the sigmoid of its raw score."""
        shift = np.maximum.reduceat(raw, self.starts, axis=1)
        shift = np.where(self.binary, np.maximum(shift, 0.0), shift)
        exponentials = np.exp(raw - shift[:, self.group])
        total = np.add.reduceat(exponentials, self.starts, axis=1) + self.binary * np.exp(-shift)
        return exponentials / total[:, self.group]

    def predict(self, raw: np.ndarray) -> np.ndarray:
        """Class label per column `[n, k]`."""
        predictions = []
        for column, classes in enumerate(self.classes):
            scores = raw[:, self.group == column]
            chosen = (scores[:, 0] > 0).astype(int) if len(classes) == 2 else scores.argmax(axis=1)
            predictions.append(classes[chosen])
        return np.stack(predictions, axis=1)


def fit_boosted_trees(
    train_codes: np.ndarray,
    train_labels: np.ndarray,
    test_codes: np.ndarray,
    rngs: Sequence[np.random.Generator],
    num_stages: int = NUM_STAGES,
    max_depth: int = MAX_DEPTH,
    learning_rate: float = LEARNING_RATE,
    max_bins: int = MAX_BINS,
    edge_window: int = EDGE_WINDOW,
) -> BoostedTrees:
    """Fit sklearn's default gradient-boosting classifier from `train_codes` `[n, d]` to each
    column of `train_labels` `[n, k]` (each with at least two classes), all columns at once, and
    predict the train and test points. `rngs[j]` breaks the ties of column j's trees."""
    # sklearn's trees see float32 features: values equal in float32 cannot be split apart
    train_codes = np.asarray(train_codes, dtype=np.float32)
    test_codes = np.asarray(test_codes, dtype=np.float32)
    num_points, num_dims = train_codes.shape
    forest = _Forest(train_labels)
    if len(rngs) != len(forest.classes):
        raise ValueError(f"need one generator per label column, got {len(rngs)}")
    trees_per_column = np.bincount(forest.group)
    thresholds = [bin_thresholds(train_codes[:, dim], max_bins) for dim in range(num_dims)]
    num_bins = max(len(edges) for edges in thresholds) + 1
    bins = _bin(train_codes, thresholds)
    edges = np.full((num_dims, num_bins), np.inf)  # threshold value of a split after each bin
    for dim, dim_edges in enumerate(thresholds):
        edges[dim, : len(dim_edges)] = dim_edges
    order = np.argsort(train_codes, axis=0, kind="stable").T
    sorted_bins = np.take_along_axis(bins.T, order, axis=1)
    grid = _Grid(
        order=order,
        sorted_values=np.take_along_axis(train_codes.T, order, axis=1).astype(np.float64),
        bin_start=np.stack([np.searchsorted(row, np.arange(num_bins + 1)) for row in sorted_bins]),
        coarse=np.flatnonzero([len(np.unique(column)) > max_bins for column in train_codes.T]),
        # about four bins' worth of points: enough to cut off single points, cheap for small n
        window=int(min(edge_window, 4 * np.ceil(num_points / max_bins))),
        num_points=num_points,
    )
    # one-hot of (dimension, bin) per point; its transpose times per-point weights gives histograms
    one_hot = sp.csr_matrix(
        (
            np.ones(bins.size, dtype=np.float32),
            (
                np.repeat(np.arange(num_points), num_dims),
                (bins + np.arange(num_dims) * num_bins).ravel(),
            ),
        ),
        shape=(num_points, num_dims * num_bins),
    )
    # point-major: each point's row of weights is read once, in order (3x faster than bin-major)
    histogram_of = one_hot.T.tocsc()
    root_counts = np.asarray(one_hot.sum(axis=0)).reshape(1, 1, num_dims, num_bins)

    num_trees = len(forest.group)
    raw = np.tile(forest.initial, (num_points, 1))
    test_raw = np.tile(forest.initial, (len(test_codes), 1))
    tree_index = np.arange(num_trees)[None, :]
    row_start = (np.arange(num_points, dtype=np.int32) * num_dims)[:, None]
    test_row_start = (np.arange(len(test_codes), dtype=np.int32) * num_dims)[:, None]
    importances = np.zeros((num_dims, len(forest.classes)))
    num_leaves = 2**max_depth
    # with every code constant no tree can split: the model stays at the class priors
    for _ in range(num_stages if num_bins > 1 else 0):
        probability = forest.probabilities(raw)
        gradient = forest.target - probability  # negative gradient of the log-loss, [n, trees]
        node = np.zeros((num_points, num_trees), dtype=np.int32)
        test_node = np.zeros((len(test_codes), num_trees), dtype=np.int32)
        sums = (histogram_of @ gradient).reshape(num_dims, num_bins, num_trees)
        sums = sums.transpose(2, 0, 1)[:, None]  # [trees, nodes, dims, bins]
        counts = np.broadcast_to(root_counts, sums.shape)
        for level in range(max_depth):
            if level > 0:
                sums, counts = _child_histograms(histogram_of, gradient, node, sums, counts)
            tie_break = np.concatenate(
                [
                    rng.random((trees, sums.shape[1], num_dims))
                    for rng, trees in zip(rngs, trees_per_column, strict=True)
                ]
            )
            score, threshold = _histogram_candidates(sums, counts, edges)
            node_sums, node_counts = sums[:, :, 0].sum(axis=-1), counts[:, :, 0].sum(axis=-1)
            if grid.coarse.size:
                edge_score, edge_threshold = _boundary_candidates(
                    grid, counts, node_sums, node_counts, gradient, node
                )
                better = edge_score > score[:, :, grid.coarse]
                score[:, :, grid.coarse] = np.where(better, edge_score, score[:, :, grid.coarse])
                threshold[:, :, grid.coarse] = np.where(
                    better, edge_threshold, threshold[:, :, grid.coarse]
                )
            feature, threshold, gain = _choose_splits(score, threshold, node_counts, tie_break)
            split_tree, split_node = np.nonzero(gain > 0)
            np.add.at(
                importances,
                (feature[split_tree, split_node], forest.group[split_tree]),
                gain[split_tree, split_node] / num_points,
            )
            node = _descend(node, train_codes, row_start, feature, threshold)
            test_node = _descend(test_node, test_codes, test_row_start, feature, threshold)
        leaf = (tree_index * num_leaves + node).ravel()
        numerator = np.bincount(leaf, weights=gradient.ravel(), minlength=num_trees * num_leaves)
        denominator = np.bincount(
            leaf,
            weights=(probability * (1 - probability)).ravel(),
            minlength=num_trees * num_leaves,
        )
        safe = np.abs(denominator) >= 1e-150
        values = np.where(safe, numerator / np.where(safe, denominator, 1.0), 0.0)
        values = values.reshape(num_trees, num_leaves) * forest.leaf_scale[:, None]
        raw += learning_rate * values[tree_index, node]
        test_raw += learning_rate * values[tree_index, test_node]

    totals = importances.sum(axis=0)
    return BoostedTrees(
        importances=np.where(totals > 0, importances / np.where(totals > 0, totals, 1.0), 0.0),
        train_predictions=forest.predict(raw),
        test_predictions=forest.predict(test_raw),
    )


def _child_histograms(
    histogram_of: sp.csc_matrix,
    gradient: np.ndarray,
    node: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Histograms of the next level: left children by one sparse product, right = parent - left.

    Column (tree, parent, 0) of the product's right-hand side holds the gradient of the points in
    that parent's left child, column (tree, parent, 1) a one for each of them; every point has a
    single node per tree, so each row is written once per tree.
    """
    num_trees, num_parents, num_dims, num_bins = sums.shape
    num_points, width = len(node), num_trees * num_parents * 2
    # points in a right child write into two spare columns at the end, which are then ignored
    column = np.where(node % 2 == 0, (np.arange(num_trees) * num_parents + node // 2) * 2, width)
    column += np.arange(num_points)[:, None] * (width + 2)
    weights = np.zeros(num_points * (width + 2), dtype=np.float32)
    weights[column] = gradient
    weights[column + 1] = 1.0
    product = (histogram_of @ weights.reshape(num_points, width + 2))[:, :width]
    product = product.reshape(num_dims, num_bins, num_trees, num_parents, 2).transpose(
        2, 3, 0, 1, 4
    )
    left_sums, left_counts = product[..., 0], product[..., 1]
    child_sums = np.stack([left_sums, sums - left_sums], axis=2)
    child_counts = np.stack([left_counts, counts - left_counts], axis=2)
    shape = (num_trees, 2 * num_parents, num_dims, num_bins)
    return child_sums.reshape(shape), child_counts.reshape(shape)


def _split_score(
    left_sums: np.ndarray, left_counts: np.ndarray, node_sums: np.ndarray, node_counts: np.ndarray
) -> np.ndarray:
    """Node size times the squared-error reduction of sending (left_sums, left_counts) left:
    (S_l C - S C_l)^2 / (C_l (C - C_l)); -1 where a side would be empty."""
    contrast = left_sums * node_counts - node_sums * left_counts
    denominator = left_counts * (node_counts - left_counts)
    valid = denominator > 0.5
    return np.where(valid, contrast**2 / np.where(valid, denominator, 1.0), -1.0)


def _histogram_candidates(
    sums: np.ndarray, counts: np.ndarray, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Best split at a bin edge for every (tree, node, dim): score and threshold value.

    The first best edge wins, as sklearn scans thresholds in order and keeps strict improvements.
    """
    node_sums = sums[:, :, :1].sum(axis=-1, keepdims=True)
    node_counts = counts[:, :, :1].sum(axis=-1, keepdims=True)
    score = _split_score(
        np.cumsum(sums, axis=-1)[..., :-1],
        np.cumsum(counts, axis=-1)[..., :-1],
        node_sums,
        node_counts,
    )
    best_bin = score.argmax(axis=-1)  # [trees, nodes, dims]
    best_score = np.take_along_axis(score, best_bin[..., None], axis=-1)[..., 0]
    return best_score, edges[np.arange(edges.shape[0]), best_bin]


def _boundary_candidates(
    grid: _Grid,
    counts: np.ndarray,
    node_sums: np.ndarray,
    node_counts: np.ndarray,
    gradient: np.ndarray,
    node: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Best split that cuts off a few of a node's smallest or largest points, at their exact
    values, for every (tree, node, coarse dim): score and threshold value.

    Late stages of sklearn's boosting spend much of their importance on splits that isolate one
    or a few points at the edge of a node, mostly along the dimension that defined that edge.
    Coarse bins cannot make these splits, which shifts importance to the other dimensions; so
    the first and last `grid.window` sorted points from the node's outermost non-empty bins are
    scanned one by one.
    """
    num_trees, num_nodes = node_sums.shape
    dims = grid.coarse[None, None, :]  # broadcasts against [trees, nodes, coarse dims]
    occupied = counts[:, :, grid.coarse] > 0.5
    lowest = occupied.argmax(axis=-1)
    highest = occupied.shape[-1] - 1 - occupied[..., ::-1].argmax(axis=-1)
    offsets = np.arange(grid.window)
    starts = {
        1: grid.bin_start[dims, lowest][..., None] + offsets,  # upwards from the lowest
        -1: grid.bin_start[dims, highest + 1][..., None] - 1 - offsets,  # down from the highest
    }
    tree_index = np.arange(num_trees)[:, None, None, None]
    node_index = np.arange(num_nodes)[None, :, None, None]
    node_sums, node_counts = node_sums[..., None, None], node_counts[..., None, None]
    best_score = np.full(lowest.shape, -1.0)
    best_threshold = np.full(lowest.shape, np.inf)
    for step, position in starts.items():
        inside = (position >= 0) & (position < grid.num_points)
        position = np.clip(position, 0, grid.num_points - 1)
        neighbour = np.clip(position + step, 0, grid.num_points - 1)
        flat = grid.order[dims[..., None], position] * num_trees + tree_index
        member = inside & (node.ravel().take(flat) == node_index)
        isolated_sums = np.cumsum(np.where(member, gradient.ravel().take(flat), 0.0), axis=-1)
        isolated_counts = np.cumsum(member, axis=-1)
        value = grid.sorted_values[dims[..., None], position]
        next_value = grid.sorted_values[dims[..., None], neighbour]
        distinct = (next_value - value) * step > 0
        score = _split_score(isolated_sums, isolated_counts, node_sums, node_counts)
        score = np.where(member & distinct, score, -1.0)
        best = score.argmax(axis=-1)[..., None]
        side_score = np.take_along_axis(score, best, axis=-1)[..., 0]
        side_threshold = np.take_along_axis(value + next_value, best, axis=-1)[..., 0] / 2
        better = side_score > best_score
        best_score = np.where(better, side_score, best_score)
        best_threshold = np.where(better, side_threshold, best_threshold)
    return best_score, best_threshold


def _choose_splits(
    score: np.ndarray, threshold: np.ndarray, node_counts: np.ndarray, tie_break: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best dimension of every node: (feature, threshold value, squared-error reduction); a node
    without a useful split gets threshold +inf (every point goes left) and gain 0. Ties between
    dimensions go to the largest `tie_break` (uniform random numbers), as sklearn's shuffled
    feature order does."""
    top = score.max(axis=-1, keepdims=True)
    feature = np.where(score == top, tie_break, -1.0).argmax(axis=-1)  # [trees, nodes]
    top = top[..., 0]
    split = top > 0
    value = np.take_along_axis(threshold, feature[..., None], axis=-1)[..., 0]
    gain = np.where(split, top / np.maximum(node_counts, 1.0), 0.0)
    return feature, np.where(split, value, np.inf), gain


def _descend(
    node: np.ndarray,
    codes: np.ndarray,
    row_start: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
) -> np.ndarray:
    """Child index of every point in every tree after this level's splits (value > threshold
    goes right, as in sklearn). `row_start[i]` is the flat index of point i's first code."""
    split = node + np.arange(node.shape[1], dtype=np.int32) * feature.shape[1]  # (tree, node)
    value = codes.ravel().take(row_start + feature.ravel().take(split))
    return 2 * node + (value > threshold.ravel().take(split))


def fit_boosted_trees_parallel(
    train_codes: np.ndarray,
    train_labels: np.ndarray,
    test_codes: np.ndarray,
    seed: int,
    workers: int = 2,
) -> BoostedTrees:
    """`fit_boosted_trees` with the label columns shared out to `workers` threads (numpy and the
    sparse products release the GIL), balanced by number of trees. Column j always breaks ties with
    the generator seeded by (seed, j), so the result does not depend on `workers`."""
    num_columns = train_labels.shape[1]
    rngs = [np.random.default_rng([seed, column]) for column in range(num_columns)]
    tree_counts = [
        1 if len(np.unique(column)) == 2 else len(np.unique(column)) for column in train_labels.T
    ]
    groups: list[list[int]] = [[] for _ in range(max(1, min(workers, num_columns)))]
    loads = [0] * len(groups)
    for column in np.argsort(tree_counts, kind="stable")[::-1]:
        lightest = int(np.argmin(loads))
        groups[lightest].append(int(column))
        loads[lightest] += tree_counts[column]

    def fit(columns: list[int]) -> BoostedTrees:
        return fit_boosted_trees(
            train_codes, train_labels[:, columns], test_codes, [rngs[c] for c in columns]
        )

    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        results = list(pool.map(fit, groups))
    importances = np.zeros((train_codes.shape[1], num_columns))
    train_predictions = np.zeros(train_labels.shape, dtype=train_labels.dtype)
    test_predictions = np.zeros((len(test_codes), num_columns), dtype=train_labels.dtype)
    for columns, result in zip(groups, results, strict=True):
        importances[:, columns] = result.importances
        train_predictions[:, columns] = result.train_predictions
        test_predictions[:, columns] = result.test_predictions
    return BoostedTrees(importances, train_predictions, test_predictions)

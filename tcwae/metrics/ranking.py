"""The paper's overall ranking (rank configurations on each score, average the ranks) and the
multi-objective orderings that successive halving promotes by (non-dominated sorting)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

# Every score a trained model gets that a configuration can be ranked on: the reconstruction
# cost (`rec`, the trainer's) and the headline keys of `tcwae.metrics.evaluate`.
SCORES = (
    "rec",
    "mig",
    "factor_vae",
    "sap",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness_test",
    "infom",
    "infoc",
    "infoe",
)
# The paper's ranking (seed 001, Section 4.1): reconstruction down, the three scores up.
PAPER_RANKING = (("rec", "min"), ("mig", "max"), ("factor_vae", "max"), ("sap", "max"))
PAPER_SCORES = tuple(score for score, _ in PAPER_RANKING)
# How `pareto_order` orders the members of one front.
TIE_BREAKS = ("mean_rank", "crowding")


def _badness(value: Any, direction: str) -> float:
    """Lower is better; a missing or NaN score is worse than any real one."""
    if value is None:
        return math.inf
    number = float(value)
    if math.isnan(number):
        return math.inf
    return number if direction == "min" else -number


def _check_scores(scores: Sequence[tuple[str, str]]) -> None:
    if not scores:
        raise ValueError("scores must name at least one (key, 'min' | 'max') pair")
    for key, direction in scores:
        if direction not in ("min", "max"):
            raise ValueError(f"direction of {key!r} must be 'min' or 'max', got {direction!r}")


def rank_configurations(
    table: Sequence[Mapping[str, Any]],
    scores: Sequence[tuple[str, str]] = PAPER_RANKING,
) -> list[dict[str, Any]]:
    """Rows (configurations with their mean scores) with `rank_<score>` for each score and their
    `mean_rank` added, best (lowest mean rank) first.

    `scores` pairs a key with "min" (lower is better, e.g. `rec`) or "max". Ties share the average
    of their ranks; missing or NaN scores rank last (tied among themselves). Rows with equal mean
    ranks keep their input order.
    """
    _check_scores(scores)
    rows = [dict(row) for row in table]
    if not rows:
        return []
    rank_columns = []
    for key, direction in scores:
        badness = np.array([_badness(row.get(key), direction) for row in rows])
        ranks = rankdata(badness, method="average")
        rank_columns.append(ranks)
        for row, rank in zip(rows, ranks, strict=True):
            row[f"rank_{key}"] = float(rank)
    mean_ranks = np.mean(rank_columns, axis=0)
    for row, mean_rank in zip(rows, mean_ranks, strict=True):
        row["mean_rank"] = float(mean_rank)
    order = np.argsort(mean_ranks, kind="stable")
    return [rows[index] for index in order]


def _badness_matrix(
    table: Sequence[Mapping[str, Any]], scores: Sequence[tuple[str, str]]
) -> np.ndarray:
    """Rows x scores, every score turned so that lower is better (missing or NaN: +inf)."""
    _check_scores(scores)
    return np.array(
        [[_badness(row.get(key), direction) for key, direction in scores] for row in table],
        dtype=float,
    ).reshape(len(table), len(scores))


def non_dominated_fronts(
    table: Sequence[Mapping[str, Any]], scores: Sequence[tuple[str, str]] = PAPER_RANKING
) -> list[list[int]]:
    """Non-dominated sorting (Deb et al. 2002, NSGA-II): the row indices of the first Pareto
    front, then of the front of what is left, and so on; each front in input order.

    Row a dominates row b when a is at least as good on every score and better on one; a missing
    or NaN score is worse than any real one (equal to another missing one)."""
    badness = _badness_matrix(table, scores)
    remaining = list(range(len(table)))
    fronts = []
    while remaining:
        front = [
            i
            for i in remaining
            if not any(
                np.all(badness[j] <= badness[i]) and np.any(badness[j] < badness[i])
                for j in remaining
                if j != i
            )
        ]
        fronts.append(front)
        remaining = [i for i in remaining if i not in front]
    return fronts


def crowding_distances(
    table: Sequence[Mapping[str, Any]], scores: Sequence[tuple[str, str]] = PAPER_RANKING
) -> list[float]:
    """NSGA-II's crowding distance of each row within `table` (one front): per score, the rows
    with the lowest and highest value get infinity, the others the gap between their two
    neighbours divided by the score's spread; summed over scores. Larger is more isolated.
    A score whose values are all equal, or not all finite, adds nothing."""
    badness = _badness_matrix(table, scores)
    distance = np.zeros(len(table))
    for column in badness.T:
        spread = column.max() - column.min() if len(column) else 0.0
        if not np.all(np.isfinite(column)) or spread == 0:
            continue
        order = np.argsort(column, kind="stable")
        distance[order[0]] = distance[order[-1]] = math.inf
        for position in range(1, len(order) - 1):
            gap = column[order[position + 1]] - column[order[position - 1]]
            distance[order[position]] += gap / spread
    return [float(value) for value in distance]


def pareto_order(
    table: Sequence[Mapping[str, Any]],
    scores: Sequence[tuple[str, str]] = PAPER_RANKING,
    tie_break: str = "mean_rank",
) -> list[int]:
    """Row indices best first: front by front (`non_dominated_fronts`), and within a front by
    `tie_break`: "mean_rank" (the paper's mean rank, ranked within that front) or "crowding"
    (largest crowding distance first, as NSGA-II keeps a diverse front). Remaining ties keep
    input order."""
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {', '.join(TIE_BREAKS)}, got {tie_break!r}")
    order = []
    for front in non_dominated_fronts(table, scores):
        members = [table[i] for i in front]
        if tie_break == "mean_rank":
            keyed = [{"_index": i, **row} for i, row in zip(front, members, strict=True)]
            order += [row["_index"] for row in rank_configurations(keyed, scores)]
        else:
            crowding = crowding_distances(members, scores)
            ranked = sorted(range(len(front)), key=lambda k: -crowding[k])
            order += [front[k] for k in ranked]
    return order


def mean_rank_order(
    table: Sequence[Mapping[str, Any]], scores: Sequence[tuple[str, str]] = PAPER_RANKING
) -> list[int]:
    """Row indices best first by the paper's mean rank (`rank_configurations`)."""
    keyed = [{"_index": i, **row} for i, row in enumerate(table)]
    return [row["_index"] for row in rank_configurations(keyed, scores)]

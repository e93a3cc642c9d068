"""The paper's overall ranking: rank configurations on each score, average the ranks."""

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


def _badness(value: Any, direction: str) -> float:
    """Lower is better; a missing or NaN score is worse than any real one."""
    if value is None:
        return math.inf
    number = float(value)
    if math.isnan(number):
        return math.inf
    return number if direction == "min" else -number


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
    if not scores:
        raise ValueError("scores must name at least one (key, 'min' | 'max') pair")
    for key, direction in scores:
        if direction not in ("min", "max"):
            raise ValueError(f"direction of {key!r} must be 'min' or 'max', got {direction!r}")
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

"""Pictures of a sweep, drawn the way the paper draws them (seed 001): heatmaps of each score over
the (beta, gamma) grid (Fig. 1), scores against reconstruction error with beta annotations
(Fig. 3), and training curves. The report draws them from the sweep's rows; no torch.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from tcwae.png import DPI, save_figure
from tcwae.values import is_finite_number

PANEL_INCHES = (4.4, 3.8)


def grid_means(
    rows: Iterable[Mapping[str, Any]], x_key: str, y_key: str, score_key: str
) -> tuple[list[float], list[float], np.ndarray]:
    """Mean of `score_key` per (x, y) cell: rows sharing a cell (seeds) are averaged; missing,
    None or NaN scores are left out; a cell with no score is NaN. Returns (x values, y values,
    means [len(y values), len(x values)]) with both value lists sorted."""
    cells: dict[tuple[float, float], list[float]] = defaultdict(list)
    for index, row in enumerate(rows):
        if x_key not in row or y_key not in row:
            raise ValueError(f"row {index} lacks {x_key!r} or {y_key!r}: {dict(row)}")
        cell = (float(row[x_key]), float(row[y_key]))
        score = row.get(score_key)
        cells.setdefault(cell, [])
        if is_finite_number(score):
            cells[cell].append(float(score))
    if not cells:
        raise ValueError("no rows to draw")
    xs = sorted({x for x, _ in cells})
    ys = sorted({y for _, y in cells})
    means = np.full((len(ys), len(xs)), np.nan)
    for (x, y), scores in cells.items():
        if scores:
            means[ys.index(y), xs.index(x)] = float(np.mean(scores))
    return xs, ys, means


def save_heatmaps(
    rows: Sequence[Mapping[str, Any]],
    x_key: str,
    y_key: str,
    score_keys: Sequence[str],
    path: str | Path,
    title: str,
) -> None:
    """Paper Fig. 1: one heatmap per score over the (x, y) grid, each with its own colour scale,
    cells annotated with the mean over duplicates; cells without a score are grey."""
    figure, axes = _panel_row(len(score_keys))
    for ax, score_key in zip(axes, score_keys, strict=True):
        xs, ys, means = grid_means(rows, x_key, y_key, score_key)
        masked = np.ma.masked_invalid(means)
        ax.set_facecolor("0.85")
        image = ax.imshow(masked, origin="lower", cmap="viridis", aspect="auto")
        figure.colorbar(image, ax=ax, shrink=0.9)
        finite = means[np.isfinite(means)]
        low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        for (row, column), value in np.ndenumerate(means):
            if not math.isfinite(value):
                ax.text(column, row, "n/a", ha="center", va="center", fontsize=7, color="0.4")
                continue
            bright = high > low and (value - low) / (high - low) > 0.6
            ax.text(
                column,
                row,
                f"{value:.3g}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if bright else "white",
            )
        ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
        ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys])
        ax.set_xlabel(x_key)
        ax.set_ylabel(y_key)
        ax.set_title(score_key)
    figure.suptitle(title)
    save_figure(figure, path)


def save_scores_vs_rec(
    rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    score_keys: Sequence[str] = ("mig", "factor_vae", "sap"),
    annotate_key: str = "beta",
    group_key: str = "method",
    rec_key: str = "rec",
) -> None:
    """Paper Fig. 3: each score against reconstruction error, one series per `group_key` value,
    each point (the mean over rows sharing group and `annotate_key`, i.e. over seeds) labelled
    with its `annotate_key` value. Rows without `annotate_key` are not drawn, as in the paper,
    which plots only the methods that have a beta."""
    points: dict[str, dict[float, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if annotate_key in row and row[annotate_key] is not None:
            points[str(row[group_key])][float(row[annotate_key])].append(row)
    if not points:
        raise ValueError(f"no row has {annotate_key!r} to draw")
    figure, axes = _panel_row(len(score_keys))
    for ax, score_key in zip(axes, score_keys, strict=True):
        for group in sorted(points):
            series = []
            for value in sorted(points[group]):
                members = points[group][value]
                rec = _finite_mean(member.get(rec_key) for member in members)
                score = _finite_mean(member.get(score_key) for member in members)
                if math.isfinite(rec) and math.isfinite(score):
                    series.append((value, rec, score))
            if not series:
                continue
            _, recs, scores = zip(*series, strict=True)
            ax.plot(recs, scores, marker="o", markersize=4, linewidth=1, label=group)
            for value, rec, score in series:
                ax.annotate(
                    f"{value:g}",
                    (rec, score),
                    textcoords="offset points",
                    xytext=(3, 3),
                    fontsize=7,
                )
        _label_against_rec(ax, rec_key, score_key)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"scores against reconstruction; labels: {annotate_key}")
    save_figure(figure, path)


def save_method_scores_vs_rec(
    rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    score_keys: Sequence[str] = ("mig", "factor_vae", "sap"),
    group_key: str = "method",
    rec_key: str = "rec",
) -> None:
    """Scores against reconstruction error for methods at one setting each (paper Table 1a as a
    picture): every run a faint dot, each method's mean over runs a marker with standard-deviation
    bars on both axes."""
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[str(row[group_key])].append(row)
    if not groups:
        raise ValueError("no rows to draw")
    figure, axes = _panel_row(len(score_keys))
    for ax, score_key in zip(axes, score_keys, strict=True):
        for index, group in enumerate(sorted(groups)):
            pairs = np.array(
                [
                    (float(row[rec_key]), float(row[score_key]))
                    for row in groups[group]
                    if is_finite_number(row.get(rec_key)) and is_finite_number(row.get(score_key))
                ]
            ).reshape(-1, 2)
            if len(pairs) == 0:
                continue
            color = f"C{index}"
            ax.scatter(pairs[:, 0], pairs[:, 1], s=10, alpha=0.35, color=color)
            spread = pairs.std(axis=0, ddof=1) if len(pairs) > 1 else np.zeros(2)
            center = pairs.mean(axis=0)
            ax.errorbar(
                center[0],
                center[1],
                xerr=spread[0],
                yerr=spread[1],
                fmt="o",
                color=color,
                markersize=6,
                capsize=3,
                label=group,
            )
        _label_against_rec(ax, rec_key, score_key)
    axes[0].legend(fontsize=8)
    figure.suptitle("scores against reconstruction: runs (dots), mean ± std over runs")
    save_figure(figure, path)


def save_curves(
    curves: Mapping[str, Mapping[int, Sequence[float]]],
    path: str | Path,
    ylabel: str,
    title: str,
) -> None:
    """One line per group of a value against training steps: the mean over runs at each step,
    with a band of one standard deviation (the Table-1a budget choice: MIG against steps)."""
    if not curves:
        raise ValueError("no curves to draw")
    figure = Figure(figsize=PANEL_INCHES, dpi=DPI)
    figure.set_layout_engine("constrained")
    ax = figure.subplots()
    for index, group in enumerate(sorted(curves)):
        steps = sorted(curves[group])
        values = [np.asarray(curves[group][step], dtype=float) for step in steps]
        mean = np.array([v.mean() for v in values])
        std = np.array([v.std(ddof=1) if len(v) > 1 else 0.0 for v in values])
        ax.plot(steps, mean, marker="o", markersize=3, color=f"C{index}", label=group)
        ax.fill_between(steps, mean - std, mean + std, color=f"C{index}", alpha=0.2)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    save_figure(figure, path)


def _finite_mean(values: Iterable[Any]) -> float:
    finite = [float(v) for v in values if is_finite_number(v)]
    return float(np.mean(finite)) if finite else math.nan


def _panel_row(count: int) -> tuple[Figure, Sequence[Any]]:
    """A figure with a row of `count` panels, one per score."""
    figure = Figure(figsize=(PANEL_INCHES[0] * count, PANEL_INCHES[1]), dpi=DPI)
    figure.set_layout_engine("constrained")
    return figure, figure.subplots(1, count, squeeze=False)[0]


def _label_against_rec(ax: Any, rec_key: str, score_key: str) -> None:
    ax.set_xlabel(f"reconstruction error ({rec_key})")
    ax.set_ylabel(score_key)
    ax.grid(alpha=0.3)

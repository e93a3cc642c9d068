"""The report's arithmetic on plain rows (no MLflow, no files): a configuration (a TrainConfig but
the seed) scored by its mean and std (ddof 1) over seeds, ranked as the paper picks its best beta
per method (seed 001, Section 4.1)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.search.types import SCORES
from pipeline.tracking import FINISHED
from tcwae.config import CONFIG_KEYS, TrainConfig
from tcwae.errors import UserError
from tcwae.methods import METHODS, REGISTRY, all_hyperparameters
from tcwae.metrics import PAPER_RANKING, rank_configurations
from tcwae.metrics import SCORES as IMAGE_SCORES
from tcwae.values import is_finite_number

CONFIG_FIELDS = tuple(name for name in CONFIG_KEYS if name != "seed")
# Each registered method's hyper-parameters and display label, from its declaration.
METHOD_HYPERPARAMETERS = {
    name: tuple(p.name for p in method.hyperparameters) for name, method in REGISTRY.items()
}
HYPERPARAMETER_NAMES = frozenset(all_hyperparameters())
METHOD_LABELS = {name: method.label for name, method in REGISTRY.items()}
# The image scores' column names, in tcwae.metrics.SCORES order.
_LABELS = ("Rec", "MIG", "FactorVAE", "SAP", "DCI D", "DCI C", "DCI I", "InfoM", "InfoC", "InfoE")
SCORE_LABELS = dict(zip(IMAGE_SCORES, _LABELS, strict=True))
Row = Mapping[str, Any]
Rows = Sequence[Row]
Ranking = Sequence[tuple[str, str]]  # (score, "min" or "max"), as in --rank-by


def logged_train_config(values: Row, where: str) -> TrainConfig:
    """A run's logged `config.yaml` typed; a hyper-parameter its method does not read is dropped
    (older runs logged every one)."""
    reads = METHOD_HYPERPARAMETERS.get(values.get("method"), ())
    kept = {k: v for k, v in values.items() if k not in HYPERPARAMETER_NAMES or k in reads}
    return TrainConfig.from_dict(kept, where)


def run_row(
    config: TrainConfig | None,
    metrics: Mapping[str, float],
    run_id: str = "",
    status: str = FINISHED,
) -> dict[str, Any]:
    """One trial: its configuration's set values (None: it logged none), final scores, run id and
    status."""
    row: dict[str, Any] = {"run_id": run_id, "status": status}
    if config is not None:
        row.update({key: v for key, v in config.to_dict().items() if v is not None})
    row.update({score: float(metrics[score]) for score in SCORES if score in metrics})
    return row


def configuration_key(row: Row) -> tuple[tuple[str, Any], ...]:
    """What identifies a configuration: every TrainConfig value of the row except the seed."""
    return tuple((name, row[name]) for name in CONFIG_FIELDS if name in row)


def _hyperparameter_texts(row: Row) -> list[str]:
    names = METHOD_HYPERPARAMETERS.get(row["method"], ())
    return [f"{name}={row[name]:g}" for name in names if name in row]


def configuration_label(row: Row) -> str:
    """'tcwae_mws beta=50 gamma=100' (with the cost when it is not cross-entropy)."""
    cost = [f"cost={row['cost']}"] if row.get("cost", "xent") != "xent" else []
    return " ".join([row["method"], *_hyperparameter_texts(row), *cost])


def aggregate(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """One row per configuration: `method`, `cost`, its hyper-parameters, `label`, `config` (all
    but the seed), `n`, `seeds`, `run_ids`, and each score's mean `<score>` and `<score>_std`."""
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        groups.setdefault(configuration_key(row), []).append(row)
    table = []
    for key, members in groups.items():
        config = dict(key)
        method = config["method"]
        entry: dict[str, Any] = {"method": method, "cost": config.get("cost", "")}
        entry.update({n: config[n] for n in METHOD_HYPERPARAMETERS.get(method, ()) if n in config})
        entry.update(
            label=configuration_label(entry),
            config=config,
            n=len(members),
            seeds=sorted(member["seed"] for member in members),
            run_ids=[member.get("run_id", "") for member in members],
        )
        for score in SCORES:
            if values := [member[score] for member in members if score in member]:
                entry[score], entry[f"{score}_std"] = mean_and_std(values)
        table.append(entry)
    return table


def mean_and_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1) of the finite values; NaN where undefined."""
    finite = np.array([v for v in values if is_finite_number(v)], dtype=float)
    if finite.size == 0:
        return math.nan, math.nan
    std = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    return float(finite.mean()), std


def rank(table: Rows, rank_by: Ranking = PAPER_RANKING) -> list[dict]:
    """All configurations ranked together, best first (adds `rank_<score>` and `mean_rank`)."""
    return rank_configurations([dict(row) for row in table], scores=tuple(rank_by))


def best_per_method(table: Rows, rank_by: Ranking = PAPER_RANKING) -> dict[str, dict[str, Any]]:
    """Each method's best configuration, ranked among its own (the paper's best beta per method)."""
    return {
        method: rank([row for row in table if row["method"] == method], rank_by)[0]
        for method in methods_in_order(table)
    }


def pareto_front(table: Rows, objectives: Ranking = PAPER_RANKING) -> list[dict[str, Any]]:
    """The configurations no other one dominates (as good on every objective, better on one);
    rows without a finite value of every objective are left out."""
    rows = [row for row in table if all(is_finite_number(row.get(s)) for s, _ in objectives)]
    points = [np.array([r[s] if m == "max" else -r[s] for s, m in objectives]) for r in rows]
    return [
        dict(row)
        for i, (row, point) in enumerate(zip(rows, points, strict=True))
        if not any(
            np.all(other >= point) and np.any(other > point)
            for j, other in enumerate(points)
            if j != i
        )
    ]


def beta_slices(table: Rows, best: Mapping[str, Row]) -> list[dict[str, Any]]:
    """Per method with a beta, its configurations equal to its best one but for beta (the paper's
    Fig. 3: beta varies, gamma stays at the chosen value)."""
    rows = []
    for method, chosen in best.items():
        if "beta" in METHOD_HYPERPARAMETERS.get(method, ()):
            others = {k: v for k, v in chosen["config"].items() if k != "beta"}
            rows += [
                dict(row)
                for row in table
                if row["method"] == method
                and all(row["config"].get(k) == v for k, v in others.items())
            ]
    return rows


def format_table(ranked: Rows, rank_by: Ranking = PAPER_RANKING, front: Rows = ()) -> str:
    """The ranked table the sweep prints: rank, configuration, seeds, each ranking score's mean
    +- std and the mean rank; '*' marks the Pareto front."""
    on_front = {identity(row) for row in front}
    header = ["#", "configuration", "n", *[f"{SCORE_LABELS.get(s, s)} ({m})" for s, m in rank_by]]
    lines = [[*header, "mean rank"]]
    for position, row in enumerate(ranked, start=1):
        marker = "*" if identity(row) in on_front else " "
        line = [f"{position}{marker}", row["label"], str(row["n"])]
        lines.append([*line, *[score_cell(row, s) for s, _ in rank_by], f"{row['mean_rank']:.2f}"])
    widths = [max(len(cell) for cell in column) for column in zip(*lines, strict=True)]
    text = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines
    ]
    text.insert(1, "  ".join("-" * width for width in widths))
    if front:
        text.append("* on the Pareto front of " + ", ".join(s for s, _ in rank_by))
    return "\n".join(line.rstrip() for line in text)


def format_stopped(stopped: Rows, rank_by: Ranking = PAPER_RANKING) -> str:
    """The trials successive halving stopped, apart from the ranking (scored with a smaller metric
    profile at fewer steps): configuration, seed, rung step, rung scores."""
    lines = [f"Stopped at a rung by successive halving ({len(stopped)}; not ranked):"]
    for row in sorted(stopped, key=lambda r: (-r["stopped_at"], configuration_label(r))):
        scores = row.get("rung_scores", {})
        values = ", ".join(
            f"{SCORE_LABELS.get(s, s)} {scores[s]:.3g}" for s, _ in rank_by if s in scores
        )
        lines.append(
            f"  {configuration_label(row)} seed {row.get('seed', '?')}: "
            f"step {row['stopped_at']}" + (f" ({values})" if values else "")
        )
    return "\n".join(lines)


def identity(row: Row) -> tuple[tuple[str, Any], ...]:
    """What tells two aggregated rows apart: their full configuration (labels may coincide)."""
    return tuple(row["config"].items())


def is_complete(row: Row) -> bool:
    """Finished, with the configuration it logged (a trial that failed before has none)."""
    return row.get("status", FINISHED) == FINISHED and "method" in row and "seed" in row


def methods_in_order(table: Rows) -> list[str]:
    present = {row["method"] for row in table}
    return [m for m in METHODS if m in present] + sorted(present - set(METHODS))


def mean_std_text(mean: Any, std: Any) -> str:
    """'4.16 ± 0.31', '0.026 ± 0.006': the std to about one significant digit (at least two
    decimals) and the mean to the same decimals, as the paper prints its tables."""
    if not is_finite_number(mean):
        return "n/a"
    if not is_finite_number(std):
        return f"{mean:.4g}"
    decimals = 2 if std <= 0 else min(6, max(2, -math.floor(math.log10(std))))
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def score_cell(row: Row, score: str) -> str:
    return mean_std_text(row.get(score), row.get(f"{score}_std"))


def display_name(row: Row) -> str:
    """'TCWAE-MWS (beta=50, gamma=100)': the method's name and the hyper-parameters it reads."""
    name, values = METHOD_LABELS.get(row["method"], row["method"]), _hyperparameter_texts(row)
    return f"{name} ({', '.join(values)})" if values else name


def parse_rank_by(text: str) -> tuple[tuple[str, str], ...]:
    """`--rank-by`'s 'score:min|max,...' as pairs; a UserError naming the bad item."""
    pairs = []
    for item in text.split(","):
        score, _, mode = item.partition(":")
        if score not in SCORES or mode not in ("min", "max"):
            raise UserError(
                f"--rank-by: {item!r} is not score:min|max with a score in {', '.join(SCORES)}"
            )
        pairs.append((score, mode))
    return tuple(pairs)

"""The report's arithmetic: trials in, configurations averaged over seeds, ranked and compared.

Pure functions of plain rows (no MLflow, no files), so that they can be checked on hand-made
rows. A configuration is everything in a run's TrainConfig but the seed; its scores are the mean
and sample standard deviation (ddof 1; NaN with a single seed) over its seeds. Configurations rank
with `tcwae.metrics.rank_configurations` on the search space's `rank_by` scores, as the paper
picks its best beta per method (seed 001, Section 4.1).
"""

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
from tcwae.values import is_finite_number

CONFIG_FIELDS = tuple(name for name in CONFIG_KEYS if name != "seed")
# Each registered method's hyper-parameters and display label, from its declaration.
METHOD_HYPERPARAMETERS = {
    name: tuple(p.name for p in method.hyperparameters) for name, method in REGISTRY.items()
}
HYPERPARAMETER_NAMES = frozenset(all_hyperparameters())
METHOD_LABELS = {name: method.label for name, method in REGISTRY.items()}

SCORE_LABELS = {
    "rec": "Rec",
    "mig": "MIG",
    "factor_vae": "FactorVAE",
    "sap": "SAP",
    "dci_disentanglement": "DCI D",
    "dci_completeness": "DCI C",
    "dci_informativeness_test": "DCI I",
    "infom": "InfoM",
    "infoc": "InfoC",
    "infoe": "InfoE",
}


def logged_train_config(values: Mapping[str, Any], where: str) -> TrainConfig:
    """A run's logged `config.yaml` typed and validated; a hyper-parameter its method does not
    read is dropped (older runs logged every one)."""
    reads = METHOD_HYPERPARAMETERS.get(values.get("method"), ())
    kept = {k: v for k, v in values.items() if k not in HYPERPARAMETER_NAMES or k in reads}
    return TrainConfig.from_dict(kept, where)


def run_row(
    config: TrainConfig | None,
    metrics: Mapping[str, float],
    run_id: str = "",
    status: str = FINISHED,
) -> dict[str, Any]:
    """One trial as a row: its configuration's set values (unset options left out, as in its
    MLflow parameters; None: the run logged no configuration), its final scores, run id and
    status."""
    row: dict[str, Any] = {"run_id": run_id, "status": status}
    if config is not None:
        row.update({key: v for key, v in config.to_dict().items() if v is not None})
    row.update({score: float(metrics[score]) for score in SCORES if score in metrics})
    return row


def configuration_key(row: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What identifies a configuration: every TrainConfig value of the row except the seed."""
    return tuple((name, row[name]) for name in CONFIG_FIELDS if name in row)


def configuration_label(row: Mapping[str, Any]) -> str:
    """'tcwae_mws beta=50 gamma=100' (with the cost when it is not cross-entropy)."""
    method = row["method"]
    parts = [method]
    parts += [
        f"{name}={row[name]:g}" for name in METHOD_HYPERPARAMETERS.get(method, ()) if name in row
    ]
    if row.get("cost", "xent") != "xent":
        parts.append(f"cost={row['cost']}")
    return " ".join(parts)


def aggregate(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration: `method`, `cost`, the method's hyper-parameters, `config` (the
    full TrainConfig values but the seed), `n`, `seeds`, `run_ids`, and for every score present
    `<score>` (mean over the seeds whose value is finite) and `<score>_std` (ddof 1)."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(configuration_key(row), []).append(row)
    table = []
    for key, members in groups.items():
        config = dict(key)
        method = config["method"]
        entry: dict[str, Any] = {"method": method, "cost": config.get("cost", "")}
        entry.update(
            {
                name: config[name]
                for name in METHOD_HYPERPARAMETERS.get(method, ())
                if name in config
            }
        )
        entry["label"] = configuration_label(entry)
        entry["config"] = config
        entry["n"] = len(members)
        entry["seeds"] = sorted(member["seed"] for member in members)
        entry["run_ids"] = [member.get("run_id", "") for member in members]
        for score in SCORES:
            values = [member[score] for member in members if score in member]
            if values:
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


def rank(
    table: Sequence[Mapping[str, Any]], rank_by: Sequence[tuple[str, str]] = PAPER_RANKING
) -> list[dict[str, Any]]:
    """All configurations ranked together, best first (adds `rank_<score>` and `mean_rank`)."""
    return rank_configurations([dict(row) for row in table], scores=tuple(rank_by))


def best_per_method(
    table: Sequence[Mapping[str, Any]], rank_by: Sequence[tuple[str, str]] = PAPER_RANKING
) -> dict[str, dict[str, Any]]:
    """The best configuration of each method, ranked among that method's configurations only,
    as the paper reports the best beta per method."""
    best = {}
    for method in methods_in_order(table):
        members = [row for row in table if row["method"] == method]
        best[method] = rank(members, rank_by)[0]
    return best


def pareto_front(
    table: Sequence[Mapping[str, Any]], objectives: Sequence[tuple[str, str]] = PAPER_RANKING
) -> list[dict[str, Any]]:
    """The configurations no other configuration dominates (at least as good on every objective,
    better on one). Rows missing a finite value of an objective cannot be compared and are left
    out."""
    comparable = [
        row for row in table if all(is_finite_number(row.get(score)) for score, _ in objectives)
    ]

    def oriented(row: Mapping[str, Any]) -> np.ndarray:
        return np.array([row[s] if mode == "max" else -row[s] for s, mode in objectives])

    points = [oriented(row) for row in comparable]
    front = []
    for i, row in enumerate(comparable):
        dominated = any(
            np.all(other >= points[i]) and np.any(other > points[i])
            for j, other in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(dict(row))
    return front


def beta_slices(
    table: Sequence[Mapping[str, Any]], best: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """For each method with a beta: its configurations that share every value but beta with the
    method's best one (the paper's Fig. 3: beta varies, gamma stays at the chosen value)."""
    rows = []
    for method, chosen in best.items():
        if "beta" not in METHOD_HYPERPARAMETERS.get(method, ()):
            continue
        others = {k: v for k, v in chosen["config"].items() if k != "beta"}
        for row in table:
            same = row["method"] == method and all(
                row["config"].get(k) == v for k, v in others.items()
            )
            if same:
                rows.append(dict(row))
    return rows


def format_table(
    ranked: Sequence[Mapping[str, Any]],
    rank_by: Sequence[tuple[str, str]] = PAPER_RANKING,
    front: Sequence[Mapping[str, Any]] = (),
    limit: int | None = None,
) -> str:
    """The short ranked table the sweep prints: rank, configuration, seeds, mean +- std of each
    ranking score and the mean rank; '*' marks the Pareto front."""
    on_front = {identity(row) for row in front}
    header = ["#", "configuration", "n"]
    header += [f"{SCORE_LABELS.get(s, s)} ({mode})" for s, mode in rank_by]
    header.append("mean rank")
    lines = [header]
    for position, row in enumerate(ranked[:limit] if limit else ranked, start=1):
        marker = "*" if identity(row) in on_front else " "
        line = [f"{position}{marker}", row["label"], str(row["n"])]
        line += [mean_std_text(row.get(s), row.get(f"{s}_std")) for s, _ in rank_by]
        line.append(f"{row['mean_rank']:.2f}")
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    ]
    text.insert(1, "  ".join("-" * width for width in widths))
    if front:
        text.append("* on the Pareto front of " + ", ".join(s for s, _ in rank_by))
    return "\n".join(line.rstrip() for line in text)


def format_stopped(
    stopped: Sequence[Mapping[str, Any]], rank_by: Sequence[tuple[str, str]] = PAPER_RANKING
) -> str:
    """The trials that successive halving stopped, apart from the ranking (their scores come
    from a smaller metric profile at fewer steps): configuration, seed, rung step, rung scores."""
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


def identity(row: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What tells two aggregated rows apart: their full configuration (labels may coincide)."""
    return tuple(row["config"].items())


def is_complete(row: Mapping[str, Any]) -> bool:
    """Finished, with the parameters that place it in a configuration (a trial that failed before
    logging its configuration has none)."""
    return row.get("status", FINISHED) == FINISHED and "method" in row and "seed" in row


def methods_in_order(table: Sequence[Mapping[str, Any]]) -> list[str]:
    present = {row["method"] for row in table}
    return [m for m in METHODS if m in present] + sorted(present - set(METHODS))


def mean_std_text(mean: Any, std: Any) -> str:
    """'4.16 ± 0.31', '0.026 ± 0.006': the standard deviation to about one significant digit
    (at least two decimals) and the mean to the same decimals, as the paper prints its tables."""
    if not is_finite_number(mean):
        return "n/a"
    if not is_finite_number(std):
        return f"{mean:.4g}"
    decimals = 2 if std <= 0 else min(6, max(2, -math.floor(math.log10(std))))
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def score_text(row: Mapping[str, Any], score: str) -> str:
    return f"{score} {mean_std_text(row.get(score), row.get(f'{score}_std'))}"


def display_name(row: Mapping[str, Any]) -> str:
    """'TCWAE-MWS (beta=50, gamma=100)': the method's name and the hyper-parameters it reads."""
    method = row["method"]
    values = [f"{n}={row[n]:g}" for n in METHOD_HYPERPARAMETERS.get(method, ()) if n in row]
    name = METHOD_LABELS.get(method, method)
    return f"{name} ({', '.join(values)})" if values else name


def plain_number(value: Any) -> float | None:
    return float(value) if is_finite_number(value) else None


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

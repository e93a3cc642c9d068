"""Aggregate a finished sweep: scores over seeds, the paper's ranking, the Pareto front, figures.

Runs at the end of `pipeline/sweep.py` and alone on any finished sweep:

    python pipeline/report.py --tracking-uri sqlite:////abs/mlflow.db --parent-run-id ID
    python pipeline/report.py --tracking-uri URI --experiment NAME --sweep NAME [--results-md PATH]

The pure part (rows in, tables and files out) is separate from the MLflow part (child runs in,
artifacts on the parent run out) so that it can be checked on hand-made rows. A configuration is
everything in a run's TrainConfig but the seed; its scores are the mean and sample standard
deviation (ddof 1; NaN with a single seed) over its seeds. Configurations rank with
`tcwae.metrics.rank_configurations` on the search space's `rank_by` scores, as the paper picks its
best beta per method (seed 001, Section 4.1).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pipeline.rungs import rung_metric
from pipeline.search_space import IMAGE_SCORES, SCORES
from pipeline.tracking import TAG_STOPPED_AT
from pipeline.train import MIG_CURVE_METRIC
from tcwae.config import CONFIG_KEYS
from tcwae.methods import METHODS, REGISTRY, all_hyperparameters
from tcwae.metrics import rank_configurations
from tcwae.viz import (
    save_curves,
    save_heatmaps,
    save_method_scores_vs_rec,
    save_scores_vs_rec,
)

DEFAULT_RANK_BY = (("rec", "min"), ("mig", "max"), ("factor_vae", "max"), ("sap", "max"))
PARENT_TAG = "mlflow.parentRunId"
REPORT_ARTIFACT_DIR = "report"
FINISHED = "FINISHED"
TCWAE_METHODS = ("tcwae_mws", "tcwae_gan")
TRAVERSALS_ARTIFACT = "traversals.png"  # what pipeline/train.py logs for every run
SCORES_VS_REC_CAPTION = "Scores against reconstruction along beta (paper Fig. 3)"
METHOD_SCORES_CAPTION = "Scores against reconstruction, every run and each method's mean ± std"
MIG_CURVE_CAPTION = "MIG against training steps, mean ± std over seeds (the budget choice)"
MIG_CURVE_TITLE = "MIG during training, mean ± std over seeds"
CONFIG_FIELDS = tuple(name for name in CONFIG_KEYS if name != "seed")
_FIELD_TYPES = dict(CONFIG_KEYS)
# Each registered method's hyper-parameters and display label, from its declaration.
METHOD_HYPERPARAMETERS = {
    name: tuple(p.name for p in method.hyperparameters) for name, method in REGISTRY.items()
}
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
PAPER_SCORES = ("rec", "mig", "factor_vae", "sap")
EXTRA_SCORES = tuple(score for score in IMAGE_SCORES if score not in PAPER_SCORES)

# Paper (seed 001) Table 1a, dSprites, 5 seeds, 300k iterations: (mean, std) per score.
PAPER_TABLE_1A: dict[str, dict[str, Any]] = {
    "wae_mmd": {
        "rec": (3.01, 0.03),
        "mig": (0.026, 0.006),
        "factor_vae": (0.52, 0.06),
        "sap": (0.010, 0.004),
    },
    "tcwae_mws": {
        "rec": (4.16, 0.31),
        "mig": (0.36, 0.04),
        "factor_vae": (0.75, 0.02),
        "sap": (0.091, 0.004),
    },
    "tcwae_gan": {
        "rec": (3.57, 0.19),
        "mig": (0.34, 0.09),
        "factor_vae": (0.78, 0.09),
        "sap": (0.071, 0.025),
    },
    "beta_tcvae": {
        "rec": (3.73, 0.09),
        "mig": (0.25, 0.05),
        "factor_vae": (0.76, 0.11),
        "sap": (0.081, 0.005),
    },
    "factor_vae": {
        "rec": (3.47, 0.13),
        "mig": (0.26, 0.09),
        "factor_vae": (0.70, 0.05),
        "sap": (0.070, 0.030),
    },
}


class ReportError(RuntimeError):
    """The sweep to report on cannot be found or has no finished trial."""


# ---------------------------------------------------------------------------------------------
# Pure aggregation


def run_row(
    params: Mapping[str, str],
    metrics: Mapping[str, float],
    run_id: str = "",
    status: str = FINISHED,
) -> dict[str, Any]:
    """One trial as a row: its TrainConfig values typed back from MLflow's strings (other params
    are dropped), its final scores, run id and status."""
    row: dict[str, Any] = {"run_id": run_id, "status": status}
    for name, text in params.items():
        if name in _FIELD_TYPES:
            row[name] = _parse_param(_FIELD_TYPES[name], text)
    for score in SCORES:
        if score in metrics:
            row[score] = float(metrics[score])
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
    finite = np.array([v for v in values if math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return math.nan, math.nan
    std = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    return float(finite.mean()), std


def rank(
    table: Sequence[Mapping[str, Any]], rank_by: Sequence[tuple[str, str]] = DEFAULT_RANK_BY
) -> list[dict[str, Any]]:
    """All configurations ranked together, best first (adds `rank_<score>` and `mean_rank`)."""
    return rank_configurations([dict(row) for row in table], scores=tuple(rank_by))


def best_per_method(
    table: Sequence[Mapping[str, Any]], rank_by: Sequence[tuple[str, str]] = DEFAULT_RANK_BY
) -> dict[str, dict[str, Any]]:
    """The best configuration of each method, ranked among that method's configurations only,
    as the paper reports the best beta per method."""
    best = {}
    for method in _methods_in_order(table):
        members = [row for row in table if row["method"] == method]
        best[method] = rank(members, rank_by)[0]
    return best


def pareto_front(
    table: Sequence[Mapping[str, Any]], objectives: Sequence[tuple[str, str]] = DEFAULT_RANK_BY
) -> list[dict[str, Any]]:
    """The configurations no other configuration dominates (at least as good on every objective,
    better on one). Rows missing a finite value of an objective cannot be compared and are left
    out."""
    comparable = [
        row for row in table if all(_is_finite(row.get(score)) for score, _ in objectives)
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
    rank_by: Sequence[tuple[str, str]] = DEFAULT_RANK_BY,
    front: Sequence[Mapping[str, Any]] = (),
    limit: int | None = None,
) -> str:
    """The short ranked table the sweep prints: rank, configuration, seeds, mean +- std of each
    ranking score and the mean rank; '*' marks the Pareto front."""
    on_front = {_identity(row) for row in front}
    header = ["#", "configuration", "n"]
    header += [f"{SCORE_LABELS.get(s, s)} ({mode})" for s, mode in rank_by]
    header.append("mean rank")
    lines = [header]
    for position, row in enumerate(ranked[:limit] if limit else ranked, start=1):
        marker = "*" if _identity(row) in on_front else " "
        line = [f"{position}{marker}", row["label"], str(row["n"])]
        line += [_mean_std(row.get(s), row.get(f"{s}_std")) for s, _ in rank_by]
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
    stopped: Sequence[Mapping[str, Any]], rank_by: Sequence[tuple[str, str]] = DEFAULT_RANK_BY
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


def write_ranking_csv(
    ranked: Sequence[Mapping[str, Any]],
    front: Sequence[Mapping[str, Any]],
    path: str | Path,
    rank_by: Sequence[tuple[str, str]] = DEFAULT_RANK_BY,
) -> None:
    """One line per configuration, best first: position, configuration, seeds, each score's mean
    and std, each ranking score's rank, the mean rank and whether it is on the Pareto front."""
    on_front = {_identity(row) for row in front}
    hyperparameters = sorted(all_hyperparameters())
    scores = [s for s in SCORES if any(s in row for row in ranked)]
    columns = ["position", "label", "method", "cost", *hyperparameters, "n", "seeds"]
    columns += [c for s in scores for c in (s, f"{s}_std")]
    columns += [f"rank_{s}" for s, _ in rank_by] + ["mean_rank", "pareto", "run_ids"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for position, row in enumerate(ranked, start=1):
            line = {c: row.get(c, "") for c in columns}
            line.update(
                position=position,
                seeds=" ".join(str(s) for s in row["seeds"]),
                run_ids=" ".join(row["run_ids"]),
                pareto=_identity(row) in on_front,
            )
            writer.writerow(line)


def write_best_configs(
    best_overall: Mapping[str, Any],
    best_by_method: Mapping[str, Mapping[str, Any]],
    directory: str | Path,
    rank_by: Sequence[tuple[str, str]] = DEFAULT_RANK_BY,
) -> tuple[Path, Path]:
    """`best_config.yaml`: the best configuration as TrainConfig keys (seed 0), loadable with
    `TrainConfig.from_yaml`, its scores in a comment; `best_per_method.yaml`: each method's best
    configuration with its scores."""
    directory = Path(directory)
    best_path = directory / "best_config.yaml"
    per_method_path = directory / "best_per_method.yaml"
    header = [
        f"# Best configuration of the sweep: {best_overall['label']}",
        f"# over seeds {best_overall['seeds']}: "
        + ", ".join(_score_text(best_overall, s) for s, _ in rank_by)
        + f"; mean rank {best_overall['mean_rank']:.2f}",
    ]
    body = yaml.safe_dump({**best_overall["config"], "seed": 0}, sort_keys=False)
    best_path.write_text("\n".join(header) + "\n" + body)
    per_method = {
        method: {
            "label": row["label"],
            "config": dict(row["config"]),
            "seeds": list(row["seeds"]),
            "mean_rank_within_method": float(row["mean_rank"]),
            "scores": {
                s: {"mean": _plain(row.get(s)), "std": _plain(row.get(f"{s}_std"))}
                for s in SCORES
                if s in row
            },
        }
        for method, row in best_by_method.items()
    }
    per_method_path.write_text(yaml.safe_dump(per_method, sort_keys=False))
    return best_path, per_method_path


def save_figures(
    table: Sequence[Mapping[str, Any]],
    best_by_method: Mapping[str, Mapping[str, Any]],
    directory: str | Path,
    rank_by: Sequence[tuple[str, str]] = DEFAULT_RANK_BY,
) -> list[Path]:
    """Paper Fig. 1: per method searched over (beta, gamma), heatmaps of every ranking score;
    paper Fig. 3: factor scores against reconstruction along beta at each method's best gamma."""
    directory = Path(directory)
    scores = [s for s, _ in rank_by]
    paths = []
    for method in _methods_in_order(table):
        if METHOD_HYPERPARAMETERS.get(method) != ("beta", "gamma"):
            continue
        members = [row for row in table if row["method"] == method]
        if len(members) < 2:
            continue
        path = directory / f"heatmap_{method}.png"
        save_heatmaps(members, "beta", "gamma", scores, path, f"{method}: mean over seeds")
        paths.append(path)
    factor_scores = [s for s in scores if s != "rec"]
    sliced = beta_slices(table, best_by_method)
    if "rec" in scores and factor_scores and sliced:
        path = directory / "scores_vs_rec.png"
        save_scores_vs_rec(sliced, path, score_keys=factor_scores)
        paths.append(path)
    return paths


@dataclass
class Report:
    """Everything the report computed and the files it wrote."""

    runs: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    stopped: list[dict[str, Any]]
    ranked: list[dict[str, Any]]
    best_overall: dict[str, Any]
    best_by_method: dict[str, dict[str, Any]]
    front: list[dict[str, Any]]
    text: str
    files: list[Path] = field(default_factory=list)


def build_report(
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    rank_by: Sequence[tuple[str, str]] = DEFAULT_RANK_BY,
) -> Report:
    """Aggregate, rank and draw finished trials (status FINISHED); write the ranking CSV, the
    best configurations, the figures and the printed table into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    finished = [dict(row) for row in rows if _is_complete(row)]
    stopped = [dict(row) for row in rows if not _is_complete(row) and "stopped_at" in row]
    failed = [dict(row) for row in rows if not _is_complete(row) and "stopped_at" not in row]
    if not finished:
        raise ReportError(
            f"no trial trained to the full budget to report on ({len(stopped)} stopped at a "
            f"rung, {len(failed)} not finished)"
        )
    table = aggregate(finished)
    ranked = rank(table, rank_by)
    best_by_method = best_per_method(table, rank_by)
    front = pareto_front(ranked, rank_by)
    text = format_table(ranked, rank_by, front)
    if stopped:
        text += "\n" + format_stopped(stopped, rank_by)
    if failed:
        text += f"\n{len(failed)} trial(s) not finished and left out: " + ", ".join(
            f"{row.get('run_id', '?')} ({row.get('status', '?')})" for row in failed
        )
    csv_path = out_dir / "ranking.csv"
    write_ranking_csv(ranked, front, csv_path, rank_by)
    best_paths = write_best_configs(ranked[0], best_by_method, out_dir, rank_by)
    table_path = out_dir / "ranking.txt"
    table_path.write_text(text + "\n")
    figures = save_figures(table, best_by_method, out_dir, rank_by)
    return Report(
        runs=finished,
        failed=failed,
        stopped=stopped,
        ranked=ranked,
        best_overall=ranked[0],
        best_by_method=best_by_method,
        front=front,
        text=text,
        files=[csv_path, *best_paths, table_path, *figures],
    )


# ---------------------------------------------------------------------------------------------
# RESULTS.md (issue 8): our table beside the paper's, and the paper's claims checked


@dataclass(frozen=True)
class Claim:
    statement: str
    holds: bool | None  # None: the measurements cannot decide (a method or a std is missing)
    detail: str


def check_claims(table: Sequence[Mapping[str, Any]]) -> list[Claim]:
    """The three claims of issue 8 on one row per method (mean and std over seeds). "Within /
    by more than k standard deviations" uses the larger of the two rows' standard deviations."""
    rows = {row["method"]: row for row in table}
    return [_claim_mig_above_wae(rows), _claim_wae_lowest_rec(rows), _claim_mig_on_par(rows)]


def _claim_mig_above_wae(rows: Mapping[str, Mapping[str, Any]]) -> Claim:
    statement = "TCWAE-MWS and TCWAE-GAN MIG exceed WAE MIG by more than three standard deviations"
    needed = ("tcwae_mws", "tcwae_gan", "wae_mmd")
    problem = _undecidable(rows, needed, "mig")
    if problem:
        return Claim(statement, None, problem)
    wae = rows["wae_mmd"]
    verdicts, details = [], []
    for method in ("tcwae_mws", "tcwae_gan"):
        row = rows[method]
        std = max(row["mig_std"], wae["mig_std"])
        gap = row["mig"] - wae["mig"]
        verdicts.append(gap > 3 * std)
        details.append(
            f"{METHOD_LABELS[method]} - WAE = {gap:.3f} "
            f"{'>' if gap > 3 * std else '<='} 3 x {std:.3f} = {3 * std:.3f}"
        )
    return Claim(statement, all(verdicts), "; ".join(details))


def _claim_wae_lowest_rec(rows: Mapping[str, Mapping[str, Any]]) -> Claim:
    statement = "WAE has the lowest reconstruction error"
    if "wae_mmd" not in rows or not _is_finite(rows["wae_mmd"].get("rec")):
        return Claim(statement, None, "no WAE reconstruction error")
    others = {m: r["rec"] for m, r in rows.items() if m != "wae_mmd" and _is_finite(r.get("rec"))}
    if not others:
        return Claim(statement, None, "no other method's reconstruction error")
    lowest_other = min(others, key=others.get)
    wae_rec = rows["wae_mmd"]["rec"]
    holds = wae_rec < others[lowest_other]
    return Claim(
        statement,
        holds,
        f"WAE {wae_rec:.3f} {'<' if holds else '>='} lowest other "
        f"{METHOD_LABELS.get(lowest_other, lowest_other)} {others[lowest_other]:.3f}",
    )


def _claim_mig_on_par(rows: Mapping[str, Mapping[str, Any]]) -> Claim:
    statement = "TCWAE MIG is within one standard deviation of, or above, beta-TCVAE and FactorVAE"
    needed = ("tcwae_mws", "tcwae_gan", "beta_tcvae", "factor_vae")
    problem = _undecidable(rows, needed, "mig")
    if problem:
        return Claim(statement, None, problem)
    verdicts, details = [], []
    for method in ("tcwae_mws", "tcwae_gan"):
        for baseline in ("beta_tcvae", "factor_vae"):
            row, base = rows[method], rows[baseline]
            std = max(row["mig_std"], base["mig_std"])
            holds = row["mig"] >= base["mig"] - std
            verdicts.append(holds)
            details.append(
                f"{METHOD_LABELS[method]} {row['mig']:.3f} {'>=' if holds else '<'} "
                f"{METHOD_LABELS[baseline]} {base['mig']:.3f} - {std:.3f}"
            )
    return Claim(statement, all(verdicts), "; ".join(details))


@dataclass(frozen=True)
class BudgetStep:
    """MIG of every method at one training step (mean, std over seeds) and the two MIG claims."""

    step: int
    mig: Mapping[str, tuple[float, float]]
    above_wae: Claim
    on_par: Claim


def curves_by_method(
    runs: Sequence[Mapping[str, Any]], histories: Mapping[str, Mapping[int, float]]
) -> dict[str, dict[int, list[float]]]:
    """method -> step -> the values of its runs (one per seed), from each run's metric history
    keyed by run id; a step is kept only where every run of the method logged it."""
    by_method: dict[str, list[Mapping[int, float]]] = {}
    for run in runs:
        history = histories.get(run["run_id"])
        if history:
            by_method.setdefault(run["method"], []).append(history)
    curves = {}
    for method, members in by_method.items():
        steps = set.intersection(*(set(history) for history in members))
        curves[method] = {step: [history[step] for history in members] for step in sorted(steps)}
    return curves


def budget_steps(curves: Mapping[str, Mapping[int, Sequence[float]]]) -> list[BudgetStep]:
    """The two MIG claims of issue 8 checked at every step that all methods logged: where along
    training the comparison becomes (and stays) what the final table says."""
    if not curves:
        return []
    steps = sorted(set.intersection(*(set(curve) for curve in curves.values())))
    result = []
    for step in steps:
        rows = {}
        for method, curve in curves.items():
            mean, std = mean_and_std(curve[step])
            rows[method] = {"method": method, "mig": mean, "mig_std": std}
        result.append(
            BudgetStep(
                step=step,
                mig={method: (row["mig"], row["mig_std"]) for method, row in rows.items()},
                above_wae=_claim_mig_above_wae(rows),
                on_par=_claim_mig_on_par(rows),
            )
        )
    return result


def holds_from(budget: Sequence[BudgetStep], which: str) -> int | None:
    """The first step from which a claim ('above_wae' or 'on_par') holds at every later step."""
    first = None
    for entry in budget:
        if getattr(entry, which).holds:
            first = entry.step if first is None else first
        else:
            first = None
    return first


def _undecidable(rows: Mapping[str, Mapping[str, Any]], methods: Sequence[str], score: str) -> str:
    missing = [
        METHOD_LABELS[m] for m in methods if m not in rows or not _is_finite(rows[m].get(score))
    ]
    if missing:
        return f"no {SCORE_LABELS[score]} for {', '.join(missing)}"
    no_std = [METHOD_LABELS[m] for m in methods if not _is_finite(rows[m].get(f"{score}_std"))]
    if no_std:
        return f"no standard deviation (fewer than 2 seeds) for {', '.join(no_std)}"
    return ""


def write_results_md(
    table: Sequence[Mapping[str, Any]],
    paper_table: Mapping[str, Mapping[str, Any]],
    budget: str,
    machine: str,
    figures: Mapping[str, str | Path],
    path: str | Path,
    budget_curve: Sequence[BudgetStep] = (),
) -> list[Claim]:
    """Write RESULTS.md: ours (mean +- std over seeds) beside the paper's Rec, MIG, FactorVAE and
    SAP, our DCI and InfoMEC, the budget and machine, the three claims as computed, and the
    figures (copied next to the file, in `<stem>_figures/`, so the page is self-contained).
    `table` has one row per method (e.g. `best_per_method` values). Returns the claims."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = {row["method"]: row for row in table}
    methods = [*paper_table, *(m for m in rows if m not in paper_table)]
    claims = check_claims(table)
    lines = [
        "# Results: paper Table 1a (dSprites), our runs beside the paper's",
        "",
        f"**Budget:** {budget}",
        "",
        f"**Machine:** {machine}",
        "",
        "Ours: mean ± standard deviation over seeds (n = number of seeds). Paper: seed 001,",
        "Table 1a (5 seeds, 300k iterations, batch 256), at the same hyper-parameters. Our Rec is",
        "the mean per-image reconstruction cost (cross-entropy summed over pixels); the paper does",
        "not state the unit of its Rec column, so compare Rec between methods, not with the paper.",
        "",
    ]
    header = ["Method", "n"]
    for score in PAPER_SCORES:
        header += [f"{SCORE_LABELS[score]} (ours)", f"{SCORE_LABELS[score]} (paper)"]
    lines += _markdown_table(
        header,
        [
            [
                _display_name(rows[m]) if m in rows else METHOD_LABELS.get(m, m),
                str(rows[m]["n"]) if m in rows else "0",
                *[
                    cell
                    for score in PAPER_SCORES
                    for cell in (
                        _mean_std(rows[m].get(score), rows[m].get(f"{score}_std"))
                        if m in rows
                        else "not run",
                        _paper_cell(paper_table.get(m, {}), score),
                    )
                ],
            ]
            for m in methods
        ],
    )
    lines += ["", "Disentanglement beyond the paper's scores (ours only):", ""]
    lines += _markdown_table(
        ["Method", *[SCORE_LABELS[s] for s in EXTRA_SCORES]],
        [
            [
                _display_name(rows[m]),
                *[_mean_std(rows[m].get(s), rows[m].get(f"{s}_std")) for s in EXTRA_SCORES],
            ]
            for m in methods
            if m in rows
        ],
    )
    lines += ["", "## The paper's claims, checked on these numbers", ""]
    for claim in claims:
        verdict = {True: "holds", False: "does not hold", None: "cannot tell"}[claim.holds]
        lines.append(f"- **{verdict}**: {claim.statement}. {claim.detail}.")
    lines += [
        "",
        '"Within" / "by more than" k standard deviations uses the larger of the two methods\'',
        "standard deviations.",
    ]
    if budget_curve:
        lines += _budget_section(budget_curve, methods)
    if figures:
        figure_dir = path.parent / f"{path.stem}_figures"
        figure_dir.mkdir(parents=True, exist_ok=True)
        lines += ["", "## Figures", ""]
        for caption, source in figures.items():
            target = figure_dir / Path(source).name
            if Path(source).resolve() != target.resolve():
                shutil.copyfile(source, target)
            lines += [f"{caption}:", "", f"![{caption}]({target.relative_to(path.parent)})", ""]
    write_text_atomically(path, "\n".join(lines).rstrip() + "\n")
    return claims


def _budget_section(budget: Sequence[BudgetStep], methods: Sequence[str]) -> list[str]:
    present = [m for m in methods if m in budget[0].mig]
    lines = [
        "",
        "## Budget: MIG against training steps",
        "",
        "MIG of every run logged during training (`mig_every`, same sample size as the final",
        "MIG, a fresh draw at each step), mean ± std over seeds, with the two MIG claims checked",
        "at each step. This is how the budget was chosen: the comparison is stable from the step",
        "at which a claim starts holding for every later step.",
        "",
    ]
    verdict = {True: "holds", False: "no", None: "-"}
    lines += _markdown_table(
        ["Step", *[METHOD_LABELS.get(m, m) for m in present], "TCWAE > WAE + 3 std", "on par"],
        [
            [
                str(entry.step),
                *[_mean_std(*entry.mig[m]) for m in present],
                verdict[entry.above_wae.holds],
                verdict[entry.on_par.holds],
            ]
            for entry in budget
        ],
    )
    lines.append("")
    for which, name in (("above_wae", "TCWAE > WAE + 3 std"), ("on_par", "on par")):
        first = holds_from(budget, which)
        if first is not None:
            stable = f"holds from step {first} to the last step logged"
        elif all(getattr(entry, which).holds is None for entry in budget):
            stable = "cannot tell (a method or a standard deviation is missing)"
        else:
            stable = "does not hold at the last step logged"
        lines.append(f"- *{name}*: {stable}.")
    return lines


def write_text_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Write under a temporary name beside `path`, then rename: no reader sees half a file, and
    a failed write leaves the old one. `mode` because mkstemp files are private."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def describe_budget(runs: Sequence[Mapping[str, Any]]) -> str:
    """The training budget the runs share, read from their configurations."""

    def values(key: str) -> str:
        return ", ".join(str(v) for v in sorted({run[key] for run in runs if key in run}))

    seeds = sorted({run["seed"] for run in runs})
    return (
        f"{values('steps')} steps at batch {values('batch_size')}, seeds {seeds} "
        f"({len(runs)} trials), metric profile {values('eval_profile')}, "
        f"data source {values('data_source')}"
    )


def describe_machine() -> str:
    """This machine in one line (the one that ran the sweep when the report follows it)."""
    text = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores"
    try:
        import torch

        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return text


# ---------------------------------------------------------------------------------------------
# MLflow


def find_parent_run_id(client: Any, experiment: str, sweep: str) -> str:
    """The newest top-level run named `sweep` in `experiment`."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ReportError(f"no MLflow experiment named {experiment!r}")
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"attributes.run_name = '{sweep}'",
        order_by=["attributes.start_time DESC"],
    )
    parents = [run for run in runs if PARENT_TAG not in run.data.tags]
    if not parents:
        raise ReportError(f"no sweep run named {sweep!r} in experiment {experiment!r}")
    return parents[0].info.run_id


def collect_rows(client: Any, parent_run_id: str) -> list[dict[str, Any]]:
    """The child runs of a sweep's parent run as rows (every status; `build_report` keeps the
    finished ones)."""
    parent = client.get_run(parent_run_id)
    rows, token = [], None
    while True:
        page = client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
            max_results=1000,
            page_token=token,
        )
        for run in page:
            row = run_row(run.data.params, run.data.metrics, run.info.run_id, run.info.status)
            if TAG_STOPPED_AT in run.data.tags:
                row["stopped_at"] = int(run.data.tags[TAG_STOPPED_AT])
                row["rung_scores"] = {
                    score: value
                    for score in SCORES
                    if (value := run.data.metrics.get(rung_metric(score))) is not None
                }
            rows.append(row)
        token = page.token
        if not token:
            return rows


def collect_histories(
    client: Any, runs: Sequence[Mapping[str, Any]], metric: str = MIG_CURVE_METRIC
) -> dict[str, dict[int, float]]:
    """run id -> {step: value} of `metric` for every run that logged it."""
    histories = {}
    for run in runs:
        points = client.get_metric_history(run["run_id"], metric)
        if points:
            histories[run["run_id"]] = {point.step: point.value for point in points}
    return histories


def log_report(client: Any, parent_run_id: str, report: Report) -> None:
    """Attach the report's files to the parent run and record the best configuration on it."""
    for path in report.files:
        client.log_artifact(parent_run_id, str(path), artifact_path=REPORT_ARTIFACT_DIR)
    best = report.best_overall
    client.set_tag(parent_run_id, "best_config", best["label"])
    for method, row in report.best_by_method.items():
        client.set_tag(parent_run_id, f"best_config.{method}", row["label"])
    for score in SCORES:
        if _is_finite(best.get(score)):
            client.log_metric(parent_run_id, f"best_{score}", float(best[score]))
    client.log_metric(parent_run_id, "finished_trials", len(report.runs))
    client.log_metric(parent_run_id, "unfinished_trials", len(report.failed))


def best_tcwae_run(report: Report) -> tuple[str, dict[str, Any]] | None:
    """(run id, configuration row) of the best TCWAE model: the highest-ranked TCWAE
    configuration, and among its seeds the run with the highest MIG."""
    for row in report.ranked:
        if row["method"] in TCWAE_METHODS:
            runs = [run for run in report.runs if run["run_id"] in row["run_ids"]]
            best = max(runs, key=lambda run: run.get("mig", -math.inf))
            return best["run_id"], row
    return None


def report_sweep(
    client: Any,
    parent_run_id: str,
    out_dir: str | Path,
    rank_by: Sequence[tuple[str, str]] = DEFAULT_RANK_BY,
    results_md: str | Path | None = None,
    budget: str | None = None,
    machine: str | None = None,
) -> Report:
    """Collect a sweep's children, build the report in `out_dir`, log it to the parent run; with
    `results_md`, also write RESULTS.md (paper Table 1a beside ours) and log it too."""
    report = build_report(collect_rows(client, parent_run_id), out_dir, rank_by)
    if results_md is not None:
        figures = {}
        tcwae_run = best_tcwae_run(report)
        if tcwae_run is not None:
            run_id, row = tcwae_run
            if TRAVERSALS_ARTIFACT in {item.path for item in client.list_artifacts(run_id)}:
                local = client.download_artifacts(run_id, TRAVERSALS_ARTIFACT, str(out_dir))
                figures[f"Latent traversals of the best TCWAE model, {row['label']}"] = local
        scores_vs_rec = [path for path in report.files if path.name == "scores_vs_rec.png"]
        methods = [row["method"] for row in report.ranked]
        if scores_vs_rec and len(set(methods)) < len(methods):  # some method has a beta series
            figures[SCORES_VS_REC_CAPTION] = scores_vs_rec[0]
        method_scores = Path(out_dir) / "method_scores_vs_rec.png"
        save_method_scores_vs_rec(
            [
                {**run, "method": METHOD_LABELS.get(run["method"], run["method"])}
                for run in report.runs
            ],
            method_scores,
        )
        report.files.append(method_scores)
        figures[METHOD_SCORES_CAPTION] = method_scores
        chosen = {run_id for row in report.best_by_method.values() for run_id in row["run_ids"]}
        runs = [run for run in report.runs if run["run_id"] in chosen]
        curves = curves_by_method(runs, collect_histories(client, runs))
        if curves:
            curve_path = Path(out_dir) / "mig_vs_steps.png"
            save_curves(
                {METHOD_LABELS.get(m, m): c for m, c in curves.items()},
                curve_path,
                "MIG",
                MIG_CURVE_TITLE,
            )
            report.files.append(curve_path)
            figures[MIG_CURVE_CAPTION] = curve_path
        write_results_md(
            list(report.best_by_method.values()),
            PAPER_TABLE_1A,
            budget or describe_budget(report.runs),
            machine or describe_machine(),
            figures,
            results_md,
            budget_steps(curves),
        )
        report.files.append(Path(results_md))
    log_report(client, parent_run_id, report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True, help="e.g. sqlite:////abs/path/mlflow.db")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--parent-run-id", help="the sweep's parent run")
    which.add_argument(
        "--sweep", help="the sweep's name (its parent run's name); needs --experiment"
    )
    parser.add_argument("--experiment", help="the MLflow experiment holding the sweep")
    parser.add_argument(
        "--rank-by",
        default=",".join(f"{s}:{m}" for s, m in DEFAULT_RANK_BY),
        help="score:min|max,... (default: the paper's four scores)",
    )
    parser.add_argument("--out", help="directory for the report files (default: a temporary one)")
    parser.add_argument(
        "--results-md", help="also write RESULTS.md here (paper Table 1a beside ours)"
    )
    parser.add_argument("--budget", help="budget line for RESULTS.md (default: read from the runs)")
    parser.add_argument("--machine", help="machine line for RESULTS.md (default: this machine)")
    args = parser.parse_args(argv)
    if args.sweep and not args.experiment:
        parser.error("--sweep needs --experiment")
    rank_by = _parse_rank_by(parser, args.rank_by)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=args.tracking_uri)
    try:
        parent_id = args.parent_run_id or find_parent_run_id(client, args.experiment, args.sweep)
        with tempfile.TemporaryDirectory(prefix="tcwae-report-") as scratch:
            report = report_sweep(
                client,
                parent_id,
                args.out or scratch,
                rank_by,
                args.results_md,
                args.budget,
                args.machine,
            )
    except ReportError as err:
        print(f"report: {err}", file=sys.stderr)
        return 1
    print(report.text)
    print(f"\nbest: {report.best_overall['label']}")
    print(f"logged to MLflow run {parent_id}, artifacts under '{REPORT_ARTIFACT_DIR}/'")
    return 0


def _parse_rank_by(parser: argparse.ArgumentParser, text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in text.split(","):
        score, _, mode = item.partition(":")
        if score not in SCORES or mode not in ("min", "max"):
            parser.error(
                f"--rank-by: {item!r} is not score:min|max with a score in {', '.join(SCORES)}"
            )
        pairs.append((score, mode))
    return tuple(pairs)


def _parse_param(type_name: Any, text: str) -> Any:
    type_name = type_name if isinstance(type_name, str) else type_name.__name__
    if type_name.endswith(" | None"):
        if text == "None":
            return None
        type_name = type_name.removesuffix(" | None")
    if type_name == "bool":
        return text == "True"
    if type_name == "int":
        return int(float(text))
    if type_name == "float":
        return float(text)
    return text


def _identity(row: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What tells two aggregated rows apart: their full configuration (labels may coincide)."""
    return tuple(row["config"].items())


def _is_complete(row: Mapping[str, Any]) -> bool:
    """Finished, with the parameters that place it in a configuration (a trial that failed before
    logging its configuration has none)."""
    return row.get("status", FINISHED) == FINISHED and "method" in row and "seed" in row


def _methods_in_order(table: Sequence[Mapping[str, Any]]) -> list[str]:
    present = {row["method"] for row in table}
    return [m for m in METHODS if m in present] + sorted(present - set(METHODS))


def _is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _mean_std(mean: Any, std: Any) -> str:
    """'4.16 ± 0.31', '0.026 ± 0.006': the standard deviation to about one significant digit
    (at least two decimals) and the mean to the same decimals, as the paper prints its tables."""
    if not _is_finite(mean):
        return "n/a"
    if not _is_finite(std):
        return f"{mean:.4g}"
    decimals = 2 if std <= 0 else min(6, max(2, -math.floor(math.log10(std))))
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def _score_text(row: Mapping[str, Any], score: str) -> str:
    return f"{score} {_mean_std(row.get(score), row.get(f'{score}_std'))}"


def _display_name(row: Mapping[str, Any]) -> str:
    """'TCWAE-MWS (beta=50, gamma=100)': the method's name and the hyper-parameters it reads."""
    method = row["method"]
    values = [f"{n}={row[n]:g}" for n in METHOD_HYPERPARAMETERS.get(method, ()) if n in row]
    name = METHOD_LABELS.get(method, method)
    return f"{name} ({', '.join(values)})" if values else name


def _paper_cell(paper_row: Mapping[str, Any], score: str) -> str:
    if score not in paper_row:
        return "—"
    return _mean_std(*paper_row[score])


def _plain(value: Any) -> float | None:
    return float(value) if _is_finite(value) else None


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


if __name__ == "__main__":
    sys.exit(main())

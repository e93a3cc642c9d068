"""Report a finished sweep: its trials read from MLflow, ranked, drawn, and logged back to it.

Runs at the end of `pipeline/sweep.py` and alone on any finished sweep:

    python pipeline/report.py --tracking-uri sqlite:////abs/mlflow.db --parent-run-id ID
    python pipeline/report.py --tracking-uri URI --experiment NAME --sweep NAME [--results-md PATH]
"""

from __future__ import annotations

import csv
import math
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline import report_ranking as ranking
from pipeline import report_results as results
from pipeline.cli import ArgumentParser, add_location_flags, run_command
from pipeline.evaluation import TRAVERSALS
from pipeline.metric_keys import MIG_CURVE_METRIC
from pipeline.report_ranking import METHOD_LABELS, Ranking, Row, Rows, is_complete
from pipeline.report_sequences import SECTION_HEADING, sequence_section
from pipeline.search.successive_halving import RUNG_SCORES, rung_metric
from pipeline.search.types import SCORES
from pipeline.tracking import CONFIG_ARTIFACT, TAG_STOPPED_AT, TAG_SWEEP, Tracking
from pipeline.tracking_store import check_tracking_uri, resolve_tracking_uri
from tcwae import sweep_figures
from tcwae.errors import UserError
from tcwae.methods import REGISTRY, all_hyperparameters
from tcwae.metrics import PAPER_RANKING
from tcwae.values import is_finite_number

PROG = "report"
REPORT_ARTIFACT_DIR = "report"


def write_ranking_csv(
    ranked: Rows, front: Rows, path: str | Path, rank_by: Ranking = PAPER_RANKING
) -> None:
    """One line per configuration, best first: its values, scores, ranks and Pareto membership."""
    on_front = {ranking.identity(row) for row in front}
    scores = [s for s in SCORES if any(s in row for row in ranked)]
    columns = ["position", "label", "method", "cost", *sorted(all_hyperparameters()), "n", "seeds"]
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
                pareto=ranking.identity(row) in on_front,
            )
            writer.writerow(line)


def write_best_configs(
    best_overall: Row,
    best_by_method: Mapping[str, Row],
    directory: Path,
    rank_by: Ranking = PAPER_RANKING,
) -> tuple[Path, Path]:
    """`best_config.yaml`: the best configuration, loadable with `TrainConfig.from_yaml` (seed 0),
    its scores in a comment; `best_per_method.yaml`: each method's best with its scores."""
    best_path, per_method_path = directory / "best_config.yaml", directory / "best_per_method.yaml"
    scores = ", ".join(f"{s} {ranking.score_cell(best_overall, s)}" for s, _ in rank_by)
    best_path.write_text(
        f"# Best configuration of the sweep: {best_overall['label']}\n"
        f"# over seeds {best_overall['seeds']}: {scores}; "
        f"mean rank {best_overall['mean_rank']:.2f}\n"
        + yaml.safe_dump({**best_overall["config"], "seed": 0}, sort_keys=False)
    )

    def plain(value: Any) -> float | None:
        return float(value) if is_finite_number(value) else None

    per_method = {
        method: {
            "label": row["label"],
            "config": dict(row["config"]),
            "seeds": list(row["seeds"]),
            "mean_rank_within_method": float(row["mean_rank"]),
            "scores": {
                s: {"mean": plain(row.get(s)), "std": plain(row.get(f"{s}_std"))}
                for s in SCORES
                if s in row
            },
        }
        for method, row in best_by_method.items()
    }
    per_method_path.write_text(yaml.safe_dump(per_method, sort_keys=False))
    return best_path, per_method_path


def save_figures(
    table: Rows,
    best_by_method: Mapping[str, Row],
    directory: Path,
    rank_by: Ranking = PAPER_RANKING,
) -> list[Path]:
    """Paper Fig. 1 (heatmaps of each ranking score over (beta, gamma)) and Fig. 3 (factor scores
    against Rec along beta at each method's best gamma)."""
    scores = [s for s, _ in rank_by]
    paths = []
    for method in ranking.methods_in_order(table):
        members = [row for row in table if row["method"] == method]
        if ranking.METHOD_HYPERPARAMETERS.get(method) == ("beta", "gamma") and len(members) > 1:
            paths.append(directory / f"heatmap_{method}.png")
            sweep_figures.save_heatmaps(
                members, "beta", "gamma", scores, paths[-1], f"{method}: mean over seeds"
            )
    factor_scores = [s for s in scores if s != "rec"]
    sliced = ranking.beta_slices(table, best_by_method)
    if "rec" in scores and factor_scores and sliced:
        paths.append(directory / "scores_vs_rec.png")
        sweep_figures.save_scores_vs_rec(sliced, paths[-1], score_keys=factor_scores)
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


def build_report(rows: Rows, out_dir: str | Path, rank_by: Ranking = PAPER_RANKING) -> Report:
    """Aggregate, rank and draw the finished trials; write the report's files into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    finished = [dict(row) for row in rows if is_complete(row)]
    stopped = [dict(row) for row in rows if not is_complete(row) and "stopped_at" in row]
    failed = [dict(row) for row in rows if not is_complete(row) and "stopped_at" not in row]
    if not finished:
        raise UserError(
            f"no trial trained to the full budget to report on ({len(stopped)} stopped at a "
            f"rung, {len(failed)} not finished)"
        )
    table = ranking.aggregate(finished)
    ranked = ranking.rank(table, rank_by)
    best_by_method = ranking.best_per_method(table, rank_by)
    front = ranking.pareto_front(ranked, rank_by)
    text = ranking.format_table(ranked, rank_by, front)
    if stopped:
        text += "\n" + ranking.format_stopped(stopped, rank_by)
    if failed:
        text += f"\n{len(failed)} trial(s) not finished and left out: " + ", ".join(
            f"{row.get('run_id', '?')} ({row.get('status', '?')})" for row in failed
        )
    write_ranking_csv(ranked, front, out_dir / "ranking.csv", rank_by)
    best_paths = write_best_configs(ranked[0], best_by_method, out_dir, rank_by)
    (out_dir / "ranking.txt").write_text(text + "\n")
    figures = save_figures(table, best_by_method, out_dir, rank_by)
    files = [out_dir / "ranking.csv", *best_paths, out_dir / "ranking.txt", *figures]
    return Report(finished, failed, stopped, ranked, ranked[0], best_by_method, front, text, files)


def collect_rows(tracking: Tracking, parent_run_id: str) -> list[dict[str, Any]]:
    """The child runs of a sweep's parent run as rows (every status)."""
    rows = []
    for run in tracking.child_runs(parent_run_id):
        run_id, metrics, tags = run.info.run_id, run.data.metrics, run.data.tags
        values = tracking.logged_config(run_id)
        where = f"MLflow run {run_id}: {CONFIG_ARTIFACT}"
        config = None if values is None else ranking.logged_train_config(values, where)
        rows.append(ranking.run_row(config, metrics, run_id, run.info.status))
        if TAG_STOPPED_AT in tags:
            rows[-1]["stopped_at"] = int(tags[TAG_STOPPED_AT])
            rows[-1]["rung_scores"] = {
                s: metrics[rung_metric(s)] for s in RUNG_SCORES if rung_metric(s) in metrics
            }
    return rows


def pool_sweeps(row_lists: Sequence[Rows]) -> list[dict[str, Any]]:
    """The rows of a sweep and of the sweeps that re-ran its missing trials (`sweep.py --methods
    M --seeds S`) as one list, without the unfinished trials another sweep finished."""
    rows = [dict(row) for found in row_lists for row in found]

    def trial(row: Row) -> tuple:
        return ranking.configuration_key(row), row.get("seed")

    done = {trial(row) for row in rows if is_complete(row)}
    return [row for row in rows if is_complete(row) or trial(row) not in done]


def collect_histories(
    tracking: Tracking, runs: Rows, metric: str = MIG_CURVE_METRIC
) -> dict[str, dict[int, float]]:
    """run id -> {step: value} of `metric` for every run that logged it."""
    histories = {run["run_id"]: tracking.metric_history(run["run_id"], metric) for run in runs}
    return {run_id: dict(points) for run_id, points in histories.items() if points}


def report_sweep(
    tracking: Tracking,
    parent_run_id: str,
    out_dir: str | Path,
    rank_by: Ranking = PAPER_RANKING,
    results_md: str | Path | None = None,
    budget: str | None = None,
    machine: str | None = None,
    added_parent_run_ids: Sequence[str] = (),
) -> Report:
    """Build the report of a sweep's children (and of `added_parent_run_ids`, its re-runs) in
    `out_dir` and log it to the parent run, with the sweep's section of `results_md` if given."""
    rows = [collect_rows(tracking, p) for p in (parent_run_id, *added_parent_run_ids)]
    report = build_report(pool_sweeps(rows), out_dir, rank_by)
    if results_md is not None:
        sweep = tracking.tags(parent_run_id).get(TAG_SWEEP, parent_run_id)
        budget = budget or results.describe_budget(report.runs)
        machine = machine or results.describe_machine()
        if all(REGISTRY[row["method"]].sequences for row in report.ranked):
            run_ids = [run_id for row in report.ranked for run_id in row["run_ids"]]
            metrics = {run_id: tracking.latest_metrics(run_id) for run_id in run_ids}
            body = sequence_section(report.ranked, metrics, budget, machine, sweep)
            results.write_section(results_md, SECTION_HEADING, body)
        else:
            figures, curves = _table_1a_figures(tracking, report, Path(out_dir))
            best, paper = list(report.best_by_method.values()), results.PAPER_TABLE_1A
            results.write_results_md(
                best, paper, budget, machine, figures, results_md, curves, sweep
            )
        report.files.append(Path(results_md))
    for path in report.files:
        tracking.log_artifact(parent_run_id, path, REPORT_ARTIFACT_DIR)
    best = report.best_overall
    tags = {"best_config": best["label"]}
    tags.update({f"best_config.{m}": row["label"] for m, row in report.best_by_method.items()})
    tracking.set_tags(parent_run_id, tags)
    metrics = {f"best_{score}": best[score] for score in SCORES if score in best}
    metrics.update(finished_trials=len(report.runs), unfinished_trials=len(report.failed))
    tracking.log_metrics(parent_run_id, metrics, step=0)
    return report


def _table_1a_figures(
    tracking: Tracking, report: Report, out_dir: Path
) -> tuple[dict[str, Path], list[results.BudgetStep]]:
    """An image sweep's RESULTS.md figures (caption -> file) and MIG claims along training."""
    figures = {}
    # The best TCWAE model: the highest-ranked TCWAE configuration's seed with the highest MIG.
    tcwae = [row for row in report.ranked if row["method"] in results.TCWAE_METHODS]
    if tcwae:
        runs = [run for run in report.runs if run["run_id"] in tcwae[0]["run_ids"]]
        run_id = max(runs, key=lambda run: run.get("mig", -math.inf))["run_id"]
        if TRAVERSALS in tracking.artifact_paths(run_id):
            local = tracking.download_artifact(run_id, TRAVERSALS, out_dir)
            figures[f"Latent traversals of the best TCWAE model, {tcwae[0]['label']}"] = local
    scores_vs_rec = [path for path in report.files if path.name == "scores_vs_rec.png"]
    methods = [row["method"] for row in report.ranked]
    if scores_vs_rec and len(set(methods)) < len(methods):  # some method has a beta series
        figures[results.SCORES_VS_REC_CAPTION] = scores_vs_rec[0]
    method_scores = out_dir / "method_scores_vs_rec.png"
    labelled = [
        {**run, "method": METHOD_LABELS.get(run["method"], run["method"])} for run in report.runs
    ]
    sweep_figures.save_method_scores_vs_rec(labelled, method_scores)
    report.files.append(method_scores)
    figures[results.METHOD_SCORES_CAPTION] = method_scores
    chosen = {run_id for row in report.best_by_method.values() for run_id in row["run_ids"]}
    runs = [run for run in report.runs if run["run_id"] in chosen]
    curves = results.curves_by_method(runs, collect_histories(tracking, runs))
    if curves:
        curve_path = out_dir / "mig_vs_steps.png"
        named = {METHOD_LABELS.get(m, m): c for m, c in curves.items()}
        sweep_figures.save_curves(named, curve_path, "MIG", results.MIG_CURVE_TITLE)
        report.files.append(curve_path)
        figures[results.MIG_CURVE_CAPTION] = curve_path
    return figures, results.budget_steps(curves)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="report.py", description=__doc__.splitlines()[0])
    add_location_flags(parser, "--tracking-uri")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--parent-run-id", help="the sweep's parent run")
    which.add_argument(
        "--sweep", help="the sweep's name (its parent run's name); needs --experiment"
    )
    add_location_flags(parser, "--experiment")
    parser.add_argument(
        "--add-sweep",
        action="append",
        default=[],
        metavar="NAME",
        help="a sweep that re-ran some of this sweep's trials (sweep.py --methods/--seeds), "
        "pooled into the report; repeatable; needs --experiment",
    )
    parser.add_argument(
        "--rank-by",
        default=",".join(f"{s}:{m}" for s, m in PAPER_RANKING),
        help="score:min|max,... (default: the paper's four scores)",
    )
    parser.add_argument("--out", help="directory for the report files (default: a temporary one)")
    parser.add_argument(
        "--results-md",
        help="also write the sweep's section of RESULTS.md here (an image sweep: paper Table 1a "
        "beside ours; a sequence sweep: the sequence models); other sections are kept",
    )
    parser.add_argument("--budget", help="budget line for RESULTS.md (default: read from the runs)")
    parser.add_argument("--machine", help="machine line for RESULTS.md (default: this machine)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: 0 when the report was logged, 2 when the sweep or the command line is wrong."""
    return run_command(PROG, lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if (args.sweep or args.add_sweep) and not args.experiment:
        raise UserError("--sweep and --add-sweep need --experiment (see --help)")
    rank_by = ranking.parse_rank_by(args.rank_by)
    tracking_uri = resolve_tracking_uri(args.tracking_uri)
    check_tracking_uri(tracking_uri, must_exist=True)
    tracking = Tracking.at(tracking_uri)
    parent_id = args.parent_run_id or tracking.find_sweep_by_name(args.experiment, args.sweep)
    tracking.require_run(parent_id, "--parent-run-id")
    added = [tracking.find_sweep_by_name(args.experiment, name) for name in args.add_sweep]
    with tempfile.TemporaryDirectory(prefix="tcwae-report-") as scratch:
        out = args.out or scratch
        report = report_sweep(
            tracking, parent_id, out, rank_by, args.results_md, args.budget, args.machine, added
        )
    print(report.text)
    print(f"\nbest: {report.best_overall['label']}")
    print(f"{PROG}: logged to MLflow run {parent_id}, artifacts under '{REPORT_ARTIFACT_DIR}/'")
    print(f"{PROG}: MLflow run page: {tracking.run_page(parent_id)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

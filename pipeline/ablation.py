"""Compare sweeps that differ in one setting (e.g. the optimizer preset), method by method.

Each `--sweep NAME=LABEL` is a finished sweep of the same search space; sweeps with one label are
one arm. Per method and arm, the MIG curve (`mig_every`) and the training reconstruction loss are
averaged over seeds into a RESULTS.md section (replacing the one under `--heading`: a table at
chosen steps and the final scores, mean ± std) and a figure with one panel per method.

    python pipeline/ablation.py --tracking-uri sqlite:///$PWD/mlflow.db \
        --experiment dsprites_table1a --sweep dsprites_table1a-cpu-grid=authors \
        --sweep dsprites_table1a-cpu_paper_optimizer-grid=paper --results-md RESULTS.md
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.cli import ArgumentParser, add_location_flags, run_command
from pipeline.metric_keys import MIG_CURVE_METRIC, REC_CURVE_METRIC
from pipeline.report import collect_histories, collect_rows
from pipeline.report_ranking import METHOD_LABELS, mean_and_std
from pipeline.report_results import curves_by_method, write_section
from pipeline.tracking import FINISHED, Tracking
from pipeline.tracking_store import check_tracking_uri, resolve_tracking_uri
from tcwae.atomic import atomic_path
from tcwae.errors import UserError

HEADING = "## Optimizer ablation"
FINAL_SCORES = ("rec", "mig", "factor_vae", "sap", "dci_disentanglement")
PROG = "ablation"


def _cell(values: Sequence[float]) -> str:
    if not values:
        return "-"
    mean, std = mean_and_std(values)
    return f"{mean:.3f} ± {std:.3f}" if len(values) > 1 else f"{mean:.3f}"


def load_arm(tracking: Tracking, experiment: str, sweeps: Sequence[str]) -> dict[str, Any]:
    """The finished runs of one arm's sweeps, with their MIG and Rec curves by method."""
    runs = []
    for sweep in sweeps:
        parent = tracking.find_sweep_by_name(experiment, sweep)
        found = [row for row in collect_rows(tracking, parent) if row["status"] == FINISHED]
        if not found:
            raise UserError(f"sweep {sweep!r} has no finished runs")
        runs += found
    return {
        "runs": runs,
        "mig": curves_by_method(runs, collect_histories(tracking, runs, MIG_CURVE_METRIC)),
        "rec": curves_by_method(runs, collect_histories(tracking, runs, REC_CURVE_METRIC)),
    }


def _methods(arms: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every method that some arm ran, in the report's order."""
    return sorted({m for arm in arms.values() for m in arm["mig"]}, key=list(METHOD_LABELS).index)


def ablation_table(arms: Mapping[str, Mapping[str, Any]], steps: Sequence[int]) -> list[str]:
    """Markdown rows per method and arm: MIG at `steps`, the steps trained, the final scores."""
    header = ["Method", "Arm", "n", *(f"MIG @{s}" for s in steps), "trained", *FINAL_SCORES]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in _methods(arms):
        for label, arm in arms.items():
            runs = [run for run in arm["runs"] if run["method"] == method]
            if not runs:
                continue
            curve = arm["mig"].get(method, {})
            cells = [METHOD_LABELS[method], label, str(len(runs))]
            cells += [_cell(curve.get(step, [])) for step in steps]
            cells.append("/".join(str(n) for n in sorted({run["steps"] for run in runs})))
            cells += [_cell([run[s] for run in runs if s in run]) for s in FINAL_SCORES]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def draw(arms: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    """One column per method: MIG (top) and training Rec (bottom) against steps, mean ± std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = _methods(arms)
    figure, axes = plt.subplots(2, len(methods), figsize=(4 * len(methods), 6), squeeze=False)
    for column, method in enumerate(methods):
        for row, key in enumerate(("mig", "rec")):
            axis = axes[row][column]
            for label, arm in arms.items():
                curve = arm[key].get(method)
                if not curve:
                    continue
                steps = np.array(sorted(curve))
                values = [np.array(curve[s]) for s in steps]
                mean = np.array([v.mean() for v in values])
                std = np.array([v.std(ddof=1) if len(v) > 1 else 0.0 for v in values])
                axis.plot(steps, mean, label=f"{label} (n={len(values[0])})")
                axis.fill_between(steps, mean - std, mean + std, alpha=0.25)
            axis.set_xlabel("training step")
            axis.set_ylabel("MIG" if key == "mig" else "training reconstruction cost")
            if row == 0:
                axis.set_title(METHOD_LABELS[method])
            axis.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: 0 when the section was written, 2 on a bad command line or a missing sweep."""
    return run_command(PROG, lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    parser = ArgumentParser(prog="ablation.py", description=__doc__.splitlines()[0])
    add_location_flags(parser, "--tracking-uri", "--experiment")
    parser.add_argument(
        "--sweep",
        action="append",
        required=True,
        help="NAME=LABEL, repeated; sweeps with the same LABEL are one arm",
    )
    parser.add_argument("--steps", default="500,1000,2000", help="MIG table columns")
    parser.add_argument("--results-md", required=True)
    parser.add_argument("--figure", default="RESULTS_figures/optimizer_ablation.png")
    parser.add_argument("--note", default="", help="text put above the table (budget, command)")
    parser.add_argument(
        "--heading", default=HEADING, help=f"the section it replaces (default {HEADING!r})"
    )
    args = parser.parse_args(argv)
    pairs = [item.partition("=") for item in args.sweep]
    if any(not name or not label for name, _, label in pairs):
        raise UserError("--sweep takes NAME=LABEL (see --help)")
    if not args.experiment:
        raise UserError("--experiment is required: the experiment that holds the sweeps")
    try:
        steps = [int(step) for step in args.steps.split(",")]
    except ValueError:
        raise UserError(f"--steps takes integers separated by commas, got {args.steps!r}") from None
    if not args.heading.startswith("## "):
        raise UserError(f"--heading must start with '## ', got {args.heading!r}")
    tracking_uri = resolve_tracking_uri(args.tracking_uri)
    check_tracking_uri(tracking_uri)
    tracking = Tracking.at(tracking_uri)
    labels = dict.fromkeys(label for _, _, label in pairs)
    arms = {
        label: load_arm(tracking, args.experiment, [n for n, _, arm in pairs if arm == label])
        for label in labels
    }
    results, figure = Path(args.results_md), Path(args.figure)
    draw(arms, results.parent / figure)
    table = "\n".join(ablation_table(arms, steps))
    caption = "MIG and training reconstruction against steps, mean ± std over seeds"
    write_section(results, args.heading, f"{args.note}\n\n{table}\n\n![{caption}]({figure})")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

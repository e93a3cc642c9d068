"""RESULTS.md for a sequence sweep (issue 18): R-WAE and DSVAE judged the way the Sprites
literature judges them.

`sequence_section` is one section of RESULTS.md, replaced in place by `--results-md` (the
Table 1a page is for image sweeps): the judge's own accuracy on the held-out sequences first,
because it bounds every judged score, then each method's mean +- std over seeds of the
reconstruction cost and the judged scores in both directions, beside chance and the ideal, then
the accuracy of each kept factor. The trials also log the resampled factors' accuracy
(`kept_<direction>_resampled_acc*`) and every score's standard error (`<score>_se`); this
section does not show them yet. Everything is read from the trials' MLflow metrics, so the
section is regenerated from the store (`report.py --results-md`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from pipeline.report_ranking import display_name, mean_and_std, mean_std_text
from pipeline.report_results import markdown_table
from tcwae.data.sprite_videos import DYNAMIC_FACTORS, FACTOR_NAMES, FACTOR_SIZES, STATIC_FACTORS
from tcwae.metrics.sequence_judge import JUDGE_ACCURACY
from tcwae.sequence_eval import KEPT, KEPT_SCORES

SECTION_HEADING = "## Sequence models on sprite videos: R-WAE against DSVAE (issue 18)"
KEPT_FACTORS = {"static": STATIC_FACTORS, "dynamics": DYNAMIC_FACTORS}
# Column names; the bar of H(y|x) is escaped, a bare one would split the markdown cell.
SCORE_HEADERS = {"acc": "acc", "is": "IS", "h_y_given_x": "H(y\\|x)", "h_y": "H(y)"}
FACTOR_CLASSES = dict(zip(FACTOR_NAMES, FACTOR_SIZES, strict=True))


def joint_classes(kept: str) -> int:
    """Classes of the joint label of a direction's kept factors on the full grid (72 static,
    24 dynamic): chance accuracy is one over it, and it bounds IS and exp H(y)."""
    return math.prod(FACTOR_CLASSES[name] for name in KEPT_FACTORS[kept])


def reference_cells(kept: str) -> dict[str, tuple[str, str]]:
    """(chance, ideal) of each judged score. Chance is an accuracy only (a generator that ignores
    the kept code); the ideal keeps every kept label and covers its classes evenly."""
    classes = joint_classes(kept)
    log_classes = f"{math.log(classes):.2f}"
    return {
        "acc": (f"{1 / classes:.3f}", "1"),
        "is": ("", f"{classes}"),
        "h_y_given_x": ("", "0"),
        "h_y": ("", log_classes),
    }


def _cell(values: Sequence[float]) -> str:
    return mean_std_text(*mean_and_std(values))


def _shared(values: Sequence[float]) -> str:
    """The judge's accuracy as the trials logged it: one value when they share one judge."""
    return " / ".join(f"{value:.3f}" for value in sorted(set(values))) or "not logged"


def sequence_section(
    configurations: Sequence[Mapping[str, Any]],
    metrics_by_run: Mapping[str, Mapping[str, float]],
    budget: str,
    machine: str,
    sweep: str,
) -> str:
    """The section body: `configurations` are the report's rows (one per configuration, with
    `run_ids`), `metrics_by_run` every run's latest metrics."""
    runs = [metrics_by_run[run_id] for row in configurations for run_id in row["run_ids"]]
    judge = _shared([m[JUDGE_ACCURACY] for m in runs if JUDGE_ACCURACY in m])
    factor_judge = ", ".join(
        f"{name} {_shared(values)}"
        for name in FACTOR_NAMES
        if (
            values := [
                m[f"{JUDGE_ACCURACY}_{name}"] for m in runs if f"{JUDGE_ACCURACY}_{name}" in m
            ]
        )
    )
    lines = [
        f"Sweep `{sweep}`, reported {date.today().isoformat()}.",
        "",
        f"**Budget:** {budget}",
        "",
        f"**Machine:** {machine}",
        "",
        "**The judge** (a classifier of all five factors trained on the training part's "
        f"labels, shared by every trial): held-out accuracy {judge} on all factors at once; "
        f"per factor {factor_judge}.",
        "",
        "Generated sequences keep one code of a held-out sequence and draw the other from the "
        "prior, the same number for every class of the kept label: *static kept* judges shape, "
        "colour and scale; *dynamics kept* judges motion and rotation. acc: all kept factors "
        "right; IS, H(y|x), H(y): of the kept joint label (natural log). Mean ± std over seeds "
        "(n); Rec is the reconstruction cost per held-out sequence, summed over 8 frames. "
        "Chance (of the accuracies) and ideal are on the full grid.",
        "",
    ]
    header = ["Method", "n", "Rec"]
    header += [f"{SCORE_HEADERS[s]} ({kept} kept)" for kept in KEPT for s in KEPT_SCORES]
    rows = []
    for row in configurations:
        members = [metrics_by_run[run_id] for run_id in row["run_ids"]]
        cells = [display_name(row), str(len(members)), _cell([m["rec"] for m in members])]
        for kept in KEPT:
            for score in KEPT_SCORES:
                key = f"kept_{kept}_{score}"
                cells.append(_cell([m[key] for m in members if key in m]))
        rows.append(cells)
    for position, label in enumerate(("chance", "ideal")):
        cells = [label, "", ""]
        for kept in KEPT:
            references = reference_cells(kept)
            cells += [references[score][position] for score in KEPT_SCORES]
        rows.append(cells)
    lines += markdown_table(header, rows)
    lines += ["", "Accuracy of each kept factor:", ""]
    factors = [(kept, name) for kept in KEPT for name in KEPT_FACTORS[kept]]
    factor_rows = []
    for row in configurations:
        members = [metrics_by_run[run_id] for run_id in row["run_ids"]]
        factor_rows.append(
            [
                display_name(row),
                *[
                    _cell([m[key] for m in members if (key := f"kept_{kept}_acc_{name}") in m])
                    for kept, name in factors
                ],
            ]
        )
    factor_rows.append(["chance", *[f"{1 / FACTOR_CLASSES[name]:.3f}" for _, name in factors]])
    header = ["Method", *[f"{name} ({kept} kept)" for kept, name in factors]]
    lines += markdown_table(header, factor_rows)
    return "\n".join(lines)

"""RESULTS.md's section for a sequence sweep (issue 18): R-WAE and DSVAE judged as the Sprites
literature does, from the trials' MLflow metrics; the judge's accuracy first, as it bounds every
judged score. Not shown yet: `kept_<direction>_resampled_acc*` and `<score>_se`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date

from pipeline.report_ranking import Rows, display_name, mean_and_std, mean_std_text
from pipeline.report_results import markdown_table
from tcwae.data.sprite_videos import DYNAMIC_FACTORS, FACTOR_NAMES, FACTOR_SIZES, STATIC_FACTORS
from tcwae.metrics.sequence_judge import JUDGE_ACCURACY
from tcwae.sequence_eval import KEPT, KEPT_SCORES

SECTION_HEADING = "## Sequence models on sprite videos: R-WAE against DSVAE (issue 18)"
KEPT_FACTORS = {"static": STATIC_FACTORS, "dynamics": DYNAMIC_FACTORS}
# Column names; the bar of H(y|x) is escaped, a bare one would split the markdown cell.
SCORE_HEADERS = {"acc": "acc", "is": "IS", "h_y_given_x": "H(y\\|x)", "h_y": "H(y)"}
FACTOR_CLASSES = dict(zip(FACTOR_NAMES, FACTOR_SIZES, strict=True))


def reference_cells(kept: str) -> dict[str, tuple[str, str]]:
    """(chance, ideal) of each judged score over the joint label of the kept factors on the full
    grid (72 static, 24 dynamic classes). Chance is an accuracy only (a generator that ignores
    the kept code); the ideal keeps every kept label and covers its classes evenly."""
    classes = math.prod(FACTOR_CLASSES[name] for name in KEPT_FACTORS[kept])
    return {
        "acc": (f"{1 / classes:.3f}", "1"),
        "is": ("", f"{classes}"),
        "h_y_given_x": ("", "0"),
        "h_y": ("", f"{math.log(classes):.2f}"),
    }


def _cells(members: Sequence[Mapping[str, float]], keys: Sequence[str]) -> list[str]:
    """Mean +- std over the runs that logged each key."""
    return [mean_std_text(*mean_and_std([m[k] for m in members if k in m])) for k in keys]


def _shared(values: Sequence[float]) -> str:
    """The judge's accuracy as the trials logged it: one value when they share one judge."""
    return " / ".join(f"{value:.3f}" for value in sorted(set(values))) or "not logged"


def sequence_section(
    configurations: Rows,
    metrics_by_run: Mapping[str, Mapping[str, float]],
    budget: str,
    machine: str,
    sweep: str,
) -> str:
    """The section body: `configurations` are the report's rows (one per configuration, with
    `run_ids`), `metrics_by_run` every run's latest metrics."""
    runs = [metrics_by_run[run_id] for row in configurations for run_id in row["run_ids"]]
    judge = _shared([m[JUDGE_ACCURACY] for m in runs if JUDGE_ACCURACY in m])
    judge_keys = {name: f"{JUDGE_ACCURACY}_{name}" for name in FACTOR_NAMES}
    factor_judge = ", ".join(
        f"{name} {_shared(values)}"
        for name, key in judge_keys.items()
        if (values := [m[key] for m in runs if key in m])
    )
    lines = [f"Sweep `{sweep}`, reported {date.today().isoformat()}.", ""]
    lines += [f"**Budget:** {budget}", "", f"**Machine:** {machine}", ""]
    lines += [
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
    keys = [f"kept_{kept}_{score}" for kept in KEPT for score in KEPT_SCORES]
    factors = [(kept, name) for kept in KEPT for name in KEPT_FACTORS[kept]]
    factor_keys = [f"kept_{kept}_acc_{name}" for kept, name in factors]
    rows, factor_rows = [], []
    for row in configurations:
        members = [metrics_by_run[run_id] for run_id in row["run_ids"]]
        rows.append([display_name(row), str(len(members)), *_cells(members, ["rec", *keys])])
        factor_rows.append([display_name(row), *_cells(members, factor_keys)])
    references = {kept: reference_cells(kept) for kept in KEPT}
    for position, label in enumerate(("chance", "ideal")):
        cells = [references[kept][score][position] for kept in KEPT for score in KEPT_SCORES]
        rows.append([label, "", "", *cells])
    lines += markdown_table(header, rows)
    lines += ["", "Accuracy of each kept factor:", ""]
    factor_rows.append(["chance", *[f"{1 / FACTOR_CLASSES[name]:.3f}" for _, name in factors]])
    header = ["Method", *[f"{name} ({kept} kept)" for kept, name in factors]]
    lines += markdown_table(header, factor_rows)
    return "\n".join(lines)

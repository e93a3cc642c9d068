"""What a researcher sees of the runs in the MLflow UI (3.x), kept apart from how runs are stored.

MLflow 3's UI opens an experiment in its GenAI workspace (traces, judges, prompts, evaluation
runs) unless told otherwise. An experiment's kind is its `mlflow.experimentKind` tag, which these
experiments set to model training; but the 3.18 UI picks the view from the page address's
`workflowType` query parameter, else from the browser's last choice (GenAI by default), so the
addresses this tool prints carry `?workflowType=machine_learning`. A run's or an experiment's
description is its `mlflow.note.content` tag, shown as Markdown.

MLflow keeps every parameter as text; the compare view's parallel-coordinates and scatter plots
draw a parameter whose values all read as numbers. An unset option is therefore left out rather
than logged as 'None', which would turn its column into text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING_KIND = (TAG_EXPERIMENT_KIND, "custom_model_development")  # the tag and its value
TAG_DESCRIPTION = "mlflow.note.content"
MODEL_TRAINING_VIEW = "workflowType=machine_learning"
# How runs logged before unset options were left out spell one, and what a missing one means.
UNSET = "None"


def run_address(base: str, experiment_id: str, run_id: str | None = None) -> str:
    """The UI page of an experiment (or of one of its runs) in the Model training view."""
    page = f"{base.rstrip('/')}/#/experiments/{experiment_id}"
    if run_id is not None:
        page += f"/runs/{run_id}"
    return f"{page}?{MODEL_TRAINING_VIEW}"


def param_values(values: Mapping[str, Any]) -> dict[str, str]:
    """MLflow parameters from configuration values: unset options (None) left out, the others
    as Python writes them (numbers stay readable as numbers: '10.0', '1e-05', '64')."""
    return {key: str(value) for key, value in values.items() if value is not None}


def changed_params(logged: Mapping[str, str], values: Mapping[str, Any]) -> list[str]:
    """The configuration keys whose value differs from a run's logged parameters, an option
    left out of either counting as unset."""
    wanted = param_values(values)
    return sorted(key for key in values if logged.get(key, UNSET) != wanted.get(key, UNSET))


def sweep_description(headline: str, table: str, limit: int) -> str:
    """A sweep's parent-run description: a headline and its ranked table (with the stopped and
    failed trials) as a fixed-width block, cut to `limit` characters with a pointer to the full
    table in the run's `report/ranking.txt`."""
    fence = "```"
    text = f"{headline}\n\n{fence}\n{table.rstrip()}\n{fence}\n"
    if len(text) <= limit:
        return text
    cut = "\n... (cut: the whole table is the artifact report/ranking.txt)\n"
    room = limit - len(headline) - len(cut) - 2 * len(fence) - 4
    kept = table[: max(room, 0)].rsplit("\n", 1)[0]
    return f"{headline}\n\n{fence}\n{kept}{cut}{fence}\n"

"""What a researcher sees of the runs in the MLflow UI (3.x), apart from how runs are stored.

MLflow 3's UI opens an experiment in its GenAI workspace unless told otherwise: the experiments are
tagged model training, but the 3.18 UI picks the view from the address's `workflowType` (else the
browser's last choice), so printed addresses carry `?workflowType=machine_learning`. The compare
view plots a parameter only when all its values read as numbers, so an unset option is left out
rather than logged as 'None'. A description is the `mlflow.note.content` tag, in Markdown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING_KIND = (TAG_EXPERIMENT_KIND, "custom_model_development")  # the tag and its value
TAG_DESCRIPTION = "mlflow.note.content"
MODEL_TRAINING_VIEW = "workflowType=machine_learning"
UNSET = "None"  # how runs logged before unset options were left out spell one


def run_address(base: str, experiment_id: str, run_id: str | None = None) -> str:
    """The UI page of an experiment (or of one of its runs) in the Model training view."""
    run = f"/runs/{run_id}" if run_id is not None else ""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}{run}?{MODEL_TRAINING_VIEW}"


def param_values(values: Mapping[str, Any]) -> dict[str, str]:
    """MLflow parameters: unset options (None) left out, the others as Python writes them (numbers
    stay readable as numbers: '10.0', '1e-05', '64')."""
    return {key: str(value) for key, value in values.items() if value is not None}


def changed_params(logged: Mapping[str, str], values: Mapping[str, Any]) -> list[str]:
    """The keys whose value differs from a run's logged parameters; a missing one is unset."""
    wanted = param_values(values)
    return sorted(key for key in values if logged.get(key, UNSET) != wanted.get(key, UNSET))


def sweep_description(headline: str, table: str, limit: int) -> str:
    """A sweep's description: a headline and its ranked table as a fixed-width block, cut to
    `limit` characters with a pointer to the whole table, the artifact `report/ranking.txt`."""
    fence = "```"
    text = f"{headline}\n\n{fence}\n{table.rstrip()}\n{fence}\n"
    if len(text) <= limit:
        return text
    cut = "\n... (cut: the whole table is the artifact report/ranking.txt)\n"
    room = limit - len(headline) - len(cut) - 2 * len(fence) - 4
    kept = table[: max(room, 0)].rsplit("\n", 1)[0]
    return f"{headline}\n\n{fence}\n{kept}{cut}{fence}\n"

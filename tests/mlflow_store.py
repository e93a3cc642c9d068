"""Reading a sqlite MLflow store directly: cheap enough to poll while a sweep writes to it, and
independent of the code under test."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

PARENT_TAG = "mlflow.parentRunId"
SWEEP_EXPERIMENT = "dsprites"  # the sweep's default experiment: the search space's data set


def mlflow_client(tmp_path: Path) -> Any:
    """An MlflowClient on the store a test's sweep writes, `<tmp_path>/mlflow.db`."""
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


def parent_and_children(client: Any) -> tuple[list[Any], list[Any]]:
    """(top-level runs, child runs) of the sweep's experiment, every status."""
    experiment = client.get_experiment_by_name(SWEEP_EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [run for run in runs if PARENT_TAG not in run.data.tags]
    children = [run for run in runs if PARENT_TAG in run.data.tags]
    return parents, children


def runs_in_store(database: Path) -> list[dict[str, str]]:
    """Every run of a sqlite store: id, name, status and parent id ('' for a top-level run);
    [] before the store exists, and while MLflow is still creating its tables."""
    if not database.exists():
        return []
    with sqlite3.connect(database, timeout=30) as connection:
        tables = {row[0] for row in connection.execute("select name from sqlite_master")}
        if not {"runs", "tags"} <= tables:
            return []
        rows = connection.execute(
            "select r.run_uuid, r.name, r.status, coalesce(t.value, '') from runs r "
            "left join tags t on t.run_uuid = r.run_uuid and t.key = ?",
            (PARENT_TAG,),
        )
        return [dict(zip(("run_id", "name", "status", "parent"), row, strict=True)) for row in rows]


def run_statuses(database: Path) -> list[tuple[str, str]]:
    """(run id, status) of every run of a sqlite store; [] when there is none."""
    return [(run["run_id"], run["status"]) for run in runs_in_store(database)]


def last_logged_step(database: Path, run_id: str, key: str) -> int:
    with sqlite3.connect(database, timeout=30) as connection:
        (step,) = connection.execute(
            "select coalesce(max(step), -1) from metrics where run_uuid = ? and key = ?",
            (run_id, key),
        ).fetchone()
    return step

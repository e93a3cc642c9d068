"""Reading a sqlite MLflow store directly: cheap enough to poll while a sweep writes to it, and
independent of the code under test."""

from __future__ import annotations

import sqlite3
from pathlib import Path

PARENT_TAG = "mlflow.parentRunId"


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

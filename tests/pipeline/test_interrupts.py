"""Interrupting a command (issue 34): Ctrl-C or SIGTERM is exit code 130 with one line, and no
MLflow run is left RUNNING: the interrupted runs end KILLED, which the same command (a sweep with
--resume) reopens. The commands run as subprocesses, a sweep on its own local Ray instance (a
private RAY_TMPDIR, so that it never joins another Ray on this machine).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow_store import runs_in_store
from sweep_spaces import GRID_METHODS, space_dict, sweep_args, write_space
from train_args import in_process_train_argv

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(Path(sys.executable).absolute())
START_TIMEOUT_S = 400
EXIT_TIMEOUT_S = 200


def start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    # A short private Ray folder: Ray's socket paths must stay under 107 characters.
    env.update(PYTHONPATH=str(REPO_ROOT), RAY_TMPDIR=tempfile.mkdtemp(prefix="ray-"))
    return subprocess.Popen(
        [PYTHON, *args],
        env=env,
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_until_running(process: subprocess.Popen, database: Path, children: bool) -> None:
    """Until a run (with `children`: a sweep's child run) is RUNNING in the store."""
    started = time.monotonic()
    while time.monotonic() - started < START_TIMEOUT_S:
        runs = runs_in_store(database)
        if any(run["status"] == "RUNNING" and bool(run["parent"]) == children for run in runs):
            return
        if process.poll() is not None:
            raise AssertionError(f"exited {process.returncode}: {process.communicate()[1]}")
        time.sleep(0.5)
    process.kill()
    raise AssertionError(f"no RUNNING run within {START_TIMEOUT_S} s")


def test_sigterm_to_train_ends_its_run_killed_with_exit_130(tiny_data_root, tmp_path):
    database = tmp_path / "mlflow.db"
    process = start(
        [
            "pipeline/train.py",
            *in_process_train_argv(
                tiny_data_root,
                database,
                tmp_path / "runs",
                "--steps",
                "100000",
                "--batch-size",
                "8",
            ),
        ],
        tmp_path,
    )
    wait_until_running(process, database, children=False)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=EXIT_TIMEOUT_S)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "train: interrupted; the MLflow run was marked KILLED"
    assert [run["status"] for run in runs_in_store(database)] == ["KILLED"]


@pytest.mark.ray
def test_ctrl_c_during_a_sweep_ends_parent_and_trials_killed_with_exit_130(
    tiny_data_root, tmp_path
):
    database = tmp_path / "mlflow.db"
    space = write_space(
        tmp_path / "space.yaml", space_dict(GRID_METHODS, {"steps": 100000, "report_every": 5})
    )
    args = sweep_args(space, tmp_path, tiny_data_root, "--max-concurrent", "1")
    process = start(["pipeline/sweep.py", *args], tmp_path)
    wait_until_running(process, database, children=True)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=EXIT_TIMEOUT_S)
    assert process.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("sweep: interrupted; MLflow parent run "), err
    assert last.endswith("run the same command with --resume to continue")
    statuses = {run["status"] for run in runs_in_store(database)}
    assert statuses == {"KILLED"}, runs_in_store(database)

"""Faults of the environment (issue 34): two identical commands started together, and a disk that
fills up while a checkpoint is written. The first is refused in one line naming the process
that holds the run; the second fails the run with one line that says the disk is full and where,
and leaves no half-written checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow_store import runs_in_store
from train_args import in_process_train_argv

from pipeline import train
from pipeline.cli import LOCK_FILE

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(Path(sys.executable).absolute())
START_TIMEOUT_S = 400


def train_argv(data_root: Path, tmp_path: Path, storage: Path, *extra: str) -> list[str]:
    return in_process_train_argv(
        data_root,
        tmp_path / "mlflow.db",
        storage,
        "--batch-size",
        "8",
        "--name",
        "same-run",
        *extra,
    )


def test_a_second_identical_train_command_is_refused_naming_the_first(
    tiny_data_root, tmp_path, capsys
):
    database = tmp_path / "mlflow.db"
    argv = train_argv(tiny_data_root, tmp_path, tmp_path / "runs", "--steps", "100000")
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    first = subprocess.Popen(
        [PYTHON, "pipeline/train.py", *argv],
        cwd=REPO_ROOT,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        started = time.monotonic()
        while not any(run["status"] == "RUNNING" for run in runs_in_store(database)):
            assert first.poll() is None, "the first command exited"
            assert time.monotonic() - started < START_TIMEOUT_S, "the first run never started"
            time.sleep(0.5)
        assert train.main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        assert f"is already running in process {first.pid} on " in lines[0]
        assert str(tmp_path / "runs" / "same-run" / LOCK_FILE) in lines[0]
        assert len(runs_in_store(database)) == 1
    finally:
        first.kill()
        first.wait()


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a 256 KiB tmpfs: far too small for a checkpoint (root only)."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)])
    if mounted.returncode != 0:
        pytest.skip("no permission to mount a tmpfs")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_fails_the_run_in_one_line_and_leaves_no_checkpoint(
    tiny_data_root, tmp_path, full_disk, capsys
):
    argv = train_argv(tiny_data_root, tmp_path, full_disk, "--steps", "4")
    assert train.main(argv) == 1
    err = capsys.readouterr().err  # MLflow's own line about creating the new store may precede
    lines = [line for line in err.splitlines() if line.startswith("train: ")]
    assert len(lines) == 1, err
    assert "the disk is full: no space left to write" in lines[0]
    assert f"on the disk of {full_disk / 'same-run' / 'in_process'}" in lines[0]
    assert "pass --storage a folder on another disk" in lines[0]
    assert sorted(os.listdir(full_disk / "same-run" / "in_process")) == []
    assert [run["status"] for run in runs_in_store(tmp_path / "mlflow.db")] == ["FAILED"]


@pytest.mark.ray
def test_a_full_disk_under_ray_train_fails_the_run_in_one_line(
    ray_session, tiny_data_root, tmp_path, full_disk, capsys
):
    """With Ray Train's workers, Ray copies each checkpoint into the storage itself: its error
    becomes the same one line, not pyarrow's."""
    argv = train_argv(tiny_data_root, tmp_path, full_disk, "--steps", "4", "--workers", "1")
    assert train.main(argv) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("train: ")]
    assert len(lines) == 1, err
    assert "the disk is full: no space left to copy the step-" in lines[0]
    assert "pass --storage a folder on another disk" in lines[0]
    assert [run["status"] for run in runs_in_store(tmp_path / "mlflow.db")] == ["FAILED"]


# Resume ----------------------------------------------------------------------------------------


def _finished_sweep(tmp_path: Path, data_root: Path) -> tuple[list[str], str]:
    """The command line of a sweep whose FINISHED parent run is in the store (made by the sweep's
    own code, without training), and that run's id."""
    from sweep_spaces import GRID_METHODS, space_dict, sweep_args, write_space

    from pipeline import sweep
    from pipeline.tracking import Tracking

    space = write_space(tmp_path / "space.yaml", space_dict(GRID_METHODS))
    args = sweep_args(space, tmp_path, data_root, "--name", "resumable")
    plan = sweep.plan_sweep(args)
    tracking = Tracking.at(plan.where.tracking_uri)
    parent = sweep._parent_run(plan, tracking)
    tracking.end_run(parent)
    return args, parent


def _status(tmp_path: Path, run_id: str) -> str:
    return {run["run_id"]: run["status"] for run in runs_in_store(tmp_path / "mlflow.db")}[run_id]


def test_resume_with_changed_arguments_is_refused_and_the_sweep_kept(
    tiny_data_root, tmp_path, capsys
):
    from pipeline import sweep

    args, parent = _finished_sweep(tmp_path, tiny_data_root)
    capsys.readouterr()
    assert sweep.main([*args, "--resume", "--workers-per-trial", "2"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert (
        "sweep 'resumable' was started with workers_per_trial=1 but this command has " in lines[0]
    )
    assert "resume it with its original arguments" in lines[0]
    assert _status(tmp_path, parent) == "FINISHED"


def test_resume_from_a_truncated_tuner_state_is_refused_and_the_sweep_kept(
    tiny_data_root, tmp_path, capsys
):
    import pickle

    from pipeline import sweep, sweep_plan

    args, parent = _finished_sweep(tmp_path, tiny_data_root)
    state = tmp_path / "runs" / "resumable" / sweep_plan.TUNER_STATE_FILE
    state.parent.mkdir(parents=True)
    state.write_bytes(pickle.dumps({"trials": list(range(1000))})[:40])
    capsys.readouterr()
    assert sweep.main([*args, "--resume"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"the saved state of sweep 'resumable' ({state}) cannot be read" in lines[0]
    assert _status(tmp_path, parent) == "FINISHED"

"""Bad input caught before any work starts (issue 34): every numeric flag finite and in range, a
batch that fits the data set and memory, a tracking store that is a SQLite database (and, for
a report, one that exists), data a sweep can load and a data root its cache can be written to.
Each is one line `<command>: ...` and exit code 2 within seconds, with no MLflow store or run
folder created. Nothing here starts Ray: the commands refuse before it would start.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sweep_spaces import GRID_METHODS, space_dict, sweep_args, write_space
from train_args import in_process_train_argv

from pipeline import report, sweep, train
from pipeline.train import MIN_TRAINING_BYTES_PER_IMAGE, check_batch_size
from tcwae.errors import UserError


def refused_line(code: int, err: str, prog: str) -> str:
    """The one error line of a refused command (exit 2)."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: "), lines[0]
    return lines[0]


def train_argv(tmp_path: Path, data_root: Path, *extra: str) -> list[str]:
    return in_process_train_argv(data_root, tmp_path / "mlflow.db", tmp_path / "runs", *extra)


def assert_nothing_created(tmp_path: Path) -> None:
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "runs").exists()


# Values -----------------------------------------------------------------------------------------

TRAIN_VALUES = [
    (["--steps", "99999999999999999999999"], "steps must be <= 10,000,000"),
    (["--steps", "0"], "steps must be >= 1"),
    (["--steps", "inf"], "steps must be an integer"),
    (["--batch-size", "10000000"], "larger than the data set (1536 examples)"),
    (["--batch-size", "1537"], "use --batch-size 1536 or less"),
    (["--seed", "-1"], "seed must be >= 0"),
    (["--seed", str(2**40)], "seed must be <= 4,294,967,295"),
    (["--dz", "100000"], "dz must be <= 1,024"),
    (["--mig-every", "1e12"], "mig_every must be <= 10,000,000"),
    (["--beta", "nan"], "beta must be a finite number"),
    (["--gamma", "inf"], "gamma must be a finite number"),
    (["--workers", "-1"], "--workers must be a number from 0 to 1,024"),
    (["--max-failures", "99999999999999"], "--max-failures must be a number from -1 to 1,000"),
]


@pytest.mark.parametrize(("flags", "expected"), TRAIN_VALUES, ids=lambda v: str(v))
def test_train_refuses_out_of_range_values_before_starting(
    flags, expected, tiny_data_root, tmp_path, capsys
):
    code = train.main(train_argv(tmp_path, tiny_data_root, *flags))
    assert expected in refused_line(code, capsys.readouterr().err, "train")
    assert_nothing_created(tmp_path)


SWEEP_VALUES = [
    (["--gpus-per-trial", "nan"], "--gpus-per-trial must be a number from 0 to 1,024, got nan"),
    (["--gpus-per-trial", "inf"], "--gpus-per-trial must be a number"),
    (["--gpus-per-trial", "-1"], "--gpus-per-trial must be a number"),
    (["--workers-per-trial", "0"], "--workers-per-trial must be a number from 1"),
    (["--max-concurrent", "0"], "--max-concurrent must be a number from 1"),
    (["--seed", "99999999999999"], "--seed must be a number from 0 to 4,294,967,295"),
    (["--mode", "optuna", "--num-samples", "10000000"], "--num-samples must be a number"),
]


@pytest.mark.parametrize(("flags", "expected"), SWEEP_VALUES, ids=lambda v: str(v))
def test_sweep_refuses_out_of_range_flags_before_ray(flags, expected, tmp_path, capsys):
    space = write_space(tmp_path / "space.yaml", space_dict(GRID_METHODS))
    code = sweep.main(sweep_args(space, tmp_path, tmp_path / "data", *flags))
    assert expected in refused_line(code, capsys.readouterr().err, "sweep")
    assert_nothing_created(tmp_path)


def test_sweep_refuses_a_batch_larger_than_its_data_set(tiny_data_root, tmp_path, capsys):
    space = write_space(tmp_path / "space.yaml", space_dict(GRID_METHODS, {"batch_size": 4096}))
    code = sweep.main(sweep_args(space, tmp_path, tiny_data_root))
    line = refused_line(code, capsys.readouterr().err, "sweep")
    assert "--batch-size 4096 is larger than the data set (1536 examples)" in line
    assert_nothing_created(tmp_path)


def test_a_batch_that_cannot_fit_memory_is_refused_with_one_that_can():
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    too_many = memory // MIN_TRAINING_BYTES_PER_IMAGE + 1
    with pytest.raises(UserError, match=r"GiB of memory a worker .* use --batch-size \d+"):
        check_batch_size(too_many, 10 * too_many, workers=1)
    check_batch_size(too_many, 10 * too_many, workers=2)  # each worker holds half


# Tracking stores -------------------------------------------------------------------------------


def _folder(path: Path) -> None:
    path.mkdir()


def _not_a_database(path: Path) -> None:
    path.write_text("name,score\nmig,0.3\n")


@pytest.mark.parametrize(
    ("make", "expected"),
    [(_folder, "is a folder, not a database file"), (_not_a_database, "is not a SQLite database")],
)
@pytest.mark.parametrize("command", ["train", "sweep", "report"])
def test_a_sqlite_path_that_is_no_database_is_one_line(
    command, make, expected, tiny_data_root, tmp_path, capsys
):
    store = tmp_path / "store.db"
    make(store)
    uri = ["--tracking-uri", f"sqlite:///{store}"]
    if command == "train":
        code = train.main([*train_argv(tmp_path, tiny_data_root), *uri])
    elif command == "sweep":
        space = write_space(tmp_path / "space.yaml", space_dict(GRID_METHODS))
        code = sweep.main([*sweep_args(space, tmp_path, tiny_data_root), *uri])
    else:
        code = report.main([*uri, "--parent-run-id", "0" * 32])
    assert expected in refused_line(code, capsys.readouterr().err, command)
    assert not (tmp_path / "runs").exists()


def test_report_on_a_store_that_does_not_exist_creates_none(tmp_path, capsys):
    store = tmp_path / "absent.db"
    code = report.main(["--tracking-uri", f"sqlite:///{store}", "--parent-run-id", "0" * 32])
    assert f"no MLflow database at {store}" in refused_line(code, capsys.readouterr().err, "report")
    assert not store.exists()


def test_report_with_an_unknown_parent_run_id_is_one_line(tmp_path, capsys):
    from pipeline.tracking import Tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    Tracking(uri).experiment_id("dsprites")  # a real store, without the run asked for
    capsys.readouterr()
    code = report.main(["--tracking-uri", uri, "--parent-run-id", "f" * 32])
    line = refused_line(code, capsys.readouterr().err, "report")
    assert f"--parent-run-id: no MLflow run {'f' * 32!r}" in line


# Data ------------------------------------------------------------------------------------------


def test_sweep_refuses_corrupt_data_before_ray_and_records_no_run(tmp_path, capsys):
    from tcwae.data.cache import cache_path

    data = tmp_path / "data"
    cache = cache_path(data, "dsprites", "procedural")
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    space = write_space(tmp_path / "space.yaml", space_dict(GRID_METHODS))
    code = sweep.main(sweep_args(space, tmp_path, data))
    assert "is unreadable or corrupt" in refused_line(code, capsys.readouterr().err, "sweep")
    assert_nothing_created(tmp_path)


@pytest.fixture
def read_only_folder(tmp_path):
    """An empty folder no file can be created in: a read-only tmpfs for root (which ignores
    permission bits), a folder without write permission for anyone else."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)])
    if mounted.returncode != 0:
        pytest.skip("root without permission to mount a read-only tmpfs")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_a_read_only_data_root_is_refused_before_rendering(
    command, read_only_folder, tmp_path, capsys
):
    if command == "train":
        code = train.main(train_argv(tmp_path, read_only_folder))
    else:
        space = write_space(tmp_path / "space.yaml", space_dict(GRID_METHODS))
        code = sweep.main(sweep_args(space, tmp_path, read_only_folder))
    line = refused_line(code, capsys.readouterr().err, command)
    assert f"its cache folder {read_only_folder / 'cache'} cannot be written" in line
    assert "pass --data-root a writable folder" in line
    assert_nothing_created(tmp_path)

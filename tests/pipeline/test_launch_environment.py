"""A bad environment is one line and exit code 2 before anything starts, or a one-line notice and
a run that proceeds; never a traceback or a wait of minutes.

The four environments of issue 13: a Ray cluster recorded or named that no longer answers, a
tracking URI MLflow cannot use, data that is missing or corrupt, and a new sqlite store opened
by several processes at the same moment. Commands run as subprocesses (with a generous timeout
that only catches a hang) or through `main` where no Ray is involved.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow_store import run_statuses

from pipeline import report, sweep, train
from pipeline.cluster import API_SERVER_VARIABLE, LOCAL_HOST, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(Path(sys.executable).absolute())
HANG_GUARD_S = 300
CONCURRENT_OPENERS = 3


def train_command(data_root: Path, tmp_path: Path, *extra: str) -> list[str]:
    """`train.py` on the tiny procedural dSprites with one Ray Train worker, stores in tmp_path."""
    return [
        "pipeline/train.py",
        "dsprites",
        "--workers",
        "1",
        "--data-source",
        "procedural",
        "--data-root",
        str(data_root),
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--storage",
        str(tmp_path / "runs"),
        *extra,
    ]


def run_command(args: list[str], env_changes: dict[str, str]) -> subprocess.CompletedProcess:
    """A command of this repository in a subprocess (no RAY_* from this environment), with a
    timeout that only catches a hang."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(PYTHONPATH=str(REPO_ROOT), **env_changes)
    return subprocess.run(
        [PYTHON, *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )


def one_error_line(err: str, prog: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: "), lines[0]
    return lines[0]


# A Ray cluster that does not answer -------------------------------------------------------------


def test_an_explicit_ray_address_that_does_not_answer_is_one_line_and_exit_2(
    tiny_data_root, tmp_path
):
    address = f"{LOCAL_HOST}:{free_port(LOCAL_HOST)}"
    done = run_command(train_command(tiny_data_root, tmp_path), {"RAY_ADDRESS": address})
    assert done.returncode == 2, done.stderr[-3000:]
    line = one_error_line(done.stderr, "train")
    assert f"RAY_ADDRESS={address}" in line and "`ray stop`" in line
    assert run_statuses(tmp_path / "mlflow.db") == []


@pytest.mark.ray
def test_a_dead_recorded_local_cluster_is_named_and_a_fresh_one_trains(tiny_data_root, tmp_path):
    """Ray's record of the last local cluster names one that died uncleanly: one line says so,
    a fresh local instance starts and the run trains to the end."""
    # Ray puts sockets under its temporary folder, whose path must stay short.
    ray_tmp = Path(tempfile.mkdtemp(prefix="r13-", dir="/tmp"))
    record = ray_tmp / "ray" / "ray_current_cluster"
    record.parent.mkdir()
    dead = f"{LOCAL_HOST}:{free_port(LOCAL_HOST)}"
    record.write_text(dead)
    tiny_run = ["--steps", "2", "--batch-size", "8", "--eval-profile", "smoke"]
    done = run_command(
        train_command(tiny_data_root, tmp_path, *tiny_run), {"RAY_TMPDIR": str(ray_tmp)}
    )
    assert done.returncode == 0, done.stderr[-5000:]
    notices = [line for line in done.stderr.splitlines() if line.startswith("ray: ")]
    assert len(notices) == 1 and f"recorded at {dead}" in notices[0], done.stderr[-3000:]
    assert "removed that record and starting a fresh local instance" in notices[0]
    assert not record.exists()
    assert [status for _, status in run_statuses(tmp_path / "mlflow.db")] == ["FINISHED"]
    assert "train: step 2/2 (100%)" in done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("train: MLflow run page: http")


@pytest.mark.ray
def test_every_process_of_a_started_instance_finds_its_own_state_api(ray_session):
    """A local instance started like `make sweep`'s (`start_local`, as `ray_session` is) tells its
    actors where its dashboard is, so Ray's state API called without an address, as Ray Train's
    placement-group cleaner calls it, answers for this instance even with other Ray instances on
    the machine (without it the call fails: "Found multiple active Ray instances")."""
    ray = ray_session

    @ray.remote(num_cpus=0)
    def ask_the_state_api() -> tuple[str, list[str]]:
        from ray.util.state import list_nodes

        nodes = list_nodes(raise_on_missing_output=False)
        return os.environ[API_SERVER_VARIABLE], [node.node_id for node in nodes]

    url, node_ids = ray.get(ask_the_state_api.remote())
    assert url == f"http://{ray._private.worker.get_dashboard_url()}"
    assert node_ids == [node["NodeID"] for node in ray.nodes()]


# A tracking URI MLflow cannot use ----------------------------------------------------------------


def _bad_tracking_uris() -> dict[str, tuple[str, str]]:
    return {
        "unknown scheme": ("bogus://x", "MLflow has no store for 'bogus' URIs"),
        "no server": (
            f"http://{LOCAL_HOST}:{free_port(LOCAL_HOST)}",
            "no MLflow server answers at",
        ),
    }


@pytest.mark.parametrize("case", ["unknown scheme", "no server"])
@pytest.mark.parametrize("command", ["train", "sweep", "report"])
def test_a_tracking_uri_mlflow_cannot_use_is_one_line_and_exit_2(
    case, command, tiny_data_root, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    uri, expected = _bad_tracking_uris()[case]
    argv = {
        "train": ["dsprites", "--workers", "0", "--data-root", str(tiny_data_root)],
        "sweep": ["dsprites", "--profile", "smoke", "--data-root", str(tiny_data_root)],
        "report": ["--experiment", "dsprites", "--sweep", "dsprites-smoke-grid"],
    }[command]
    main = {"train": train.main, "sweep": sweep.main, "report": report.main}[command]
    assert main([*argv, "--tracking-uri", uri]) == 2
    assert expected in one_error_line(capsys.readouterr().err, command)
    assert not (tmp_path / "runs").exists()


# Data that is missing or corrupt -----------------------------------------------------------------


def _corrupt_official_dsprites(root: Path) -> list[str]:
    from tcwae.data.dsprites import FILE_NAME

    (root / "dsprites").mkdir(parents=True)
    (root / "dsprites" / FILE_NAME).write_bytes(b"PK\x03\x04 truncated download")
    return ["dsprites", "--data-source", "official"]


def _missing_smallnorb(root: Path) -> list[str]:
    root.mkdir(parents=True)
    return ["smallnorb"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (_corrupt_official_dsprites, "is unreadable or corrupt"),
        (_missing_smallnorb, "smallnorb"),
    ],
)
def test_missing_or_corrupt_data_is_one_line_exit_2_and_no_mlflow_run(
    case, expected, tmp_path, capsys
):
    database = tmp_path / "mlflow.db"
    argv = case(tmp_path / "data")
    argv += ["--workers", "0", "--data-root", str(tmp_path / "data")]
    argv += ["--tracking-uri", f"sqlite:///{database}", "--storage", str(tmp_path / "runs")]
    assert train.main(argv) == 2
    assert expected in one_error_line(capsys.readouterr().err, "train")
    assert run_statuses(database) == []


# A new sqlite store opened by several processes at once ------------------------------------------

OPEN_AND_RECORD = """
import sys, time
from pathlib import Path
import mlflow.store.tracking.sqlalchemy_store
from pipeline.tracking import Tracking
uri, folder, name = sys.argv[1:]
(Path(folder) / f"ready-{name}").touch()
while not (Path(folder) / "go").exists():
    time.sleep(0.01)
tracking = Tracking.at(uri)
run_id = tracking.start_run(tracking.experiment_id("dsprites"), name)
tracking.end_run(run_id)
"""


def test_processes_opening_a_new_sqlite_store_at_once_all_proceed(tmp_path):
    """The first processes to open a new store would each create and migrate its schema; all
    but one used to fail in alembic ("Online migration expected to match one row")."""
    database = tmp_path / "store" / "mlflow.db"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    openers = [
        subprocess.Popen(
            [PYTHON, "-c", OPEN_AND_RECORD, f"sqlite:///{database}", str(tmp_path), f"{index}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(CONCURRENT_OPENERS)
    ]
    while len(list(tmp_path.glob("ready-*"))) < CONCURRENT_OPENERS:  # all imported, all waiting
        assert all(opener.poll() is None for opener in openers), openers[0].communicate()
        time.sleep(0.05)
    (tmp_path / "go").touch()
    for opener in openers:
        _, err = opener.communicate(timeout=HANG_GUARD_S)
        assert opener.returncode == 0, err[-3000:]
    statuses = [status for _, status in run_statuses(database)]
    assert statuses == ["FINISHED"] * CONCURRENT_OPENERS

"""pipeline/sweep.py end to end on a real autoscaling Ray cluster, Optuna and MLflow.

The Ray tests share one fake autoscaling cluster (tests/fake_cluster.py: a head with no CPUs and
up to three 2-CPU worker nodes that Ray's own autoscaler adds and removes), so every trial makes
the autoscaler add a node: these are also the autoscaling tests of cluster/local.yaml. Trials
train on a tiny procedural dSprites grid cached in a data root for a few steps; every
`TorchTrainer.fit` still costs 15-25 s of start-up on 2 cores, so there are three sweeps: a grid
sweep submitted with `ray job submit` in which two trials fail on purpose (one diverges, one
finds its data corrupt), an Optuna sweep whose driver is killed and then resumed, and a one-trial
sweep that loses the node under its training workers. The command-line checks, which need no Ray,
are in test_sweep_cli.py.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_cluster import FAST_NODE_DEATH_SYSTEM_CONFIG, FakeCluster, fake_cluster
from mlflow_store import (
    PARENT_TAG,
    last_logged_step,
    mlflow_client,
    parent_and_children,
    runs_in_store,
)
from sweep_spaces import GRID_METHODS, SEARCHED_METHODS, space_dict, sweep_args, write_space

from tcwae.metrics import SCORES

REPO_ROOT = Path(__file__).resolve().parents[2]
SWEEP_SCRIPT = REPO_ROOT / "pipeline" / "sweep.py"
PYTHON = str(Path(sys.executable).absolute())
RAY_EXECUTABLE = str(Path(sys.executable).absolute().with_name("ray"))

ERROR_TAG = "tcwae.error"
CHILD_ARTIFACTS = {
    "traversals.png",
    "reconstructions.png",
    "samples.png",
    "config.yaml",
    "checkpoint/trainer.pt",
}
REPORT_ARTIFACTS = {
    "report/ranking.csv",
    "report/ranking.txt",
    "report/best_config.yaml",
    "report/best_per_method.yaml",
    "report/heatmap_tcwae_mws.png",
    "report/scores_vs_rec.png",
}
# Reads the official dSprites file, which `sweep_data_root` holds corrupt: the trial fails before
# it trains.
CORRUPT_DATA_METHOD = {
    "factor_vae": {
        "cost": "xent",
        "fixed": {"data_source": "official"},
        "params": {"gamma": {"grid": [10], "range": {"low": 1, "high": 100}}},
    }
}
NON_FINITE_ERROR = re.compile(r"NonFiniteLossError: steps \d+-\d+: loss terms? '\w+' \((nan|inf)\)")

SWEEP_TIMEOUT_S = 900.0
# idle_timeout_minutes is 0.1 (6 s) in cluster/local.yaml, but a killed driver's training workers
# can take a minute to go on a loaded machine.
IDLE_REMOVAL_TIMEOUT_S = 150.0
POLL_S = 0.25


def sweep_command(*args: str) -> list[str]:
    return [PYTHON, str(SWEEP_SCRIPT), *args]


def wait_for(
    condition: Callable[[], Any], timeout_s: float, what: str, driver: Driver | None = None
) -> Any:
    """Poll `condition()` until it returns something truthy and return that; fail after
    `timeout_s`, or as soon as `driver` (a sweep) exits."""
    started = time.monotonic()
    while True:
        value = condition()
        if value:
            return value
        if driver is not None and driver.process.poll() is not None:
            raise AssertionError(
                f"the sweep exited ({driver.process.returncode}) before {what}:\n"
                f"{driver.output()[-5000:]}"
            )
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"no {what} within {timeout_s:.0f} s")
        time.sleep(POLL_S)


def artifact_paths(client: Any, run_id: str) -> set[str]:
    found, pending = set(), [None]
    while pending:
        folder = pending.pop()
        for info in client.list_artifacts(run_id, folder):
            (pending.append if info.is_dir else found.add)(info.path)
    return found


# Fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[FakeCluster]:
    with fake_cluster(system_config=FAST_NODE_DEATH_SYSTEM_CONFIG) as running:
        yield running


@pytest.fixture
def idle_cluster(cluster: FakeCluster) -> Iterator[FakeCluster]:
    """The shared cluster with no worker node, before and after the test."""
    cluster.wait_for_alive_workers(0, IDLE_REMOVAL_TIMEOUT_S)
    yield cluster
    cluster.wait_for_alive_workers(0, IDLE_REMOVAL_TIMEOUT_S)


@pytest.fixture(scope="module")
def sweep_data_root(tmp_path_factory, tiny_data_root: Path) -> Path:
    """The tiny procedural dSprites (`tiny_data_root`) beside a corrupt official dSprites file."""
    from tcwae.data.dsprites import FILE_NAME

    root = tmp_path_factory.mktemp("sweep_data")
    shutil.copytree(tiny_data_root, root, dirs_exist_ok=True)
    (root / "dsprites").mkdir()
    (root / "dsprites" / FILE_NAME).write_bytes(b"not an npz file")
    return root


class Driver:
    """A sweep driver subprocess in its own process group, its output in a file."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "w") as handle:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text()

    def wait(self, timeout_s: float = SWEEP_TIMEOUT_S) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"the sweep ran past {timeout_s:.0f} s:\n{self.output()[-5000:]}"
            ) from None

    def kill(self) -> None:
        """SIGKILL the driver and everything it started in its process group."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def watch_workers(cluster: FakeCluster, process: subprocess.Popen) -> set[str]:
    """Worker nodes seen alive while `process` runs."""
    seen: set[str] = set()
    while process.poll() is None:
        seen.update(node.node_id for node in cluster.alive_workers())
        time.sleep(1.0)
    return seen


# Sweeps on the fake autoscaling cluster ---------------------------------------------------------


@pytest.mark.ray
def test_grid_sweep_submitted_as_a_job_scales_the_cluster_and_records_every_trial(
    idle_cluster: FakeCluster, sweep_data_root: Path, tmp_path: Path
) -> None:
    """Five grid points, one of which diverges and one of which reads a corrupt official data
    file: the job succeeds, each failed trial is recorded as FAILED with its cause, the other
    three are complete runs under one reported parent, and the autoscaler adds the nodes the
    trials need (the head has no CPU) and removes them after. The console shows one progress line
    per report and no Tune status table (that is --verbose), and ends with the parent run's
    MLflow page in the UI's Model training view."""
    from mlflow.entities import LoggedModelStatus

    space = write_space(tmp_path / "grid.yaml", space_dict(GRID_METHODS | CORRUPT_DATA_METHOD))
    results_md = tmp_path / "results" / "RESULTS.md"
    args = sweep_args(
        space, tmp_path, sweep_data_root, "--mode", "grid", "--results-md", str(results_md)
    )
    submit = [RAY_EXECUTABLE, "job", "submit", "--address", idle_cluster.dashboard_url, "--"]
    job = Driver([*submit, *sweep_command(*args)], idle_cluster.driver_env(), tmp_path / "job.log")
    started = time.monotonic()
    workers_seen = watch_workers(idle_cluster, job.process)
    assert job.wait(SWEEP_TIMEOUT_S - (time.monotonic() - started)) == 0, job.output()[-5000:]
    output = job.output()
    assert re.search(r"Job '\S+' succeeded", output)
    assert re.search(r"^sweep: \w+ wae_mmd lam=10 seed=0: step 4/4 \(100%\), ", output, re.M)
    assert re.search(r"^sweep: \w+ wae_mmd lam=10 seed=0: finished: rec ", output, re.M)
    assert "== Status ==" not in output and "Logical resource usage" not in output
    assert "RayTrainWorker" not in output  # the workers' own log lines stay out by default

    # The head has no CPU: every trial needs a worker node, four 1-CPU trials at once need two.
    assert len(workers_seen) >= 2, workers_seen
    idle_cluster.wait_for_alive_workers(0, IDLE_REMOVAL_TIMEOUT_S)
    dead = {node.node_id for node in idle_cluster.nodes() if not node.alive}
    assert workers_seen <= dead

    client = mlflow_client(tmp_path)
    [parent], children = parent_and_children(client)
    assert parent.info.status == "FINISHED"
    assert REPORT_ARTIFACTS | {"config.yaml"} <= artifact_paths(client, parent.info.run_id)
    assert parent.data.metrics["finished_trials"] == 3
    assert parent.data.metrics["unfinished_trials"] == 2
    assert "sweep: MLflow run page: http://127.0.0.1:5000/#/experiments/" in output
    assert f"/runs/{parent.info.run_id}?workflowType=machine_learning\n" in output
    assert "### The paper's claims, checked on these numbers" in results_md.read_text()
    assert "report/RESULTS.md" in artifact_paths(client, parent.info.run_id)

    assert len(children) == 5
    assert {child.data.tags[PARENT_TAG] for child in children} == {parent.info.run_id}
    by_status: dict[str, list[Any]] = {}
    for child in children:
        by_status.setdefault(child.info.status, []).append(child)
    assert sorted(by_status) == ["FAILED", "FINISHED"]
    failed = {run.data.params["method"]: run for run in by_status["FAILED"]}
    assert sorted(failed) == ["beta_tcvae", "factor_vae"]
    diverged = failed["beta_tcvae"].data.tags[ERROR_TAG]
    assert NON_FINITE_ERROR.search(diverged), diverged
    assert "is unreadable or corrupt" in failed["factor_vae"].data.tags[ERROR_TAG]
    for run in failed.values():
        assert any(path.startswith("errors/") for path in artifact_paths(client, run.info.run_id))

    finished = by_status["FINISHED"]
    configurations = {
        (run.data.params["method"], run.data.params["beta"], run.data.params["gamma"])
        if run.data.params["method"] == "tcwae_mws"
        else (run.data.params["method"], run.data.params["lam"])
        for run in finished
    }
    assert configurations == {
        ("tcwae_mws", "1.0", "5.0"),
        ("tcwae_mws", "10.0", "5.0"),
        ("wae_mmd", "10.0"),
    }
    experiment_id = parent.info.experiment_id
    for run in finished:
        for score in SCORES:
            assert math.isfinite(run.data.metrics[score]), (run.info.run_name, score)
        assert CHILD_ARTIFACTS <= artifact_paths(client, run.info.run_id)
        [model] = client.search_logged_models(
            [experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
        )
        assert model.name == "model" and model.status == LoggedModelStatus.READY


@pytest.mark.ray
def test_killed_optuna_sweep_resumes_without_duplicating_trials(
    idle_cluster: FakeCluster, sweep_data_root: Path, tmp_path: Path
) -> None:
    """An Optuna sweep of 4 trials, 2 at a time, loses its driver (SIGKILL) once a trial has
    finished; `--resume` completes it: one parent, exactly 4 child runs, all finished, ranked."""
    space = write_space(tmp_path / "optuna.yaml", space_dict(SEARCHED_METHODS))
    args = sweep_args(
        space,
        tmp_path,
        sweep_data_root,
        "--mode",
        "optuna",
        "--num-samples",
        "4",
        "--max-concurrent",
        "2",
    )
    database = tmp_path / "mlflow.db"
    env = idle_cluster.driver_env()
    first = Driver(sweep_command(*args), env, tmp_path / "first.log")
    try:
        wait_for(
            lambda: any(
                run["parent"] and run["status"] == "FINISHED" for run in runs_in_store(database)
            ),
            SWEEP_TIMEOUT_S,
            "finished trial",
            first,
        )
        # The sweep exists now: starting it again without --resume is refused.
        again = subprocess.run(
            sweep_command(*args), env=env, capture_output=True, text=True, timeout=300
        )
        assert again.returncode == 2, again.stderr
        sweep_lines = [line for line in again.stderr.splitlines() if line.startswith("sweep:")]
        assert len(sweep_lines) == 1 and "already exists" in sweep_lines[0], again.stderr
        assert again.stderr.strip().splitlines()[-1] == sweep_lines[0]
        assert "--resume" in sweep_lines[0]
    finally:
        first.kill()
    before = runs_in_store(database)
    children_before = [run for run in before if run["parent"]]
    assert len([run for run in before if not run["parent"]]) == 1
    unfinished = [run for run in children_before if run["status"] != "FINISHED"]
    assert len(children_before) < 4 or unfinished, "nothing was left to resume"

    resumed = Driver(sweep_command(*args, "--resume"), env, tmp_path / "resumed.log")
    assert resumed.wait() == 0, resumed.output()[-5000:]

    after = runs_in_store(database)
    parents = [run for run in after if not run["parent"]]
    children = [run for run in after if run["parent"]]
    assert len(parents) == 1
    assert len(children) == 4
    assert {run["parent"] for run in children} == {parents[0]["run_id"]}
    assert len({run["name"] for run in children}) == 4
    assert {run["run_id"] for run in children_before} <= {run["run_id"] for run in children}
    assert {run["status"] for run in after} == {"FINISHED"}

    output = resumed.output()
    header = re.search(r"^#\s+configuration\s+n\s+Rec \(min\)\s+MIG \(max\).*$", output, re.M)
    assert header, output[-5000:]
    ranked_rows = re.findall(r"^\d+\*?\s+(tcwae_mws|wae_mmd) ", output[header.end() :], re.M)
    assert len(ranked_rows) == 4
    assert re.search(r"^best: (tcwae_mws|wae_mmd) ", output, re.M)


NODE_LOSS_TRAIN = {"steps": 200, "report_every": 10, "checkpoint_every": 10}
# Two 1-CPU workers fill one 2-CPU node, as a one-GPU trial fills a one-GPU cloud node. The fake
# provider keeps a node whose raylet died listed as a node being set up, so the autoscaler
# replaces it only when the lost work does not fit what that node last had free.
NODE_LOSS_RESOURCES = {"workers": 2, "cpus_per_worker": 1, "gpus_per_worker": 0}


@pytest.mark.ray
def test_trial_survives_losing_its_node_and_continues_from_its_checkpoint(
    idle_cluster: FakeCluster, sweep_data_root: Path, tmp_path: Path
) -> None:
    """The node under a trial's training workers dies after a checkpoint: Ray Train restarts the
    workers on a node the autoscaler adds, from that checkpoint, in the same MLflow run.

    Runs last: the fake provider never forgets the killed node (see `kill_worker_node`)."""
    from ray.util.state import list_actors

    space = space_dict({"wae_mmd": GRID_METHODS["wae_mmd"]}, NODE_LOSS_TRAIN)
    space["profiles"]["smoke"]["resources"] = NODE_LOSS_RESOURCES
    space = write_space(tmp_path / "node_loss.yaml", space)
    args = sweep_args(space, tmp_path, sweep_data_root, "--mode", "grid")
    database = tmp_path / "mlflow.db"
    sweep = Driver(sweep_command(*args), idle_cluster.driver_env(), tmp_path / "sweep.log")
    checkpoint_every = NODE_LOSS_TRAIN["checkpoint_every"]
    try:

        def trial_past_its_first_checkpoint() -> dict[str, str] | None:
            for run in runs_in_store(database):
                step = last_logged_step(database, run["run_id"], "train/loss")
                if run["parent"] and step > checkpoint_every:
                    return run
            return None

        trial = wait_for(trial_past_its_first_checkpoint, SWEEP_TIMEOUT_S, "checkpoint", sweep)
        workers = list_actors(
            address=idle_cluster.state_api,
            filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
        )
        assert len(workers) == NODE_LOSS_RESOURCES["workers"]
        [lost] = {worker.node_id for worker in workers}
        assert lost in {node.node_id for node in idle_cluster.alive_workers()}
        assert last_logged_step(database, trial["run_id"], "train/loss") < NODE_LOSS_TRAIN["steps"]
        nodes_before_the_loss = {node.node_id for node in idle_cluster.nodes()}
        idle_cluster.kill_worker_node(lost)
        assert sweep.wait() == 0, sweep.output()[-5000:]
    finally:
        sweep.kill()

    replacements = {node.node_id for node in idle_cluster.nodes()} - nodes_before_the_loss
    assert replacements, "no node was added after the loss"
    client = mlflow_client(tmp_path)
    [parent], [child] = parent_and_children(client)
    assert (parent.info.status, child.info.status) == ("FINISHED", "FINISHED")
    assert child.info.run_id == trial["run_id"]
    [(resumed_at, restored_step)] = [
        (metric.step, metric.value)
        for metric in client.get_metric_history(child.info.run_id, "resumed_from_step")
    ]
    assert resumed_at == restored_step
    assert restored_step >= checkpoint_every and restored_step % checkpoint_every == 0
    steps = [metric.step for metric in client.get_metric_history(child.info.run_id, "train/loss")]
    assert steps == list(range(10, NODE_LOSS_TRAIN["steps"] + 1, NODE_LOSS_TRAIN["report_every"]))
    assert math.isfinite(child.data.metrics["rec"])

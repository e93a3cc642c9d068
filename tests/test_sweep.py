"""pipeline/sweep.py end to end on a real autoscaling Ray cluster, Optuna and MLflow.

The Ray tests share one fake autoscaling cluster (tests/fake_cluster.py: a head with no CPUs and
up to three 2-CPU worker nodes that Ray's own autoscaler adds and removes), so every trial makes
the autoscaler add a node: these are also the autoscaling tests of cluster/local.yaml. Trials
train on a tiny procedural dSprites grid cached in a data root for a few steps; every
`TorchTrainer.fit` still costs 15-25 s of start-up on 2 cores, so there are three sweeps: a grid
sweep submitted with `ray job submit` in which one trial fails on purpose, an Optuna sweep whose
driver is killed and then resumed, and a one-trial sweep that loses the node under its training
workers. The command-line checks need no Ray.
"""

from __future__ import annotations

import copy
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_cluster import FAST_NODE_DEATH_SYSTEM_CONFIG, FakeCluster, fake_cluster

from pipeline.rungs import RUNG_SCORES
from pipeline.search_space import IMAGE_SCORES
from pipeline.sweep import SweepError, concurrent_trials, main, plan_sweep

REPO_ROOT = Path(__file__).resolve().parents[1]
SWEEP_SCRIPT = REPO_ROOT / "pipeline" / "sweep.py"
PYTHON = str(Path(sys.executable).absolute())
RAY_EXECUTABLE = str(Path(sys.executable).absolute().with_name("ray"))

TINY_GRID = (3, 2, 4, 8, 8)  # shape, scale, orientation, posX, posY: 1536 images
EXPERIMENT = "dsprites"  # the sweep's default experiment: the search space's data set
PARENT_TAG = "mlflow.parentRunId"
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
# A learning rate this large sends the reconstruction to NaN within two steps, for every method
# (checked on the tiny grid), so the trial fails the same way every time it is tried.
EXPLODING_LR = 1.0e30
NON_FINITE_ERROR = re.compile(r"NonFiniteLossError: steps \d+-\d+: loss terms? '\w+' \((nan|inf)\)")

SWEEP_TIMEOUT_S = 900.0
# idle_timeout_minutes is 0.1 (6 s) in cluster/local.yaml, but a killed driver's training workers
# can take a minute to go on a loaded machine.
IDLE_REMOVAL_TIMEOUT_S = 150.0
POLL_S = 0.25

RANGES = {
    "beta": {"low": 1, "high": 150, "log": True},
    "gamma": {"low": 1, "high": 150, "log": True},
    "lam": {"low": 1, "high": 200, "log": True},
}


def _param(name: str, grid: list[float]) -> dict[str, Any]:
    return {"grid": grid, "range": RANGES[name]}


GRID_METHODS = {
    "tcwae_mws": {
        "cost": "xent",
        "fixed": {"estimator": "mws"},
        "params": {"beta": _param("beta", [1, 10]), "gamma": _param("gamma", [5])},
    },
    "wae_mmd": {"cost": "xent", "params": {"lam": _param("lam", [10])}},
    "beta_tcvae": {
        "cost": "xent",
        "fixed": {"estimator": "mws", "gamma": 1, "lr": EXPLODING_LR},
        "params": {"beta": {"grid": [2], "range": {"low": 1, "high": 10}}},
    },
}
SEARCHED_METHODS = {
    "tcwae_mws": GRID_METHODS["tcwae_mws"],
    "wae_mmd": GRID_METHODS["wae_mmd"],
}
SMOKE_TRAIN = {
    "data_source": "procedural",
    "steps": 4,
    "batch_size": 8,
    "report_every": 2,
    "checkpoint_every": 2,
    "eval_profile": "smoke",
}


def space_dict(methods: dict[str, Any], train: dict[str, Any] | None = None) -> dict[str, Any]:
    """A search space with one `smoke` profile: every method of the file, seed 0, 4 samples,
    one 1-CPU worker a trial."""
    return {
        "dataset": "dsprites",
        "rank_by": {"rec": "min", "mig": "max", "factor_vae": "max", "sap": "max"},
        "methods": copy.deepcopy(methods),
        "profiles": {
            "smoke": {
                "train": {**SMOKE_TRAIN, **(train or {})},
                "seeds": [0],
                "num_samples": 4,
                "resources": {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0},
            }
        },
    }


def write_space(path: Path, space: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def sweep_args(space: Path, tmp_path: Path, data_root: Path, *extra: str) -> list[str]:
    """sweep.py's arguments with every path absolute (a job runs in another directory)."""
    return [
        str(space),
        "--profile",
        "smoke",
        "--data-root",
        str(data_root),
        "--storage",
        str(tmp_path / "runs"),
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        *extra,
    ]


def sweep_command(*args: str) -> list[str]:
    return [PYTHON, str(SWEEP_SCRIPT), *args]


# Reading the MLflow store ----------------------------------------------------------------------


def runs_in_store(database: Path) -> list[dict[str, str]]:
    """Every run of a sqlite store, read directly (cheap enough to poll while a sweep writes):
    id, name, status and parent id ('' for a top-level run); [] before the store exists."""
    if not database.exists():
        return []
    with sqlite3.connect(database, timeout=30) as connection:
        tables = {row[0] for row in connection.execute("select name from sqlite_master")}
        if "runs" not in tables:
            return []
        rows = connection.execute(
            "select r.run_uuid, r.name, r.status, coalesce(t.value, '') from runs r "
            "left join tags t on t.run_uuid = r.run_uuid and t.key = ?",
            (PARENT_TAG,),
        )
        return [dict(zip(("run_id", "name", "status", "parent"), row, strict=True)) for row in rows]


def last_logged_step(database: Path, run_id: str, key: str) -> int:
    with sqlite3.connect(database, timeout=30) as connection:
        (step,) = connection.execute(
            "select coalesce(max(step), -1) from metrics where run_uuid = ? and key = ?",
            (run_id, key),
        ).fetchone()
    return step


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


def mlflow_client(tmp_path: Path):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


def artifact_paths(client: Any, run_id: str) -> set[str]:
    found, pending = set(), [None]
    while pending:
        folder = pending.pop()
        for info in client.list_artifacts(run_id, folder):
            (pending.append if info.is_dir else found.add)(info.path)
    return found


def parent_and_children(client: Any) -> tuple[list[Any], list[Any]]:
    """(top-level runs, child runs) of the sweep's experiment, every status."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [run for run in runs if PARENT_TAG not in run.data.tags]
    children = [run for run in runs if PARENT_TAG in run.data.tags]
    return parents, children


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
def tiny_data_root(tmp_path_factory) -> Path:
    """A data root whose procedural dSprites cache holds a reduced grid, so trials read 1536
    images instead of rendering 737,280."""
    from tcwae.data import small_dsprites
    from tcwae.data.common import cache_path, write_cache

    root = tmp_path_factory.mktemp("data")
    write_cache(small_dsprites(TINY_GRID), cache_path(root, "dsprites", "procedural"), binary=True)
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


# Command line (no Ray) -------------------------------------------------------------------------


def _drop_methods(space: dict) -> None:
    del space["methods"]


def _profile_names_an_absent_method(space: dict) -> None:
    space["profiles"]["smoke"]["methods"] = {"factor_vae": {"gamma": [10]}}


def _unknown_key(space: dict) -> None:
    space["methods"]["wae_mmd"]["params"]["lam"]["steps"] = 3


def _empty_grid(space: dict) -> None:
    space["methods"]["tcwae_mws"]["params"]["beta"]["grid"] = []


def _low_above_high(space: dict) -> None:
    space["methods"]["tcwae_mws"]["params"]["gamma"]["range"] = {"low": 200, "high": 150}


def _grace_off_the_report_steps(space: dict) -> None:
    space["profiles"]["smoke"]["scheduler"] = {"type": "mo-asha", "grace": 3}


BAD_SPACES = {
    "scheduler grace": (
        _grace_off_the_report_steps,
        "profiles.smoke.scheduler.grace: 3 is not a multiple of report_every (2)",
    ),
    "unknown key": (_unknown_key, "methods.wae_mmd.params.lam.steps: unknown key"),
    "missing methods": (_drop_methods, "methods: missing"),
    "missing method": (
        _profile_names_an_absent_method,
        "profiles.smoke.methods.factor_vae: not a method of this file",
    ),
    "empty grid": (_empty_grid, "methods.tcwae_mws.params.beta.grid: empty"),
    "range low > high": (
        _low_above_high,
        "methods.tcwae_mws.params.gamma.range: low 200 > high 150",
    ),
}


def _assert_refused(code: int, err: str, tmp_path: Path, expected: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sweep: ") and expected in lines[0], lines[0]
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("case", list(BAD_SPACES))
def test_bad_search_space_is_one_line_exit_2_and_nothing_created(case, tmp_path, capsys):
    edit, expected = BAD_SPACES[case]
    space = space_dict(GRID_METHODS)
    edit(space)
    path = write_space(tmp_path / "space.yaml", space)
    code = main(sweep_args(path, tmp_path, tmp_path / "data", "--mode", "grid"))
    _assert_refused(code, capsys.readouterr().err, tmp_path, f"sweep: {path}: {expected}")


def test_mo_asha_on_a_profile_without_rungs_is_refused(tmp_path, capsys):
    path = write_space(tmp_path / "space.yaml", space_dict(GRID_METHODS))
    code = main(sweep_args(path, tmp_path, tmp_path / "data", "--scheduler", "mo-asha"))
    _assert_refused(code, capsys.readouterr().err, tmp_path, "has no `scheduler: {type: mo-asha")


def test_optuna_mode_on_a_profile_that_searches_nothing_is_refused(tmp_path, capsys):
    fixed_only = {"wae_mmd": {"cost": "xent", "fixed": {"lam": 10}, "params": {}}}
    path = write_space(tmp_path / "space.yaml", space_dict(fixed_only))
    code = main(sweep_args(path, tmp_path, tmp_path / "data", "--mode", "optuna"))
    expected = f"sweep: {path}: profile 'smoke' searches no parameter; use --mode grid"
    _assert_refused(code, capsys.readouterr().err, tmp_path, expected)


def test_num_samples_in_grid_mode_is_refused(tmp_path, capsys):
    path = write_space(tmp_path / "space.yaml", space_dict(GRID_METHODS))
    code = main(
        sweep_args(path, tmp_path, tmp_path / "data", "--mode", "grid", "--num-samples", "2")
    )
    expected = "sweep: --num-samples is for --mode optuna"
    _assert_refused(code, capsys.readouterr().err, tmp_path, expected)


def test_results_md_under_a_file_is_refused(tmp_path, capsys):
    path = write_space(tmp_path / "space.yaml", space_dict(GRID_METHODS))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = main(
        sweep_args(path, tmp_path, tmp_path / "data", "--results-md", str(blocker / "RESULTS.md"))
    )
    expected = "is not a directory; pass --results-md a writable directory"
    _assert_refused(code, capsys.readouterr().err, tmp_path, expected)


def test_concurrency_comes_from_the_cluster_or_is_left_to_its_autoscaler(tmp_path):
    path = write_space(tmp_path / "space.yaml", space_dict(GRID_METHODS))
    plan = plan_sweep(sweep_args(path, tmp_path, tmp_path / "data", "--mode", "grid"))
    assert plan.num_samples == 4
    assert concurrent_trials(plan, {"CPU": 3, "GPU": 0}) == 3
    assert concurrent_trials(plan, {"CPU": 16, "GPU": 0}) == 4
    # A cluster that publishes no autoscaling limits and has no CPU yet (the head of
    # cluster/local.yaml, aws.yaml, gcp.yaml): every trial starts and waits for its nodes.
    assert concurrent_trials(plan, {"CPU": 0, "GPU": 0}, may_grow=True) == 4
    capped = plan_sweep(sweep_args(path, tmp_path, tmp_path / "data", "--max-concurrent", "2"))
    assert concurrent_trials(capped, {"CPU": 0, "GPU": 0}, may_grow=True) == 2
    with pytest.raises(SweepError, match="a trial needs 1 CPUs and 0 GPUs .* at most 0 CPUs"):
        concurrent_trials(plan, {"CPU": 0, "GPU": 0})


# Sweeps on the fake autoscaling cluster ---------------------------------------------------------


@pytest.mark.ray
def test_grid_sweep_submitted_as_a_job_scales_the_cluster_and_records_every_trial(
    idle_cluster: FakeCluster, tiny_data_root: Path, tmp_path: Path
) -> None:
    """Four grid points, one of which diverges: the job succeeds, the failed trial is recorded
    as FAILED with its cause, the other three are complete runs under one reported parent, and
    the autoscaler adds the nodes the trials need (the head has no CPU) and removes them after."""
    from mlflow.entities import LoggedModelStatus

    space = write_space(tmp_path / "grid.yaml", space_dict(GRID_METHODS))
    results_md = tmp_path / "results" / "RESULTS.md"
    args = sweep_args(
        space, tmp_path, tiny_data_root, "--mode", "grid", "--results-md", str(results_md)
    )
    submit = [RAY_EXECUTABLE, "job", "submit", "--address", idle_cluster.dashboard_url, "--"]
    job = Driver([*submit, *sweep_command(*args)], idle_cluster.driver_env(), tmp_path / "job.log")
    started = time.monotonic()
    workers_seen = watch_workers(idle_cluster, job.process)
    assert job.wait(SWEEP_TIMEOUT_S - (time.monotonic() - started)) == 0, job.output()[-5000:]
    assert re.search(r"Job '\S+' succeeded", job.output())

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
    assert parent.data.metrics["unfinished_trials"] == 1
    assert "## The paper's claims, checked on these numbers" in results_md.read_text()
    assert "report/RESULTS.md" in artifact_paths(client, parent.info.run_id)

    assert len(children) == 4
    assert {child.data.tags[PARENT_TAG] for child in children} == {parent.info.run_id}
    by_status: dict[str, list[Any]] = {}
    for child in children:
        by_status.setdefault(child.info.status, []).append(child)
    assert sorted(by_status) == ["FAILED", "FINISHED"]
    [failed] = by_status["FAILED"]
    assert failed.data.params["method"] == "beta_tcvae"
    assert NON_FINITE_ERROR.search(failed.data.tags[ERROR_TAG]), failed.data.tags[ERROR_TAG]
    assert any(path.startswith("errors/") for path in artifact_paths(client, failed.info.run_id))

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
        for score in IMAGE_SCORES:
            assert math.isfinite(run.data.metrics[score]), (run.info.run_name, score)
        assert CHILD_ARTIFACTS <= artifact_paths(client, run.info.run_id)
        [model] = client.search_logged_models(
            [experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
        )
        assert model.name == "model" and model.status == LoggedModelStatus.READY


@pytest.mark.ray
def test_killed_optuna_sweep_resumes_without_duplicating_trials(
    idle_cluster: FakeCluster, tiny_data_root: Path, tmp_path: Path
) -> None:
    """An Optuna sweep of 4 trials, 2 at a time, loses its driver (SIGKILL) once a trial has
    finished; `--resume` completes it: one parent, exactly 4 child runs, all finished, ranked."""
    space = write_space(tmp_path / "optuna.yaml", space_dict(SEARCHED_METHODS))
    args = sweep_args(
        space,
        tmp_path,
        tiny_data_root,
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
    idle_cluster: FakeCluster, tiny_data_root: Path, tmp_path: Path
) -> None:
    """The node under a trial's training workers dies after a checkpoint: Ray Train restarts the
    workers on a node the autoscaler adds, from that checkpoint, in the same MLflow run.

    Runs last: the fake provider never forgets the killed node (see `kill_worker_node`)."""
    from ray.util.state import list_actors

    space = space_dict({"wae_mmd": GRID_METHODS["wae_mmd"]}, NODE_LOSS_TRAIN)
    space["profiles"]["smoke"]["resources"] = NODE_LOSS_RESOURCES
    space = write_space(tmp_path / "node_loss.yaml", space)
    args = sweep_args(space, tmp_path, tiny_data_root, "--mode", "grid")
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
            address=idle_cluster.gcs_address,
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


# Successive halving: 6 steps, one rung at step 2 where only the best quarter continues.
HALVING_TRAIN = {"steps": 6}
HALVING_SCHEDULER = {"type": "mo-asha", "grace": 2, "eta": 4}
HALVING_METHODS = {
    "tcwae_mws": GRID_METHODS["tcwae_mws"],
    "wae_mmd": GRID_METHODS["wae_mmd"],
}


@pytest.mark.ray
def test_successive_halving_stops_trials_at_the_rung_and_ranks_only_the_finished(
    ray_session, tiny_data_root: Path, tmp_path: Path, capsys
) -> None:
    """Three trials, one at a time (so they reach the rung in grid order): the first always
    continues, a later one only when it is the best so far. Stopped trials are KILLED child runs
    with their rung scores, step and reason, and no final scores; finished ones have final scores
    and are the only ones ranked; the winner's encoder is registered."""
    space = space_dict(HALVING_METHODS, HALVING_TRAIN)
    space["profiles"]["smoke"]["scheduler"] = HALVING_SCHEDULER
    path = write_space(tmp_path / "halving.yaml", space)
    code = main(sweep_args(path, tmp_path, tiny_data_root, "--max-concurrent", "1"))
    output = capsys.readouterr().out
    assert code == 0, output[-5000:]

    client = mlflow_client(tmp_path)
    [parent], children = parent_and_children(client)
    assert len(children) == 3
    stopped = [run for run in children if run.info.status == "KILLED"]
    finished = [run for run in children if run.info.status == "FINISHED"]
    assert stopped and finished and len(stopped) + len(finished) == 3
    for run in stopped:
        assert run.data.tags["tcwae.stopped_at_step"] == "2"
        assert "stopped at rung 1 of 1 (step 2)" in run.data.tags["tcwae.stop_reason"]
        assert {f"rung/{score}" for score in RUNG_SCORES} <= set(run.data.metrics)
        assert not set(IMAGE_SCORES) & set(run.data.metrics)
    for run in finished:
        assert all(math.isfinite(run.data.metrics[score]) for score in IMAGE_SCORES)

    assert f"Stopped at a rung by successive halving ({len(stopped)}; not ranked):" in output
    header = re.search(r"^#\s+configuration\s+n\s+Rec \(min\)", output, re.M)
    assert header, output[-5000:]
    ranked_rows = re.findall(r"^\d+\*?\s+(\w+) ", output[header.end() :], re.M)
    assert len(ranked_rows) == len(finished)
    assert parent.data.tags["tcwae.registered_model"] == "models:/tcwae-halving/1"
    [version] = client.search_model_versions("name = 'tcwae-halving'")
    assert version.run_id in {run.info.run_id for run in finished}

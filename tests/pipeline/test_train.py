"""pipeline/train.py and pipeline/tracking.py: the CLI, MLflow records, fault tolerance, resume.

Integration tests use a real local Ray (`ray_session`), a real MLflow sqlite store in tmp_path and
a tiny procedural dSprites grid (1536 images) cached in a temporary data root, trained for 30
steps. Every `TorchTrainer.fit` costs 15-25 s of start-up on 2 cores, so there are three: a
killed worker recovered within one fit, and an interrupted run resumed by the same command (two
fits), whose finished run is then checked artifact by artifact.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mlflow_store import run_statuses

from pipeline.evaluation import PICTURES
from pipeline.metric_keys import RESUMED_METRIC
from pipeline.run_spec import (
    FROM_OBJECT_STORE,
    LOADED_BY_WORKER,
    default_run_name,
    make_spec,
    parse_args,
)
from pipeline.search.successive_halving import RungCheck
from pipeline.tracking import TAG_ERROR, TAG_PARENT, TAG_PREVIOUS_ERROR, Tracking, describe_error
from pipeline.tracking_store import resolve_tracking_uri
from pipeline.tracking_ui import param_values
from pipeline.train import TrainingFailed, check_launch, main, run_training
from pipeline.worker import SigkillOnce
from tcwae.config import ConfigError, TrainConfig
from tcwae.errors import UserError
from tcwae.metrics import SCORES

STEPS = 30
REPORT_EVERY = 5
CHECKPOINT_EVERY = 10


def _tiny_config(**changes) -> TrainConfig:
    values = {
        "dataset": "dsprites",
        "data_source": "procedural",
        "method": "tcwae_mws",
        "beta": 10.0,
        "gamma": 10.0,
        "steps": STEPS,
        "batch_size": 16,
        "report_every": REPORT_EVERY,
        "checkpoint_every": CHECKPOINT_EVERY,
        "eval_profile": "smoke",
        **changes,
    }
    return TrainConfig.from_dict(values)


def _uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _steps(tracking: Tracking, run_id: str, key: str = "train/loss") -> list[int]:
    return [step for step, _ in tracking.metric_history(run_id, key)]


def _download(tracking: Tracking, run_id: str, path: str, tmp_path: Path) -> Path:
    destination = tmp_path / "downloads"
    destination.mkdir(exist_ok=True)
    return Path(tracking.client.download_artifacts(run_id, path, str(destination)))


# Command line and bad input (no Ray, no MLflow) -------------------------------------------------


def test_flags_override_the_yaml_and_defaults_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({"beta": 3, "gamma": 4, "steps": 50, "dz": 6}))
    spec = parse_args(["dsprites", "--config", str(config_file), "--beta", "7.5", "--workers", "0"])
    assert spec.config.hyperparameters == {"beta": 7.5, "gamma": 4.0}
    assert (spec.config.steps, spec.config.dz) == (50, 6)
    assert spec.resources.workers == 0
    assert spec.where.experiment == "dsprites"
    assert spec.where.storage == str(tmp_path.resolve() / "runs")
    assert spec.where.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert spec.identity.name == default_run_name(spec.config)
    other = parse_args(["dsprites", "--beta", "7.5", "--gamma", "4"])
    assert other.identity.name != spec.identity.name


def test_tracking_uri_comes_from_flag_then_environment_then_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert resolve_tracking_uri("sqlite:////data/m.db") == "sqlite:////data/m.db"
    assert resolve_tracking_uri(None) == "http://mlflow.example:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_tracking_uri("sqlite:///sub/x.db") == f"sqlite:///{tmp_path.resolve()}/sub/x.db"


def _bad_input_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text(yaml.safe_dump({"betta": 3}))
    return {
        "unknown data set": (["mnist"], "unknown data set 'mnist'"),
        "unknown method": (["dsprites", "--method", "vae"], "method='vae' is not one of"),
        "unknown cost": (["dsprites", "--cost", "l3"], "cost='l3' is not one of"),
        "negative beta": (["dsprites", "--beta", "-1"], "beta must be >= 0"),
        "negative gamma": (["dsprites", "--gamma", "-0.5"], "gamma must be >= 0"),
        "non-numeric beta": (["dsprites", "--beta", "ten"], "beta must be a finite number"),
        "non-numeric gamma": (["dsprites", "--gamma", "x"], "gamma must be a finite number"),
        "too many workers": (["dsprites", "--workers", "999"], "--workers 999 is more than"),
        "negative workers": (["dsprites", "--workers", "-1"], "--workers must be a number from 0"),
        "storage under a file": (
            ["dsprites", "--storage", str(a_file / "runs")],
            "is not a directory",
        ),
        "storage not writable": (
            ["dsprites", "--storage", "/proc/tcwae-runs"],
            "storage /proc/tcwae-runs is not writable",
        ),
        "bad config key": (["dsprites", "--config", str(bad_yaml)], "unknown key 'betta'"),
        "missing config file": (
            ["dsprites", "--config", str(tmp_path / "absent.yaml")],
            "cannot read config file",
        ),
        "unknown flag": (["dsprites", "--betta", "3"], "unrecognized arguments: --betta"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unknown data set",
        "unknown method",
        "unknown cost",
        "negative beta",
        "negative gamma",
        "non-numeric beta",
        "non-numeric gamma",
        "too many workers",
        "negative workers",
        "storage under a file",
        "storage not writable",
        "bad config key",
        "missing config file",
        "unknown flag",
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_run(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the default storage and MLflow store would go
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    argv, expected = _bad_input_cases(tmp_path)[case]
    database = tmp_path / "mlflow.db"
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("train: ") and expected in lines[0], lines[0]
    assert run_statuses(database) == []
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_use_gpu_without_a_gpu_is_refused(tmp_path, capsys):
    database = tmp_path / "mlflow.db"
    code = main(
        ["dsprites", "--use-gpu", "--workers", "1", "--tracking-uri", f"sqlite:///{database}"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--use-gpu was given but" in err[0]
    assert run_statuses(database) == []


def test_launch_checks_use_the_ray_cluster_when_connected(ray_session, tmp_path):
    spec = make_spec(_tiny_config(), workers=3, tracking_uri=_uri(tmp_path), storage=str(tmp_path))
    with pytest.raises(UserError, match="more than the 2 CPUs of the Ray cluster"):
        check_launch(spec)


def test_make_spec_rejects_bad_names_and_failures():
    with pytest.raises(UserError, match="--name"):
        make_spec(_tiny_config(), name="a/b")
    with pytest.raises(UserError, match="--max-failures"):
        make_spec(_tiny_config(), max_failures=-2)
    with pytest.raises(ConfigError, match="unknown key"):
        TrainConfig.from_dict({"betta": 1})


def test_worker_errors_are_described_by_their_root_cause():
    from ray.train import WorkerGroupError

    inner = RuntimeError(
        "Traceback (most recent call last):\n  File 'x.py', line 1\n"
        "tcwae.trainer.NonFiniteLossError: step 12: loss term 'tc' is nan"
    )
    error = WorkerGroupError("[Rank 1 Error Snippet]: ...", {1: inner, 0: ValueError("first")})
    assert describe_error(error) == "WorkerGroupError on rank 0: ValueError: first"
    assert (
        describe_error(inner) == "tcwae.trainer.NonFiniteLossError: step 12: loss term 'tc' is nan"
    )


# MLflow helpers ----------------------------------------------------------------------------------


def test_tracking_experiments_parents_children_and_failed_runs(tmp_path):
    tracking = Tracking.at(_uri(tmp_path))
    experiment_id = tracking.experiment_id("sweep-x")
    assert tracking.experiment_id("sweep-x") == experiment_id
    location = tracking.client.get_experiment(experiment_id).artifact_location
    assert location == str(tmp_path / "mlartifacts")

    parent = tracking.start_parent_run(experiment_id, "sweep", params={"profile": "smoke"})
    child = tracking.start_run(experiment_id, "trial-0", {"beta": 1}, parent_run_id=parent)
    assert tracking.tags(child)[TAG_PARENT] == parent
    assert [run.info.run_id for run in tracking.child_runs(parent)] == [child]
    assert tracking.tags(parent)["git_commit"]

    tracking.end_run(child, RuntimeError("loss exploded\nmore detail"))
    assert tracking.client.get_run(child).info.status == "FAILED"
    assert tracking.tags(child)[TAG_ERROR] == "RuntimeError: loss exploded"
    assert any(path.startswith("errors/") for path in tracking.artifact_paths(child))
    tracking.reopen_run(child)
    assert tracking.client.get_run(child).info.status == "RUNNING"
    assert TAG_ERROR not in tracking.tags(child)
    assert tracking.tags(child)[TAG_PREVIOUS_ERROR] == "RuntimeError: loss exploded"
    tracking.end_run(child)
    tracking.end_run(parent)
    assert {status for _, status in run_statuses(tmp_path / "mlflow.db")} == {"FINISHED"}


# In-process training (no Ray) --------------------------------------------------------------------


def test_workers_0_trains_in_process_and_records_a_complete_run(tiny_data_root, tmp_path, capsys):
    uri = _uri(tmp_path)
    argv = [
        "dsprites",
        "--workers",
        "0",
        "--steps",
        "12",
        "--batch-size",
        "16",
        "--eval-profile",
        "smoke",
        "--data-source",
        "procedural",
        "--data-root",
        str(tiny_data_root),
        "--tracking-uri",
        uri,
        "--storage",
        str(tmp_path / "runs"),
        "--name",
        "local",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    tracking = Tracking.at(uri)
    [(run_id, status)] = run_statuses(tmp_path / "mlflow.db")
    assert status == "FINISHED"
    # One progress line per report (report_every 100 > 12 steps: the last step only), then the
    # summary, how to open the UI and, last, the run's own page in it.
    [progress] = [line for line in out if line.startswith("train: step ")]
    assert (
        progress.startswith("train: step 12/12 (100%), ") and " steps/s, ETA 0s, loss " in progress
    )
    assert out[-2] == f"train: browse with: mlflow ui --backend-store-uri {uri}"
    assert out[-1].startswith("train: MLflow run page: http://127.0.0.1:5000/#/experiments/")
    assert out[-1].endswith(f"/runs/{run_id}?workflowType=machine_learning")
    assert tracking.tags(run_id)["device"] == "1 x cpu"
    assert tracking.tags(run_id)["data_loading"] == LOADED_BY_WORKER
    assert set(PICTURES) | {"config.yaml", "checkpoint/trainer.pt"} <= set(
        tracking.artifact_paths(run_id)
    )
    assert (tmp_path / "runs" / "local" / "in_process").is_dir()

    # The same command again: the run is finished, nothing is trained or added.
    assert main(argv) == 0
    assert run_statuses(tmp_path / "mlflow.db") == [(run_id, "FINISHED")]
    # The same name with another config is refused rather than mixed into that run.
    assert main([*argv, "--beta", "3"]) == 2
    assert "was trained with beta=1.0 but this command has beta=3.0" in capsys.readouterr().err
    assert run_statuses(tmp_path / "mlflow.db") == [(run_id, "FINISHED")]


def test_rung_scores_are_logged_at_rung_steps_and_leave_training_unchanged(
    tiny_data_root, tmp_path
):
    """A run with rung checks at steps 4 and 8 logs `rung/<score>` there (rank 0 adds them to
    its reports, which Tune's scheduler judges) and trains exactly as the same run without."""
    check = RungCheck((4, 8), "smoke", ("rec", "mig", "factor_vae", "sap"))
    uri = _uri(tmp_path)
    tracking = Tracking.at(uri)
    losses = {}
    for name, rung_check in (("with", check), ("without", None)):
        spec = make_spec(
            _tiny_config(steps=12, report_every=2, checkpoint_every=6),
            workers=0,
            tracking_uri=uri,
            storage=str(tmp_path / "runs"),
            name=name,
            data_root=str(tiny_data_root),
            rung_check=rung_check,
        )
        run_id = run_training(spec).run_id
        losses[name] = tracking.metric_history(run_id, "train/loss")
        for score in check.scores:
            history = tracking.metric_history(run_id, f"rung/{score}")
            if rung_check is None:
                assert history == []
            else:
                assert [step for step, _ in history] == [4, 8]
                assert all(math.isfinite(value) for _, value in history)
    assert losses["with"] == losses["without"]


# Ray Train (three fits) --------------------------------------------------------------------------


@pytest.mark.ray
def test_killed_worker_restarts_from_checkpoint_in_the_same_mlflow_run(
    ray_session, tiny_data_root, tmp_path
):
    spec = make_spec(
        _tiny_config(),
        workers=2,
        tracking_uri=_uri(tmp_path),
        storage=str(tmp_path / "runs"),
        name="killed",
        data_root=str(tiny_data_root),
        max_failures=1,
    )
    marker = tmp_path / "killed.marker"
    result = run_training(spec, fault=SigkillOnce(rank=1, step=25, marker=str(marker)))
    final = result.metrics
    assert marker.exists()  # rank 1 did kill itself
    assert final["step"] == STEPS and math.isfinite(final["rec"])
    tracking = Tracking.at(spec.where.tracking_uri)
    [(run_id, status)] = run_statuses(tmp_path / "mlflow.db")
    assert status == "FINISHED"
    # Two workers: the driver put the data set in the object store once; the restarted worker
    # read it from there again.
    assert tracking.tags(run_id)["data_loading"] == FROM_OBJECT_STORE
    [(resumed_at, _)] = tracking.metric_history(run_id, RESUMED_METRIC)
    assert resumed_at in (CHECKPOINT_EVERY, 2 * CHECKPOINT_EVERY)
    # One point per step, continuing after the checkpoint: no gap, no repeat.
    assert _steps(tracking, run_id) == list(range(REPORT_EVERY, STEPS + 1, REPORT_EVERY))


@pytest.mark.ray
def test_interrupted_run_resumes_when_the_same_command_runs_again_and_records_everything(
    ray_session, tiny_data_root, tmp_path, capsys, monkeypatch
):
    """A 2-worker run dies (max_failures=0, a worker SIGKILLed); the same command line then
    resumes it from its checkpoint into the same MLflow run, which ends complete."""
    import mlflow.pytorch

    from tcwae.data import load_dataset
    from tcwae.trainer import Trainer

    uri = _uri(tmp_path)
    expected = _tiny_config()
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({**expected.to_dict(), "beta": 3}))
    argv = [
        "dsprites",
        "--config",
        str(config_file),
        "--beta",
        "10",
        "--workers",
        "2",
        "--max-failures",
        "0",
        "--data-root",
        str(tiny_data_root),
        "--tracking-uri",
        uri,
        "--storage",
        str(tmp_path / "runs"),
    ]
    spec = parse_args(argv)
    assert spec.config == expected

    marker = tmp_path / "interrupted.marker"
    with pytest.raises(TrainingFailed, match="marked FAILED"):
        run_training(spec, fault=SigkillOnce(rank=1, step=25, marker=str(marker)))
    tracking = Tracking.at(uri)
    [(run_id, status)] = run_statuses(tmp_path / "mlflow.db")
    assert status == "FAILED"
    assert "rank 1" in tracking.tags(run_id)[TAG_ERROR]
    assert max(_steps(tracking, run_id)) < STEPS

    assert main(argv) == 0, capsys.readouterr().err
    assert run_statuses(tmp_path / "mlflow.db") == [(run_id, "FINISHED")]
    [(resumed_at, _)] = tracking.metric_history(run_id, RESUMED_METRIC)
    assert resumed_at in (CHECKPOINT_EVERY, 2 * CHECKPOINT_EVERY)
    assert _steps(tracking, run_id) == list(range(REPORT_EVERY, STEPS + 1, REPORT_EVERY))
    assert "rank 1" in tracking.tags(run_id)[TAG_PREVIOUS_ERROR]

    params = tracking.params(run_id)
    configured = param_values(expected.to_dict())  # unset options (None) are not logged
    assert {key: params[key] for key in configured} == configured
    assert not (set(expected.to_dict()) - set(configured)) & set(params)
    # The preset's resolved Adam values are recorded beside the config that left them unset.
    adam, _ = expected.adam()
    assert params["adam.lr"] == f"{adam.lr:g}"
    assert params["adam.eps"] == f"{adam.eps:g}"
    tags = tracking.tags(run_id)
    assert tags["dataset_source"] == "procedural"
    assert tags["device"] == "2 x cpu"
    assert tags["torch_version"] == torch.__version__
    assert tags["ray_version"] == ray_session.__version__
    assert tags["git_commit"]
    metrics = tracking.latest_metrics(run_id)
    for score in SCORES:
        assert math.isfinite(metrics[score]), score
    assert metrics["rec"] > 0

    artifacts = set(tracking.artifact_paths(run_id))
    assert set(PICTURES) | {"config.yaml", "checkpoint/trainer.pt"} <= artifacts
    for picture in PICTURES:
        assert _download(tracking, run_id, picture, tmp_path).read_bytes()[:4] == b"\x89PNG"
    assert TrainConfig.from_yaml(_download(tracking, run_id, "config.yaml", tmp_path)) == expected

    dataset = load_dataset("dsprites", root=tiny_data_root, source="procedural")
    trainer = Trainer(expected, dataset, device="cpu")
    trainer.load(_download(tracking, run_id, "checkpoint/trainer.pt", tmp_path))
    assert trainer.step == STEPS
    images = dataset.observations(dataset.sample_factors(8, np.random.default_rng(0)))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    encoder = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
    codes = encoder(torch.from_numpy(images)).detach().numpy()
    assert codes.shape == (8, expected.dz)
    np.testing.assert_allclose(codes, trainer.represent(images), rtol=1e-4, atol=1e-4)

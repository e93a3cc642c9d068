"""The sweep's winner registered in a real MLflow sqlite store and loaded back by name."""

from __future__ import annotations

import mlflow.pytorch
import numpy as np
import torch

from pipeline.model_registry import BEST_ALIAS, log_encoder, register_best, registered_model_name
from pipeline.report_ranking import aggregate, rank, run_row
from pipeline.tracking import Tracking
from tcwae.config import TrainConfig
from tcwae.nets import Autoencoder

RANK_BY = (("rec", "min"), ("mig", "max"))
DZ = 3


def _trial(tracking: Tracking, experiment_id: str, beta: float, mig: float, seed: int) -> dict:
    """One finished trial that logged its encoder, as the pipeline logs it; returns its row."""
    config = TrainConfig.from_dict(
        {"method": "tcwae_mws", "beta": beta, "gamma": 5.0, "dz": DZ, "seed": seed}
    )
    run_id = tracking.start_run(experiment_id, f"beta{beta}-seed{seed}")
    tracking.log_params(run_id, config.to_dict())
    tracking.log_config(run_id, config.to_dict())
    torch.manual_seed(seed)
    example = np.random.default_rng(seed).random((2, 1, 64, 64), dtype=np.float32)
    log_encoder(tracking, run_id, Autoencoder(nchan=1, dz=DZ), example, step=10)
    tracking.end_run(run_id)
    return run_row(config, {"rec": 3.0, "mig": mig}, run_id)


def test_the_best_configuration_is_a_new_version_loadable_by_name(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking = Tracking.at(uri)
    experiment_id = tracking.experiment_id("registry")
    rows = [
        _trial(tracking, experiment_id, beta=1.0, mig=0.1, seed=0),
        _trial(tracking, experiment_id, beta=10.0, mig=0.3, seed=0),
    ]
    ranked = rank(aggregate(rows), RANK_BY)
    assert ranked[0]["label"] == "tcwae_mws beta=10 gamma=5"

    first = register_best(tracking, "dsprites", "sweep-a", ranked, RANK_BY)
    second = register_best(tracking, "dsprites", "sweep-b", ranked, RANK_BY)
    name = registered_model_name("dsprites")
    assert (int(first.version), int(second.version)) == (1, 2)
    assert first.run_id == ranked[0]["run_ids"][0]
    assert "beta: 10.0" in second.description and "sweep-b" in second.description
    assert int(tracking.client.get_model_version_by_alias(name, BEST_ALIAS).version) == 2

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # what `models:/` resolves against
    encoder = mlflow.pytorch.load_model(f"models:/{name}/latest")
    images = torch.rand(5, 1, 64, 64)
    assert encoder(images).shape == (5, DZ)


def test_nothing_is_registered_when_the_winner_logged_no_encoder(tmp_path):
    tracking = Tracking.at(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = tracking.experiment_id("registry")
    run_id = tracking.start_run(experiment_id, "no-model")
    tracking.end_run(run_id)
    row = run_row(TrainConfig(method="wae_mmd"), {"rec": 3.0, "mig": 0.1}, run_id)
    ranked = rank(aggregate([row]), RANK_BY)
    assert register_best(tracking, "dsprites", "sweep", ranked, RANK_BY) is None
    assert tracking.client.search_registered_models() == []

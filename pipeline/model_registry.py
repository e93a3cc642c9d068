"""The encoder as an MLflow model: each run logs its own (`log_encoder`, called by
`pipeline.evaluation`), and the sweep's winner goes into MLflow's model registry.

One registered model per search space (`tcwae-<space>`), one new version per sweep: the encoder
that the best configuration's first finished seed logged (`log_encoder`), with the
ranking and the configuration in the version's description. `models:/tcwae-<space>/latest` then
loads the winner of the latest sweep, and the alias `best` points at the same version.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.tracking import Tracking

MODEL_NAME = "model"
BEST_ALIAS = "best"
RANKING_ROWS = 10  # configurations listed in a version's description


def log_encoder(
    tracking: Tracking, run_id: str, autoencoder: Any, example_images: Any, step: int
) -> str:
    """Log `autoencoder` as the run's MLflow PyTorch model named 'model'; returns its URI.

    The model is exported with `torch.export` (MLflow's 'pt2' format) from a CPU copy in eval
    mode, with a dynamic batch dimension, so `mlflow.pytorch.load_model(uri)(images)` maps
    float images `[n, C, 64, 64]` in [0, 1] to encoder means `[n, dz]` without needing this
    repository's code. `example_images` is a float32 numpy array `[2+, C, 64, 64]`.
    """
    import mlflow.pytorch
    import torch
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    model = copy.deepcopy(autoencoder).cpu().eval()
    logged = tracking.client.create_logged_model(
        tracking.client.get_run(run_id).info.experiment_id, name=MODEL_NAME, source_run_id=run_id
    )
    try:
        with tempfile.TemporaryDirectory() as folder:
            local = Path(folder) / MODEL_NAME
            mlflow.pytorch.save_model(
                model,
                str(local),
                mlflow_model=Model(
                    artifact_path=logged.artifact_location,
                    model_uuid=logged.model_id,
                    run_id=run_id,
                    model_id=logged.model_id,
                ),
                input_example=example_images,
                serialization_format="pt2",
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )
            tracking.client.log_model_artifacts(logged.model_id, str(local))
        tracking.client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=step)])
    except BaseException:
        tracking.client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    tracking.client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    return f"runs:/{run_id}/{MODEL_NAME}"


def registered_model_name(space: str) -> str:
    """The registered model of a search space, e.g. 'tcwae-dsprites'."""
    return f"tcwae-{space}"


def version_description(
    sweep_name: str, ranked: list[Mapping[str, Any]], rank_by: tuple[tuple[str, str], ...]
) -> str:
    """The best configuration (TrainConfig keys) and the sweep's ranking, best first."""
    best = ranked[0]
    scores = [name for name, _ in rank_by]
    lines = [
        f"Best configuration of sweep {sweep_name}: {best['label']} "
        f"(mean rank {best['mean_rank']:.2f}, seeds {best['seeds']}).",
        "",
        "Configuration:",
        yaml.safe_dump(dict(best["config"]), sort_keys=False).rstrip(),
        "",
        "Ranking (mean over seeds): " + ", ".join(f"{s} ({d})" for s, d in rank_by),
    ]
    for position, row in enumerate(ranked[:RANKING_ROWS], start=1):
        values = ", ".join(f"{s} {row[s]:.4g}" for s in scores if s in row)
        lines.append(f"{position}. {row['label']}: {values}")
    return "\n".join(lines)


def register_best(
    tracking: Tracking,
    space: str,
    sweep_name: str,
    ranked: list[Mapping[str, Any]],
    rank_by: tuple[tuple[str, str], ...],
) -> Any | None:
    """Register the encoder of the best configuration (`ranked[0]`) as a new version of the
    space's registered model and point the `best` alias at it; None when no seed of that
    configuration logged an encoder (nothing is registered then)."""
    if not ranked:
        return None
    for run_id in ranked[0]["run_ids"]:
        encoder = tracking.logged_encoder(run_id) if run_id else None
        if encoder is not None:
            break
    else:
        return None
    name = registered_model_name(space)
    client = tracking.client
    if not tracking.has_registered_model(name):
        client.create_registered_model(
            name, description=f"The best encoder of each `{space}` sweep, newest last."
        )
    version = client.create_model_version(
        name,
        # The stored location, not 'models:/<id>': MLflow's sqlite registry resolves that URI
        # through the process-wide tracking URI, which need not be this client's.
        source=encoder.artifact_location,
        run_id=run_id,
        model_id=encoder.model_id,
        description=version_description(sweep_name, ranked, rank_by),
        tags={"sweep": sweep_name, "configuration": ranked[0]["label"]},
    )
    client.set_registered_model_alias(name, BEST_ALIAS, version.version)
    return version

"""The encoder as an MLflow model: each run logs its own (`log_encoder`), and each sweep registers
the encoder of its best configuration's first finished seed as a new version of `tcwae-<space>`,
the ranking in its description: `models:/tcwae-<space>/latest` (alias `best`) is the latest winner.
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
RankBy = tuple[tuple[str, str], ...]  # (score, 'min' or 'max'), as in --rank-by
Rows = list[Mapping[str, Any]]  # the report's ranked configurations, best first


def log_encoder(
    tracking: Tracking, run_id: str, autoencoder: Any, example_images: Any, step: int
) -> str:
    """Log `autoencoder` as the run's PyTorch model 'model' and return its URI. It is exported
    (`torch.export`, MLflow's 'pt2') from a CPU copy in eval mode with a dynamic batch, so that
    `mlflow.pytorch.load_model(uri)` maps float images `[n, C, 64, 64]` in [0, 1] to encoder means
    `[n, dz]` without this repository's code. `example_images`: float32 `[2+, C, 64, 64]`."""
    import mlflow.pytorch
    import torch
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    client = tracking.client
    model = copy.deepcopy(autoencoder).cpu().eval()
    experiment_id = client.get_run(run_id).info.experiment_id
    logged = client.create_logged_model(experiment_id, name=MODEL_NAME, source_run_id=run_id)
    ids = {"model_uuid": logged.model_id, "run_id": run_id, "model_id": logged.model_id}
    status = LoggedModelStatus.FAILED
    try:
        with tempfile.TemporaryDirectory() as folder:
            local = str(Path(folder) / MODEL_NAME)
            mlflow.pytorch.save_model(
                model,
                local,
                mlflow_model=Model(artifact_path=logged.artifact_location, **ids),
                input_example=example_images,
                serialization_format="pt2",
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )
            client.log_model_artifacts(logged.model_id, local)
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=step)])
        status = LoggedModelStatus.READY
    finally:
        client.finalize_logged_model(logged.model_id, status)
    return f"runs:/{run_id}/{MODEL_NAME}"


def registered_model_name(space: str) -> str:
    return f"tcwae-{space}"


def version_description(sweep_name: str, ranked: Rows, rank_by: RankBy) -> str:
    """The best configuration (TrainConfig keys) and the sweep's ranking, best first."""
    best = ranked[0]
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
        values = ", ".join(f"{s} {row[s]:.4g}" for s, _ in rank_by if s in row)
        lines.append(f"{position}. {row['label']}: {values}")
    return "\n".join(lines)


def register_best(
    tracking: Tracking, space: str, sweep_name: str, ranked: Rows, rank_by: RankBy
) -> Any | None:
    """Register the encoder of the best configuration as a new version of the space's model and
    point `best` at it; None (nothing registered) when no seed of it logged an encoder."""
    seeds = ranked[0]["run_ids"] if ranked else []
    logged = ((run_id, tracking.logged_encoder(run_id)) for run_id in seeds if run_id)
    run_id, encoder = next((pair for pair in logged if pair[1] is not None), (None, None))
    if encoder is None:
        return None
    name = registered_model_name(space)
    client = tracking.client
    if not tracking.has_registered_model(name):
        description = f"The best encoder of each `{space}` sweep, newest last."
        client.create_registered_model(name, description=description)
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

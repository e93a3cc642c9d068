"""The sweep's winner in MLflow's model registry.

One registered model per search space (`tcwae-<space>`), one new version per sweep: the encoder
that the best configuration's first finished seed logged (`Tracking.log_encoder`), with the
ranking and the configuration in the version's description. `models:/tcwae-<space>/latest` then
loads the winner of the latest sweep, and the alias `best` points at the same version.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from pipeline.tracking import Tracking

BEST_ALIAS = "best"
RANKING_ROWS = 10  # configurations listed in a version's description


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

"""Grid mode through Optuna: every grid point of a profile, each tried once, as one categorical
`config_id` for `GridSampler` (whose flat product cannot express parameters conditional on the
method), so that every point lives in one study, one Tune run and one MLflow parent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.search.types import GRID_PARAMETER, SearchSpaceError, format_number


def config_id(point: Mapping[str, Any]) -> str:
    """A readable, unique label of a grid point, e.g. 'tcwae_mws,beta=50,gamma=100,seed=0'."""
    values = [
        f"{key}={format_number(v)}" for key, v in point.items() if key not in ("method", "seed")
    ]
    return ",".join([str(point["method"]), *values, f"seed={point['seed']}"])


def grid_sampler_space(points: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The search space for `optuna.samplers.GridSampler`: one categorical over the points."""
    ids = [config_id(point) for point in points]
    if len(set(ids)) != len(ids):
        raise SearchSpaceError("grid points are not unique; a value appears twice in a grid")
    return {GRID_PARAMETER: ids}


@dataclass(frozen=True)
class GridDefineByRun:
    """Grid mode's define-by-run space: the point GridSampler picks, as the trial's config. A
    class, not a closure, so that Tune can pickle the searcher for resuming."""

    points: tuple[Mapping[str, Any], ...]

    def __call__(self, trial: Any) -> dict[str, Any]:
        by_id = {config_id(point): point for point in self.points}
        chosen = trial.suggest_categorical(GRID_PARAMETER, list(by_id))
        return dict(by_id[chosen])

"""Optuna mode: a profile's methods and ranges as a define-by-run space, `rank_by` as objectives."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.search.types import MethodSpace, Profile


@dataclass(frozen=True)
class OptunaDefineByRun:
    """A categorical `method`, its parameters (as `<method>.<param>`, so that each method's values
    are their own distribution) and a categorical `seed`; returns them as `trial_train_config`
    reads them."""

    methods: tuple[MethodSpace, ...]
    seeds: tuple[int, ...]

    @classmethod
    def from_profile(
        cls, profile: Profile, methods: Sequence[str] | None = None
    ) -> OptunaDefineByRun:
        selected = profile.select(methods)
        return cls(tuple(selected.methods.values()), selected.seeds)

    def __call__(self, trial: Any) -> dict[str, Any]:
        specs = {spec.name: spec for spec in self.methods}
        method = trial.suggest_categorical("method", list(specs))
        point: dict[str, Any] = {"method": method}
        for param in specs[method].params.values():
            name = f"{method}.{param.name}"
            if param.integer:
                value = trial.suggest_int(name, int(param.low), int(param.high), log=param.log)
            else:
                value = trial.suggest_float(name, param.low, param.high, log=param.log)
            point[param.name] = value
        point["seed"] = trial.suggest_categorical("seed", list(self.seeds))
        return point


def objectives(profile: Profile) -> tuple[list[str], list[str]]:
    """(metrics, modes) for a multi-objective `OptunaSearch`, from the file's `rank_by`."""
    return [score for score, _ in profile.rank_by], [mode for _, mode in profile.rank_by]

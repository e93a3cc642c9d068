"""A search-space file once read: methods, searched parameters (a `grid` for grid mode, a `range`
for Optuna) and profiles (budget, seeds, trial count, resources). A `Profile` holds the validated
`TrainConfig` of every grid point, built once, which planning and trials look up.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.run_spec import Resources
from pipeline.search.successive_halving import SchedulerSpec
from tcwae.config import ConfigError, TrainConfig
from tcwae.errors import UserError
from tcwae.metrics import SCORES as IMAGE_SCORES
from tcwae.sequence_eval import SEQUENCE_SCORES

SCORES = IMAGE_SCORES + SEQUENCE_SCORES  # the scores a file may rank on
GRID_PARAMETER = "config_id"  # grid mode's one Optuna parameter; a trial config may carry it


class SearchSpaceError(UserError):
    """A search-space file is unreadable or invalid, or a trial's parameters do not fit it."""


@dataclass(frozen=True)
class ParamSpace:
    """One searched hyper-parameter: the grid for grid mode, the range for Optuna."""

    name: str
    grid: tuple[float, ...]
    low: float
    high: float
    log: bool
    integer: bool = False  # Optuna samples integers

    def to_dict(self) -> dict[str, Any]:
        return {
            "grid": list(self.grid),
            "range": {"low": self.low, "high": self.high, "log": self.log},
        }


@dataclass(frozen=True)
class MethodSpace:
    """One method: its cost, the TrainConfig values it fixes and the parameters it searches."""

    name: str
    cost: str
    fixed: Mapping[str, Any]
    params: Mapping[str, ParamSpace]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cost": self.cost,
            "fixed": dict(self.fixed),
            "params": {name: param.to_dict() for name, param in self.params.items()},
        }

    def values(self, dataset: str, train: Mapping[str, Any]) -> dict[str, Any]:
        """The TrainConfig values this method fixes on top of `train`, before the searched ones."""
        return {"dataset": dataset, **train, "method": self.name, "cost": self.cost, **self.fixed}


@dataclass(frozen=True)
class Profile:
    """One profile, self-contained: `train` merges the file's and the profile's overrides,
    `methods` carry the profile's grids, `configs` every grid point's TrainConfig (`planned`)."""

    source: str
    name: str
    dataset: str
    rank_by: tuple[tuple[str, str], ...]
    train: Mapping[str, Any]
    methods: Mapping[str, MethodSpace]
    seeds: tuple[int, ...]
    num_samples: int
    resources: Resources
    budget: str = ""
    scheduler: SchedulerSpec | None = None
    # (method, searched values, seed) -> config
    configs: Mapping[tuple, TrainConfig] = field(default_factory=dict, repr=False)

    def planned(self) -> Profile:
        """This profile with every grid point's TrainConfig built and validated, once."""
        configs = {}
        for point in grid_points(self):
            where = f"{self.source}: profiles.{self.name}.methods.{point['method']}"
            configs[tuple(point.values())] = self.build_config(point, where)
        return dataclasses.replace(self, configs=configs)

    def select(self, methods: Sequence[str] | None) -> Profile:
        """This profile restricted to `methods` (None keeps all), in the profile's order."""
        if methods is None:
            return self
        unknown = [m for m in methods if m not in self.methods]
        if unknown:
            raise SearchSpaceError(
                f"{self.source}: profiles.{self.name}: method {unknown[0]!r} is not in this "
                f"profile; it has {', '.join(self.methods)}"
            )
        if not methods:
            raise SearchSpaceError(f"{self.source}: profiles.{self.name}: no method selected")
        kept = {name: spec for name, spec in self.methods.items() if name in methods}
        configs = {key: config for key, config in self.configs.items() if key[0] in kept}
        return dataclasses.replace(self, methods=kept, configs=configs)

    def with_seeds(self, seeds: Sequence[int] | None) -> Profile:
        """This profile with other seeds (None keeps its own), e.g. to add seeds to a sweep."""
        if seeds is None:
            return self
        if not seeds or any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
            raise SearchSpaceError(
                f"seeds must be distinct non-negative integers, got {', '.join(map(str, seeds))}"
            )
        return dataclasses.replace(self, seeds=tuple(seeds)).planned()

    @property
    def searched(self) -> bool:
        """Whether any method searches a parameter (else only grid mode makes sense)."""
        return any(spec.params for spec in self.methods.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain data for logging the sweep's search space to its MLflow parent run."""
        return {
            "source": self.source,
            "profile": self.name,
            "dataset": self.dataset,
            "rank_by": dict(self.rank_by),
            "train": dict(self.train),
            "methods": {name: spec.to_dict() for name, spec in self.methods.items()},
            "seeds": list(self.seeds),
            "num_samples": self.num_samples,
            "resources": dict(self.resources.__dict__),
            "budget": self.budget,
            "scheduler": self.scheduler.to_dict() if self.scheduler else None,
        }

    def build_config(self, point: Mapping[str, Any], where: str) -> TrainConfig:
        """The validated TrainConfig of `point` (method, searched values, seed)."""
        values = self.methods[point["method"]].values(self.dataset, self.train)
        values.update(point)
        return validated_config(values, where)


@dataclass(frozen=True)
class SearchSpace:
    """A validated search-space file; `profile(name)` resolves one of its profiles."""

    source: str
    dataset: str
    description: str
    rank_by: tuple[tuple[str, str], ...]
    train: Mapping[str, Any]
    methods: Mapping[str, MethodSpace]
    profiles: Mapping[str, Profile] = field(repr=False)

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise SearchSpaceError(
                f"{self.source}: profiles: no profile {name!r}; "
                f"available: {', '.join(self.profiles)}"
            )
        return self.profiles[name]


def validated_config(values: dict[str, Any], where: str) -> TrainConfig:
    """`TrainConfig.from_dict`, its error a SearchSpaceError (the same one line)."""
    try:
        return TrainConfig.from_dict(values, where=where)
    except ConfigError as err:
        raise SearchSpaceError(str(err)) from None


def grid_points(profile: Profile, methods: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Every (method, searched values, seed) of the profile's grids, seed-major so that a
    truncated sweep covers every configuration once before it repeats any with a new seed."""
    selected = profile.select(methods)
    return [
        {"method": method, **dict(zip(spec.params, values, strict=True)), "seed": seed}
        for seed in selected.seeds
        for method, spec in selected.methods.items()
        for values in itertools.product(*(param.grid for param in spec.params.values()))
    ]


def trial_train_config(profile: Profile, params: Mapping[str, Any]) -> TrainConfig:
    """The TrainConfig of a grid point or Tune trial config (whose `config_id` or
    `<method>.<param>` keys are ignored): the planned one, or for Optuna's points a new one."""
    where = f"{profile.source}: profiles.{profile.name}: trial {dict(params)}"
    if "method" not in params:
        raise SearchSpaceError(f"{where}: no 'method'")
    method = params["method"]
    if method not in profile.methods:
        raise SearchSpaceError(
            f"{where}: method {method!r} is not in this profile; "
            f"it has {', '.join(profile.methods)}"
        )
    spec = profile.methods[method]
    expected = {"method", "seed", *spec.params}
    search_keys = {GRID_PARAMETER, *(f"{method}.{name}" for name in spec.params)}
    unknown = sorted(set(params) - expected - search_keys)
    if unknown:
        raise SearchSpaceError(f"{where}: unknown key {unknown[0]!r}")
    missing = sorted(expected - set(params))
    if missing:
        raise SearchSpaceError(f"{where}: missing {missing[0]!r}")
    point = {"method": method, **{name: params[name] for name in spec.params}}
    point["seed"] = params["seed"]
    planned = profile.configs.get(tuple(point.values()))
    return planned if planned is not None else profile.build_config(point, where)


def format_number(value: Any) -> str:
    return format(value, ".12g") if isinstance(value, float) else str(value)

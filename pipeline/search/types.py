"""What a search-space file holds once read: its methods, searched parameters and profiles, and
each profile's planned trials.

A file names a dataset, the scores that rank configurations (`rank_by`), per method the
reconstruction cost, fixed `TrainConfig` values and the searched parameters (each with the `grid`
that grid mode enumerates and the `range` that Optuna samples, log-uniform where `log: true`), and
profiles (`smoke`, `cpu`, `paper`, ...) that set the training budget, seeds, Optuna's trial count
and the resources of a trial. `pipeline.search.parser` builds these; a `Profile` it returns holds
the validated `TrainConfig` of every grid point (`configs`), built once when the file is read, so
that planning a sweep and starting a trial look a config up (`trial_train_config`) instead of
building it again.
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

# Scores a trial reports that a file may rank on: an image model's (tcwae.metrics) and a sequence
# model's reconstruction and judged scores (tcwae.sequence_eval).
SCORES = IMAGE_SCORES + SEQUENCE_SCORES
# Grid mode's one Optuna parameter (see `pipeline.search.grid`); a trial config may carry it.
GRID_PARAMETER = "config_id"
# A grid point's key among a profile's planned configs: (method, searched values, seed).
PointKey = tuple[Any, ...]


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
    integer: bool = False  # the hyper-parameter is declared integer: Optuna samples integers

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
        """The flat TrainConfig values this method fixes on top of `train`, before the search's."""
        return {"dataset": dataset, **train, "method": self.name, "cost": self.cost, **self.fixed}


@dataclass(frozen=True)
class Profile:
    """A search space resolved for one profile: everything a sweep needs, self-contained.

    `train` holds the file's and the profile's TrainConfig overrides; `methods` holds the profile's
    methods with its grid subsets applied (ranges stay the file's); `configs` the validated config
    of every grid point (`planned` builds them)."""

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
    configs: Mapping[PointKey, TrainConfig] = field(default_factory=dict, repr=False)

    def planned(self) -> Profile:
        """This profile with the TrainConfig of every grid point built and validated, once;
        a point that does not validate is one SearchSpaceError naming the profile's method."""
        configs = {}
        for point in grid_points(self):
            where = f"{self.source}: profiles.{self.name}.methods.{point['method']}"
            configs[_point_key(point)] = self.build_config(point, where)
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
        """This profile with its seeds replaced (None keeps the profile's), e.g. to add seeds to
        a finished sweep or to re-run one that failed."""
        if seeds is None:
            return self
        if not seeds or any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
            raise SearchSpaceError(
                f"seeds must be distinct non-negative integers, got {', '.join(map(str, seeds))}"
            )
        return dataclasses.replace(self, seeds=tuple(seeds)).planned()

    @property
    def searched(self) -> bool:
        """Whether any method has a searched parameter (otherwise only grid mode makes sense)."""
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
        """The validated TrainConfig of `point` (method, searched values, seed); `where` starts
        its error."""
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
    points = []
    for seed in selected.seeds:
        for method, spec in selected.methods.items():
            names = list(spec.params)
            for values in itertools.product(*(spec.params[n].grid for n in names)):
                points.append(
                    {"method": method, **dict(zip(names, values, strict=True)), "seed": seed}
                )
    return points


def trial_train_config(profile: Profile, params: Mapping[str, Any]) -> TrainConfig:
    """The TrainConfig of one trial: the profile's overrides, the method's cost and fixed values,
    the searched values and the seed. `params` is a grid point or a Tune trial config (which also
    carries the search's own keys, `config_id` or `<method>.<param>`, ignored here). A grid
    point's config is the one planned when the file was read; any other (Optuna's) is built."""
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
    planned = profile.configs.get(_point_key(point))
    return planned if planned is not None else profile.build_config(point, where)


def _point_key(point: Mapping[str, Any]) -> PointKey:
    return tuple(point.values())


def format_number(value: Any) -> str:
    return format(value, ".12g") if isinstance(value, float) else str(value)

"""Search spaces: `search_spaces/<name>.yaml` loaded, validated and turned into what Tune needs.

A file names a dataset, the scores that rank configurations (`rank_by`), per method the
reconstruction cost, fixed `TrainConfig` values and the searched parameters (each with the `grid`
that grid mode enumerates and the `range` that Optuna samples, log-uniform where `log: true`), and
profiles (`smoke`, `cpu`, `paper`, ...) that set the training budget, seeds, Optuna's trial count
and the resources of a trial. Every mistake is reported as one `SearchSpaceError` line naming the
file and the key path, before any trial starts.

Grid mode gives Optuna's `GridSampler` a single categorical parameter, `config_id`, whose values
are the grid points (method, searched values, seed): a method's parameters are conditional on the
method, which `GridSampler`'s flat product of independent lists cannot express, and one categorical
keeps every point in one study (one Tune run, one MLflow parent) with exactly one trial each.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.rungs import SchedulerSpec
from tcwae.config import CONFIG_KEYS, ConfigError, TrainConfig
from tcwae.errors import UserError
from tcwae.methods import all_hyperparameters
from tcwae.metrics import SCORES as IMAGE_SCORES
from tcwae.sequence_eval import SEQUENCE_SCORES

REPO_ROOT = Path(__file__).resolve().parent.parent
SEARCH_SPACE_DIR = REPO_ROOT / "search_spaces"

# Scores a trial reports that a file may rank on: an image model's (tcwae.metrics) and a sequence
# model's reconstruction and judged scores (tcwae.sequence_eval).
SCORES = IMAGE_SCORES + SEQUENCE_SCORES
MODES = ("min", "max")
# TrainConfig keys that the search itself sets, and the key of the file that sets each.
SEARCH_SET_KEYS = {
    "dataset": "the top-level `dataset`",
    "method": "the `methods` entries",
    "seed": "the profile's `seeds`",
    "cost": "each method's `cost`",
}
# Every method's hyper-parameters (tcwae.methods); a method searches only those it reads.
HYPERPARAMETERS = tuple(all_hyperparameters())
GRID_PARAMETER = "config_id"
RESOURCE_KEYS = ("workers", "cpus_per_worker", "gpus_per_worker")
SCHEDULER_KEYS = (
    "type",
    "grace",
    "eta",
    "rank_by",
    "selection",
    "tie_break",
    "rung_profile",
    "synchronous",
)
DEFAULT_SCHEDULER = SchedulerSpec()
PROFILE_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")

TRAIN_FIELDS = CONFIG_KEYS


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


@dataclass(frozen=True)
class Resources:
    """What one trial asks the cluster for: `workers` DDP workers, each with these CPUs/GPUs."""

    workers: int
    cpus_per_worker: float
    gpus_per_worker: float

    @property
    def gpus_per_trial(self) -> float:
        return self.workers * self.gpus_per_worker

    @property
    def cpus_per_trial(self) -> float:
        return self.workers * self.cpus_per_worker


@dataclass(frozen=True)
class Profile:
    """A search space resolved for one profile: everything a sweep needs, self-contained.

    `train` holds the file's and the profile's TrainConfig overrides; `methods` holds the profile's
    methods with its grid subsets applied (ranges stay the file's)."""

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
        return dataclasses.replace(self, methods=kept)

    def with_seeds(self, seeds: Sequence[int] | None) -> Profile:
        """This profile with its seeds replaced (None keeps the profile's), e.g. to add seeds to
        a finished sweep or to re-run one that failed."""
        if seeds is None:
            return self
        if not seeds or any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
            raise SearchSpaceError(
                f"seeds must be distinct non-negative integers, got {', '.join(map(str, seeds))}"
            )
        return dataclasses.replace(self, seeds=tuple(seeds))

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
            "rank_by": {score: mode for score, mode in self.rank_by},
            "train": dict(self.train),
            "methods": {name: spec.to_dict() for name, spec in self.methods.items()},
            "seeds": list(self.seeds),
            "num_samples": self.num_samples,
            "resources": dict(self.resources.__dict__),
            "budget": self.budget,
            "scheduler": self.scheduler.to_dict() if self.scheduler else None,
        }


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


def available_search_spaces() -> list[str]:
    return sorted(path.stem for path in SEARCH_SPACE_DIR.glob("*.yaml"))


def load_search_space(name_or_path: str | Path) -> SearchSpace:
    """Load `search_spaces/<name>.yaml` (a bare name) or any YAML path, and validate it all."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or text.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
    else:
        path = SEARCH_SPACE_DIR / f"{text}.yaml"
        if not path.is_file():
            raise SearchSpaceError(
                f"no search space named {text!r}; available: {', '.join(available_search_spaces())}"
            )
    source = _display_path(path)
    try:
        raw_text = path.read_text()
    except OSError as err:
        raise SearchSpaceError(f"{source}: cannot read ({err.strerror})") from err
    from pipeline.search_space_file import parse_search_space

    return parse_search_space(raw_text, source)


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


def config_id(point: Mapping[str, Any]) -> str:
    """A readable, unique label of a grid point, e.g. 'tcwae_mws,beta=50,gamma=100,seed=0'."""
    parts = [str(point["method"])]
    parts += [
        f"{key}={format_number(value)}"
        for key, value in point.items()
        if key not in ("method", "seed")
    ]
    parts.append(f"seed={point['seed']}")
    return ",".join(parts)


def grid_sampler_space(points: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The search space for `optuna.samplers.GridSampler`: one categorical over the points."""
    ids = [config_id(point) for point in points]
    if len(set(ids)) != len(ids):
        raise SearchSpaceError("grid points are not unique; a value appears twice in a grid")
    return {GRID_PARAMETER: ids}


@dataclass(frozen=True)
class GridDefineByRun:
    """Define-by-run space for grid mode: picks `config_id` (GridSampler decides which) and
    returns the point's method, parameters and seed as the trial's config. A module-level class,
    not a closure, so that Tune can pickle the searcher for resuming."""

    points: tuple[Mapping[str, Any], ...]

    def __call__(self, trial: Any) -> dict[str, Any]:
        by_id = {config_id(point): point for point in self.points}
        chosen = trial.suggest_categorical(GRID_PARAMETER, list(by_id))
        return dict(by_id[chosen])


@dataclass(frozen=True)
class OptunaDefineByRun:
    """Define-by-run space for Optuna mode: a categorical `method`, then that method's parameters
    (named `<method>.<param>` so that each method's values form their own distribution for the
    sampler, log-uniform where the file says `log: true`), then a categorical `seed`. Returns the
    plain `method`, parameters and `seed` that `trial_train_config` reads."""

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


def trial_train_config(profile: Profile, params: Mapping[str, Any]) -> TrainConfig:
    """The TrainConfig of one trial: the profile's overrides, the method's cost and fixed values,
    the searched values and the seed. `params` is a grid point or a Tune trial config (which also
    carries the search's own keys, `config_id` or `<method>.<param>`, ignored here)."""
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
    values = method_values(profile.dataset, profile.train, spec)
    values.update({name: params[name] for name in spec.params})
    values["seed"] = params["seed"]
    try:
        return TrainConfig.from_dict(values, where=where)
    except ConfigError as err:
        raise SearchSpaceError(str(err)) from None


def method_values(dataset: str, train: Mapping[str, Any], spec: MethodSpace) -> dict[str, Any]:
    return {"dataset": dataset, **train, "method": spec.name, "cost": spec.cost, **spec.fixed}


def format_number(value: Any) -> str:
    return format(value, ".12g") if isinstance(value, float) else str(value)


def _display_path(path: Path) -> str:
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)

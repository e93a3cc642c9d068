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
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.rungs import RUNG_SCORES, SCHEDULERS, SELECTIONS, SchedulerSpec
from tcwae.config import CONFIG_KEYS, ConfigError, TrainConfig
from tcwae.data import DATASETS, SEQUENCE_DATASETS
from tcwae.methods import (
    METHODS,
    all_hyperparameters,
    hyperparameter_names,
    method_class,
    methods_for,
)
from tcwae.metrics import PROFILES, TIE_BREAKS
from tcwae.sequence_eval import SEQUENCE_SCORES

REPO_ROOT = Path(__file__).resolve().parent.parent
SEARCH_SPACE_DIR = REPO_ROOT / "search_spaces"

# Scores a trial reports that a file may rank on: an image model's reconstruction and
# tcwae.metrics keys, and a sequence model's reconstruction and judged scores (tcwae.sequence_eval).
IMAGE_SCORES = (
    "rec",
    "mig",
    "factor_vae",
    "sap",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness_test",
    "infom",
    "infoc",
    "infoe",
)
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
SCHEDULER_KEYS = ("type", "grace", "eta", "rank_by", "selection", "tie_break", "rung_profile")
DEFAULT_SCHEDULER = SchedulerSpec()
PROFILE_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")

_TRAIN_FIELDS = CONFIG_KEYS


class SearchSpaceError(ValueError):
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
    try:
        raw = yaml.load(raw_text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        raise SearchSpaceError(f"{source}: not valid YAML ({_one_line(err)})") from err
    return _SpaceParser(source).parse(raw)


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
        f"{key}={_format_number(value)}"
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
    values = _method_values(profile.dataset, profile.train, spec)
    values.update({name: params[name] for name in spec.params})
    values["seed"] = params["seed"]
    try:
        return TrainConfig.from_dict(values, where=where)
    except ConfigError as err:
        raise SearchSpaceError(str(err)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


class _SpaceParser:
    """Walks the raw YAML once, checking every key and value; errors name the key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> SearchSpaceError:
        return SearchSpaceError(
            f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}"
        )

    def mapping(
        self,
        value: Any,
        path: str,
        required: Sequence[str] = (),
        optional: Sequence[str] = (),
        closed: bool = True,
    ) -> dict[str, Any]:
        """Check a mapping; when `closed`, every key must be one of `required` or `optional`."""
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a mapping of key: value, got {_describe(value)}")
        allowed = (*required, *optional)
        for key in value:
            if not isinstance(key, str):
                raise self.fail(path, f"key {key!r} must be a string")
            if closed and key not in allowed:
                raise self.fail(
                    _join(path, key), f"unknown key; expected one of {', '.join(allowed)}"
                )
        for key in required:
            if key not in value:
                raise self.fail(_join(path, key), "missing")
        return value

    def number(self, value: Any, path: str) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.fail(path, f"must be a finite number, got {_describe(value)}")
        return float(value)

    def integer(self, value: Any, path: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(path, f"must be an integer >= {minimum}, got {_describe(value)}")
        return value

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, got {_describe(value)}")
        return value

    def config(self, values: dict[str, Any], path: str) -> None:
        """Let TrainConfig judge a merged set of values; its message follows the key path."""
        try:
            TrainConfig.from_dict(values, where=f"{self.source}: {path}")
        except ConfigError as err:
            raise SearchSpaceError(str(err)) from None

    def parse(self, raw: Any) -> SearchSpace:
        if raw is None:
            raise self.fail("", "the file is empty")
        top = self.mapping(
            raw,
            "",
            required=("dataset", "rank_by", "methods", "profiles"),
            optional=("description", "train"),
        )
        dataset = self.string(top["dataset"], "dataset")
        if dataset not in DATASETS:
            raise self.fail("dataset", f"{dataset!r} is not one of {', '.join(DATASETS)}")
        description = self.string(top.get("description", ""), "description")
        rank_by = self.parse_rank_by(top["rank_by"])
        train = self.parse_train(top.get("train", {}), "train")
        self.config({"dataset": dataset, **train}, "train")
        methods = self.parse_methods(top["methods"], dataset, train)
        profiles_raw = self.mapping(top["profiles"], "profiles", closed=False)
        if not profiles_raw:
            raise self.fail("profiles", "empty; give at least one profile (smoke, cpu, paper)")
        profiles = {
            name: self.parse_profile(name, value, dataset, rank_by, train, methods)
            for name, value in profiles_raw.items()
        }
        return SearchSpace(self.source, dataset, description, rank_by, train, methods, profiles)

    def parse_rank_by(self, raw: Any, path: str = "rank_by") -> tuple[tuple[str, str], ...]:
        scores = self.mapping(raw, path, optional=SCORES)
        if not scores:
            raise self.fail(path, "empty; name at least one score, e.g. rec: min")
        for score, mode in scores.items():
            if mode not in MODES:
                raise self.fail(_join(path, score), f"must be min or max, got {_describe(mode)}")
        return tuple(scores.items())

    def parse_train(self, raw: Any, path: str) -> dict[str, Any]:
        train = self.mapping(raw if raw is not None else {}, path, closed=False)
        for key in train:
            if key in SEARCH_SET_KEYS:
                raise self.fail(_join(path, key), f"set by {SEARCH_SET_KEYS[key]}, not here")
            if key in HYPERPARAMETERS:
                raise self.fail(
                    _join(path, key),
                    "a method hyper-parameter: set it in a method's fixed or params",
                )
            if key not in _TRAIN_FIELDS:
                raise self.fail(
                    _join(path, key),
                    f"unknown key; TrainConfig keys are {', '.join(sorted(_TRAIN_FIELDS))}",
                )
        return dict(train)

    def parse_methods(
        self, raw: Any, dataset: str, train: dict[str, Any]
    ) -> dict[str, MethodSpace]:
        entries = self.mapping(raw, "methods", closed=False)
        if not entries:
            raise self.fail("methods", f"empty; give at least one of {', '.join(METHODS)}")
        methods = {}
        allowed = methods_for(sequences=dataset in SEQUENCE_DATASETS)
        for name, value in entries.items():
            path = _join("methods", name)
            if name not in allowed:
                raise self.fail(path, f"unknown method; expected one of {', '.join(allowed)}")
            methods[name] = self.parse_method(name, value, path, dataset, train)
        return methods

    def parse_method(
        self, name: str, raw: Any, path: str, dataset: str, train: dict[str, Any]
    ) -> MethodSpace:
        entry = self.mapping(raw, path, required=("cost", "params"), optional=("fixed",))
        cost = self.string(entry["cost"], _join(path, "cost"))
        fixed_path = _join(path, "fixed")
        fixed = self.mapping(entry.get("fixed") or {}, fixed_path, closed=False)
        for key in fixed:
            if key in SEARCH_SET_KEYS:
                raise self.fail(_join(fixed_path, key), f"set by {SEARCH_SET_KEYS[key]}, not here")
            if key not in _TRAIN_FIELDS:
                raise self.fail(
                    _join(fixed_path, key),
                    f"unknown key; TrainConfig keys are {', '.join(sorted(_TRAIN_FIELDS))}",
                )
        params_path = _join(path, "params")
        params_raw = self.mapping(
            entry["params"] if entry["params"] is not None else {}, params_path, closed=False
        )
        params = {}
        for param_name, value in params_raw.items():
            param_path = _join(params_path, param_name)
            if param_name not in hyperparameter_names(name):
                raise self.fail(
                    param_path,
                    f"{name} cannot search {param_name!r}; it reads "
                    f"{', '.join(hyperparameter_names(name))}",
                )
            if param_name in fixed:
                raise self.fail(
                    param_path, f"both searched and fixed ({_join(fixed_path, param_name)})"
                )
            integer = any(
                p.integer and p.name == param_name for p in method_class(name).hyperparameters
            )
            params[param_name] = self.parse_param(param_name, value, param_path, integer)
        spec = MethodSpace(name, cost, dict(fixed), params)
        base = _method_values(dataset, train, spec)
        self.config(base, path)
        for param in params.values():
            param_path = _join(params_path, param.name)
            for index, value in enumerate(param.grid):
                self.config({**base, param.name: value}, f"{param_path}.grid[{index}]")
            for end in ("low", "high"):
                self.config({**base, param.name: getattr(param, end)}, f"{param_path}.range.{end}")
        return spec

    def parse_param(self, name: str, raw: Any, path: str, integer: bool) -> ParamSpace:
        entry = self.mapping(raw, path, required=("grid", "range"))
        range_path = _join(path, "range")
        bounds = self.mapping(
            entry["range"], range_path, required=("low", "high"), optional=("log",)
        )
        low = self.number(bounds["low"], _join(range_path, "low"))
        high = self.number(bounds["high"], _join(range_path, "high"))
        log = bounds.get("log", False)
        if not isinstance(log, bool):
            raise self.fail(
                _join(range_path, "log"), f"must be true or false, got {_describe(log)}"
            )
        if low > high:
            raise self.fail(range_path, f"low {_format_number(low)} > high {_format_number(high)}")
        if log and low <= 0:
            raise self.fail(range_path, f"log: true needs low > 0, got {_format_number(low)}")
        grid = self.grid(entry["grid"], _join(path, "grid"), low, high)
        return ParamSpace(name, grid, low, high, log, integer)

    def grid(self, raw: Any, path: str, low: float, high: float) -> tuple[float, ...]:
        if not isinstance(raw, list):
            raise self.fail(path, f"must be a list of numbers, got {_describe(raw)}")
        if not raw:
            raise self.fail(path, "empty; give at least one value")
        values = tuple(self.number(value, f"{path}[{i}]") for i, value in enumerate(raw))
        for index, value in enumerate(values):
            if not low <= value <= high:
                raise self.fail(
                    f"{path}[{index}]",
                    f"{_format_number(value)} is outside the range "
                    f"[{_format_number(low)}, {_format_number(high)}]",
                )
        if len(set(values)) != len(values):
            raise self.fail(path, "a value appears twice")
        return values

    def parse_profile(
        self,
        name: Any,
        raw: Any,
        dataset: str,
        rank_by: tuple[tuple[str, str], ...],
        train: dict[str, Any],
        methods: dict[str, MethodSpace],
    ) -> Profile:
        path = _join("profiles", str(name))
        if not isinstance(name, str) or not PROFILE_NAME.match(name):
            raise self.fail(path, "a profile name is lower-case letters, digits and _")
        entry = self.mapping(
            raw,
            path,
            required=("seeds", "num_samples", "resources"),
            optional=("budget", "train", "methods", "scheduler"),
        )
        budget = self.string(entry.get("budget", ""), _join(path, "budget"))
        profile_train = self.parse_train(entry.get("train", {}), _join(path, "train"))
        merged = {**train, **profile_train}
        self.config({"dataset": dataset, **merged}, _join(path, "train"))
        seeds = self.seeds(entry["seeds"], _join(path, "seeds"))
        num_samples = self.integer(entry["num_samples"], _join(path, "num_samples"), 1)
        resources = self.resources(entry["resources"], _join(path, "resources"))
        selected = self.profile_methods(entry.get("methods"), _join(path, "methods"), methods)
        for spec in selected.values():
            self.config(_method_values(dataset, merged, spec), _join(path, f"methods.{spec.name}"))
        scheduler = None
        if "scheduler" in entry:
            effective = TrainConfig.from_dict({"dataset": dataset, **merged})
            scheduler = self.scheduler(
                entry["scheduler"], _join(path, "scheduler"), rank_by, effective
            )
        return Profile(
            self.source,
            name,
            dataset,
            rank_by,
            merged,
            selected,
            seeds,
            num_samples,
            resources,
            budget,
            scheduler,
        )

    def scheduler(
        self,
        raw: Any,
        path: str,
        rank_by: tuple[tuple[str, str], ...],
        config: TrainConfig,
    ) -> SchedulerSpec:
        """A profile's `scheduler:` block: `type: fifo` alone, or `type: mo-asha` with `grace`
        (the first rung, in steps: a multiple of the profile's report_every below its steps) and
        optionally `eta`, `rank_by` (the rung scores; default the file's), `selection`,
        `tie_break` (pareto only) and `rung_profile` (metric sizes of the rung scores)."""
        entry = self.mapping(raw, path, required=("type",), optional=SCHEDULER_KEYS[1:])
        kind = entry["type"]
        if kind not in SCHEDULERS:
            raise self.fail(
                _join(path, "type"),
                f"must be one of {', '.join(SCHEDULERS)}, got {_describe(kind)}",
            )
        if kind == "fifo":
            extra = [key for key in entry if key != "type"]
            if extra:
                raise self.fail(_join(path, extra[0]), "only for type mo-asha; fifo has no rungs")
            return SchedulerSpec("fifo")
        if config.dataset in SEQUENCE_DATASETS:
            raise self.fail(
                _join(path, "type"),
                "mo-asha on a sequence data set is not done (its rung scores would need the "
                "judge of tcwae.sequence_eval); use type: fifo",
            )
        if "grace" not in entry:
            raise self.fail(_join(path, "grace"), "missing (the first rung, in training steps)")
        grace = self.integer(entry["grace"], _join(path, "grace"), 1)
        if grace % config.report_every:
            raise self.fail(
                _join(path, "grace"),
                f"{grace} is not a multiple of report_every ({config.report_every}): rung scores "
                "are computed at report steps",
            )
        if grace >= config.steps:
            raise self.fail(
                _join(path, "grace"),
                f"{grace} leaves no rung below the profile's {config.steps} steps",
            )
        eta = self.integer(entry.get("eta", DEFAULT_SCHEDULER.eta), _join(path, "eta"), 2)
        scores = self.scheduler_rank_by(entry.get("rank_by"), _join(path, "rank_by"), rank_by)
        selection = entry.get("selection", DEFAULT_SCHEDULER.selection)
        if selection not in SELECTIONS:
            raise self.fail(
                _join(path, "selection"),
                f"must be one of {', '.join(SELECTIONS)}, got {_describe(selection)}",
            )
        tie_break = entry.get("tie_break", DEFAULT_SCHEDULER.tie_break)
        if tie_break not in TIE_BREAKS:
            raise self.fail(
                _join(path, "tie_break"),
                f"must be one of {', '.join(TIE_BREAKS)}, got {_describe(tie_break)}",
            )
        if "tie_break" in entry and selection != "pareto":
            raise self.fail(_join(path, "tie_break"), "only for selection: pareto")
        profile = entry.get("rung_profile", "rung")
        if profile not in PROFILES:
            raise self.fail(
                _join(path, "rung_profile"),
                f"must be one of {', '.join(PROFILES)}, got {_describe(profile)}",
            )
        return SchedulerSpec("mo-asha", grace, eta, scores, selection, tie_break, profile)

    def scheduler_rank_by(
        self, raw: Any, path: str, default: tuple[tuple[str, str], ...]
    ) -> tuple[tuple[str, str], ...]:
        """The rung scores: the block's own `rank_by`, else the file's; either way only scores
        that a rung evaluation computes."""
        scores = default if raw is None else self.parse_rank_by(raw, path)
        slow = [score for score, _ in scores if score not in RUNG_SCORES]
        if not slow:
            return scores
        rung_scores = ", ".join(RUNG_SCORES)
        if raw is None:
            raise self.fail(
                path.rpartition(".")[0],
                f"the file's rank_by has {slow[0]!r}, which rungs do not score ({rung_scores}); "
                "give the scheduler block its own rank_by",
            )
        raise self.fail(_join(path, slow[0]), f"not scored at rungs; rung scores are {rung_scores}")

    def seeds(self, raw: Any, path: str) -> tuple[int, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.fail(path, f"must be a non-empty list of integers, got {_describe(raw)}")
        seeds = tuple(self.integer(value, f"{path}[{i}]", 0) for i, value in enumerate(raw))
        if len(set(seeds)) != len(seeds):
            raise self.fail(path, "a seed appears twice")
        return seeds

    def resources(self, raw: Any, path: str) -> Resources:
        entry = self.mapping(raw, path, required=RESOURCE_KEYS)
        workers = self.integer(entry["workers"], _join(path, "workers"), 1)
        cpus = self.number(entry["cpus_per_worker"], _join(path, "cpus_per_worker"))
        gpus = self.number(entry["gpus_per_worker"], _join(path, "gpus_per_worker"))
        if cpus <= 0:
            raise self.fail(
                _join(path, "cpus_per_worker"), f"must be > 0, got {_format_number(cpus)}"
            )
        if gpus < 0:
            raise self.fail(
                _join(path, "gpus_per_worker"), f"must be >= 0, got {_format_number(gpus)}"
            )
        return Resources(workers, cpus, gpus)

    def profile_methods(
        self, raw: Any, path: str, methods: dict[str, MethodSpace]
    ) -> dict[str, MethodSpace]:
        """The profile's methods: all of the file's, or those listed, each listed parameter's grid
        replaced by the profile's values (which must lie in the file's range)."""
        if raw is None:
            return dict(methods)
        entries = self.mapping(raw, path, closed=False)
        if not entries:
            raise self.fail(path, "empty; leave it out to keep every method")
        selected = {}
        for name, value in entries.items():
            method_path = _join(path, name)
            if name not in methods:
                raise self.fail(
                    method_path, f"not a method of this file; it has {', '.join(methods)}"
                )
            spec = methods[name]
            grids = self.mapping(value if value is not None else {}, method_path, closed=False)
            for param_name in grids:
                if param_name not in spec.params:
                    raise self.fail(
                        _join(method_path, param_name),
                        f"not a searched parameter of {name}; it searches "
                        f"{', '.join(spec.params) or 'nothing'}",
                    )
            params = dict(spec.params)
            for param_name, grid_raw in grids.items():
                param = spec.params[param_name]
                grid = self.grid(grid_raw, _join(method_path, param_name), param.low, param.high)
                params[param_name] = dataclasses.replace(param, grid=grid)
            selected[name] = MethodSpace(name, spec.cost, spec.fixed, params)
        return selected


def _method_values(dataset: str, train: Mapping[str, Any], spec: MethodSpace) -> dict[str, Any]:
    return {"dataset": dataset, **train, "method": spec.name, "cost": spec.cost, **spec.fixed}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _format_number(value: Any) -> str:
    return format(value, ".12g") if isinstance(value, float) else str(value)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def _display_path(path: Path) -> str:
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)

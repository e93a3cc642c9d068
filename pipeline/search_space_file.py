"""Reading a search-space file: YAML (a key given twice is an error) walked once, every key and
value checked, every mistake one `SearchSpaceError` line naming the file and the key path."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import yaml

from pipeline.rungs import RUNG_SCORES, SCHEDULERS, SELECTIONS, SchedulerSpec
from pipeline.search_space import (
    DEFAULT_SCHEDULER,
    HYPERPARAMETERS,
    MODES,
    PROFILE_NAME,
    RESOURCE_KEYS,
    SCHEDULER_KEYS,
    SCORES,
    SEARCH_SET_KEYS,
    TRAIN_FIELDS,
    MethodSpace,
    ParamSpace,
    Profile,
    Resources,
    SearchSpace,
    SearchSpaceError,
    format_number,
    method_values,
)
from tcwae.config import ConfigError, TrainConfig
from tcwae.data import DATASETS, SEQUENCE_DATASETS
from tcwae.methods import METHODS, hyperparameter_names, method_class, methods_for
from tcwae.metrics import PROFILES, TIE_BREAKS
from tcwae.values import is_finite_number


def parse_search_space(text: str, source: str) -> SearchSpace:
    """Parse and validate the text of a search-space file; `source` names it in messages."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        raise SearchSpaceError(f"{source}: not valid YAML ({_one_line(err)})") from err
    return _SpaceParser(source).parse(raw)


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
        if not is_finite_number(value):
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
            if key not in TRAIN_FIELDS:
                raise self.fail(
                    _join(path, key),
                    f"unknown key; TrainConfig keys are {', '.join(sorted(TRAIN_FIELDS))}",
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
            if key not in TRAIN_FIELDS:
                raise self.fail(
                    _join(fixed_path, key),
                    f"unknown key; TrainConfig keys are {', '.join(sorted(TRAIN_FIELDS))}",
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
        base = method_values(dataset, train, spec)
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
            raise self.fail(range_path, f"low {format_number(low)} > high {format_number(high)}")
        if log and low <= 0:
            raise self.fail(range_path, f"log: true needs low > 0, got {format_number(low)}")
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
                    f"{format_number(value)} is outside the range "
                    f"[{format_number(low)}, {format_number(high)}]",
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
            self.config(method_values(dataset, merged, spec), _join(path, f"methods.{spec.name}"))
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
        `tie_break` (pareto only), `rung_profile` (metric sizes of the rung scores) and
        `synchronous` (rungs wait for every trial; grace a multiple of checkpoint_every)."""
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
        selection = self.choice(entry, "selection", DEFAULT_SCHEDULER.selection, SELECTIONS, path)
        tie_break = self.choice(entry, "tie_break", DEFAULT_SCHEDULER.tie_break, TIE_BREAKS, path)
        if "tie_break" in entry and selection != "pareto":
            raise self.fail(_join(path, "tie_break"), "only for selection: pareto")
        profile = self.choice(entry, "rung_profile", "rung", tuple(PROFILES), path)
        synchronous = entry.get("synchronous", False)
        if not isinstance(synchronous, bool):
            raise self.fail(
                _join(path, "synchronous"), f"must be true or false, got {_describe(synchronous)}"
            )
        if synchronous and grace % config.checkpoint_every:
            raise self.fail(
                _join(path, "grace"),
                f"{grace} is not a multiple of checkpoint_every ({config.checkpoint_every}): a "
                "synchronous rung pauses its trials, which resume from a checkpoint at the rung",
            )
        return SchedulerSpec(
            "mo-asha", grace, eta, scores, selection, tie_break, profile, synchronous
        )

    def choice(
        self, entry: dict[str, Any], key: str, default: str, allowed: Sequence[str], path: str
    ) -> str:
        value = entry.get(key, default)
        if value not in allowed:
            raise self.fail(
                _join(path, key), f"must be one of {', '.join(allowed)}, got {_describe(value)}"
            )
        return value

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
                _join(path, "cpus_per_worker"), f"must be > 0, got {format_number(cpus)}"
            )
        if gpus < 0:
            raise self.fail(
                _join(path, "gpus_per_worker"), f"must be >= 0, got {format_number(gpus)}"
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


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


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

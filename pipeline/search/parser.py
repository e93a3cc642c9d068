"""Validating a search-space file's YAML in one walk: every mistake is one `SearchSpaceError` line
naming the file and the key path. Values go through TrainConfig's own converter, and each profile's
trial configs are built and validated here, once (`Profile.planned`)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from pipeline.run_spec import Resources
from pipeline.search.successive_halving import RUNG_SCORES, SCHEDULERS, SELECTIONS, SchedulerSpec
from pipeline.search.types import (
    SCORES,
    MethodSpace,
    ParamSpace,
    Profile,
    SearchSpace,
    SearchSpaceError,
    format_number,
    validated_config,
)
from tcwae.config import CONFIG_KEYS, ConfigError, TrainConfig, coerce_value
from tcwae.data import DATASETS, SEQUENCE_DATASETS
from tcwae.methods import METHODS, all_hyperparameters, method_card, methods_for
from tcwae.metrics import PROFILES, TIE_BREAKS

RANK_MODES = ("min", "max")  # how `rank_by` orders a score
# TrainConfig keys that the search itself sets, and the key of the file that sets each.
SEARCH_SET_KEYS = {
    "dataset": "the top-level `dataset`",
    "method": "the `methods` entries",
    "seed": "the profile's `seeds`",
    "cost": "each method's `cost`",
}
HYPERPARAMETERS = tuple(all_hyperparameters())  # a method searches only those it reads
RESOURCE_KEYS = ("workers", "cpus_per_worker", "gpus_per_worker")
SCHEDULER_KEYS = tuple(item.name for item in dataclasses.fields(SchedulerSpec))[1:]
DEFAULT_SCHEDULER = SchedulerSpec()
PROFILE_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
KINDS = {
    "int": "an integer",
    "float": "a finite number",
    "bool": "true or false",
    "str": "a string",
}


class SpaceParser:
    """Walks a file's raw YAML once; `source` names the file in messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> SearchSpaceError:
        return SearchSpaceError(": ".join(part for part in (self.source, path, message) if part))

    def require(self, ok: Any, path: str, message: str) -> None:
        if not ok:
            raise self.fail(path, message)

    def mapping(
        self, value: Any, path: str, required: Sequence[str] = (), optional: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Check a mapping; with `required` or `optional` keys given, only those are allowed."""
        got = _describe(value)
        self.require(isinstance(value, dict), path, f"must be a mapping of key: value, got {got}")
        allowed = (*required, *optional)
        for key in value:
            self.require(isinstance(key, str), path, f"key {key!r} must be a string")
            if allowed and key not in allowed:
                raise self.fail(
                    _join(path, key), f"unknown key; expected one of {', '.join(allowed)}"
                )
        for key in required:
            self.require(key in value, _join(path, key), "missing")
        return value

    def value(self, raw: Any, path: str, kind: str, minimum: int | None = None) -> Any:
        """`raw` as TrainConfig converts a `kind` (of KINDS), at least `minimum` when given."""
        try:
            value = coerce_value(path, kind, raw, self.source)
        except ConfigError:
            value = None
        if value is None or (minimum is not None and value < minimum):
            bound = "" if minimum is None else f" >= {minimum}"
            raise self.fail(path, f"must be {KINDS[kind]}{bound}, got {_describe(raw)}")
        return value

    def field(
        self, entry: dict, path: str, key: str, kind: str, minimum: int | None = None, default=None
    ) -> Any:
        """`entry[key]` (or `default`) as `value` converts it."""
        return self.value(entry.get(key, default), _join(path, key), kind, minimum)

    def choice(
        self, entry: dict, path: str, key: str, allowed: Sequence[str], default: Any = None
    ) -> str:
        raw = entry.get(key, default)
        message = f"must be one of {', '.join(allowed)}, got {_describe(raw)}"
        self.require(raw in allowed, _join(path, key), message)
        return raw

    def config(self, values: dict[str, Any], path: str) -> TrainConfig:
        """Let TrainConfig judge a merged set of values; its message follows the key path."""
        return validated_config(values, f"{self.source}: {path}")

    def parse(self, raw: Any) -> SearchSpace:
        self.require(raw is not None, "", "the file is empty")
        required = ("dataset", "rank_by", "methods", "profiles")
        top = self.mapping(raw, "", required, ("description", "train"))
        self.dataset = dataset = self.field(top, "", "dataset", "str")
        known = ", ".join(DATASETS)
        self.require(dataset in DATASETS, "dataset", f"{dataset!r} is not one of {known}")
        description = self.field(top, "", "description", "str", default="")
        self.ranking = self.rank_by(top["rank_by"], "rank_by")
        self.file_train = self.train(top.get("train", {}), "train")
        self.config({"dataset": dataset, **self.file_train}, "train")
        self.file_methods = methods = self.methods(top["methods"])
        entries = self.mapping(top["profiles"], "profiles")
        self.require(entries, "profiles", "empty; give at least one profile (smoke, cpu, paper)")
        profiles = {name: self.profile(name, value) for name, value in entries.items()}
        train = self.file_train
        return SearchSpace(
            self.source, dataset, description, self.ranking, train, methods, profiles
        )

    def rank_by(self, raw: Any, path: str) -> tuple[tuple[str, str], ...]:
        scores = self.mapping(raw, path, optional=SCORES)
        self.require(scores, path, "empty; name at least one score, e.g. rec: min")
        for score, mode in scores.items():
            got = _describe(mode)
            self.require(mode in RANK_MODES, _join(path, score), f"must be min or max, got {got}")
        return tuple(scores.items())

    def train(self, raw: Any, path: str, hyperparameters: bool = False) -> dict[str, Any]:
        """TrainConfig overrides: a `train` block, or with `hyperparameters` a method's `fixed`;
        never a key the search itself sets."""
        train = self.mapping({} if raw is None else raw, path)
        for key in train:
            at = _join(path, key)
            if key in SEARCH_SET_KEYS:
                raise self.fail(at, f"set by {SEARCH_SET_KEYS[key]}, not here")
            message = "a method hyper-parameter: set it in a method's fixed or params"
            self.require(hyperparameters or key not in HYPERPARAMETERS, at, message)
            keys = ", ".join(sorted(CONFIG_KEYS))
            self.require(key in CONFIG_KEYS, at, f"unknown key; TrainConfig keys are {keys}")
        return dict(train)

    def methods(self, raw: Any) -> dict[str, MethodSpace]:
        entries = self.mapping(raw, "methods")
        self.require(entries, "methods", f"empty; give at least one of {', '.join(METHODS)}")
        allowed = methods_for(sequences=self.dataset in SEQUENCE_DATASETS)
        methods = {}
        for name, value in entries.items():
            path = _join("methods", name)
            expected = ", ".join(allowed)
            self.require(name in allowed, path, f"unknown method; expected one of {expected}")
            methods[name] = self.method(name, value, path)
        return methods

    def method(self, name: str, raw: Any, path: str) -> MethodSpace:
        """One method's entry; its config, each grid value and each range end are validated."""
        entry = self.mapping(raw, path, ("cost", "params"), ("fixed",))
        cost = self.field(entry, path, "cost", "str")
        fixed_path, params_path = _join(path, "fixed"), _join(path, "params")
        fixed = self.train(entry.get("fixed") or {}, fixed_path, hyperparameters=True)
        params_raw = self.mapping({} if entry["params"] is None else entry["params"], params_path)
        integer = {param.name: param.integer for param in method_card(name).hyperparameters}
        params = {}
        for param_name, value in params_raw.items():
            at = _join(params_path, param_name)
            if param_name not in integer:
                raise self.fail(
                    at, f"{name} cannot search {param_name!r}; it reads {', '.join(integer)}"
                )
            if param_name in fixed:
                raise self.fail(at, f"both searched and fixed ({_join(fixed_path, param_name)})")
            params[param_name] = self.param(param_name, value, at, integer[param_name])
        spec = MethodSpace(name, cost, fixed, params)
        base = spec.values(self.dataset, self.file_train)
        self.config(base, path)
        for param in params.values():
            at = _join(params_path, param.name)
            for index, value in enumerate(param.grid):
                self.config({**base, param.name: value}, f"{at}.grid[{index}]")
            for end in ("low", "high"):
                self.config({**base, param.name: getattr(param, end)}, f"{at}.range.{end}")
        return spec

    def param(self, name: str, raw: Any, path: str, integer: bool) -> ParamSpace:
        entry = self.mapping(raw, path, ("grid", "range"))
        at = _join(path, "range")
        bounds = self.mapping(entry["range"], at, ("low", "high"), ("log",))
        low, high = (self.field(bounds, at, end, "float") for end in ("low", "high"))
        log = self.field(bounds, at, "log", "bool", default=False)
        low_text, high_text = format_number(low), format_number(high)
        self.require(low <= high, at, f"low {low_text} > high {high_text}")
        self.require(not log or low > 0, at, f"log: true needs low > 0, got {low_text}")
        grid = self.grid(entry["grid"], _join(path, "grid"), low, high)
        return ParamSpace(name, grid, low, high, log, integer)

    def grid(self, raw: Any, path: str, low: float, high: float) -> tuple[float, ...]:
        got = _describe(raw)
        self.require(isinstance(raw, list), path, f"must be a list of numbers, got {got}")
        self.require(raw, path, "empty; give at least one value")
        values = tuple(self.value(value, f"{path}[{i}]", "float") for i, value in enumerate(raw))
        bounds = f"[{format_number(low)}, {format_number(high)}]"
        for index, value in enumerate(values):
            message = f"{format_number(value)} is outside the range {bounds}"
            self.require(low <= value <= high, f"{path}[{index}]", message)
        self.require(len(set(values)) == len(values), path, "a value appears twice")
        return values

    def profile(self, name: str, raw: Any) -> Profile:
        """One profile, its trials' configs planned (built and validated once)."""
        path = _join("profiles", name)
        self.require(
            PROFILE_NAME.match(name), path, "a profile name is lower-case letters, digits and _"
        )
        required = ("seeds", "num_samples", "resources")
        entry = self.mapping(raw, path, required, ("budget", "train", "methods", "scheduler"))
        budget = self.field(entry, path, "budget", "str", default="")
        at = _join(path, "train")
        train = {**self.file_train, **self.train(entry.get("train", {}), at)}
        effective = self.config({"dataset": self.dataset, **train}, at)
        seeds = self.seeds(entry["seeds"], _join(path, "seeds"))
        samples = self.field(entry, path, "num_samples", "int", 1)
        resources = self.resources(entry["resources"], _join(path, "resources"))
        methods = self.profile_methods(entry.get("methods"), _join(path, "methods"))
        profile = Profile(
            self.source,
            name,
            self.dataset,
            self.ranking,
            train,
            methods,
            seeds,
            samples,
            resources,
            budget,
        ).planned()
        if "scheduler" not in entry:
            return profile
        scheduler = self.scheduler(entry["scheduler"], _join(path, "scheduler"), effective)
        return dataclasses.replace(profile, scheduler=scheduler)

    def scheduler(self, raw: Any, path: str, config: TrainConfig) -> SchedulerSpec:
        """A profile's `scheduler:` block: `type: fifo` alone, or `type: mo-asha` with `grace`
        (the first rung, in steps, a multiple of report_every below the profile's steps) and
        optionally SchedulerSpec's other fields."""
        entry = self.mapping(raw, path, ("type",), SCHEDULER_KEYS)
        if self.choice(entry, path, "type", SCHEDULERS) == "fifo":
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
        at = _join(path, "grace")
        self.require("grace" in entry, at, "missing (the first rung, in training steps)")
        grace = self.field(entry, path, "grace", "int", 1)
        report, steps = config.report_every, config.steps
        self.require(
            grace % report == 0,
            at,
            f"{grace} is not a multiple of report_every ({report}): rung scores are computed at "
            "report steps",
        )
        self.require(grace < steps, at, f"{grace} leaves no rung below the profile's {steps} steps")
        eta = self.field(entry, path, "eta", "int", 2, DEFAULT_SCHEDULER.eta)
        scores = self.rung_rank_by(entry.get("rank_by"), _join(path, "rank_by"))
        selection = self.choice(entry, path, "selection", SELECTIONS, DEFAULT_SCHEDULER.selection)
        tie_break = self.choice(entry, path, "tie_break", TIE_BREAKS, DEFAULT_SCHEDULER.tie_break)
        # A block's rungs default to the rung metric sizes.
        profile = self.choice(entry, path, "rung_profile", tuple(PROFILES), "rung")
        if "tie_break" in entry and selection != "pareto":
            raise self.fail(_join(path, "tie_break"), "only for selection: pareto")
        synchronous = self.field(entry, path, "synchronous", "bool", default=False)
        checkpoint = config.checkpoint_every
        self.require(
            not synchronous or grace % checkpoint == 0,
            at,
            f"{grace} is not a multiple of checkpoint_every ({checkpoint}): a synchronous rung "
            "pauses its trials, which resume from a checkpoint at the rung",
        )
        return SchedulerSpec(
            "mo-asha", grace, eta, scores, selection, tie_break, profile, synchronous
        )

    def rung_rank_by(self, raw: Any, path: str) -> tuple[tuple[str, str], ...]:
        """The rung scores (the block's `rank_by`, else the file's): only those rungs compute."""
        scores = self.ranking if raw is None else self.rank_by(raw, path)
        slow = [score for score, _ in scores if score not in RUNG_SCORES]
        if not slow:
            return scores
        fast = ", ".join(RUNG_SCORES)
        if raw is None:
            raise self.fail(
                path.rpartition(".")[0],
                f"the file's rank_by has {slow[0]!r}, which rungs do not score ({fast}); "
                "give the scheduler block its own rank_by",
            )
        raise self.fail(_join(path, slow[0]), f"not scored at rungs; rung scores are {fast}")

    def seeds(self, raw: Any, path: str) -> tuple[int, ...]:
        got = _describe(raw)
        ok = isinstance(raw, list) and raw
        self.require(ok, path, f"must be a non-empty list of integers, got {got}")
        seeds = tuple(self.value(value, f"{path}[{i}]", "int", 0) for i, value in enumerate(raw))
        self.require(len(set(seeds)) == len(seeds), path, "a seed appears twice")
        return seeds

    def resources(self, raw: Any, path: str) -> Resources:
        entry = self.mapping(raw, path, RESOURCE_KEYS)
        workers = self.field(entry, path, "workers", "int", 1)
        cpus, gpus = (self.field(entry, path, key, "float") for key in RESOURCE_KEYS[1:])
        at = _join(path, "cpus_per_worker")
        self.require(cpus > 0, at, f"must be > 0, got {format_number(cpus)}")
        at = _join(path, "gpus_per_worker")
        self.require(gpus >= 0, at, f"must be >= 0, got {format_number(gpus)}")
        return Resources(workers, cpus, gpus)

    def profile_methods(self, raw: Any, path: str) -> dict[str, MethodSpace]:
        """The file's methods, or those listed, each listed grid replaced (within the range)."""
        methods = self.file_methods
        if raw is None:
            return dict(methods)
        entries = self.mapping(raw, path)
        self.require(entries, path, "empty; leave it out to keep every method")
        selected = {}
        for name, value in entries.items():
            at = _join(path, name)
            self.require(
                name in methods, at, f"not a method of this file; it has {', '.join(methods)}"
            )
            spec = methods[name]
            grids = self.mapping({} if value is None else value, at)
            searched = ", ".join(spec.params) or "nothing"
            for param_name in grids:
                message = f"not a searched parameter of {name}; it searches {searched}"
                self.require(param_name in spec.params, _join(at, param_name), message)
            params = dict(spec.params)
            for param_name, grid_raw in grids.items():
                param = spec.params[param_name]
                grid = self.grid(grid_raw, _join(at, param_name), param.low, param.high)
                params[param_name] = dataclasses.replace(param, grid=grid)
            selected[name] = dataclasses.replace(spec, params=params)
        return selected


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    """A value as a message names it: nothing, a mapping, a list or its repr."""
    return _KIND_NAMES[type(value)] if type(value) in _KIND_NAMES else repr(value)


_KIND_NAMES = {type(None): "nothing", dict: "a mapping", list: "a list"}

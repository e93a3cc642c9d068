"""The training configuration: one flat, typed record validated once, up front.

Defaults are the paper's (seed 001, Appendix B.1 and Table 4), except the optimizer: Adam's
settings come from a preset (`tcwae.optim`: the authors' code by default, or the paper's printed
values) that explicit keys such as `lr` override. YAML files and CLI flags are turned
into a plain dict and passed to `TrainConfig.from_dict`, which rejects unknown keys, wrong types and
out-of-range values with one `ConfigError` line that names the key and the fix.

A method's hyper-parameters are the fields of its settings class (`tcwae.methods.settings`): in
the flat dict they are plain keys (`beta: 4`), in the config they sit typed in `settings`, over
the method's defaults (resolved by `tcwae.methods.method_defaults`); a hyper-parameter the method
does not read is refused. `CONFIG_KEYS` is the flat vocabulary (the fields and every declared
hyper-parameter) that `to_dict` writes. `coerce_value` is the one converter of text and YAML
values to typed ones, shared with the search-space parser.

Building a config imports no torch: the method registry and the data-set catalog it reads are
plain Python.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from tcwae.data.catalog import FACTOR_NAMES
from tcwae.data.catalog import SOURCES as DATA_SOURCES
from tcwae.errors import UserError
from tcwae.eval_profiles import PROFILES
from tcwae.methods.registry import (
    METHODS,
    REGISTRY,
    all_hyperparameters,
    method_defaults,
    method_settings,
)
from tcwae.methods.settings import MethodSettings
from tcwae.optim import OPTIMIZER_PRESETS, PRESETS, AdamSettings

COSTS = ("xent", "l1", "l2sq")
ESTIMATORS = ("mws", "mss")
MWS_SCOPES = ("global", "local")
EVAL_PROFILES = tuple(PROFILES)
PRECISIONS = ("auto", "float32", "bf16")
INITS = ("torch", "authors")
VARIANCES = ("exp", "softplus")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")

_CHOICES = {
    "method": METHODS,
    "cost": COSTS,
    "estimator": ESTIMATORS,
    "mws_scope": MWS_SCOPES,
    "eval_profile": EVAL_PROFILES,
    "data_source": DATA_SOURCES,
    "optimizer": OPTIMIZER_PRESETS,
    "precision": PRECISIONS,
    "init": INITS,
    "variance": VARIANCES,
    "compile_mode": COMPILE_MODES,
}
# Adam keys that override the optimizer preset when set (None = the preset's value).
ADAM_KEYS = ("lr", "adam_beta1", "adam_beta2", "adam_eps")
DISC_ADAM_KEYS = ("disc_lr", "disc_beta1", "disc_beta2", "disc_eps")
# Upper bounds of the integer keys: beyond them a run is a typo, not an experiment (the paper
# trains 300,000 steps; a 10^7-step run is a month on a GPU). Seeds are numpy's (32 bits).
MAX_STEPS = 10_000_000
MAX_DZ = 1024
MAX_SEED = 2**32 - 1
_INTEGER_RANGES = {
    "dz": (1, MAX_DZ),
    "steps": (1, MAX_STEPS),
    "report_every": (1, MAX_STEPS),
    "checkpoint_every": (1, MAX_STEPS),
    "mig_every": (0, MAX_STEPS),
    "seed": (0, MAX_SEED),
}


class ConfigError(UserError, ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines one training run (and nothing about where it runs)."""

    dataset: str = "dsprites"
    data_source: str = "auto"
    method: str = "tcwae_mws"
    # The method's typed settings; a mapping of some of them (or None) is completed with the
    # method's defaults when the config is made.
    settings: MethodSettings | Mapping[str, float] | None = field(default=None, hash=False)
    cost: str = "xent"
    estimator: str = "mws"
    mws_scope: str = "global"
    dz: int | None = None  # None: the method's default for the data set (MethodCard.default_dz)
    steps: int = 300_000
    batch_size: int = 256
    seed: int = 0
    optimizer: str = "authors"
    lr: float | None = None
    adam_beta1: float | None = None
    adam_beta2: float | None = None
    adam_eps: float | None = None
    disc_lr: float | None = None
    disc_beta1: float | None = None
    disc_beta2: float | None = None
    disc_eps: float | None = None
    init: str = "torch"
    variance: str = "exp"
    report_every: int = 100
    checkpoint_every: int = 1000
    eval_profile: str = "quick"
    mig_every: int = 0
    precision: str = "auto"
    # None: the method's default (MethodCard.channels_last: NHWC for the image networks,
    # 1.1-2x faster on CPU in BENCHMARKS.md; sequence models do not take it)
    channels_last: bool | None = None
    compile: bool = False
    compile_mode: str = "default"  # reduce-overhead = CUDA graphs on a GPU

    def __post_init__(self) -> None:
        """Take what the method decides (`tcwae.methods.method_defaults`), so that every config
        holds complete typed settings, `dz` and `channels_last`; an unknown method, or a
        hyper-parameter the method does not read, is left for `validate` to name with its source."""
        if self.method not in REGISTRY:
            return
        factors = len(FACTOR_NAMES.get(self.dataset, ()))
        for name, value in method_defaults(
            self.method, factors, self.dz, self.channels_last
        ).items():
            object.__setattr__(self, name, value)
        with contextlib.suppress(ValueError):
            object.__setattr__(self, "settings", method_settings(self.method, self.settings or {}))

    @property
    def hyperparameters(self) -> dict[str, float]:
        """The method's hyper-parameters, name -> value in declaration order (as logged)."""
        if isinstance(self.settings, MethodSettings):
            return self.settings.as_dict()
        return dict(self.settings or {})

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> TrainConfig:
        """Build and validate a config from flat keys (`CONFIG_KEYS`); `where` names the source
        (a file) in error messages."""
        unknown = sorted(set(values) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r}; valid keys are "
                f"{', '.join(sorted(CONFIG_KEYS))}"
            )
        coerced = {
            name: coerce_value(name, CONFIG_KEYS[name], v, where) for name, v in values.items()
        }
        given = {name: coerced.pop(name) for name in values if name in _HYPERPARAMETERS}
        config = cls(**coerced, settings=given)
        config.validate(where)
        return config

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
        """Read a YAML mapping of config keys, apply `overrides` (e.g. CLI flags), validate."""
        values = load_yaml_mapping(path)
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.from_dict(values, where=str(path))

    def validate(self, where: str = "config") -> None:
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ConfigError(
                    f"{where}: {name}={getattr(self, name)!r} is not one of {', '.join(choices)}"
                )
        self._validate_hyperparameters(where)
        problem = REGISTRY[self.method].config_problem(self)
        if problem is not None:
            raise ConfigError(f"{where}: {problem}")
        for name in ("lr", "adam_eps", "disc_lr", "disc_eps"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"{where}: {name} must be > 0, got {getattr(self, name)}")
        for name in ("adam_beta1", "adam_beta2", "disc_beta1", "disc_beta2"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1:
                raise ConfigError(f"{where}: {name} must be in [0, 1), got {value}")
        for name, (low, high) in _INTEGER_RANGES.items():
            value = getattr(self, name)
            if value < low:
                raise ConfigError(f"{where}: {name} must be >= {low}, got {value}")
            if value > high:
                raise ConfigError(f"{where}: {name} must be <= {high:,}, got {value:,}")
        if self.batch_size < 2:
            raise ConfigError(
                f"{where}: batch_size must be >= 2 (the estimators compare codes within a batch), "
                f"got {self.batch_size}"
            )

    def _validate_hyperparameters(self, where: str) -> None:
        try:
            settings = method_settings(self.method, self.settings or {})
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
        values = settings.as_dict()
        for parameter in settings.declarations():
            name, value = parameter.name, values[parameter.name]
            if parameter.integer and not float(value).is_integer():
                raise ConfigError(f"{where}: {name} must be an integer, got {value!r}")
            if value < parameter.minimum:
                raise ConfigError(f"{where}: {name} must be >= {parameter.minimum:g}, got {value}")

    def adam(self) -> tuple[AdamSettings, AdamSettings]:
        """(model, discriminator) Adam settings: the `optimizer` preset for the method's family,
        then explicit keys."""
        family = REGISTRY[self.method].optimizer_family
        model, disc = PRESETS[self.optimizer](family, self.dataset)
        return _override(model, self, ADAM_KEYS), _override(disc, self, DISC_ADAM_KEYS)

    def replace(self, **changes: Any) -> TrainConfig:
        config = dataclasses.replace(self, **changes)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        """Flat keys (`CONFIG_KEYS`): the method's hyper-parameters follow `method`."""
        values: dict[str, Any] = {}
        for item in fields(self):
            if item.name == "settings":
                values.update(self.hyperparameters)
            else:
                values[item.name] = getattr(self, item.name)
        return values


_HYPERPARAMETERS = {
    name: declarations[0][1].type_name for name, declarations in all_hyperparameters().items()
}
# The flat key vocabulary of `from_dict` / `to_dict`, name -> type: every field, with every
# declared hyper-parameter in the place of `settings`.
CONFIG_KEYS = MappingProxyType(
    {
        key: kind
        for item in fields(TrainConfig)
        for key, kind in (
            _HYPERPARAMETERS.items() if item.name == "settings" else [(item.name, item.type)]
        )
    }
)


def _override(preset: AdamSettings, cfg: TrainConfig, keys: tuple[str, ...]) -> AdamSettings:
    lr, beta1, beta2, eps = (getattr(cfg, key) for key in keys)
    return AdamSettings(
        lr=preset.lr if lr is None else lr,
        betas=(
            preset.betas[0] if beta1 is None else beta1,
            preset.betas[1] if beta2 is None else beta2,
        ),
        eps=preset.eps if eps is None else eps,
    )


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping, with one-line errors for bad files."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from err
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of key: value")
    return values


def coerce_value(name: str, type_name: Any, value: Any, where: str) -> Any:
    """`value` (from YAML or a command line) as `type_name` ("int", "float",
    "bool", "str", optionally "... | None", or the type itself); `ConfigError` naming `name` and
    `where` otherwise. Integers accept whole floats (`1e4`); floats must be finite."""
    type_name = type_name if isinstance(type_name, str) else type_name.__name__
    if type_name.endswith(" | None"):
        if value is None:
            return None
        type_name = type_name.removesuffix(" | None")
    if type_name == "bool":
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {name} must be true or false, got {value!r}")
    if type_name == "str":
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: {name} must be a string, got {value!r}")
    if isinstance(value, bool):
        raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
    try:
        if type_name == "int":
            if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
                return int(value)
            number = float(value)
            if not number.is_integer():
                raise ValueError
            return int(number)
        number = float(value)
        if not math.isfinite(number):
            raise ValueError
        return number
    except (TypeError, ValueError):
        kind = "an integer" if type_name == "int" else "a finite number"
        raise ConfigError(f"{where}: {name} must be {kind}, got {value!r}") from None

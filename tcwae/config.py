"""The training configuration: one flat, typed record validated once, up front.

Defaults are the paper's (seed 001, Appendix B.1 and Table 4). YAML files and CLI flags are turned
into a plain dict and passed to `TrainConfig.from_dict`, which rejects unknown keys, wrong types and
out-of-range values with one `ConfigError` line that names the key and the fix.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from tcwae.errors import UserError
from tcwae.eval_profiles import PROFILES

METHODS = ("tcwae_mws", "tcwae_gan", "wae_mmd", "beta_tcvae", "factor_vae")
COSTS = ("xent", "l1", "l2sq")
ESTIMATORS = ("mws", "mss")
MWS_SCOPES = ("global", "local")
EVAL_PROFILES = tuple(PROFILES)
DATA_SOURCES = ("auto", "official", "procedural")

_CHOICES = {
    "method": METHODS,
    "cost": COSTS,
    "estimator": ESTIMATORS,
    "mws_scope": MWS_SCOPES,
    "eval_profile": EVAL_PROFILES,
    "data_source": DATA_SOURCES,
}


class ConfigError(UserError, ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines one training run (and nothing about where it runs)."""

    dataset: str = "dsprites"
    data_source: str = "auto"
    method: str = "tcwae_mws"
    beta: float = 1.0
    gamma: float = 1.0
    lam: float = 1.0
    cost: str = "xent"
    estimator: str = "mws"
    mws_scope: str = "global"
    dz: int = 10
    steps: int = 300_000
    batch_size: int = 256
    seed: int = 0
    lr: float = 4e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 8e-4
    disc_lr: float = 1e-4
    disc_beta1: float = 0.5
    disc_beta2: float = 0.9
    disc_eps: float = 1e-8
    report_every: int = 100
    checkpoint_every: int = 1000
    eval_profile: str = "quick"
    mig_every: int = 0
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> TrainConfig:
        """Build and validate a config; `where` names the source (a file) in error messages."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r}; valid keys are {', '.join(sorted(known))}"
            )
        coerced = {name: _coerce(name, known[name].type, v, where) for name, v in values.items()}
        config = cls(**coerced)
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
        for name in ("beta", "gamma", "lam"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}: {name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "adam_eps", "disc_lr", "disc_eps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{where}: {name} must be > 0, got {getattr(self, name)}")
        for name in ("dz", "steps", "report_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}: {name} must be >= 1, got {getattr(self, name)}")
        if self.mig_every < 0:
            raise ConfigError(f"{where}: mig_every must be >= 0 (0 = never), got {self.mig_every}")
        if self.batch_size < 2:
            raise ConfigError(
                f"{where}: batch_size must be >= 2 (the estimators compare codes within a batch), "
                f"got {self.batch_size}"
            )

    def replace(self, **changes: Any) -> TrainConfig:
        config = dataclasses.replace(self, **changes)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


def _coerce(name: str, type_name: Any, value: Any, where: str) -> Any:
    type_name = type_name if isinstance(type_name, str) else type_name.__name__
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

"""The methods, one module each, and the registry that names them.

Every module in `MODULES` exposes `METHODS`, a tuple of `Method` classes; adding a method is one
line here. Each class declares its name, label, source paper, the hyper-parameters it reads
(`HyperParameter`: name, meaning, default), its optimizer family and whether its latents are
discrete; the config, the search spaces and the command lines read those declarations and
nothing else.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

import torch

from tcwae.methods.base import (
    Codes,
    HyperParameter,
    Method,
    MethodOutput,
    StepRandomness,
    discriminator_cross_entropy,
)

if TYPE_CHECKING:
    from tcwae.config import TrainConfig

MODULES = (
    "tcwae_mws",
    "tcwae_gan",
    "wae_mmd",
    "beta_tcvae",
    "factor_vae",
    "beta_vae",
    "annealed_vae",
    "dip_vae",
    "factor_qvae",
)


def _load_registry() -> Mapping[str, type[Method]]:
    registry: dict[str, type[Method]] = {}
    types: dict[str, str] = {}
    for module_name in MODULES:
        for method in importlib.import_module(f"tcwae.methods.{module_name}").METHODS:
            if method.name in registry:
                raise RuntimeError(f"method name {method.name!r} is registered twice")
            for parameter in method.hyperparameters:
                if types.setdefault(parameter.name, parameter.type_name) != parameter.type_name:
                    raise RuntimeError(f"hyper-parameter {parameter.name!r} changes type")
            registry[method.name] = method
    return MappingProxyType(registry)


REGISTRY = _load_registry()
METHODS = tuple(REGISTRY)


def method_class(name: str) -> type[Method]:
    """The registered class called `name`; ValueError naming the choices otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None


def hyperparameter_names(method: str) -> tuple[str, ...]:
    """The names of the hyper-parameters `method` reads, in its declaration order."""
    return tuple(parameter.name for parameter in method_class(method).hyperparameters)


def all_hyperparameters() -> dict[str, list[tuple[str, HyperParameter]]]:
    """Every declared hyper-parameter name -> [(method, its declaration), ...]."""
    declared: dict[str, list[tuple[str, HyperParameter]]] = {}
    for name, method in REGISTRY.items():
        for parameter in method.hyperparameters:
            declared.setdefault(parameter.name, []).append((name, parameter))
    return declared


def build_method(cfg: TrainConfig, nchan: int, dataset_size: int) -> Method:
    """The method of `cfg.method`, its networks initialised from `cfg.seed`.

    Initialisation draws from a forked global RNG seeded with cfg.seed, so the same config gives
    the same networks in any process without disturbing the caller's RNG state.
    """
    method = method_class(cfg.method)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return method(cfg, nchan, dataset_size)


__all__ = [
    "METHODS",
    "MODULES",
    "REGISTRY",
    "Codes",
    "HyperParameter",
    "Method",
    "MethodOutput",
    "StepRandomness",
    "all_hyperparameters",
    "build_method",
    "discriminator_cross_entropy",
    "hyperparameter_names",
    "method_class",
]

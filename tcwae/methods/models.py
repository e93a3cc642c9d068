"""The torch side of the registry: a card's model class, and a model built from a config."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import torch

from tcwae.methods.base import (
    Codes,
    Method,
    MethodOutput,
    StepRandomness,
    discriminator_cross_entropy,
)
from tcwae.methods.registry import method_card

if TYPE_CHECKING:
    from tcwae.config import TrainConfig


def method_class(name: str) -> type[Method]:
    """The model class of method `name` (its card's `model`); ValueError naming the choices
    for an unknown name."""
    module_name, class_name = method_card(name).model.rsplit(".", 1)
    return getattr(importlib.import_module(f"tcwae.methods.{module_name}"), class_name)


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
    "Codes",
    "Method",
    "MethodOutput",
    "StepRandomness",
    "build_method",
    "discriminator_cross_entropy",
    "method_class",
]

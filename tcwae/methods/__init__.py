"""The methods, one module each, and the registry that names them (`tcwae.methods.registry`).

Importing this package imports no torch: the registry, the settings and the lookups on them are
plain Python, so the config, the search spaces and the reports read them cheaply. The model
classes and what builds them (`Method`, `build_method`, `method_class`, ...) come from
`tcwae.methods.models`, imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from tcwae.methods.registry import (
    CARDS,
    METHODS,
    REGISTRY,
    SEQUENCE_METHODS,
    MethodCard,
    all_hyperparameters,
    hyperparameter_names,
    method_card,
    method_defaults,
    method_settings,
    methods_for,
)
from tcwae.methods.settings import HyperParameter, MethodSettings

# Names served by `tcwae.methods.models` (torch), imported when first asked for.
_MODEL_NAMES = frozenset(
    {
        "Codes",
        "Method",
        "MethodOutput",
        "StepRandomness",
        "build_method",
        "discriminator_cross_entropy",
        "method_class",
    }
)


def __getattr__(name: str) -> Any:
    """The torch side of the package, loaded on first use (PEP 562)."""
    if name in _MODEL_NAMES:
        return getattr(importlib.import_module("tcwae.methods.models"), name)
    raise AttributeError(f"module 'tcwae.methods' has no attribute {name!r}")


__all__ = [
    "CARDS",
    "METHODS",
    "REGISTRY",
    "SEQUENCE_METHODS",
    "HyperParameter",
    "MethodCard",
    "MethodSettings",
    "all_hyperparameters",
    "hyperparameter_names",
    "method_card",
    "method_defaults",
    "method_settings",
    "methods_for",
    *sorted(_MODEL_NAMES),
]

"""Data sets with ground-truth factors behind one interface, `FactorDataset`.

`load_dataset(name)` returns the images of `name` as a uint8 tensor `[N, C, 64, 64]` in memory,
converting the source files once into an HDF5 cache under `data_root()/cache/`.

The catalog (names, sources, factor names) imports nothing heavy; the loaders (numpy, torch,
h5py) are imported on first use of a name below (PEP 562), so reading the catalog through this
package stays cheap.

Modules: `catalog` (names), `dataset` (the interface), `cache` (HDF5), `image_files` (decoding),
`loading` (by name), one module per data set.
"""

from __future__ import annotations

import importlib
from typing import Any

from tcwae.data.catalog import (
    DATASETS,
    FACTOR_NAMES,
    PROCEDURAL_DATASETS,
    SEQUENCE_DATASETS,
    SOURCES,
)

# Name -> (module, attribute) of what is imported on first use.
_LAZY = {
    "DatasetError": ("dataset", "DatasetError"),
    "FactorDataset": ("dataset", "FactorDataset"),
    "data_root": ("dataset", "data_root"),
    "check_dataset": ("loading", "check_dataset"),
    "load_dataset": ("loading", "load_dataset"),
    "procedural_dsprites": ("dsprites", "render_dsprites"),
    "render_dsprites": ("dsprites", "render_dsprites"),
    "small_dsprites": ("dsprites", "small_dsprites"),
    "render_sprite_videos": ("sprite_videos", "render_sprite_videos"),
    "small_sprite_videos": ("sprite_videos", "small_sprite_videos"),
}


def __getattr__(name: str) -> Any:
    """The loaders' names, imported on first use."""
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(f"tcwae.data.{module}"), attribute)
    raise AttributeError(f"module 'tcwae.data' has no attribute {name!r}")


__all__ = [
    "DATASETS",
    "FACTOR_NAMES",
    "PROCEDURAL_DATASETS",
    "SEQUENCE_DATASETS",
    "SOURCES",
    *_LAZY,
]

"""Data sets with ground-truth factors behind one interface, `FactorDataset`.

`load_dataset(name)` returns the images of `name` as a uint8 tensor `[N, C, 64, 64]` in memory,
converting the source files once into an HDF5 cache under `data_root()/cache/`.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from tcwae.data import celeba, chairs, dsprites, shapes3d, smallnorb, sprite_videos
from tcwae.data.common import (
    DATASETS,
    PROCEDURAL_DATASETS,
    SEQUENCE_DATASETS,
    SOURCES,
    DatasetError,
    FactorDataset,
    data_root,
)
from tcwae.data.dsprites import render_dsprites, small_dsprites
from tcwae.data.sprite_videos import render_sprite_videos, small_sprite_videos

procedural_dsprites = render_dsprites

_LOADERS = {
    "dsprites": dsprites.load,
    "smallnorb": smallnorb.load,
    "shapes3d": shapes3d.load,
    "chairs": chairs.load,
    "celeba": celeba.load,
    "sprite_videos": sprite_videos.load,
}

# The observed factors of each data set, known without loading it (e.g. for default latent sizes).
FACTOR_NAMES = MappingProxyType(
    {
        "dsprites": dsprites.FACTOR_NAMES,
        "smallnorb": smallnorb.FACTOR_NAMES,
        "shapes3d": shapes3d.FACTOR_NAMES,
        "chairs": (),
        "celeba": (),
        "sprite_videos": sprite_videos.FACTOR_NAMES,
    }
)


def load_dataset(name: str, root: str | Path | None = None, source: str = "auto") -> FactorDataset:
    """Load data set `name` from `root` (default `data_root()`).

    `source`: 'official' reads (for dSprites, downloads) the published files; 'procedural'
    renders dSprites or Shapes3D ourselves; 'auto' is official where available, else procedural
    for those two with a loud warning; sprite_videos is procedural only ('official' is an
    error). Any problem is a `DatasetError` that says what to do.
    """
    if name not in _LOADERS:
        raise DatasetError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if source not in SOURCES:
        raise DatasetError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if source == "procedural" and name not in PROCEDURAL_DATASETS:
        raise DatasetError(
            f"{name} has no procedural renderer (only {' and '.join(PROCEDURAL_DATASETS)} have); "
            "use source='official' or 'auto'"
        )
    return _LOADERS[name](Path(root).expanduser() if root is not None else data_root(), source)


__all__ = [
    "DATASETS",
    "FACTOR_NAMES",
    "SEQUENCE_DATASETS",
    "DatasetError",
    "FactorDataset",
    "data_root",
    "load_dataset",
    "procedural_dsprites",
    "render_dsprites",
    "render_sprite_videos",
    "small_dsprites",
    "small_sprite_videos",
]

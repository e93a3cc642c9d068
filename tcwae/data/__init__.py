"""Data sets with ground-truth factors behind one interface, `FactorDataset`.

`load_dataset(name)` returns the images of `name` as a uint8 tensor `[N, C, 64, 64]` in memory,
converting the source files once into an HDF5 cache under `data_root()/cache/`.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from tcwae.atomic import unwritable_reason
from tcwae.data import celeba, chairs, dsprites, shapes3d, smallnorb, sprite_videos
from tcwae.data.common import (
    DATASETS,
    PROCEDURAL_DATASETS,
    SEQUENCE_DATASETS,
    SOURCES,
    DatasetError,
    FactorDataset,
    cache_path,
    check_cache,
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
# The source whose cache a loader with a procedural fallback reads (None: nothing cached yet).
_CACHED_SOURCE = {"dsprites": dsprites.cached_source, "shapes3d": shapes3d.cached_source}

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
    _require_known(name, source)
    return _LOADERS[name](_root(root), source)


def check_dataset(name: str, root: str | Path | None = None, source: str = "auto") -> int:
    """Raise `DatasetError` unless `load_dataset(name, root, source)` will succeed, keeping no
    image; returns how many examples it holds. A data set already cached is judged by its cache's
    header alone; any other is loaded once, which checks its files and writes the cache that the
    training workers then read (a cache folder that cannot be written is refused first, not
    after minutes of rendering)."""
    _require_known(name, source)
    folder = _root(root)
    cached = _CACHED_SOURCE[name](folder, source) if name in _CACHED_SOURCE else "official"
    if cached is not None and cache_path(folder, name, cached).exists():
        return check_cache(cache_path(folder, name, cached), name, cached)
    cache_folder = cache_path(folder, name, source).parent
    reason = unwritable_reason(cache_folder)
    if reason is not None:
        raise DatasetError(
            f"{name} is not cached yet and its cache folder {cache_folder} cannot be written "
            f"({reason}); pass --data-root a writable folder (or set $TCWAE_DATA)"
        )
    return len(load_dataset(name, folder, source))


def _require_known(name: str, source: str) -> None:
    if name not in _LOADERS:
        raise DatasetError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if source not in SOURCES:
        raise DatasetError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if source == "procedural" and name not in PROCEDURAL_DATASETS:
        raise DatasetError(
            f"{name} has no procedural renderer (only {' and '.join(PROCEDURAL_DATASETS)} have); "
            "use source='official' or 'auto'"
        )


def _root(root: str | Path | None) -> Path:
    return Path(root).expanduser() if root is not None else data_root()


__all__ = [
    "DATASETS",
    "FACTOR_NAMES",
    "SEQUENCE_DATASETS",
    "DatasetError",
    "FactorDataset",
    "check_dataset",
    "data_root",
    "load_dataset",
    "procedural_dsprites",
    "render_dsprites",
    "render_sprite_videos",
    "small_dsprites",
    "small_sprite_videos",
]

"""Loading a data set by name: the loader of each data set, its cache, and the checks a launch
makes before training on it."""

from __future__ import annotations

from pathlib import Path

from tcwae.atomic import unwritable_reason
from tcwae.data import celeba, chairs, dsprites, shapes3d, smallnorb, sprite_videos
from tcwae.data.cache import cache_path, check_cache
from tcwae.data.catalog import DATASETS, PROCEDURAL_DATASETS, SOURCES
from tcwae.data.dataset import DatasetError, FactorDataset, data_root

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

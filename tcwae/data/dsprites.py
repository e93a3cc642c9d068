"""dSprites: the official npz file, or our own vectorised renderer of the same factor grid.

The official file (deepmind/dsprites-dataset) holds `imgs` uint8 `[737280, 64, 64]` (0/1),
`latents_classes` and `latents_values` `[737280, 6]` for (color, shape, scale, orientation, posX,
posY) in mixed-radix row-major order, and a pickled `metadata` dict. The original renderer was never
published, so `render_dsprites_arrays` draws the same grid itself and returns (or with
`write_dsprites_npz`, writes) exactly those keys and layouts; `dataset_from_dsprites_arrays` reads
either. Colour has a single value and is not an observed factor.

Rendering. Each object is a shape inside the unit disc (square, ellipse, the heart curve
(x^2 + y^2 - 1)^3 <= x^2 y^3 normalised to radius 1), scaled by `scale * 14.5` pixels, rotated
about its centre by `orientation` and sampled at pixel centres (binary, white on black). Positions
linspace(0, 1, 32) put the centre at pixel 16 + 31 * position (continuous coordinate 16.5 to 47.5 of
the 64 pixel canvas), one whole pixel per step, so the 32 x 32 positions are exact shifts of one
sprite: every object lies within 15 pixels of its centre, so it stays inside pixels 1..62 with a
background pixel on every border at any rotation and scale. Reduced position grids round
31 * position to whole pixels.
"""

from __future__ import annotations

import http.client
import math
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from tcwae.atomic import atomic_path
from tcwae.data.cache import cache_path, load_cached
from tcwae.data.catalog import FACTOR_NAMES as CATALOG_FACTOR_NAMES
from tcwae.data.dataset import (
    DatasetError,
    FactorDataset,
    empty_uint8,
    factor_grid,
    warn_not_official,
)

FILE_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
URL = f"https://github.com/deepmind/dsprites-dataset/raw/master/{FILE_NAME}"
DOWNLOAD_TIMEOUT_S = 5.0
SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = CATALOG_FACTOR_NAMES["dsprites"]
LATENT_NAMES = ("color", *FACTOR_NAMES)
FACTOR_SIZES = (3, 6, 40, 32, 32)
NPZ_KEYS = ("imgs", "latents_classes", "latents_values", "metadata")

CANVAS = 64
WINDOW = 32
RADIUS_PX = 14.5
MAX_SHIFT = 31
ELLIPSE_AXES = (1.0, 0.5)


def _heart_inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The heart curve, lobes up (v points up), before normalising to the unit disc."""
    return (u * u + v * v - 1.0) ** 3 - u * u * v**3 <= 0.0


@lru_cache(maxsize=1)
def _heart_radius() -> float:
    """Largest distance from the origin to the heart curve, by bisection along 7200 rays.

    The heart is star-shaped about the origin (each ray leaves it once), so bisection is exact and
    scaling about the origin nests smaller hearts inside larger ones.
    """
    angles = np.linspace(0.0, 2.0 * np.pi, 7200, endpoint=False)
    inner, outer = np.zeros_like(angles), np.full_like(angles, 2.0)
    for _ in range(40):
        middle = (inner + outer) / 2.0
        inside = _heart_inside(middle * np.cos(angles), middle * np.sin(angles))
        inner, outer = np.where(inside, middle, inner), np.where(inside, outer, middle)
    return float(outer.max())


def _shape_inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership of points (u right, v up) in `shape`, which lies inside the unit disc."""
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 1.0 / math.sqrt(2.0)
    if shape == "ellipse":
        semi_major, semi_minor = ELLIPSE_AXES
        return (u / semi_major) ** 2 + (v / semi_minor) ** 2 <= 1.0
    radius = _heart_radius()
    return _heart_inside(u * radius, v * radius)


def grid_values(
    num_shapes: int = 3, num_scales: int = 6, num_orientations: int = 40, num_positions: int = 32
) -> tuple[np.ndarray, ...]:
    """Factor values of a (possibly reduced) grid: shape ids 1.., scales, angles, positions."""
    if not 1 <= num_shapes <= len(SHAPES) or not 1 <= num_positions <= MAX_SHIFT + 1:
        raise ValueError(
            f"need 1..{len(SHAPES)} shapes and 1..{MAX_SHIFT + 1} positions, "
            f"got {num_shapes} and {num_positions}"
        )
    if num_scales < 1 or num_orientations < 1:
        raise ValueError(f"need >= 1 scales and orientations, got {num_scales}, {num_orientations}")
    return (
        np.arange(1.0, num_shapes + 1.0),
        np.linspace(0.5, 1.0, num_scales),
        np.linspace(0.0, 2.0 * np.pi, num_orientations),
        np.linspace(0.0, 1.0, num_positions),
    )


def render_sprites(
    num_shapes: int = 3, num_scales: int = 6, num_orientations: int = 40
) -> np.ndarray:
    """One 32 x 32 window per (shape, scale, orientation), object centred on window pixel 16."""
    _, scales, orientations, _ = grid_values(num_shapes, num_scales, num_orientations, 1)
    offsets = np.arange(WINDOW, dtype=np.float64) - WINDOW // 2
    right = offsets[None, :]  # column offset from the centre, pixels
    up = -offsets[:, None]  # row offset, flipped so that v points up
    cos = np.cos(orientations)[:, None, None]
    sin = np.sin(orientations)[:, None, None]
    # Rotating the object by +angle means sampling the unrotated shape at the point rotated back.
    u_unit = (cos * right + sin * up) / RADIUS_PX
    v_unit = (-sin * right + cos * up) / RADIUS_PX
    sprites = np.empty((num_shapes, num_scales, num_orientations, WINDOW, WINDOW), dtype=np.uint8)
    for shape_index, shape in enumerate(SHAPES[:num_shapes]):
        for scale_index, scale in enumerate(scales):
            sprites[shape_index, scale_index] = _shape_inside(shape, u_unit / scale, v_unit / scale)
    return sprites


def render_dsprites_arrays(
    num_shapes: int = 3, num_scales: int = 6, num_orientations: int = 40, num_positions: int = 32
) -> dict[str, np.ndarray]:
    """Render the dSprites grid into the official npz layout (`imgs` 0/1 uint8 `[N, 64, 64]`).

    The defaults give the full official grid; smaller counts give a reduced grid over the same
    ranges (first `num_shapes` shapes, linspace scales, orientations and positions), still in
    mixed-radix order. Each image is a pure copy of a pre-rendered sprite, so the cost is writing
    the output once.
    """
    shape_ids, scales, orientations, positions = grid_values(
        num_shapes, num_scales, num_orientations, num_positions
    )
    sprites = render_sprites(num_shapes, num_scales, num_orientations)
    shifts = np.rint(positions * MAX_SHIFT).astype(np.int64)
    imgs = empty_uint8(
        (num_shapes, num_scales, num_orientations, num_positions, num_positions, CANVAS, CANVAS),
        zeroed=True,
    )
    for x_index, x_shift in enumerate(shifts):
        for y_index, y_shift in enumerate(shifts):
            imgs[
                :, :, :, x_index, y_index, y_shift : y_shift + WINDOW, x_shift : x_shift + WINDOW
            ] = sprites
    latent_sizes = (1, num_shapes, num_scales, num_orientations, num_positions, num_positions)
    latents_classes = factor_grid(latent_sizes)
    possible_values = (np.ones(1), shape_ids, scales, orientations, positions, positions)
    latents_values = np.stack(
        [values[latents_classes[:, axis]] for axis, values in enumerate(possible_values)], axis=1
    )
    metadata = {
        "title": "dSprites (procedural re-rendering by tcwae)",
        "description": "Same grid, keys and layout as dsprites_ndarray_co1sh3sc6or40x32y32_64x64",
        "version": 1,
        "latents_names": LATENT_NAMES,
        "latents_possible_values": dict(zip(LATENT_NAMES, possible_values, strict=True)),
        "latents_sizes": np.array(latent_sizes),
        "author": "tcwae",
    }
    return {
        "imgs": imgs.reshape(-1, CANVAS, CANVAS),
        "latents_classes": latents_classes,
        "latents_values": latents_values,
        "metadata": np.array(metadata, dtype=object),
    }


def write_dsprites_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write arrays in the official npz layout (compressed, like the official file), atomically."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(handle, **{key: arrays[key] for key in NPZ_KEYS})


def dataset_from_dsprites_arrays(
    arrays: Mapping[str, np.ndarray], source: str, where: str
) -> FactorDataset:
    """Validate official-layout arrays (an `np.load` result or a render) into a FactorDataset.

    `imgs` is converted from 0/1 to 0/255 in place, so a 3 GB array is never copied; `where` names
    the file in error messages. `metadata` is never unpickled: the factor layout is checked from
    `latents_classes` itself.
    """
    missing = [key for key in NPZ_KEYS if key not in arrays]
    if missing:
        raise DatasetError(f"{where} lacks the keys {missing}; expected {list(NPZ_KEYS)}")
    imgs, classes = arrays["imgs"], arrays["latents_classes"]
    values = arrays["latents_values"]
    count = len(imgs)
    if imgs.dtype != np.uint8 or imgs.shape[1:] != (CANVAS, CANVAS) or count == 0:
        raise DatasetError(
            f"{where}: imgs must be uint8 [N, 64, 64], got {imgs.dtype} {list(imgs.shape)}"
        )
    if classes.shape != (count, len(LATENT_NAMES)) or values.shape != classes.shape:
        raise DatasetError(
            f"{where}: latents_classes and latents_values must be [{count}, 6], got "
            f"{list(classes.shape)} and {list(values.shape)}"
        )
    if not np.issubdtype(classes.dtype, np.integer) or classes.min() < 0:
        raise DatasetError(f"{where}: latents_classes must be non-negative integers")
    latent_sizes = tuple(int(size) for size in classes.max(axis=0) + 1)
    if (
        latent_sizes[0] != 1
        or math.prod(latent_sizes) != count
        or not np.array_equal(classes, factor_grid(latent_sizes))
    ):
        raise DatasetError(
            f"{where}: latents_classes is not the mixed-radix grid (color, shape, scale, "
            f"orientation, posX, posY) of sizes {latent_sizes}; re-download {URL}"
        )
    if imgs.max() > 1:
        raise DatasetError(f"{where}: imgs must hold 0/1 pixels, found values up to {imgs.max()}")
    images = torch.from_numpy(imgs).mul_(255).unsqueeze(1)
    return FactorDataset("dsprites", images, classes[:, 1:], latent_sizes[1:], FACTOR_NAMES, source)


def render_dsprites(
    num_shapes: int = 3, num_scales: int = 6, num_orientations: int = 40, num_positions: int = 32
) -> FactorDataset:
    """Procedural dSprites as a FactorDataset; reduced grids (e.g. 3, 6, 10, 8, 8) for tests."""
    arrays = render_dsprites_arrays(num_shapes, num_scales, num_orientations, num_positions)
    return dataset_from_dsprites_arrays(arrays, "procedural", "the procedural renderer")


def small_dsprites(
    factor_sizes: tuple[int, int, int, int, int] = (3, 6, 10, 8, 8),
) -> FactorDataset:
    """A reduced procedural grid given as factor sizes (shape, scale, orientation, posX, posY)."""
    shapes, scales, orientations, x_positions, y_positions = factor_sizes
    if x_positions != y_positions:
        raise ValueError(f"posX and posY need the same size, got {factor_sizes}")
    return render_dsprites(shapes, scales, orientations, x_positions)


def read_dsprites_npz(path: Path, source: str = "official") -> FactorDataset:
    """Read a file in the official npz layout; a truncated or corrupt file is a DatasetError."""
    fix = f"delete {path} and download it again from {URL}"
    try:
        with np.load(path, allow_pickle=False) as npz:
            return dataset_from_dsprites_arrays(npz, source, str(path))
    except DatasetError as error:
        raise DatasetError(f"{error}; {fix}") from error
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        raise DatasetError(f"{path} is unreadable or corrupt ({error!r}); {fix}") from error


def _resolve(host: str, timeout: float) -> None:
    """Resolve `host` within `timeout` or raise OSError; socket timeouts skip name resolution."""
    failures: list[OSError] = []

    def resolve() -> None:
        try:
            socket.getaddrinfo(host, 443)
        except OSError as error:
            failures.append(error)

    thread = threading.Thread(target=resolve, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise OSError(f"resolving {host!r} took more than {timeout:g} s (offline?)")
    if failures:
        raise OSError(f"cannot resolve {host!r}: {failures[0]}")


def download_dsprites(path: Path, url: str | None = None, timeout: float | None = None) -> None:
    """Download the official npz to `path` (atomically); raises OSError when it cannot."""
    url = URL if url is None else url
    timeout = DOWNLOAD_TIMEOUT_S if timeout is None else timeout
    _resolve(urllib.parse.urlsplit(url).hostname or "", timeout)
    try:
        with (
            atomic_path(path) as temporary,
            urllib.request.urlopen(url, timeout=timeout) as response,
            open(temporary, "wb") as out,
        ):
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ValueError) as error:
        raise OSError(f"download of {url} failed: {error!r}") from error


def _load_official(root: Path, source: str) -> FactorDataset | None:
    """The official data set, or None when `source` is auto and it is neither here nor reachable."""
    npz_path = root / "dsprites" / FILE_NAME
    if not cache_path(root, "dsprites", "official").exists() and not npz_path.exists():
        try:
            download_dsprites(npz_path)
        except OSError as error:
            if source == "official":
                raise DatasetError(
                    f"{npz_path} is missing and the download failed ({error}); download {URL} "
                    f"by hand into {npz_path.parent}, or use source='procedural'"
                ) from error
            message = (
                f"dSprites: {npz_path} is missing and cannot be downloaded ({error}); "
                "FALLING BACK TO THE PROCEDURAL RE-RENDERING, which is not the official data. "
                f"For the official images put {FILE_NAME} from {URL} into {npz_path.parent}."
            )
            warn_not_official(message, stacklevel=4)
            return None
    return load_cached(
        root,
        "dsprites",
        "official",
        lambda: read_dsprites_npz(npz_path, "official"),
        binary=True,
        origin=str(npz_path),
    )


def cached_source(root: Path, source: str) -> str | None:
    """The source whose cache `load(root, source)` reads, when that cache exists: 'official' when
    it is cached; 'procedural' for source procedural, and for auto when the official file is not
    here either (offline, auto falls back to it; online, it downloads the official file). None
    when `load` would first have to read, download or render something."""
    if source in ("official", "auto") and cache_path(root, "dsprites", "official").exists():
        return "official"
    if not cache_path(root, "dsprites", "procedural").exists():
        return None
    offline_fallback = source == "auto" and not (root / "dsprites" / FILE_NAME).exists()
    return "procedural" if source == "procedural" or offline_fallback else None


def load(root: Path, source: str) -> FactorDataset:
    """dSprites by source: 'official' (file or download, never a fallback), 'procedural', or
    'auto' (official when present or downloadable, else procedural with a loud warning)."""
    if source in ("official", "auto"):
        dataset = _load_official(root, source)
        if dataset is not None:
            return dataset
    return load_cached(
        root, "dsprites", "procedural", render_dsprites, binary=True, origin="tcwae renderer"
    )

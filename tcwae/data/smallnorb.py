"""smallNORB from the official binary 'matrix' files (training + testing, gzipped or not).

Each `.mat` file is a header (int32 magic for the element type, int32 ndim, then max(3, ndim) int32
dimensions; unused ones are 1) followed by little-endian data: `-dat` uint8 `[n, 2, 96, 96]` (two
cameras), `-cat` int32 `[n]`, `-info` int32 `[n, 4]` = (instance, elevation, azimuth 0, 2, .., 34,
lighting). We keep the left camera, resize 96 -> 64 with antialiasing, and observe category,
elevation, azimuth / 2 and lighting; the instance is not observed, so `index_of` returns the first
stored image (training file first) with the requested factors.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as functional

from tcwae.data.cache import load_cached
from tcwae.data.catalog import FACTOR_NAMES as CATALOG_FACTOR_NAMES
from tcwae.data.catalog import IMAGE_SIZE
from tcwae.data.dataset import DatasetError, FactorDataset

URL = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
SPLITS = {"training": "5x46789x9x18x6x2x96x96", "testing": "5x01235x9x18x6x2x96x96"}
FACTOR_NAMES = CATALOG_FACTOR_NAMES["smallnorb"]
FACTOR_SIZES = (5, 9, 18, 6)
MAGIC_TYPES = {0x1E3D4C55: np.dtype("<u1"), 0x1E3D4C54: np.dtype("<i4")}
RESIZE_CHUNK = 2048


def file_name(split: str, kind: str) -> str:
    return f"smallnorb-{SPLITS[split]}-{split}-{kind}.mat"


def _find(folder: Path, split: str, kind: str) -> Path:
    plain = folder / file_name(split, kind)
    for candidate in (plain, plain.with_name(plain.name + ".gz")):
        if candidate.exists():
            return candidate
    raise DatasetError(
        f"smallNORB file {plain} (or {plain.name}.gz) is missing; download the six "
        f"smallnorb-*.mat.gz files from {URL} into {folder}"
    )


def read_matrix(path: Path) -> np.ndarray:
    """Read one smallNORB binary matrix file; any defect is a DatasetError naming the file."""
    fix = f"download {path.name} again from {URL}"
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"{path} is unreadable or corrupt ({error}); {fix}") from error
    if len(raw) < 20:
        raise DatasetError(f"{path} is too short for a matrix header ({len(raw)} bytes); {fix}")
    magic, ndim = np.frombuffer(raw, dtype="<i4", count=2)
    dtype = MAGIC_TYPES.get(int(magic) & 0xFFFFFFFF)
    if dtype is None or not 1 <= ndim <= 8:
        raise DatasetError(
            f"{path} is not a smallNORB byte/int matrix (magic {int(magic) & 0xFFFFFFFF:#x}, "
            f"ndim {ndim}); {fix}"
        )
    header_dims = max(3, int(ndim))
    offset = 8 + 4 * header_dims
    if len(raw) < offset:
        raise DatasetError(f"{path} ends inside its header; {fix}")
    shape = tuple(int(size) for size in np.frombuffer(raw, "<i4", header_dims, 8)[:ndim])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise DatasetError(
            f"{path} holds {len(raw) - offset} data bytes but its header {list(shape)} needs "
            f"{expected} (truncated?); {fix}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape)


def _read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    paths = {kind: _find(folder, split, kind) for kind in ("dat", "cat", "info")}
    dat, cat, info = (read_matrix(paths[kind]) for kind in ("dat", "cat", "info"))
    count = len(dat)
    if dat.dtype != np.uint8 or dat.shape[1:] != (2, 96, 96):
        raise DatasetError(f"{paths['dat']}: expected uint8 [n, 2, 96, 96], got {list(dat.shape)}")
    if cat.shape != (count,) or info.shape != (count, 4):
        raise DatasetError(
            f"{paths['cat']} and {paths['info']} must be [{count}] and [{count}, 4] to match "
            f"{paths['dat'].name}, got {list(cat.shape)} and {list(info.shape)}"
        )
    azimuth = info[:, 2]
    factors = np.stack([cat, info[:, 1], azimuth // 2, info[:, 3]], axis=1).astype(np.int64)
    valid = (factors >= 0).all() and (factors < np.array(FACTOR_SIZES)).all()
    if not valid or (azimuth % 2).any():
        raise DatasetError(
            f"{paths['cat']} / {paths['info']} hold factor values outside category 0..4, "
            f"elevation 0..8, azimuth 0, 2, .., 34, lighting 0..5; download them again from {URL}"
        )
    return dat[:, 0], factors


def resize_to_64(images: np.ndarray) -> torch.Tensor:
    """uint8 `[n, H, W]` -> uint8 `[n, 1, 64, 64]` by antialiased bilinear resizing, in chunks."""
    resized = torch.empty((len(images), 1, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    for start in range(0, len(images), RESIZE_CHUNK):
        chunk = torch.from_numpy(images[start : start + RESIZE_CHUNK]).unsqueeze(1).float()
        small = functional.interpolate(
            chunk, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True
        )
        resized[start : start + RESIZE_CHUNK] = small.round_().clamp_(0, 255).to(torch.uint8)
    return resized


def read_smallnorb(folder: Path) -> FactorDataset:
    """Training then testing images of the left camera with their observed factors."""
    splits = [_read_split(folder, split) for split in SPLITS]
    images = np.concatenate([split[0] for split in splits])
    factors = np.concatenate([split[1] for split in splits])
    return FactorDataset(
        "smallnorb", resize_to_64(images), factors, FACTOR_SIZES, FACTOR_NAMES, "official"
    )


def load(root: Path, source: str) -> FactorDataset:
    folder = root / "smallnorb"
    return load_cached(
        root, "smallnorb", "official", lambda: read_smallnorb(folder), origin=str(folder)
    )

"""Shapes3D from DeepMind's `3dshapes.h5`: `images` uint8 `[N, 64, 64, 3]`, `labels` `[N, 6]`.

Labels are factor values (hues in [0, 1), scale, shape id, orientation in degrees); each column is
turned into class indices by ranking its distinct values, which must number exactly the factor's
size. The official file stores the full grid in mixed-radix order.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from tcwae.data.common import IMAGE_SIZE, DatasetError, FactorDataset, load_cached

FILE_NAME = "3dshapes.h5"
URL = "https://storage.googleapis.com/3d-shapes/3dshapes.h5"
FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
FACTOR_SIZES = (10, 10, 10, 8, 4, 15)
READ_CHUNK = 16384


def labels_to_classes(labels: np.ndarray, path: Path) -> np.ndarray:
    """Rank each label column's distinct values into classes 0..size-1."""
    classes = np.empty(labels.shape, dtype=np.int64)
    for axis, (name, size) in enumerate(zip(FACTOR_NAMES, FACTOR_SIZES, strict=True)):
        distinct, classes[:, axis] = np.unique(labels[:, axis], return_inverse=True)
        if len(distinct) != size:
            raise DatasetError(
                f"{path}: factor {name} has {len(distinct)} distinct values, Shapes3D has {size}; "
                f"the file is incomplete or not {FILE_NAME}: download it again from {URL}"
            )
    return classes


def read_shapes3d(path: Path) -> FactorDataset:
    """Read images (as channels-first) and labels; any defect is a DatasetError naming the file."""
    if not path.exists():
        raise DatasetError(f"Shapes3D file {path} is missing; download {URL} into {path.parent}")
    fix = f"download it again from {URL}"
    try:
        with h5py.File(path, "r") as source:
            missing = [key for key in ("images", "labels") if key not in source]
            if missing:
                raise DatasetError(f"{path} lacks the datasets {missing}; {fix}")
            stored, labels = source["images"], source["labels"]
            count = stored.shape[0]
            if stored.dtype != np.uint8 or stored.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
                raise DatasetError(
                    f"{path}: images must be uint8 [N, 64, 64, 3], got {stored.dtype} "
                    f"{list(stored.shape)}; {fix}"
                )
            if labels.shape != (count, len(FACTOR_NAMES)):
                raise DatasetError(
                    f"{path}: labels must be [{count}, 6], got {list(labels.shape)}; {fix}"
                )
            classes = labels_to_classes(labels[...], path)
            images = torch.empty((count, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
            for start in range(0, count, READ_CHUNK):
                chunk = torch.from_numpy(stored[start : start + READ_CHUNK])
                images[start : start + READ_CHUNK] = chunk.permute(0, 3, 1, 2)
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError) as error:
        raise DatasetError(f"{path} is unreadable or corrupt ({error}); {fix}") from error
    return FactorDataset("shapes3d", images, classes, FACTOR_SIZES, FACTOR_NAMES, "official")


def load(root: Path, source: str) -> FactorDataset:
    path = root / "shapes3d" / FILE_NAME
    return load_cached(root, "shapes3d", "official", lambda: read_shapes3d(path), origin=str(path))

"""Shapes3D: DeepMind's `3dshapes.h5`, or our own vectorised numpy rendering of the same grid.

The official file holds `images` uint8 `[480000, 64, 64, 3]` and `labels` `[480000, 6]`: factor
values (hues in [0, 1), scale, shape id, orientation in degrees) for (floor hue, wall hue, object
hue, scale, shape, orientation), the full grid in mixed-radix order with orientation fastest. Each
label column is turned into class indices by ranking its distinct values, which must number exactly
the factor's size.

Where the official file is not at hand, `render_shapes3d` draws the same grid itself: a floor, a
back wall and one object (cube, cylinder, sphere or capsule; shape ids 0..3) on the floor in front
of the wall, seen from a fixed perspective camera, ray-cast analytically with 4 x 4 samples a
pixel. Hues are `linspace(0, 1, 10, endpoint=False)` at full saturation and value (HSV), scales
`linspace(0.75, 1.25, 8)`, orientations `linspace(-30, 30, 15)` degrees of the object about the
vertical axis. Shading is Lambertian from one point light plus ambient light; there are no cast
shadows, so the floor and the wall look the same whatever the object, and only the object's own
pixels depend on scale, shape and orientation. A sphere and the upright cylinder look the same at
every orientation (they are symmetric about the vertical axis); the cube and the lying capsule
turn visibly. Every image is a weighted sum of three colours, the weights (coverage x shading of
floor, wall and object in each pixel) depending only on (scale, shape, orientation), so 480 weight
maps make all 480,000 images.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch

from tcwae.data.cache import cache_path, load_cached
from tcwae.data.catalog import FACTOR_NAMES as CATALOG_FACTOR_NAMES
from tcwae.data.catalog import IMAGE_SIZE
from tcwae.data.dataset import (
    DatasetError,
    FactorDataset,
    empty_uint8,
    factor_grid,
    warn_not_official,
)
from tcwae.data.shapes3d_geometry import HIT_TESTS

FILE_NAME = "3dshapes.h5"
URL = "https://storage.googleapis.com/3d-shapes/3dshapes.h5"
FACTOR_NAMES = CATALOG_FACTOR_NAMES["shapes3d"]
FACTOR_SIZES = (10, 10, 10, 8, 4, 15)
READ_CHUNK = 16384
CACHE_COMPRESSION = "gzip"  # smooth shading: deflate makes the cache 3.5x smaller than LZF

SHAPES = ("cube", "cylinder", "sphere", "capsule")
PARTS = ("floor", "wall", "object")
SCALE_RANGE = (0.75, 1.25)
ORIENTATION_RANGE_DEGREES = (-30.0, 30.0)

# The scene, in world units: y up, the floor is y = 0, the wall z = WALL_Z, the object stands on
# the floor at the origin; the camera looks from the front (negative z) and slightly above.
CAMERA = np.array([0.0, 2.0, -3.6])
CAMERA_TARGET = np.array([0.0, 0.7, 0.0])
FIELD_OF_VIEW_DEGREES = 44.0
WALL_Z = 2.5
LIGHT = np.array([-3.0, 5.0, -4.0])
AMBIENT = 0.45
SAMPLES_PER_SIDE = 4
# A sphere around every unit shape at every orientation (the cube's corners are 0.87 away).
BOUNDING_CENTRE_HEIGHT = 0.5
BOUNDING_RADIUS = 0.9


def factor_values(factor_sizes: Sequence[int] = FACTOR_SIZES) -> tuple[np.ndarray, ...]:
    """The label value of every class of each factor, as in the official `labels`.

    The official sizes give the official values; smaller sizes give a reduced grid over the same
    ranges (hues stay `linspace(0, 1, n, endpoint=False)`, shapes are the first n) for tests.
    """
    sizes = tuple(int(size) for size in factor_sizes)
    if len(sizes) != len(FACTOR_SIZES) or not all(
        1 <= size <= limit for size, limit in zip(sizes, FACTOR_SIZES, strict=True)
    ):
        raise ValueError(
            f"Shapes3D factor sizes must be 6 counts between 1 and {FACTOR_SIZES}, got {sizes}"
        )
    floor, wall, hue, scale, shape, orientation = sizes
    return (
        np.linspace(0.0, 1.0, floor, endpoint=False),
        np.linspace(0.0, 1.0, wall, endpoint=False),
        np.linspace(0.0, 1.0, hue, endpoint=False),
        np.linspace(*SCALE_RANGE, scale),
        np.arange(shape, dtype=np.float64),
        np.linspace(*ORIENTATION_RANGE_DEGREES, orientation),
    )


def hue_colours(hues: np.ndarray) -> np.ndarray:
    """Fully saturated, full-value RGB of each hue, scaled to 0..255, float32 `[n, 3]`."""
    return np.array([colorsys.hsv_to_rgb(hue, 1.0, 1.0) for hue in hues], np.float32) * 255


def camera_rays() -> np.ndarray:
    """Unit ray directions `[64, 64, samples, 3]` from CAMERA through a regular grid of points
    inside each pixel (row 0 at the top)."""
    forward = CAMERA_TARGET - CAMERA
    forward /= np.linalg.norm(forward)
    right = np.cross([0.0, 1.0, 0.0], forward)
    right /= np.linalg.norm(right)
    up = np.cross(forward, right)
    side = IMAGE_SIZE * SAMPLES_PER_SIDE
    offsets = ((np.arange(side) + 0.5) / side * 2.0 - 1.0) * math.tan(
        math.radians(FIELD_OF_VIEW_DEGREES) / 2.0
    )
    directions = (
        forward + offsets[None, :, None] * right - offsets[:, None, None] * up
    )  # [side, side, 3]
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    grouped = directions.reshape(
        IMAGE_SIZE, SAMPLES_PER_SIDE, IMAGE_SIZE, SAMPLES_PER_SIDE, 3
    ).transpose(0, 2, 1, 3, 4)
    return grouped.reshape(IMAGE_SIZE, IMAGE_SIZE, SAMPLES_PER_SIDE**2, 3)


def lambert(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Ambient plus diffuse light from the point LIGHT, in [AMBIENT, 1]."""
    to_light = LIGHT - points
    to_light /= np.linalg.norm(to_light, axis=-1, keepdims=True)
    return AMBIENT + (1.0 - AMBIENT) * np.clip((normals * to_light).sum(axis=-1), 0.0, None)


def _background(directions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance, part (0 floor, 1 wall) and shading of the floor or wall behind every ray."""
    with np.errstate(divide="ignore"):
        to_floor = np.where(directions[..., 1] < 0, -CAMERA[1] / directions[..., 1], np.inf)
        to_wall = np.where(
            directions[..., 2] > 0, (WALL_Z - CAMERA[2]) / directions[..., 2], np.inf
        )
    is_wall = to_wall < to_floor
    distance = np.minimum(to_floor, to_wall)
    normals = np.where(is_wall[..., None], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0])
    shading = lambert(CAMERA + distance[..., None] * directions, normals)
    return distance, is_wall.astype(np.int64), shading


def _rotation_about_vertical(degrees: float) -> np.ndarray:
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    return np.array([[cos, 0.0, sin], [0.0, 1.0, 0.0], [-sin, 0.0, cos]])


def part_weights(
    scales: Sequence[float], shapes: Sequence[int], orientations: Sequence[float]
) -> np.ndarray:
    """Weight maps float32 `[scale, shape, orientation, part, 64, 64]`: for each pixel, the mean
    over its samples of (sample shows this part) x shading, for floor, wall and object.

    The object (a unit shape scaled about its foot and turned about the vertical axis) is
    intersected in its own frame: the camera ray is turned back and divided by the scale, which
    keeps the ray parameter, so its distance compares directly with the floor's and wall's. Only
    rays that pass within the bounding sphere of every shape at that scale are tested.
    """
    directions = camera_rays().reshape(-1, 3)
    background, background_part, background_shading = _background(directions)
    object_part = PARTS.index("object")
    samples = SAMPLES_PER_SIDE**2
    weights = np.zeros(
        (len(scales), len(shapes), len(orientations), len(PARTS), IMAGE_SIZE * IMAGE_SIZE),
        np.float32,
    )
    for scale_index, scale in enumerate(scales):
        to_centre = np.array([0.0, BOUNDING_CENTRE_HEIGHT * scale, 0.0]) - CAMERA
        along = directions @ to_centre
        passing = to_centre @ to_centre - along * along <= (BOUNDING_RADIUS * scale) ** 2
        near = np.flatnonzero(passing & (along > 0))
        for orientation_index, degrees in enumerate(orientations):
            rotation = _rotation_about_vertical(degrees)
            turned_origin = rotation.T @ CAMERA / scale
            turned_directions = directions[near] @ rotation / scale
            for shape_index, shape in enumerate(shapes):
                distance, normals = HIT_TESTS[shape](turned_origin, turned_directions)
                hit = distance < background[near]
                on_object = near[hit]
                part = background_part.copy()
                part[on_object] = object_part
                shading = background_shading.copy()
                shading[on_object] = lambert(
                    CAMERA + distance[hit, None] * directions[on_object], normals[hit] @ rotation.T
                )
                for part_index in range(len(PARTS)):
                    per_sample = np.where(part == part_index, shading, 0.0)
                    weights[scale_index, shape_index, orientation_index, part_index] = (
                        per_sample.reshape(-1, samples).mean(axis=1)
                    )
    return weights.reshape(*weights.shape[:4], IMAGE_SIZE, IMAGE_SIZE)


def _background_term(floor_term: np.ndarray, wall_term: np.ndarray) -> np.ndarray:
    """Floor plus wall colour terms (0..255 floats), plus the 0.5 that makes truncation round."""
    return floor_term + wall_term + np.float32(0.5)


def _compose(
    background_term: np.ndarray,
    object_term: np.ndarray,
    out: np.ndarray,
    scratch: np.ndarray | None = None,
) -> None:
    """Add the object's colour term and round into the uint8 `out`. With `_background_term`, the
    one arithmetic every render uses, so a grid and single images agree bit for bit."""
    total = np.add(background_term, object_term, out=scratch)
    np.copyto(out, total, casting="unsafe")


def render_images(classes: np.ndarray, factor_sizes: Sequence[int] = FACTOR_SIZES) -> np.ndarray:
    """The images, uint8 `[n, 3, 64, 64]`, of factor class rows `[n, 6]` of the grid
    `factor_sizes` (the official one by default), rendered one at a time."""
    values = factor_values(factor_sizes)
    classes = np.asarray(classes, dtype=np.int64)
    if classes.ndim != 2 or classes.shape[1] != len(FACTOR_SIZES):
        raise ValueError(f"factor classes must be [n, 6], got {list(classes.shape)}")
    if ((classes < 0) | (classes >= [len(value) for value in values])).any():
        raise ValueError(f"factor classes outside the grid {tuple(map(len, values))}")
    colours = [hue_colours(values[axis])[:, :, None, None] for axis in range(3)]
    images = np.empty((len(classes), 3, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for index, row in enumerate(classes):
        scale, shape, orientation = (values[axis][row[axis]] for axis in (3, 4, 5))
        weights = part_weights([scale], [int(shape)], [orientation])[0, 0, 0, :, None]
        floor_term, wall_term, object_term = (
            weights[axis] * colours[axis][row[axis]] for axis in range(3)
        )
        _compose(_background_term(floor_term, wall_term), object_term, out=images[index])
    return images


def render_shapes3d_images(factor_sizes: Sequence[int] = FACTOR_SIZES) -> np.ndarray:
    """Every image of the grid `factor_sizes`, uint8 `[N, 3, 64, 64]` in mixed-radix order.

    The (scale, shape, orientation) weight maps are rendered once; each image is then the three
    hue colours weighted by them, broadcast over a whole (floor hue, wall hue) block at a time.
    """
    floor_hues, wall_hues, object_hues, scales, shapes, orientations = factor_values(factor_sizes)
    weights = part_weights(scales, shapes.astype(np.int64), orientations)
    weights = weights.reshape(-1, len(PARTS), 1, IMAGE_SIZE, IMAGE_SIZE)  # [geometry, part, ...]
    floor, wall, colour = (
        hue_colours(hues)[:, None, :, None, None] for hues in (floor_hues, wall_hues, object_hues)
    )
    object_terms = weights[:, 2] * colour  # [object hue, geometry, 3, 64, 64]
    images = empty_uint8(
        (len(floor), len(wall), len(colour), len(weights), 3, IMAGE_SIZE, IMAGE_SIZE)
    )
    scratch = np.empty_like(object_terms[0])
    for floor_index, floor_colour in enumerate(floor):
        floor_term = weights[:, 0] * floor_colour
        for wall_index, wall_colour in enumerate(wall):
            background_term = _background_term(floor_term, weights[:, 1] * wall_colour)
            for colour_index, object_term in enumerate(object_terms):
                out = images[floor_index, wall_index, colour_index]
                _compose(background_term, object_term, out=out, scratch=scratch)
    return images.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE)


def render_shapes3d(factor_sizes: Sequence[int] = FACTOR_SIZES) -> FactorDataset:
    """Procedural Shapes3D as a FactorDataset; reduced grids (e.g. 2, 2, 2, 2, 4, 3) for tests."""
    sizes = tuple(len(values) for values in factor_values(factor_sizes))
    images = torch.from_numpy(render_shapes3d_images(sizes))
    return FactorDataset("shapes3d", images, factor_grid(sizes), sizes, FACTOR_NAMES, "procedural")


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


def _chosen_source(root: Path, source: str) -> str:
    """'official' for source official, and for auto when the file or its cache is here; else
    'procedural'."""
    file, cache = root / "shapes3d" / FILE_NAME, cache_path(root, "shapes3d", "official")
    if source == "official" or (source == "auto" and (file.exists() or cache.exists())):
        return "official"
    return "procedural"


def cached_source(root: Path, source: str) -> str | None:
    """The source whose cache `load(root, source)` reads, when that cache exists; None when
    `load` would first have to read or render something."""
    chosen = _chosen_source(root, source)
    return chosen if cache_path(root, "shapes3d", chosen).exists() else None


def load(root: Path, source: str) -> FactorDataset:
    """Shapes3D by source: 'official' (the file, never a fallback), 'procedural', or 'auto'
    (official when the file or its cache is here, else procedural with a loud warning)."""
    path = root / "shapes3d" / FILE_NAME
    if _chosen_source(root, source) == "official":
        return load_cached(
            root,
            "shapes3d",
            "official",
            lambda: read_shapes3d(path),
            origin=str(path),
            compression=CACHE_COMPRESSION,
        )
    if source == "auto":
        warn_not_official(
            f"Shapes3D: {path} is missing; FALLING BACK TO THE PROCEDURAL RE-RENDERING, which is "
            f"not the official data. For the official images download {URL} into {path.parent}.",
            stacklevel=3,
        )
    return load_cached(
        root,
        "shapes3d",
        "procedural",
        render_shapes3d,
        origin="tcwae renderer",
        compression=CACHE_COMPRESSION,
    )

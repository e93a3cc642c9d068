"""Sprite videos: procedurally rendered sequences with known static and dynamic factors.

Stand-in for the LPC Sprites videos of the sequential-disentanglement literature (DSVAE, R-WAE,
S3VAE), which cannot be downloaded on these machines. Each item is a sequence of `FRAMES` = 8
RGB frames of 64x64: one coloured dSprites shape on black that moves in a straight line and spins.

Factors, in mixed-radix (row-major) order like dSprites, the last varying fastest:
- static (fixed over a sequence): shape (square, ellipse, heart), colour (six saturated hues),
  scale (linspace(0.5, 1.0, 4));
- dynamic (what changes from frame to frame): motion (eight compass directions), rotation
  (none, anticlockwise, clockwise, 15 degrees a frame).
Full grid: 3 x 6 x 4 x 8 x 3 = 1,728 sequences of 8 frames, uint8 `[1728, 8, 3, 64, 64]`:
170 MB (162 MiB) in memory. That is the whole memory budget: the grid is rendered on load
(about a second, no disk cache, nothing written), because reading 170 MB of compressed HDF5
would take longer than drawing it.

Geometry (pixel j spans [j, j + 1), so its centre is at j + 0.5). The sprite of a frame is the
dSprites shape (`tcwae.data.dsprites`) of radius `RADIUS_PX * scale`, rotated anticlockwise by
`spin * ROTATION_STEP_DEG * t` about its centre, centred at `(32, 32) + (t - 3.5) * step` where
`step` is (3, 0) pixels a frame along an axis and (2, 2) along a diagonal (x right, y up). Every
position is a whole-pixel shift of the others with the same half-pixel phase, so a sprite that
does not spin is translated exactly; the object stays within pixels 7..56.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from tcwae.data.common import DatasetError, FactorDataset, empty_uint8, factor_grid
from tcwae.data.dsprites import SHAPES, _shape_inside

NAME = "sprite_videos"
FRAMES = 8
CANVAS = 64
RADIUS_PX = 14.5
ROTATION_STEP_DEG = 15.0
FACTOR_NAMES = ("shape", "colour", "scale", "motion", "rotation")
STATIC_FACTORS = ("shape", "colour", "scale")
DYNAMIC_FACTORS = ("motion", "rotation")
COLOURS = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (64, 96, 255),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
    "cyan": (0, 255, 255),
}
# (name, dx, dy) in pixels a frame, x right and y up; axes first so reduced grids keep them.
MOTIONS = (
    ("east", 3, 0),
    ("north", 0, 3),
    ("west", -3, 0),
    ("south", 0, -3),
    ("northeast", 2, 2),
    ("northwest", -2, 2),
    ("southwest", -2, -2),
    ("southeast", 2, -2),
)
ROTATIONS = (("none", 0), ("anticlockwise", 1), ("clockwise", -1))
FACTOR_SIZES = (len(SHAPES), len(COLOURS), 4, len(MOTIONS), len(ROTATIONS))


def check_grid(factor_sizes: tuple[int, ...]) -> tuple[int, ...]:
    """The grid's sizes as ints, or a ValueError naming the allowed range of each factor."""
    limits = (len(SHAPES), len(COLOURS), None, len(MOTIONS), len(ROTATIONS))
    sizes = tuple(int(size) for size in factor_sizes)
    if len(sizes) != len(FACTOR_NAMES):
        raise ValueError(
            f"sprite_videos needs {len(FACTOR_NAMES)} factor sizes {FACTOR_NAMES}, got {sizes}"
        )
    for name, size, limit in zip(FACTOR_NAMES, sizes, limits, strict=True):
        if size < 1 or (limit is not None and size > limit):
            allowed = "any size >= 1" if limit is None else f"1..{limit}"
            raise ValueError(f"sprite_videos: {name} takes {allowed} values, got {size}")
    return sizes


def frame_centres(num_motions: int, frames: int = FRAMES) -> np.ndarray:
    """Sprite centres (x right, y up, canvas coordinates) of each motion and frame: [M, T, 2]."""
    steps = np.array([(dx, dy) for _, dx, dy in MOTIONS[:num_motions]], dtype=np.float64)
    offsets = np.arange(frames, dtype=np.float64) - (frames - 1) / 2.0
    return CANVAS / 2.0 + offsets[None, :, None] * steps[:, None, :]


def frame_angles(num_rotations: int, frames: int = FRAMES) -> np.ndarray:
    """Anticlockwise orientation in radians of each rotation and frame: [R, T]."""
    spins = np.array([spin for _, spin in ROTATIONS[:num_rotations]], dtype=np.float64)
    return np.deg2rad(ROTATION_STEP_DEG) * spins[:, None] * np.arange(frames)[None, :]


def scale_values(num_scales: int) -> np.ndarray:
    return np.linspace(0.5, 1.0, num_scales) if num_scales > 1 else np.ones(1)


def render_masks(factor_sizes: tuple[int, ...] = FACTOR_SIZES) -> np.ndarray:
    """Binary sprite masks of every (shape, scale, motion, rotation, frame): [S, Sc, M, R, T, 64,
    64] bool. Colour only paints them, so it is left out here."""
    shapes, _, scales, motions, rotations = check_grid(factor_sizes)
    centres = frame_centres(motions)  # [M, T, 2]
    angles = frame_angles(rotations)  # [R, T]
    across = np.arange(CANVAS, dtype=np.float64) + 0.5  # pixel centres, x of columns
    height = CANVAS - across  # y (up) of the pixel centres of rows 0..63
    right = across[None, None, None, None, :] - centres[:, None, :, 0, None, None]
    up = height[None, None, None, :, None] - centres[:, None, :, 1, None, None]
    cos = np.cos(angles)[None, :, :, None, None]
    sin = np.sin(angles)[None, :, :, None, None]
    # Rotating the object by +angle means sampling the unrotated shape at the point rotated back.
    u = (cos * right + sin * up) / RADIUS_PX  # [M, R, T, 64, 64]
    v = (-sin * right + cos * up) / RADIUS_PX
    masks = np.empty((shapes, scales, motions, rotations, FRAMES, CANVAS, CANVAS), dtype=bool)
    for shape_index, shape in enumerate(SHAPES[:shapes]):
        for scale_index, scale in enumerate(scale_values(scales)):
            masks[shape_index, scale_index] = _shape_inside(shape, u / scale, v / scale)
    return masks


def render_sprite_videos(factor_sizes: tuple[int, ...] = FACTOR_SIZES) -> FactorDataset:
    """The sprite-video grid (the first k values of each factor for a reduced grid) as a
    FactorDataset of uint8 `[N, 8, 3, 64, 64]` sequences in mixed-radix order."""
    sizes = check_grid(factor_sizes)
    shapes, colours, scales, motions, rotations = sizes
    masks = render_masks(sizes)
    palette = np.array(list(COLOURS.values())[:colours], dtype=np.uint8)
    images = empty_uint8((shapes, colours, scales, motions, rotations, FRAMES, 3, CANVAS, CANVAS))
    for colour_index, rgb in enumerate(palette):
        images[:, colour_index] = masks[:, :, :, :, :, None] * rgb[:, None, None]
    sequences = torch.from_numpy(images.reshape(-1, FRAMES, 3, CANVAS, CANVAS))
    return FactorDataset(NAME, sequences, factor_grid(sizes), sizes, FACTOR_NAMES, "procedural")


def small_sprite_videos(factor_sizes: tuple[int, ...] = (2, 2, 2, 4, 3)) -> FactorDataset:
    """A reduced grid for tests and smoke runs (default: 96 sequences)."""
    return render_sprite_videos(factor_sizes)


def factor_axes(names: tuple[str, ...]) -> tuple[int, ...]:
    """Column indices of `names` in the factor classes, e.g. of STATIC_FACTORS."""
    return tuple(FACTOR_NAMES.index(name) for name in names)


def memory_bytes(factor_sizes: tuple[int, ...] = FACTOR_SIZES) -> int:
    """Bytes of the uint8 sequences of a grid (the data set's whole memory footprint)."""
    return math.prod(check_grid(factor_sizes)) * FRAMES * 3 * CANVAS * CANVAS


def load(root: Path, source: str) -> FactorDataset:
    """The full grid, rendered in memory; there are no official files to read."""
    if source == "official":
        raise DatasetError(
            "sprite_videos is procedural only (it has no official files); "
            "use source='procedural' or 'auto'"
        )
    return render_sprite_videos()

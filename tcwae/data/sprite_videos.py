"""Sprite videos: procedurally rendered sequences with known static and dynamic factors.

Stand-in for the LPC Sprites videos of the sequential-disentanglement literature (DSVAE, R-WAE,
S3VAE), which cannot be downloaded on these machines. Each item is a sequence of `FRAMES` = 8
RGB frames of 64x64: one coloured dSprites shape on black that moves in a straight line and spins.

Factors, in mixed-radix (row-major) order like dSprites, the last varying fastest:
- static (fixed over a sequence): shape (square, ellipse, heart), colour (six saturated hues),
  scale (linspace(0.5, 1.0, 4));
- dynamic (what changes from frame to frame): motion (eight compass directions), rotation
  (none, anticlockwise, clockwise, 15 degrees a frame).
Full grid: 3 x 6 x 4 x 8 x 3 = 1,728 sequences of 8 frames (one per factor combination), uint8
`[1728, 8, 3, 64, 64]`: 170 MB (162 MiB) in memory, rendered on load (no disk cache).

Geometry (renderer version `RENDERER_VERSION`; pixel j spans [j, j + 1), its centre at j + 0.5;
x right, y up). The canvas is a torus: a sprite that crosses an edge re-enters at the opposite
one. Each sequence has its own nuisance, drawn once from `NUISANCE_SEED` independently of every
factor: a start centre uniform on the whole canvas [0, 64)^2 (on a grid of 1/256 pixel, so its
sub-pixel phase is uniform too) and a start angle uniform in [0, 360) degrees. Frame t
(t = 0..7) shows the dSprites shape (`tcwae.data.dsprites`) of radius `RADIUS_PX * scale`,
rotated anticlockwise by start angle + `spin * ROTATION_STEP_DEG * t`, centred at (start + t *
step) mod 64, with `step` (3, 0) pixels a frame along an axis and (2, 2) along a diagonal.
Because position and angle are uniform on the torus and the circle whatever the motion and
rotation, any single frame has the same distribution for every motion and rotation: the dynamics
are visible only across frames. Steps are whole pixels, so a sprite that does not spin is
translated exactly (`np.roll`) from frame to frame.

Split (`split_indices`): a fixed, seeded split by sequence into a training part, which models and
the judge train on, and a held-out part, which they are judged on. It holds out the same number
of sequences of every static combination (round(20%) of its dynamic combinations) and spreads
them evenly over the dynamic combinations, so every class of either code appears in both parts.
`load` returns the training part; `held_out_part` renders the other one.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch

from tcwae.data.catalog import FACTOR_NAMES as CATALOG_FACTOR_NAMES
from tcwae.data.dataset import DatasetError, FactorDataset, empty_uint8, factor_grid
from tcwae.data.dsprites import SHAPES, _shape_inside

NAME = "sprite_videos"
RENDERER_VERSION = 2  # 1: fixed start per motion, start angle 0; 2: torus, random nuisance
FRAMES = 8
CANVAS = 64
RADIUS_PX = 14.5
WINDOW = 32  # pixels drawn around a sprite's centre (it lies within 15.5 of it)
START_STEPS = 256  # start centres are multiples of 1 / START_STEPS pixel
ROTATION_STEP_DEG = 15.0
NUISANCE_SEED = 0
SPLIT_SEED = 0
HELD_OUT_FRACTION = 0.2
SPLITS = ("train", "test", "all")
FACTOR_NAMES = CATALOG_FACTOR_NAMES["sprite_videos"]
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
_RENDER_CHUNK = 128  # sequences rendered at once (about 30 MB of float64 a coordinate array)


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


def scale_values(num_scales: int) -> np.ndarray:
    return np.linspace(0.5, 1.0, num_scales) if num_scales > 1 else np.ones(1)


def nuisance(factors: np.ndarray, factor_sizes: tuple[int, ...]) -> np.ndarray:
    """Start centre (x, y) in [0, 64) and start angle in [0, 2 pi) of each sequence [n, 3].

    One draw per cell of the full grid from `NUISANCE_SEED`, looked up by the factor classes, so
    a sequence's nuisance depends on nothing but its classes (and is the same in every split)."""
    check_grid(factor_sizes)
    rng = np.random.default_rng(NUISANCE_SEED)
    cells = math.prod(FACTOR_SIZES)
    centres = rng.integers(0, CANVAS * START_STEPS, size=(cells, 2)) / START_STEPS
    angles = rng.random((cells, 1)) * 2.0 * np.pi
    draws = np.concatenate([centres, angles], axis=1)
    return draws[np.ravel_multi_index(tuple(np.asarray(factors).T), FACTOR_SIZES)]


def frame_centres(motions: np.ndarray, starts: np.ndarray, frames: int = FRAMES) -> np.ndarray:
    """Sprite centres on the torus (x right, y up) of each sequence and frame: [n, T, 2], from
    motion classes [n] and start centres [n, 2]."""
    steps = np.array([(dx, dy) for _, dx, dy in MOTIONS], dtype=np.float64)[motions]
    moved = starts[:, None, :] + np.arange(frames)[None, :, None] * steps[:, None, :]
    return np.mod(moved, CANVAS)


def frame_angles(rotations: np.ndarray, start_angles: np.ndarray, frames: int = FRAMES):
    """Anticlockwise orientation in radians of each sequence and frame: [n, T]."""
    spins = np.array([spin for _, spin in ROTATIONS], dtype=np.float64)[rotations]
    turns = np.deg2rad(ROTATION_STEP_DEG) * spins[:, None] * np.arange(frames)[None, :]
    return start_angles[:, None] + turns


def window_origin(centre: np.ndarray) -> np.ndarray:
    """First pixel index (not yet taken mod 64) of the `WINDOW`-pixel span drawn around each
    centre coordinate: the sprite (radius <= 14.5) lies within WINDOW / 2 - 1 of its centre."""
    return np.floor(centre).astype(np.int64) - WINDOW // 2


def render_masks(factors: np.ndarray, starts: np.ndarray, num_scales: int) -> np.ndarray:
    """Binary sprite masks [n, T, 64, 64] of sequences with factor classes [n, 5] (shape, colour,
    scale, motion, rotation; colour is ignored) on a grid of `num_scales` scales, and nuisance
    `starts` [n, 3] (x, y, angle).

    Each frame is drawn in a WINDOW x WINDOW span of pixels around its centre and placed on the
    torus (its rows and columns taken mod 64); a pixel is foreground when its centre lies in the
    shape. Offsets are exact in float32 (starts are multiples of 1/256 pixel)."""
    factors, starts = np.asarray(factors), np.asarray(starts, dtype=np.float64)
    centres = frame_centres(factors[:, 3], starts[:, :2])  # [n, T, 2], x right and y up
    angles = frame_angles(factors[:, 4], starts[:, 2])  # [n, T]
    heights = CANVAS - centres[..., 1]  # the centre's distance from the top edge, in rows
    columns = window_origin(centres[..., 0])[..., None] + np.arange(WINDOW)  # [n, T, W]
    rows = window_origin(heights)[..., None] + np.arange(WINDOW)
    right = (columns + 0.5 - centres[..., 0, None]).astype(np.float32)[..., None, :]
    up = (heights[..., None] - rows - 0.5).astype(np.float32)[..., :, None]
    cos = np.cos(angles).astype(np.float32)[..., None, None]
    sin = np.sin(angles).astype(np.float32)[..., None, None]
    radius = (RADIUS_PX * scale_values(num_scales))[factors[:, 2]].astype(np.float32)
    radius = radius[:, None, None, None]
    # Rotating the object by +angle means sampling the unrotated shape at the point rotated back.
    u = (cos * right + sin * up) / radius  # [n, T, W, W]
    v = (-sin * right + cos * up) / radius
    window = np.empty(u.shape, dtype=bool)
    for shape_index, shape in enumerate(SHAPES):
        chosen = factors[:, 0] == shape_index
        if chosen.any():
            window[chosen] = _shape_inside(shape, u[chosen], v[chosen])
    masks = np.zeros((*angles.shape, CANVAS, CANVAS), dtype=bool)
    sequence, frame = np.indices(angles.shape, sparse=True)
    place = (
        sequence[..., None, None],
        frame[..., None, None],
        (rows % CANVAS)[..., :, None],
        (columns % CANVAS)[..., None, :],
    )
    masks[place] = window
    return masks


def render_sequences(
    factors: np.ndarray, factor_sizes: tuple[int, ...], starts: np.ndarray | None = None
) -> np.ndarray:
    """uint8 sequences [n, T, 3, 64, 64] of factor classes [n, 5] on the grid `factor_sizes`,
    with the data set's nuisance (`nuisance`) unless `starts` [n, 3] is given."""
    sizes = check_grid(factor_sizes)
    factors = np.asarray(factors, dtype=np.int64)
    starts = nuisance(factors, sizes) if starts is None else np.asarray(starts)
    palette = np.array(list(COLOURS.values()), dtype=np.uint8)
    images = empty_uint8((len(factors), FRAMES, 3, CANVAS, CANVAS))
    for begin in range(0, len(factors), _RENDER_CHUNK):
        rows = slice(begin, begin + _RENDER_CHUNK)
        masks = render_masks(factors[rows], starts[rows], sizes[2])
        rgb = palette[factors[rows, 1]]  # [n, 3]
        images[rows] = masks[:, :, None] * rgb[:, None, :, None, None]
    return images


def split_indices(
    factor_sizes: tuple[int, ...], seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) grid indices of a fixed, seeded split by sequence, both sorted.

    With S static and D dynamic combinations (flat index static * D + dynamic), each static
    combination holds out k = max(1, round(HELD_OUT_FRACTION * D)) of its dynamic combinations:
    the static combination of seeded rank r holds out the dynamic combinations of seeded ranks
    r k, ..., r k + k - 1 (mod D), so every dynamic combination is held out floor or ceil of
    S k / D times. Needs D >= 2 (otherwise nothing would be left to train on)."""
    sizes = check_grid(factor_sizes)
    statics, dynamics = math.prod(sizes[:3]), math.prod(sizes[3:])
    if dynamics < 2:
        raise ValueError(f"a held-out split needs >= 2 dynamic combinations, grid {sizes}")
    held = max(1, round(HELD_OUT_FRACTION * dynamics))
    rng = np.random.default_rng([seed, *sizes])
    static_rank = rng.permutation(statics)
    dynamic_rank = rng.permutation(dynamics)
    offsets = (static_rank[:, None] * held - dynamic_rank[None, :]) % dynamics
    held_out = (offsets < held).reshape(-1)  # [static, dynamic] flattened in grid order
    return np.flatnonzero(~held_out), np.flatnonzero(held_out)


def render_sprite_videos(
    factor_sizes: tuple[int, ...] = FACTOR_SIZES, split: str = "all"
) -> FactorDataset:
    """The sprite-video grid (the first k values of each factor, k scales spanning 0.5..1.0) as a
    FactorDataset of uint8 `[N, 8, 3, 64, 64]` sequences in mixed-radix order: every sequence
    (`split="all"`), or the training or held-out part of `split_indices`."""
    sizes = check_grid(factor_sizes)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    factors = factor_grid(sizes)
    if split != "all":
        factors = factors[split_indices(sizes)[SPLITS.index(split)]]
    sequences = torch.from_numpy(render_sequences(factors, sizes))
    return FactorDataset(NAME, sequences, factors, sizes, FACTOR_NAMES, "procedural")


def small_sprite_videos(
    factor_sizes: tuple[int, ...] = (2, 2, 2, 4, 3), split: str = "all"
) -> FactorDataset:
    """A reduced grid for tests and smoke runs (default: all its 96 sequences)."""
    return render_sprite_videos(factor_sizes, split)


def held_out_part(dataset: FactorDataset) -> FactorDataset:
    """The held-out part of the grid that `dataset` (its training part) was taken from; a
    ValueError if `dataset` is not sprite videos or holds any held-out sequence."""
    if dataset.name != NAME or dataset.num_frames is None:
        raise ValueError(f"{dataset.name} is not {NAME}: it has no held-out part here")
    sizes = check_grid(dataset.factor_sizes)
    held_out = split_indices(sizes)[1]
    flat = np.ravel_multi_index(tuple(dataset.factor_classes.T), sizes)
    shared = np.intersect1d(flat, held_out)
    if len(shared):
        raise ValueError(
            f"{NAME}: {len(shared)} of the {len(held_out)} held-out sequences are in the data "
            "set to be judged against; train on render_sprite_videos(..., split='train')"
        )
    return render_sprite_videos(sizes, "test")


def split_digest(dataset: FactorDataset) -> str:
    """Eight hex digits naming what `dataset` holds (renderer version and factor classes): a
    cache key that changes when the training part or the renderer does."""
    digest = hashlib.sha1(f"{NAME}-r{RENDERER_VERSION}".encode())
    digest.update(np.ascontiguousarray(dataset.factor_classes, dtype=np.int64).tobytes())
    return digest.hexdigest()[:8]


def factor_axes(names: tuple[str, ...]) -> tuple[int, ...]:
    """Column indices of `names` in the factor classes, e.g. of STATIC_FACTORS."""
    return tuple(FACTOR_NAMES.index(name) for name in names)


def memory_bytes(factor_sizes: tuple[int, ...] = FACTOR_SIZES, split: str = "all") -> int:
    """Bytes of the uint8 sequences of a grid or of one part of it (the data set's memory)."""
    sizes = check_grid(factor_sizes)
    count = math.prod(sizes) if split == "all" else len(split_indices(sizes)[SPLITS.index(split)])
    return count * FRAMES * 3 * CANVAS * CANVAS


def load(root: Path, source: str) -> FactorDataset:
    """The training part of the full grid, rendered in memory (the held-out part is
    `held_out_part`); there are no official files to read."""
    if source == "official":
        raise DatasetError(
            "sprite_videos is procedural only (it has no official files); "
            "use source='procedural' or 'auto'"
        )
    return render_sprite_videos(split="train")

"""Where a ray first meets each procedural Shapes3D object, in the object's own frame (unit size,
standing on the floor at the origin): distance along the ray and surface normal, vectorised
over rays. `HIT_TESTS` is indexed like `shapes3d.SHAPES` (cube, cylinder, sphere, capsule)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CAPSULE_RADIUS = 0.32
CAPSULE_HALF_LENGTH = 0.42


def _first_hit(
    hits: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """The nearest of several (distance, normal) candidates; distance inf where none hits."""
    distances = np.stack([distance for distance, _ in hits])
    nearest = np.argmin(distances, axis=0)
    normals = np.stack([normal for _, normal in hits])
    rows = np.arange(distances.shape[1])
    return distances[nearest, rows], normals[nearest, rows]


def _valid(distance: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return np.where(keep & (distance > 0), distance, np.inf)


def _hit_sphere(
    origin: np.ndarray, directions: np.ndarray, centre: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    offset = origin - centre
    a = (directions * directions).sum(axis=-1)
    b = directions @ offset
    c = offset @ offset - radius * radius
    disc = b * b - a * c
    distance = _valid((-b - np.sqrt(np.maximum(disc, 0.0))) / a, disc >= 0)
    normals = (offset + distance[:, None] * directions) / radius
    return distance, normals


def _hit_tube(
    origin: np.ndarray,
    directions: np.ndarray,
    axis: int,
    centre: tuple[float, float],
    radius: float,
    extent: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """The outside of an open cylinder along world `axis`, between `extent` on that axis."""
    across = [index for index in range(3) if index != axis]
    offset = origin[across] - np.asarray(centre)
    flat = directions[:, across]
    a = (flat * flat).sum(axis=-1)
    b = flat @ offset
    c = offset @ offset - radius * radius
    disc = b * b - a * c
    distance = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    along = origin[axis] + distance * directions[:, axis]
    distance = _valid(distance, (disc >= 0) & (along >= extent[0]) & (along <= extent[1]))
    normals = np.zeros_like(directions)
    normals[:, across] = (offset + distance[:, None] * flat) / radius
    return distance, normals


def _hit_cube(origin: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit cube [-0.5, 0.5] x [0, 1] x [-0.5, 0.5] by the slab method."""
    low, high = np.array([-0.5, 0.0, -0.5]), np.array([0.5, 1.0, 0.5])
    with np.errstate(divide="ignore", invalid="ignore"):
        first, second = (low - origin) / directions, (high - origin) / directions
    near = np.minimum(first, second)
    entry, exit_ = near.max(axis=-1), np.maximum(first, second).min(axis=-1)
    distance = _valid(entry, entry <= exit_)
    face = near.argmax(axis=-1)
    normals = np.zeros_like(directions)
    rows = np.arange(len(directions))
    normals[rows, face] = -np.sign(directions[rows, face])
    return distance, normals


def _hit_cylinder(origin: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upright cylinder of radius 0.5 and height 1 (its base is on the floor, never seen)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        to_top = (1.0 - origin[1]) / directions[:, 1]
    top = origin[[0, 2]] + to_top[:, None] * directions[:, [0, 2]]
    top_distance = _valid(to_top, (top * top).sum(axis=-1) <= 0.25)
    top_normals = np.broadcast_to(np.array([0.0, 1.0, 0.0]), directions.shape)
    side = _hit_tube(origin, directions, axis=1, centre=(0.0, 0.0), radius=0.5, extent=(0.0, 1.0))
    return _first_hit([side, (top_distance, top_normals)])


def _hit_capsule(origin: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A capsule lying along x: a tube between two hemispheres, resting on the floor."""
    radius, half = CAPSULE_RADIUS, CAPSULE_HALF_LENGTH
    tube = _hit_tube(
        origin, directions, axis=0, centre=(radius, 0.0), radius=radius, extent=(-half, half)
    )
    ends = [
        _hit_sphere(origin, directions, np.array([x, radius, 0.0]), radius) for x in (-half, half)
    ]
    return _first_hit([tube, *ends])


def _hit_unit_sphere(origin: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _hit_sphere(origin, directions, np.array([0.0, 0.5, 0.0]), 0.5)


HIT_TESTS = (_hit_cube, _hit_cylinder, _hit_unit_sphere, _hit_capsule)

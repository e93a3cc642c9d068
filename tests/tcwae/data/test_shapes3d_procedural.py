"""Procedural Shapes3D: the official factor grid and order, which pixels each factor changes, and
the `procedural` / `auto` sources. Only small sub-grids are rendered here."""

import colorsys
import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tcwae.data import DatasetError, check_dataset, load_dataset
from tcwae.data import shapes3d as module
from tcwae.data import shapes3d_picture as picture
from tcwae.data.cache import cache_path

# Every factor at least twice, with different sizes so that a transposed axis would show.
from tcwae.data.dataset import mixed_radix_strides

SIZES = (3, 2, 5, 2, 4, 3)
CUBE, CYLINDER, SPHERE, CAPSULE = range(4)


@pytest.fixture(scope="module")
def small():
    return module.render_shapes3d(SIZES)


@pytest.fixture(scope="module")
def grid(small) -> np.ndarray:
    """Images as [floor, wall, object hue, scale, shape, orientation, 3, 64, 64] (grid order)."""
    return small.images.numpy().reshape(*SIZES, 3, 64, 64).astype(np.int16)


@pytest.fixture(scope="module")
def parts() -> np.ndarray:
    """Where floor, wall and object show, bool [scale, shape, orientation, part, 64, 64]."""
    _, _, _, scales, shapes, orientations = module.factor_values(SIZES)
    return module.part_weights(scales, shapes.astype(int), orientations) > 0


def changed(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return (first != second).any(axis=-3)


def test_official_grid_values_and_order() -> None:
    floor, wall, hue, scale, shape, orientation = module.factor_values()
    for hues in (floor, wall, hue):
        np.testing.assert_allclose(hues, np.arange(10) / 10)
    np.testing.assert_allclose(scale, np.linspace(0.75, 1.25, 8))
    np.testing.assert_array_equal(shape, [0, 1, 2, 3])
    np.testing.assert_allclose(orientation, np.linspace(-30, 30, 15))
    # floor hue slowest, orientation fastest: the strides of the official 480,000 images
    np.testing.assert_array_equal(
        mixed_radix_strides(module.FACTOR_SIZES), [48000, 4800, 480, 60, 15, 1]
    )
    assert module.SHAPES == ("cube", "cylinder", "sphere", "capsule")


def test_reduced_grid_is_stored_in_mixed_radix_order(small) -> None:
    assert small.factor_sizes == SIZES and small.factor_names == module.FACTOR_NAMES
    assert small.images.shape == (720, 3, 64, 64) and small.images.dtype == torch.uint8
    assert small.source == "procedural" and small.name == "shapes3d"
    factors = small.sample_factors(40, np.random.default_rng(0))
    expected = factors @ np.array([240, 120, 24, 12, 3, 1])
    np.testing.assert_array_equal(small.index_of(factors), expected)
    np.testing.assert_array_equal(small.factor_classes[expected], factors)
    # each image, rendered alone from its factor classes, is the one stored at its index
    rendered = module.render_images(factors[:8], SIZES)
    np.testing.assert_array_equal(small.observations(factors[:8]), rendered / np.float32(255))


def test_scene_is_wall_above_floor_with_the_object_in_the_middle(parts) -> None:
    floor, wall, thing = parts[..., 0, :, :], parts[..., 1, :, :], parts[..., 2, :, :]
    assert wall[..., :16, :].all() and floor[..., -8:, :].all()
    assert not thing[..., :, :10].any() and not thing[..., :, -10:].any()
    assert (thing.sum(axis=(-1, -2)) > 100).all(), "every object is clearly visible"
    rows = np.nonzero(thing.any(axis=(0, 1, 2, 4)))[0]
    assert 12 < rows.min() and rows.max() < 60


def test_hues_are_the_factor_values_in_hsv(grid) -> None:
    floor, wall, hue = (module.factor_values(SIZES)[axis] for axis in range(3))
    top_left, bottom_left = grid[..., :, 2, 2], grid[..., :, 62, 2]
    for index, value in enumerate(floor):
        assert_hue(bottom_left[index], value)
    for index, value in enumerate(wall):
        assert_hue(top_left[:, index], value)
    cube_front = module.render_images([[0, 0, axis, 1, CUBE, 1] for axis in range(5)], SIZES)
    for index, value in enumerate(hue):
        assert_hue(cube_front[index, :, 44, 32], value)


def assert_hue(pixels: np.ndarray, hue: float) -> None:
    for rgb in np.reshape(pixels, (-1, 3)):
        measured, saturation, _ = colorsys.rgb_to_hsv(*(rgb / 255))
        assert saturation > 0.98 and abs((measured - hue + 0.5) % 1 - 0.5) < 0.01


@pytest.mark.parametrize(("axis", "part"), [(0, 0), (1, 1), (2, 2)], ids=list(module.PARTS))
def test_each_hue_changes_its_own_part_and_nothing_else(grid, parts, axis, part) -> None:
    moved = np.moveaxis(grid, axis, 0)  # [hue, the other five factors..., 3, 64, 64]
    masks = parts[..., part, :, :]  # [scale, shape, orientation, 64, 64]
    for first in range(SIZES[axis] - 1):
        difference = changed(moved[first], moved[first + 1])
        np.testing.assert_array_equal(difference, np.broadcast_to(masks, difference.shape))


@pytest.mark.parametrize("axis", [3, 4, 5], ids=["scale", "shape", "orientation"])
def test_scale_shape_and_orientation_change_object_pixels_only(grid, parts, axis) -> None:
    objects = np.moveaxis(parts[..., 2, :, :], axis - 3, 0)  # [this factor, others..., 64, 64]
    moved = np.moveaxis(grid, axis, 0)
    for first in range(SIZES[axis] - 1):
        difference = changed(moved[first], moved[first + 1])
        either = objects[first] | objects[first + 1]
        assert not (difference & ~either).any(), "a pixel outside both objects changed"
        if axis != 5:
            assert difference.any(axis=(-1, -2)).all()


def test_cube_and_capsule_turn_while_sphere_and_cylinder_are_symmetric(grid) -> None:
    by_shape = np.moveaxis(grid, 4, 0)  # [shape, floor, wall, hue, scale, orientation, ...]
    for shape in (CUBE, CAPSULE):
        turns = changed(by_shape[shape][..., 0, :, :, :], by_shape[shape][..., -1, :, :, :])
        assert (turns.sum(axis=(-1, -2)) > 20).all()
    for shape in (SPHERE, CYLINDER):
        images = by_shape[shape]
        spread = np.abs(images - images[..., :1, :, :, :]).max()
        assert spread <= 1, "only rounding may differ"


def test_larger_scale_shows_more_object(parts) -> None:
    coverage = parts[..., 2, :, :].sum(axis=(-1, -2))  # [scale, shape, orientation]
    assert (np.diff(coverage, axis=0) > 0).all()


def test_shapes_have_different_silhouettes(parts) -> None:
    silhouettes = parts[0, :, 1, 2].reshape(4, -1)  # smallest scale, orientation 0
    for first in range(4):
        for second in range(first + 1, 4):
            assert (silhouettes[first] != silhouettes[second]).sum() > 10


def test_bad_grid_sizes_and_classes_are_refused() -> None:
    with pytest.raises(ValueError, match="6 counts between 1 and"):
        module.factor_values((10, 10, 10, 8, 5, 15))
    with pytest.raises(ValueError, match="outside the grid"):
        module.render_images([[0, 0, 0, 0, 0, 15]])


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TCWAE_DATA", str(tmp_path))
    return tmp_path


@pytest.fixture
def cheap_renderer(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the procedural source render a reduced grid, and count the renders."""
    calls: list[int] = []
    original = module.render_shapes3d

    def render():
        calls.append(1)
        return original((2, 2, 2, 1, 2, 2))

    monkeypatch.setattr(module, "render_shapes3d", render)
    return calls


def test_auto_falls_back_to_procedural_loudly(data_root, cheap_renderer, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        with pytest.warns(RuntimeWarning, match="FALLING BACK TO THE PROCEDURAL") as warned:
            dataset = load_dataset("shapes3d")
    message = str(warned[0].message)
    assert module.URL in message and str(data_root / "shapes3d") in message
    assert "FALLING BACK" in caplog.text
    assert dataset.source == "procedural" and cheap_renderer == [1]
    with h5py.File(cache_path(data_root, "shapes3d", "procedural"), "r") as cache:
        assert cache["images"].compression == module.CACHE_COMPRESSION
    with pytest.warns(RuntimeWarning, match="FALLING BACK"):
        again = load_dataset("shapes3d")
    assert cheap_renderer == [1], "the second load reads the procedural cache"
    assert again.images.equal(dataset.images) and again.source == "procedural"


def test_procedural_source_ignores_the_official_file(data_root, cheap_renderer) -> None:
    path = data_root / "shapes3d" / module.FILE_NAME
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not read")
    assert load_dataset("shapes3d", source="procedural").source == "procedural"
    with pytest.raises(DatasetError, match="unreadable or corrupt"):
        load_dataset("shapes3d", source="auto")


def test_launch_check_reads_the_cache_that_auto_and_procedural_would_load(
    data_root, cheap_renderer
) -> None:
    """`check_dataset` judges the procedural cache by its header (no second render) for the
    sources that load it, and reports a damaged one as the load would."""
    assert module.cached_source(data_root, "auto") is None
    with pytest.warns(RuntimeWarning, match="FALLING BACK"):  # nothing cached: renders once
        check_dataset("shapes3d", source="auto")
    assert cheap_renderer == [1]
    for source in ("auto", "procedural"):
        assert module.cached_source(data_root, source) == "procedural"
        check_dataset("shapes3d", source=source)
    assert module.cached_source(data_root, "official") is None
    assert cheap_renderer == [1], "a cached data set is checked without rendering it again"
    path = cache_path(data_root, "shapes3d", "procedural")
    path.write_bytes(b"\x89HDF" * 50)
    with pytest.raises(DatasetError, match="unreadable or corrupt"):
        check_dataset("shapes3d", source="procedural")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_procedural_cache_is_one_line_with_the_fix(
    data_root, cheap_renderer, damage
) -> None:
    load_dataset("shapes3d", source="procedural")
    path = cache_path(data_root, "shapes3d", "procedural")
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2] if damage == "truncated" else b"\x89HDF" * 50)
    with pytest.raises(DatasetError, match="unreadable or corrupt") as raised:
        load_dataset("shapes3d", source="procedural")
    message = str(raised.value)
    assert "\n" not in message and str(path) in message and f"delete {path}" in message
    assert cheap_renderer == [1], "a damaged cache is reported, never silently rebuilt"


def test_picture_rows_show_every_shape_and_sweep_one_factor_each() -> None:
    rows = dict(picture.sweeps())
    shapes = rows.pop(next(label for label in rows if label.startswith("shape")))
    np.testing.assert_array_equal(shapes[:, 4], np.arange(4))
    assert len(rows) == 6
    for label, classes in rows.items():
        varied = np.flatnonzero((classes != picture.TYPICAL).any(axis=0))
        axis = module.FACTOR_NAMES.index(label.split("\n")[0].replace(" ", "_"))
        assert axis in varied and set(varied) <= {axis, 4}
        assert len(np.unique(classes[:, axis])) == len(classes) > 1

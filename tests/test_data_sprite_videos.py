"""Sprite videos: every frame shows its factors (place, colour, spin, size), grid order, loading."""

import numpy as np
import pytest
import torch

from tcwae.data import DatasetError, load_dataset, render_sprite_videos, small_sprite_videos
from tcwae.data import sprite_videos as module

GRID = (3, 3, 2, 8, 3)  # every shape, motion and rotation; 432 sequences


@pytest.fixture(scope="module")
def videos():
    return render_sprite_videos(GRID)


def grid_sequences(dataset) -> np.ndarray:
    """Sequences as [shape, colour, scale, motion, rotation, T, 3, 64, 64] (valid in grid order)."""
    return dataset.images.numpy().reshape(*dataset.factor_sizes, *dataset.images.shape[1:])


def centroid_xy(masks: np.ndarray) -> np.ndarray:
    """Centre of mass of boolean masks [..., 64, 64] as (x right, y up) canvas coordinates."""
    mass = masks.sum(axis=(-1, -2))
    centres = np.arange(64) + 0.5
    x = (masks.sum(axis=-2) * centres).sum(axis=-1) / mass
    y = (masks.sum(axis=-1) * (64 - centres)).sum(axis=-1) / mass
    return np.stack([x, y], axis=-1)


def major_axis_degrees(mask: np.ndarray) -> float:
    """Orientation (anticlockwise from x, in (-90, 90]) of a mask's principal axis."""
    rows, cols = np.nonzero(mask)
    x, y = cols - cols.mean(), -(rows - rows.mean())
    return float(np.degrees(0.5 * np.arctan2(2 * (x * y).mean(), (x * x).mean() - (y * y).mean())))


def test_grid_is_in_mixed_radix_order_with_sequences_of_eight_rgb_frames(videos) -> None:
    assert videos.factor_names == ("shape", "colour", "scale", "motion", "rotation")
    assert videos.factor_sizes == GRID and len(videos) == 432
    assert videos.images.shape == (432, 8, 3, 64, 64) and videos.images.dtype == torch.uint8
    assert (videos.num_frames, videos.num_channels, videos.source) == (8, 3, "procedural")
    factors = videos.sample_factors(200, np.random.default_rng(0))
    expected = factors @ np.array([144, 48, 24, 3, 1])
    np.testing.assert_array_equal(videos.index_of(factors), expected)
    np.testing.assert_array_equal(videos.factor_classes[expected], factors)
    observed = videos.observations(factors[:3])
    assert observed.shape == (3, 8, 3, 64, 64) and observed.dtype == np.float32
    np.testing.assert_array_equal(observed, videos.images[expected[:3]].numpy() / np.float32(255))


def test_each_frames_sprite_is_centred_where_its_motion_says(videos) -> None:
    # Square and ellipse are point-symmetric, so the centre of mass is the sprite's centre at any
    # rotation; the heart's is not, so it is checked through exact translation below.
    foreground = grid_sequences(videos).max(axis=-3) > 0
    expected = module.frame_centres(8)  # [motion, T, 2]
    for shape in (0, 1):
        found = centroid_xy(foreground[shape])  # [colour, scale, motion, rotation, T, 2]
        target = np.broadcast_to(expected[None, None, :, None], found.shape)
        np.testing.assert_allclose(found, target, atol=1e-9)
    east, north = expected[0], expected[1]
    assert np.all(np.diff(east[:, 0]) == 3) and np.all(np.diff(north[:, 1]) == 3)


def test_a_sprite_that_does_not_spin_is_translated_exactly(videos) -> None:
    still = grid_sequences(videos)[:, :, :, :, 0]  # rotation 'none': [S, C, Sc, M, T, 3, 64, 64]
    centres = module.frame_centres(8)
    for motion in range(8):
        shift = (centres[motion] - centres[motion, 0]).astype(int)  # whole pixels (x, y up)
        for t in range(1, 8):
            moved = np.roll(still[:, :, :, motion, 0], (-shift[t, 1], shift[t, 0]), axis=(-2, -1))
            np.testing.assert_array_equal(still[:, :, :, motion, t], moved)


def test_every_foreground_pixel_has_the_colour_of_its_colour_factor(videos) -> None:
    sequences = grid_sequences(videos)
    palette = np.array(list(module.COLOURS.values()))
    for colour in range(GRID[1]):
        pixels = np.moveaxis(sequences[:, colour], -3, -1).reshape(-1, 3)
        foreground = pixels.any(axis=1)
        assert 0.01 < foreground.mean() < 0.3
        np.testing.assert_array_equal(
            pixels[foreground], np.tile(palette[colour], (foreground.sum(), 1))
        )


def test_rotation_turns_the_ellipse_fifteen_degrees_a_frame_each_way(videos) -> None:
    ellipse = grid_sequences(videos)[1, 0, -1, 0].max(axis=-3) > 0  # [rotation, T, 64, 64]
    for rotation, spin in enumerate((0, 1, -1)):
        for t in range(6):  # up to 75 degrees, inside the axis angle's (-90, 90] range
            angle = major_axis_degrees(ellipse[rotation, t])
            assert angle == pytest.approx(15 * spin * t, abs=1.5), (rotation, t)


def test_larger_scale_draws_more_foreground(videos) -> None:
    counts = (grid_sequences(videos).max(axis=-3) > 0).sum(axis=(-1, -2))
    assert (np.diff(counts, axis=2) > 0).all()


def test_every_sprite_stays_inside_the_canvas_with_a_background_border() -> None:
    full = module.render_masks((3, 1, 4, 8, 3))  # every shape, scale, motion, rotation
    for border in (full[..., 0, :], full[..., 63, :], full[..., :, 0], full[..., :, 63]):
        assert not border.any()
    assert full.any(axis=(-1, -2)).all(), "every frame shows its sprite"


def test_rendering_is_deterministic_and_the_full_grid_fits_its_stated_budget() -> None:
    assert small_sprite_videos().images.equal(small_sprite_videos().images)
    full = load_dataset("sprite_videos", source="procedural")
    assert full.factor_sizes == module.FACTOR_SIZES == (3, 6, 4, 8, 3)
    assert full.images.shape == (1728, 8, 3, 64, 64)
    assert full.images.numel() == module.memory_bytes() == 169_869_312
    assert load_dataset("sprite_videos").images.equal(full.images)  # 'auto' is the same render
    reduced = render_sprite_videos((3, 3, 2, 8, 3))
    np.testing.assert_array_equal(
        grid_sequences(reduced)[:, :, :, :, :],
        grid_sequences(full)[:, :3][:, :, [0, 3]],
    )


def test_bad_requests_are_one_line_errors() -> None:
    with pytest.raises(DatasetError, match="procedural only") as raised:
        load_dataset("sprite_videos", source="official")
    assert "\n" not in str(raised.value)
    with pytest.raises(ValueError, match="colour takes 1..6 values, got 7"):
        render_sprite_videos((1, 7, 1, 1, 1))
    with pytest.raises(ValueError, match="needs 5 factor sizes"):
        render_sprite_videos((1, 1, 1))

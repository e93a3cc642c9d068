"""Sprite videos: every frame shows its factors (place, colour, spin, size), no single frame shows
the motion, the held-out split shares no sequence with the training part, grid order, loading."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from science_helpers import one_thread

from tcwae.data import DatasetError, load_dataset, render_sprite_videos, small_sprite_videos
from tcwae.data import sprite_videos as module
from tcwae.data.dataset import factor_grid

GRID = (3, 3, 2, 8, 3)  # every shape, motion and rotation; 432 sequences


@pytest.fixture(scope="module")
def videos():
    return render_sprite_videos(GRID)


def grid_sequences(dataset) -> np.ndarray:
    """Sequences as [shape, colour, scale, motion, rotation, T, 3, 64, 64] (valid in grid order)."""
    return dataset.images.numpy().reshape(*dataset.factor_sizes, *dataset.images.shape[1:])


def recentred(masks: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks [..., 64, 64] rolled on the torus so that each expected centre [..., 2] (x right, y
    up) moves to within a pixel of the canvas middle, and the centres after the roll."""
    shift_x = 32 - np.floor(centres[..., 0]).astype(int)
    shift_rows = np.floor(centres[..., 1]).astype(int) - 32  # y up: rows roll the other way
    flat = masks.reshape(-1, 64, 64)
    rolled = np.stack(
        [
            np.roll(mask, (int(r), int(c)), axis=(0, 1))
            for mask, r, c in zip(flat, shift_rows.reshape(-1), shift_x.reshape(-1), strict=True)
        ]
    ).reshape(masks.shape)
    moved = np.stack([centres[..., 0] + shift_x, centres[..., 1] - shift_rows], axis=-1)
    return rolled, moved


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


def expected_centres(dataset) -> np.ndarray:
    """frame_centres of every sequence of `dataset`: [n, T, 2]."""
    factors = dataset.factor_classes
    starts = module.nuisance(factors, dataset.factor_sizes)
    return module.frame_centres(factors[:, 3], starts[:, :2])


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


def test_each_frames_sprite_is_centred_where_its_start_and_motion_say(videos) -> None:
    # Square and ellipse are point-symmetric: up to pixelisation (a sub-pixel phase, any angle)
    # the centre of mass is the sprite's centre, wherever it wraps around the torus.
    foreground = videos.images.numpy().max(axis=2) > 0  # [n, T, 64, 64]
    centres = expected_centres(videos)
    point_symmetric = videos.factor_classes[:, 0] < 2
    rolled, moved = recentred(foreground[point_symmetric], centres[point_symmetric])
    np.testing.assert_allclose(centroid_xy(rolled), moved, atol=0.5)
    steps = np.diff(centres, axis=1) % 64
    motions = videos.factor_classes[:, 3]
    for motion, step in ((0, [3.0, 0.0]), (5, [62.0, 2.0])):  # east; northwest, wrapped
        chosen = steps[motions == motion]
        np.testing.assert_array_equal(chosen, np.broadcast_to(step, chosen.shape))


def test_a_sprite_that_does_not_spin_is_translated_exactly_around_the_torus(videos) -> None:
    still = videos.factor_classes[:, 4] == 0
    sequences = videos.images.numpy()[still]
    for sequence, motion in zip(sequences, videos.factor_classes[still, 3], strict=True):
        _, dx, dy = module.MOTIONS[motion]
        for t in range(1, 8):
            moved = np.roll(sequence[0], (-dy * t, dx * t), axis=(-2, -1))
            np.testing.assert_array_equal(sequence[t], moved)


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
    chosen = np.flatnonzero((videos.factor_classes[:, 0] == 1) & (videos.factor_classes[:, 2] == 1))
    foreground = videos.images.numpy()[chosen].max(axis=2) > 0
    rolled, _ = recentred(foreground, expected_centres(videos)[chosen])
    for sequence, index in zip(rolled, chosen, strict=True):
        spin = (0, 1, -1)[videos.factor_classes[index, 4]]
        start = major_axis_degrees(sequence[0])
        for t in range(1, 8):
            turned = (major_axis_degrees(sequence[t]) - start - 15 * spin * t + 90) % 180 - 90
            assert abs(turned) < 2.0, (index, t)


def test_larger_scale_draws_more_foreground(videos) -> None:
    counts = (grid_sequences(videos).max(axis=-3) > 0).sum(axis=(-1, -2))
    assert (np.diff(counts, axis=2) > 0).all()


def test_every_frame_shows_its_whole_sprite_wherever_it_wraps() -> None:
    factors = factor_grid((3, 1, 4, 8, 3))
    masks = module.render_masks(factors, module.nuisance(factors, (3, 1, 4, 8, 3)), 4)
    counts = masks.sum(axis=(-1, -2))
    assert (counts > 0).all()
    area = counts.mean(axis=1, keepdims=True)  # the sprite's pixels vary only by pixelisation
    assert (np.abs(counts - area) <= 0.1 * area + 3).all()


def test_split_is_fixed_disjoint_complete_and_balanced_over_both_codes() -> None:
    for sizes in (module.FACTOR_SIZES, (2, 2, 2, 4, 3), (1, 6, 1, 4, 3)):
        train, held_out = module.split_indices(sizes)
        assert not np.intersect1d(train, held_out).size
        assert sorted(np.concatenate([train, held_out]).tolist()) == list(range(np.prod(sizes)))
        again = module.split_indices(sizes)
        assert np.array_equal(again[1], held_out)
        dynamics = sizes[3] * sizes[4]
        static_class, dynamic_class = np.divmod(held_out, dynamics)
        per_static = np.bincount(static_class, minlength=np.prod(sizes[:3]))
        assert (per_static == max(1, round(0.2 * dynamics))).all()
        per_dynamic = np.bincount(dynamic_class, minlength=dynamics)
        assert per_dynamic.max() - per_dynamic.min() <= 1 and per_dynamic.min() >= 1
    train, held_out = module.split_indices(module.FACTOR_SIZES)
    assert (len(train), len(held_out)) == (1368, 360)
    assert not np.array_equal(module.split_indices(module.FACTOR_SIZES, seed=1)[1], held_out)


def test_the_two_parts_share_no_sequence_and_the_held_out_part_refuses_training_data() -> None:
    train = small_sprite_videos(split="train")
    test = module.held_out_part(train)
    flat = [
        np.ravel_multi_index(tuple(part.factor_classes.T), part.factor_sizes)
        for part in (train, test)
    ]
    assert not np.intersect1d(*flat).size and len(train) + len(test) == 96
    pixels = [part.images.flatten(1).numpy() for part in (train, test)]
    assert not (pixels[0][:, None, :] == pixels[1][None, :, :]).all(axis=2).any()
    whole = small_sprite_videos()
    np.testing.assert_array_equal(whole.images[flat[1]].numpy(), test.images.numpy())
    with pytest.raises(ValueError, match="held-out sequences are in the data set"):
        module.held_out_part(whole)


def frame_motion_accuracy(sizes, frame: int, starts=None) -> float:
    """Held-out accuracy of a logistic regression that predicts the motion from frame `frame`
    alone (foreground pooled to 16x16), trained on the training part of the grid `sizes`."""
    factors = factor_grid(sizes)
    if starts is not None:
        starts = starts(factors)
    images = module.render_sequences(factors, sizes, starts)
    pooled = F.avg_pool2d(torch.from_numpy(images[:, frame].max(axis=1) > 0).float()[:, None], 4)
    features, motion = pooled.flatten(1), torch.from_numpy(factors[:, 3])
    train, held_out = (torch.from_numpy(part) for part in module.split_indices(sizes))
    torch.manual_seed(0)
    model = torch.nn.Linear(features.shape[1], sizes[3])
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        loss = F.cross_entropy(model(features[train]), motion[train])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return float((model(features[held_out]).argmax(1) == motion[held_out]).float().mean())


def motion_dependent_starts(factors: np.ndarray) -> np.ndarray:
    """Renderer version 1's nuisance: the path centred on the canvas, so each motion starts at
    its own place, and start angle 0 (the leak this data set no longer has)."""
    steps = np.array([(dx, dy) for _, dx, dy in module.MOTIONS])[factors[:, 3]]
    centres = 32.0 - 3.5 * steps
    return np.concatenate([centres, np.zeros((len(factors), 1))], axis=1)


def test_no_single_frame_predicts_the_motion() -> None:
    sizes = (3, 2, 4, 8, 3)  # 576 sequences, 120 held out: chance 0.125, standard error 0.03
    with one_thread():
        for frame in (0, 7):
            assert frame_motion_accuracy(sizes, frame) < 0.125 + 0.1, frame
        # The same classifier reads the motion off frame 1 when the start depends on it.
        assert frame_motion_accuracy(sizes, 0, motion_dependent_starts) > 0.9


def test_rendering_is_deterministic_and_the_training_part_fits_its_stated_budget() -> None:
    assert small_sprite_videos().images.equal(small_sprite_videos().images)
    train = load_dataset("sprite_videos", source="procedural")
    assert train.factor_sizes == module.FACTOR_SIZES == (3, 6, 4, 8, 3)
    assert train.images.shape == (1368, 8, 3, 64, 64)
    assert train.images.numel() == module.memory_bytes(split="train") == 134_479_872
    assert module.memory_bytes() == 169_869_312
    full = render_sprite_videos()
    np.testing.assert_array_equal(
        full.images[module.split_indices(module.FACTOR_SIZES)[0]].numpy(), train.images.numpy()
    )
    reduced = render_sprite_videos((3, 2, 4, 8, 3))  # the first values of each factor
    np.testing.assert_array_equal(grid_sequences(reduced), grid_sequences(full)[:, :2])


def test_bad_requests_are_one_line_errors() -> None:
    with pytest.raises(DatasetError, match="procedural only") as raised:
        load_dataset("sprite_videos", source="official")
    assert "\n" not in str(raised.value)
    with pytest.raises(ValueError, match="colour takes 1..6 values, got 7"):
        render_sprite_videos((1, 7, 1, 1, 1))
    with pytest.raises(ValueError, match="needs 5 factor sizes"):
        render_sprite_videos((1, 1, 1))
    with pytest.raises(ValueError, match="split must be one of"):
        render_sprite_videos((1, 1, 1, 2, 1), split="validation")
    with pytest.raises(ValueError, match="needs >= 2 dynamic combinations"):
        module.split_indices((2, 1, 1, 1, 1))

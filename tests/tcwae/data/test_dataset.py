"""FactorDataset: construction checks, mixed-radix lookup, sampling, observations."""

import numpy as np
import pytest
import torch

from tcwae.data import DatasetError, FactorDataset
from tcwae.data.dataset import factor_grid

SIZES = (2, 3, 4)


def tagged_images(count: int, channels: int = 1) -> torch.Tensor:
    """Images whose every pixel holds the image's own index (mod 256), to see which one we got."""
    tags = torch.arange(count, dtype=torch.int64) % 256
    return tags.to(torch.uint8).view(count, 1, 1, 1).expand(count, channels, 64, 64).contiguous()


def grid_dataset() -> FactorDataset:
    classes = factor_grid(SIZES)
    return FactorDataset("toy", tagged_images(len(classes)), classes, SIZES, ("a", "b", "c"), "x")


def test_grid_order_index_is_mixed_radix_arithmetic() -> None:
    dataset = grid_dataset()
    factors = np.array([[0, 0, 0], [1, 2, 3], [1, 0, 2], [0, 1, 0]])
    expected = factors[:, 0] * 12 + factors[:, 1] * 4 + factors[:, 2]
    np.testing.assert_array_equal(dataset.index_of(factors), expected)
    assert dataset.index_of(factors).dtype == np.int64
    assert (len(dataset), dataset.num_factors, dataset.num_channels) == (24, 3, 1)
    assert dataset.factor_sizes == SIZES and dataset.factor_names == ("a", "b", "c")


def test_sample_factors_is_uniform_over_the_grid_and_seeded() -> None:
    dataset = grid_dataset()
    factors = dataset.sample_factors(12_000, np.random.default_rng(0))
    assert factors.shape == (12_000, 3) and factors.dtype == np.int64
    counts = np.bincount(dataset.index_of(factors), minlength=24)
    assert counts.min() > 400 and counts.max() < 600  # 500 expected per combination
    again = dataset.sample_factors(12_000, np.random.default_rng(0))
    np.testing.assert_array_equal(factors, again)


def test_observations_are_float_images_in_unit_range() -> None:
    dataset = grid_dataset()
    factors = np.array([[1, 2, 3], [0, 0, 1]])
    observations = dataset.observations(factors)
    assert observations.dtype == np.float32 and observations.shape == (2, 1, 64, 64)
    np.testing.assert_allclose(observations[:, 0, 0, 0], np.array([23, 1]) / 255.0)


def test_float_batch_takes_any_integer_indices() -> None:
    dataset = grid_dataset()
    for indices in (torch.tensor([5, 0, 23]), np.array([5, 0, 23]), [5, 0, 23]):
        batch = dataset.float_batch(indices)
        assert batch.dtype == torch.float32 and batch.shape == (3, 1, 64, 64)
        np.testing.assert_allclose(batch[:, 0, 3, 3].numpy(), np.array([5, 0, 23]) / 255.0)


def test_shuffled_order_is_found_through_the_lookup() -> None:
    classes = factor_grid(SIZES)
    order = np.random.default_rng(1).permutation(len(classes))
    images = tagged_images(len(classes))[torch.from_numpy(order)]
    dataset = FactorDataset("toy", images, classes[order], SIZES, ("a", "b", "c"), "x")
    factors = factor_grid(SIZES)
    found = dataset.images[torch.from_numpy(dataset.index_of(factors)), 0, 0, 0].numpy()
    np.testing.assert_array_equal(found, np.arange(24))


def test_unobserved_factor_maps_to_the_first_stored_image() -> None:
    """Like smallNORB's instance: two stored images per observed combination."""
    classes = np.concatenate([factor_grid(SIZES), factor_grid(SIZES)])
    dataset = FactorDataset("toy", tagged_images(48), classes, SIZES, ("a", "b", "c"), "x")
    np.testing.assert_array_equal(dataset.index_of(factor_grid(SIZES)), np.arange(24))
    assert dataset.sample_factors(5, np.random.default_rng(0)).shape == (5, 3)


def test_partial_grid_samples_only_observed_combinations() -> None:
    classes = factor_grid(SIZES)[::5]
    dataset = FactorDataset("toy", tagged_images(len(classes)), classes, SIZES, "abc", "x")
    sampled = dataset.sample_factors(500, np.random.default_rng(2))
    observed = {tuple(row) for row in classes.tolist()}
    assert {tuple(row) for row in sampled.tolist()} == observed
    with pytest.raises(DatasetError, match=r"\[0, 0, 1\] does not occur"):
        dataset.index_of(np.array([[0, 0, 1]]))


def test_dataset_without_factors_refuses_factor_queries() -> None:
    dataset = FactorDataset(
        "faces", tagged_images(5, 3), np.zeros((5, 0), np.int64), (), (), "official"
    )
    assert dataset.factor_sizes == () and dataset.num_factors == 0 and dataset.num_channels == 3
    assert dataset.factor_classes.shape == (5, 0)
    with pytest.raises(DatasetError, match="faces has no ground-truth factors"):
        dataset.sample_factors(3, np.random.default_rng(0))
    with pytest.raises(DatasetError, match="no ground-truth factors"):
        dataset.index_of(np.zeros((3, 0), dtype=np.int64))


@pytest.mark.parametrize(
    ("images", "classes", "message"),
    [
        (torch.zeros(24, 1, 64, 64), factor_grid(SIZES), "torch.uint8"),
        (torch.zeros(24, 1, 32, 32, dtype=torch.uint8), factor_grid(SIZES), r"\[N, 1 or 3, 64"),
        (torch.zeros(24, 2, 64, 64, dtype=torch.uint8), factor_grid(SIZES), r"\[N, 1 or 3, 64"),
        (tagged_images(24), factor_grid(SIZES)[:, :2], r"shape \[24, 3\]"),
        (tagged_images(24), factor_grid(SIZES) + 1, "outside the factor sizes"),
        (tagged_images(24), factor_grid(SIZES) * 0.5, "must be integers"),
    ],
)
def test_constructor_rejects_inconsistent_arrays(images, classes, message) -> None:
    with pytest.raises(ValueError, match=message):
        FactorDataset("toy", images, classes, SIZES, ("a", "b", "c"), "x")


def test_index_of_rejects_bad_queries() -> None:
    dataset = grid_dataset()
    with pytest.raises(ValueError, match=r"shape \[n, 3\]"):
        dataset.index_of(np.zeros((4, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="outside the sizes"):
        dataset.index_of(np.array([[2, 0, 0]]))


def test_pickled_dataset_maps_its_images_out_of_band_without_a_copy():
    import pickle

    from tcwae.data import small_dsprites

    dataset = small_dsprites((3, 2, 2, 4, 4))
    buffers = []
    payload = pickle.dumps(dataset, protocol=5, buffer_callback=buffers.append)
    assert len(payload) < 10_000 and sum(b.raw().nbytes for b in buffers) >= dataset.images.numel()
    shared = [np.frombuffer(buffer.raw(), dtype=np.uint8) for buffer in buffers]
    for array in shared:
        array.flags.writeable = False
    copy = pickle.loads(payload, buffers=shared)
    assert np.shares_memory(copy.images.numpy(), shared[0])
    assert torch.equal(copy.images, dataset.images)
    assert copy.factor_sizes == dataset.factor_sizes and copy.source == dataset.source
    factors = dataset.sample_factors(5, np.random.default_rng(0))
    assert np.array_equal(copy.index_of(factors), dataset.index_of(factors))

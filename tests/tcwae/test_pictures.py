import math

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from torch import nn

from tcwae import pictures
from tcwae.nets import Autoencoder

PITCH = 64 + pictures.TILE_GAP


class StripeAutoencoder(nn.Module):
    """Encoder: every code is the fixed vector `shifts` (unit variance), so the aggregate of
    dimension k is N(shifts[k], 1) and its KL to the prior is shifts[k]**2 / 2 exactly.
    Decoder: stripe k (image rows 6k..6k+5) shows sigmoid(4 z_k); channel c is scaled by
    (1, -1, 0.5)[c] so three-channel images are coloured."""

    def __init__(self, nchan: int, shifts: list[float]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(nchan, 1, 1)
        self.register_buffer("shifts", torch.tensor(shifts))
        self.register_buffer("channel_scale", torch.tensor([1.0, -1.0, 0.5][:nchan]))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = self.shifts.expand(len(x), -1).clone()
        return mu, torch.zeros_like(mu)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        logits = torch.full((len(z), len(self.channel_scale), 64, 64), -10.0)
        for k in range(z.shape[1]):
            stripe = 4 * z[:, k, None, None, None] * self.channel_scale[None, :, None, None]
            logits[:, :, 6 * k : 6 * k + 6, :] = stripe
        return logits


def tile(png: np.ndarray, row: int, column: int, labelled: bool, header: bool) -> np.ndarray:
    top = (pictures.HEADER_HEIGHT if header else 0) + pictures.TILE_GAP + row * PITCH
    left = (pictures.ROW_LABEL_WIDTH if labelled else 0) + pictures.TILE_GAP + column * PITCH
    return png[top : top + 64, left : left + 64, :3]


def stripe_means(image: np.ndarray, count: int) -> np.ndarray:
    return np.array([image[6 * k : 6 * k + 6, :, 0].mean() for k in range(count)])


def images(count: int, nchan: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, nchan, 64, 64), dtype=torch.uint8, generator=generator)


def test_dimensionwise_kl_is_near_zero_when_the_aggregate_is_the_prior():
    rng = np.random.default_rng(0)
    posterior_var = 0.3
    mu = rng.normal(0.0, math.sqrt(1 - posterior_var), size=(2000, 3))
    logvar = np.full_like(mu, math.log(posterior_var))
    kl = pictures.kl_per_latent_dimension(mu, logvar, num_samples=2000)
    assert np.all(np.abs(kl) < 0.02), kl


def test_dimensionwise_kl_matches_closed_form_for_collapsed_and_shifted_dimensions():
    count = 1000
    mu = torch.zeros(count, 3)
    logvar = torch.zeros(count, 3)
    logvar[:, 0] = math.log(0.01)
    mu[:, 1] = 3.0
    mu[:, 2], logvar[:, 2] = 1.5, math.log(0.1)
    kl = pictures.kl_per_latent_dimension(mu, logvar, num_samples=4000)

    def gaussian_kl(mean: float, var: float) -> float:
        return 0.5 * (var + mean**2 - 1 - math.log(var))

    expected = [gaussian_kl(0.0, 0.01), gaussian_kl(3.0, 1.0), gaussian_kl(1.5, 0.1)]
    np.testing.assert_allclose(kl, expected, atol=0.15)


def test_dimensionwise_kl_sees_a_bimodal_dimension_that_moment_matching_would_miss():
    count = 1000
    mu = np.where(np.arange(count) % 2 == 0, 1.0, -1.0)[:, None]
    logvar = np.full_like(mu, math.log(0.01))
    # Mean 0 and variance 1.01: a moment-matched Gaussian is ~N(0, 1), KL ~ 0. The mixture is two
    # narrow peaks: KL = -H(q) - E log p = -(log 2 + 0.5 log(2 pi e 0.01)) + 0.5 log 2 pi + 0.505.
    expected = -(math.log(2) + 0.5 * math.log(2 * math.pi * math.e * 0.01))
    expected += 0.5 * math.log(2 * math.pi) + 0.5 * 1.01
    kl = pictures.kl_per_latent_dimension(mu, logvar, num_samples=count)
    assert kl[0] == pytest.approx(expected, abs=0.1)


def test_dimensionwise_kl_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="mu and logvar"):
        pictures.kl_per_latent_dimension(np.zeros((4, 3)), np.zeros((4, 2)))


@pytest.mark.parametrize("nchan", [1, 3])
def test_traversal_rows_follow_increasing_kl_and_vary_one_dimension(tmp_path, nchan):
    shifts = [1.0, 2.5, 0.0, 1.8]
    model = StripeAutoencoder(nchan, shifts)
    path = tmp_path / "traversal.png"
    order = pictures.save_traversals(model, images(6, nchan), path, steps=5, span=2.0)

    assert order == [2, 0, 3, 1]
    png = mpimg.imread(path)
    assert png.shape[:2] == pictures.tile_grid_size(4, 5, row_labels=True, column_labels=True)
    for row, dim in enumerate(order):
        means = np.stack([stripe_means(tile(png, row, c, True, True), 4) for c in range(5)])
        varying = np.flatnonzero(means.max(axis=0) - means.min(axis=0) > 0.5)
        assert varying.tolist() == [dim]
        expected_dim = 1 / (1 + np.exp(-4 * np.linspace(-2.0, 2.0, 5)))
        np.testing.assert_allclose(means[:, dim], expected_dim, atol=1 / 255)
        others = [k for k in range(4) if k != dim]
        expected_others = 1 / (1 + np.exp(-4 * np.array(shifts)[others]))
        np.testing.assert_allclose(means[0, others], expected_others, atol=1 / 255)

    middle = tile(png, 0, 2, True, True)
    if nchan == 1:
        assert np.array_equal(middle[..., 0], middle[..., 1])
        assert np.array_equal(middle[..., 0], middle[..., 2])
    else:
        # Channel 1 shows sigmoid(-4 z): the stripe with z = 1 is bright in red, dark in green.
        assert middle[6:12, :, 0].mean() > 0.9 and middle[6:12, :, 1].mean() < 0.1


def test_traversal_with_given_order(tmp_path):
    model = StripeAutoencoder(1, [1.0, 2.5, 0.0])
    path = tmp_path / "traversal.png"
    assert pictures.save_traversals(model, images(2, 1), path, kl_order=[1, 2, 0], steps=3) == [
        1,
        2,
        0,
    ]
    png = mpimg.imread(path)
    first, last = tile(png, 0, 0, True, True), tile(png, 0, 2, True, True)
    changed = np.abs(stripe_means(last, 3) - stripe_means(first, 3)) > 0.5
    assert changed.tolist() == [False, True, False]
    with pytest.raises(ValueError, match="permutation"):
        pictures.save_traversals(model, images(2, 1), path, kl_order=[0, 0, 1])


@pytest.mark.parametrize("nchan", [1, 3])
def test_reconstructions_show_inputs_over_decoded_means(tmp_path, nchan):
    model = StripeAutoencoder(nchan, [1.0, -1.0])
    inputs = images(10, nchan)
    path = tmp_path / "reconstructions.png"
    pictures.save_reconstructions(model, inputs, path, columns=4)

    png = mpimg.imread(path)
    assert png.shape[:2] == pictures.tile_grid_size(6, 4, row_labels=True, column_labels=False)
    for index in range(10):
        pair, column = divmod(index, 4)
        shown = tile(png, 2 * pair, column, True, False)
        original = inputs[index].permute(1, 2, 0).expand(64, 64, 3).numpy() / 255.0
        np.testing.assert_allclose(shown, original, atol=1 / 255 + 1e-6)
        reconstruction = torch.sigmoid(model.decode(model.encode(inputs[:1].float())[0]))[0]
        expected = reconstruction.permute(1, 2, 0).expand(64, 64, 3).numpy()
        shown = tile(png, 2 * pair + 1, column, True, False)
        np.testing.assert_allclose(shown, expected, atol=1 / 255 + 1e-6)
    assert np.all(tile(png, 4, 3, True, False) == 1.0), "the unused cell is blank"


def test_samples_grid_is_seeded(tmp_path):
    model = StripeAutoencoder(1, [0.0, 0.0, 0.0])
    pictures.save_samples(model, tmp_path / "a.png", n=10, seed=3)
    pictures.save_samples(model, tmp_path / "b.png", n=10, seed=3)
    pictures.save_samples(model, tmp_path / "c.png", n=10, seed=4)
    a, b, c = (mpimg.imread(tmp_path / name) for name in ("a.png", "b.png", "c.png"))
    assert a.shape[:2] == pictures.tile_grid_size(3, 4, row_labels=False, column_labels=False)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    codes = torch.randn(10, 3, generator=torch.Generator().manual_seed(3))
    expected = 1 / (1 + np.exp(-4 * codes[5].numpy()))
    np.testing.assert_allclose(stripe_means(tile(a, 1, 1, False, False), 3), expected, atol=0.01)


def test_model_pictures_restore_training_mode_and_leave_no_temporary_files(tmp_path):
    model = StripeAutoencoder(1, [0.5, 1.0])
    model.train()
    target = tmp_path / "nested" / "dir"
    pictures.save_traversals(model, images(3, 1), target / "t.png", steps=3)
    pictures.save_reconstructions(model, images(3, 1), target / "r.png")
    pictures.save_samples(model, target / "s.png", n=4)
    assert model.training
    assert sorted(p.name for p in target.iterdir()) == ["r.png", "s.png", "t.png"]


def test_model_pictures_reject_non_uint8_images(tmp_path):
    model = StripeAutoencoder(1, [0.5])
    with pytest.raises(ValueError, match="uint8"):
        pictures.save_reconstructions(model, torch.zeros(2, 1, 64, 64), tmp_path / "r.png")


@pytest.mark.parametrize("nchan", [1, 3])
def test_model_pictures_of_the_paper_autoencoder(tmp_path, nchan):
    torch.manual_seed(0)
    model = Autoencoder(nchan, 10)
    order = pictures.save_traversals(model, images(16, nchan), tmp_path / "t.png")
    pictures.save_reconstructions(model, images(16, nchan), tmp_path / "r.png")
    pictures.save_samples(model, tmp_path / "s.png", n=64)

    assert sorted(order) == list(range(10))
    sizes = {name: mpimg.imread(tmp_path / name).shape for name in ("t.png", "r.png", "s.png")}
    assert sizes["t.png"] == (*pictures.tile_grid_size(10, 9, True, True), 4)
    assert sizes["r.png"] == (*pictures.tile_grid_size(4, 8, True, False), 4)
    assert sizes["s.png"] == (*pictures.tile_grid_size(8, 8, False, False), 4)

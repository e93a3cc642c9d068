import math

import pytest
import torch
from science_helpers import one_thread

from tcwae.estimators import (
    density_ratio_tc,
    gaussian_log_density,
    imq_mmd,
    log_qz_mss,
    log_qz_mws,
    mss_log_weights,
    permute_dims,
    total_correlation,
)
from tcwae.methods import discriminator_cross_entropy
from tcwae.nets import Discriminator

DATASET_SIZE = 737_280


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


def gaussian_tc(covariance: torch.Tensor) -> float:
    """TC of N(0, covariance) = -0.5 log det of its correlation matrix."""
    std = covariance.diagonal().sqrt()
    return -0.5 * torch.logdet(covariance / std[:, None] / std[None, :]).item()


def codes_with_known_aggregate(correlation: float, batch_size: int, seed: int):
    """Means from a correlated 2-d Gaussian, posterior std 0.3: aggregate N(0, S + 0.09 I)."""
    generator = torch.Generator().manual_seed(seed)
    std = 0.3
    covariance = torch.tensor([[1.0, correlation], [correlation, 1.0]])
    mu = torch.randn(batch_size, 2, generator=generator) @ torch.linalg.cholesky(covariance).T
    logvar = torch.full_like(mu, 2 * math.log(std))
    z = mu + std * torch.randn(mu.shape, generator=generator)
    return z, mu, logvar, gaussian_tc(covariance + std**2 * torch.eye(2))


def test_gaussian_log_density_matches_torch_distributions():
    generator = torch.Generator().manual_seed(0)
    z, mu, logvar = torch.randn(3, 4, 5, generator=generator).unbind(0)
    expected = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z)
    torch.testing.assert_close(gaussian_log_density(z, mu, logvar), expected)


@pytest.mark.parametrize("correlation", [0.8, 0.0])
def test_mws_tc_of_gaussian_codes_matches_closed_form(correlation):
    z, mu, logvar, expected = codes_with_known_aggregate(correlation, 4096, seed=1)
    log_qz, log_prod_qz = log_qz_mws(z, mu, logvar, DATASET_SIZE)
    # Eq. 10 normalises by N M in both estimates: the TC carries (d - 1) log N.
    dims = z.shape[1]
    estimate = total_correlation(log_qz, log_prod_qz).item() - (dims - 1) * math.log(DATASET_SIZE)
    assert estimate == pytest.approx(expected, abs=0.05)
    if correlation == 0.0:
        assert abs(estimate) < 0.05
    else:
        assert expected > 0.3


@pytest.mark.parametrize("correlation", [0.8, 0.0])
def test_mss_tc_of_gaussian_codes_matches_closed_form(correlation):
    z, mu, logvar, expected = codes_with_known_aggregate(correlation, 4096, seed=2)
    # Stratified weights sum to one per row: no log N constant to remove.
    estimate = total_correlation(*log_qz_mss(z, mu, logvar, DATASET_SIZE)).item()
    assert estimate == pytest.approx(expected, abs=0.05)
    if correlation == 0.0:
        assert abs(estimate) < 0.05


def test_mss_weights_stratify_each_row_around_its_own_point():
    batch_size, dataset_size = 5, 100
    weights = mss_log_weights(batch_size, dataset_size).exp()
    others = batch_size - 1
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(batch_size))
    for row in range(batch_size):
        assert weights[row, row] == pytest.approx(1 / dataset_size)
        neighbour = (row + 1) % batch_size
        strat = (dataset_size - others) / (dataset_size * others)
        assert weights[row, neighbour] == pytest.approx(strat)
        rest = [c for c in range(batch_size) if c not in (row, neighbour)]
        torch.testing.assert_close(weights[row, rest], torch.full((others - 1,), 1 / others))


def imq_by_hand(a: list[float], b: list[float], c: float) -> float:
    return c / (c + sum((u - v) ** 2 for u, v in zip(a, b, strict=True)))


def test_imq_mmd_equals_hand_computation():
    x = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]
    y = [[1.0, 1.0], [-1.0, 0.5]]
    scales = (0.5, 2.0)
    expected = 0.0
    for scale in scales:
        c = 2 * 2 * scale
        within_x = sum(imq_by_hand(x[i], x[j], c) for i in range(3) for j in range(3) if i != j)
        within_y = 2 * imq_by_hand(y[0], y[1], c)
        cross = sum(imq_by_hand(u, v, c) for u in x for v in y)
        expected += within_x / 6 + within_y / 2 - 2 * cross / 6
    mmd = imq_mmd(
        torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64), scales
    )
    assert mmd.item() == pytest.approx(expected, rel=1e-12)


def test_imq_mmd_is_near_zero_for_identical_samples_and_positive_otherwise():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 10, generator=generator)
    assert abs(imq_mmd(x, x).item()) < 2e-2
    assert abs(imq_mmd(x, torch.randn(1000, 10, generator=generator)).item()) < 2e-2
    assert imq_mmd(x, x + 1.0).item() > 0.1


def test_permute_dims_keeps_marginals_and_breaks_correlation():
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(5000, 1, generator=generator)
    z = torch.cat([base, base + 0.1 * torch.randn(5000, 1, generator=generator), base], dim=1)
    permuted = permute_dims(z, torch.Generator().manual_seed(1))
    for dim in range(3):
        torch.testing.assert_close(permuted[:, dim].sort().values, z[:, dim].sort().values)
    assert not torch.equal(permuted, z)
    assert torch.corrcoef(z.T)[0, 1] > 0.99
    correlations = torch.corrcoef(permuted.T)
    assert correlations[0, 1].abs() < 0.05 and correlations[0, 2].abs() < 0.05


def test_discriminator_estimates_tc_of_correlated_gaussian_codes():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    covariance = torch.full((3, 3), 0.6) + 0.4 * torch.eye(3)
    cholesky = torch.linalg.cholesky(covariance)
    discriminator = Discriminator(3, width=64, depth=3)
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
    batch_size = 512
    for _ in range(1000):
        z = torch.randn(batch_size, 3, generator=generator) @ cholesky.T
        logits = discriminator(torch.cat([z, permute_dims(z, generator)]))
        loss = discriminator_cross_entropy(*logits.split(batch_size))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        z = torch.randn(50_000, 3, generator=generator) @ cholesky.T
        estimate = density_ratio_tc(discriminator(z)).item()
    assert estimate == pytest.approx(gaussian_tc(covariance), abs=0.1)

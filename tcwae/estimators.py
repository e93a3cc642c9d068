"""Estimators of the intractable latent terms (seed 001, Section 3.3) and the IMQ MMD.

Pure tensor functions, batched over the whole minibatch (no Python loops over points), in log
space with logsumexp so that they stay finite for far-apart codes.

Notation: a batch of M codes z_j ~ q(z|x_j), with encoder means `mu` and log-variances `logvar`
(all [M, d]), drawn from a data set of N points. The aggregate posterior is
q(z) = 1/N sum_n q(z|x_n) and q_l(z_l) its marginals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

_LOG_2PI = math.log(2.0 * math.pi)
IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; mu, exp(logvar)); broadcasts, so it also gives pairwise tables."""
    return -0.5 * (_LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def pairwise_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """[M, M, d] table of log q(z_jl | x_i): row j is code z_j, column i the posterior of x_i."""
    return gaussian_log_density(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))


def log_qz_mws(
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minibatch-weighted sampling, paper Eq. 10 (Chen et al. 2018), for each code z_j:

    log q(z_j)          ~ logsumexp_i sum_l log q(z_jl|x_i) - log(N M)
    log prod_l q(z_jl)  ~ sum_l [logsumexp_i log q(z_jl|x_i) - log(N M)]

    Every weight is 1/(N M), so each row's weights sum to 1/N rather than one: the estimates are
    log q - log N, and a TC computed from them is the TC plus (d - 1) log N. The constant has no
    gradient; it is kept so that logged values compare with the paper's.
    Returns (log_qz [M], log_prod_qz [M]).
    """
    batch_size = z.shape[0]
    table = pairwise_log_density(z, mu, logvar)
    log_norm = math.log(dataset_size * batch_size)
    log_qz = torch.logsumexp(table.sum(dim=2), dim=1) - log_norm
    log_prod_qz = (torch.logsumexp(table, dim=1) - log_norm).sum(dim=1)
    return log_qz, log_prod_qz


def mss_log_weights(
    batch_size: int, dataset_size: int, device: torch.device | None = None
) -> torch.Tensor:
    """Log importance weights of minibatch-stratified sampling (Chen et al. 2018, Appendix C.2).

    With B = M + 1 points in the batch, row j weights its own posterior by 1/N, the next point's
    ((j + 1) mod B) by (N - M)/(N M) and each of the remaining M - 1 by 1/M, so every row sums to
    one. (A widely copied implementation writes the first two weights into columns 0 and 1 of
    every row instead of the diagonal and its neighbour; this one does not.)
    """
    others = batch_size - 1
    weights = torch.full((batch_size, batch_size), 1.0 / others, device=device)
    rows = torch.arange(batch_size, device=device)
    weights[rows, rows] = 1.0 / dataset_size
    weights[rows, (rows + 1) % batch_size] = (dataset_size - others) / (dataset_size * others)
    return weights.log()


def log_qz_mss(
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minibatch-stratified sampling: Eq. 10 with the stratified weights of `mss_log_weights`.

    log q(z_j)         ~ logsumexp_i [log w_ji + sum_l log q(z_jl|x_i)]
    log prod_l q(z_jl) ~ sum_l logsumexp_i [log w_ji + log q(z_jl|x_i)]

    The weights sum to one per row, so unlike MWS there is no log N offset.
    Returns (log_qz [M], log_prod_qz [M]).
    """
    table = pairwise_log_density(z, mu, logvar)
    log_weights = mss_log_weights(z.shape[0], dataset_size, device=z.device).to(table.dtype)
    log_qz = torch.logsumexp(table.sum(dim=2) + log_weights, dim=1)
    log_prod_qz = torch.logsumexp(table + log_weights.unsqueeze(2), dim=1).sum(dim=1)
    return log_qz, log_prod_qz


def total_correlation(log_qz: torch.Tensor, log_prod_qz: torch.Tensor) -> torch.Tensor:
    """TC = KL(q(z) || prod_l q_l(z_l)) = E_q[log q(z) - log prod q(z)], Eq. 8 second term."""
    return (log_qz - log_prod_qz).mean()


def dimensionwise_kl(log_prod_qz: torch.Tensor, log_pz: torch.Tensor) -> torch.Tensor:
    """sum_l KL(q_l(z_l) || p(z_l)) = E_q[log prod q(z) - log p(z)], Eq. 8 third term."""
    return (log_prod_qz - log_pz).mean()


def standard_normal_log_density(z: torch.Tensor) -> torch.Tensor:
    """log p(z) under the prior N(0, I), summed over dimensions: [M]."""
    return (-0.5 * (_LOG_2PI + z.pow(2))).sum(dim=1)


def gaussian_kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Closed-form KL(q(z|x) || N(0, I)) of Eq. 3, summed over dimensions, mean over the batch."""
    return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).sum(dim=1).mean()


def permute_by_keys(z: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Reorder each column of z by the ranks of the matching column of `keys` (same shape)."""
    return torch.gather(z, 0, keys.argsort(dim=0))


def permute_dims(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shuffle each latent dimension independently across the batch (Kim and Mnih, Alg. 2).

    Each column keeps its values (so every marginal q_l is kept exactly) while the dependence
    between columns is destroyed: the rows become samples of prod_l q_l(z_l).
    """
    device = z.device if generator is None else generator.device
    keys = torch.rand(z.shape, generator=generator, device=device)
    return permute_by_keys(z, keys.to(z.device))


def density_ratio_tc(logits: torch.Tensor) -> torch.Tensor:
    """Eq. 11: KL ~ E[log D/(1 - D)] = mean(logit_0 - logit_1) for two-class softmax logits."""
    return (logits[:, 0] - logits[:, 1]).mean()


def _squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """||x_i - y_j||^2 for all pairs via one matrix product (no [n, m, d] temporary)."""
    squared = x.pow(2).sum(dim=1, keepdim=True) + y.pow(2).sum(dim=1) - 2.0 * x @ y.T
    return squared.clamp_min(0.0)


def imq_mmd(x: torch.Tensor, y: torch.Tensor, scales: Sequence[float] = IMQ_SCALES) -> torch.Tensor:
    """MMD^2 with the inverse multiquadratic kernel k(a, b) = C / (C + ||a - b||^2) (WAE-MMD).

    Summed over C = 2 d s for s in `scales`. Within-sample terms are unbiased (diagonal excluded,
    divided by n(n - 1)); the cross term is averaged over all n m pairs, as in Tolstikhin et al.
    """
    n, dims = x.shape
    m = y.shape[0]
    xx, yy, xy = _squared_distances(x, x), _squared_distances(y, y), _squared_distances(x, y)
    total = x.new_zeros(())
    for scale in scales:
        c = 2.0 * dims * scale
        kxx, kyy = c / (c + xx), c / (c + yy)
        within_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        within_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        cross = (c / (c + xy)).sum() / (n * m)
        total = total + within_x + within_y - 2.0 * cross
    return total

"""DIP-VAE-I and DIP-VAE-II (Kumar, Sattigeri and Balakrishnan 2018): the ELBO plus a penalty that
drives a covariance of the codes towards the identity.

Both variants share everything but the covariance they penalise, so they live in one module.
As in disentanglement_lib (`dip_vae`), lambda_d = lambda_d_factor * lambda_od with the factor 10
for DIP-VAE-I and 1 for DIP-VAE-II, and covariances are batch estimates (divided by the batch
size). Under DDP the covariance is taken over the global batch (the gathered codes).
"""

from __future__ import annotations

import torch

from tcwae.estimators import gaussian_kl_to_prior
from tcwae.methods.base import Codes, Terms, VAEMethod, negative_elbo


def batch_covariance(mu: torch.Tensor) -> torch.Tensor:
    """Cov_p(x)[mu(x)] = E[mu mu^T] - E[mu] E[mu]^T over the batch (Kumar et al. 2018, Eq. 6)."""
    mean = mu.mean(dim=0)
    return (mu.unsqueeze(2) * mu.unsqueeze(1)).mean(dim=0) - mean.unsqueeze(1) * mean.unsqueeze(0)


def aggregate_posterior_covariance(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Cov_q(z)[z] = E_p(x)[diag sigma^2(x)] + Cov_p(x)[mu(x)] (Kumar et al. 2018, Eq. 7)."""
    return torch.diag(logvar.exp().mean(dim=0)) + batch_covariance(mu)


def dip_regulariser(covariance: torch.Tensor, lambda_od: float, lambda_d: float) -> torch.Tensor:
    """Kumar et al. 2018, Eq. 6/7 penalty: lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i
    (C_ii - 1)^2."""
    diagonal = covariance.diagonal()
    off_diagonal = covariance - torch.diag(diagonal)
    return lambda_od * off_diagonal.pow(2).sum() + lambda_d * (diagonal - 1.0).pow(2).sum()


class DIPVAEI(VAEMethod):
    """DIP-VAE-I: Bernoulli NLL + analytic KL + the DIP penalty on Cov[mu(x)]."""

    name = "dip_vae_i"

    def covariance(self, codes: Codes) -> torch.Tensor:
        return batch_covariance(codes.mu)

    def latent_terms(self, codes: Codes, gathered: bool, step: int) -> Terms:
        lambda_od = self.settings.lambda_od
        lambda_d = self.settings.lambda_d_factor * lambda_od
        return {
            "kl": gaussian_kl_to_prior(codes.mu, codes.logvar),
            "dip": dip_regulariser(self.covariance(codes), lambda_od, lambda_d),
        }

    def total_loss(self, terms: Terms) -> torch.Tensor:
        return negative_elbo(terms["rec"], terms["kl"]) + terms["dip"]


class DIPVAEII(DIPVAEI):
    """DIP-VAE-II: the same penalty on Cov_q[z] = E[diag sigma^2] + Cov[mu]."""

    name = "dip_vae_ii"

    def covariance(self, codes: Codes) -> torch.Tensor:
        return aggregate_posterior_covariance(codes.mu, codes.logvar)

"""beta-VAE (Higgins et al. 2017): the ELBO with its KL weighted by beta."""

from __future__ import annotations

import torch

from tcwae.estimators import gaussian_kl_to_prior
from tcwae.methods.base import Codes, Terms, VAEMethod


def beta_vae_loss(rec: torch.Tensor, kl: torch.Tensor, beta: float) -> torch.Tensor:
    """beta-VAE objective, Higgins et al. 2017 Eq. 4: -E_q log p(x|z) + beta KL(q(z|x) || p(z))."""
    return rec + beta * kl


class BetaVAE(VAEMethod):
    """beta-VAE: Bernoulli NLL + beta analytic KL (disentanglement_lib's `vae`)."""

    name = "beta_vae"

    def latent_terms(self, codes: Codes, gathered: bool, step: int) -> Terms:
        return {"kl": gaussian_kl_to_prior(codes.mu, codes.logvar)}

    def total_loss(self, terms: Terms) -> torch.Tensor:
        return beta_vae_loss(terms["rec"], terms["kl"], self.settings.beta)

"""FactorVAE (Kim and Mnih 2018): the ELBO plus gamma TC, the TC by the density-ratio trick."""

from __future__ import annotations

import torch

from tcwae.estimators import density_ratio_tc, gaussian_kl_to_prior
from tcwae.methods.base import Codes, Terms, VAEMethod, frozen_logits, negative_elbo


def factor_vae_loss(
    rec: torch.Tensor, kl: torch.Tensor, tc: torch.Tensor, gamma: float
) -> torch.Tensor:
    """FactorVAE objective, Kim and Mnih 2018 Eq. 2: negative ELBO + gamma TC."""
    return negative_elbo(rec, kl) + gamma * tc


class FactorVAE(VAEMethod):
    """FactorVAE: Bernoulli NLL + analytic KL + gamma TC (seed 001 Eq. 11)."""

    name = "factor_vae"
    num_discriminators = 1

    def latent_terms(self, codes: Codes, gathered: bool, step: int) -> Terms:
        return {
            "kl": gaussian_kl_to_prior(codes.mu, codes.logvar),
            "tc": density_ratio_tc(frozen_logits(self.discriminators[0], codes.z)),
        }

    def total_loss(self, terms: Terms) -> torch.Tensor:
        return factor_vae_loss(terms["rec"], terms["kl"], terms["tc"], self.settings.gamma)

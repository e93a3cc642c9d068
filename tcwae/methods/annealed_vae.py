"""AnnealedVAE (Burgess et al. 2018): the KL pulled towards a capacity C raised linearly."""

from __future__ import annotations

import torch

from tcwae.estimators import gaussian_kl_to_prior
from tcwae.methods.base import Codes, Terms, VAEMethod


def capacity(step: int, c_max: float, anneal_steps: int) -> float:
    """Burgess et al. 2018, Section 5: C = min(C_max, C_max * step / T), `step` the optimiser steps
    taken before this one (disentanglement_lib's `anneal` on the global step)."""
    return min(c_max, c_max * step / anneal_steps)


def capacity_gap(kl: torch.Tensor, capacity_nats: float) -> torch.Tensor:
    """|KL - C|, the distance of the KL from the capacity (Burgess et al. 2018, Eq. 8)."""
    return (kl - capacity_nats).abs()


def annealed_vae_loss(rec: torch.Tensor, gap: torch.Tensor, gamma: float) -> torch.Tensor:
    """AnnealedVAE objective, Burgess et al. 2018 Eq. 8: -E_q log p(x|z) + gamma |KL - C|."""
    return rec + gamma * gap


class AnnealedVAE(VAEMethod):
    """AnnealedVAE: Bernoulli NLL + gamma |KL - C| on the batch-mean analytic KL, logged as `kl`
    and `capacity_gap`. The KL is averaged before the absolute value, so under DDP it is taken
    over the global batch. C enters as a Python number, so the schedule costs no device copy."""

    name = "annealed_vae"

    def latent_terms(self, codes: Codes, gathered: bool, step: int) -> Terms:
        kl = gaussian_kl_to_prior(codes.mu, codes.logvar)
        nats = capacity(step, self.settings.c_max, self.settings.anneal_steps)
        return {"kl": kl, "capacity_gap": capacity_gap(kl, nats)}

    def total_loss(self, terms: Terms) -> torch.Tensor:
        return annealed_vae_loss(terms["rec"], terms["capacity_gap"], self.settings.gamma)

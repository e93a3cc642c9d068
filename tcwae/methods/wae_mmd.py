"""WAE-MMD (Tolstikhin et al. 2018; seed 001 Eq. 7 with the IMQ MMD as the divergence)."""

from __future__ import annotations

import torch

from tcwae.methods.base import Codes, GaussianMethod, Terms


def wae_loss(rec: torch.Tensor, divergence: torch.Tensor, lam: float) -> torch.Tensor:
    """WAE objective, seed 001 Eq. 7: reconstruction cost + lambda D(q(z) || p(z))."""
    return rec + lam * divergence


class WAEMMD(GaussianMethod):
    """WAE-MMD: rec + lambda MMD(q(z), p(z)); the only method that trains on the MMD."""

    name = "wae_mmd"

    def latent_terms(self, codes: Codes, gathered: bool, step: int) -> Terms:
        return {"mmd": self._mmd(codes.z, gathered)}

    def total_loss(self, terms: Terms) -> torch.Tensor:
        return wae_loss(terms["rec"], terms["mmd"], self.settings.lam)

"""WAE-MMD (Tolstikhin et al. 2018; seed 001 Eq. 7 with the IMQ MMD as the divergence)."""

from __future__ import annotations

import torch

from tcwae.methods.base import Codes, GaussianMethod, HyperParameter, Terms

LAM = HyperParameter("lam", "weight of the IMQ MMD between q(z) and p(z)", 1.0)


def wae_loss(rec: torch.Tensor, divergence: torch.Tensor, lam: float) -> torch.Tensor:
    """WAE objective, seed 001 Eq. 7: reconstruction cost + lambda D(q(z) || p(z))."""
    return rec + lam * divergence


class WAEMMD(GaussianMethod):
    """WAE-MMD: rec + lambda MMD(q(z), p(z)); the only method that trains on the MMD."""

    name = "wae_mmd"
    label = "WAE-MMD"
    paper = "Tolstikhin et al. 2018 (seed 001, Eq. 7)"
    hyperparameters = (LAM,)

    def latent_terms(self, codes: Codes, gathered: bool, step: int) -> Terms:
        return {"mmd": self._mmd(codes.z, gathered)}

    def total_loss(self, terms: Terms) -> torch.Tensor:
        return wae_loss(terms["rec"], terms["mmd"], self.hparams["lam"])


METHODS = (WAEMMD,)

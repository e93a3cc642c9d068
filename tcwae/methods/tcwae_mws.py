"""TCWAE-MWS (seed 001): Eq. 8 with the TC and dimensionwise KL estimated by minibatch-weighted
sampling (Eq. 10) or its stratified variant (`estimator: mss`)."""

from __future__ import annotations

import torch

from tcwae.estimators import (
    dimensionwise_kl,
    log_qz_mss,
    log_qz_mws,
    standard_normal_log_density,
    total_correlation,
)
from tcwae.methods.base import Codes, GaussianMethod, Terms

ESTIMATORS = {"mws": log_qz_mws, "mss": log_qz_mss}


def tcwae_loss(
    rec: torch.Tensor, tc: torch.Tensor, dimkl: torch.Tensor, beta: float, gamma: float
) -> torch.Tensor:
    """TCWAE objective, seed 001 Eq. 8: reconstruction cost + beta TC + gamma dimensionwise KL."""
    return rec + beta * tc + gamma * dimkl


def sampled_log_densities(
    codes: Codes, estimator: str, dataset_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log q(z), log prod_d q(z_d), log p(z)) of each code by MWS or MSS (seed 001, Eq. 10)."""
    log_qz, log_prod_qz = ESTIMATORS[estimator](codes.z, codes.mu, codes.logvar, dataset_size)
    return log_qz, log_prod_qz, standard_normal_log_density(codes.z)


class TCWAEMWS(GaussianMethod):
    """TCWAE-MWS: rec + beta TC + gamma dimensionwise KL, both by MWS (or MSS)."""

    name = "tcwae_mws"

    def latent_terms(self, codes: Codes, gathered: bool, step: int) -> Terms:
        log_qz, log_prod_qz, log_pz = sampled_log_densities(
            codes, self.cfg.estimator, self.dataset_size
        )
        return {
            "tc": total_correlation(log_qz, log_prod_qz),
            "dimkl": dimensionwise_kl(log_prod_qz, log_pz),
        }

    def total_loss(self, terms: Terms) -> torch.Tensor:
        return tcwae_loss(
            terms["rec"], terms["tc"], terms["dimkl"], self.settings.beta, self.settings.gamma
        )

"""TCWAE-GAN (seed 001): Eq. 8 with both KL terms estimated by the density-ratio trick (Eq. 11)."""

from __future__ import annotations

import torch

from tcwae.estimators import density_ratio_tc
from tcwae.methods.base import Codes, GaussianMethod, Terms, frozen_logits
from tcwae.methods.tcwae_mws import tcwae_loss


class TCWAEGAN(GaussianMethod):
    """TCWAE-GAN: discriminator 0 tells codes z from permute_dims(z) (TC); discriminator 1 tells
    permuted codes from prior samples (dimensionwise KL, KL(prod q_d || p))."""

    name = "tcwae_gan"
    num_discriminators = 2

    def latent_terms(self, codes: Codes, gathered: bool, step: int) -> Terms:
        tc_disc, dimkl_disc = self.discriminators
        permuted = self._permute(codes.z, gathered)
        return {
            "tc": density_ratio_tc(frozen_logits(tc_disc, codes.z)),
            "dimkl": density_ratio_tc(frozen_logits(dimkl_disc, permuted)),
        }

    def total_loss(self, terms: Terms) -> torch.Tensor:
        return tcwae_loss(
            terms["rec"], terms["tc"], terms["dimkl"], self.settings.beta, self.settings.gamma
        )

    def density_ratio_pairs(
        self, codes: torch.Tensor, gathered: bool
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        permuted = self._permute(codes, gathered)
        prior = self._prior_samples(codes.shape[0], codes.device, gathered)
        return [(codes, permuted), (permuted, prior)]

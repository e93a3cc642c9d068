"""R-WAE (seed 002, Han et al. 2021): the recurrent Wasserstein autoencoder, MMD and GAN variants.

    rec + beta (D(q(s) || p(s)) + D(q(a) || p(a))) + gamma sum_t D(q(z_t) || p(z_t | z_<t))

with the deterministic-decoder reconstruction cost of the WAE (any `tcwae.costs` cost), the
networks of `tcwae.sequence_nets` and D an IMQ-MMD (R-WAE(MMD)) or an adversarial estimate
(R-WAE(GAN)) between aggregate posterior and prior. The full paper is not available here; every
choice below that its abstract leaves open is ours and listed in docs/sequences.md:
- q(z_t) against p(z_t | z_<t): at each t, the batch of posterior samples z_t against prior
  samples z^_t ~ p(z_t | z_<t) drawn along the same posterior histories (`dynamic_mmd`);
- the adversarial D is the symmetric KL by the density-ratio trick (`density_ratio_divergence`),
  whose prior-side half trains the learned prior; one discriminator (Table 3: 6 x 1000, leaky
  ReLU 0.2) for s, one shared by all frames for (z_t, t);
- the action term is the exact KL between the batch's aggregate q(a) and the uniform prior.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tcwae.estimators import imq_mmd
from tcwae.methods.base import Gather, Terms, discriminator_cross_entropy, frozen_logits
from tcwae.methods.sequential import (
    SequenceMethod,
    density_ratio_divergence,
    dynamic_mmd,
    time_tagged,
)
from tcwae.nets import Discriminator


class RWAEMMD(SequenceMethod):
    """R-WAE(MMD): both divergences by the IMQ MMD of `tcwae.estimators` (WAE-MMD's kernel)."""

    name = "rwae_mmd"

    def latent_terms(self, out: Terms, gathered: bool) -> Terms:
        s = out["s"]
        prior_s = self.randomness.normal(
            s.shape[0], self.settings.ds, s.device, sharded=not gathered
        )
        return {
            "static": imq_mmd(s, prior_s),
            "dynamic": dynamic_mmd(out["z"], out["prior_z"]),
            "action": self.action_penalty(out["action_probs"]),
        }


class RWAEGAN(SequenceMethod):
    """R-WAE(GAN): both divergences by density-ratio discriminators, trained in their own step
    on detached codes."""

    name = "rwae_gan"
    num_discriminators = 2

    def build_discriminators(self) -> list[nn.Module]:
        """Table 3's discriminator on s, and one on (z_t, t) shared by every frame."""
        return [Discriminator(self.settings.ds), Discriminator(self.cfg.dz + 1)]

    def latent_terms(self, out: Terms, gathered: bool) -> Terms:
        static_disc, dynamic_disc = self.discriminators
        s, z, prior_z = out["s"], out["z"], out["prior_z"]
        prior_s = self.randomness.normal(
            s.shape[0], self.settings.ds, s.device, sharded=not gathered
        )
        static = density_ratio_divergence(
            frozen_logits(static_disc, s), frozen_logits(static_disc, prior_s)
        )
        # The discriminator sees all B T rows at once; times T, the mean is the sum over frames.
        dynamic = z.shape[1] * density_ratio_divergence(
            frozen_logits(dynamic_disc, time_tagged(z)),
            frozen_logits(dynamic_disc, time_tagged(prior_z)),
        )
        return {
            "static": static,
            "dynamic": dynamic,
            "action": self.action_penalty(out["action_probs"]),
        }

    def discriminator_loss(
        self,
        codes: torch.Tensor,
        gather: Gather | None = None,
        discriminators: Sequence[nn.Module] | None = None,
    ) -> torch.Tensor:
        """Cross-entropy of both discriminators on detached posterior and prior samples."""
        static_disc, dynamic_disc = (
            self.discriminators if discriminators is None else discriminators
        )
        codes = (codes if gather is None else gather(codes)).float()
        s, z, prior_z = self.unpack_codes(codes)
        prior_s = self.randomness.normal(
            s.shape[0], self.settings.ds, s.device, sharded=gather is None
        )
        both = static_disc(torch.cat([s, prior_s])).float()
        static_loss = discriminator_cross_entropy(*both.split(s.shape[0]))
        rows = time_tagged(z)
        both = dynamic_disc(torch.cat([rows, time_tagged(prior_z)])).float()
        dynamic_loss = discriminator_cross_entropy(*both.split(rows.shape[0]))
        return static_loss + dynamic_loss

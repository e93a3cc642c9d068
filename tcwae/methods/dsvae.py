"""DSVAE (Li and Mandt 2018, "Disentangled Sequential Autoencoder"): the VAE counterpart of R-WAE.

DSVAE's own networks (`tcwae.sequence_nets.DSVAEAutoencoder`: per-frame decoder p(x_t | z_t, s),
"full q" posterior q(s | x_1:T) q(z_1:T | s, x_1:T), learned recurrent prior p(z_t | z_<t)), the
same weighted sum as R-WAE with KL terms instead of divergences between aggregate posteriors
(the negative ELBO for beta = gamma = 1):

    -sum_t log p(x_t | s, z_t) + beta (KL(q(s|x) || N(0, I)) + KL(q(a|x) || U(K)))
        + gamma sum_t KL(q(z_t | s, x_1:T) || p(z_t | z_<t)),

each KL in closed form, per sequence, averaged over the batch; the dynamic KLs are evaluated along
the posterior's own sample path z_<t (the single-sample estimate of DSVAE's expectation). The
likelihood is Bernoulli (cross-entropy), as for the image VAE baselines. What still departs from
the paper is listed in docs/sequences.md and in `tcwae.sequence_nets`.
"""

from __future__ import annotations

import torch

from tcwae.estimators import gaussian_kl_to_prior
from tcwae.methods.sequential import (
    SequenceMethod,
    Terms,
    diagonal_gaussian_kl,
    mean_categorical_kl,
    sequence_reconstruction,
)
from tcwae.sequence_nets import DSVAEAutoencoder


class DSVAE(SequenceMethod):
    """DSVAE: negative ELBO with beta on the static (and action) KL, gamma on the dynamic KLs."""

    name = "dsvae"

    uses_prior_samples = False
    network = DSVAEAutoencoder

    def reconstruction(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return sequence_reconstruction(logits, x, "xent")

    def latent_terms(self, out: Terms, gathered: bool) -> Terms:
        dynamic = diagonal_gaussian_kl(
            out["z_mu"], out["z_logvar"], out["prior_mu"], out["prior_logvar"]
        )
        probs = out["action_probs"]
        return {
            "static": gaussian_kl_to_prior(out["s_mu"], out["s_logvar"]),
            "dynamic": dynamic.sum(dim=1).mean(),
            "action": mean_categorical_kl(probs) if probs.shape[1] else probs.new_zeros(()),
        }

"""DSVAE (Li and Mandt 2018, "Disentangled Sequential Autoencoder"): the VAE counterpart of R-WAE.

Same networks (`tcwae.sequence_nets`), same weighted sum, KL terms instead of divergences between
aggregate posteriors (their Eq. 3, the negative ELBO, for beta = gamma = 1):

    -log p(x_1:T | s, z_1:T) + beta (KL(q(s|x) || N(0, I)) + KL(q(a|x) || U(K)))
        + gamma sum_t KL(q(z_t | x_<=t, z_<t) || p(z_t | z_<t)),

each KL in closed form, per sequence, averaged over the batch; the dynamic KLs are evaluated along
the posterior's own sample path z_<t (the single-sample estimate of DSVAE's expectation). The
likelihood is Bernoulli (cross-entropy), as for the image VAE baselines. DSVAE's own posterior
conditions z_t on s ("full q"); ours shares R-WAE's, which does not (README, "Sequence models").
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


class DSVAE(SequenceMethod):
    """DSVAE: negative ELBO with beta on the static (and action) KL, gamma on the dynamic KLs."""

    name = "dsvae"
    label = "DSVAE"
    paper = "Li and Mandt 2018 (Eq. 3)"
    optimizer_family = "vae"

    uses_prior_samples = False

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


METHODS = (DSVAE,)

"""What the sequence methods share: their declarations, the equations both families use, and
the training step on a batch of sequences [B, T, C, 64, 64].

A `SequenceMethod` is a registered `tcwae.methods.Method` (`sequences = True`): `forward(x,
gather, autoencoder)` returns a `MethodOutput` whose `codes` rows are what a discriminator step
needs, and `discriminator_loss(codes, gather, discriminators)` is the adversarial variant's second
step. Every random number comes from the method's `StepRandomness`, drawn for the global batch, so
a run on W ranks uses the numbers of one process.

Loss (seed 002, the objective as described in its abstract and DESIGN.md):
    rec + beta (D(q(s) || p(s)) + D(q(a) || p(a))) + gamma sum_t D(q(z_t) || p(z_t | z_<t)),
rec the per-frame cost summed over frames. Our choices where the descriptions are silent:
the action term, when there is one, is weighted by beta like the other sequence-level code; the
WAE methods compare aggregate posteriors on the (all-gathered) batch, DSVAE uses per-sequence KLs.
"""

from __future__ import annotations

import torch
from torch import nn

from tcwae.costs import PER_IMAGE_COSTS
from tcwae.estimators import imq_mmd
from tcwae.methods.base import (
    FACTORISED,
    JOINT,
    Gather,
    Method,
    MethodOutput,
    StepRandomness,
    Terms,
)
from tcwae.sequence_nets import SequenceAutoencoder, SequenceCodes

# Density-ratio classes: posterior samples are the numerator, prior samples the denominator.
QUERY, PRIOR = JOINT, FACTORISED


def sequence_reconstruction(
    logits: torch.Tensor, x: torch.Tensor, cost: str = "xent"
) -> torch.Tensor:
    """Reconstruction term: the per-frame cost (tcwae.costs, summed over pixels) summed over the T
    frames, mean over the batch; for `xent` this is -log p(x_1:T | s, z_1:T) of DSVAE's Eq. 3."""
    per_frame = PER_IMAGE_COSTS[cost](logits.flatten(0, 1), x.flatten(0, 1))
    return per_frame.unflatten(0, x.shape[:2]).sum(dim=1).mean()


def diagonal_gaussian_kl(
    mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor
) -> torch.Tensor:
    """KL(N(mu_q, e^logvar_q) || N(mu_p, e^logvar_p)) summed over the last axis (closed form):
    0.5 sum [logvar_p - logvar_q + (e^logvar_q + (mu_q - mu_p)^2) / e^logvar_p - 1]."""
    ratio = (logvar_q.exp() + (mu_q - mu_p).pow(2)) * torch.exp(-logvar_p)
    return 0.5 * (logvar_p - logvar_q + ratio - 1.0).sum(dim=-1)


def aggregate_categorical_kl(probs: torch.Tensor) -> torch.Tensor:
    """KL(q(a) || U(K)) of the batch's aggregate action posterior q(a) = mean_n q(a | x_n),
    exact on the batch: sum_k q_k log(K q_k). Zero when the batch uses every action equally."""
    aggregate = probs.mean(dim=0)
    return (aggregate * torch.log(aggregate.clamp_min(1e-12) * probs.shape[1])).sum()


def mean_categorical_kl(probs: torch.Tensor) -> torch.Tensor:
    """mean_n KL(q(a | x_n) || U(K)), the per-sequence (VAE) action term."""
    return (probs * torch.log(probs.clamp_min(1e-12) * probs.shape[1])).sum(dim=1).mean()


def dynamic_mmd(z: torch.Tensor, prior_z: torch.Tensor) -> torch.Tensor:
    """sum_t MMD(q(z_t), p(z_t | z_<t)) with the IMQ kernel: at each t the batch of posterior
    samples z_t against the batch of prior samples z^_t ~ p(z_t | z_<t) drawn along the same
    posterior histories, so p is the prior averaged over q(z_<t)."""
    return sum(imq_mmd(z[:, t], prior_z[:, t]) for t in range(z.shape[1]))


def time_tagged(z: torch.Tensor) -> torch.Tensor:
    """Rows (z_t, t) [B T, dz + 1] of codes [B, T, dz]: one discriminator serves every frame, told
    which frame a code belongs to by its index as one more input."""
    frames = torch.arange(z.shape[1], device=z.device, dtype=z.dtype)
    return torch.cat([z, frames[None, :, None].expand(z.shape[0], -1, 1)], dim=2).flatten(0, 1)


def density_ratio_divergence(
    logits_query: torch.Tensor, logits_prior: torch.Tensor
) -> torch.Tensor:
    """Adversarial divergence: symmetric KL(q || p) + KL(p || q) by the density-ratio trick
    (Eq. 11 of seed 001; Sugiyama et al. 2012): logit_0 - logit_1 estimates log q/p, averaged over
    posterior samples for KL(q || p) and negated over prior samples for KL(p || q). The second
    half is what trains a learned prior (its samples are reparameterised); for a fixed prior it
    is a constant."""
    on_query = (logits_query[:, QUERY] - logits_query[:, PRIOR]).mean()
    on_prior = (logits_prior[:, PRIOR] - logits_prior[:, QUERY]).mean()
    return on_query + on_prior


def weighted_sequence_loss(
    rec: torch.Tensor,
    static: torch.Tensor,
    dynamic: torch.Tensor,
    action: torch.Tensor,
    beta: float,
    gamma: float,
) -> torch.Tensor:
    """rec + beta (D_static + D_action) + gamma D_dynamic (R-WAE; DSVAE's negative ELBO for
    beta = gamma = 1)."""
    return rec + beta * (static + action) + gamma * dynamic


class SequenceMethod(Method):
    """One batch of sequences -> named loss terms; subclasses define the three divergences
    (`latent_terms`). Declared like the image methods; `dataset_size` is not used."""

    network: type[SequenceCodes] = SequenceAutoencoder  # R-WAE's; DSVAE has its own
    uses_prior_samples = True

    def build_autoencoder(self, nchan: int) -> nn.Module:
        """The method's recurrent autoencoder (`network`, from `tcwae.sequence_nets`)."""
        settings = self.settings
        return self.network(
            nchan, settings.ds, self.cfg.dz, settings.rnn_hidden, settings.num_actions
        )

    def reconstruction(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return sequence_reconstruction(logits, x, self.cfg.cost)

    def latent_terms(self, out: Terms, gathered: bool) -> Terms:
        """`static`, `dynamic` and `action` divergences on `out` (global batch when gathered)."""
        raise NotImplementedError

    def forward(
        self,
        x: torch.Tensor,
        gather: Gather | None = None,
        autoencoder: nn.Module | None = None,
        diagnostics: StepRandomness | None = None,
        step: int = 0,
    ) -> MethodOutput:
        """Loss terms of sequences x [B, T, C, 64, 64] in [0, 1]; `autoencoder` may be the
        DDP-wrapped module; `gather` all-gathers with gradients so that the batch statistics see
        the global batch. `diagnostics` and `step` are accepted for the trainer's sake: every term
        of these methods is trained on, and none has a schedule."""
        runner = self.autoencoder if autoencoder is None else autoencoder
        batch, frames = x.shape[:2]
        settings, dz, draw = self.settings, self.cfg.dz, self.randomness
        noise = [
            draw.normal(batch, settings.ds, x.device, sharded=True),
            draw.normal(batch, frames * dz, x.device, sharded=True).view(batch, frames, -1),
        ]
        if self.uses_prior_samples:
            prior = draw.normal(batch, frames * dz, x.device, sharded=True)
            noise.append(prior.view(batch, frames, -1))
        else:
            noise.append(None)
        if settings.num_actions:
            noise.append(draw.uniform(batch, settings.num_actions, x.device, sharded=True))
        out = runner(x, *noise)
        with torch.autocast(x.device.type, enabled=False):
            out = {name: value.float() for name, value in out.items()}
            terms = {"rec": self.reconstruction(out["logits"], x.float())}
            codes = out
            if gather is not None:
                codes = {name: gather(value) for name, value in out.items() if name != "logits"}
            terms.update(self.latent_terms(codes, gathered=gather is not None))
            terms["loss"] = weighted_sequence_loss(
                terms["rec"],
                terms["static"],
                terms["dynamic"],
                terms["action"],
                settings.beta,
                settings.gamma,
            )
        return MethodOutput(terms, self.pack_codes(out).detach())

    def pack_codes(self, out: Terms) -> torch.Tensor:
        """What the discriminator step needs, one row a sequence: (s, z_1:T, z^_1:T)."""
        if "prior_z" not in out:
            return out["s"]
        return torch.cat([out["s"], out["z"].flatten(1), out["prior_z"].flatten(1)], dim=1)

    def action_penalty(self, probs: torch.Tensor) -> torch.Tensor:
        """The action divergence; the WAE methods compare the aggregate q(a) with U(K)."""
        if probs.shape[1] == 0:
            return probs.new_zeros(())
        return aggregate_categorical_kl(probs)

    def unpack_codes(self, codes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(s, z, prior_z) from the rows of `pack_codes`."""
        ds, dz = self.settings.ds, self.cfg.dz
        frames = (codes.shape[1] - ds) // (2 * dz)
        if ds + 2 * frames * dz != codes.shape[1] or frames < 1:
            raise ValueError(f"codes of width {codes.shape[1]} are not (s, z_1:T, z^_1:T) rows")
        s, z, prior_z = codes.split([ds, frames * dz, frames * dz], dim=1)
        return s, z.unflatten(1, (frames, dz)), prior_z.unflatten(1, (frames, dz))

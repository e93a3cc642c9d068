"""FactorQVAE and QVAE (Baykal, Kandemir and Unal 2024, "Disentanglement with Factor Quantized
Variational Autoencoders", seed 003; public code ituvisionlab/FactorQVAE).

Each latent dimension is a scalar quantised against one global codebook of learnable scalars
(`nn.Embedding(64, 1)` in the reference, normal init). Training replaces each scalar by a soft
mixture of codes: weights = gumbel_softmax(-distance, tau) over the codebook, value = weights @
codebook, tau = exp(-1e-5 step); evaluation takes the nearest code. The posterior over codes
softmax(-distance) is pulled towards a uniform prior by a KL weighted with `kl_weight`; FactorQVAE
adds gamma times the total correlation of the soft one-hot weights, estimated by a FactorVAE
discriminator (permute-dims across the batch, each latent's weight vector moved as a whole).
Reconstruction is the pixel-mean squared error between the decoder's linear output and the image
shifted to [-0.5, 0.5], as in the reference. QVAE is the same without the TC term. Both live in
one module because they differ by that one term.

What differs from the reference (read at its first public commit):
- Networks: the reference uses a larger residual network (DALL-E dVAE blocks: 3 groups of 2
  blocks, 128 channels, max-pool downsampling, hidden 128, N(0, 0.02) init); we keep seed 001's
  Table-3 encoder (its last layer outputs the d_z pre-quantisation scalars) and decoder so that
  every method shares the networks. Like the reference, the decoder's output is read as linear
  intensities of images shifted to [-0.5, 0.5]; `decode` turns them into logits (clipped at
  INTENSITY_EPS) for the pictures and the `rec` score, which every method reads as logits.
  Taking the MSE on sigmoid(logits) instead (our first version) collapses on dSprites: measured
  at batch 64, the saturating sigmoid keeps pushing every scalar the same way, Adam carries them
  past the last code within 10 steps (scalars ~400 by step 50, codes within [-1.7, 2.5]), the
  soft weights become one-hot on that code and nothing is learnt (KL = log 64, one code in use,
  MSE 0.055, that of an all-black image); on linear intensities QVAE reached MSE 0.011 by step
  800 with codes in use.
- Steps: the reference trains with Lightning's manual optimisation and two optimisers, whose
  `global_step` counts both optimisers' steps (Lightning issue #17958): its "100k steps" are 50k
  iterations and its temperature falls by exp(-2e-5) per iteration. We use one step per
  iteration, tau = exp(-1e-5 step), as its callback reads.
- Batches: the reference splits each batch of 512 in halves, the first for the model step and the
  second (re-encoded) for the discriminator step, and reuses the first half's non-detached
  discriminator output in the discriminator loss; we train the discriminator on the detached
  codes of the same batch and their permutation, as FactorVAE does here.
- Optimiser: both use Adam(1e-3) (the `factorqvae` optimizer family); the reference adds a cosine
  learning-rate decay over 50k steps to 1.25e-6, which we do not.
- The KL is computed as sum q (log q + log K) with log-softmax, without the reference's 1e-10
  inside the logarithm; the Gumbel noise comes from the run's generator, not torch's global one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tcwae.estimators import density_ratio_tc
from tcwae.methods.base import (
    Gather,
    Method,
    MethodOutput,
    StepRandomness,
    Terms,
    frozen_logits,
)
from tcwae.nets import Decoder, Discriminator, table3_encoder

INTENSITY_EPS = 1e-4  # decoded pixel values are clipped to [1e-4, 1 - 1e-4] before the logit
TEMPERATURE_DECAY = 1e-5  # tau = exp(-1e-5 step): the reference's `DecayTemperature` callback
DISCRIMINATOR_WIDTH = 1000
DISCRIMINATOR_DEPTH = 5  # Linear(in, 1000) then 4 x Linear(1000, 1000), each with LeakyReLU(0.2)


def gumbel_temperature(step: int) -> float:
    """Gumbel-softmax temperature after `step` optimiser steps: exp(-1e-5 step) (seed 003 code)."""
    return math.exp(-TEMPERATURE_DECAY * step)


def squared_distances(scalars: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """[n, d, K] squared distances between each latent scalar [n, d] and every code [K]."""
    return (scalars.unsqueeze(-1) - codebook).pow(2)


def gumbel_softmax_weights(
    logits: torch.Tensor, uniform: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Relaxed one-hot weights softmax((logits + g) / tau) with Gumbel noise g = -log(-log u)
    (Jang et al. 2017; `F.gumbel_softmax(hard=False)` with the noise passed in)."""
    tiny = torch.finfo(uniform.dtype).tiny
    gumbel = -torch.log(-torch.log(uniform.clamp_min(tiny)))
    return torch.softmax((logits + gumbel) / temperature, dim=-1)


def soft_quantise(weights: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Each latent's value as its weights' mixture of codes: [n, d, K] x [K] -> [n, d]."""
    return (weights * codebook).sum(dim=-1)


def uniform_prior_kl(distances: torch.Tensor) -> torch.Tensor:
    """KL(q(c|x) || U(K)) with q = softmax(-distance) over the K codes, i.e. sum_k q log(q K),
    averaged over the batch and the latents (seed 003 code, `RelaxedVQQuantizer`)."""
    log_q = torch.log_softmax(-distances, dim=-1)
    return (log_q.exp() * (log_q + math.log(distances.shape[-1]))).sum(dim=-1).mean()


def codebook_perplexity(weights: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of how often each code is the heaviest, over the batch and the latents: the
    number of codes in use (seed 003 code, `measure_perplexity`)."""
    chosen = F.one_hot(weights.argmax(dim=-1), weights.shape[-1]).float()
    usage = chosen.flatten(0, -2).mean(dim=0)
    return torch.exp(-(usage * torch.log(usage + 1e-10)).sum())


def permute_latents(weights: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """permute_dims for vector-valued latents: each latent's [K] weight vector of [n, d, K] moves
    as a whole, reordered across the batch by the ranks of its column of `keys` [n, d]."""
    order = keys.argsort(dim=0).unsqueeze(-1).expand_as(weights)
    return torch.gather(weights, 0, order)


def centred_mse(intensities: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every pixel and image between the decoder's linear output and the
    image x in [0, 1] shifted to [-0.5, 0.5] (the reference's data scaling and `F.mse_loss`)."""
    return (intensities - (x - 0.5)).pow(2).mean()


def intensity_logits(intensities: torch.Tensor) -> torch.Tensor:
    """Logits of the pixel values that centred intensities stand for, logit(y + 0.5), clipped to
    [INTENSITY_EPS, 1 - INTENSITY_EPS]: what `decode` gives the pictures and the `rec` score."""
    return torch.logit((intensities + 0.5).clamp(INTENSITY_EPS, 1 - INTENSITY_EPS))


def qvae_loss(rec: torch.Tensor, kl: torch.Tensor, kl_weight: float) -> torch.Tensor:
    """QVAE objective (seed 003): reconstruction MSE + kl_weight KL(q(c|x) || uniform)."""
    return rec + kl_weight * kl


def factor_qvae_loss(
    rec: torch.Tensor, kl: torch.Tensor, tc: torch.Tensor, kl_weight: float, gamma: float
) -> torch.Tensor:
    """FactorQVAE objective (seed 003): the QVAE objective + gamma TC of the soft code weights."""
    return qvae_loss(rec, kl, kl_weight) + gamma * tc


class QuantisedAutoencoder(nn.Module):
    """Table-3 encoder to d_z scalars, one global codebook of K scalars, Table-3 decoder.

    `forward(x)` (and `represent`) gives the nearest codes, the scored representation, so a saved
    model maps images to their quantised codes; `forward(x, uniform, temperature)` runs the
    relaxed training pass through `forward` (for DDP) and returns (distances [n, d, K], soft
    weights [n, d, K], soft values [n, d], centred pixel intensities). The quantisation runs in
    float32.
    """

    def __init__(self, nchan: int, dz: int, codebook_size: int) -> None:
        super().__init__()
        self.nchan = nchan
        self.dz = dz
        self.encoder = table3_encoder(nchan, dz)
        self.codebook = nn.Parameter(torch.randn(codebook_size))
        self.decoder = Decoder(nchan, dz)

    def nearest_codes(self, scalars: torch.Tensor) -> torch.Tensor:
        """Each scalar replaced by its nearest code (the evaluation-time quantisation)."""
        distances = squared_distances(scalars.float(), self.codebook)
        return self.codebook[distances.argmin(dim=-1)]

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        return self.nearest_codes(self.encoder(x))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """(nearest codes, None): a deterministic encoder has no log-variance."""
        return self.represent(x), None

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Pixel logits of the images that `codes` decode to."""
        return intensity_logits(self.decoder(codes))

    def sample_prior(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """`n` codes from the uniform prior: every latent an independent uniform draw of a code."""
        picks = torch.randint(
            len(self.codebook), (n, self.dz), generator=generator, device=generator.device
        )
        return self.codebook.detach()[picks.to(self.codebook.device)]

    def forward(
        self, x: torch.Tensor, uniform: torch.Tensor | None = None, temperature: float = 1.0
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        scalars = self.encoder(x)
        if uniform is None:
            return self.nearest_codes(scalars)
        with torch.autocast(x.device.type, enabled=False):
            distances = squared_distances(scalars.float(), self.codebook)
            weights = gumbel_softmax_weights(-distances, uniform, temperature)
            values = soft_quantise(weights, self.codebook)
        return distances, weights, values, self.decoder(values)


class QVAE(Method):
    """QVAE: scalar-quantised latents with a global codebook, MSE + kl_weight KL to uniform."""

    name = "qvae"

    def build_autoencoder(self, nchan: int) -> nn.Module:
        return QuantisedAutoencoder(nchan, self.cfg.dz, self.settings.codebook_size)

    def build_discriminator(self) -> nn.Module:
        """The reference's TC discriminator on the flattened [d_z * K] soft weights."""
        return Discriminator(
            self.cfg.dz * self.settings.codebook_size,
            width=DISCRIMINATOR_WIDTH,
            depth=DISCRIMINATOR_DEPTH,
        )

    def forward(
        self,
        x: torch.Tensor,
        gather: Gather | None = None,
        autoencoder: nn.Module | None = None,
        diagnostics: StepRandomness | None = None,
        step: int = 0,
    ) -> MethodOutput:
        runner = self.autoencoder if autoencoder is None else autoencoder
        size = self.settings.codebook_size
        uniform = self.randomness.uniform(x.shape[0], self.cfg.dz * size, x.device, sharded=True)
        uniform = uniform.view(x.shape[0], self.cfg.dz, size)
        distances, weights, _, intensities = runner(x, uniform, gumbel_temperature(step))
        with torch.autocast(x.device.type, enabled=False):
            terms = {
                "rec": centred_mse(intensities.float(), x.float()),
                "kl": uniform_prior_kl(distances),
            }
            flat = weights.flatten(1)
            if gather is not None and (self.adversarial or diagnostics is not None):
                flat = gather(flat if self.adversarial else flat.detach())
            if self.adversarial:
                terms["tc"] = density_ratio_tc(frozen_logits(self.discriminators[0], flat))
            if diagnostics is not None:
                terms["perplexity"] = codebook_perplexity(flat.detach().view(-1, self.cfg.dz, size))
                terms["temperature"] = distances.new_tensor(gumbel_temperature(step))
            terms["loss"] = self.total_loss(terms)
        return MethodOutput(terms, weights.flatten(1).detach())

    def total_loss(self, terms: Terms) -> torch.Tensor:
        return qvae_loss(terms["rec"], terms["kl"], self.settings.kl_weight)

    def density_ratio_pairs(
        self, codes: torch.Tensor, gathered: bool
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        weights = codes.view(codes.shape[0], self.cfg.dz, -1)
        keys = self.randomness.uniform(
            codes.shape[0], self.cfg.dz, codes.device, sharded=not gathered
        )
        return [(codes, permute_latents(weights, keys).flatten(1))]


class FactorQVAE(QVAE):
    """FactorQVAE: QVAE + gamma TC of the soft code weights by a density-ratio discriminator."""

    name = "factor_qvae"
    num_discriminators = 1

    def total_loss(self, terms: Terms) -> torch.Tensor:
        return factor_qvae_loss(
            terms["rec"], terms["kl"], terms["tc"], self.settings.kl_weight, self.settings.gamma
        )

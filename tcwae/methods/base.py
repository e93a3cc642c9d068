"""What every method's model shares: the step's randomness, the typed forward output, the
Gaussian forward pass with its `latent_terms` / `total_loss` hooks, and the density-ratio
discriminator step.

A method is an `nn.Module` that owns its autoencoder (and discriminators) and turns one batch of
images into named loss terms. Its class names its registry card (`name`); what the rest of the
project reads about it (label, paper, settings, optimizer family) is on that card
(`tcwae.methods.registry`), and its hyper-parameters arrive typed as `cfg.settings`.

Randomness: every random number of a step (reparameterisation noise, prior samples, permutation
keys, Gumbel noise) comes from `Method.randomness`, a `StepRandomness` over one
`torch.Generator`. The trainer gives every rank the same seed and each rank takes its slice of
draws made for the global batch, so a run on W ranks uses exactly the numbers a single process
would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from tcwae.costs import reconstruction_cost, xent
from tcwae.estimators import imq_mmd, permute_by_keys
from tcwae.methods.registry import MethodCard, method_card
from tcwae.nets import Autoencoder, Discriminator, authors_discriminator_init, authors_init

if TYPE_CHECKING:
    from tcwae.config import TrainConfig

Gather = Callable[[torch.Tensor], torch.Tensor]
Terms = dict[str, torch.Tensor]

JOINT, FACTORISED = 0, 1  # discriminator classes: numerator and denominator of the density ratio


class StepRandomness:
    """Draws made for the global batch from one generator, shared (same seed) by every rank.

    `sharded=True` draws rows for all ranks and returns this rank's block (per-example numbers
    such as reparameterisation noise); `sharded=False` returns the whole draw (numbers that every
    rank must agree on, such as prior samples compared with the gathered global batch).
    Numbers are drawn on the generator's device and moved to `device` if that differs.
    """

    def __init__(self, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> None:
        self.generator = generator
        self.rank = rank
        self.world_size = world_size

    def _shard(
        self, draw: torch.Tensor, rows: int, sharded: bool, device: torch.device
    ) -> torch.Tensor:
        if sharded:
            draw = draw[self.rank * rows : (self.rank + 1) * rows]
        return draw.to(device)

    def normal(self, rows: int, cols: int, device: torch.device, sharded: bool) -> torch.Tensor:
        total = rows * self.world_size if sharded else rows
        draw = torch.randn(total, cols, generator=self.generator, device=self.generator.device)
        return self._shard(draw, rows, sharded, device)

    def uniform(self, rows: int, cols: int, device: torch.device, sharded: bool) -> torch.Tensor:
        total = rows * self.world_size if sharded else rows
        draw = torch.rand(total, cols, generator=self.generator, device=self.generator.device)
        return self._shard(draw, rows, sharded, device)

    def indices(self, rows: int, high: int, device: torch.device) -> torch.Tensor:
        """This rank's share of `rows * world_size` indices drawn uniformly in [0, high)."""
        total = rows * self.world_size
        draw = torch.randint(high, (total,), generator=self.generator, device=self.generator.device)
        return self._shard(draw, rows, True, device)


@dataclass
class MethodOutput:
    """One forward pass: the named loss terms (`loss` is the trained total; logged-only terms are
    detached) and this rank's detached codes, which the discriminator step reads."""

    terms: Terms
    codes: torch.Tensor

    @property
    def loss(self) -> torch.Tensor:
        return self.terms["loss"]


@dataclass
class Codes:
    """Gaussian encoder outputs and sampled codes of the batch the estimators see."""

    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor


def negative_elbo(rec: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
    """Negative ELBO (seed 001, Eq. 3): -E_q log p(x|z) + KL(q(z|x) || p(z))."""
    return rec + kl


def discriminator_cross_entropy(
    logits_joint: torch.Tensor, logits_factorised: torch.Tensor
) -> torch.Tensor:
    """Density-ratio discriminator loss (Kim and Mnih 2018): classify numerator vs denominator."""
    joint = torch.full((logits_joint.shape[0],), JOINT, device=logits_joint.device)
    factorised = torch.full(
        (logits_factorised.shape[0],), FACTORISED, device=logits_factorised.device
    )
    return 0.5 * (
        F.cross_entropy(logits_joint, joint) + F.cross_entropy(logits_factorised, factorised)
    )


def frozen_logits(discriminator: nn.Module, codes: torch.Tensor) -> torch.Tensor:
    """Discriminator logits that pass gradients to the codes but not to the discriminator.

    The model step must not touch the discriminators (they are trained on detached codes in
    their own step); detaching the weights also saves their gradient computation.
    """
    weights = {name: p.detach() for name, p in discriminator.named_parameters()}
    return torch.func.functional_call(discriminator, weights, (codes,))


class Method(nn.Module):
    """One batch of images -> `MethodOutput`. Concrete subclasses set `name` (their registry
    card's) and implement `forward`; adversarial ones set `num_discriminators` and may override
    `density_ratio_pairs` and `build_discriminator`."""

    name: ClassVar[str]
    num_discriminators: ClassVar[int] = 0

    def __init__(self, cfg: TrainConfig, nchan: int, dataset_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.settings = cfg.settings
        self.dataset_size = dataset_size
        self.autoencoder = self.build_autoencoder(nchan)
        self.discriminators = nn.ModuleList(self.build_discriminators())
        if cfg.init == "authors":
            self.autoencoder.apply(authors_init)
            self.discriminators.apply(authors_discriminator_init)
        self.randomness = StepRandomness(torch.Generator().manual_seed(cfg.seed))

    @property
    def card(self) -> MethodCard:
        """This method's registry card (label, settings class, optimizer family, ...)."""
        return method_card(self.name)

    @property
    def adversarial(self) -> bool:
        return self.num_discriminators > 0

    def build_autoencoder(self, nchan: int) -> nn.Module:
        """The Table-3 Gaussian autoencoder (seed 001, Table 3)."""
        return Autoencoder(nchan, self.cfg.dz, self.cfg.variance)

    def build_discriminator(self) -> nn.Module:
        """Table 3's density-ratio discriminator on the codes."""
        return Discriminator(self.cfg.dz)

    def build_discriminators(self) -> list[nn.Module]:
        """The `num_discriminators` discriminators, in the order `density_ratio_pairs` uses."""
        return [self.build_discriminator() for _ in range(self.num_discriminators)]

    def forward(
        self,
        x: torch.Tensor,
        gather: Gather | None = None,
        autoencoder: nn.Module | None = None,
        diagnostics: StepRandomness | None = None,
        step: int = 0,
    ) -> MethodOutput:
        """Loss terms and detached codes of a batch `x` in [0, 1].

        `gather` all-gathers a per-rank tensor across ranks keeping gradients; when given, the
        batch statistics see the global batch (mws_scope 'global'). `autoencoder` may be the
        DDP-wrapped module. `diagnostics`, given on report steps only, adds terms a method logs
        but does not train on, drawn from their own stream so the training draws do not depend on
        how often a run reports. `step` is the number of optimiser steps taken before this one
        (0 on the first), for schedules such as AnnealedVAE's capacity.
        """
        raise NotImplementedError

    def discriminator_loss(
        self,
        codes: torch.Tensor,
        gather: Gather | None = None,
        discriminators: Sequence[nn.Module] | None = None,
    ) -> torch.Tensor:
        """The density-ratio discriminators' loss on detached codes: each discriminator tells
        its numerator sample from its denominator sample (`density_ratio_pairs`)."""
        if not self.adversarial:
            raise TypeError(f"{type(self).__name__} has no discriminator")
        runners = self.discriminators if discriminators is None else discriminators
        codes = (codes if gather is None else gather(codes)).float()
        pairs = self.density_ratio_pairs(codes, gathered=gather is not None)
        total = None
        for discriminator, (numerator, denominator) in zip(runners, pairs, strict=True):
            both = discriminator(torch.cat([numerator, denominator]))
            loss = discriminator_cross_entropy(*both.float().split(numerator.shape[0]))
            total = loss if total is None else total + loss
        return total

    def density_ratio_pairs(
        self, codes: torch.Tensor, gathered: bool
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(numerator, denominator) samples, one pair per discriminator: by default the codes
        against permute_dims(codes), whose ratio estimates the total correlation."""
        return [(codes, self._permute(codes, gathered))]

    def _prior_samples(self, rows: int, device: torch.device, gathered: bool) -> torch.Tensor:
        return self.randomness.normal(rows, self.cfg.dz, device, sharded=not gathered)

    def _mmd(self, z: torch.Tensor, gathered: bool) -> torch.Tensor:
        return imq_mmd(z, self._prior_samples(z.shape[0], z.device, gathered))

    def _permute(self, z: torch.Tensor, gathered: bool) -> torch.Tensor:
        keys = self.randomness.uniform(z.shape[0], z.shape[1], z.device, sharded=not gathered)
        return permute_by_keys(z, keys)


class GaussianMethod(Method):
    """Methods on the Table-3 Gaussian encoder: a reparameterised code per image, then the
    method's latent terms (`latent_terms`) and its weighted sum (`total_loss`)."""

    def reconstruction(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """WAE methods use the configured ground cost; VAE methods the Bernoulli likelihood."""
        return reconstruction_cost(self.cfg.cost)(logits, x)

    def latent_terms(self, codes: Codes, gathered: bool, step: int) -> Terms:
        """The method's latent terms on the codes the estimators see (global or local batch);
        `step` as in `forward`."""
        raise NotImplementedError

    def total_loss(self, terms: Terms) -> torch.Tensor:
        """The trained objective from the named terms."""
        raise NotImplementedError

    def forward(
        self,
        x: torch.Tensor,
        gather: Gather | None = None,
        autoencoder: nn.Module | None = None,
        diagnostics: StepRandomness | None = None,
        step: int = 0,
    ) -> MethodOutput:
        runner = self.autoencoder if autoencoder is None else autoencoder
        noise = self.randomness.normal(x.shape[0], self.cfg.dz, x.device, sharded=True)
        mu, logvar, z, logits = runner(x, noise)
        with torch.autocast(x.device.type, enabled=False):
            mu, logvar, z = mu.float(), logvar.float(), z.float()
            terms = {"rec": self.reconstruction(logits.float(), x.float())}
            codes = self._estimator_codes(mu, logvar, z, gather)
            terms.update(self.latent_terms(codes, gathered=gather is not None, step=step))
            if "mmd" not in terms and diagnostics is not None:
                with torch.no_grad():
                    prior = diagnostics.normal(
                        codes.z.shape[0], self.cfg.dz, codes.z.device, sharded=gather is None
                    )
                    terms["mmd"] = imq_mmd(codes.z, prior)
            terms["loss"] = self.total_loss(terms)
        return MethodOutput(terms, z.detach())

    def _estimator_codes(
        self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, gather: Gather | None
    ) -> Codes:
        if gather is None:
            return Codes(mu, logvar, z)
        gathered = gather(torch.cat([mu, logvar, z], dim=1))
        return Codes(*gathered.split(self.cfg.dz, dim=1))


class VAEMethod(GaussianMethod):
    """VAE baselines: Bernoulli decoder (cross-entropy on logits whatever `cost` says) and the
    the VAE-family learning rate (its cards say `optimizer_family="vae"`)."""

    def reconstruction(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return xent(logits, x)

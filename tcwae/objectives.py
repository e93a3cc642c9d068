"""The five training objectives: TCWAE-MWS, TCWAE-GAN, WAE-MMD, beta-TCVAE and FactorVAE.

Each objective is a module that owns its autoencoder (and discriminators) and turns one batch of
images into a dict of named loss terms. All methods log `rec`, `mmd` and `loss`; the IMQ MMD
between codes and prior samples is trained on only by WAE-MMD (paper Fig. 6 compares it across
methods). Equations refer to seed 001.

Randomness: every random number of a step (reparameterisation noise, prior samples, permutation
keys) comes from `Objective.randomness`, a `StepRandomness` over one `torch.Generator`. The
trainer gives every rank the same seed and each rank takes its slice of draws made for the global
batch, so a run on W ranks uses exactly the numbers a single process would.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tcwae.config import TrainConfig
from tcwae.costs import reconstruction_cost, xent
from tcwae.estimators import (
    density_ratio_tc,
    dimensionwise_kl,
    gaussian_kl_to_prior,
    gaussian_log_density,
    imq_mmd,
    log_qz_mss,
    log_qz_mws,
    permute_by_keys,
    standard_normal_log_density,
    total_correlation,
)
from tcwae.methods.dsvae import DSVAE
from tcwae.methods.rwae import RWAEGAN, RWAEMMD
from tcwae.methods.sequential import SequenceHyperParameters, SequenceMethod
from tcwae.nets import Autoencoder, Discriminator, authors_discriminator_init, authors_init

Gather = Callable[[torch.Tensor], torch.Tensor]
Terms = dict[str, torch.Tensor]

ESTIMATORS = {"mws": log_qz_mws, "mss": log_qz_mss}
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
class Codes:
    """Encoder outputs and sampled codes of the batch the estimators see."""

    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor


def index_code_mutual_information(
    log_qz_given_x: torch.Tensor, log_qz: torch.Tensor
) -> torch.Tensor:
    """Index-code MI, Eq. 4 term (i): E_q(z,n)[log q(z|x_n) - log q(z)]."""
    return (log_qz_given_x - log_qz).mean()


def tcwae_loss(
    rec: torch.Tensor, tc: torch.Tensor, dimkl: torch.Tensor, beta: float, gamma: float
) -> torch.Tensor:
    """TCWAE objective, Eq. 8: reconstruction cost + beta TC + gamma dimensionwise KL."""
    return rec + beta * tc + gamma * dimkl


def beta_tcvae_loss(
    rec: torch.Tensor,
    mi: torch.Tensor,
    tc: torch.Tensor,
    dimkl: torch.Tensor,
    beta: float,
    alpha: float = 1.0,
    gamma: float = 1.0,
) -> torch.Tensor:
    """beta-TCVAE objective, Eq. 9: -log p(x|z) + alpha MI + beta TC + gamma dimensionwise KL."""
    return rec + alpha * mi + beta * tc + gamma * dimkl


def wae_loss(rec: torch.Tensor, divergence: torch.Tensor, lam: float) -> torch.Tensor:
    """WAE objective, Eq. 7: reconstruction cost + lambda D(q(z) || p(z))."""
    return rec + lam * divergence


def negative_elbo(rec: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
    """Negative ELBO, Eq. 3: -E_q log p(x|z) + KL(q(z|x) || p(z))."""
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


def _frozen_logits(discriminator: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Discriminator logits that pass gradients to z but not to the discriminator's weights.

    The model step must not touch the discriminators (they are trained on detached codes in
    their own step); detaching the weights also saves their gradient computation.
    """
    weights = {name: p.detach() for name, p in discriminator.named_parameters()}
    return torch.func.functional_call(discriminator, weights, (z,))


class Objective(nn.Module, ABC):
    """One batch of images -> named loss terms. Subclasses add the method's latent terms."""

    adversarial = False
    num_discriminators = 0

    def __init__(self, cfg: TrainConfig, nchan: int, dataset_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.dataset_size = dataset_size
        self.autoencoder = Autoencoder(nchan, cfg.dz, cfg.variance)
        self.discriminators = nn.ModuleList(
            Discriminator(cfg.dz) for _ in range(self.num_discriminators)
        )
        if cfg.init == "authors":
            self.autoencoder.apply(authors_init)
            self.discriminators.apply(authors_discriminator_init)
        self.randomness = StepRandomness(torch.Generator().manual_seed(cfg.seed))

    def reconstruction(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """WAE methods use the configured ground cost; VAE baselines override with Bernoulli."""
        return reconstruction_cost(self.cfg.cost)(logits, x)

    @abstractmethod
    def latent_terms(self, codes: Codes, gathered: bool) -> Terms:
        """The method's latent terms on the codes the estimators see (global or local batch)."""

    @abstractmethod
    def total_loss(self, terms: Terms) -> torch.Tensor:
        """The trained objective from the named terms."""

    def forward(
        self,
        x: torch.Tensor,
        gather: Gather | None = None,
        autoencoder: nn.Module | None = None,
        diagnostics: StepRandomness | None = None,
    ) -> Terms:
        """Loss terms of a batch `x` in [0, 1]; `autoencoder` may be the DDP-wrapped module.

        `gather` all-gathers a per-rank tensor across ranks keeping gradients; when given, the
        latent estimators see the global batch (mws_scope 'global'). `diagnostics`, given on
        report steps only, adds the terms a method logs but does not train on (the IMQ MMD to the
        prior); it draws from its own stream so the training draws do not depend on how often
        a run reports.
        """
        runner = self.autoencoder if autoencoder is None else autoencoder
        noise = self.randomness.normal(x.shape[0], self.cfg.dz, x.device, sharded=True)
        mu, logvar, z, logits = runner(x, noise)
        with torch.autocast(x.device.type, enabled=False):
            mu, logvar, z = mu.float(), logvar.float(), z.float()
            terms = {"rec": self.reconstruction(logits.float(), x.float())}
            codes = self._estimator_codes(mu, logvar, z, gather)
            terms.update(self.latent_terms(codes, gathered=gather is not None))
            if "mmd" not in terms and diagnostics is not None:
                with torch.no_grad():
                    prior = diagnostics.normal(
                        codes.z.shape[0], self.cfg.dz, codes.z.device, sharded=gather is None
                    )
                    terms["mmd"] = imq_mmd(codes.z, prior)
            terms["loss"] = self.total_loss(terms)
        terms["z"] = z.detach()
        return terms

    def discriminator_loss(
        self,
        z_detached: torch.Tensor,
        gather: Gather | None = None,
        discriminators: Sequence[nn.Module] | None = None,
    ) -> torch.Tensor:
        """Loss of the density-ratio discriminators on detached codes (adversarial methods)."""
        raise TypeError(f"{type(self).__name__} has no discriminator")

    def _estimator_codes(
        self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, gather: Gather | None
    ) -> Codes:
        if gather is None:
            return Codes(mu, logvar, z)
        gathered = gather(torch.cat([mu, logvar, z], dim=1))
        return Codes(*gathered.split(self.cfg.dz, dim=1))

    def _prior_samples(self, rows: int, device: torch.device, gathered: bool) -> torch.Tensor:
        return self.randomness.normal(rows, self.cfg.dz, device, sharded=not gathered)

    def _mmd(self, z: torch.Tensor, gathered: bool) -> torch.Tensor:
        return imq_mmd(z, self._prior_samples(z.shape[0], z.device, gathered))

    def _permute(self, z: torch.Tensor, gathered: bool) -> torch.Tensor:
        keys = self.randomness.uniform(z.shape[0], z.shape[1], z.device, sharded=not gathered)
        return permute_by_keys(z, keys)


class _SamplingEstimatorObjective(Objective):
    """Methods whose TC and dimensionwise KL come from MWS/MSS log-density estimates."""

    def _log_densities(self, codes: Codes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        estimator = ESTIMATORS[self.cfg.estimator]
        log_qz, log_prod_qz = estimator(codes.z, codes.mu, codes.logvar, self.dataset_size)
        return log_qz, log_prod_qz, standard_normal_log_density(codes.z)


class TCWAEMWS(_SamplingEstimatorObjective):
    """TCWAE-MWS, Eq. 8 with the MWS (Eq. 10) or MSS estimator: rec + beta TC + gamma dimKL."""

    def latent_terms(self, codes: Codes, gathered: bool) -> Terms:
        log_qz, log_prod_qz, log_pz = self._log_densities(codes)
        return {
            "tc": total_correlation(log_qz, log_prod_qz),
            "dimkl": dimensionwise_kl(log_prod_qz, log_pz),
        }

    def total_loss(self, terms: Terms) -> torch.Tensor:
        return tcwae_loss(terms["rec"], terms["tc"], terms["dimkl"], self.cfg.beta, self.cfg.gamma)


class BetaTCVAE(_SamplingEstimatorObjective):
    """beta-TCVAE (Chen et al. 2018), Eq. 9 with alpha = gamma = 1: Bernoulli NLL + MI + beta TC
    + dimensionwise KL, i.e. the ELBO with only the TC reweighted.

    The paper compares against exactly this baseline ("Chen et al., beta = 8"), so cfg.gamma is
    not used here. `kl` (the analytic KL of Eq. 3) is logged for comparison: MI + TC + dimKL
    estimates the same quantity.
    """

    def reconstruction(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return xent(logits, x)

    def latent_terms(self, codes: Codes, gathered: bool) -> Terms:
        log_qz, log_prod_qz, log_pz = self._log_densities(codes)
        log_qz_given_x = gaussian_log_density(codes.z, codes.mu, codes.logvar).sum(dim=1)
        return {
            "mi": index_code_mutual_information(log_qz_given_x, log_qz),
            "tc": total_correlation(log_qz, log_prod_qz),
            "dimkl": dimensionwise_kl(log_prod_qz, log_pz),
            "kl": gaussian_kl_to_prior(codes.mu, codes.logvar).detach(),
        }

    def total_loss(self, terms: Terms) -> torch.Tensor:
        return beta_tcvae_loss(
            terms["rec"], terms["mi"], terms["tc"], terms["dimkl"], self.cfg.beta
        )


class WAEMMD(Objective):
    """WAE-MMD (Eq. 7 with the IMQ MMD as divergence): rec + lambda MMD(q(z), p(z))."""

    def latent_terms(self, codes: Codes, gathered: bool) -> Terms:
        return {"mmd": self._mmd(codes.z, gathered)}

    def total_loss(self, terms: Terms) -> torch.Tensor:
        return wae_loss(terms["rec"], terms["mmd"], self.cfg.lam)


class TCWAEGAN(Objective):
    """TCWAE-GAN, Eq. 8 with both KL terms by the density-ratio trick (Eq. 11).

    Discriminator 0 tells codes z from permute_dims(z) (TC); discriminator 1 tells permuted codes
    from prior samples (dimensionwise KL, KL(prod q_l || p)).
    """

    adversarial = True
    num_discriminators = 2

    def latent_terms(self, codes: Codes, gathered: bool) -> Terms:
        tc_disc, dimkl_disc = self.discriminators
        permuted = self._permute(codes.z, gathered)
        return {
            "tc": density_ratio_tc(_frozen_logits(tc_disc, codes.z)),
            "dimkl": density_ratio_tc(_frozen_logits(dimkl_disc, permuted)),
        }

    def total_loss(self, terms: Terms) -> torch.Tensor:
        return tcwae_loss(terms["rec"], terms["tc"], terms["dimkl"], self.cfg.beta, self.cfg.gamma)

    def discriminator_loss(
        self,
        z_detached: torch.Tensor,
        gather: Gather | None = None,
        discriminators: Sequence[nn.Module] | None = None,
    ) -> torch.Tensor:
        tc_disc, dimkl_disc = self.discriminators if discriminators is None else discriminators
        z = (z_detached if gather is None else gather(z_detached)).float()
        permuted = self._permute(z, gathered=gather is not None)
        prior = self._prior_samples(z.shape[0], z.device, gathered=gather is not None)
        both = tc_disc(torch.cat([z, permuted]))
        tc_loss = discriminator_cross_entropy(*both.float().split(z.shape[0]))
        both = dimkl_disc(torch.cat([permuted, prior]))
        dimkl_loss = discriminator_cross_entropy(*both.float().split(z.shape[0]))
        return tc_loss + dimkl_loss


class FactorVAE(Objective):
    """FactorVAE (Kim and Mnih 2018): ELBO (Bernoulli NLL + analytic KL) + gamma TC (Eq. 11)."""

    adversarial = True
    num_discriminators = 1

    def reconstruction(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return xent(logits, x)

    def latent_terms(self, codes: Codes, gathered: bool) -> Terms:
        return {
            "kl": gaussian_kl_to_prior(codes.mu, codes.logvar),
            "tc": density_ratio_tc(_frozen_logits(self.discriminators[0], codes.z)),
        }

    def total_loss(self, terms: Terms) -> torch.Tensor:
        return negative_elbo(terms["rec"], terms["kl"]) + self.cfg.gamma * terms["tc"]

    def discriminator_loss(
        self,
        z_detached: torch.Tensor,
        gather: Gather | None = None,
        discriminators: Sequence[nn.Module] | None = None,
    ) -> torch.Tensor:
        (tc_disc,) = self.discriminators if discriminators is None else discriminators
        z = (z_detached if gather is None else gather(z_detached)).float()
        permuted = self._permute(z, gathered=gather is not None)
        both = tc_disc(torch.cat([z, permuted]))
        return discriminator_cross_entropy(*both.float().split(z.shape[0]))


OBJECTIVES: dict[str, type[Objective]] = {
    "tcwae_mws": TCWAEMWS,
    "tcwae_gan": TCWAEGAN,
    "wae_mmd": WAEMMD,
    "beta_tcvae": BetaTCVAE,
    "factor_vae": FactorVAE,
}


SEQUENCE_OBJECTIVES: dict[str, type[SequenceMethod]] = {
    "rwae_mmd": RWAEMMD,
    "rwae_gan": RWAEGAN,
    "dsvae": DSVAE,
}


def build_objective(cfg: TrainConfig, nchan: int, dataset_size: int) -> Objective | SequenceMethod:
    """The objective of `cfg.method`, its networks initialised from `cfg.seed`.

    Initialisation draws from a forked global RNG seeded with cfg.seed, so the same config gives
    the same networks in any process without disturbing the caller's RNG state. Sequence methods
    (tcwae.methods.rwae, tcwae.methods.dsvae) take their hyper-parameters and random numbers
    explicitly; they do not use `dataset_size`.
    """
    if cfg.method not in OBJECTIVES and cfg.method not in SEQUENCE_OBJECTIVES:
        known = ", ".join([*OBJECTIVES, *SEQUENCE_OBJECTIVES])
        raise ValueError(f"unknown method {cfg.method!r}; choose one of {known}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if cfg.method in SEQUENCE_OBJECTIVES:
            randomness = StepRandomness(torch.Generator().manual_seed(cfg.seed))
            hyper = SequenceHyperParameters.from_config(cfg)
            return SEQUENCE_OBJECTIVES[cfg.method](hyper, nchan, randomness)
        return OBJECTIVES[cfg.method](cfg, nchan, dataset_size)

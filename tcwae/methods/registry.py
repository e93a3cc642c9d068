"""The registry: one `MethodCard` line per method, and what the rest of the project reads from it.

A card says everything about a method that can be known without torch: its name, label and paper,
its settings class (`tcwae.methods.settings`), its optimizer family (`tcwae.optim`), the kind of
data it trains on, and where its model class lives (imported only when a model is built, by
`tcwae.methods.method_class`). Adding a method is its module plus one line in `CARDS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from tcwae.methods.settings import (
    AnnealedVAESettings,
    BetaTCVAESettings,
    BetaVAESettings,
    DIPVAEIISettings,
    DIPVAEISettings,
    FactorQVAESettings,
    FactorVAESettings,
    HyperParameter,
    MethodSettings,
    QVAESettings,
    SequenceSettings,
    TCWAESettings,
    WAEMMDSettings,
)

if TYPE_CHECKING:
    from tcwae.config import TrainConfig

TABLE3_LATENTS = 10  # d_z of seed 001's Table 3 (B.2)
# Image-model options a sequence method cannot take, and the value it needs.
IMAGE_ONLY_OPTIONS = {"channels_last": False, "init": "torch", "variance": "exp"}


@dataclass(frozen=True)
class MethodCard:
    """What the config, the search spaces and the reports know of a method, without torch.

    `model` is "module.Class" under `tcwae.methods`. `latents_per_factor` > 0 sizes the default
    `dz` from the data set's factors (QVAE: 2, the reference's configs), else and for data sets
    without factors Table 3's 10; `channels_last` is the default memory
    order of its convolutions (NHWC: 1.1-2x the images per second on CPU, BENCHMARKS.md).
    """

    name: str
    label: str
    paper: str
    model: str
    settings: type[MethodSettings]
    optimizer_family: str = "wae"
    discrete_latents: bool = False
    sequences: bool = False  # trains on sequences [B, T, C, 64, 64], not images
    channels_last: bool = True
    latents_per_factor: int = 0

    @property
    def hyperparameters(self) -> tuple[HyperParameter, ...]:
        """The hyper-parameters the method reads, in its settings' order."""
        return self.settings.declarations()

    def default_dz(self, num_factors: int) -> int:
        """Latent dimensions when the config leaves `dz` unset."""
        if self.latents_per_factor and num_factors:
            return self.latents_per_factor * num_factors
        return TABLE3_LATENTS

    def config_problem(self, cfg: TrainConfig) -> str | None:
        """What in `cfg` this method cannot train with, as one line naming the key and the fix;
        None when it can. TrainConfig.validate asks."""
        problem = cfg.settings.problem()
        if problem is not None or not self.sequences:
            return problem
        if cfg.mig_every:
            return "mig_every must be 0 for a sequence model (the MIG curve scores image codes)"
        wrong = [key for key, value in IMAGE_ONLY_OPTIONS.items() if getattr(cfg, key) != value]
        if wrong:
            needed = ", ".join(
                f"{key} {value}".lower() for key, value in IMAGE_ONLY_OPTIONS.items()
            )
            return f"{', '.join(wrong)}: image-model options; {cfg.method} takes {needed}"
        return None


TCWAE_PAPER = "Gaujac, Feige and Barber 2021, seed 001"
DIP_PAPER = "Kumar, Sattigeri and Balakrishnan 2018"
QVAE_PAPER = "Baykal, Kandemir and Unal 2024, seed 003 (ituvisionlab/FactorQVAE)"
RWAE_PAPER = "Han, Min, Han, Li and Zhang 2021, seed 002 (our reading, docs/sequences.md)"

# One line per method; the order is the order of every method list (tables, choices, reports).
CARDS = (
    MethodCard(
        "tcwae_mws", "TCWAE-MWS", f"{TCWAE_PAPER} (Eq. 8, 10)", "tcwae_mws.TCWAEMWS", TCWAESettings
    ),
    MethodCard(
        "tcwae_gan", "TCWAE-GAN", f"{TCWAE_PAPER} (Eq. 8, 11)", "tcwae_gan.TCWAEGAN", TCWAESettings
    ),
    MethodCard(
        "wae_mmd",
        "WAE-MMD",
        "Tolstikhin et al. 2018 (seed 001, Eq. 7)",
        "wae_mmd.WAEMMD",
        WAEMMDSettings,
    ),
    MethodCard(
        "beta_tcvae",
        "beta-TCVAE",
        "Chen et al. 2018 (seed 001, Eq. 9)",
        "beta_tcvae.BetaTCVAE",
        BetaTCVAESettings,
        optimizer_family="vae",
    ),
    MethodCard(
        "factor_vae",
        "FactorVAE",
        "Kim and Mnih 2018",
        "factor_vae.FactorVAE",
        FactorVAESettings,
        optimizer_family="vae",
    ),
    MethodCard(
        "beta_vae",
        "beta-VAE",
        "Higgins et al. 2017",
        "beta_vae.BetaVAE",
        BetaVAESettings,
        optimizer_family="vae",
    ),
    MethodCard(
        "annealed_vae",
        "AnnealedVAE",
        "Burgess et al. 2018",
        "annealed_vae.AnnealedVAE",
        AnnealedVAESettings,
        optimizer_family="vae",
    ),
    MethodCard(
        "dip_vae_i",
        "DIP-VAE-I",
        f"{DIP_PAPER} (Eq. 6)",
        "dip_vae.DIPVAEI",
        DIPVAEISettings,
        optimizer_family="vae",
    ),
    MethodCard(
        "dip_vae_ii",
        "DIP-VAE-II",
        f"{DIP_PAPER} (Eq. 7)",
        "dip_vae.DIPVAEII",
        DIPVAEIISettings,
        optimizer_family="vae",
    ),
    MethodCard(
        "factor_qvae",
        "FactorQVAE",
        QVAE_PAPER,
        "factor_qvae.FactorQVAE",
        FactorQVAESettings,
        optimizer_family="factorqvae",
        discrete_latents=True,
        latents_per_factor=2,
    ),
    MethodCard(
        "qvae",
        "QVAE",
        QVAE_PAPER,
        "factor_qvae.QVAE",
        QVAESettings,
        optimizer_family="factorqvae",
        discrete_latents=True,
        latents_per_factor=2,
    ),
    MethodCard(
        "rwae_mmd",
        "R-WAE(MMD)",
        RWAE_PAPER,
        "rwae.RWAEMMD",
        SequenceSettings,
        sequences=True,
        channels_last=False,
    ),
    MethodCard(
        "rwae_gan",
        "R-WAE(GAN)",
        RWAE_PAPER,
        "rwae.RWAEGAN",
        SequenceSettings,
        sequences=True,
        channels_last=False,
    ),
    MethodCard(
        "dsvae",
        "DSVAE",
        "Li and Mandt 2018 (Eq. 3)",
        "dsvae.DSVAE",
        SequenceSettings,
        optimizer_family="vae",
        sequences=True,
        channels_last=False,
    ),
)


def _index(cards: tuple[MethodCard, ...]) -> Mapping[str, MethodCard]:
    registry: dict[str, MethodCard] = {}
    types: dict[str, str] = {}
    for card in cards:
        if card.name in registry:
            raise RuntimeError(f"method name {card.name!r} is registered twice")
        for parameter in card.hyperparameters:
            if types.setdefault(parameter.name, parameter.type_name) != parameter.type_name:
                raise RuntimeError(f"hyper-parameter {parameter.name!r} changes type")
        registry[card.name] = card
    return MappingProxyType(registry)


REGISTRY = _index(CARDS)
METHODS = tuple(REGISTRY)


def methods_for(sequences: bool) -> tuple[str, ...]:
    """The registered methods that train on sequences (True) or on images (False)."""
    return tuple(name for name, card in REGISTRY.items() if card.sequences == sequences)


SEQUENCE_METHODS = methods_for(sequences=True)


def method_card(name: str) -> MethodCard:
    """The card of method `name`; ValueError naming the choices otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None


def hyperparameter_names(method: str) -> tuple[str, ...]:
    """The names of the hyper-parameters `method` reads, in its declaration order."""
    return tuple(parameter.name for parameter in method_card(method).hyperparameters)


def all_hyperparameters() -> dict[str, list[tuple[str, HyperParameter]]]:
    """Every declared hyper-parameter name -> [(method, its declaration), ...]."""
    declared: dict[str, list[tuple[str, HyperParameter]]] = {}
    for name, card in REGISTRY.items():
        for parameter in card.hyperparameters:
            declared.setdefault(parameter.name, []).append((name, parameter))
    return declared


def method_settings(method: str, values: Mapping[str, float] | MethodSettings) -> MethodSettings:
    """`method`'s settings: `values` (a mapping, or another method's settings) over its defaults.

    ValueError naming what the method reads when `values` holds a name it does not read.
    """
    card = method_card(method)
    if isinstance(values, card.settings):
        return values
    given = values.as_dict() if isinstance(values, MethodSettings) else dict(values)
    declared = [parameter.name for parameter in card.hyperparameters]
    unknown = [name for name in given if name not in declared]
    if unknown:
        reads = ", ".join(declared) or "nothing"
        raise ValueError(f"{method} does not read {unknown[0]!r}; it reads {reads}")
    return card.settings.from_mapping(given)


def method_defaults(
    method: str, dataset_factors: int, dz: int | None, channels_last: bool | None
) -> dict[str, Any]:
    """The config fields a method decides when they are None: `dz` (from the data set's number
    of factors) and `channels_last`; the hyper-parameters' defaults are `method_settings`'."""
    card = method_card(method)
    return {
        "dz": card.default_dz(dataset_factors) if dz is None else dz,
        "channels_last": card.channels_last if channels_last is None else channels_last,
    }

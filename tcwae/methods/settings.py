"""Each method's settings: a small frozen dataclass of the hyper-parameters it reads (the shape of
pythae's per-model configs), with defaults, meanings and lower bounds. Importing this module
imports no torch, so a `TrainConfig` can be built, checked and written without the networks.

A field is declared with `setting(default, meaning, minimum)`; an `int` annotation makes the
hyper-parameter an integer. The flat config keys (`beta: 4`) are the field names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class HyperParameter:
    """One hyper-parameter a method reads: its config key, what it means, its default and its
    lower bound (read from a settings field, for the search spaces and the command lines)."""

    name: str
    meaning: str
    default: float
    minimum: float = 0.0
    integer: bool = False

    @property
    def type_name(self) -> str:
        return "int" if self.integer else "float"


def setting(default: float, meaning: str, minimum: float = 0.0) -> Any:
    """A settings field: `default`, what the value means and the smallest value accepted."""
    return field(default=default, metadata={"meaning": meaning, "minimum": minimum})


@dataclass(frozen=True)
class MethodSettings:
    """The hyper-parameters of one method; subclasses add fields with `setting`."""

    @classmethod
    def declarations(cls) -> tuple[HyperParameter, ...]:
        """The fields as `HyperParameter`s, in declaration order (the order `to_dict` writes)."""
        return tuple(
            HyperParameter(
                item.name,
                item.metadata["meaning"],
                item.default,
                item.metadata["minimum"],
                integer=item.type == "int",
            )
            for item in fields(cls)
        )

    @classmethod
    def from_mapping(cls, values: Mapping[str, float]) -> MethodSettings:
        """The settings with `values` over the defaults; names must be the class's fields."""
        return cls(**values)

    def as_dict(self) -> dict[str, float]:
        """Name -> value, in declaration order."""
        return {item.name: getattr(self, item.name) for item in fields(self)}

    def problem(self) -> str | None:
        """A constraint between or beyond the fields' bounds that these values break, as one line
        naming the key and the fix; None when there is none."""
        return None


@dataclass(frozen=True)
class TCWAESettings(MethodSettings):
    """TCWAE (seed 001, Eq. 8), both estimators."""

    beta: float = setting(1.0, "weight of the total correlation TC(q(z))")
    gamma: float = setting(1.0, "weight of the dimensionwise KL sum_d KL(q(z_d) || p(z_d))")


@dataclass(frozen=True)
class WAEMMDSettings(MethodSettings):
    """WAE-MMD (seed 001, Eq. 7)."""

    lam: float = setting(1.0, "weight of the IMQ MMD between q(z) and p(z)")


@dataclass(frozen=True)
class BetaTCVAESettings(MethodSettings):
    """beta-TCVAE (seed 001, Eq. 9, alpha = 1)."""

    beta: float = setting(1.0, "weight of the total correlation TC(q(z))")
    gamma: float = setting(
        1.0, "weight of the dimensionwise KL (Eq. 9; 1 in Chen et al. and in seed 001's baseline)"
    )


@dataclass(frozen=True)
class FactorVAESettings(MethodSettings):
    """FactorVAE (Kim and Mnih 2018, Eq. 2)."""

    gamma: float = setting(1.0, "weight of the total correlation (density-ratio estimate)")


@dataclass(frozen=True)
class BetaVAESettings(MethodSettings):
    """beta-VAE (Higgins et al. 2017, Eq. 4)."""

    beta: float = setting(1.0, "weight of KL(q(z|x) || p(z)); 1 is the plain VAE")


@dataclass(frozen=True)
class AnnealedVAESettings(MethodSettings):
    """AnnealedVAE (Burgess et al. 2018, Eq. 8)."""

    gamma: float = setting(1000.0, "weight of |KL - C|")
    c_max: float = setting(25.0, "final capacity C in nats")
    anneal_steps: int = setting(100_000, "steps over which C rises linearly from 0 to c_max", 1)


LAMBDA_OD_MEANING = "weight of the squared off-diagonal covariances"
LAMBDA_D_FACTOR_MEANING = "lambda_d / lambda_od"


@dataclass(frozen=True)
class DIPVAEISettings(MethodSettings):
    """DIP-VAE-I (Kumar et al. 2018, Eq. 6): lambda_d = 10 lambda_od, as disentanglement_lib."""

    lambda_od: float = setting(10.0, LAMBDA_OD_MEANING)
    lambda_d_factor: float = setting(10.0, LAMBDA_D_FACTOR_MEANING)


@dataclass(frozen=True)
class DIPVAEIISettings(MethodSettings):
    """DIP-VAE-II (Kumar et al. 2018, Eq. 7): lambda_d = lambda_od, as disentanglement_lib."""

    lambda_od: float = setting(10.0, LAMBDA_OD_MEANING)
    lambda_d_factor: float = setting(1.0, LAMBDA_D_FACTOR_MEANING)


KL_WEIGHT_MEANING = "weight of KL(softmax(-distance) || uniform), mean over latents"
CODEBOOK_SIZE_MEANING = "number of scalar codes in the global codebook"


@dataclass(frozen=True)
class QVAESettings(MethodSettings):
    """QVAE (seed 003): the quantised autoencoder without the TC term."""

    kl_weight: float = setting(1e-3, KL_WEIGHT_MEANING)
    codebook_size: int = setting(64, CODEBOOK_SIZE_MEANING, 2)


@dataclass(frozen=True)
class FactorQVAESettings(MethodSettings):
    """FactorQVAE (seed 003): QVAE plus gamma TC of the soft code weights."""

    kl_weight: float = setting(1e-3, KL_WEIGHT_MEANING)
    gamma: float = setting(1e-4, "weight of the total correlation of the soft code weights")
    codebook_size: int = setting(64, CODEBOOK_SIZE_MEANING, 2)


@dataclass(frozen=True)
class SequenceSettings(MethodSettings):
    """R-WAE and DSVAE (seed 002): code sizes, recurrent width and the two loss weights."""

    beta: float = setting(1.0, "weight of the static (and action) divergence")
    gamma: float = setting(1.0, "weight of the dynamic divergences, summed over frames")
    ds: int = setting(16, "size of the static code s", 1)
    rnn_hidden: int = setting(128, "width of the LSTMs and frame features (even)", 2)
    num_actions: int = setting(0, "categories of the action code (0 = none; weakly supervised)")

    def problem(self) -> str | None:
        if int(self.rnn_hidden) % 2:
            return (
                f"rnn_hidden must be even (half of it a direction of the frame LSTM), "
                f"got {self.rnn_hidden:g}"
            )
        return None

"""Encoder, decoder and discriminator of the paper (seed 001, Appendix B.2, Table 3).

All methods share these networks so that differences in the results come from the objectives
alone. The decoder returns logits (no final activation): the costs in `tcwae.costs` apply the
sigmoid themselves, which keeps the Bernoulli cross-entropy numerically stable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_SIZE = 64
_FEATURE_SIDE = 4  # 64 halved by four stride-2 layers
_FEATURE_CHANNELS = 64


def _down(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 4x4 stride-2 convolution that halves the side (padding 1)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1)


def _up(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    """A 4x4 stride-2 transposed convolution that doubles the side (padding 1)."""
    return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1)


def exp_log_variance(raw: torch.Tensor) -> torch.Tensor:
    """The encoder's second head read as log sigma^2 directly (sigma^2 = exp(raw))."""
    return raw


def softplus_log_variance(raw: torch.Tensor) -> torch.Tensor:
    """The authors' parameterisation (diswae `networks.encoder`): sigma^2 = softplus(clip(raw,
    -20, 500)) and sigma = sqrt(1e-10 + sigma^2); returned as log(sigma^2 + 1e-10)."""
    variance = F.softplus(raw.clamp(-20.0, 500.0))
    return torch.log(variance + 1e-10)


VARIANCE_HEADS = {"exp": exp_log_variance, "softplus": softplus_log_variance}


def authors_init(module: nn.Module) -> None:
    """The authors' autoencoder initialisation (diswae `ops/`, `configs.py`), for `Module.apply`:
    convolution kernels glorot-uniform, dense layers N(0, 0.1^2), biases 0."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.1)
        nn.init.zeros_(module.bias)


def authors_discriminator_init(module: nn.Module) -> None:
    """The authors' discriminator initialisation (diswae `networks.discriminator`), for
    `Module.apply`: dense layers glorot-uniform, biases 0."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


def table3_encoder(nchan: int, outputs: int) -> nn.Sequential:
    """Table 3's encoder: four 4x4 stride-2 convolutions (32, 32, 64, 64; ReLU), FC 256 (ReLU),
    then a linear layer with `outputs` units."""
    return nn.Sequential(
        _down(nchan, 32),
        nn.ReLU(),
        _down(32, 32),
        nn.ReLU(),
        _down(32, 64),
        nn.ReLU(),
        _down(64, _FEATURE_CHANNELS),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(_FEATURE_CHANNELS * _FEATURE_SIDE**2, 256),
        nn.ReLU(),
        nn.Linear(256, outputs),
    )


class Encoder(nn.Module):
    """Gaussian encoder q(z|x) with diagonal covariance: image -> (mean, log-variance)."""

    def __init__(self, nchan: int, dz: int, variance: str = "exp") -> None:
        super().__init__()
        self.dz = dz
        self.log_variance = VARIANCE_HEADS[variance]
        self.features = table3_encoder(nchan, 2 * dz)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw = self.features(x).chunk(2, dim=1)
        return mu, self.log_variance(raw)


class Decoder(nn.Module):
    """Deterministic decoder (WAE) or Bernoulli decoder (VAE baselines): code -> pixel logits."""

    def __init__(self, nchan: int, dz: int) -> None:
        super().__init__()
        self.project = nn.Sequential(
            nn.Linear(dz, 256),
            nn.ReLU(),
            nn.Linear(256, _FEATURE_CHANNELS * _FEATURE_SIDE**2),
            nn.ReLU(),
            nn.Unflatten(1, (_FEATURE_CHANNELS, _FEATURE_SIDE, _FEATURE_SIDE)),
        )
        self.upsample = nn.Sequential(
            _up(_FEATURE_CHANNELS, 64),
            nn.ReLU(),
            _up(64, 32),
            nn.ReLU(),
            _up(32, 32),
            nn.ReLU(),
            _up(32, nchan),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.project(z))


class Discriminator(nn.Module):
    """Density-ratio discriminator (Table 3): 6 hidden layers of 1000, leaky ReLU 0.2, 2 logits.

    Logit 0 stands for "drawn from the distribution in the numerator" (e.g. q(z)), logit 1 for
    the denominator (e.g. the product of marginals), so logit_0 - logit_1 estimates the log ratio.
    `width` and `depth` exist for tests and small experiments; the defaults are the paper's.
    """

    def __init__(self, dz: int, width: int = 1000, depth: int = 6) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_features = dz
        for _ in range(depth):
            layers += [nn.Linear(in_features, width), nn.LeakyReLU(0.2)]
            in_features = width
        layers.append(nn.Linear(in_features, 2))
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


class Autoencoder(nn.Module):
    """Encoder and decoder together.

    `forward(x)` returns the encoder means, so a saved or logged model maps images straight to
    their representation. `forward(x, noise)` runs the reparameterised training pass; the trainer
    wraps the module in DistributedDataParallel, which only synchronises what runs through
    `forward`, so the training pass has to be reachable from there.
    """

    def __init__(self, nchan: int, dz: int, variance: str = "exp") -> None:
        super().__init__()
        self.nchan = nchan
        self.dz = dz
        self.encoder = Encoder(nchan, dz, variance)
        self.decoder = Decoder(nchan, dz)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """The representation that is scored: the encoder means."""
        return self.encoder(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def sample_prior(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """`n` codes from the prior N(0, I), on the generator's device."""
        return torch.randn(n, self.dz, generator=generator, device=generator.device)

    def forward(
        self, x: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Means for `noise=None`; else (mu, logvar, z, logits) with z = mu + sigma * noise."""
        mu, logvar = self.encoder(x)
        if noise is None:
            return mu
        z = mu + torch.exp(0.5 * logvar) * noise
        return mu, logvar, z, self.decoder(z)

"""Pictures of a trained model, drawn the way the paper draws them (seed 001, Fig. 2/4, 11-12):
latent traversals with one row per latent dimension ordered by the aggregate posterior's
dimensionwise KL, reconstructions and prior samples. The worker draws them after training.

Image grids are composed pixel for pixel in numpy and drawn 1:1 (one 64x64 tile = 64x64 PNG
pixels), so the files are sharp and their geometry is exact (`tile_grid_size`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from tcwae.png import DPI, save_figure

TILE_GAP = 2
ROW_LABEL_WIDTH = 96
HEADER_HEIGHT = 18
ENCODE_BATCH = 256


def kl_per_latent_dimension(
    mu: torch.Tensor | np.ndarray,
    logvar: torch.Tensor | np.ndarray,
    num_samples: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """KL(q(z_i) || N(0, 1)) per dimension i, where q(z_i) = mean_n N(mu_ni, exp(logvar_ni)).

    Monte Carlo with the exact mixture density: draw `num_samples` z from the mixture (stratified:
    each component in turn, or a random subset of components when there are more), evaluate
    log q(z_i) as a logsumexp over all N components and average log q(z_i) - log p(z_i). A
    moment-matched Gaussian
    would be cheaper, but it only lower-bounds the KL (the Gaussian has the largest entropy for
    given moments) and is blind to multimodality: a dimension that splits a discrete factor into
    separate clusters (dSprites' shape) can have mean 0 and variance 1 and still be far from the
    prior. The estimate is unbiased for E_q[log q - log p] and may dip slightly below zero by noise.
    Cost: num_samples x n x dz density evaluations, so pass a few thousand images, not 700k.
    """
    mu_t = torch.as_tensor(mu, dtype=torch.float32).cpu()
    logvar_t = torch.as_tensor(logvar, dtype=torch.float32).cpu()
    if mu_t.ndim != 2 or mu_t.shape != logvar_t.shape or mu_t.shape[0] == 0:
        raise ValueError(
            f"mu and logvar must both be [n, dz] with n >= 1, got {tuple(mu_t.shape)} "
            f"and {tuple(logvar_t.shape)}"
        )
    count, dz = mu_t.shape
    generator = torch.Generator().manual_seed(seed)
    if count >= num_samples:
        chosen = torch.randperm(count, generator=generator)[:num_samples]
    else:
        chosen = torch.arange(num_samples) % count
    noise = torch.randn(len(chosen), dz, generator=generator)
    samples = mu_t[chosen] + torch.exp(0.5 * logvar_t[chosen]) * noise

    inv_var = torch.exp(-logvar_t)
    log_norm = -0.5 * (logvar_t + math.log(2 * math.pi))
    chunk = max(1, 8_000_000 // (count * dz))
    log_q_parts = []
    for start in range(0, len(samples), chunk):
        z = samples[start : start + chunk, None, :]
        log_components = log_norm - 0.5 * (z - mu_t) ** 2 * inv_var
        log_q_parts.append(torch.logsumexp(log_components, dim=1) - math.log(count))
    log_q = torch.cat(log_q_parts)
    log_p = -0.5 * samples**2 - 0.5 * math.log(2 * math.pi)
    return (log_q - log_p).double().mean(dim=0).numpy()


def save_traversals(
    autoencoder: nn.Module,
    images_uint8: torch.Tensor,
    path: str | Path,
    kl_order: Sequence[int] | None = None,
    steps: int = 9,
    span: float = 2.0,
) -> list[int]:
    """Latent traversals (paper Fig. 2/4): row r decodes the first image's code with dimension
    order[r] set to each of `steps` values evenly spaced over [-span, span].

    Without `kl_order` the rows are ordered by increasing aggregate dimensionwise KL estimated on
    all of `images_uint8` (paper Fig. 2) and each row is labelled with its KL; pass `kl_order` to
    reuse an order computed on a larger set. A deterministic (quantised) encoder has no KL: its
    rows keep the dimensions' order. Returns the row order.
    """
    images = _as_images(images_uint8)
    mu, logvar = _encode(autoencoder, images)
    dz = mu.shape[1]
    if kl_order is None and logvar is None:
        order = list(range(dz))
        labels = [f"z{i}" for i in order]
    elif kl_order is None:
        kl = kl_per_latent_dimension(mu, logvar)
        order = [int(i) for i in np.argsort(kl, kind="stable")]
        labels = [f"z{i}  KL {kl[i]:.2f}" for i in order]
    else:
        order = [int(i) for i in kl_order]
        if sorted(order) != list(range(dz)):
            raise ValueError(f"kl_order must be a permutation of range({dz}), got {order}")
        labels = [f"z{i}" for i in order]
    values = torch.linspace(-span, span, steps, dtype=mu.dtype)
    codes = mu[0].repeat(dz, steps, 1)
    for row, dim in enumerate(order):
        codes[row, :, dim] = values
    tiles = _decode(autoencoder, codes.reshape(dz * steps, dz)).reshape(
        dz, steps, *images.shape[1:]
    )
    save_tile_grid(
        tiles, path, row_labels=labels, column_labels=[f"{float(v):.2g}" for v in values]
    )
    return order


def save_reconstructions(
    autoencoder: nn.Module, images_uint8: torch.Tensor, path: str | Path, columns: int = 8
) -> None:
    """Inputs over their reconstructions (sigmoid of the decoded encoder means), `columns` per
    row pair, so any number of images stays readable."""
    images = _as_images(images_uint8)
    mu, _ = _encode(autoencoder, images)
    originals = images.float() / 255.0
    reconstructions = _decode(autoencoder, mu)
    count = len(images)
    columns = min(columns, count)
    pairs = math.ceil(count / columns)
    blank = torch.ones(pairs * columns - count, *images.shape[1:])
    originals = torch.cat([originals, blank]).reshape(pairs, columns, *images.shape[1:])
    reconstructions = torch.cat([reconstructions, blank]).reshape(pairs, columns, *images.shape[1:])
    tiles = torch.stack([originals, reconstructions], dim=1).flatten(0, 1)
    save_tile_grid(tiles, path, row_labels=["input", "reconstruction"] * pairs)


def save_samples(autoencoder: nn.Module, path: str | Path, n: int = 64, seed: int = 0) -> None:
    """`n` codes from the prior, decoded, in a near-square grid: the module's `sample_prior` when
    it has one (a quantised model's uniform prior over codes), else N(0, I)."""
    generator = torch.Generator().manual_seed(seed)
    sample_prior = getattr(autoencoder, "sample_prior", None)
    if sample_prior is not None:
        codes = sample_prior(n, generator).cpu()
    else:
        codes = torch.randn(n, _latent_size(autoencoder), generator=generator)
    decoded = _decode(autoencoder, codes)
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    blank = torch.ones(rows * columns - n, *decoded.shape[1:])
    tiles = torch.cat([decoded, blank]).reshape(rows, columns, *decoded.shape[1:])
    save_tile_grid(tiles, path)


def tile_grid_size(
    rows: int, columns: int, row_labels: bool, column_labels: bool
) -> tuple[int, int]:
    """(height, width) in pixels of a tile-grid PNG, for callers and tests that place it."""
    height = rows * 64 + (rows + 1) * TILE_GAP + (HEADER_HEIGHT if column_labels else 0)
    width = columns * 64 + (columns + 1) * TILE_GAP + (ROW_LABEL_WIDTH if row_labels else 0)
    return height, width


def _as_images(images_uint8: torch.Tensor | np.ndarray) -> torch.Tensor:
    images = torch.as_tensor(images_uint8).cpu()
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"images must be uint8 [n, 1 or 3, 64, 64], got {images.dtype} {tuple(images.shape)}"
        )
    if tuple(images.shape[2:]) != (64, 64):
        raise ValueError(f"images must be 64x64 pixels, got {tuple(images.shape[2:])}")
    if len(images) == 0:
        raise ValueError("images must hold at least one image")
    return images


def _device(autoencoder: nn.Module) -> torch.device:
    return next(autoencoder.parameters()).device


def _latent_size(autoencoder: nn.Module) -> int:
    """dz, found by encoding one blank image: works for any module with encode/decode, whatever
    its attributes are called."""
    probe = torch.zeros(1, _input_channels(autoencoder), 64, 64, device=_device(autoencoder))
    with _evaluating(autoencoder), torch.no_grad():
        mu, _ = autoencoder.encode(probe)
    return int(mu.shape[1])


def _input_channels(autoencoder: nn.Module) -> int:
    for module in autoencoder.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise ValueError("cannot tell the number of input channels: the encoder has no Conv2d")


def _encode(
    autoencoder: nn.Module, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Codes and log-variances; the log-variances are None for a deterministic encoder."""
    device = _device(autoencoder)
    means, logvars = [], []
    with _evaluating(autoencoder), torch.no_grad():
        for batch in images.split(ENCODE_BATCH):
            mu, logvar = autoencoder.encode(batch.to(device).float() / 255.0)
            means.append(mu.float().cpu())
            if logvar is not None:
                logvars.append(logvar.float().cpu())
    return torch.cat(means), torch.cat(logvars) if logvars else None


def _decode(autoencoder: nn.Module, codes: torch.Tensor) -> torch.Tensor:
    """Pixel intensities in [0, 1] (sigmoid of the decoder's logits), on the CPU."""
    device = _device(autoencoder)
    outputs = []
    with _evaluating(autoencoder), torch.no_grad():
        for batch in codes.split(ENCODE_BATCH):
            outputs.append(torch.sigmoid(autoencoder.decode(batch.to(device)).float()).cpu())
    return torch.cat(outputs)


class _evaluating:
    """Put a module in eval mode for a block and restore its previous mode afterwards."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.was_training = module.training

    def __enter__(self) -> None:
        self.module.eval()

    def __exit__(self, *exc_info: object) -> None:
        self.module.train(self.was_training)


def save_tile_grid(
    tiles: torch.Tensor,
    path: str | Path,
    row_labels: Sequence[str] | None = None,
    column_labels: Sequence[str] | None = None,
) -> None:
    """Draw tiles [rows, columns, C, 64, 64] in [0, 1] on a white canvas, one PNG pixel per image
    pixel, with optional row labels on the left and column labels on top."""
    rows, columns, channels = tiles.shape[:3]
    height, width = tile_grid_size(rows, columns, row_labels is not None, column_labels is not None)
    top = HEADER_HEIGHT if column_labels is not None else 0
    left = ROW_LABEL_WIDTH if row_labels is not None else 0
    canvas = np.ones((height, width, 3), dtype=np.float32)
    rgb = tiles.expand(rows, columns, 3, 64, 64) if channels == 1 else tiles
    rgb = rgb.permute(0, 1, 3, 4, 2).clamp(0, 1).numpy()
    pitch = 64 + TILE_GAP
    for row in range(rows):
        for column in range(columns):
            y = top + TILE_GAP + row * pitch
            x = left + TILE_GAP + column * pitch
            canvas[y : y + 64, x : x + 64] = rgb[row, column]

    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    ax = figure.add_axes((0, 0, 1, 1))
    ax.imshow(canvas, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    for row, label in enumerate(row_labels or []):
        y = top + TILE_GAP + row * pitch + 32
        figure.text(4 / width, 1 - y / height, label, ha="left", va="center", fontsize=7)
    for column, label in enumerate(column_labels or []):
        x = left + TILE_GAP + column * pitch + 32
        figure.text(x / width, 1 - (top / 2) / height, label, ha="center", va="center", fontsize=7)
    save_figure(figure, path)

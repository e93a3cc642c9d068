"""Reconstruction costs on decoder logits: summed over pixels, averaged over the batch.

`xent` is the Bernoulli negative log-likelihood, the VAE baselines' reconstruction term, and the
cross-entropy "cost" the paper uses for WAE methods on dSprites (Section 4.1); `l1` and `l2sq`
compare sigmoid(logits) with the image. Costs take logits so that the cross-entropy uses the
stable log-sigmoid form.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def xent_per_image(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Bernoulli cross-entropy -log p(x|z) of each image, summed over pixels: [n]."""
    pixels = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return pixels.flatten(1).sum(dim=1)


def l1_per_image(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L1 norm ||x - sigmoid(logits)||_1 of each image: [n]."""
    return (torch.sigmoid(logits) - targets).abs().flatten(1).sum(dim=1)


def l2sq_per_image(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Squared L2 norm ||x - sigmoid(logits)||_2^2 of each image: [n]."""
    return (torch.sigmoid(logits) - targets).pow(2).flatten(1).sum(dim=1)


PER_IMAGE_COSTS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "xent": xent_per_image,
    "l1": l1_per_image,
    "l2sq": l2sq_per_image,
}


def xent(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Bernoulli cross-entropy, summed over pixels, mean over the batch."""
    return xent_per_image(logits, targets).mean()


def l1(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L1 cost, summed over pixels, mean over the batch."""
    return l1_per_image(logits, targets).mean()


def l2sq(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Squared L2 cost, summed over pixels, mean over the batch."""
    return l2sq_per_image(logits, targets).mean()


COSTS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "xent": xent,
    "l1": l1,
    "l2sq": l2sq,
}


def reconstruction_cost(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The batch cost called `name` (one of tcwae.config.COSTS)."""
    try:
        return COSTS[name]
    except KeyError:
        raise ValueError(f"unknown cost {name!r}; choose one of {', '.join(COSTS)}") from None

"""Shared pieces of the science-core tests (networks, objectives, trainer, DDP)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

from tcwae.data import small_dsprites

TINY_GRID = (3, 3, 4, 8, 8)


@functools.cache
def tiny_dsprites():
    """Procedural dSprites on a reduced grid: 2,304 images, rendered once per process."""
    return small_dsprites(TINY_GRID)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run a block with one intra-op thread.

    These tests train on batches of a few images, where threads only add barriers; on shared
    CPUs each barrier can stall for a whole time slice, which made them ten times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)

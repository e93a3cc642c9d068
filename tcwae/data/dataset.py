"""The `FactorDataset` interface every loader returns, its error type and the data root.

Every loader turns its own file format into one `FactorDataset` (uint8 images `[N, C, 64, 64]`
holding 0..255, or sequences `[N, T, C, 64, 64]` for video data sets, plus integer factor
classes); `tcwae.data.cache` stores it once so that later loads read one compact file.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from tcwae.errors import UserError

log = logging.getLogger(__name__)


class DatasetError(UserError):
    """A data set cannot be provided; the message names the file or name and says what to do."""


def data_root() -> Path:
    """Where data sets and caches live: `$TCWAE_DATA`, else `~/.cache/tcwae`."""
    configured = os.environ.get("TCWAE_DATA")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "tcwae"


def warn_not_official(message: str, stacklevel: int) -> None:
    """Say loudly (a RuntimeWarning at the caller `stacklevel` frames up, and the log) that a
    data set falls back to a procedural rendering instead of the official data."""
    warnings.warn(message, RuntimeWarning, stacklevel=stacklevel + 1)
    log.warning(message)


def empty_uint8(shape: Sequence[int], zeroed: bool = False) -> np.ndarray:
    """A large uint8 buffer allocated by torch and seen as numpy (shared memory).

    Not `np.empty`: numpy asks the kernel for transparent huge pages on large arrays, and where
    THP defrag is 'madvise' the first touch of a multi-GB array stalls in memory compaction (three
    times slower on the machines this was measured on). `torch.from_numpy` of the result is free.
    """
    allocate = torch.zeros if zeroed else torch.empty
    return allocate(tuple(shape), dtype=torch.uint8).numpy()


def mixed_radix_strides(factor_sizes: Sequence[int]) -> np.ndarray:
    """Strides of the row-major factor grid: the last factor varies fastest."""
    strides = np.ones(len(factor_sizes), dtype=np.int64)
    for axis in range(len(factor_sizes) - 2, -1, -1):
        strides[axis] = strides[axis + 1] * factor_sizes[axis + 1]
    return strides


def factor_grid(factor_sizes: Sequence[int]) -> np.ndarray:
    """All factor combinations, int64 `[prod(sizes), k]`, in mixed-radix (row-major) order."""
    total = math.prod(factor_sizes)
    return np.stack(np.unravel_index(np.arange(total), tuple(factor_sizes)), axis=1).astype(
        np.int64
    )


def _shared_dataset(
    name: str,
    images: np.ndarray,
    factor_classes: np.ndarray,
    factor_sizes: Sequence[int],
    factor_names: Sequence[str],
    source: str,
) -> FactorDataset:
    """Unpickle a FactorDataset around `images` without copying them (they may be read-only
    shared memory: training only reads them)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.from_numpy(images)
    return FactorDataset(name, tensor, factor_classes, factor_sizes, factor_names, source)


class FactorDataset:
    """Images in memory with the ground-truth factor classes of each image.

    A video data set stores one sequence of T frames per item (`images` `[N, T, C, 64, 64]`);
    everything below then works per sequence (`observations` returns `[n, T, C, 64, 64]`).

    `images` may be in any order. When they are exactly the full factor grid in mixed-radix order
    (dSprites, Shapes3D) `index_of` is pure arithmetic. Otherwise (smallNORB, whose unobserved
    instance factor gives ten images per observed combination, or a partial file) a lookup maps
    each observed combination to the FIRST stored image that has it, so the choice is
    deterministic; `sample_factors` then draws uniformly over the combinations that occur.
    """

    def __init__(
        self,
        name: str,
        images: torch.Tensor,
        factor_classes: np.ndarray,
        factor_sizes: Sequence[int],
        factor_names: Sequence[str],
        source: str,
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
            raise ValueError(
                f"{name}: images must be a torch.uint8 tensor, got {_describe(images)}"
            )
        frame_shape = tuple(images.shape[-3:])
        if images.dim() not in (4, 5) or frame_shape not in ((1, 64, 64), (3, 64, 64)):
            raise ValueError(
                f"{name}: images must have shape [N, 1 or 3, 64, 64] (or [N, T, 1 or 3, 64, 64] "
                f"for sequences), got {list(images.shape)}"
            )
        factor_sizes = tuple(int(size) for size in factor_sizes)
        factor_names = tuple(str(factor) for factor in factor_names)
        classes = np.asarray(factor_classes)
        if classes.ndim != 2 or classes.shape != (len(images), len(factor_sizes)):
            raise ValueError(
                f"{name}: factor_classes must have shape [{len(images)}, {len(factor_sizes)}], "
                f"got {list(classes.shape)}"
            )
        if not np.issubdtype(classes.dtype, np.integer):
            raise ValueError(f"{name}: factor_classes must be integers, got {classes.dtype}")
        if len(factor_names) != len(factor_sizes) or any(size < 1 for size in factor_sizes):
            raise ValueError(
                f"{name}: need one name per factor and sizes >= 1, "
                f"got names {factor_names} and sizes {factor_sizes}"
            )
        classes = np.ascontiguousarray(classes, dtype=np.int64)
        if len(classes) and ((classes < 0).any() or (classes >= np.array(factor_sizes)).any()):
            raise ValueError(f"{name}: factor_classes outside the factor sizes {factor_sizes}")

        self.name = name
        self.images = images
        self.factor_classes = classes
        self.factor_sizes = factor_sizes
        self.factor_names = factor_names
        self.source = source
        self._strides = mixed_radix_strides(factor_sizes)
        self._lookup: np.ndarray | None = None
        self._observed: np.ndarray | None = None
        if factor_sizes:
            self._build_lookup()

    def _build_lookup(self) -> None:
        flat = self.factor_classes @ self._strides
        grid_size = math.prod(self.factor_sizes)
        if len(flat) == grid_size and np.array_equal(flat, np.arange(grid_size)):
            return
        observed, first_index = np.unique(flat, return_index=True)
        self._lookup = np.full(grid_size, -1, dtype=np.int64)
        self._lookup[observed] = first_index
        if len(observed) < grid_size:
            self._observed = observed

    @property
    def num_channels(self) -> int:
        return int(self.images.shape[-3])

    @property
    def num_frames(self) -> int | None:
        """Frames per sequence for a video data set, None for images."""
        return int(self.images.shape[1]) if self.images.dim() == 5 else None

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __reduce__(self) -> tuple:
        """Pickle the images as a numpy array, so that Ray's object store (pickle protocol 5,
        out-of-band buffers) holds them once per node and every process on that node maps the
        same memory read-only instead of receiving a copy."""
        return (
            _shared_dataset,
            (
                self.name,
                self.images.numpy(),
                self.factor_classes,
                self.factor_sizes,
                self.factor_names,
                self.source,
            ),
        )

    def __repr__(self) -> str:
        return (
            f"FactorDataset({self.name!r}, n={len(self)}, channels={self.num_channels}, "
            f"factors={dict(zip(self.factor_names, self.factor_sizes, strict=True))}, "
            f"source={self.source!r})"
        )

    def _require_factors(self, operation: str) -> None:
        if not self.factor_sizes:
            raise DatasetError(
                f"{self.name} has no ground-truth factors, so {operation} is undefined; "
                "factor metrics need dsprites, smallnorb or shapes3d"
            )

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` factor combinations drawn uniformly (over the observed ones), int64 `[n, k]`."""
        self._require_factors("sample_factors")
        if self._observed is None:
            return rng.integers(0, np.array(self.factor_sizes), size=(n, self.num_factors))
        flat = self._observed[rng.integers(0, len(self._observed), size=n)]
        return np.stack(np.unravel_index(flat, self.factor_sizes), axis=1).astype(np.int64)

    def index_of(self, factors: np.ndarray) -> np.ndarray:
        """Stored image index, int64 `[n]`, of each row of factor classes `[n, k]`."""
        self._require_factors("index_of")
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.shape[1] != self.num_factors:
            raise ValueError(
                f"{self.name}: factors must have shape [n, {self.num_factors}], "
                f"got {list(factors.shape)}"
            )
        if len(factors) and ((factors < 0).any() or (factors >= np.array(self.factor_sizes)).any()):
            raise ValueError(f"{self.name}: factor classes outside the sizes {self.factor_sizes}")
        flat = factors.astype(np.int64, copy=False) @ self._strides
        if self._lookup is None:
            return flat
        indices = self._lookup[flat]
        if self._observed is not None and (indices < 0).any():
            missing = factors[np.flatnonzero(indices < 0)[0]].tolist()
            raise DatasetError(
                f"{self.name}: factor combination {missing} does not occur in the data "
                f"({len(self._observed)} of {len(self._lookup)} combinations are present)"
            )
        return indices

    def float_batch(self, indices: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Images (or sequences) at `indices` as float32 in [0, 1], on the images' device.

        `index_select` copies whole rows; advanced indexing (`images[indices]`) computes an offset
        per pixel and is about 3x slower on CPU for batches of 64x64 images.
        """
        indices = torch.as_tensor(indices, dtype=torch.int64, device=self.images.device)
        return self.images.index_select(0, indices).float().div_(255.0)

    def observations(self, factors: np.ndarray) -> np.ndarray:
        """The images (sequences) showing `factors`, float32 `[n, (T,) C, 64, 64]` in [0, 1]."""
        return self.float_batch(self.index_of(factors)).cpu().numpy()


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor | np.ndarray):
        return f"{type(value).__name__} of {value.dtype}"
    return type(value).__name__

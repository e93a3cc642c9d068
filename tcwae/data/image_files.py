"""Image files (CelebA, 3D Chairs): found under a folder and decoded to 64x64 RGB tensors."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from tcwae.data.catalog import IMAGE_SIZE
from tcwae.data.dataset import DatasetError, empty_uint8

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def decode_image_files(paths: Sequence[Path], crop: int | None = None) -> torch.Tensor:
    """Decode image files into uint8 `[N, 3, 64, 64]` RGB, centre-cropped then resized.

    `crop` is the side of the centre square kept before resizing; None keeps the largest centred
    square. Pillow releases the GIL while decoding and resizing, so threads use every core.
    """
    from PIL import Image, UnidentifiedImageError

    images = empty_uint8((len(paths), IMAGE_SIZE, IMAGE_SIZE, 3))

    def decode(index: int) -> None:
        path = paths[index]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                side = min(image.size) if crop is None else crop
                if side > min(image.size):
                    raise DatasetError(
                        f"image {path} is {image.size[0]}x{image.size[1]}, smaller than the "
                        f"{side}x{side} centre crop; replace it with an original file"
                    )
                left = (image.width - side) // 2
                top = (image.height - side) // 2
                image = image.crop((left, top, left + side, top + side))
                image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
                images[index] = np.asarray(image)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
            raise DatasetError(
                f"image {path} cannot be decoded ({error}); replace it with the original file "
                "or delete it"
            ) from error

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for _ in pool.map(decode, range(len(paths))):
            pass
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def find_image_files(folder: Path) -> list[Path]:
    """Every png/jpg under `folder` at any depth, sorted so the order is reproducible."""
    return sorted(
        path
        for path in Path(folder).rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )

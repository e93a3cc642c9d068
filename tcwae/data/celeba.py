"""CelebA: `$TCWAE_DATA/celeba/img_align_celeba/*.jpg`, centre crop 140 x 140, resized to 64x64
RGB, in file-name order. No factors (the attributes are not generative factors).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tcwae.data.cache import load_cached
from tcwae.data.dataset import DatasetError, FactorDataset
from tcwae.data.image_files import decode_image_files

URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
CROP = 140


def read_celeba(folder: Path) -> FactorDataset:
    paths = sorted(path for path in folder.glob("*.jpg") if path.is_file())
    if not paths:
        raise DatasetError(
            f"no .jpg images in {folder}; get img_align_celeba.zip from {URL} and unpack it "
            f"into {folder.parent}"
        )
    images = decode_image_files(paths, crop=CROP)
    return FactorDataset(
        "celeba", images, np.zeros((len(images), 0), dtype=np.int64), (), (), "official"
    )


def load(root: Path, source: str) -> FactorDataset:
    folder = root / "celeba" / "img_align_celeba"
    return load_cached(root, "celeba", "official", lambda: read_celeba(folder), origin=str(folder))

"""3Dchairs: every png/jpg under `$TCWAE_DATA/chairs/` (any depth, e.g. the official
`rendered_chairs/<chair>/renders/*.png`), largest centred square resized to 64x64 RGB. No factors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tcwae.data.cache import load_cached
from tcwae.data.dataset import DatasetError, FactorDataset
from tcwae.data.image_files import decode_image_files, find_image_files

URL = "https://www.di.ens.fr/willow/research/seeing3Dchairs/data/rendered_chairs.tar"


def read_chairs(folder: Path) -> FactorDataset:
    paths = find_image_files(folder)
    if not paths:
        raise DatasetError(
            f"no png/jpg images under {folder}; download and unpack {URL} into {folder}"
        )
    images = decode_image_files(paths)
    return FactorDataset(
        "chairs", images, np.zeros((len(images), 0), dtype=np.int64), (), (), "official"
    )


def load(root: Path, source: str) -> FactorDataset:
    folder = root / "chairs"
    return load_cached(root, "chairs", "official", lambda: read_chairs(folder), origin=str(folder))

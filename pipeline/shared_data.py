"""Data sets loaded once by a driver and shared read-only through Ray's object store.

Without this every Train worker renders or reads the whole data set itself (737,280 dSprites
images, 3 GB resident per worker), so two concurrent trials hold two identical copies.
`share_datasets` loads each data set of a sweep (or DDP run) once in the driver and puts it in
the object store; `FactorDataset` pickles its images as a numpy array (pickle protocol 5,
out-of-band buffers), so each node receives the object once and every worker on that node maps
the same memory read-only (`worker_dataset`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

from tcwae.config import TrainConfig
from tcwae.data import FactorDataset, load_dataset
from tcwae.errors import UserError

log = logging.getLogger(__name__)

# The MLflow tag `data_loading` of every run: how its workers got their data.
LOADED_BY_WORKER = "loaded by each worker"
FROM_OBJECT_STORE = "shared through Ray's object store"


@dataclasses.dataclass(frozen=True)
class SharedData:
    """Data sets in the object store by (data set, source). The references are held inside
    this object, so that Ray passes them (not the gigabytes) wherever it is an argument."""

    refs: dict[tuple[str, str], Any]

    def ref_for(self, config: TrainConfig) -> Any | None:
        return self.refs.get((config.dataset, config.data_source))


def share_datasets(configs: Iterable[TrainConfig], data_root: str | None) -> SharedData:
    """Load each distinct (data set, source) of `configs` here and put it in the connected Ray
    cluster's object store. One that cannot be loaded is left out: the runs that need it load
    it themselves and fail with the data set's own error, recorded in their MLflow runs."""
    import ray

    refs = {}
    for key in dict.fromkeys((config.dataset, config.data_source) for config in configs):
        try:
            loaded = load_dataset(key[0], root=data_root, source=key[1])
        except UserError as error:
            log.warning("%s (%s) is not shared: %s", key[0], key[1], error)
            continue
        refs[key] = ray.put(loaded)
    return SharedData(refs)


def worker_dataset(
    config: TrainConfig, shared: SharedData | None, data_root: str | None
) -> tuple[FactorDataset, str]:
    """The data set of `config` and how it was obtained (the run's `data_loading` tag): the
    shared copy when there is one, else loaded here."""
    ref = shared.ref_for(config) if shared is not None else None
    if ref is None:
        dataset = load_dataset(config.dataset, root=data_root, source=config.data_source)
        return dataset, LOADED_BY_WORKER
    import ray

    return ray.get(ref), FROM_OBJECT_STORE

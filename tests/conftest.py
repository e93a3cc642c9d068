"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_GRID = (3, 2, 4, 8, 8)  # shape, scale, orientation, posX, posY: 1536 images


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory) -> Path:
    """A data root whose procedural dSprites cache holds a reduced grid, so `load_dataset(
    "dsprites", root, "procedural")` reads 1536 images instead of rendering 737,280."""
    from tcwae.data import small_dsprites
    from tcwae.data.cache import cache_path, write_cache

    root = tmp_path_factory.mktemp("data")
    write_cache(small_dsprites(TINY_GRID), cache_path(root, "dsprites", "procedural"), binary=True)
    return root


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance (2 CPUs) shared by every test that needs Ray.

    Starting Ray costs 15-25 s here, so it is started once per test session, on first use. It is
    started as `make sweep` starts one (`pipeline.cluster.start_local`): a fresh instance even when
    others run on this machine, with its dashboard, whose state API Ray Train's placement-group
    cleaner asks whether a trial's controller is dead (without it the placement group of a trial
    that Tune stopped is never released and the next trial waits for CPUs forever).
    A killed worker's process group is given 3 s (instead of 30) to shut down, which keeps the
    fault-tolerance tests short; a worker group may take 5 min (instead of 60 s) to start, because
    on a loaded 2-core machine importing torch in two fresh workers can take a minute and a
    start-up timeout would count as a training failure.
    """
    import ray

    from pipeline.cluster import start_local

    start_local(
        num_cpus=2,
        runtime_env={
            "env_vars": {
                "TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S": "3",
                "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "300",
            }
        },
    )
    try:
        yield ray
    finally:
        ray.shutdown()

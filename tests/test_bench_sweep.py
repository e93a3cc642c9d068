"""bench/sweep.py counts trials to the grid's best configuration on the committed score cache."""

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from pipeline.search_space import load_search_space

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench_sweep():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_sweep", BENCH / "sweep.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


@pytest.fixture(scope="module")
def grid(bench_sweep):
    cache = json.loads(bench_sweep.CACHE.read_text())
    profile = load_search_space(cache["space"]).profile(cache["profile"])
    return bench_sweep.Grid(profile, cache)


def test_cache_covers_the_whole_grid(grid):
    assert len(grid.ids) == 12
    assert set(grid.scores) == set(grid.ids)
    assert grid.best == grid.ranked[0]["id"]


def test_grid_sampler_runs_every_configuration_once(bench_sweep, grid):
    """Whichever configuration is best, GridSampler's random order reaches it within the grid,
    the last position included (where the sampler stops the study)."""
    positions = []
    for best in grid.ids:
        moved = copy.copy(grid)
        moved.best = best
        positions.append(bench_sweep.grid_sampler_order(moved, seed=3))
    assert sorted(positions) == list(range(1, len(grid.ids) + 1))


def test_grid_order_is_the_file_order(bench_sweep, grid):
    assert bench_sweep.grid_order(grid, seed=0) == grid.ids.index(grid.best) + 1


def test_nearest_maps_a_proposal_to_its_method_grid(grid):
    assert grid.nearest({"method": "wae_mmd", "lam": 150.0}) == grid.nearest(
        {"method": "wae_mmd", "lam": 200.0}
    )
    assert grid.nearest({"method": "wae_mmd", "lam": 12.0}) == "wae_mmd,lam=10,seed=0"


def test_a_best_never_proposed_counts_max_trials(bench_sweep):
    assert bench_sweep.trials_to_best(lambda: "other", "best") == bench_sweep.MAX_TRIALS
    proposals = iter(["a", "b", "best"])
    assert bench_sweep.trials_to_best(lambda: next(proposals), "best") == 3


def test_samplers_over_ranges_find_the_best_reproducibly(bench_sweep, grid):
    _, tpe = bench_sweep.STRATEGIES["optuna mode"]
    first = tpe(grid, 0)
    assert 1 <= first <= bench_sweep.MAX_TRIALS
    assert tpe(grid, 0) == first

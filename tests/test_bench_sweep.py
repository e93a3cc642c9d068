"""bench/sweep.py counts trials to the grid's best configuration on the committed score cache."""

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from pipeline.search.loader import load_search_space
from pipeline.search.successive_halving import SchedulerSpec

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
def bench_replay(bench_sweep):
    """bench/sweep_replay.py, as bench/sweep.py imports it."""
    return sys.modules["sweep_replay"]


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


# Successive halving replayed on a hand-made recording: four points whose quality q orders
# them on both scores, at rungs 10 and 20 of a 40-step budget, eta 2.
TWO = (("rec", "min"), ("mig", "max"))


def scores(quality):
    return {"rec": 10.0 - quality, "mig": 0.1 * quality}


def point(quality):
    """The id of point Pq, as the recorder keys it (`config_id`)."""
    return f"wae_mmd,lam={quality + 1},seed=0"


P0, P1, P2, P3 = (point(q) for q in range(4))


def recording(bench_replay, rung_quality=None):
    """Points P0..P3 with final quality 0..3; `rung_quality` overrides what the rungs see."""
    rung_quality = rung_quality or {}
    points = {
        point(q): {
            "point": {"method": "wae_mmd", "lam": float(q + 1), "seed": 0},
            "rungs": {str(step): scores(rung_quality.get(q, q)) for step in (10, 20)},
            "final": scores(q),
        }
        for q in range(4)
    }
    cache = {"steps": 40, "rungs": [10, 20], "rung_profile": "rung", "points": points}
    return bench_replay.Recording(cache, TWO)


SPEC = SchedulerSpec("mo-asha", 10, 2, TWO)


def test_replay_in_increasing_quality_trains_everything(bench_replay):
    replayed = bench_replay.replay(recording(bench_replay), SPEC, [P0, P1, P2, P3], 1)
    assert replayed == {"fraction": 1.0, "finished": 4, "hit": True, "regret": 0.0}


def test_replay_best_first_stops_the_rest_at_the_first_rung(bench_replay):
    # One at a time: P3 trains 40 steps; P2, P1, P0 are 2nd of 2, 3rd of 3, 4th of 4 at rung 10
    # (keep 1, 2, 2) and stop there: 40 + 3 x 10 of 160 steps.
    replayed = bench_replay.replay(recording(bench_replay), SPEC, [P3, P2, P1, P0], 1)
    assert replayed == {"fraction": 70 / 160, "finished": 1, "hit": True, "regret": 0.0}
    # Two at a time: P3 and P2 reach rung 10 together (P3, started first, is judged first), P2
    # stops and P1 starts at t=10, stops at t=20, P0 stops at t=30: the same 70 steps.
    two = bench_replay.replay(recording(bench_replay), SPEC, [P3, P2, P1, P0], 2)
    assert two["fraction"] == 70 / 160


def test_replay_that_stops_the_best_reports_its_mean_rank_regret(bench_replay):
    # The best point (P3) looks worst at the rungs: after P2 it is 2nd of 2 and stops; of the
    # points trained to the end P2 ranks first, whose mean rank in the whole grid is 2 to P3's 1.
    late_bloomer = recording(bench_replay, rung_quality={3: -1})
    replayed = bench_replay.replay(late_bloomer, SPEC, [P2, P3, P1, P0], 1)
    assert replayed["hit"] is False and replayed["regret"] == 1.0
    assert late_bloomer.best == bench_replay._configuration(late_bloomer.points[P3])


def test_synchronous_replay_keeps_the_best_whatever_the_order(bench_replay):
    # Rung 10 keeps 2 of 4 (P3, P2), rung 20 keeps 1 of 2 (P3): 4 x 10 + 2 x 10 + 20 of 160.
    spec = SchedulerSpec("mo-asha", 10, 2, TWO, synchronous=True)
    for order in ([P0, P1, P2, P3], [P3, P2, P1, P0], [P1, P3, P0, P2]):
        replayed = bench_replay.replay_synchronous(recording(bench_replay), spec, order)
        assert replayed == {"fraction": 80 / 160, "finished": 1, "hit": True, "regret": 0.0}
    # A best point that looks worst at the first rung is stopped there, in every order.
    late = bench_replay.replay_synchronous(recording(bench_replay, {3: -1}), spec, [P3, P2, P1, P0])
    assert late["hit"] is False and late["regret"] == 1.0


def test_replay_table_rows_cover_each_rule_and_concurrency(bench_replay):
    rows = bench_replay.replay_table(recording(bench_replay), replays=3, workers=[1, 2])
    assert len(rows) == 9 and {row["replays"] for row in rows} == {3}
    assert [row["workers"] for row in rows].count("any") == 3
    assert all(0 < row["fraction"] <= row["fraction_max"] <= 1 for row in rows)
    assert all(row["hits"] == 1.0 for row in rows)  # rungs agree with the final scores here


def test_a_later_first_rung_keeps_a_best_that_starts_slowly(bench_replay):
    # P3 looks worst at step 10 and best from step 20: the recorded first rung (10) stops it in
    # every synchronous replay; replayed from step 20 (rungs [20] of 40), it finishes and wins.
    slow = recording(bench_replay)
    slow.points[P3]["rungs"]["10"] = scores(-1)
    from_10 = bench_replay.replay_table(slow, replays=3, workers=[1])
    from_20 = bench_replay.replay_table(slow, replays=3, workers=[1], grace=20)
    synchronous = [row for row in from_10 if row["workers"] == "any"]
    assert all(row["hits"] == 0.0 for row in synchronous)
    later = [row for row in from_20 if row["workers"] == "any"]
    assert all(row["hits"] == 1.0 for row in later)
    # 4 points x 20 steps, then the 2 kept x 20 more: 120 of 160 steps.
    assert all(row["fraction"] == 120 / 160 for row in later)
    heading = bench_replay.replay_heading({"profile": "cpu_grid", "steps": 40, "rungs": [10]}, 20)
    assert heading.endswith("`cpu_grid` grid, 40 steps, first rung at step 20)")


@pytest.fixture(scope="module")
def record_rungs(bench_sweep):
    spec = importlib.util.spec_from_file_location("record_rungs", BENCH / "record_rungs.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


def _half_recording(methods, names, command):
    return {
        "space": "dsprites",
        "profile": "cpu_grid",
        "steps": 1000,
        "rungs": [100, 300, 900],
        "rung_profile": "rung",
        "eval_profile": "quick",
        "methods": methods,
        "points": {name: {"final": {"mig": 0.1}} for name in names},
        "command": command,
        "machine": "AMD EPYC",
        "date": "2026-12-01",
    }


def test_merged_recording_holds_both_halves(record_rungs):
    a = _half_recording(["tcwae_mws"], ["tcwae_mws,beta=1,gamma=5,seed=0"], "record A")
    b = _half_recording(["wae_mmd"], ["wae_mmd,lam=10,seed=0"], "record B")
    merged = record_rungs.merge_recordings([a, b])
    assert merged["methods"] == ["tcwae_mws", "wae_mmd"]
    assert set(merged["points"]) == set(a["points"]) | set(b["points"])
    assert merged["command"] == "record A and, at the same time, record B"


def test_merge_refuses_recordings_of_different_budgets(record_rungs):
    a = _half_recording(["tcwae_mws"], ["p1"], "A")
    b = {**_half_recording(["wae_mmd"], ["p2"], "B"), "steps": 2000}
    with pytest.raises(ValueError, match="steps"):
        record_rungs.merge_recordings([a, b])


def test_merge_refuses_a_point_recorded_twice(record_rungs):
    a = _half_recording(["tcwae_mws"], ["p1"], "A")
    with pytest.raises(ValueError, match="p1"):
        record_rungs.merge_recordings([a, a])

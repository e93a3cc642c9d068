"""The paper's overall ranking on a hand-made table with ties and missing scores."""

import math

import pytest

from tcwae.metrics import (
    crowding_distances,
    mean_rank_order,
    non_dominated_fronts,
    pareto_order,
    rank_configurations,
)

TABLE = [
    {"name": "a", "rec": 10.0, "mig": 0.30, "factor_vae": 0.80, "sap": 0.05},
    {"name": "b", "rec": 12.0, "mig": 0.30, "factor_vae": 0.70, "sap": 0.07},
    {"name": "c", "rec": 10.0, "mig": 0.10, "factor_vae": 0.90, "sap": 0.07},
    {"name": "d", "rec": 20.0, "mig": 0.40, "factor_vae": 0.60, "sap": 0.01},
]


def test_average_ranks_with_ties_and_best_first():
    ranked = rank_configurations(TABLE)
    by_name = {row["name"]: row for row in ranked}
    # rec (lower is better): a and c tie for ranks 1-2; mig: a and b tie for ranks 2-3
    assert by_name["a"]["rank_rec"] == by_name["c"]["rank_rec"] == 1.5
    assert by_name["a"]["rank_mig"] == by_name["b"]["rank_mig"] == 2.5
    assert by_name["d"]["rank_mig"] == 1.0
    assert by_name["b"]["rank_sap"] == by_name["c"]["rank_sap"] == 1.5
    assert by_name["a"]["mean_rank"] == pytest.approx((1.5 + 2.5 + 2 + 3) / 4)
    assert by_name["c"]["mean_rank"] == pytest.approx((1.5 + 4 + 1 + 1.5) / 4)
    assert [row["name"] for row in ranked] == ["c", "a", "b", "d"]
    assert [row["mean_rank"] for row in ranked] == sorted(row["mean_rank"] for row in ranked)


def test_input_rows_are_not_modified():
    rank_configurations(TABLE)
    assert "mean_rank" not in TABLE[0]


def test_nan_and_missing_scores_rank_last():
    table = [
        {"name": "x", "mig": math.nan},
        {"name": "y", "mig": 0.1},
        {"name": "z"},
        {"name": "w", "mig": 0.0},
    ]
    ranked = rank_configurations(table, scores=(("mig", "max"),))
    assert [row["name"] for row in ranked] == ["y", "w", "x", "z"]
    assert ranked[2]["rank_mig"] == ranked[3]["rank_mig"] == 3.5


def test_configurable_scores_and_bad_arguments():
    ranked = rank_configurations(TABLE, scores=(("factor_vae", "max"),))
    assert [row["name"] for row in ranked] == ["c", "a", "b", "d"]
    assert set(ranked[0]) == set(TABLE[2]) | {"rank_factor_vae", "mean_rank"}
    assert rank_configurations([]) == []
    with pytest.raises(ValueError, match="direction"):
        rank_configurations(TABLE, scores=(("mig", "up"),))
    with pytest.raises(ValueError, match="at least one"):
        rank_configurations(TABLE, scores=())


# Non-dominated sorting, worked by hand. Rec (min), MIG (max), SAP (max):
# a has the best Rec, b the best SAP, d the best MIG, and none of the three beats another on
# every score: the first front. b beats c on all three, c beats e on all three.
THREE = (("rec", "min"), ("mig", "max"), ("sap", "max"))
FRONTS_TABLE = [
    {"name": "a", "rec": 1.0, "mig": 0.10, "sap": 0.05},
    {"name": "b", "rec": 2.0, "mig": 0.30, "sap": 0.07},
    {"name": "c", "rec": 3.0, "mig": 0.20, "sap": 0.06},
    {"name": "d", "rec": 4.0, "mig": 0.40, "sap": 0.01},
    {"name": "e", "rec": 5.0, "mig": 0.05, "sap": 0.00},
]


def test_non_dominated_fronts_by_hand():
    assert non_dominated_fronts(FRONTS_TABLE, THREE) == [[0, 1, 3], [2], [4]]


def test_pareto_order_breaks_ties_in_a_front_by_the_mean_rank_within_it():
    # Within the first front: ranks on Rec a1 b2 d3, on MIG d1 b2 a3, on SAP b1 a2 d3, so the
    # mean ranks are b 5/3, a 2, d 7/3.
    assert pareto_order(FRONTS_TABLE, THREE) == [1, 0, 3, 2, 4]


def test_crowding_distance_by_hand():
    # One front of four (Rec up, MIG up). Rec spread 5: p1 (3 - 1) / 5 = 0.4, p2 (6 - 2) / 5 =
    # 0.8; MIG spread 0.3: p1 (0.35 - 0.1) / 0.3, p2 (0.4 - 0.3) / 0.3; the ends are infinite.
    front = [
        {"rec": 1.0, "mig": 0.10},
        {"rec": 2.0, "mig": 0.30},
        {"rec": 3.0, "mig": 0.35},
        {"rec": 6.0, "mig": 0.40},
    ]
    two = (("rec", "min"), ("mig", "max"))
    distances = crowding_distances(front, two)
    assert distances[0] == distances[3] == math.inf
    assert distances[1] == pytest.approx(0.4 + 0.25 / 0.3)
    assert distances[2] == pytest.approx(0.8 + 0.1 / 0.3)
    assert non_dominated_fronts(front, two) == [[0, 1, 2, 3]]
    assert pareto_order(front, two, tie_break="crowding") == [0, 3, 1, 2]
    # Every mean rank in this front is 2.5: input order stands.
    assert pareto_order(front, two, tie_break="mean_rank") == [0, 1, 2, 3]


def test_missing_scores_are_worst_in_sorting_and_add_no_crowding():
    table = [
        {"rec": 1.0, "mig": math.nan},
        {"rec": 2.0, "mig": 0.1},
        {"rec": 1.0},
        {"rec": 3.0, "mig": 0.05},
    ]
    two = (("rec", "min"), ("mig", "max"))
    assert non_dominated_fronts(table, two) == [[0, 1, 2], [3]]
    # Rec 1, 2, 1: the ends of the sorted column (rows 0 and 1) are infinite, row 2 lies between
    # them (gap 1 over spread 1); MIG is not all finite and adds nothing.
    assert crowding_distances(table[:3], two) == [math.inf, math.inf, 1.0]


def test_mean_rank_order_is_rank_configurations_order():
    assert [TABLE[i]["name"] for i in mean_rank_order(TABLE)] == ["c", "a", "b", "d"]
    assert mean_rank_order([]) == [] and non_dominated_fronts([]) == []
    with pytest.raises(ValueError, match="tie_break"):
        pareto_order(TABLE, tie_break="random")

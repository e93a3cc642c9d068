"""The paper's overall ranking on a hand-made table with ties and missing scores."""

import math

import pytest

from tcwae.metrics import rank_configurations

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

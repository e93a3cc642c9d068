"""What the MLflow UI is handed (pipeline/tracking_ui.py), on a real sqlite MLflow store. The
same, end to end in a sweep, is checked in tests/pipeline/test_sweep_halving.py."""

from __future__ import annotations

from pipeline.tracking import Tracking
from pipeline.tracking_ui import (
    MODEL_TRAINING_KIND,
    TAG_EXPERIMENT_KIND,
    changed_params,
    param_values,
    run_address,
    sweep_description,
)


def test_unset_options_are_left_out_and_numbers_read_back_as_numbers(tmp_path):
    tracking = Tracking.at(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = tracking.start_run(tracking.experiment_id("ui"), "run")
    tracking.log_params(run_id, {"beta": 10.0, "lam": 1e-5, "steps": 64, "lr": None, "on": True})
    params = tracking.params(run_id)
    assert params == {"beta": "10.0", "lam": "1e-05", "steps": "64", "on": "True"}
    assert [float(params[key]) for key in ("beta", "lam", "steps")] == [10.0, 1e-5, 64.0]


def test_a_changed_option_is_found_whether_set_unset_or_spelled_none_by_an_older_run():
    logged = {"beta": "1.0", "lr": "None", "gamma": "5.0"}
    assert changed_params(logged, {"beta": 1.0, "lr": None, "gamma": 5.0}) == []
    assert changed_params(logged, {"beta": 3.0, "lr": 0.1, "gamma": 5.0}) == ["beta", "lr"]
    assert changed_params(param_values({"lr": None}), {"lr": 0.1}) == ["lr"]
    assert changed_params({"lr": "0.1"}, {"lr": None}) == ["lr"]


def test_experiments_are_marked_model_training_even_when_made_before(tmp_path):
    """A new experiment carries the kind tag; one made without it (an older store) gets it the
    next time the tool opens it."""
    tracking = Tracking.at(f"sqlite:///{tmp_path / 'mlflow.db'}")
    tag, kind = MODEL_TRAINING_KIND
    assert tag == TAG_EXPERIMENT_KIND
    new = tracking.experiment_id("new")
    assert tracking.client.get_experiment(new).tags[tag] == kind
    older = tracking.client.create_experiment("older")
    assert tag not in tracking.client.get_experiment(older).tags
    assert tracking.experiment_id("older") == older
    assert tracking.client.get_experiment(older).tags[tag] == kind


def test_printed_addresses_open_the_model_training_view(tmp_path):
    assert run_address("http://h:5000/", "3", "abc") == (
        "http://h:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    )
    assert run_address("http://h:5000", "3") == (
        "http://h:5000/#/experiments/3?workflowType=machine_learning"
    )
    tracking = Tracking.at(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = tracking.start_run(tracking.experiment_id("ui"), "run")
    assert tracking.run_page(run_id).endswith(f"/runs/{run_id}?workflowType=machine_learning")


def test_a_long_table_is_cut_at_a_line_with_a_pointer_to_the_whole_one():
    table = "\n".join(f"{row:3d} tcwae_mws beta={row} gamma=5  0.{row:03d}" for row in range(400))
    short = sweep_description("Sweep **x**", table[:200], 1000)
    assert short == f"Sweep **x**\n\n```\n{table[:200]}\n```\n"
    text = sweep_description("Sweep **x**", table, 1000)
    assert len(text) <= 1000 and text.endswith("report/ranking.txt)\n```\n")
    body = text.split("```\n")[1].splitlines()[:-1]
    assert body and all(line in table.splitlines() for line in body)

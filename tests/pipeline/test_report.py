import csv
import math

import pytest
import yaml

from pipeline import report
from pipeline.report import build_report
from pipeline.report_ranking import (
    aggregate,
    best_per_method,
    beta_slices,
    logged_train_config,
    mean_and_std,
    pareto_front,
    rank,
    run_row,
)
from pipeline.report_results import (
    table_1a_heading,
)
from pipeline.tracking import TAG_SWEEP, Tracking
from tcwae.config import TrainConfig
from tcwae.errors import UserError

SPREAD = 0.01
# Mean scores of hand-made configurations: (method, hyper-parameters, rec, mig, factor_vae, sap).
CONFIGS = {
    "A": ("tcwae_mws", {"beta": 1.0, "gamma": 5.0}, 3.0, 0.10, 0.60, 0.02),
    "B": ("tcwae_mws", {"beta": 10.0, "gamma": 5.0}, 3.5, 0.30, 0.75, 0.08),
    "C": ("tcwae_mws", {"beta": 1.0, "gamma": 100.0}, 3.2, 0.15, 0.62, 0.03),
    "D": ("tcwae_mws", {"beta": 10.0, "gamma": 100.0}, 4.0, 0.35, 0.80, 0.09),
    "E": ("wae_mmd", {"lam": 10.0}, 2.9, 0.02, 0.50, 0.01),
    "F": ("wae_mmd", {"lam": 100.0}, 3.1, 0.01, 0.45, 0.005),
    "G": ("beta_tcvae", {"beta": 4.0, "gamma": 1.0}, 3.6, 0.25, 0.70, 0.07),
}
# Ranks per score (1 best) give mean ranks D 2.5, B 2.75, G 3.75, C 4, A 4.25, E 4.75, F 6.
EXPECTED_ORDER = ["D", "B", "G", "C", "A", "E", "F"]
SCORE_NAMES = ("rec", "mig", "factor_vae", "sap")


def label(name):
    method, params, *_ = CONFIGS[name]
    return " ".join([method, *(f"{k}={v:g}" for k, v in params.items())])


def trial_config(name, seed):
    """A trial's configuration, as its `config.yaml` holds it."""
    method, params, *_ = CONFIGS[name]
    return TrainConfig(method=method, seed=seed, steps=100, batch_size=16, settings=dict(params))


def mlflow_metrics(name, seed):
    """Seeds 0, 1, 2 sit at mean - SPREAD, mean, mean + SPREAD: std (ddof 1) is SPREAD."""
    means = CONFIGS[name][2:]
    return {
        score: mean + (seed - 1) * SPREAD for score, mean in zip(SCORE_NAMES, means, strict=True)
    }


def hand_made_rows():
    return [
        run_row(trial_config(name, seed), mlflow_metrics(name, seed), f"{name}{seed}")
        for name in CONFIGS
        for seed in (0, 1, 2)
    ]


def test_a_hyperparameter_the_method_does_not_read_does_not_split_a_configuration():
    old = {**trial_config("B", 0).to_dict(), "lam": 1.0}  # older runs logged every one
    config = logged_train_config(old, "B0's config.yaml")
    rows = [run_row(config, mlflow_metrics("B", 0), "B0"), *hand_made_rows()[4:6]]
    assert "lam" not in rows[0]
    table = aggregate(rows)
    assert len(table) == 1 and table[0]["seeds"] == [0, 1, 2]


def test_pooled_sweeps_drop_an_unfinished_trial_that_a_re_run_finished():
    first = [
        run_row(trial_config("B", 0), mlflow_metrics("B", 0), "B0"),
        run_row(trial_config("B", 1), {}, "B1-killed", "RUNNING"),
        run_row(trial_config("E", 0), {}, "E0-killed", "FAILED"),
    ]
    re_run = [run_row(trial_config("B", 1), mlflow_metrics("B", 1), "B1")]
    pooled = report.pool_sweeps([first, re_run])
    assert [row["run_id"] for row in pooled] == ["B0", "E0-killed", "B1"]


def test_a_sequence_sweep_is_averaged_and_ranked_on_its_judged_scores():
    def trial(method, seed, static, dynamics):
        config = TrainConfig(
            dataset="sprite_videos", method=method, seed=seed, steps=10, batch_size=4
        )
        metrics = {"rec": 900.0, "kept_static_acc": static, "kept_dynamics_acc": dynamics}
        return run_row(config, metrics, f"{method}{seed}")

    rows = [trial("dsvae", 0, 0.5, 0.2), trial("dsvae", 1, 0.7, 0.4)]
    rows += [trial("rwae_mmd", 0, 0.9, 0.5), trial("rwae_mmd", 1, 0.9, 0.7)]
    rank_by = (("rec", "min"), ("kept_dynamics_acc", "max"), ("kept_static_acc", "max"))
    ranked = rank(aggregate(rows), rank_by)
    assert [row["method"] for row in ranked] == ["rwae_mmd", "dsvae"]
    assert ranked[1]["kept_static_acc"] == pytest.approx(0.6)
    assert ranked[1]["kept_static_acc_std"] == pytest.approx(math.sqrt(0.02))


def test_run_row_holds_the_logged_configuration_typed_and_the_scores():
    logged = yaml.safe_load(yaml.safe_dump(trial_config("B", 2).to_dict()))  # as config.yaml
    config = logged_train_config(logged, "config.yaml")
    row = run_row(config, {"mig": 0.3, "loss": 7.0}, "run-1", "FINISHED")
    assert row["beta"] == 10.0 and isinstance(row["beta"], float)
    assert row["seed"] == 2 and isinstance(row["seed"], int)
    assert row["precision"] == "auto" and "lr" not in row  # unset, as in its MLflow parameters
    assert row["channels_last"] is True  # the image methods' default
    assert row["method"] == "tcwae_mws"
    assert row["mig"] == 0.3
    assert "loss" not in row
    assert (row["run_id"], row["status"]) == ("run-1", "FINISHED")


def test_aggregate_averages_each_configuration_over_its_seeds():
    table = {row["label"]: row for row in aggregate(hand_made_rows())}
    assert set(table) == {label(name) for name in CONFIGS}
    b = table[label("B")]
    assert (b["method"], b["beta"], b["gamma"], b["cost"]) == ("tcwae_mws", 10.0, 5.0, "xent")
    assert "lam" not in b
    assert b["n"] == 3 and b["seeds"] == [0, 1, 2]
    assert sorted(b["run_ids"]) == ["B0", "B1", "B2"]
    assert b["config"]["steps"] == 100 and "seed" not in b["config"]
    for score, mean in zip(SCORE_NAMES, CONFIGS["B"][2:], strict=True):
        assert b[score] == pytest.approx(mean)
        assert b[f"{score}_std"] == pytest.approx(SPREAD)
    assert "gamma" not in table[label("E")] and table[label("E")]["lam"] == 10.0


def test_mean_and_std_ignore_non_finite_values_and_need_two_for_a_std():
    assert mean_and_std([1.0, 3.0, math.nan]) == (2.0, pytest.approx(math.sqrt(2)))
    mean, std = mean_and_std([4.0])
    assert mean == 4.0 and math.isnan(std)
    assert all(math.isnan(v) for v in mean_and_std([math.nan]))


def test_rank_orders_configurations_by_mean_rank_over_the_four_scores():
    ranked = rank(aggregate(hand_made_rows()))
    assert [row["label"] for row in ranked] == [label(name) for name in EXPECTED_ORDER]
    assert ranked[0]["mean_rank"] < ranked[1]["mean_rank"] < ranked[-1]["mean_rank"]
    assert all(f"rank_{score}" in ranked[0] for score in SCORE_NAMES)


def test_best_per_method_ranks_within_each_method():
    best = best_per_method(aggregate(hand_made_rows()))
    assert {method: row["label"] for method, row in best.items()} == {
        "tcwae_mws": label("D"),
        "wae_mmd": label("E"),
        "beta_tcvae": label("G"),
    }


def test_pareto_front_on_a_hand_made_table():
    table = [
        {"label": "a", "rec": 1.0, "mig": 0.1},
        {"label": "b", "rec": 2.0, "mig": 0.3},
        {"label": "c", "rec": 3.0, "mig": 0.2},  # dominated by b
        {"label": "d", "rec": 1.5, "mig": 0.1},  # dominated by a
        {"label": "e", "rec": 1.0, "mig": 0.1},  # equal to a: neither dominates
        {"label": "f", "rec": math.nan, "mig": 0.9},  # not comparable
    ]
    front = pareto_front(table, (("rec", "min"), ("mig", "max")))
    assert [row["label"] for row in front] == ["a", "b", "e"]


def test_pareto_front_of_the_hand_made_sweep():
    front = pareto_front(aggregate(hand_made_rows()))
    assert {row["label"] for row in front} == {label(n) for n in "ABCDE"}


def test_beta_slices_follow_each_methods_best_gamma():
    table = aggregate(hand_made_rows())
    sliced = beta_slices(table, best_per_method(table))
    assert sorted(row["label"] for row in sliced) == sorted([label("C"), label("D"), label("G")])


def test_build_report_writes_ranking_best_configs_figures_and_table(tmp_path):
    rows = hand_made_rows()
    rows.append(run_row(trial_config("A", 3), {}, "crashed", "FAILED"))
    rows.append(run_row(None, {}, "no-params", "FINISHED"))
    result = build_report(rows, tmp_path)
    names = {path.name for path in result.files}
    assert names == {
        "ranking.csv",
        "ranking.txt",
        "best_config.yaml",
        "best_per_method.yaml",
        "heatmap_tcwae_mws.png",
        "scores_vs_rec.png",
    }
    assert all(path.stat().st_size > 0 for path in result.files)
    assert [row["run_id"] for row in result.failed] == ["crashed", "no-params"]
    assert len(result.runs) == 21

    with open(tmp_path / "ranking.csv") as handle:
        lines = list(csv.DictReader(handle))
    assert [line["label"] for line in lines] == [label(name) for name in EXPECTED_ORDER]
    by_label = {line["label"]: line for line in lines}
    assert by_label[label("F")]["pareto"] == "False"
    assert by_label[label("D")]["pareto"] == "True"
    assert float(by_label[label("B")]["mig"]) == pytest.approx(0.30)
    assert by_label[label("B")]["seeds"] == "0 1 2"

    best = TrainConfig.from_yaml(tmp_path / "best_config.yaml")
    assert (best.method, best.seed, best.steps) == ("tcwae_mws", 0, 100)
    assert best.hyperparameters == {"beta": 10.0, "gamma": 100.0}
    assert "mig 0.35" in (tmp_path / "best_config.yaml").read_text()

    lines = result.text.splitlines()
    assert lines[2].startswith("1*") and label("D") in lines[2]
    assert "2 trial(s) not finished" in result.text
    assert result.text == (tmp_path / "ranking.txt").read_text().rstrip("\n")


def test_build_report_without_factor_scores_ranks_on_reconstruction_only(tmp_path):
    rows = [{**row, "mig": math.nan} for row in hand_made_rows() if row["method"] == "tcwae_mws"]
    result = build_report(rows, tmp_path, rank_by=(("rec", "min"),))
    assert result.best_overall["label"] == label("A")
    assert {path.name for path in result.files} >= {"heatmap_tcwae_mws.png", "ranking.csv"}
    assert "scores_vs_rec.png" not in {path.name for path in result.files}


def test_build_report_refuses_a_sweep_with_nothing_finished(tmp_path):
    with pytest.raises(UserError, match="no trial trained to the full budget"):
        build_report([run_row(None, {}, "x", "FAILED")], tmp_path)


def test_trials_stopped_at_a_rung_are_listed_apart_and_not_ranked(tmp_path):
    config = TrainConfig(method="wae_mmd", settings={"lam": 25.0})
    stopped = run_row(config, {"rung/mig": 0.01}, "s", "KILLED")
    stopped.update(stopped_at=400, rung_scores={"rec": 5.5, "mig": 0.01})
    built = build_report([*hand_made_rows(), stopped], tmp_path)
    assert len(built.ranked) == len(CONFIGS) and built.failed == []
    assert [row["run_id"] for row in built.stopped] == ["s"]
    assert "Stopped at a rung by successive halving (1; not ranked):" in built.text
    assert "  wae_mmd lam=25 seed 0: step 400 (Rec 5.5, MIG 0.01)" in built.text


@pytest.fixture(scope="module")
def tracked_sweep(tmp_path_factory):
    """A real sqlite MLflow store with a parent run and its children, made with MlflowClient."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(
        "tcwae", artifact_location=(root / "artifacts").as_uri()
    )
    parent = client.create_run(experiment_id, run_name="sweep-1", tags={TAG_SWEEP: "sweep-1"})
    traversals = root / "traversals.png"
    traversals.write_bytes(b"\x89PNG traversals")
    parent_id = parent.info.run_id
    for name in ("A", "D", "E", "G"):
        for seed in (0, 1, 2):
            child = client.create_run(
                experiment_id,
                run_name=f"{name}-{seed}",
                tags={"mlflow.parentRunId": parent_id},
            )
            mig_history = [
                Metric("train/mig", 0.001 * step + 0.1 * seed, 0, step) for step in (50, 100)
            ]
            client.log_batch(
                child.info.run_id,
                metrics=[Metric(k, v, 0, 0) for k, v in mlflow_metrics(name, seed).items()]
                + mig_history,
            )
            client.log_dict(child.info.run_id, trial_config(name, seed).to_dict(), "config.yaml")
            if (name, seed) == ("D", 2):  # the highest MIG of the best TCWAE configuration
                client.log_artifact(child.info.run_id, str(traversals))
            client.set_terminated(child.info.run_id, "FINISHED")
    crashed = client.create_run(
        experiment_id, run_name="crashed", tags={"mlflow.parentRunId": parent_id}
    )
    client.set_terminated(crashed.info.run_id, "FAILED")
    other = client.create_run(experiment_id, run_name="another sweep's child")
    client.log_dict(other.info.run_id, {"method": "wae_mmd"}, "config.yaml")
    client.set_terminated(other.info.run_id, "FINISHED")
    client.set_terminated(parent_id, "FINISHED")
    return uri, client, parent_id


def test_collect_rows_reads_only_the_parents_children(tracked_sweep):
    uri, _, parent_id = tracked_sweep
    rows = report.collect_rows(Tracking.at(uri), parent_id)
    assert len(rows) == 13
    assert sum(row["status"] == "FAILED" for row in rows) == 1
    finished = [row for row in rows if row["status"] == "FINISHED"]
    assert {row["method"] for row in finished} == {"tcwae_mws", "wae_mmd", "beta_tcvae"}
    assert all(row["rec"] > 0 for row in finished)


def test_report_sweep_logs_everything_to_the_parent_run(tracked_sweep, tmp_path):
    uri, client, parent_id = tracked_sweep
    results_md = tmp_path / "RESULTS.md"
    result = report.report_sweep(
        Tracking.at(uri), parent_id, tmp_path / "out", results_md=results_md, machine="test machine"
    )
    assert result.best_overall["label"] == label("D")
    logged = {item.path for item in client.list_artifacts(parent_id, "report")}
    assert {
        "report/ranking.csv",
        "report/best_config.yaml",
        "report/best_per_method.yaml",
        "report/ranking.txt",
        "report/heatmap_tcwae_mws.png",
        "report/scores_vs_rec.png",
        "report/method_scores_vs_rec.png",
        "report/mig_vs_steps.png",
        "report/RESULTS.md",
    } <= logged
    parent = client.get_run(parent_id)
    assert parent.data.tags["best_config"] == label("D")
    assert parent.data.tags["best_config.wae_mmd"] == label("E")
    assert parent.data.metrics["best_mig"] == pytest.approx(0.35)
    assert parent.data.metrics["unfinished_trials"] == 1
    text = results_md.read_text()
    assert "100 steps at batch 16, seeds [0, 1, 2] (12 trials)" in text
    assert "**Machine:** test machine" in text
    assert "cannot tell" in text  # no TCWAE-GAN in this sweep
    caption = f"Latent traversals of the best TCWAE model, {label('D')}"
    assert text.startswith(f"# Results\n\n{table_1a_heading('sweep-1')}\n")
    assert f"![{caption}](RESULTS_figures/sweep-1_traversals.png)" in text
    copied = tmp_path / "RESULTS_figures" / "sweep-1_traversals.png"
    assert copied.read_bytes() == b"\x89PNG traversals"
    assert (tmp_path / "RESULTS_figures" / "sweep-1_scores_vs_rec.png").exists()
    assert (tmp_path / "RESULTS_figures" / "sweep-1_mig_vs_steps.png").exists()
    # MIG at steps 50, 100 is 0.001 * step + 0.1 * seed over seeds 0-2 of each best configuration
    assert "| Step | WAE-MMD | TCWAE-MWS | beta-TCVAE | TCWAE > WAE + 3 std | on par |" in text
    assert "| 50 | 0.15 ± 0.10 | 0.15 ± 0.10 | 0.15 ± 0.10 | - | - |" in text
    assert "| 100 | 0.20 ± 0.10 |" in text
    assert "*on par*: cannot tell" in text


def test_cli_finds_the_sweep_by_name_and_prints_the_ranked_table(tracked_sweep, tmp_path, capsys):
    uri, _, _ = tracked_sweep
    code = report.main(
        [
            "--tracking-uri",
            uri,
            "--experiment",
            "tcwae",
            "--sweep",
            "sweep-1",
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[2].startswith("1*")
    assert f"best: {label('D')}" in out
    assert (tmp_path / "ranking.csv").exists()


def test_cli_names_a_missing_sweep(tracked_sweep, capsys):
    uri, _, _ = tracked_sweep
    code = report.main(["--tracking-uri", uri, "--experiment", "tcwae", "--sweep", "nope"])
    assert code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("report: ") and "no sweep run named 'nope'" in line

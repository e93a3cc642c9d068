import csv
import math

import pytest

from pipeline import report
from pipeline.report import build_report
from pipeline.report_ranking import (
    aggregate,
    best_per_method,
    beta_slices,
    mean_and_std,
    pareto_front,
    rank,
    run_row,
)
from pipeline.report_results import (
    PAPER_TABLE_1A,
    budget_steps,
    check_claims,
    curves_by_method,
    holds_from,
    replace_section,
    write_results_md,
)
from pipeline.tracking import Tracking
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


def mlflow_params(name, seed):
    """A trial's parameters as MLflow stores them: TrainConfig values as strings."""
    method, params, *_ = CONFIGS[name]
    config = TrainConfig(
        method=method, seed=seed, steps=100, batch_size=16, hyperparameters=dict(params)
    )
    return {key: str(value) for key, value in config.to_dict().items()}


def mlflow_metrics(name, seed):
    """Seeds 0, 1, 2 sit at mean - SPREAD, mean, mean + SPREAD: std (ddof 1) is SPREAD."""
    means = CONFIGS[name][2:]
    return {
        score: mean + (seed - 1) * SPREAD for score, mean in zip(SCORE_NAMES, means, strict=True)
    }


def hand_made_rows():
    return [
        run_row(mlflow_params(name, seed), mlflow_metrics(name, seed), f"{name}{seed}")
        for name in CONFIGS
        for seed in (0, 1, 2)
    ]


def test_a_hyperparameter_the_method_does_not_read_does_not_split_a_configuration():
    old = {**mlflow_params("B", 0), "lam": "1.0"}  # older runs logged every hyper-parameter
    rows = [run_row(old, mlflow_metrics("B", 0), "B0"), *hand_made_rows()[4:6]]
    assert rows[0]["lam"] == 1.0 and "lam" not in rows[1]
    table = aggregate(rows)
    assert len(table) == 1 and table[0]["seeds"] == [0, 1, 2]


def test_pooled_sweeps_drop_an_unfinished_trial_that_a_re_run_finished():
    first = [
        run_row(mlflow_params("B", 0), mlflow_metrics("B", 0), "B0"),
        run_row(mlflow_params("B", 1), {}, "B1-killed", "RUNNING"),
        run_row(mlflow_params("E", 0), {}, "E0-killed", "FAILED"),
    ]
    re_run = [run_row(mlflow_params("B", 1), mlflow_metrics("B", 1), "B1")]
    pooled = report.pool_sweeps([first, re_run])
    assert [row["run_id"] for row in pooled] == ["B0", "E0-killed", "B1"]


def test_a_sequence_sweep_is_averaged_and_ranked_on_its_judged_scores():
    def trial(method, seed, static, dynamics):
        config = TrainConfig(
            dataset="sprite_videos", method=method, seed=seed, steps=10, batch_size=4
        )
        params = {key: str(value) for key, value in config.to_dict().items()}
        metrics = {"rec": 900.0, "kept_static_acc": static, "kept_dynamics_acc": dynamics}
        return run_row(params, metrics, f"{method}{seed}")

    rows = [trial("dsvae", 0, 0.5, 0.2), trial("dsvae", 1, 0.7, 0.4)]
    rows += [trial("rwae_mmd", 0, 0.9, 0.5), trial("rwae_mmd", 1, 0.9, 0.7)]
    rank_by = (("rec", "min"), ("kept_dynamics_acc", "max"), ("kept_static_acc", "max"))
    ranked = rank(aggregate(rows), rank_by)
    assert [row["method"] for row in ranked] == ["rwae_mmd", "dsvae"]
    assert ranked[1]["kept_static_acc"] == pytest.approx(0.6)
    assert ranked[1]["kept_static_acc_std"] == pytest.approx(math.sqrt(0.02))


def test_run_row_types_mlflow_strings_back_and_drops_other_params():
    params = {**mlflow_params("B", 2), "ray_trial_id": "abc"}
    row = run_row(params, {"mig": 0.3, "loss": 7.0}, "run-1", "FINISHED")
    assert row["beta"] == 10.0 and isinstance(row["beta"], float)
    assert row["seed"] == 2 and isinstance(row["seed"], int)
    assert row["precision"] == "auto" and row["lr"] is None
    assert row["channels_last"] is True  # the image methods' default
    assert row["method"] == "tcwae_mws"
    assert row["mig"] == 0.3
    assert "ray_trial_id" not in row and "loss" not in row
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
    rows.append(run_row(mlflow_params("A", 3), {}, "crashed", "FAILED"))
    rows.append(run_row({}, {}, "no-params", "FINISHED"))
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
        build_report([run_row({}, {}, "x", "FAILED")], tmp_path)


def test_trials_stopped_at_a_rung_are_listed_apart_and_not_ranked(tmp_path):
    params = TrainConfig(method="wae_mmd", hyperparameters={"lam": 25.0}).to_dict()
    stopped = run_row({k: str(v) for k, v in params.items()}, {"rung/mig": 0.01}, "s", "KILLED")
    stopped.update(stopped_at=400, rung_scores={"rec": 5.5, "mig": 0.01})
    built = build_report([*hand_made_rows(), stopped], tmp_path)
    assert len(built.ranked) == len(CONFIGS) and built.failed == []
    assert [row["run_id"] for row in built.stopped] == ["s"]
    assert "Stopped at a rung by successive halving (1; not ranked):" in built.text
    assert "  wae_mmd lam=25 seed 0: step 400 (Rec 5.5, MIG 0.01)" in built.text


PAPER_VALUES = {
    "wae_mmd": {"lam": 200.0},
    "tcwae_mws": {"beta": 50.0, "gamma": 100.0},
    "tcwae_gan": {"beta": 100.0, "gamma": 5.0},
    "beta_tcvae": {"beta": 8.0, "gamma": 1.0},
    "factor_vae": {"gamma": 100.0},
}


def method_row(method, mig, mig_std, rec, rec_std=0.1, n=3):
    return {
        "method": method,
        **PAPER_VALUES[method],
        "label": method,
        "n": n,
        "mig": mig,
        "mig_std": mig_std,
        "rec": rec,
        "rec_std": rec_std,
        "factor_vae": 0.7,
        "factor_vae_std": 0.05,
        "sap": 0.05,
        "sap_std": 0.01,
    }


def paper_like_table(**changes):
    rows = {
        "wae_mmd": method_row("wae_mmd", 0.02, 0.005, 3.0),
        "tcwae_mws": method_row("tcwae_mws", 0.36, 0.04, 4.1),
        "tcwae_gan": method_row("tcwae_gan", 0.34, 0.05, 3.6),
        "beta_tcvae": method_row("beta_tcvae", 0.25, 0.05, 3.7),
        "factor_vae": method_row("factor_vae", 0.26, 0.09, 3.5),
    }
    for method, values in changes.items():
        if values is None:
            del rows[method]
        else:
            rows[method].update(values)
    return list(rows.values())


def verdicts(table):
    return [claim.holds for claim in check_claims(table)]


def test_claims_all_hold_on_the_papers_numbers():
    assert verdicts(paper_like_table()) == [True, True, True]


def test_claims_fail_where_the_numbers_say_so():
    # TCWAE-GAN MIG 0.10 +- 0.04: 0.08 above WAE is not > 3 x 0.04; below beta-TCVAE - 0.05.
    assert verdicts(paper_like_table(tcwae_gan={"mig": 0.10, "mig_std": 0.04})) == [
        False,
        True,
        False,
    ]
    # WAE reconstructs worse than FactorVAE.
    assert verdicts(paper_like_table(wae_mmd={"rec": 3.6})) == [True, False, True]
    # Within one standard deviation counts: 0.20 >= 0.26 - 0.09 (FactorVAE's larger std).
    table = paper_like_table(tcwae_mws={"mig": 0.20, "mig_std": 0.01})
    table = [row for row in table if row["method"] != "beta_tcvae"] + [
        method_row("beta_tcvae", 0.20, 0.01, 3.7)
    ]
    assert verdicts(table)[2] is True


def test_claims_cannot_be_decided_without_a_method_or_a_std():
    assert verdicts(paper_like_table(tcwae_gan=None)) == [None, True, None]
    single_seed = paper_like_table(wae_mmd={"mig_std": math.nan, "n": 1})
    claims = check_claims(single_seed)
    assert claims[0].holds is None
    assert "fewer than 2 seeds" in claims[0].detail


def test_write_results_md_puts_the_paper_beside_ours_and_states_the_claims(tmp_path):
    figure = tmp_path / "made" / "scores_vs_rec.png"
    figure.parent.mkdir()
    figure.write_bytes(b"\x89PNG")
    path = tmp_path / "out" / "RESULTS.md"
    path.parent.mkdir()
    table = paper_like_table(tcwae_gan={"mig": 0.10, "mig_std": 0.04})
    claims = write_results_md(
        table, PAPER_TABLE_1A, "3000 steps at batch 64", "2 CPU cores", {"Fig. 3": figure}, path
    )
    text = path.read_text()
    assert [claim.holds for claim in claims] == [False, True, False]
    assert "3000 steps at batch 64" in text and "2 CPU cores" in text
    assert (
        "| TCWAE-MWS (beta=50, gamma=100) | 3 | 4.10 ± 0.10 | 4.16 ± 0.31 | 0.36 ± 0.04 | "
        "0.36 ± 0.04 |"
    ) in text
    assert (
        "| WAE-MMD (lam=200) | 3 | 3.00 ± 0.10 | 3.01 ± 0.03 | 0.020 ± 0.005 | 0.026 ± 0.006 |"
        in text
    )
    assert "**does not hold**: TCWAE-MWS and TCWAE-GAN MIG exceed WAE MIG" in text
    assert "**holds**: WAE has the lowest reconstruction error" in text
    assert "InfoM" in text and "DCI D" in text
    assert "![Fig. 3](RESULTS_figures/scores_vs_rec.png)" in text
    assert (tmp_path / "out" / "RESULTS_figures" / "scores_vs_rec.png").read_bytes() == b"\x89PNG"


def test_write_results_md_marks_methods_that_did_not_run(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_results_md(paper_like_table(factor_vae=None), PAPER_TABLE_1A, "b", "m", {}, path)
    text = path.read_text()
    assert "| FactorVAE | 0 | not run | 3.47 ± 0.13 |" in text
    assert "## Figures" not in text


@pytest.fixture(scope="module")
def tracked_sweep(tmp_path_factory):
    """A real sqlite MLflow store with a parent run and its children, made with MlflowClient."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(
        "tcwae", artifact_location=(root / "artifacts").as_uri()
    )
    parent = client.create_run(experiment_id, run_name="sweep-1")
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
                params=[Param(k, v) for k, v in mlflow_params(name, seed).items()],
            )
            if (name, seed) == ("D", 2):  # the highest MIG of the best TCWAE configuration
                client.log_artifact(child.info.run_id, str(traversals))
            client.set_terminated(child.info.run_id, "FINISHED")
    crashed = client.create_run(
        experiment_id, run_name="crashed", tags={"mlflow.parentRunId": parent_id}
    )
    client.set_terminated(crashed.info.run_id, "FAILED")
    other = client.create_run(experiment_id, run_name="another sweep's child")
    client.log_param(other.info.run_id, "method", "wae_mmd")
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
    assert f"![{caption}](RESULTS_figures/traversals.png)" in text
    copied = tmp_path / "RESULTS_figures" / "traversals.png"
    assert copied.read_bytes() == b"\x89PNG traversals"
    assert (tmp_path / "RESULTS_figures" / "scores_vs_rec.png").exists()
    assert (tmp_path / "RESULTS_figures" / "mig_vs_steps.png").exists()
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


def mig_curves(wae_by_step):
    """Five methods' MIG over three seeds at steps 1-3; WAE's mean at each step is given, the
    others sit at fixed values (TCWAEs 0.30, beta-TCVAE 0.25, FactorVAE 0.26), spread 0.01."""
    levels = {"tcwae_mws": 0.30, "tcwae_gan": 0.30, "beta_tcvae": 0.25, "factor_vae": 0.26}
    curves = {
        method: {step: [level - SPREAD, level, level + SPREAD] for step in (1, 2, 3)}
        for method, level in levels.items()
    }
    curves["wae_mmd"] = {
        step: [mean - SPREAD, mean, mean + SPREAD] for step, mean in wae_by_step.items()
    }
    return curves


def test_budget_steps_check_the_mig_claims_at_every_step():
    budget = budget_steps(mig_curves({1: 0.29, 2: 0.02, 3: 0.02}))
    assert [entry.step for entry in budget] == [1, 2, 3]
    assert [entry.above_wae.holds for entry in budget] == [False, True, True]
    assert all(entry.on_par.holds for entry in budget)
    assert budget[1].mig["wae_mmd"] == pytest.approx((0.02, SPREAD))
    assert holds_from(budget, "above_wae") == 2
    assert holds_from(budget, "on_par") == 1


def test_a_claim_holds_from_the_step_after_its_last_failure():
    budget = budget_steps(mig_curves({1: 0.02, 2: 0.29, 3: 0.02}))
    assert holds_from(budget, "above_wae") == 3
    assert holds_from(budget_steps(mig_curves({1: 0.02, 2: 0.02, 3: 0.29})), "above_wae") is None


def test_curves_keep_the_steps_every_run_of_a_method_logged():
    runs = [
        {"run_id": "a", "method": "wae_mmd"},
        {"run_id": "b", "method": "wae_mmd"},
        {"run_id": "c", "method": "tcwae_mws"},
    ]
    histories = {"a": {10: 0.1, 20: 0.2}, "b": {10: 0.3}, "c": {10: 0.5, 20: 0.6}}
    assert curves_by_method(runs, histories) == {
        "wae_mmd": {10: [0.1, 0.3]},
        "tcwae_mws": {10: [0.5], 20: [0.6]},
    }


def test_replace_section_keeps_the_rest_and_is_idempotent():
    page = "# Results\n\n## A\n\nold a\n\n## B\n\nb stays\n"
    replaced = replace_section(page, "## A", "new a")
    assert replaced == "# Results\n\n## A\n\nnew a\n\n## B\n\nb stays\n"
    assert replace_section(replaced, "## A", "new a") == replaced
    appended = replace_section("# Results\ntext\n\n\n", "## C", "c")
    assert appended == "# Results\ntext\n\n## C\n\nc\n"

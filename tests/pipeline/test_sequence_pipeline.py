"""The sequence models through the pipeline: `pipeline/sweep.py` on sprite videos with a real local
Ray, Optuna and a real MLflow sqlite store, and the driver's refusal of a method that does not fit
the data set.

The sweep is search_spaces/sprite_videos.yaml's smoke profile made smaller (2 steps, small
networks): three trials, one a method, each trained by a TorchTrainer, judged by
`tcwae.sequence_eval` (the judge trained once, at the smoke profile's 30 steps, and cached in the
data root) and ranked by the report.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from pipeline import sweep, train
from pipeline.report_sequences import SECTION_HEADING
from pipeline.search.loader import SEARCH_SPACE_DIR
from pipeline.tracking import Tracking
from tcwae.data.sprite_videos import DYNAMIC_FACTORS, FACTOR_NAMES, STATIC_FACTORS
from tcwae.methods import SEQUENCE_METHODS
from tcwae.sequence_eval import (
    JUDGE_STEPS,
    SEQUENCE_EVAL_SIZES,
    SEQUENCE_SCORES,
    SEQUENCES_PICTURE,
    SWAP_PICTURE,
)

SMALL_NETWORKS = {"ds": 4, "rnn_hidden": 16}
PARENT_TAG = "mlflow.parentRunId"


def small_smoke_space(path: Path) -> Path:
    """The shipped file with 2 training steps, small networks and only its smoke profile."""
    space = yaml.safe_load((SEARCH_SPACE_DIR / "sprite_videos.yaml").read_text())
    for method in space["methods"].values():
        method["fixed"] = dict(SMALL_NETWORKS)
    smoke = space["profiles"]["smoke"]
    smoke["train"].update(steps=2, report_every=1, checkpoint_every=2)
    space["profiles"] = {"smoke": smoke}
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def test_the_driver_refuses_a_method_that_does_not_fit_the_data(tmp_path, capsys):
    common = ["--workers", "0", "--storage", str(tmp_path / "runs")]
    uri = ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    assert train.main(["sprite_videos", "--method", "wae_mmd", *common, *uri]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error
    assert "--method wae_mmd does not train on sprite_videos; choose one of rwae_mmd" in error
    assert train.main(["dsprites", "--method", "dsvae", *common, *uri]) == 2
    assert "--method dsvae does not train on dsprites" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "runs").exists()


def test_smoke_sweep_trains_judges_and_logs_the_three_sequence_models(ray_session, tmp_path):
    data_root, uri = tmp_path / "data", f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = [
        str(small_smoke_space(tmp_path / "sprite_videos.yaml")),
        "--profile",
        "smoke",
        "--data-root",
        str(data_root),
        "--storage",
        str(tmp_path / "runs"),
        "--tracking-uri",
        uri,
        "--results-md",
        str(tmp_path / "RESULTS.md"),
    ]
    (tmp_path / "RESULTS.md").write_text("# Results\n\n## Another sweep\n\nkept as it is\n")
    assert sweep.main(argv) == 0

    tracking = Tracking.at(uri)
    experiment = tracking.client.get_experiment_by_name("sprite_videos")
    runs = tracking.client.search_runs([experiment.experiment_id], max_results=100)
    [parent] = [run for run in runs if PARENT_TAG not in run.data.tags]
    children = [run for run in runs if PARENT_TAG in run.data.tags]
    assert sorted(run.data.params["method"] for run in children) == sorted(SEQUENCE_METHODS)
    assert parent.info.status == "FINISHED"
    for run in children:
        assert run.info.status == "FINISHED", run.data.tags
        assert run.data.params["ds"] == "4" and run.data.params["rnn_hidden"] == "16"
        metrics = run.data.metrics
        names = {*SEQUENCE_SCORES, "rec", "judge_accuracy", "eval_sequences"}
        names |= {f"judge_accuracy_{factor}" for factor in FACTOR_NAMES}
        names |= {f"kept_static_acc_{factor}" for factor in STATIC_FACTORS}
        names |= {f"kept_dynamics_acc_{factor}" for factor in DYNAMIC_FACTORS}
        assert names <= set(metrics), sorted(names - set(metrics))
        assert all(math.isfinite(metrics[name]) for name in names)
        for score in ("kept_static_acc", "kept_dynamics_acc", "judge_accuracy"):
            assert 0.0 <= metrics[score] <= 1.0
        # IS lies between 1 and the number of kept joint classes (3 x 6 x 4 static, 8 x 3 dynamic)
        assert 1.0 - 1e-6 <= metrics["kept_static_is"] <= 72 + 1e-6
        assert 1.0 - 1e-6 <= metrics["kept_dynamics_is"] <= 24 + 1e-6
        assert metrics["eval_sequences"] == SEQUENCE_EVAL_SIZES["smoke"]
        assert metrics["eval_held_out"] == 360 and metrics["train/loss"] > 0  # judged held out
        assert {f"{score}_se" for score in SEQUENCE_SCORES} <= set(metrics)
        artifacts = set(tracking.artifact_paths(run.info.run_id))
        assert {SWAP_PICTURE, SEQUENCES_PICTURE, "config.yaml", "checkpoint/trainer.pt"} <= (
            artifacts
        )
        assert "traversals.png" not in artifacts  # image pictures are not drawn for sequences
    # One judge file for the smoke profile, cached in the data root for the trials to share.
    judges = list((data_root / "judges").iterdir())
    assert len(judges) == 1 and judges[0].name.endswith(f"-steps{JUDGE_STEPS['smoke']}-seed0.pt")
    assert "report/ranking.csv" in set(tracking.artifact_paths(parent.info.run_id))
    # The ranking reads the judged scores; --results-md replaces only the sequence section.
    ranking = tracking.download_artifact(parent.info.run_id, "report/ranking.csv", tmp_path)
    header = ranking.read_text().splitlines()[0].split(",")
    assert {"kept_static_acc", "kept_dynamics_acc"} <= set(header)
    results = (tmp_path / "RESULTS.md").read_text()
    assert "## Another sweep\n\nkept as it is" in results
    section = results.split(SECTION_HEADING)[1]
    for label in ("R-WAE(MMD)", "R-WAE(GAN)", "DSVAE"):
        assert section.count(f"| {label} (") == 2  # the judged scores and the per-factor table
    judge = tracking.latest_metrics(children[0].info.run_id)["judge_accuracy"]
    assert f"held-out accuracy {judge:.3f} on all factors" in section
    assert "| chance |  |  | 0.014 |" in section
    assert "| H(y\\|x) (static kept) |" in section  # escaped: a bare bar would split the cell

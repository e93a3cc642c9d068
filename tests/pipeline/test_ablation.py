"""pipeline/ablation.py against a real MLflow sqlite store holding two small sweeps."""

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from pipeline import ablation
from tcwae.config import TrainConfig

# (sweep, preset): MIG at steps 1 and 2 for seeds 0 and 1
CURVES = {
    ("sweep-authors", "authors"): {0: (0.2, 0.3), 1: (0.2, 0.5)},
    ("sweep-paper", "paper"): {0: (0.05, 0.1), 1: (0.05, 0.1)},
    ("sweep-authors-seeds2", "authors"): {2: (0.2, 0.4)},
}


@pytest.fixture()
def two_sweeps(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("space", artifact_location=str(tmp_path / "art"))
    for (sweep, preset), seeds in CURVES.items():
        parent = client.create_run(experiment, run_name=sweep).info.run_id
        for seed, (first, second) in seeds.items():
            child = client.create_run(
                experiment, run_name=f"{sweep}-{seed}", tags={"mlflow.parentRunId": parent}
            ).info.run_id
            steps = 2 if preset == "authors" else 4  # arms of different lengths
            config = TrainConfig(method="tcwae_mws", seed=seed, optimizer=preset, steps=steps)
            client.log_batch(
                child,
                metrics=[
                    Metric("train/mig", first, 0, 1),
                    Metric("train/mig", second, 0, 2),
                    Metric("train/rec", 100.0 - seed, 0, 2),
                    Metric("mig", second, 0, 2),
                    Metric("rec", 50.0, 0, 2),
                ],
            )
            client.log_dict(child, config.to_dict(), "config.yaml")  # as the pipeline logs it
            client.set_terminated(child, "FINISHED")
        failed = client.create_run(
            experiment, run_name="failed", tags={"mlflow.parentRunId": parent}
        ).info.run_id
        client.set_terminated(failed, "FAILED")
        client.set_terminated(parent, "FINISHED")
    return uri


def test_ablation_tables_each_arm_over_its_sweeps_finished_seeds(two_sweeps, tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## Optimizer ablation\n\nold\n\n## Later section\n\nkept\n")
    code = ablation.main(
        [
            "--tracking-uri", two_sweeps, "--experiment", "space",
            "--sweep", "sweep-authors=authors", "--sweep", "sweep-paper=paper",
            "--sweep", "sweep-authors-seeds2=authors",
            "--steps", "1,2", "--results-md", str(results), "--figure", "fig/ablation.png",
        ]
    )  # fmt: skip
    assert code == 0
    text = results.read_text()
    assert "old" not in text and "## Later section\n\nkept" in text
    rows = [line for line in text.splitlines() if line.startswith("| TCWAE-MWS")]
    assert rows[0].startswith("| TCWAE-MWS | authors | 3 | 0.200 ± 0.000 | 0.400 ± 0.100 | 2 |")
    assert rows[1].startswith("| TCWAE-MWS | paper | 2 | 0.050 ± 0.000 | 0.100 ± 0.000 | 4 |")
    assert (tmp_path / "fig" / "ablation.png").stat().st_size > 0


def test_ablation_refuses_a_sweep_without_a_label(two_sweeps, tmp_path, capsys):
    args = ["--tracking-uri", two_sweeps, "--experiment", "space", "--sweep", "sweep-paper"]
    assert ablation.main([*args, "--results-md", str(tmp_path / "R.md")]) == 2
    assert "NAME=LABEL" in capsys.readouterr().err


def test_ablation_under_its_own_heading_keeps_the_other_ablation(two_sweeps, tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## Optimizer ablation\n\nshort budget\n")
    args = ["--tracking-uri", two_sweeps, "--experiment", "space", "--steps", "1,2"]
    code = ablation.main(
        [
            *args, "--sweep", "sweep-paper=paper", "--results-md", str(results),
            "--figure", "long.png", "--heading", "## Optimizer ablation, long",
        ]
    )  # fmt: skip
    assert code == 0
    text = results.read_text()
    assert "## Optimizer ablation\n\nshort budget\n" in text
    assert text.index("## Optimizer ablation, long") > text.index("short budget")
    assert "| TCWAE-MWS | paper | 2 |" in text

"""Successive halving in a real sweep (Ray, Optuna, MLflow, training on tiny procedural dSprites).

Apart from tests/pipeline/test_sweep.py, whose fake autoscaling cluster is a second Ray instance on
the machine: the test once failed beside it (Ray Train's placement-group cleaner found two clusters
and never released a paused trial's CPUs), which `pipeline.cluster.start_local` fixed; it also
passed beside a running sweep's Ray instance. Keeping it apart keeps the module's cluster idle.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import re
from pathlib import Path
from typing import Any

import pytest
from mlflow_store import mlflow_client, parent_and_children
from sweep_spaces import GRID_METHODS, space_dict, sweep_args, write_space

from pipeline.metric_keys import RESUMED_METRIC, STARTUP_METRIC
from pipeline.run_spec import FROM_OBJECT_STORE
from pipeline.search.successive_halving import RUNG_SCORES, SchedulerSpec, rung_order
from pipeline.sweep import main
from pipeline.tracking import TAG_ERROR, TAG_STOP_REASON
from pipeline.tracking_ui import MODEL_TRAINING_KIND, TAG_DESCRIPTION, UNSET
from tcwae.metrics import SCORES

# Successive halving: 6 steps, one synchronous rung at step 2 where only the best third continues.
HALVING_TRAIN = {"steps": 6}
HALVING_SCHEDULER = {"type": "mo-asha", "grace": 2, "eta": 3, "synchronous": True}
HALVING_METHODS = {
    "tcwae_mws": GRID_METHODS["tcwae_mws"],
    "wae_mmd": GRID_METHODS["wae_mmd"],
}


@dataclasses.dataclass(frozen=True)
class HalvingSweep:
    """One finished successive-halving sweep: its folder (store, storage), what it printed."""

    folder: Path
    space: dict[str, Any]
    code: int
    output: str


@pytest.fixture(scope="module")
def halving_sweep(ray_session, tiny_data_root: Path, tmp_path_factory) -> HalvingSweep:
    """Three trials, two at a time, one synchronous rung at step 2 (shared: a sweep costs
    minutes here)."""
    folder = tmp_path_factory.mktemp("halving")
    space = space_dict(HALVING_METHODS, HALVING_TRAIN)
    space["profiles"]["smoke"]["scheduler"] = HALVING_SCHEDULER
    path = write_space(folder / "halving.yaml", space)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(sweep_args(path, folder, tiny_data_root, "--max-concurrent", "2"))
    return HalvingSweep(folder, space, code, printed.getvalue())


@pytest.mark.ray
def test_successive_halving_stops_trials_at_the_rung_and_ranks_only_the_finished(
    halving_sweep: HalvingSweep,
) -> None:
    """The trials that reach the rung first pause until the third arrives, then the best of the
    three by the rung's order finishes, resumed from its rung checkpoint, and the others stop.
    Stopped trials are KILLED child runs with their rung scores, step and reason, and no final
    scores; the finished one has final scores and is the only one ranked; its encoder is
    registered. The console holds the progress lines, the rung decisions and the table, and
    not Tune's periodic status table."""
    space, output = halving_sweep.space, halving_sweep.output
    assert halving_sweep.code == 0, output[-5000:]

    client = mlflow_client(halving_sweep.folder)
    [parent], children = parent_and_children(client)
    assert len(children) == 3
    stopped = [run for run in children if run.info.status == "KILLED"]
    [winner] = [run for run in children if run.info.status == "FINISHED"]
    assert len(stopped) == 2
    for run in stopped:
        assert run.data.tags["tcwae.stopped_at_step"] == "2"
        reason = run.data.tags["tcwae.stop_reason"]
        assert "stopped at rung 1 of 1 (step 2)" in reason and "of 3 trials" in reason
        assert {f"rung/{score}" for score in RUNG_SCORES} <= set(run.data.metrics)
        assert not set(SCORES) & set(run.data.metrics)
    assert all(math.isfinite(winner.data.metrics[score]) for score in SCORES)
    rank_by = tuple(space["rank_by"].items())
    spec = SchedulerSpec("mo-asha", 2, 3, rank_by, synchronous=True)
    table = [{s: run.data.metrics[f"rung/{s}"] for s, _ in rank_by} for run in children]
    assert children[rung_order(table, spec)[0]].info.run_id == winner.info.run_id
    # The winner was paused at the rung and resumed from the checkpoint it wrote there.
    assert winner.data.metrics[RESUMED_METRIC] == 2
    assert len(client.get_metric_history(winner.info.run_id, STARTUP_METRIC)) == 2
    losses = client.get_metric_history(winner.info.run_id, "train/loss")
    assert sorted(metric.step for metric in losses) == [2, 4, 6]
    # The data set was loaded once, by the driver, and every trial read it from the object store.
    assert "sweep: loaded 1 data set(s) into Ray's object store" in output
    for run in children:
        assert run.data.tags["data_loading"] == FROM_OBJECT_STORE
        assert run.data.metrics[STARTUP_METRIC] > 0

    assert "Stopped at a rung by successive halving (2; not ranked):" in output
    header = re.search(r"^#\s+configuration\s+n\s+Rec \(min\)", output, re.M)
    assert header, output[-5000:]
    ranked_rows = re.findall(r"^\d+\*?\s+(\w+) ", output[header.end() :], re.M)
    assert len(ranked_rows) == 1
    assert parent.data.tags["tcwae.registered_model"] == "models:/tcwae-halving/1"
    [version] = client.search_model_versions("name = 'tcwae-halving'")
    assert version.run_id == winner.info.run_id

    assert "== Status ==" not in output and "Trial name" not in output
    decisions = re.findall(
        r"^sweep: \w+ .*: (continues|stopped) at rung 1 of 1 \(step 2\)", output, re.M
    )
    assert sorted(decisions) == ["continues", "stopped", "stopped"], output[-5000:]
    assert len(re.findall(r"^sweep: \w+ .*: step \d+/6 ", output, re.M)) == 2 + 3
    assert "sweep: halving-smoke: 3 trials" in output


@pytest.mark.ray
def test_the_sweep_reads_as_model_training_in_the_mlflow_ui(halving_sweep: HalvingSweep) -> None:
    """The experiment is a model-training one and the printed link opens that view; the parent
    run's description is the ranked table with the stopped trials; no run has a parameter
    'None'; the searched hyper-parameters read as numbers; stopped trials carry their reason
    and no error."""
    assert halving_sweep.code == 0, halving_sweep.output[-5000:]
    client = mlflow_client(halving_sweep.folder)
    [parent], children = parent_and_children(client)
    tag, kind = MODEL_TRAINING_KIND
    assert client.get_experiment(parent.info.experiment_id).tags[tag] == kind
    assert f"/runs/{parent.info.run_id}?workflowType=machine_learning" in halving_sweep.output

    description = parent.data.tags[TAG_DESCRIPTION]
    assert description.startswith("Sweep **halving-smoke**: 3 trials")
    assert re.search(r"^#\s+configuration\s+n\s+Rec \(min\)", description, re.M), description
    assert "Stopped at a rung by successive halving (2; not ranked):" in description

    for run in [parent, *children]:
        assert UNSET not in run.data.params.values(), run.data.params
    assert "lr" not in children[0].data.params  # unset: the optimizer preset's, as adam.lr
    searched = {"tcwae_mws": ("beta", "gamma"), "wae_mmd": ("lam",)}
    for run in children:
        method = run.data.params["method"]
        values = [float(run.data.params[name]) for name in searched[method]]
        assert all(math.isfinite(value) for value in values)
        assert float(run.data.params["adam.lr"]) > 0

    stopped = [run for run in children if run.info.status == "KILLED"]
    assert len(stopped) == 2
    for run in stopped:
        assert TAG_ERROR not in run.data.tags
        reason = run.data.tags[TAG_STOP_REASON]
        assert run.data.tags[TAG_DESCRIPTION] == f"Stopped by successive halving: {reason}"

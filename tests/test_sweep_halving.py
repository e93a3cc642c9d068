"""Successive halving in a real sweep (Ray, Optuna, MLflow, training on tiny procedural dSprites).

Apart from tests/test_sweep.py, whose fake autoscaling cluster is a second Ray instance on the
machine: the test once failed beside it (Ray Train's placement-group cleaner found two clusters
and never released a paused trial's CPUs), which `pipeline.cluster.start_local` fixed; it also
passed beside a running sweep's Ray instance. Keeping it apart keeps the module's cluster idle.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from mlflow_store import mlflow_client, parent_and_children
from sweep_spaces import GRID_METHODS, space_dict, sweep_args, write_space

from pipeline.rungs import RUNG_SCORES, SchedulerSpec, rung_order
from pipeline.shared_data import FROM_OBJECT_STORE
from pipeline.sweep import main
from pipeline.worker import RESUMED_METRIC, STARTUP_METRIC
from tcwae.metrics import SCORES

# Successive halving: 6 steps, one synchronous rung at step 2 where only the best third continues.
HALVING_TRAIN = {"steps": 6}
HALVING_SCHEDULER = {"type": "mo-asha", "grace": 2, "eta": 3, "synchronous": True}
HALVING_METHODS = {
    "tcwae_mws": GRID_METHODS["tcwae_mws"],
    "wae_mmd": GRID_METHODS["wae_mmd"],
}


@pytest.mark.ray
def test_successive_halving_stops_trials_at_the_rung_and_ranks_only_the_finished(
    ray_session, tiny_data_root: Path, tmp_path: Path, capsys
) -> None:
    """Three trials, two at a time, one synchronous rung: the trials that reach it first pause
    until the third arrives, then the best of the three by the rung's order finishes, resumed
    from its rung checkpoint, and the others stop. Stopped trials are KILLED child runs with
    their rung scores, step and reason, and no final scores; the finished one has final scores
    and is the only one ranked; its encoder is registered."""
    space = space_dict(HALVING_METHODS, HALVING_TRAIN)
    space["profiles"]["smoke"]["scheduler"] = HALVING_SCHEDULER
    path = write_space(tmp_path / "halving.yaml", space)
    code = main(sweep_args(path, tmp_path, tiny_data_root, "--max-concurrent", "2"))
    output = capsys.readouterr().out
    assert code == 0, output[-5000:]

    client = mlflow_client(tmp_path)
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

"""The smoke sweep behaves as it did before issue 31's refactor: same ranked table, same MLflow
records (tests/golden/smoke_sweep.json, captured from commit 58a5c49; see tests/golden_records.py
for what is compared, what is left out and why, and how to regenerate it).

The sweep is driven through its command line (`pipeline.sweep.main`, what `python
pipeline/sweep.py` runs) on the shipped `smoke` profile of search_spaces/dsprites.yaml, with only
the precision pinned to float32 (`auto` picks bf16 on a CPU that has it), on the tiny procedural
dSprites and the session's local Ray; the store is read with the `mlflow` client alone.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from golden_records import GOLDEN_PATH, capture, differences, read, write

SHIPPED_SPACE = Path(__file__).resolve().parents[2] / "search_spaces" / "dsprites.yaml"
PROFILE = "smoke"
WRITE_VARIABLE = "TCWAE_WRITE_GOLDEN"


def smoke_space() -> dict[str, Any]:
    """The shipped search space with the smoke profile's precision pinned to float32."""
    space = yaml.safe_load(SHIPPED_SPACE.read_text())
    space["profiles"][PROFILE]["train"]["precision"] = "float32"
    return space


def searched_params(space: dict[str, Any]) -> dict[str, list[str]]:
    """Per method of the profile, the parameters it searches (they name its trials)."""
    chosen = space["profiles"][PROFILE].get("methods") or {
        name: method.get("params", {}) for name, method in space["methods"].items()
    }
    return {method: sorted(params) for method, params in chosen.items()}


@pytest.fixture(scope="module")
def smoke_record(ray_session, tiny_data_root: Path, tmp_path_factory) -> dict[str, Any]:
    """Run the smoke sweep once (about 2 min on 2 busy cores) and capture its record."""
    from pipeline.sweep import main

    folder = tmp_path_factory.mktemp("golden")
    space = smoke_space()
    # Named like the shipped file, so the sweep's default name and experiment are the same.
    path = folder / "dsprites.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(
            [
                str(path),
                "--profile",
                PROFILE,
                "--seed",
                "0",
                "--data-root",
                str(tiny_data_root),
                "--storage",
                str(folder / "runs"),
                "--tracking-uri",
                f"sqlite:///{folder / 'mlflow.db'}",
            ]
        )
    output = printed.getvalue()
    assert code == 0, output[-5000:]
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    return capture(client, folder, output, searched_params(space), space["dataset"])


@pytest.mark.ray
def test_smoke_sweep_matches_the_golden_record(smoke_record: dict[str, Any]) -> None:
    """Ranked table, runs, params, tags, metrics, artifacts and models as before the refactor.
    With TCWAE_WRITE_GOLDEN=1 the record is written as the new golden instead."""
    if os.environ.get(WRITE_VARIABLE) == "1":
        write(smoke_record)
        pytest.skip(f"wrote {GOLDEN_PATH}")
    assert smoke_record["printed_table"], "the sweep printed no ranked table"
    diff = differences(read(), smoke_record)
    assert not diff, "the smoke sweep differs from tests/golden/smoke_sweep.json:\n" + "\n".join(
        diff
    )


def test_the_comparison_tolerates_float_noise_and_names_every_real_change() -> None:
    """A metric off in its 7th digit passes; a param string, a ranking order, a metric beyond
    the tolerance and a lost artifact are each one readable line (or line diff)."""
    golden = read()
    key = next(name for name in golden["runs"] if name != "sweep")
    noisy = copy.deepcopy(golden)
    step, value = noisy["runs"][key]["metrics"]["rec"][-1]
    noisy["runs"][key]["metrics"]["rec"][-1] = [step, value * (1 + 1e-7)]
    assert differences(golden, noisy) == []

    changed = copy.deepcopy(noisy)
    run = changed["runs"][key]
    run["params"]["seed"] = "0.0"
    run["metrics"]["rec"][-1] = [step, value * 1.01]
    run["artifacts"] = run["artifacts"][1:]
    changed["ranking"]["order"].reverse()
    diff = "\n".join(differences(golden, changed))
    assert f"~ runs/{key}/params/seed: golden '0' != now '0.0'" in diff
    assert f"runs/{key}/metrics/rec" in diff
    assert f"- {golden['runs'][key]['artifacts'][0]}" in diff
    assert "~ ranking/order (- golden, + now):" in diff

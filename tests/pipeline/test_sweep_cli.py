"""pipeline/sweep.py's command line: every mistake in it or in the search space is one line,
exit code 2, before Ray or MLflow is touched; and how many trials run at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_spaces import GRID_METHODS, space_dict, sweep_args, write_space

from pipeline.sweep import concurrent_trials, main, plan_sweep
from tcwae.errors import UserError


def _drop_methods(space: dict) -> None:
    del space["methods"]


def _profile_names_an_absent_method(space: dict) -> None:
    space["profiles"]["smoke"]["methods"] = {"factor_vae": {"gamma": [10]}}


def _unknown_key(space: dict) -> None:
    space["methods"]["wae_mmd"]["params"]["lam"]["steps"] = 3


def _empty_grid(space: dict) -> None:
    space["methods"]["tcwae_mws"]["params"]["beta"]["grid"] = []


def _low_above_high(space: dict) -> None:
    space["methods"]["tcwae_mws"]["params"]["gamma"]["range"] = {"low": 200, "high": 150}


def _grace_off_the_report_steps(space: dict) -> None:
    space["profiles"]["smoke"]["scheduler"] = {"type": "mo-asha", "grace": 3}


BAD_SPACES = {
    "scheduler grace": (
        _grace_off_the_report_steps,
        "profiles.smoke.scheduler.grace: 3 is not a multiple of report_every (2)",
    ),
    "unknown key": (_unknown_key, "methods.wae_mmd.params.lam.steps: unknown key"),
    "missing methods": (_drop_methods, "methods: missing"),
    "missing method": (
        _profile_names_an_absent_method,
        "profiles.smoke.methods.factor_vae: not a method of this file",
    ),
    "empty grid": (_empty_grid, "methods.tcwae_mws.params.beta.grid: empty"),
    "range low > high": (
        _low_above_high,
        "methods.tcwae_mws.params.gamma.range: low 200 > high 150",
    ),
}


def _assert_refused(code: int, err: str, tmp_path: Path, expected: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sweep: ") and expected in lines[0], lines[0]
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("case", list(BAD_SPACES))
def test_bad_search_space_is_one_line_exit_2_and_nothing_created(case, tmp_path, capsys):
    edit, expected = BAD_SPACES[case]
    space = space_dict(GRID_METHODS)
    edit(space)
    path = write_space(tmp_path / "space.yaml", space)
    code = main(sweep_args(path, tmp_path, tmp_path / "data", "--mode", "grid"))
    _assert_refused(code, capsys.readouterr().err, tmp_path, f"sweep: {path}: {expected}")


def test_mo_asha_on_a_profile_without_rungs_is_refused(tmp_path, capsys):
    path = write_space(tmp_path / "space.yaml", space_dict(GRID_METHODS))
    code = main(sweep_args(path, tmp_path, tmp_path / "data", "--scheduler", "mo-asha"))
    _assert_refused(code, capsys.readouterr().err, tmp_path, "has no `scheduler: {type: mo-asha")


def test_optuna_mode_on_a_profile_that_searches_nothing_is_refused(tmp_path, capsys):
    fixed_only = {"wae_mmd": {"cost": "xent", "fixed": {"lam": 10}, "params": {}}}
    path = write_space(tmp_path / "space.yaml", space_dict(fixed_only))
    code = main(sweep_args(path, tmp_path, tmp_path / "data", "--mode", "optuna"))
    expected = f"sweep: {path}: profile 'smoke' searches no parameter; use --mode grid"
    _assert_refused(code, capsys.readouterr().err, tmp_path, expected)


def test_num_samples_in_grid_mode_is_refused(tmp_path, capsys):
    path = write_space(tmp_path / "space.yaml", space_dict(GRID_METHODS))
    code = main(
        sweep_args(path, tmp_path, tmp_path / "data", "--mode", "grid", "--num-samples", "2")
    )
    expected = "sweep: --num-samples is for --mode optuna"
    _assert_refused(code, capsys.readouterr().err, tmp_path, expected)


def test_results_md_under_a_file_is_refused(tmp_path, capsys):
    path = write_space(tmp_path / "space.yaml", space_dict(GRID_METHODS))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = main(
        sweep_args(path, tmp_path, tmp_path / "data", "--results-md", str(blocker / "RESULTS.md"))
    )
    expected = "is not a directory; pass --results-md a writable directory"
    _assert_refused(code, capsys.readouterr().err, tmp_path, expected)


def test_concurrency_comes_from_the_cluster_or_is_left_to_its_autoscaler(tmp_path):
    path = write_space(tmp_path / "space.yaml", space_dict(GRID_METHODS))
    plan = plan_sweep(sweep_args(path, tmp_path, tmp_path / "data", "--mode", "grid"))
    assert plan.num_samples == 4
    assert concurrent_trials(plan, {"CPU": 3, "GPU": 0}) == 3
    assert concurrent_trials(plan, {"CPU": 16, "GPU": 0}) == 4
    # A cluster that publishes no autoscaling limits and has no CPU yet (the head of
    # cluster/local.yaml, aws.yaml, gcp.yaml): every trial starts and waits for its nodes.
    assert concurrent_trials(plan, {"CPU": 0, "GPU": 0}, may_grow=True) == 4
    capped = plan_sweep(sweep_args(path, tmp_path, tmp_path / "data", "--max-concurrent", "2"))
    assert concurrent_trials(capped, {"CPU": 0, "GPU": 0}, may_grow=True) == 2
    with pytest.raises(UserError, match="a trial needs 1 CPUs and 0 GPUs .* at most 0 CPUs"):
        concurrent_trials(plan, {"CPU": 0, "GPU": 0})


def test_seeds_and_methods_flags_narrow_the_profile_and_name_the_sweep(tmp_path, capsys):
    path = write_space(tmp_path / "space.yaml", space_dict(GRID_METHODS))
    base = plan_sweep(sweep_args(path, tmp_path, tmp_path / "data"))
    plan = plan_sweep(sweep_args(path, tmp_path, tmp_path / "data", "--seeds", "3,4"))
    subset = plan_sweep(
        sweep_args(path, tmp_path, tmp_path / "data", "--methods", "wae_mmd", "--seeds", "3")
    )
    assert plan.profile.seeds == (3, 4)
    assert {p["seed"] for p in plan.points} == {3, 4}
    assert plan.num_samples == 2 * base.num_samples // len(base.profile.seeds)
    assert plan.name == f"{base.name}-seeds3_4"
    assert subset.name == f"{base.name}-wae_mmd-seeds3"
    for bad, expected in (
        ("2,x", "--seeds must be comma-separated integers"),
        ("1,1", "seeds must be distinct non-negative integers"),
    ):
        code = main(sweep_args(path, tmp_path, tmp_path / "data", "--seeds", bad))
        _assert_refused(code, capsys.readouterr().err, tmp_path, expected)

"""What a sweep checks before Ray starts: that --resume has a readable sweep to continue (and a
new sweep none to overwrite), that a resumed sweep keeps its original arguments, and that the
trials' data sets load and hold their batches. Each failure is one `UserError` line."""

from __future__ import annotations

import pickle
from typing import Any

from pipeline import cli
from pipeline.sweep_plan import SweepPlan
from pipeline.tracking import Tracking
from pipeline.train import check_batch_size
from tcwae.errors import UserError

PROG = "sweep"
TUNER_STATE_FILE = "tuner.pkl"  # what Tuner.restore reads first


def parent_params(plan: SweepPlan) -> dict[str, Any]:
    """The sweep's parameters as its parent run records them (and --resume compares them)."""
    return {
        "space": plan.space_name,
        "profile": plan.profile.name,
        "mode": plan.mode,
        "methods": ",".join(plan.profile.methods),
        "num_samples": plan.num_samples,
        "workers_per_trial": plan.workers,
        "gpus_per_worker": plan.gpus_per_worker,
        "seeds": ",".join(str(s) for s in plan.profile.seeds),
        **{f"train.{key}": value for key, value in plan.profile.train.items()},
    }


def check_restorable(plan: SweepPlan) -> None:
    """--resume needs an earlier sweep of that name; a new sweep must not overwrite one."""
    from ray import tune

    exists = tune.Tuner.can_restore(plan.experiment_path)
    if plan.resume and not exists:
        raise UserError(
            f"--resume: no sweep {plan.name!r} to continue in {plan.storage}; "
            "drop --resume to start it"
        )
    if not plan.resume and exists:
        raise UserError(
            f"sweep {plan.name!r} already exists in {plan.storage}; pass --resume to continue it "
            "or --name to start another"
        )
    local = cli.local_path(plan.experiment_path)
    if plan.resume and local is not None:
        try:
            pickle.loads((local / TUNER_STATE_FILE).read_bytes())
        except Exception as error:  # any damage: truncated, overwritten, from another version
            raise UserError(
                f"--resume: the saved state of sweep {plan.name!r} ({local / TUNER_STATE_FILE}) "
                f"cannot be read ({type(error).__name__}); start the sweep again under another "
                "--name"
            ) from None


def check_resume_arguments(plan: SweepPlan) -> None:
    """--resume continues a sweep with the arguments it was started with: a changed one would
    fail every trial (and leave the sweep unresumable), so it is refused before anything runs."""
    if not plan.resume:
        return
    tracking = Tracking.at(plan.tracking_uri)
    parent = tracking.find_sweep_run(
        tracking.experiment_id(plan.experiment), plan.name, plan.storage
    )
    if parent is None:
        return
    logged = tracking.params(parent)
    for key, value in parent_params(plan).items():
        if value is not None and key in logged and logged[key] != str(value):
            raise UserError(
                f"--resume: sweep {plan.name!r} was started with {key}={logged[key]} but this "
                f"command has {key}={value}; resume it with its original arguments, or drop "
                "--resume and pass another --name to start a new sweep"
            )


def check_sweep_data(plan: SweepPlan) -> None:
    """The data sets the trials train on load and hold their batches: checked once before Ray
    starts. When no trial could train, that is one line, not a FAILED parent run and a traceback;
    when only some cannot, a notice names them (they fail as FAILED child runs, the rest train)."""
    from tcwae.data import check_dataset

    problems: dict[tuple[str, str, int], str | None] = {}
    for config in plan.trial_configs():
        key = (config.dataset, config.data_source, config.batch_size)
        if key in problems:
            continue
        try:
            examples = check_dataset(config.dataset, plan.data_root, config.data_source)
            check_batch_size(config.batch_size, examples, plan.workers)
            problems[key] = None
        except UserError as error:
            problems[key] = cli.one_line(error)
    failing = [problem for problem in problems.values() if problem is not None]
    if failing and len(failing) == len(problems):
        raise UserError(failing[0])
    if failing:
        print(
            f"{PROG}: the trials of {len(failing)} of {len(problems)} data choices will fail: "
            f"{failing[0]}",
            flush=True,
        )

"""The main job: a Ray Tune search, driven by Optuna, over a data set's search space.

`python pipeline/sweep.py dsprites --profile cpu` reads `search_spaces/dsprites.yaml` into a
`SweepPlan`, opens the sweep's MLflow parent run and runs a `Tuner` whose trials each train their
`RunSpec` with `pipeline.train.run_training` (a TorchTrainer inside Tune) as an MLflow child run;
then `pipeline.report` ranks the configurations and logs the ranking to the parent run.

`--mode grid` enumerates the file's grids through Optuna's `GridSampler`; `--mode optuna` samples
its ranges with a multi-objective TPE sampler. `--resume` continues with `Tuner.restore`; trials
are named after their Tune trial id, so a resumed trial continues its checkpoint and MLflow run.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from pipeline import cli, cluster
from pipeline.metric_keys import LOSS_METRIC, MIG_CURVE_METRIC
from pipeline.model_registry import BEST_ALIAS, register_best
from pipeline.run_spec import Identity, RunSpec, SharedData, share_datasets
from pipeline.search.grid import GridDefineByRun, grid_sampler_space
from pipeline.search.optuna_search import OptunaDefineByRun, objectives
from pipeline.search.successive_halving import Decision
from pipeline.search.types import trial_train_config
from pipeline.sweep_plan import (
    SweepPlan,
    check_restorable,
    check_resume_arguments,
    check_sweep_data,
    concurrent_trials,
    parent_params,
    plan_sweep,
)
from pipeline.tracking import (
    MAX_TAG_LENGTH,
    TAG_STOP_REASON,
    TAG_STOPPED_AT,
    TAG_SWEEP,
    TAG_SWEEP_STORAGE,
    Tracking,
)
from pipeline.tracking_ui import TAG_DESCRIPTION, sweep_description
from pipeline.train import check_data, print_run_page, record_failed_run, run_training
from tcwae.errors import UserError

PROG = "sweep"
TAG_REGISTERED_MODEL = "tcwae.registered_model"
# A trial's own process only waits on its TorchTrainer, whose workers reserve the CPUs and GPUs.
# Tune's default of 1 CPU per trial would halve a 2-core laptop's concurrency, and Tune refuses an
# empty request, so the driver reserves one byte of memory: a real reservation that costs nothing.
TRIAL_DRIVER_RESOURCES = {"memory": 1}
TABLE_COLUMNS = {"step": "step", LOSS_METRIC: "loss", MIG_CURVE_METRIC: "MIG"}
TABLE_EVERY_S = 30


def run_trial(
    params: dict[str, Any], plan: SweepPlan, parent_run_id: str, shared_data: SharedData
) -> None:
    """The Tune trainable: the driver trains one configuration, its rank-0 reports reaching Tune,
    then reports the final scores; data that cannot load fails it as a FAILED child run."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = ray.tune.get_context().get_trial_id()
    config = trial_train_config(plan.profile, params)  # a grid point's: planned, looked up
    spec = RunSpec(
        config=config,
        where=dataclasses.replace(plan.where, storage=plan.trial_storage, shared_data=shared_data),
        identity=Identity(plan.trial_name(trial_id), parent_run_id=parent_run_id),
        resources=plan.resources,
        rung_check=plan.scheduler.rung_check(config.steps) if plan.scheduler else None,
    )
    try:
        check_data(spec)
    except UserError as error:
        record_failed_run(spec, error)
        raise
    result = run_training(spec, [TuneReportCallback()], show_progress=False)
    ray.tune.report(dict(result.metrics))


def search_algorithm(plan: SweepPlan) -> Any:
    import optuna

    from pipeline.search.tune_scheduler import PruningOptunaSearch

    if not plan.verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # its "study created" line
    metrics, modes = objectives(plan.profile)
    if plan.mode == "grid":
        space = GridDefineByRun(plan.points)
        sampler = optuna.samplers.GridSampler(grid_sampler_space(plan.points), seed=plan.seed)
    else:
        space = OptunaDefineByRun.from_profile(plan.profile)
        sampler = optuna.samplers.TPESampler(seed=plan.seed)
    return PruningOptunaSearch(space=space, metric=metrics, mode=modes, sampler=sampler)


def mark_stopped(plan: SweepPlan, trial_id: str, decision: Decision) -> None:
    """End KILLED the MLflow run of a trial that successive halving stopped, tagged with the rung
    and the reason (bound to the plan with functools.partial, which Tune saves for --resume)."""
    tracking = Tracking.at(plan.where.tracking_uri)
    experiment_id = tracking.experiment_id(plan.where.experiment)
    run = tracking.find_run(experiment_id, plan.trial_storage, plan.trial_name(trial_id))
    if run is not None:
        tags = {TAG_STOPPED_AT: decision.step, TAG_STOP_REASON: decision.reason()}
        tracking.stop_run(run.info.run_id, tags)


def make_tuner(
    plan: SweepPlan, parent_run_id: str, max_concurrent: int, shared_data: SharedData
) -> Any:
    """The sweep's Tuner (with --resume, the interrupted one), with multi-objective successive
    halving judging the rung reports when the plan has a scheduler."""
    from ray import tune

    from pipeline.search.tune_scheduler import (
        MultiObjectiveAsha,
        RungConcurrencyLimiter,
        SchedulerCallback,
    )
    from pipeline.sweep_console import ProgressLines, RungLines, SweepTable

    # The searcher's scores arrive only in a trial's last report; the reports before it carry
    # the training losses that the TorchTrainer forwards, which Tune would otherwise reject.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # The legacy output engine's table has choosable columns (SweepTable), printed with --verbose
    # only; by default Tune is silent and the console holds ProgressLines and RungLines.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"

    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial, plan=plan, parent_run_id=parent_run_id, shared_data=shared_data
        ),
        TRIAL_DRIVER_RESOURCES,
    )
    scheduler, callbacks = None, [ProgressLines(PROG)]
    searcher, limit = search_algorithm(plan), max_concurrent
    if plan.scheduler is not None:
        scheduler = MultiObjectiveAsha(
            plan.scheduler, plan.full_trial_steps, plan.num_samples, max_concurrent, RungLines(PROG)
        )
        callbacks.append(SchedulerCallback(scheduler, functools.partial(mark_stopped, plan)))
        # Trials paused at a synchronous rung must not count against the concurrency limit.
        searcher, limit = RungConcurrencyLimiter(searcher, max_concurrent), None
    if plan.resume:
        # The callbacks (and with them the scheduler's rungs) come back from the checkpoint.
        return tune.Tuner.restore(
            plan.experiment_path, trainable, resume_unfinished=True, resume_errored=False
        )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=plan.num_samples,
            max_concurrent_trials=limit,
        ),
        run_config=tune.RunConfig(
            name=plan.name,
            storage_path=plan.where.storage,
            verbose=1 if plan.verbose else 0,
            progress_reporter=SweepTable(TABLE_COLUMNS, TABLE_EVERY_S) if plan.verbose else None,
            callbacks=callbacks,
        ),
    )


def _parent_run(plan: SweepPlan, tracking: Tracking) -> str:
    """The sweep's MLflow parent run: reopened on --resume, else a new one."""
    experiment_id = tracking.experiment_id(plan.where.experiment)
    if plan.resume:
        found = tracking.find_sweep_run(experiment_id, plan.name, plan.where.storage)
        if found is not None:
            tracking.reopen_run(found)
            return found
    params = parent_params(plan)
    tags = {
        TAG_SWEEP: plan.name,
        TAG_SWEEP_STORAGE: plan.where.storage,
        TAG_DESCRIPTION: f"{_headline(plan)}; its ranked table comes here when the sweep ends.",
    }
    run_id = tracking.start_parent_run(experiment_id, plan.name, params=params, tags=tags)
    tracking.log_config(run_id, plan.profile.to_dict())
    return run_id


def _headline(plan: SweepPlan) -> str:
    return (
        f"Sweep **{plan.name}**: {plan.num_samples} trials of search space `{plan.space_name}`, "
        f"profile `{plan.profile.name}`, {plan.mode} mode; each child run is one trial"
    )


def run_sweep(plan: SweepPlan) -> tuple[str, Any]:
    """Run (or resume) the sweep on the connected Ray cluster; returns (parent run id, report)."""
    from pipeline.report import report_sweep

    max_concurrent = concurrent_trials(plan, *cluster.cluster_capacity())
    check_restorable(plan)
    tracking = Tracking.at(plan.where.tracking_uri)
    parent_run_id = _parent_run(plan, tracking)
    print(
        f"{PROG}: {plan.name}: {plan.num_samples} trials ({plan.mode} mode), "
        f"{max_concurrent} at a time; MLflow parent run {parent_run_id}",
        flush=True,
    )
    try:
        shared = SharedData({})
        if plan.share_data:
            loading = time.perf_counter()
            shared = share_datasets(plan.trial_configs(), plan.where.data_root)
            print(
                f"{PROG}: loaded {len(shared.refs)} data set(s) into Ray's object store in "
                f"{time.perf_counter() - loading:.0f} s; every trial reads them from there",
                flush=True,
            )
        grid = make_tuner(plan, parent_run_id, max_concurrent, shared).fit()
        # Tune catches Ctrl-C itself (it saves its state and returns): fewer trials than planned,
        # or some neither finished nor failed, mean the sweep was interrupted.
        if len(grid) < plan.num_samples or grid.num_terminated + grid.num_errors < len(grid):
            raise KeyboardInterrupt
        failed = sum(result.error is not None for result in grid)
        if failed:
            print(f"{PROG}: {failed} of {len(grid)} trials failed (see MLflow)", flush=True)
        with tempfile.TemporaryDirectory(prefix="tcwae-report-") as scratch:
            report = report_sweep(
                tracking, parent_run_id, scratch, plan.profile.rank_by, results_md=plan.results_md
            )
        # The parent run's description (its first lines in the MLflow UI): the ranked table.
        headline = f"{_headline(plan)}. Best: {report.best_overall['label']}."
        text = sweep_description(headline, report.text, MAX_TAG_LENGTH)
        tracking.set_tags(parent_run_id, {TAG_DESCRIPTION: text})
        version = register_best(
            tracking, plan.space_name, plan.name, report.ranked, plan.profile.rank_by
        )
        if version is not None:
            model = f"models:/{version.name}/{version.version}"
            tracking.set_tags(parent_run_id, {TAG_REGISTERED_MODEL: model})
            print(
                f"{PROG}: registered the best encoder as {model} (alias {BEST_ALIAS})", flush=True
            )
    except BaseException as error:
        tracking.end_run(parent_run_id, error)
        if isinstance(error, KeyboardInterrupt):
            # Trials whose actors Tune tore down never ended their runs (--resume reopens them).
            for run in tracking.child_runs(parent_run_id):
                if run.info.status == "RUNNING":
                    tracking.end_run(run.info.run_id, error)
            raise KeyboardInterrupt(
                f"interrupted; MLflow parent run {parent_run_id} and its unfinished trials were "
                "marked KILLED; run the same command with --resume to continue"
            ) from None
        raise
    tracking.end_run(parent_run_id)
    return parent_run_id, report


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: 0 when the sweep finished and was ranked, 2 on bad input, 1 when it failed."""
    return cli.run_command(PROG, lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    started = time.perf_counter()
    plan = plan_sweep(argv)
    check_sweep_data(plan)
    check_resume_arguments(plan)
    check_restorable(plan)
    cluster.connect(plan.verbose)
    try:
        with cli.exclusive_folder(plan.where.storage, plan.name, f"sweep {plan.name!r}"):
            parent_run_id, report = run_sweep(plan)
    except RuntimeError as error:
        print(f"{PROG}: failed: {error}", file=sys.stderr)
        return 1
    minutes = (time.perf_counter() - started) / 60
    print(f"\n{report.text}\n\nbest: {report.best_overall['label']}")
    print(f"{PROG}: {plan.name} done in {minutes:.1f} min; MLflow parent run {parent_run_id}")
    if plan.results_md:
        print(f"{PROG}: wrote {plan.results_md}")
    print_run_page(PROG, Tracking.at(plan.where.tracking_uri), parent_run_id)
    return 0


if __name__ == "__main__":
    from pipeline.sweep import main as _entry

    sys.exit(_entry())

"""The main job: a Ray Tune search, driven by Optuna, over a data set's search space.

`python pipeline/sweep.py dsprites --profile cpu` (or the same after `ray job submit --`) reads
`search_spaces/dsprites.yaml`, opens one MLflow parent run for the sweep, and runs a `Tuner` whose
trials each launch a Ray Train `TorchTrainer` through `pipeline.train.run_training` (Train inside
Tune): every trial is a complete MLflow child run. When the trials are done, `pipeline.report`
ranks the configurations the paper's way and logs the ranking and figures to the parent run.

`--mode grid` enumerates the file's grids through Optuna's `GridSampler` (the paper's heatmaps);
`--mode optuna` samples the ranges with a multi-objective TPE sampler on the file's `rank_by`
scores. `--resume` continues an interrupted sweep with `Tuner.restore`; a trial's Train run and
MLflow run are named after the Tune trial id, so a resumed trial continues its own checkpoint and
MLflow run instead of starting another.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.model_registry import BEST_ALIAS, register_best
from pipeline.rungs import Decision, SchedulerSpec
from pipeline.search_space import (
    GridDefineByRun,
    OptunaDefineByRun,
    Profile,
    SearchSpaceError,
    grid_points,
    grid_sampler_space,
    load_search_space,
    objectives,
    trial_train_config,
)
from pipeline.tracking import (
    KILLED,
    TAG_STOP_REASON,
    TAG_STOPPED_AT,
    Tracking,
    TrackingError,
    resolve_tracking_uri,
    sqlite_path,
)
from pipeline.train import (
    LaunchError,
    TrainingFailed,
    UsageError,
    absolute_storage,
    local_path,
    make_spec,
    require_writable,
    run_training,
)

MODES = ("grid", "optuna")
TAG_SWEEP = "tcwae.sweep"
TAG_SWEEP_STORAGE = "tcwae.sweep_storage"
TRIALS_DIR = "trials"
TAG_REGISTERED_MODEL = "tcwae.registered_model"
# A trial's own process only waits on its TorchTrainer, whose workers reserve the CPUs and GPUs.
# Tune's default of 1 CPU per trial would halve a 2-core laptop's concurrency, and Tune refuses an
# empty request, so the driver reserves one byte of memory: a real reservation that costs nothing.
TRIAL_DRIVER_RESOURCES = {"memory": 1}


class SweepError(RuntimeError):
    """The sweep cannot start as asked; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class SweepContext:
    """What every trial needs besides its own parameters (passed with `tune.with_parameters`)."""

    profile: Profile
    workers: int
    gpus_per_worker: float
    tracking_uri: str
    experiment: str
    trial_storage: str
    sweep_name: str
    parent_run_id: str
    data_root: str | None
    scheduler: SchedulerSpec | None = None


def run_trial(params: dict[str, Any], context: SweepContext) -> None:
    """The Tune trainable: train one configuration with a TorchTrainer, forward rank-0 reports
    to Tune while it runs, then report the final scores that the searcher ranks."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    config = trial_train_config(context.profile, params)
    trial_id = ray.tune.get_context().get_trial_id()
    spec = make_spec(
        config,
        workers=context.workers,
        use_gpu=context.gpus_per_worker > 0,
        tracking_uri=context.tracking_uri,
        experiment=context.experiment,
        storage=context.trial_storage,
        name=f"{context.sweep_name}-{trial_id}",
        data_root=context.data_root,
        rung_check=context.scheduler.rung_check(config.steps) if context.scheduler else None,
    )
    final = run_training(spec, context.parent_run_id, run_callbacks=[TuneReportCallback()])
    ray.tune.report({key: value for key, value in final.items() if _is_number(value)})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweep.py", description=__doc__.splitlines()[0], exit_on_error=False
    )
    parser.add_argument("dataset", help="a search space: search_spaces/<DATASET>.yaml, or a path")
    parser.add_argument("--profile", default="cpu", help="profile of the search space (cpu)")
    parser.add_argument("--methods", help="comma-separated subset of the profile's methods")
    parser.add_argument("--mode", default="grid", help="grid (the file's grids) or optuna")
    parser.add_argument("--num-samples", type=int, help="optuna mode: trials (profile's default)")
    parser.add_argument("--max-concurrent", type=int, help="trials at once (from the cluster)")
    parser.add_argument("--workers-per-trial", type=int, help="DDP workers per trial (profile)")
    parser.add_argument("--gpus-per-trial", type=float, help="GPUs per trial (profile)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    parser.add_argument("--tracking-uri", help="MLflow URI (MLFLOW_TRACKING_URI, ./mlflow.db)")
    parser.add_argument("--experiment", help="MLflow experiment (default: the data set)")
    parser.add_argument("--storage", help="Ray storage path or URI (TCWAE_STORAGE, ./runs)")
    parser.add_argument("--name", help="sweep name (default: <space>-<profile>-<mode>)")
    parser.add_argument("--data-root", help="data folder (default: $TCWAE_DATA)")
    parser.add_argument("--seed", type=int, default=0, help="the Optuna sampler's seed")
    parser.add_argument(
        "--scheduler",
        help="fifo (every trial trains its full budget) or mo-asha (the profile's scheduler "
        "block: multi-objective successive halving); default: the profile's block, else fifo",
    )
    parser.add_argument(
        "--results-md", help="also write RESULTS.md here: paper Table 1a beside ours (issue 8)"
    )
    return parser


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: everything decided before Ray or MLflow is touched."""

    profile: Profile
    space_name: str
    mode: str
    points: tuple[dict[str, Any], ...]
    num_samples: int
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    max_concurrent: int | None
    tracking_uri: str
    experiment: str
    storage: str
    name: str
    resume: bool
    data_root: str | None
    seed: int
    results_md: str | None = None
    scheduler: SchedulerSpec | None = None  # None: FIFO, every trial trains its full budget

    @property
    def experiment_path(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"


def plan_sweep(argv: Sequence[str] | None) -> SweepPlan:
    """Parse and validate the command line and the search space; raise one clear error."""
    try:
        args = build_parser().parse_args(argv)
    except argparse.ArgumentError as error:
        raise UsageError(str(error)) from None
    if args.mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, got {args.mode!r}")
    space = load_search_space(args.dataset)
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    profile = space.profile(args.profile).select(methods)
    resources = profile.resources
    workers = resources.workers if args.workers_per_trial is None else args.workers_per_trial
    if workers < 1:
        raise UsageError(f"--workers-per-trial must be >= 1, got {workers}")
    gpus_per_worker = resources.gpus_per_worker
    if args.gpus_per_trial is not None:
        if args.gpus_per_trial < 0:
            raise UsageError(f"--gpus-per-trial must be >= 0, got {args.gpus_per_trial}")
        gpus_per_worker = args.gpus_per_trial / workers
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise UsageError(f"--max-concurrent must be >= 1, got {args.max_concurrent}")
    points = tuple(grid_points(profile))
    if args.mode == "grid":
        num_samples = len(points)
        if args.num_samples is not None:
            raise UsageError("--num-samples is for --mode optuna; grid mode runs every grid point")
    else:
        if not profile.searched:
            raise UsageError(
                f"{profile.source}: profile {profile.name!r} searches no parameter; use --mode grid"
            )
        num_samples = profile.num_samples if args.num_samples is None else args.num_samples
        if num_samples < 1:
            raise UsageError(f"--num-samples must be >= 1, got {num_samples}")
    storage = absolute_storage(args.storage or os.environ.get("TCWAE_STORAGE") or "runs")
    local = local_path(storage)
    if local is not None:
        require_writable(local, "Ray storage", "--storage")
    name = args.name or f"{Path(space.source).stem}-{profile.name}-{args.mode}"
    if "/" in name or name in (".", ".."):
        raise UsageError(f"--name must be a folder name without '/', got {name!r}")
    data_root = str(Path(args.data_root).expanduser().resolve()) if args.data_root else None
    scheduler = _chosen_scheduler(profile, args.scheduler)
    results_md = None
    if args.results_md:
        results_path = Path(args.results_md).expanduser().resolve()
        require_writable(results_path.parent, "the folder of --results-md", "--results-md")
        results_md = str(results_path)
    return SweepPlan(
        profile=profile,
        space_name=Path(space.source).stem,
        mode=args.mode,
        points=points,
        num_samples=num_samples,
        workers=workers,
        cpus_per_worker=resources.cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        max_concurrent=args.max_concurrent,
        tracking_uri=resolve_tracking_uri(args.tracking_uri),
        experiment=args.experiment or profile.dataset,
        storage=storage,
        name=name,
        resume=args.resume,
        data_root=data_root,
        seed=args.seed,
        results_md=results_md,
        scheduler=scheduler,
    )


def _chosen_scheduler(profile: Profile, flag: str | None) -> SchedulerSpec | None:
    """The successive-halving spec the sweep runs, or None for FIFO: `--scheduler` picks
    between FIFO and the profile's `scheduler:` block, which holds the rungs."""
    block = profile.scheduler if profile.scheduler and profile.scheduler.type == "mo-asha" else None
    if flag is None:
        return block
    if flag == "fifo":
        return None
    if flag != "mo-asha":
        raise UsageError(f"--scheduler must be fifo or mo-asha, got {flag!r}")
    if block is None:
        raise UsageError(
            f"--scheduler mo-asha: {profile.source}: profile {profile.name!r} has no "
            "`scheduler: {type: mo-asha, grace: ...}` block; add one or drop --scheduler"
        )
    return block


def cluster_capacity() -> tuple[dict[str, float], bool]:
    """The most CPUs and GPUs the cluster can offer: what it has now, or, on an autoscaling
    cluster, what its node types add up to (Ray Train checks its workers the same way); and
    whether it may grow beyond that unannounced.

    The autoscaler of the cluster launcher (AWS, GCP) and of the fake local provider publishes no
    limits, so a joined cluster whose head has no CPUs looks empty although nodes will come; Ray
    Train then skips its check and lets the autoscaler decide. A Ray instance that this process
    started is fixed."""
    import ray
    from ray._private.state import state

    now = ray.cluster_resources()
    ceiling = state.get_max_resources_from_cluster_config()
    may_grow = ceiling is None and not ray._private.worker.global_worker.node.head
    ceiling = ceiling or {}
    most = {key: max(float(now.get(key, 0)), float(ceiling.get(key, 0))) for key in ("CPU", "GPU")}
    return most, may_grow


def concurrent_trials(plan: SweepPlan, capacity: dict[str, float], may_grow: bool = False) -> int:
    """How many trials fit at once; an impossible request is a SweepError naming the numbers.
    On a cluster that `may_grow`, a trial that does not fit yet waits for the autoscaler, so
    every trial may start (up to --max-concurrent) and its workers wait for their nodes."""
    cpus = plan.workers * plan.cpus_per_worker
    gpus = plan.workers * plan.gpus_per_worker
    if cpus > capacity["CPU"] or gpus > capacity["GPU"]:
        if may_grow:
            return min(plan.num_samples, plan.max_concurrent or plan.num_samples)
        raise SweepError(
            f"a trial needs {cpus:g} CPUs and {gpus:g} GPUs ({plan.workers} workers) but the "
            f"cluster has at most {capacity['CPU']:g} CPUs and {capacity['GPU']:g} GPUs; "
            "lower --workers-per-trial / --gpus-per-trial or use a bigger cluster"
        )
    fits = math.floor(capacity["CPU"] / cpus) if cpus else plan.num_samples
    if gpus:
        fits = min(fits, math.floor(capacity["GPU"] / gpus))
    fits = max(1, min(fits, plan.num_samples))
    return fits if plan.max_concurrent is None else min(fits, plan.max_concurrent)


def _search_algorithm(plan: SweepPlan) -> Any:
    import optuna

    from pipeline.scheduler import PruningOptunaSearch

    metrics, modes = objectives(plan.profile)
    if plan.mode == "grid":
        space = GridDefineByRun(plan.points)
        sampler = optuna.samplers.GridSampler(grid_sampler_space(plan.points), seed=plan.seed)
    else:
        space = OptunaDefineByRun.from_profile(plan.profile)
        sampler = optuna.samplers.TPESampler(seed=plan.seed)
    return PruningOptunaSearch(space=space, metric=metrics, mode=modes, sampler=sampler)


def _parent_run(plan: SweepPlan, tracking: Tracking) -> str:
    """The sweep's MLflow parent run: reopened on --resume, else a new one."""
    experiment_id = tracking.experiment_id(plan.experiment)
    tags = {TAG_SWEEP: plan.name, TAG_SWEEP_STORAGE: plan.storage}
    if plan.resume:
        runs = tracking.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{TAG_SWEEP}` = '{plan.name}' "
            f"and tags.`{TAG_SWEEP_STORAGE}` = '{plan.storage}'",
            order_by=["attributes.start_time DESC"],
        )
        if runs:
            tracking.reopen_run(runs[0].info.run_id)
            return runs[0].info.run_id
    params = {
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
    run_id = tracking.start_parent_run(experiment_id, plan.name, params=params, tags=tags)
    tracking.log_config(run_id, plan.profile.to_dict())
    return run_id


def _check_restorable(plan: SweepPlan) -> None:
    """--resume needs an earlier sweep of that name; a new sweep must not overwrite one."""
    from ray import tune

    exists = tune.Tuner.can_restore(plan.experiment_path)
    if plan.resume and not exists:
        raise SweepError(
            f"--resume: no sweep {plan.name!r} to continue in {plan.storage}; "
            "drop --resume to start it"
        )
    if not plan.resume and exists:
        raise SweepError(
            f"sweep {plan.name!r} already exists in {plan.storage}; pass --resume to continue it "
            "or --name to start another"
        )


def budget_steps(plan: SweepPlan) -> int:
    """The training steps of a trial that is never stopped (the profile's `steps`)."""
    return trial_train_config(plan.profile, plan.points[0]).steps


@dataclasses.dataclass(frozen=True)
class StopMarker:
    """Marks a trial that successive halving stopped: its MLflow child run (complete up to the
    rung, whose `rung/<score>` metrics rank 0 logged) ends KILLED with the rung and the reason.
    Plain data, so that Tune can save it with the experiment and call it after --resume."""

    context: SweepContext

    def __call__(self, trial_id: str, decision: Decision) -> None:
        tracking = Tracking.at(self.context.tracking_uri)
        run = tracking.find_run(
            tracking.experiment_id(self.context.experiment),
            self.context.trial_storage,
            f"{self.context.sweep_name}-{trial_id}",
        )
        if run is None:
            return
        run_id = run.info.run_id
        tags = {TAG_STOPPED_AT: decision.step, TAG_STOP_REASON: decision.reason()}
        tracking.set_tags(run_id, tags)
        tracking.client.set_terminated(run_id, KILLED)


def _tuner(plan: SweepPlan, context: SweepContext, max_concurrent: int) -> Any:
    from ray import tune

    from pipeline.scheduler import MultiObjectiveAsha, SchedulerCallback

    # The searcher's scores arrive only in a trial's last report; the reports before it carry
    # the training losses that the TorchTrainer forwards, which Tune would otherwise reject.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=context), TRIAL_DRIVER_RESOURCES
    )
    scheduler, callbacks = None, []
    if plan.scheduler is not None:
        scheduler = MultiObjectiveAsha(plan.scheduler, budget_steps(plan))
        callbacks.append(SchedulerCallback(scheduler, StopMarker(context)))
    if plan.resume:
        # The callbacks (and with them the scheduler's rungs) come back from the checkpoint.
        return tune.Tuner.restore(
            plan.experiment_path,
            trainable,
            resume_unfinished=True,
            resume_errored=False,
        )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=_search_algorithm(plan),
            scheduler=scheduler,
            num_samples=plan.num_samples,
            max_concurrent_trials=max_concurrent,
        ),
        run_config=tune.RunConfig(
            name=plan.name, storage_path=plan.storage, callbacks=callbacks, verbose=1
        ),
    )


def run_sweep(plan: SweepPlan) -> tuple[str, Any]:
    """Run (or resume) the sweep on the connected Ray cluster; returns (parent run id, report)."""
    from pipeline.report import report_sweep

    max_concurrent = concurrent_trials(plan, *cluster_capacity())
    _check_restorable(plan)
    tracking = Tracking.at(plan.tracking_uri)
    parent_run_id = _parent_run(plan, tracking)
    context = SweepContext(
        profile=plan.profile,
        workers=plan.workers,
        gpus_per_worker=plan.gpus_per_worker,
        tracking_uri=plan.tracking_uri,
        experiment=plan.experiment,
        trial_storage=f"{plan.storage.rstrip('/')}/{plan.name}-{TRIALS_DIR}",
        sweep_name=plan.name,
        parent_run_id=parent_run_id,
        data_root=plan.data_root,
        scheduler=plan.scheduler,
    )
    print(
        f"sweep: {plan.name}: {plan.num_samples} trials ({plan.mode} mode), "
        f"{max_concurrent} at a time; MLflow parent run {parent_run_id}",
        flush=True,
    )
    try:
        grid = _tuner(plan, context, max_concurrent).fit()
        failed = [result for result in grid if result.error is not None]
        if failed:
            print(f"sweep: {len(failed)} of {len(grid)} trials failed (see MLflow)", flush=True)
        with tempfile.TemporaryDirectory(prefix="tcwae-report-") as scratch:
            report = report_sweep(
                tracking.client,
                parent_run_id,
                scratch,
                plan.profile.rank_by,
                results_md=plan.results_md,
            )
        version = register_best(
            tracking.client, plan.space_name, plan.name, report.ranked, plan.profile.rank_by
        )
        if version is not None:
            model = f"models:/{version.name}/{version.version}"
            tracking.set_tags(parent_run_id, {TAG_REGISTERED_MODEL: model})
            print(f"sweep: registered the best encoder as {model} (alias {BEST_ALIAS})", flush=True)
    except BaseException as error:
        tracking.end_run(parent_run_id, error)
        raise
    tracking.end_run(parent_run_id)
    return parent_run_id, report


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: 0 when the sweep finished and was ranked, 2 on bad input, 1 when it failed."""
    started = time.perf_counter()
    try:
        plan = plan_sweep(argv)
    except SystemExit as exit_request:  # --help
        return int(exit_request.code or 0)
    except (UsageError, SearchSpaceError, LaunchError, TrackingError) as error:
        print(f"sweep: {error}", file=sys.stderr)
        return 2
    import ray

    if not ray.is_initialized():
        ray.init()  # joins RAY_ADDRESS (a `ray job submit` or a cluster) when set, else local
    try:
        parent_run_id, report = run_sweep(plan)
    except SweepError as error:
        print(f"sweep: {error}", file=sys.stderr)
        return 2
    except (TrainingFailed, RuntimeError) as error:
        print(f"sweep: failed: {error}", file=sys.stderr)
        return 1
    minutes = (time.perf_counter() - started) / 60
    print(f"\n{report.text}\n\nbest: {report.best_overall['label']}")
    print(f"sweep: {plan.name} done in {minutes:.1f} min; MLflow parent run {parent_run_id}")
    if plan.results_md:
        print(f"sweep: wrote {plan.results_md}")
    if sqlite_path(plan.tracking_uri) is not None:
        print(f"sweep: open the results with: mlflow ui --backend-store-uri {plan.tracking_uri}")
    return 0


if __name__ == "__main__":
    from pipeline.sweep import main as _main

    sys.exit(_main())

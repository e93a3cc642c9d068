"""Train one model: the driver that checks, launches and records one run.

    python pipeline/train.py dsprites --method tcwae_mws --beta 10 --gamma 10 --workers 2

The command line becomes one frozen `RunSpec`. Everything is checked before anything starts
(flags, storage, tracking store, Ray cluster, data): a mistake is one line on stderr and exit code
2. Then the driver opens the MLflow run (or reopens an interrupted one with the same storage and
name), launches the workers (`pipeline/worker.py`, each handed one frozen `WorkerTask`) with a
Ray Train `TorchTrainer` or, with `--workers 0`, in this process, prints rank 0's progress lines,
and ends the run FINISHED or FAILED. When a worker dies, Ray Train restarts the worker group from
the last checkpoint in the same MLflow run; the same command run again resumes an interrupted run.

The sweep (`pipeline/sweep.py`) calls `run_training(spec, [TuneReportCallback()])` inside each
Tune trial, with the sweep's MLflow run as the spec's `parent_run_id`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline import cluster
from pipeline.cli import (
    ArgumentParser,
    add_location_flags,
    add_verbose_flag,
    check_folder_name,
    local_path,
    require_writable,
    resolve_data_root,
    resolve_storage,
    run_command,
)
from pipeline.rungs import RungCheck
from pipeline.shared_data import SharedData, share_datasets
from pipeline.tracking import (
    TAG_KIND,
    TAG_NON_FINITE,
    TAG_RUN_NAME,
    TAG_STORAGE,
    Tracking,
    describe_error,
    runtime_tags,
)
from pipeline.tracking_store import check_tracking_uri, resolve_tracking_uri, sqlite_path
from pipeline.worker import (
    CHECKPOINTS_TO_KEEP,
    SigkillOnce,
    WorkerTask,
    train_in_process,
    train_loop_per_worker,
)
from tcwae.config import (
    COSTS,
    DATA_SOURCES,
    EVAL_PROFILES,
    TrainConfig,
    load_yaml_mapping,
)
from tcwae.errors import UserError
from tcwae.methods import METHODS, all_hyperparameters
from tcwae.metrics import PAPER_SCORES

log = logging.getLogger("pipeline.train")

PROG = "train"
DEFAULT_WORKERS = 1
DEFAULT_MAX_FAILURES = 3
IN_PROCESS_DIR = "in_process"
WALL_TIME_METRIC = "wall_time_s"


class TrainingFailed(RuntimeError):
    """Training or evaluation failed; the MLflow run was ended FAILED with the error."""


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run: what to train (`config`, parsed once) and where and how to run and
    record it, every location already resolved (absolute, or a URI).

    `storage` is the Ray Train storage and `name` the run's folder in it; together they identify
    the run for resuming. `parent_run_id` makes the MLflow run a sweep's child run;
    `rung_check` (a successive-halving sweep's) has rank 0 add rung scores at its rung steps.
    `shared_data`: the data sets a sweep put in Ray's object store once for all its trials (a run
    with several workers and none given puts its own).
    """

    config: TrainConfig
    tracking_uri: str
    experiment: str
    storage: str
    name: str
    workers: int = DEFAULT_WORKERS
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    data_root: str | None = None
    max_failures: int = DEFAULT_MAX_FAILURES
    parent_run_id: str | None = None
    verbose: bool = False
    rung_check: RungCheck | None = None
    shared_data: SharedData | None = None

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0


@dataclasses.dataclass(frozen=True)
class RunResult:
    """A finished run: its MLflow run id and its final metrics (scores, last losses, step)."""

    run_id: str
    metrics: dict[str, float]


def default_run_name(config: TrainConfig) -> str:
    """`<dataset>-<method>-<hash of the config>`: the same command names the same run, so
    re-running it resumes an interrupted run instead of starting another."""
    digest = hashlib.sha1(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()
    return f"{config.dataset}-{config.method}-{digest[:10]}"


def make_spec(
    config: TrainConfig,
    *,
    workers: int = DEFAULT_WORKERS,
    use_gpu: bool = False,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    storage: str | None = None,
    name: str | None = None,
    data_root: str | None = None,
    max_failures: int = DEFAULT_MAX_FAILURES,
    verbose: bool = False,
    rung_check: RungCheck | None = None,
) -> RunSpec:
    """A RunSpec from command-line values, defaults resolved: tracking URI (see
    `tracking_store.resolve_tracking_uri`), experiment = data set, storage (`cli.resolve_storage`),
    name = `default_run_name`."""
    if workers < 0:
        raise UserError(f"--workers must be >= 0 (0 trains in this process), got {workers}")
    if max_failures < -1:
        raise UserError(f"--max-failures must be >= -1 (-1: retry forever), got {max_failures}")
    from tcwae.data import DATASETS, SEQUENCE_DATASETS
    from tcwae.methods import method_class, methods_for

    if config.dataset not in DATASETS:
        raise UserError(f"unknown data set {config.dataset!r}; choose one of {', '.join(DATASETS)}")
    sequences = config.dataset in SEQUENCE_DATASETS
    if method_class(config.method).sequences != sequences:
        raise UserError(
            f"--method {config.method} does not train on {config.dataset}; choose one of "
            f"{', '.join(methods_for(sequences))}"
        )
    return RunSpec(
        config=config,
        tracking_uri=resolve_tracking_uri(tracking_uri),
        experiment=experiment or config.dataset,
        storage=resolve_storage(storage),
        name=default_run_name(config) if name is None else check_folder_name(name),
        workers=workers,
        gpus_per_worker=1.0 if use_gpu else 0.0,
        data_root=resolve_data_root(data_root),
        max_failures=max_failures,
        verbose=verbose,
        rung_check=rung_check,
    )


# Command line ---------------------------------------------------------------------------------


def _hyperparameter_flags() -> dict[str, tuple[str, str]]:
    """One flag per hyper-parameter the methods declare; its help says what each method that
    reads it means by it. A method given one it does not read is refused (exit 2)."""
    return {
        name: (
            f"--{name.replace('_', '-')}",
            "; ".join(f"{m}: {p.meaning} (default {p.default:g})" for m, p in declarations),
        )
        for name, declarations in all_hyperparameters().items()
    }


_CONFIG_FLAGS = {
    "method": ("--method", f"one of {', '.join(METHODS)}"),
    **_hyperparameter_flags(),
    "cost": ("--cost", f"reconstruction cost, one of {', '.join(COSTS)}"),
    "steps": ("--steps", "training iterations"),
    "batch_size": ("--batch-size", "global batch size (split over workers)"),
    "dz": ("--dz", "latent dimensions (default: the method's; 2 per factor for (factor_)qvae)"),
    "seed": ("--seed", "random seed"),
    "eval_profile": ("--eval-profile", f"metric sizes, one of {', '.join(EVAL_PROFILES)}"),
    "mig_every": ("--mig-every", "log MIG every this many steps (0 = only at the end)"),
    "data_source": ("--data-source", f"one of {', '.join(DATA_SOURCES)}"),
}


def build_parser() -> ArgumentParser:
    from tcwae.data import DATASETS

    parser = ArgumentParser(
        prog="train.py",
        description="Train one TCWAE (or baseline) model with Ray Train and record it in MLflow.",
    )
    parser.add_argument("dataset", help=f"data set: {', '.join(DATASETS)}")
    for key, (flag, text) in _CONFIG_FLAGS.items():
        parser.add_argument(flag, dest=key, metavar=key.upper(), help=text)
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="Ray Train workers (DDP ranks); 0 trains in this process without Ray",
    )
    parser.add_argument("--use-gpu", action="store_true", help="one GPU per worker (NCCL)")
    add_location_flags(parser, "--tracking-uri", "--experiment", "--storage", "--name")
    parser.add_argument("--config", help="YAML file of config keys; flags override it")
    add_location_flags(parser, "--data-root")
    parser.add_argument(
        "--max-failures",
        type=int,
        default=DEFAULT_MAX_FAILURES,
        help="worker-group restarts from the last checkpoint before the run fails",
    )
    add_verbose_flag(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> RunSpec:
    """Parse and validate a command line into a RunSpec; raises UserError."""
    args = build_parser().parse_args(argv)
    values: dict[str, Any] = {}
    if args.config:
        values = load_yaml_mapping(args.config)
        TrainConfig.from_dict(values, where=args.config)
    flags = {key: getattr(args, key) for key in _CONFIG_FLAGS if getattr(args, key) is not None}
    values.update(flags)
    values["dataset"] = args.dataset
    config = TrainConfig.from_dict(values, where="command line")
    return make_spec(
        config,
        workers=args.workers,
        use_gpu=args.use_gpu,
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        storage=args.storage,
        name=args.name,
        data_root=args.data_root,
        max_failures=args.max_failures,
        verbose=args.verbose,
    )


# Checks before launching -----------------------------------------------------------------------


def check_launch(spec: RunSpec) -> None:
    """Raise UserError when the run cannot start: storage or tracking store unusable, an
    explicitly named Ray cluster not answering, more workers than the CPUs (or GPUs), a GPU
    asked for where there is none, data missing or corrupt. Creates nothing but the data set's
    cache when it has none yet.

    Resources are the Ray cluster's when connected (or RAY_ADDRESS is set), otherwise this
    machine's."""
    storage = local_path(spec.storage)
    if spec.workers == 0:
        _in_process_folder(spec)
    if storage is not None:
        require_writable(storage, "storage", "--storage")
    check_tracking_uri(spec.tracking_uri)
    if spec.workers >= 1 and os.environ.get(cluster.ADDRESS_VARIABLE):
        cluster.connect(spec.verbose)
    _check_resources(spec)
    check_data(spec)


def _check_resources(spec: RunSpec) -> None:
    cpus, gpus, where = cluster.available_resources()
    if spec.use_gpu and gpus < 1:
        raise UserError(f"--use-gpu was given but {where} has no GPU; drop --use-gpu")
    needed_gpus = spec.workers * spec.gpus_per_worker
    if needed_gpus > gpus:
        raise UserError(
            f"--workers {spec.workers} with --use-gpu needs {needed_gpus:g} GPUs but {where} has "
            f"{gpus:g}; use --workers {int(gpus / spec.gpus_per_worker)} or fewer"
        )
    if spec.workers * spec.cpus_per_worker > cpus:
        raise UserError(
            f"--workers {spec.workers} is more than the {cpus:g} CPUs of {where}; use --workers "
            f"{int(cpus / spec.cpus_per_worker)} or fewer (each worker takes "
            f"{spec.cpus_per_worker:g} CPU), or connect to a larger cluster with RAY_ADDRESS"
        )


def check_data(spec: RunSpec) -> None:
    """The data set loads (a DatasetError, which is a UserError, otherwise); see
    `tcwae.data.check_dataset`."""
    from tcwae.data import check_dataset

    check_dataset(spec.config.dataset, spec.data_root, spec.config.data_source)


# The run ---------------------------------------------------------------------------------------


def open_run(tracking: Tracking, spec: RunSpec) -> tuple[str, bool]:
    """The MLflow run for `spec`: an interrupted one for the same storage and name is reopened;
    returns (run id, finished) where finished means the run already completed earlier."""
    experiment_id = tracking.experiment_id(spec.experiment)
    existing = tracking.find_run(experiment_id, spec.storage, spec.name)
    config = {key: str(value) for key, value in spec.config.to_dict().items()}
    if existing is not None:
        run_id = existing.info.run_id
        logged = tracking.params(run_id)
        changed = sorted(key for key in config if key in logged and logged[key] != config[key])
        if changed:
            key = changed[0]
            raise UserError(
                f"run {spec.name!r} in {spec.storage} (MLflow run {run_id}) was trained with "
                f"{key}={logged[key]} but this command has {key}={config[key]}; "
                "pass a new --name to train a different model"
            )
        if existing.info.status == "FINISHED":
            return run_id, True
        tracking.reopen_run(run_id)
        return run_id, False
    tags = {
        TAG_KIND: "train",
        TAG_STORAGE: spec.storage,
        TAG_RUN_NAME: spec.name,
        "workers": str(spec.workers),
        "use_gpu": str(spec.use_gpu),
        **runtime_tags(),
    }
    run_id = tracking.start_run(
        experiment_id, spec.name, params=config, tags=tags, parent_run_id=spec.parent_run_id
    )
    tracking.log_config(run_id, spec.config.to_dict())
    return run_id, False


def run_training(
    spec: RunSpec,
    callbacks: Sequence[Any] = (),
    *,
    show_progress: bool = True,
    fault: SigkillOnce | None = None,
) -> RunResult:
    """Train `spec` (in this process for `workers == 0`, else with a Ray Train TorchTrainer on
    the connected Ray cluster) and record it in its MLflow run.

    `callbacks` go to the TorchTrainer's `RunConfig` (the sweep passes `TuneReportCallback()`);
    `show_progress` prints rank 0's progress lines here (a sweep prints them from Tune's results
    instead); `fault` is for tests only. Raises UserError when a run with the same storage and
    name has another configuration, TrainingFailed when training fails.
    """
    tracking = Tracking.at(spec.tracking_uri)
    run_id, finished = open_run(tracking, spec)
    if finished:
        log.warning(
            "run %r in %s already finished (MLflow run %s); returning its scores. Pass a new "
            "--name to train again.",
            spec.name,
            spec.storage,
            run_id,
        )
        return RunResult(run_id, tracking.latest_metrics(run_id))
    shared = spec.shared_data
    if shared is None and spec.workers > 1:
        shared = share_datasets([spec.config], spec.data_root)
    task = WorkerTask(
        config=spec.config,
        tracking_uri=spec.tracking_uri,
        run_id=run_id,
        data_root=spec.data_root,
        use_gpu=spec.use_gpu,
        fault=fault,
        rung_check=spec.rung_check,
        shared_data=shared,
        launched_at=time.time(),
    )
    started = time.perf_counter()
    try:
        if spec.workers == 0:
            final = train_in_process(task, _in_process_folder(spec), f"{PROG}: ")
        else:
            final = _fit(spec, task, callbacks, show_progress)
        wall_time = {WALL_TIME_METRIC: time.perf_counter() - started}
        tracking.log_metrics(run_id, wall_time, spec.config.steps)
    except BaseException as error:
        tracking.end_run(run_id, error)
        if isinstance(error, KeyboardInterrupt):
            raise
        raise TrainingFailed(
            f"run {spec.name!r} failed (MLflow run {run_id} marked FAILED): {describe_error(error)}"
        ) from error
    tracking.end_run(run_id)
    numbers = {key: float(value) for key, value in final.items() if _is_number(value)}
    return RunResult(run_id, numbers)


def record_failed_run(spec: RunSpec, error: BaseException) -> str:
    """Record a run that failed before it could start (a sweep's trial whose data cannot be
    loaded, say) as a FAILED MLflow run with the error; returns its id."""
    tracking = Tracking.at(spec.tracking_uri)
    run_id, _ = open_run(tracking, spec)
    tracking.end_run(run_id, error)
    return run_id


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _in_process_folder(spec: RunSpec) -> Path:
    local = local_path(spec.storage)
    if local is None:
        raise UserError(f"--workers 0 needs a local --storage directory, got {spec.storage}")
    return local / spec.name / IN_PROCESS_DIR


def _fit(spec: RunSpec, task: WorkerTask, callbacks: Sequence[Any], show_progress: bool) -> dict:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = {"CPU": spec.cpus_per_worker}
    if spec.use_gpu:
        resources["GPU"] = spec.gpus_per_worker
    progress = cluster.printed_lines(f"{PROG}: ") if show_progress else contextlib.nullcontext()
    with progress as queue:
        trainer = TorchTrainer(
            functools.partial(train_loop_per_worker, dataclasses.replace(task, progress=queue)),
            scaling_config=ScalingConfig(
                num_workers=spec.workers, use_gpu=spec.use_gpu, resources_per_worker=resources
            ),
            run_config=RunConfig(
                name=spec.name,
                storage_path=spec.storage,
                checkpoint_config=CheckpointConfig(num_to_keep=CHECKPOINTS_TO_KEEP),
                failure_config=FailureConfig(max_failures=spec.max_failures),
                callbacks=list(callbacks),
            ),
        )
        result = trainer.fit()
    # Checked first: a run that diverged before its first checkpoint has no metrics (None).
    non_finite = Tracking.at(spec.tracking_uri).tags(task.run_id).get(TAG_NON_FINITE)
    if non_finite is not None:
        from tcwae.trainer import NonFiniteLossError

        raise NonFiniteLossError(non_finite)
    return dict(result.metrics)


def print_run_page(prog: str, tracking: Tracking, run_id: str) -> None:
    """The last lines of a command: how to open the MLflow UI and the run's own page in it."""
    if sqlite_path(tracking.tracking_uri) is not None:
        print(f"{prog}: browse with: mlflow ui --backend-store-uri {tracking.tracking_uri}")
    print(f"{prog}: MLflow run page: {tracking.run_page(run_id)}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: 0 on success, 2 on bad input (nothing started), 1 on a failed run."""
    return run_command(PROG, lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    started = time.perf_counter()
    spec = parse_args(argv)
    check_launch(spec)
    if spec.workers >= 1:
        cluster.connect(spec.verbose)
    try:
        result = run_training(spec)
    except TrainingFailed as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the MLflow run was marked KILLED", file=sys.stderr)
        return 130
    scores = ", ".join(
        f"{key} {result.metrics[key]:.4g}" for key in PAPER_SCORES if key in result.metrics
    )
    seconds = time.perf_counter() - started
    print(f"{PROG}: {spec.name} finished in {seconds:.0f} s: {scores}")
    print_run_page(PROG, Tracking.at(spec.tracking_uri), result.run_id)
    return 0


if __name__ == "__main__":
    from pipeline.train import main as _entry  # run the importable module, not __main__ copies

    sys.exit(_entry())

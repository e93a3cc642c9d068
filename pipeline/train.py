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
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline import cluster
from pipeline.cli import (
    exclusive_folder,
    local_path,
    require_writable,
    run_command,
)
from pipeline.run_spec import RunResult, RunSpec, parse_args
from pipeline.shared_data import share_datasets
from pipeline.tracking import (
    TAG_KIND,
    TAG_NON_FINITE,
    TAG_RUN_NAME,
    TAG_STORAGE,
    Tracking,
    describe_error,
    runtime_tags,
)
from pipeline.tracking_store import check_tracking_uri, sqlite_path
from pipeline.tracking_ui import UNSET, changed_params
from pipeline.worker import (
    CHECKPOINTS_TO_KEEP,
    SigkillOnce,
    WorkerTask,
    train_in_process,
    train_loop_per_worker,
)
from tcwae.errors import UserError
from tcwae.metrics import PAPER_SCORES

log = logging.getLogger("pipeline.train")

PROG = "train"
IN_PROCESS_DIR = "in_process"
WALL_TIME_METRIC = "wall_time_s"


class TrainingFailed(RuntimeError):
    """Training or evaluation failed; the MLflow run was ended FAILED with the error."""


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
    """The data set loads (a DatasetError, which is a UserError, otherwise; see
    `tcwae.data.check_dataset`) and the batch fits it and this machine's memory."""
    from tcwae.data import check_dataset

    examples = check_dataset(spec.config.dataset, spec.data_root, spec.config.data_source)
    check_batch_size(spec.config.batch_size, examples, max(spec.workers, 1))


# What one image of a batch holds at least while it trains: the encoder's first and the decoder's
# last feature maps (32 channels of 32 x 32) kept for the backward pass, at 2 bytes (bf16) a value.
MIN_TRAINING_BYTES_PER_IMAGE = 2 * 32 * 32 * 32 * 2


def check_batch_size(batch_size: int, examples: int, workers: int) -> None:
    """Refuse a batch larger than the data set, or one whose share of a worker cannot fit this
    machine's memory even at the lower bound MIN_TRAINING_BYTES_PER_IMAGE (it would die of
    memory after start-up, with a FAILED run)."""
    if batch_size > examples:
        raise UserError(
            f"--batch-size {batch_size} is larger than the data set ({examples} examples); "
            f"use --batch-size {examples} or less"
        )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    needed = batch_size // workers * MIN_TRAINING_BYTES_PER_IMAGE
    if needed > memory:
        fits = memory // MIN_TRAINING_BYTES_PER_IMAGE * workers
        raise UserError(
            f"--batch-size {batch_size} needs at least {needed / 2**30:.0f} GiB of memory a "
            f"worker but this machine has {memory / 2**30:.0f} GiB; use --batch-size {fits} "
            "or less (or more --workers)"
        )


# The run ---------------------------------------------------------------------------------------


def open_run(tracking: Tracking, spec: RunSpec) -> tuple[str, bool]:
    """The MLflow run for `spec`: an interrupted one for the same storage and name is reopened;
    returns (run id, finished) where finished means the run already completed earlier."""
    experiment_id = tracking.experiment_id(spec.experiment)
    existing = tracking.find_run(experiment_id, spec.storage, spec.name)
    config = spec.config.to_dict()
    if existing is not None:
        run_id = existing.info.run_id
        logged = tracking.params(run_id)
        changed = changed_params(logged, config)
        if changed:
            key = changed[0]
            raise UserError(
                f"run {spec.name!r} in {spec.storage} (MLflow run {run_id}) was trained with "
                f"{key}={logged.get(key, UNSET)} but this command has {key}={config[key]}; "
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
    try:
        tracking.log_config(run_id, spec.config.to_dict())
    except BaseException as error:  # Ctrl-C or SIGTERM here must not leave the run RUNNING
        tracking.end_run(run_id, error)
        raise
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
    started = time.perf_counter()
    try:
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
    storage = local_path(spec.storage)
    run_folder = None if storage is None else storage / spec.name
    try:
        with exclusive_folder(run_folder, f"run {spec.name!r} in {spec.storage}"):
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

"""Train one model: the driver that checks, launches and records one run.

    python pipeline/train.py dsprites --method tcwae_mws --beta 10 --gamma 10 --workers 2

The command line becomes one `RunSpec` (a sweep's trial brings its own), checked before anything
starts (a mistake is one line and exit code 2). The driver opens the MLflow run (or reopens an
interrupted one of the same storage and name), hands the spec to the workers (`pipeline/worker.py`)
of a Ray Train `TorchTrainer` or, with `--workers 0`, of this process, and ends the run FINISHED
or FAILED. Ray Train restarts a dead worker group from the last checkpoint in the same run.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline import cluster
from pipeline.cli import exclusive_folder, local_path, require_writable, run_command
from pipeline.run_spec import RunResult, RunSpec, parse_args, share_datasets
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


def check_launch(spec: RunSpec) -> None:
    """Raise UserError when the run cannot start (storage, tracking store, a named Ray cluster,
    the CPUs and GPUs of that cluster or this machine, data); creates nothing but a data cache."""
    storage = local_path(spec.where.storage)
    if spec.resources.workers == 0:
        _in_process_folder(spec)
    if storage is not None:
        require_writable(storage, "storage", "--storage")
    check_tracking_uri(spec.where.tracking_uri)
    if spec.resources.workers >= 1 and os.environ.get(cluster.ADDRESS_VARIABLE):
        cluster.connect(spec.verbose)
    asked = spec.resources
    cpus, gpus, where = cluster.available_resources()
    if asked.use_gpu and gpus < 1:
        raise UserError(f"--use-gpu was given but {where} has no GPU; drop --use-gpu")
    needed_gpus = asked.workers * asked.gpus_per_worker
    if needed_gpus > gpus:
        raise UserError(
            f"--workers {asked.workers} with --use-gpu needs {needed_gpus:g} GPUs but {where} has "
            f"{gpus:g}; use --workers {int(gpus / asked.gpus_per_worker)} or fewer"
        )
    if asked.workers * asked.cpus_per_worker > cpus:
        raise UserError(
            f"--workers {asked.workers} is more than the {cpus:g} CPUs of {where}; use --workers "
            f"{int(cpus / asked.cpus_per_worker)} or fewer (each worker takes "
            f"{asked.cpus_per_worker:g} CPU), or connect to a larger cluster with RAY_ADDRESS"
        )
    check_data(spec)


def check_data(spec: RunSpec) -> None:
    """The data set loads (else a DatasetError, a UserError) and the batch fits it and memory."""
    from tcwae.data import check_dataset

    config = spec.config
    examples = check_dataset(config.dataset, spec.where.data_root, config.data_source)
    check_batch_size(config.batch_size, examples, max(spec.resources.workers, 1))


# What one image of a batch holds at least while it trains: the encoder's first and the decoder's
# last feature maps (32 channels of 32 x 32) kept for the backward pass, at 2 bytes (bf16) a value.
MIN_TRAINING_BYTES_PER_IMAGE = 2 * 32 * 32 * 32 * 2


def check_batch_size(batch_size: int, examples: int, workers: int) -> None:
    """Refuse a batch larger than the data set, or whose share of a worker cannot fit this
    machine's memory even at MIN_TRAINING_BYTES_PER_IMAGE (it would fail after start-up)."""
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


def open_run(tracking: Tracking, spec: RunSpec) -> tuple[str, bool]:
    """(run id, finished earlier): the MLflow run of `spec`'s storage and name, else a new one."""
    where, name = spec.where, spec.identity.name
    experiment_id = tracking.experiment_id(where.experiment)
    existing = tracking.find_run(experiment_id, where.storage, name)
    config = spec.config.to_dict()
    if existing is not None:
        run_id = existing.info.run_id
        logged = tracking.params(run_id)
        changed = changed_params(logged, config)
        if changed:
            key = changed[0]
            raise UserError(
                f"run {name!r} in {where.storage} (MLflow run {run_id}) was trained with "
                f"{key}={logged.get(key, UNSET)} but this command has {key}={config[key]}; "
                "pass a new --name to train a different model"
            )
        if existing.info.status == "FINISHED":
            return run_id, True
        tracking.reopen_run(run_id)
        return run_id, False
    tags = {
        TAG_KIND: "train",
        TAG_STORAGE: where.storage,
        TAG_RUN_NAME: name,
        "workers": str(spec.resources.workers),
        "use_gpu": str(spec.resources.use_gpu),
        **runtime_tags(),
    }
    parent = spec.identity.parent_run_id
    run_id = tracking.start_run(experiment_id, name, config, tags, parent_run_id=parent)
    try:
        tracking.log_config(run_id, config)
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
    """Train `spec` (in this process for no workers, else with a TorchTrainer whose RunConfig
    gets `callbacks`) and record it in its MLflow run; `show_progress` prints rank 0's lines here.
    Raises UserError when the run of that storage and name had another config, TrainingFailed."""
    tracking = Tracking.at(spec.where.tracking_uri)
    name, storage = spec.identity.name, spec.where.storage
    run_id, finished = open_run(tracking, spec)
    if finished:
        log.warning(
            f"run {name!r} in {storage} already finished (MLflow run {run_id}); returning its "
            "scores. Pass a new --name to train again."
        )
        return RunResult(run_id, tracking.latest_metrics(run_id))
    started = time.perf_counter()
    try:
        where = spec.where
        if where.shared_data is None and spec.resources.workers > 1:
            where = replace(where, shared_data=share_datasets([spec.config], where.data_root))
        identity = replace(spec.identity, run_id=run_id, launched_at=time.time())
        spec = replace(spec, where=where, identity=identity, fault=fault)
        if spec.resources.workers == 0:
            final = train_in_process(spec, _in_process_folder(spec), f"{PROG}: ")
        else:
            final = _fit(spec, callbacks, show_progress)
        wall_time = {WALL_TIME_METRIC: time.perf_counter() - started}
        tracking.log_metrics(run_id, wall_time, spec.config.steps)
    except BaseException as error:
        tracking.end_run(run_id, error)
        if isinstance(error, KeyboardInterrupt):
            raise
        raise TrainingFailed(
            f"run {name!r} failed (MLflow run {run_id} marked FAILED): {describe_error(error)}"
        ) from error
    tracking.end_run(run_id)
    numbers = {
        key: float(value)
        for key, value in final.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    return RunResult(run_id, numbers)


def record_failed_run(spec: RunSpec, error: BaseException) -> str:
    """Record a run that failed before it started (a trial's data) as a FAILED MLflow run."""
    tracking = Tracking.at(spec.where.tracking_uri)
    run_id, _ = open_run(tracking, spec)
    tracking.end_run(run_id, error)
    return run_id


def _in_process_folder(spec: RunSpec) -> Path:
    local = local_path(spec.where.storage)
    if local is None:
        raise UserError(f"--workers 0 needs a local --storage directory, got {spec.where.storage}")
    return local / spec.identity.name / IN_PROCESS_DIR


def _fit(spec: RunSpec, callbacks: Sequence[Any], show_progress: bool) -> dict:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    asked = spec.resources
    resources = {"CPU": asked.cpus_per_worker}
    if asked.use_gpu:
        resources["GPU"] = asked.gpus_per_worker
    progress = cluster.printed_lines(f"{PROG}: ") if show_progress else contextlib.nullcontext()
    with progress as queue:
        trainer = TorchTrainer(
            functools.partial(train_loop_per_worker, replace(spec, progress=queue)),
            scaling_config=ScalingConfig(
                num_workers=asked.workers, use_gpu=asked.use_gpu, resources_per_worker=resources
            ),
            run_config=RunConfig(
                name=spec.identity.name,
                storage_path=spec.where.storage,
                checkpoint_config=CheckpointConfig(num_to_keep=CHECKPOINTS_TO_KEEP),
                failure_config=FailureConfig(max_failures=spec.max_failures),
                callbacks=list(callbacks),
            ),
        )
        result = trainer.fit()
    # Checked first: a run that diverged before its first checkpoint has no metrics (None).
    tags = Tracking.at(spec.where.tracking_uri).tags(spec.identity.run_id)
    if TAG_NON_FINITE in tags:
        from tcwae.trainer import NonFiniteLossError

        raise NonFiniteLossError(tags[TAG_NON_FINITE])
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
    name, storage = spec.identity.name, spec.where.storage
    if spec.resources.workers >= 1:
        cluster.connect(spec.verbose)
    try:
        with exclusive_folder(storage, name, f"run {name!r} in {storage}"):
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
    print(f"{PROG}: {name} finished in {seconds:.0f} s: {scores}")
    print_run_page(PROG, Tracking.at(spec.where.tracking_uri), result.run_id)
    return 0


if __name__ == "__main__":
    from pipeline.train import main as _entry  # run the importable module, not __main__ copies

    sys.exit(_entry())

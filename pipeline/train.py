"""Train one model: a Ray Train `TorchTrainer` around `tcwae.trainer`, recorded in one MLflow run.

    python pipeline/train.py dsprites --method tcwae_mws --beta 10 --gamma 10 --workers 2

The driver validates everything first (exit 2, one line on stderr, nothing started), then creates
(or, for an interrupted run, reopens) the MLflow run and launches the workers. Every worker runs
the same `tcwae.trainer` loop under DDP; all ranks report through `ray.train.report` at the same
steps, rank 0 attaches the checkpoint and writes to MLflow. When a worker dies, Ray Train restarts
the worker group from the last checkpoint and the same MLflow run continues; re-running the same
command with the same `--storage` and `--name` resumes an interrupted run. At the end rank 0
scores the model, draws its pictures and logs them, the final checkpoint and the encoder.

The sweep (`pipeline/sweep.py`) calls `run_training(spec, parent_run_id, [TuneReportCallback()])`
from inside a Tune trial; nothing here starts Ray when Ray is already running.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from pipeline.rungs import RungCheck, rung_metric
from pipeline.tracking import (
    TAG_KIND,
    TAG_NON_FINITE,
    TAG_RUN_NAME,
    TAG_STORAGE,
    Tracking,
    TrackingError,
    describe_error,
    resolve_tracking_uri,
    runtime_tags,
    sqlite_path,
)
from tcwae.config import (
    COSTS,
    DATA_SOURCES,
    EVAL_PROFILES,
    ConfigError,
    TrainConfig,
    load_yaml_mapping,
)
from tcwae.methods import METHODS, all_hyperparameters

log = logging.getLogger("pipeline.train")

DEFAULT_WORKERS = 1
DEFAULT_MAX_FAILURES = 3
CHECKPOINTS_TO_KEEP = 2
CHECKPOINT_FILE = "trainer.pt"
IN_PROCESS_DIR = "in_process"
TRAIN_PREFIX = "train/"
MIG_CURVE_METRIC = f"{TRAIN_PREFIX}mig"  # every `mig_every` steps, on the eval profile's sizes
RESUMED_METRIC = "resumed_from_step"
SCORE_KEYS = ("rec", "mig", "factor_vae", "sap")
EVAL_SEED_STREAM = 7
RUNG_SEED_STREAM = 13  # seeds each rung's draws from (seed, step), apart from training's streams
# Images whose reconstruction cost is averaged into the `rec` score, per evaluation profile.
REC_IMAGES = {"smoke": 512, "rung": 512, "quick": 5000, "paper": 10000}
PICTURE_IMAGES = 256
RECONSTRUCTION_IMAGES = 16

# Test-only fault injection: a `loop_config` entry under this key, {"rank": r, "step": s,
# "marker": path}, makes rank r SIGKILL its own process at the first report at or after step s,
# but only while `marker` does not exist (it is created just before), so the restarted worker
# group runs through. `run_training(..., fault_injection=SigkillOnce(...))` sets it.
FAULT_INJECTION_KEY = "fault_injection_sigkill_once"


class UsageError(ValueError):
    """The command line cannot be parsed; the message names the argument."""


class LaunchError(RuntimeError):
    """The run cannot be launched as asked (resources, storage, an existing run); one line that
    names the problem and the fix."""


class TrainingFailed(RuntimeError):
    """Training or evaluation failed; the MLflow run was ended FAILED with the error."""


@dataclasses.dataclass(frozen=True)
class SigkillOnce:
    """Test-only fault injection: rank `rank` kills itself with SIGKILL at step `step` once."""

    rank: int
    step: int
    marker: str


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run: what to train (`config`) and where and how to run and record it.

    `storage` is the Ray Train storage (absolute path or URI) and `name` the run's folder in it;
    together they identify the run for resuming. Build with `make_spec` to get the defaults.
    """

    config: TrainConfig
    workers: int
    use_gpu: bool
    tracking_uri: str
    experiment: str
    storage: str
    name: str
    data_root: str | None = None
    max_failures: int = DEFAULT_MAX_FAILURES
    rung_check: RungCheck | None = None


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
    rung_check: RungCheck | None = None,
) -> RunSpec:
    """A RunSpec with defaults resolved: tracking URI (see `tracking.resolve_tracking_uri`),
    experiment = data set name, storage = ./runs (absolute), name = `default_run_name`."""
    if workers < 0:
        raise UsageError(f"--workers must be >= 0 (0 trains in this process), got {workers}")
    if max_failures < -1:
        raise UsageError(f"--max-failures must be >= -1 (-1: retry forever), got {max_failures}")
    from tcwae.data import DATASETS, SEQUENCE_DATASETS
    from tcwae.methods import method_class, methods_for

    if config.dataset not in DATASETS:
        raise UsageError(
            f"unknown data set {config.dataset!r}; choose one of {', '.join(DATASETS)}"
        )
    sequences = config.dataset in SEQUENCE_DATASETS
    if method_class(config.method).sequences != sequences:
        raise UsageError(
            f"--method {config.method} does not train on {config.dataset}; choose one of "
            f"{', '.join(methods_for(sequences))}"
        )
    if name is not None and (not name or "/" in name or name in (".", "..")):
        raise UsageError(f"--name must be a non-empty folder name without '/', got {name!r}")
    return RunSpec(
        config=config,
        workers=workers,
        use_gpu=use_gpu,
        tracking_uri=resolve_tracking_uri(tracking_uri),
        experiment=experiment or config.dataset,
        storage=absolute_storage(storage or "runs"),
        name=name or default_run_name(config),
        data_root=str(Path(data_root).expanduser().resolve()) if data_root else None,
        max_failures=max_failures,
        rung_check=rung_check,
    )


# Command line ---------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage, so every error is one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see --help)")


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="train.py",
        description="Train one TCWAE (or baseline) model with Ray Train and record it in MLflow.",
    )
    parser.add_argument("dataset", help="data set: dsprites, smallnorb, shapes3d, chairs, celeba")
    for key, (flag, text) in _CONFIG_FLAGS.items():
        parser.add_argument(flag, dest=key, metavar=key.upper(), help=text)
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="Ray Train workers (DDP ranks); 0 trains in this process without Ray",
    )
    parser.add_argument("--use-gpu", action="store_true", help="one GPU per worker (NCCL)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default ./mlflow.db)")
    parser.add_argument("--experiment", help="MLflow experiment (default: the data set)")
    parser.add_argument("--storage", help="Ray Train storage: a directory or URI (default ./runs)")
    parser.add_argument("--name", help="run name in the storage (default: data set, method, hash)")
    parser.add_argument("--config", help="YAML file of config keys; flags override it")
    parser.add_argument("--data-root", help="data folder (default $TCWAE_DATA or ~/.cache/tcwae)")
    parser.add_argument(
        "--max-failures",
        type=int,
        default=DEFAULT_MAX_FAILURES,
        help="worker-group restarts from the last checkpoint before the run fails",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> RunSpec:
    """Parse and validate a command line into a RunSpec; raises UsageError or ConfigError."""
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
    )


# Checks before launching -----------------------------------------------------------------------


def check_launch(spec: RunSpec) -> None:
    """Raise LaunchError when the run cannot start: too many workers for the CPUs (or GPUs), a
    GPU asked for where there is none, storage or tracking database not writable.

    Resources are the Ray cluster's when connected (`ray.is_initialized()` or RAY_ADDRESS),
    otherwise this machine's. Nothing is created.
    """
    cpus, gpus, where = _available_resources(spec.workers)
    if spec.use_gpu and gpus < 1:
        raise LaunchError(f"--use-gpu was given but {where} has no GPU; drop --use-gpu")
    if spec.use_gpu and spec.workers > gpus:
        raise LaunchError(
            f"--workers {spec.workers} with --use-gpu needs {spec.workers} GPUs but {where} has "
            f"{gpus:g}; use --workers {int(gpus)} or fewer"
        )
    if spec.workers > cpus:
        raise LaunchError(
            f"--workers {spec.workers} is more than the {cpus:g} CPUs of {where}; use --workers "
            f"{int(cpus)} or fewer (each worker takes one CPU), or connect to a larger cluster "
            "with RAY_ADDRESS"
        )
    storage = local_path(spec.storage)
    if storage is None and spec.workers == 0:
        raise LaunchError(
            f"--workers 0 keeps checkpoints on the local disk but --storage is {spec.storage}; "
            "pass a local directory"
        )
    if storage is not None:
        require_writable(storage, "storage", "--storage")
    database = sqlite_path(spec.tracking_uri)
    if database is not None:
        require_writable(database.parent, "MLflow database folder", "--tracking-uri")


def _available_resources(workers: int) -> tuple[float, float, str]:
    import ray

    if workers >= 1 and (ray.is_initialized() or os.environ.get("RAY_ADDRESS")):
        if not ray.is_initialized():
            ray.init(address=os.environ["RAY_ADDRESS"])
        resources = ray.cluster_resources()
        return resources.get("CPU", 0.0), resources.get("GPU", 0.0), "the Ray cluster"
    return float(os.cpu_count() or 1), float(torch.cuda.device_count()), "this machine"


def absolute_storage(storage: str) -> str:
    if "://" in storage and not storage.startswith("file://"):
        return storage
    path = storage[len("file://") :] if storage.startswith("file://") else storage
    return str(Path(path).expanduser().resolve())


def local_path(storage: str) -> Path | None:
    if storage.startswith("file://"):
        return Path(storage[len("file://") :])
    if "://" in storage:
        return None
    return Path(storage)


def require_writable(path: Path, what: str, flag: str) -> None:
    """Probe with a temporary file in `path` or its nearest existing ancestor (it would be
    created there); root passes permission bits, so asking os.access is not enough."""
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise LaunchError(
            f"{what} {path} cannot be created because {existing} is not a directory; "
            f"pass {flag} a writable directory"
        )
    try:
        handle, probe = tempfile.mkstemp(prefix=".tcwae-write-test-", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise LaunchError(
            f"{what} {path} is not writable ({error.strerror} in {existing}); "
            f"pass {flag} a writable directory"
        ) from None


# Worker side -----------------------------------------------------------------------------------


class _Session(Protocol):
    """What the worker loop needs from its runner (Ray Train, or this process)."""

    rank: int
    world_size: int
    device: torch.device

    def restore(self, trainer: Any) -> bool: ...

    def report(self, metrics: dict[str, float], checkpoint_of: Any | None = None) -> None: ...


class _RaySession:
    """Ray Train: checkpoints through `ray.train.report`, restored with `get_checkpoint`."""

    def __init__(self, use_gpu: bool) -> None:
        import ray.train
        import ray.train.torch

        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()
        self.device = ray.train.torch.get_device() if use_gpu else torch.device("cpu")

    def restore(self, trainer: Any) -> bool:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return False
        with checkpoint.as_directory() as folder:
            trainer.load(Path(folder) / CHECKPOINT_FILE)
        return True

    def report(self, metrics: dict[str, float], checkpoint_of: Any | None = None) -> None:
        """All ranks call this at the same steps; only rank 0 attaches the checkpoint."""
        import ray.train

        if checkpoint_of is None or self.rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="tcwae-checkpoint-") as folder:
            checkpoint_of.save(Path(folder) / CHECKPOINT_FILE)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


class _InProcessSession:
    """`--workers 0`: one rank in this process, checkpoints in `<storage>/<name>/in_process/`."""

    def __init__(self, folder: Path, device: torch.device) -> None:
        self.rank = 0
        self.world_size = 1
        self.device = device
        self.folder = folder
        self.last_metrics: dict[str, float] = {}

    def _checkpoints(self) -> list[Path]:
        return sorted(self.folder.glob(f"checkpoint_*/{CHECKPOINT_FILE}"))

    def restore(self, trainer: Any) -> bool:
        checkpoints = self._checkpoints()
        if not checkpoints:
            return False
        trainer.load(checkpoints[-1])
        return True

    def report(self, metrics: dict[str, float], checkpoint_of: Any | None = None) -> None:
        self.last_metrics = dict(metrics)
        if checkpoint_of is None:
            return
        checkpoint_of.save(self.folder / f"checkpoint_{checkpoint_of.step:09d}" / CHECKPOINT_FILE)
        for stale in self._checkpoints()[:-CHECKPOINTS_TO_KEEP]:
            shutil.rmtree(stale.parent)


class _Rank0Recorder:
    """Rank 0's writes to the MLflow run, made safe to repeat after a restart.

    A restarted worker group resumes from the checkpoint Ray Train last registered, which can be
    older than the steps already logged by the attempt that died; those steps are not logged a
    second time, so the run's history has exactly one point per step.
    """

    def __init__(self, tracking: Tracking, run_id: str) -> None:
        self.tracking = tracking
        self.run_id = run_id
        self.logged_through = tracking.last_step(run_id, f"{TRAIN_PREFIX}loss")

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        if step > self.logged_through:
            self.tracking.log_metrics(self.run_id, metrics, step)
            self.logged_through = step


class _Reporter:
    """The trainer's callbacks: one `report` per step for all ranks (losses and, at checkpoint
    steps, the checkpoint together), rank 0 mirroring the losses into MLflow and adding the rung
    scores at rung steps (which Tune's scheduler judges)."""

    def __init__(
        self,
        trainer: Any,
        session: _Session,
        recorder: _Rank0Recorder | None,
        fault: dict[str, Any] | None,
        rung_check: RungCheck | None = None,
    ) -> None:
        self.trainer = trainer
        self.session = session
        self.recorder = recorder
        self.fault = fault
        self.rung_check = rung_check
        self.cfg = trainer.cfg
        self.pending: dict[str, float] | None = None
        self.last_time = time.perf_counter()
        self.last_step = trainer.step
        from tcwae.metrics import PROFILES

        self._mig_points = PROFILES[self.cfg.eval_profile]["num_train"]

    def _is_checkpoint_step(self, step: int) -> bool:
        return step % self.cfg.checkpoint_every == 0 or step == self.cfg.steps

    def on_report(self, step: int, losses: dict[str, float]) -> None:
        self._maybe_inject_fault(step)
        now = time.perf_counter()
        metrics = {f"{TRAIN_PREFIX}{key}": value for key, value in losses.items()}
        metrics[f"{TRAIN_PREFIX}steps_per_second"] = (step - self.last_step) / max(
            now - self.last_time, 1e-9
        )
        self.last_time, self.last_step = now, step
        if self.recorder is not None:
            if self.cfg.mig_every and step % self.cfg.mig_every == 0 and self.trainer.has_factors:
                metrics[MIG_CURVE_METRIC] = self.trainer.mig_now(self._mig_points)
            if self.rung_check is not None and step in self.rung_check.steps:
                metrics.update(rung_scores(self.trainer, self.rung_check))
            self.recorder.log_step(step, metrics)
        if self._is_checkpoint_step(step):
            self.pending = metrics  # sent with the checkpoint, which the trainer asks for next
        else:
            self.session.report({"step": step, **metrics})

    def on_checkpoint(self, step: int) -> None:
        metrics = self.pending or {}
        self.pending = None
        self.session.report({"step": step, **metrics}, checkpoint_of=self.trainer)

    def _maybe_inject_fault(self, step: int) -> None:
        fault = self.fault
        if fault is None or self.session.rank != fault["rank"] or step < fault["step"]:
            return
        marker = Path(fault["marker"])
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


def model_scores(
    trainer: Any, rng: np.random.Generator, profile: str, scores: Sequence[str] | None = None
) -> dict[str, float]:
    """`rec` on REC_IMAGES[profile] images and, for data sets with factors, the scores of
    `tcwae.metrics.evaluate` with `profile`'s sizes (with its `eval_*` sizes); all of them, or
    those in `scores`. Both the final scores and the rung scores come from here."""
    from tcwae import metrics

    result = {}
    if scores is None or "rec" in scores:
        result["rec"] = trainer.reconstruction_error(REC_IMAGES[profile], rng)
    factor_scores = None if scores is None else [score for score in scores if score != "rec"]
    if trainer.has_factors and (factor_scores is None or factor_scores):
        result.update(
            metrics.evaluate(
                trainer.dataset,
                trainer.represent,
                rng,
                profile,
                factor_scores,
                codebook=trainer.codebook(),
            )
        )
    return {key: float(value) for key, value in result.items()}


def rung_scores(trainer: Any, check: RungCheck) -> dict[str, float]:
    """`rung/<score>` of the model now, with the check's profile; draws come from (seed, step),
    never from the training streams."""
    rng = np.random.default_rng([trainer.cfg.seed, RUNG_SEED_STREAM, trainer.step])
    scores = model_scores(trainer, rng, check.profile, check.scores)
    return {rung_metric(score): scores[score] for score in check.scores if score in scores}


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """The Ray Train worker function (see `run_training` for `loop_config`).

    A non-finite loss is deterministic: Ray Train would retry it from the last checkpoint
    `max_failures` times and diverge again each time. So every rank (all detect it at the same
    step) ends cleanly instead, and rank 0 tags the MLflow run, which `_fit` turns into a failure.
    """
    from tcwae.trainer import NonFiniteLossError

    session = _RaySession(loop_config["use_gpu"])
    try:
        _train_and_record(loop_config, session)
    except NonFiniteLossError as error:
        if session.rank == 0:
            Tracking.at(loop_config["tracking_uri"]).set_tags(
                loop_config["run_id"], {TAG_NON_FINITE: str(error)}
            )


def _train_and_record(loop_config: dict[str, Any], session: _Session) -> dict[str, float]:
    """Build data and trainer, resume, train with reports and checkpoints, then on rank 0 score,
    draw and log everything; every rank ends with a final `report` (rank 0's holds the scores)."""
    from tcwae.data import data_root, load_dataset
    from tcwae.trainer import Trainer

    cfg = TrainConfig.from_dict(loop_config["config"], where="loop_config")
    dataset = load_dataset(cfg.dataset, root=loop_config["data_root"], source=cfg.data_source)
    trainer = Trainer(cfg, dataset, device=session.device)
    resumed = session.restore(trainer)

    recorder = None
    if session.rank == 0:
        tracking = Tracking.at(loop_config["tracking_uri"])
        run_id = loop_config["run_id"]
        recorder = _Rank0Recorder(tracking, run_id)
        resolved = trainer.resolved_settings()
        tracking.log_params(run_id, {k: v for k, v in resolved.items() if "." in k})
        tracking.set_tags(
            run_id, {"precision": resolved["precision"], "optimizer": resolved["optimizer"]}
        )
        tracking.set_tags(
            run_id,
            {
                "dataset_source": dataset.source,
                "dataset_size": len(dataset),
                "device": _describe_device(session.device, session.world_size),
                "world_size": session.world_size,
            },
        )
        if resumed:
            tracking.log_metrics(run_id, {RESUMED_METRIC: trainer.step}, trainer.step)

    check = loop_config.get("rung_check")
    reporter = _Reporter(
        trainer,
        session,
        recorder,
        loop_config.get(FAULT_INJECTION_KEY),
        RungCheck(**check) if check else None,
    )
    losses = trainer.train(on_report=reporter.on_report, on_checkpoint=reporter.on_checkpoint)
    final = {"step": float(trainer.step)}
    final.update({f"{TRAIN_PREFIX}{key}": value for key, value in losses.items()})
    if session.rank == 0 and trainer.objective.sequences:
        judge_root = Path(loop_config["data_root"] or data_root())
        final.update(
            _evaluate_and_log_sequences(
                trainer, dataset, recorder.tracking, recorder.run_id, judge_root
            )
        )
    elif session.rank == 0:
        final.update(_evaluate_and_log(trainer, dataset, recorder.tracking, recorder.run_id))
    # With a checkpoint, so that Ray's Result.metrics (those of the latest checkpoint) are these.
    session.report(final, checkpoint_of=trainer)
    return final


def _describe_device(device: torch.device, world_size: int) -> str:
    if device.type == "cuda":
        return f"{world_size} x {torch.cuda.get_device_name(device)}"
    return f"{world_size} x cpu"


def _evaluate_and_log(trainer: Any, dataset: Any, tracking: Tracking, run_id: str) -> dict:
    """Scores (`rec` and, for data sets with factors, the disentanglement metrics), pictures,
    the final checkpoint and the encoder model, all logged to the run. Returns the scores."""
    from tcwae import viz

    cfg = trainer.cfg
    rng = np.random.default_rng([cfg.seed, EVAL_SEED_STREAM])
    scores = model_scores(trainer, rng, cfg.eval_profile)
    tracking.log_metrics(run_id, scores, trainer.step)

    autoencoder = trainer.autoencoder  # viz and log_encoder handle its device and mode
    picks = rng.choice(len(dataset), size=min(PICTURE_IMAGES, len(dataset)), replace=False)
    images = dataset.images[torch.from_numpy(picks)]
    with tempfile.TemporaryDirectory(prefix="tcwae-artifacts-") as folder:
        folder = Path(folder)
        viz.save_traversals(autoencoder, images, folder / "traversals.png")
        viz.save_reconstructions(
            autoencoder, images[:RECONSTRUCTION_IMAGES], folder / "reconstructions.png"
        )
        viz.save_samples(autoencoder, folder / "samples.png", seed=cfg.seed)
        for picture in ("traversals.png", "reconstructions.png", "samples.png"):
            tracking.log_artifact(run_id, folder / picture)
        trainer.save(folder / CHECKPOINT_FILE)
        tracking.log_artifact(run_id, folder / CHECKPOINT_FILE, "checkpoint")
    example = images[:2].float().div(255.0).numpy()
    tracking.log_encoder(run_id, autoencoder, example, trainer.step)
    return scores


def _evaluate_and_log_sequences(
    trainer: Any, dataset: Any, tracking: Tracking, run_id: str, judge_root: Path
) -> dict:
    """A sequence model's record: the judge's accuracy and the judged scores of
    `tcwae.sequence_eval.score_and_draw` (the judge trained once and cached under `judge_root`),
    its swap and generated-sequence pictures and the final checkpoint. Returns the scores."""
    from tcwae.sequence_eval import score_and_draw

    cfg = trainer.cfg
    rng = np.random.default_rng([cfg.seed, EVAL_SEED_STREAM])
    with tempfile.TemporaryDirectory(prefix="tcwae-artifacts-") as folder:
        folder = Path(folder)
        scores, pictures = score_and_draw(
            trainer.autoencoder, dataset, judge_root, cfg.eval_profile, rng, folder, cfg.cost
        )
        scores = {key: float(value) for key, value in scores.items()}
        tracking.log_metrics(run_id, scores, trainer.step)
        for picture in pictures:
            tracking.log_artifact(run_id, picture)
        trainer.save(folder / CHECKPOINT_FILE)
        tracking.log_artifact(run_id, folder / CHECKPOINT_FILE, "checkpoint")
    return scores


# Driver side -----------------------------------------------------------------------------------


def _open_run(tracking: Tracking, spec: RunSpec, parent_run_id: str | None) -> tuple[str, bool]:
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
            raise LaunchError(
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
        experiment_id, spec.name, params=config, tags=tags, parent_run_id=parent_run_id
    )
    tracking.log_config(run_id, spec.config.to_dict())
    return run_id, False


def _loop_config(spec: RunSpec, run_id: str) -> dict[str, Any]:
    return {
        "config": spec.config.to_dict(),
        "tracking_uri": spec.tracking_uri,
        "run_id": run_id,
        "data_root": spec.data_root,
        "use_gpu": spec.use_gpu,
        "rung_check": dataclasses.asdict(spec.rung_check) if spec.rung_check else None,
    }


def _recorded(
    spec: RunSpec,
    parent_run_id: str | None,
    launch: Callable[[dict[str, Any]], dict[str, float]],
    extra_loop_config: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Open the MLflow run, run `launch(loop_config)`, end the run FINISHED or FAILED."""
    tracking = Tracking.at(spec.tracking_uri)
    run_id, finished = _open_run(tracking, spec, parent_run_id)
    if finished:
        log.warning(
            "run %r in %s already finished (MLflow run %s); returning its scores. Pass a new "
            "--name to train again.",
            spec.name,
            spec.storage,
            run_id,
        )
        return tracking.latest_metrics(run_id)
    started = time.perf_counter()
    try:
        final = launch({**_loop_config(spec, run_id), **(extra_loop_config or {})})
        wall_time = {"wall_time_s": time.perf_counter() - started}
        tracking.log_metrics(run_id, wall_time, spec.config.steps)
    except BaseException as error:
        tracking.end_run(run_id, error)
        if isinstance(error, KeyboardInterrupt):
            raise
        raise TrainingFailed(
            f"run {spec.name!r} failed (MLflow run {run_id} marked FAILED): {describe_error(error)}"
        ) from error
    tracking.end_run(run_id)
    return {key: float(value) for key, value in final.items()}


def run_training(
    spec: RunSpec,
    parent_run_id: str | None = None,
    run_callbacks: Sequence[Any] = (),
    *,
    fault_injection: SigkillOnce | None = None,
) -> dict[str, float]:
    """Train `spec` with a Ray Train TorchTrainer (Ray must be running or startable) and record
    it in MLflow; returns the final metrics (`rec`, scores, last `train/*` losses, `step`).

    `run_callbacks` go to `RunConfig(callbacks=...)` (the sweep passes `TuneReportCallback()`);
    `parent_run_id` makes the MLflow run a child of the sweep's run. `fault_injection` is for
    tests only (see FAULT_INJECTION_KEY). Raises LaunchError when an existing run with the same
    storage and name has another config, TrainingFailed when training fails.
    """
    extra = {FAULT_INJECTION_KEY: dataclasses.asdict(fault_injection)} if fault_injection else None
    return _recorded(spec, parent_run_id, lambda lc: _fit(spec, lc, run_callbacks), extra)


def _fit(spec: RunSpec, loop_config: dict[str, Any], callbacks: Sequence[Any]) -> dict:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=spec.workers, use_gpu=spec.use_gpu),
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
    non_finite = Tracking.at(spec.tracking_uri).tags(loop_config["run_id"]).get(TAG_NON_FINITE)
    if non_finite is not None:
        from tcwae.trainer import NonFiniteLossError

        raise NonFiniteLossError(non_finite)
    return dict(result.metrics)


def run_in_process(spec: RunSpec, parent_run_id: str | None = None) -> dict[str, float]:
    """`--workers 0`: the same loop and MLflow record in this process, without Ray; checkpoints
    go to `<storage>/<name>/in_process/` and an interrupted run resumes from them."""
    local = local_path(spec.storage)
    if local is None:
        raise LaunchError(f"--workers 0 needs a local --storage directory, got {spec.storage}")
    folder = local / spec.name / IN_PROCESS_DIR
    device = torch.device("cuda") if spec.use_gpu else torch.device("cpu")
    return _recorded(
        spec, parent_run_id, lambda lc: _train_and_record(lc, _InProcessSession(folder, device))
    )


def _print_summary(spec: RunSpec, final: dict[str, float], seconds: float) -> None:
    scores = ", ".join(f"{key} {final[key]:.4g}" for key in SCORE_KEYS if key in final)
    print(f"train: {spec.name} finished in {seconds:.0f} s: {scores}")
    print(f"train: MLflow experiment {spec.experiment!r} at {spec.tracking_uri}")
    if sqlite_path(spec.tracking_uri) is not None:
        print(f"train: browse with: mlflow ui --backend-store-uri {spec.tracking_uri}")


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: 0 on success, 2 on bad input (nothing started), 1 on a failed run."""
    started = time.perf_counter()
    try:
        spec = parse_args(argv)
        check_launch(spec)
    except SystemExit as exit_request:  # --help
        return int(exit_request.code or 0)
    except (UsageError, ConfigError, LaunchError, TrackingError) as error:
        print(f"train: {error}", file=sys.stderr)
        return 2
    try:
        if spec.workers == 0:
            final = run_in_process(spec)
        else:
            import ray

            if not ray.is_initialized():
                ray.init()  # joins RAY_ADDRESS when set, else starts a local instance
            final = run_training(spec)
    except LaunchError as error:
        print(f"train: {error}", file=sys.stderr)
        return 2
    except TrainingFailed as error:
        print(f"train: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("train: interrupted; the MLflow run was marked KILLED", file=sys.stderr)
        return 130
    _print_summary(spec, final, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    from pipeline.train import main as _main  # run the importable module, not __main__ copies

    sys.exit(_main())

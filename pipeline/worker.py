"""The per-worker loop: one DDP rank of a run under Ray Train, or the only rank in this process.

Every rank loads the data set, builds the `tcwae.trainer.Trainer`, resumes from the last
checkpoint and trains. Every `report_every` steps all ranks report through their session (losses,
speed and a progress line; at checkpoint steps the checkpoint too): `ray.train.report` under Ray
Train, a checkpoint folder of this process with `--workers 0`. Rank 0 also writes the losses to
the MLflow run, prints the progress line where a person watches, adds the rung scores at a
successive-halving sweep's rung steps, and at the end scores the model, draws its pictures and
logs them with the final checkpoint and the encoder.

The driver (`pipeline/train.py`) hands every worker the run's one frozen `RunSpec`.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

import torch

from pipeline.checkpoints import (
    CHECKPOINT_FILE,
    CHECKPOINT_PREFIX,
    checkpoint_files,
    older_checkpoint_files,
    restore_newest_intact,
)
from pipeline.evaluation import evaluate_and_log, score_at_rung
from pipeline.metric_keys import (
    LOSS_METRIC,
    MIG_CURVE_METRIC,
    PROGRESS_KEY,
    RESUMED_METRIC,
    SPEED_METRIC,
    STARTUP_METRIC,
    train_metrics,
)
from pipeline.run_spec import RunSpec, worker_dataset
from pipeline.search.successive_halving import RungCheck
from pipeline.tracking import TAG_NON_FINITE, Tracking
from tcwae.atomic import is_disk_full
from tcwae.errors import DiskFullError
from tcwae.eval_profiles import PROFILES

CHECKPOINTS_TO_KEEP = 2


@dataclasses.dataclass(frozen=True)
class SigkillOnce:
    """Test-only fault injection: rank `rank` SIGKILLs its own process at the first report at or
    after step `step`, but only while `marker` does not exist (it is created just before), so the
    restarted worker group runs through."""

    rank: int
    step: int
    marker: str


class _Session(Protocol):
    """What the loop needs from its runner (Ray Train, or this process)."""

    rank: int
    world_size: int
    device: torch.device

    def restore(self, trainer: Any) -> bool: ...

    def report(self, metrics: dict[str, Any], checkpoint_of: Any | None = None) -> None: ...

    def show(self, line: str) -> None: ...


class _RaySession:
    """Ray Train: checkpoints through `ray.train.report`, restored with `get_checkpoint`."""

    def __init__(self, spec: RunSpec) -> None:
        import ray.train
        import ray.train.torch

        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()
        gpu = spec.resources.use_gpu
        self.device = ray.train.torch.get_device() if gpu else torch.device("cpu")
        self.progress = spec.progress

    def restore(self, trainer: Any) -> bool:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return False
        with checkpoint.as_directory() as folder:
            files = [Path(folder) / CHECKPOINT_FILE]
            if checkpoint.filesystem.type_name == "local":
                files += older_checkpoint_files(Path(checkpoint.path))
            restore_newest_intact(trainer, files, self.show)
        return True

    def report(self, metrics: dict[str, Any], checkpoint_of: Any | None = None) -> None:
        """All ranks call this at the same steps; only rank 0 attaches the checkpoint."""
        import ray.train

        if checkpoint_of is None or self.rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="tcwae-checkpoint-") as folder:
            checkpoint_of.save(Path(folder) / CHECKPOINT_FILE)
            checkpoint = ray.train.Checkpoint.from_directory(folder)
            try:
                ray.train.report(metrics, checkpoint=checkpoint)
            except Exception as error:  # Ray copies the checkpoint into the storage itself
                if not is_disk_full(error):
                    raise
                raise DiskFullError(
                    errno.ENOSPC,
                    f"the disk is full: no space left to copy the step-{checkpoint_of.step} "
                    "checkpoint into the run's storage; free space there or pass --storage a "
                    "folder on another disk",
                ) from error

    def show(self, line: str) -> None:
        if self.progress is not None:
            self.progress.put(line)


class _InProcessSession:
    """`--workers 0`: one rank in this process, checkpoints in `folder`, progress on stdout."""

    def __init__(self, folder: Path, device: torch.device, prefix: str) -> None:
        self.rank = 0
        self.world_size = 1
        self.device = device
        self.folder = folder
        self.prefix = prefix

    def restore(self, trainer: Any) -> bool:
        return restore_newest_intact(trainer, checkpoint_files(self.folder), self.show) is not None

    def report(self, metrics: dict[str, Any], checkpoint_of: Any | None = None) -> None:
        if checkpoint_of is None:
            return
        folder = self.folder / f"{CHECKPOINT_PREFIX}{checkpoint_of.step:09d}"
        checkpoint_of.save(folder / CHECKPOINT_FILE)
        for stale in checkpoint_files(self.folder)[CHECKPOINTS_TO_KEEP:]:
            shutil.rmtree(stale.parent)

    def show(self, line: str) -> None:
        print(f"{self.prefix}{line}", flush=True)


def progress_line(
    step: int,
    steps: int,
    steps_per_second: float,
    losses: dict[str, float],
    mig: float | None = None,
) -> str:
    """'step 400/1000 (40%), 5.2 steps/s, ETA 1m55s, loss 130.2 rec 120.1 tc 2.31, MIG 0.081':
    the objective (`loss`) first, then its terms."""
    remaining = (steps - step) / steps_per_second if steps_per_second > 0 else math.inf
    ordered = sorted(losses.items(), key=lambda item: item[0] != "loss")
    terms = " ".join(f"{name} {value:.4g}" for name, value in ordered)
    line = (
        f"step {step}/{steps} ({100 * step / steps:.0f}%), {steps_per_second:.2f} steps/s, "
        f"ETA {format_duration(remaining)}, {terms}"
    )
    return line if mig is None else f"{line}, MIG {mig:.3f}"


def format_duration(seconds: float) -> str:
    """'45s', '3m05s', '2h07m'; '?' when unknown."""
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class _Rank0Recorder:
    """Rank 0's writes to the MLflow run, made safe to repeat after a restart.

    A restarted worker group resumes from the checkpoint Ray Train last registered, which can be
    older than the steps already logged by the attempt that died; those steps are not logged a
    second time, so the run's history has exactly one point per step.
    """

    def __init__(self, tracking: Tracking, run_id: str) -> None:
        self.tracking = tracking
        self.run_id = run_id
        self.logged_through = tracking.last_step(run_id, LOSS_METRIC)

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        if step > self.logged_through:
            self.tracking.log_metrics(self.run_id, metrics, step)
            self.logged_through = step


class _Reporter:
    """The trainer's callbacks: one `report` per report step for all ranks (losses and, at
    checkpoint steps, the checkpoint together); rank 0 mirrors the losses into MLflow, shows
    the progress line and adds the rung scores at rung steps (which Tune's scheduler judges)."""

    def __init__(
        self,
        trainer: Any,
        session: _Session,
        recorder: _Rank0Recorder | None,
        fault: SigkillOnce | None,
        rung_check: RungCheck | None = None,
    ) -> None:
        self.trainer = trainer
        self.session = session
        self.recorder = recorder
        self.fault = fault
        self.rung_check = rung_check
        self.cfg = trainer.cfg
        self.pending: dict[str, Any] | None = None
        self.last_time = time.perf_counter()
        self.last_step = trainer.step
        self.latest_mig: float | None = None
        self._mig_points = PROFILES[self.cfg.eval_profile].metric_sizes["num_train"]

    def _is_checkpoint_step(self, step: int) -> bool:
        return step % self.cfg.checkpoint_every == 0 or step == self.cfg.steps

    def on_report(self, step: int, losses: dict[str, float]) -> None:
        self._maybe_inject_fault(step)
        now = time.perf_counter()
        speed = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        metrics = train_metrics(losses)
        metrics[SPEED_METRIC] = speed
        report: dict[str, Any] = {"step": step, **metrics}
        if self.recorder is not None:
            mig = self._mig_at(step)
            if mig is not None:
                metrics[MIG_CURVE_METRIC] = self.latest_mig = mig
            if self.rung_check is not None and step in self.rung_check.steps:
                rung = score_at_rung(self.trainer, self.rung_check)
                metrics.update(rung)
                report.update(rung)
            self.recorder.log_step(step, metrics)
            line = progress_line(step, self.cfg.steps, speed, losses, mig)
            self.session.show(line)
            report[PROGRESS_KEY] = line
            if self.latest_mig is not None:
                report[MIG_CURVE_METRIC] = self.latest_mig  # the latest, for Tune's table
        if self._is_checkpoint_step(step):
            self.pending = report  # sent with the checkpoint, which the trainer asks for next
        else:
            self.session.report(report)

    def _mig_at(self, step: int) -> float | None:
        """MIG of the current encoder every `mig_every` steps, for the curve of MIG against
        training steps; None at the other steps."""
        if not self.cfg.mig_every or step % self.cfg.mig_every or not self.trainer.has_factors:
            return None
        return self.trainer.mig_now(self._mig_points)

    def on_checkpoint(self, step: int) -> None:
        report = self.pending or {"step": step}
        self.pending = None
        self.session.report(report, checkpoint_of=self.trainer)

    def _maybe_inject_fault(self, step: int) -> None:
        fault = self.fault
        if fault is None or self.session.rank != fault.rank or step < fault.step:
            return
        marker = Path(fault.marker)
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


def train_loop_per_worker(spec: RunSpec) -> None:
    """The Ray Train worker function (bound to its spec with `functools.partial`).

    A non-finite loss is deterministic: Ray Train would retry it from the last checkpoint
    `max_failures` times and diverge again each time. So every rank (all detect it at the same
    step) ends cleanly instead, and rank 0 tags the MLflow run, which the driver turns into a
    failure.
    """
    from tcwae.trainer import NonFiniteLossError

    session = _RaySession(spec)
    try:
        train_and_record(spec, session)
    except NonFiniteLossError as error:
        if session.rank == 0:
            tracking = Tracking.at(spec.where.tracking_uri)
            tracking.set_tags(spec.identity.run_id, {TAG_NON_FINITE: str(error)})


def train_in_process(spec: RunSpec, folder: Path, prefix: str) -> dict[str, Any]:
    """`--workers 0`: the same loop in this process, checkpoints in `folder`."""
    device = torch.device("cuda") if spec.resources.use_gpu else torch.device("cpu")
    return train_and_record(spec, _InProcessSession(folder, device, prefix))


def train_and_record(spec: RunSpec, session: _Session) -> dict[str, Any]:
    """Load the data, build and resume the trainer, train with reports and checkpoints, then on
    rank 0 score, draw and log everything; every rank ends with a final `report` (rank 0's holds
    the scores), with a checkpoint, so that Ray's Result.metrics are these."""
    from tcwae.trainer import Trainer

    cfg, where, run_id = spec.config, spec.where, spec.identity.run_id
    dataset, data_loading = worker_dataset(cfg, where.shared_data, where.data_root)
    trainer = Trainer(cfg, dataset, device=session.device)
    resumed = session.restore(trainer)

    recorder = None
    if session.rank == 0:
        tracking = Tracking.at(where.tracking_uri)
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
                "data_loading": data_loading,
            },
        )
        if resumed:
            tracking.log_metrics(run_id, {RESUMED_METRIC: trainer.step}, trainer.step)

        if spec.identity.launched_at is not None:
            startup = {STARTUP_METRIC: time.time() - spec.identity.launched_at}
            tracking.log_metrics(run_id, startup, trainer.step)

    reporter = _Reporter(trainer, session, recorder, spec.fault, spec.rung_check)
    losses = trainer.train(on_report=reporter.on_report, on_checkpoint=reporter.on_checkpoint)
    final: dict[str, Any] = {"step": float(trainer.step)}
    final.update(train_metrics(losses))
    if recorder is not None:
        run = (recorder.tracking, recorder.run_id)
        final.update(evaluate_and_log(trainer, dataset, *run, where.data_root))
    session.report(final, checkpoint_of=trainer)
    return final


def _describe_device(device: torch.device, world_size: int) -> str:
    if device.type == "cuda":
        return f"{world_size} x {torch.cuda.get_device_name(device)}"
    return f"{world_size} x cpu"

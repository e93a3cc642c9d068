"""The per-worker loop: one DDP rank of a run under Ray Train, or the only rank in this process.

Every rank loads the data, builds the `tcwae.trainer.Trainer`, resumes from the last checkpoint,
trains and reports every `report_every` steps (with the checkpoint at checkpoint steps). Rank 0
also logs the losses to the MLflow run, shows the progress line, adds the rung scores at a
successive-halving sweep's rung steps and, at the end, scores the model and logs everything.
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
from typing import Any

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
from pipeline.tracking import TAG_NON_FINITE, Tracking
from tcwae.atomic import is_disk_full
from tcwae.errors import DiskFullError
from tcwae.eval_profiles import PROFILES

CHECKPOINTS_TO_KEEP = 2


@dataclasses.dataclass(frozen=True)
class SigkillOnce:
    """Test-only fault: rank `rank` SIGKILLs itself at the first report at or after `step`, once
    (`marker` is created just before), so that the restarted worker group runs through."""

    rank: int
    step: int
    marker: str


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
        self.rank, self.world_size = 0, 1
        self.device, self.folder, self.prefix = device, folder, prefix

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
    step: int, steps: int, steps_per_second: float, losses: dict[str, float], mig: float | None
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


class _Reporter:
    """The trainer's callbacks: one session `report` per report step on every rank (at checkpoint
    steps with the checkpoint); rank 0 (given `tracking`) also logs the losses, shows the progress
    line and adds the rung scores that Tune's scheduler judges. A restarted worker group can
    resume from a checkpoint older than the steps already logged: those are not logged twice."""

    def __init__(self, trainer: Any, session: Any, spec: RunSpec, tracking: Tracking | None):
        self.trainer, self.session, self.spec, self.tracking = trainer, session, spec, tracking
        self.cfg = trainer.cfg
        self.run_id = spec.identity.run_id
        self.logged_through = tracking.last_step(self.run_id, LOSS_METRIC) if tracking else 0
        self.pending: dict[str, Any] | None = None
        self.last_time, self.last_step = time.perf_counter(), trainer.step
        self.latest_mig: float | None = None
        self.mig_points = PROFILES[self.cfg.eval_profile].metric_sizes["num_train"]

    def on_report(self, step: int, losses: dict[str, float]) -> None:
        self._maybe_inject_fault(step)
        now = time.perf_counter()
        speed = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        metrics = {**train_metrics(losses), SPEED_METRIC: speed}
        report: dict[str, Any] = {"step": step, **metrics}
        if self.tracking is not None:
            cfg, rung_check = self.cfg, self.spec.rung_check
            mig = None  # MIG every `mig_every` steps: the curve of MIG against training steps
            if cfg.mig_every and step % cfg.mig_every == 0 and self.trainer.has_factors:
                mig = self.trainer.mig_now(self.mig_points)
                metrics[MIG_CURVE_METRIC] = self.latest_mig = mig
            if rung_check is not None and step in rung_check.steps:
                rung = score_at_rung(self.trainer, rung_check)
                metrics.update(rung)
                report.update(rung)
            if step > self.logged_through:
                self.tracking.log_metrics(self.run_id, metrics, step)
                self.logged_through = step
            line = progress_line(step, cfg.steps, speed, losses, mig)
            self.session.show(line)
            report[PROGRESS_KEY] = line
            if self.latest_mig is not None:
                report[MIG_CURVE_METRIC] = self.latest_mig  # the latest, for Tune's table
        if step % self.cfg.checkpoint_every == 0 or step == self.cfg.steps:
            self.pending = report  # sent with the checkpoint, which the trainer asks for next
        else:
            self.session.report(report)

    def on_checkpoint(self, step: int) -> None:
        report = self.pending or {"step": step}
        self.pending = None
        self.session.report(report, checkpoint_of=self.trainer)

    def _maybe_inject_fault(self, step: int) -> None:
        fault = self.spec.fault
        if fault is None or self.session.rank != fault.rank or step < fault.step:
            return
        marker = Path(fault.marker)
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


def train_loop_per_worker(spec: RunSpec) -> None:
    """The Ray Train worker function. A non-finite loss is deterministic (Ray Train's retries
    would diverge again), so every rank ends cleanly and rank 0 tags the MLflow run, which the
    driver turns into a failure."""
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


def train_and_record(spec: RunSpec, session: Any) -> dict[str, Any]:
    """Train with reports and checkpoints, then score, draw and log on rank 0; every rank ends
    with a final `report` and checkpoint (rank 0's with the scores: Ray's Result.metrics)."""
    from tcwae.trainer import Trainer

    cfg, where, run_id = spec.config, spec.where, spec.identity.run_id
    dataset, data_loading = worker_dataset(cfg, where.shared_data, where.data_root)
    trainer = Trainer(cfg, dataset, device=session.device)
    resumed = session.restore(trainer)
    tracking = Tracking.at(where.tracking_uri) if session.rank == 0 else None
    if tracking is not None:
        resolved = trainer.resolved_settings()
        tracking.log_params(run_id, {k: v for k, v in resolved.items() if "." in k})
        tracking.set_tags(
            run_id, {"precision": resolved["precision"], "optimizer": resolved["optimizer"]}
        )
        device = session.device
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        tracking.set_tags(
            run_id,
            {
                "dataset_source": dataset.source,
                "dataset_size": len(dataset),
                "device": f"{session.world_size} x {device_name}",
                "world_size": session.world_size,
                "data_loading": data_loading,
            },
        )
        if resumed:
            tracking.log_metrics(run_id, {RESUMED_METRIC: trainer.step}, trainer.step)
        if spec.identity.launched_at is not None:
            startup = {STARTUP_METRIC: time.time() - spec.identity.launched_at}
            tracking.log_metrics(run_id, startup, trainer.step)
    reporter = _Reporter(trainer, session, spec, tracking)
    losses = trainer.train(on_report=reporter.on_report, on_checkpoint=reporter.on_checkpoint)
    final: dict[str, Any] = {"step": float(trainer.step), **train_metrics(losses)}
    if tracking is not None:
        final.update(evaluate_and_log(trainer, dataset, tracking, run_id, where.data_root))
    session.report(final, checkpoint_of=trainer)
    return final

"""All MLflow in one place: how runs start, what they record, how they end.

Every call names its run to `MlflowClient`, never MLflow's fluent active run: a run starts on the
driver, is written by a Ray Train worker in another process and ends on the driver again.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import re
import subprocess
import tempfile
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.tracking_store import ARTIFACTS_DIR_NAME, sqlite_path, store_lock
from pipeline.tracking_ui import MODEL_TRAINING_KIND, TAG_DESCRIPTION, param_values, run_address
from tcwae.errors import UserError
from tcwae.values import is_finite_number

CONFIG_ARTIFACT = "config.yaml"
LOCAL_UI = "http://127.0.0.1:5000"
NEWEST = ["attributes.start_time DESC"]

TAG_STORAGE = "tcwae.storage"
TAG_RUN_NAME = "tcwae.name"
TAG_KIND = "tcwae.kind"
TAG_ERROR = "tcwae.error"
TAG_NON_FINITE = "tcwae.non_finite"
TAG_PREVIOUS_ERROR = "tcwae.previous_error"
TAG_SWEEP = "tcwae.sweep"
TAG_SWEEP_STORAGE = "tcwae.sweep_storage"
# A trial that successive halving stopped at a rung: the rung's step and the scheduler's reason.
TAG_STOPPED_AT = "tcwae.stopped_at_step"
TAG_STOP_REASON = "tcwae.stop_reason"
TAG_PARENT = "mlflow.parentRunId"

FINISHED = "FINISHED"
FAILED = "FAILED"
KILLED = "KILLED"

MAX_TAG_LENGTH = 5000
REPO_ROOT = Path(__file__).resolve().parent.parent
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)(\(.*\))?: ")


def runtime_tags() -> dict[str, str]:
    """Tags that say which code and which libraries produced a run."""
    import mlflow
    import ray
    import torch

    versions = {f"{lib.__name__}_version": lib.__version__ for lib in (torch, ray, mlflow)}
    host = {"python_version": platform.python_version(), "host": platform.node()}
    return {"git_commit": git_commit(), **versions, **host}


def git_commit() -> str:
    """The commit being run, '-dirty' with local changes; 'unknown' outside git (`ray job submit`
    runs a copy of the working directory)."""
    git = functools.partial(
        subprocess.run, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
    )
    try:
        commit = git(["git", "rev-parse", "HEAD"]).stdout.strip()
        dirty = git(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def describe_error(error: BaseException) -> str:
    """The root cause in one line: Ray Train's `WorkerGroupError` maps ranks to what they raised,
    often a whole traceback whose last `SomeError: message` line is the cause."""
    failures = getattr(error, "worker_failures", None)
    if isinstance(failures, dict) and failures:
        rank = min(failures)
        line = f"{type(error).__name__} on rank {rank}: {describe_error(failures[rank])}"
    else:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        causes = [line for line in lines if _EXCEPTION_LINE.match(line)]
        line = causes[-1] if causes else f"{type(error).__name__}: {lines[0] if lines else ''}"
    return line[:MAX_TAG_LENGTH]


class Tracking:
    """One tracking store and its runs. Use `Tracking.at(uri)`: opening a sqlite store checks its
    schema, which takes seconds (a new one is made under a file lock, once for all processes)."""

    def __init__(self, tracking_uri: str) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.database = sqlite_path(tracking_uri)
        self._configs: dict[str, dict[str, Any]] = {}
        with store_lock(self.database) if self.database else contextlib.nullcontext():
            self.client = MlflowClient(tracking_uri)  # a new store's schema is made here

    @classmethod
    @functools.cache
    def at(cls, tracking_uri: str) -> Tracking:
        return cls(tracking_uri)

    def experiment_id(self, name: str) -> str:
        """Experiment `name`, marked model training (`pipeline.tracking_ui`); a new one gets an
        absolute artifact root, as `ray job submit` runs the driver in a copy of the folder."""
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            if MODEL_TRAINING_KIND[0] not in experiment.tags:
                self.client.set_experiment_tag(experiment.experiment_id, *MODEL_TRAINING_KIND)
            return experiment.experiment_id
        # For a tracking server, the server decides (its `--artifacts-destination`).
        artifacts = str(self.database.parent / ARTIFACTS_DIR_NAME) if self.database else None
        try:
            tags = dict([MODEL_TRAINING_KIND])
            return self.client.create_experiment(name, artifact_location=artifacts, tags=tags)
        except MlflowException:  # another process created it between our lookup and our create
            if (experiment := self.client.get_experiment_by_name(name)) is None:
                raise
            return experiment.experiment_id

    def run_page(self, run_id: str) -> str:
        """A run's page in the MLflow UI (for sqlite, as `mlflow ui` serves it on its own port)."""
        base = LOCAL_UI if self.database else self.tracking_uri
        return run_address(base, self._experiment_of(run_id), run_id)

    def start_run(
        self,
        experiment_id: str,
        name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> str:
        """Create a RUNNING run and return its id; with `parent_run_id` it is a child run."""
        all_tags = {"mlflow.runName": name, **(tags or {})}
        if parent_run_id:
            all_tags[TAG_PARENT] = parent_run_id
        run_id = self.client.create_run(experiment_id, run_name=name, tags=all_tags).info.run_id
        if params:
            self.log_params(run_id, params)
        return run_id

    def start_parent_run(
        self,
        experiment_id: str,
        name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """A sweep's parent run (kind 'sweep'), tagged with the code and library versions."""
        tags = {TAG_KIND: "sweep", **runtime_tags(), **(tags or {})}
        return self.start_run(experiment_id, name, params, tags)

    def child_runs(self, parent_run_id: str) -> list[Any]:
        """Every run whose parent is `parent_run_id`, newest first, every status."""
        return self._search(self._experiment_of(parent_run_id), _equals(TAG_PARENT, parent_run_id))

    def find_run(self, experiment_id: str, storage: str, name: str) -> Any | None:
        """The newest run that trained `name` in Ray storage `storage`, or None."""
        filter_string = f"{_equals(TAG_STORAGE, storage)} and {_equals(TAG_RUN_NAME, name)}"
        return next(iter(self._search(experiment_id, filter_string)), None)

    def find_sweep_run(self, experiment_id: str, sweep: str, storage: str) -> str | None:
        """The newest parent run of sweep `sweep` with Ray storage `storage`, or None."""
        filter_string = f"{_equals(TAG_SWEEP, sweep)} and {_equals(TAG_SWEEP_STORAGE, storage)}"
        runs = self._search(experiment_id, filter_string)
        return runs[0].info.run_id if runs else None

    def find_sweep_by_name(self, experiment: str, sweep: str) -> str:
        """The newest top-level run named `sweep` in `experiment`, else a UserError saying why."""
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            raise UserError(f"no MLflow experiment named {experiment!r} in {self.tracking_uri}")
        runs = self._search(found.experiment_id, _equals("run_name", sweep, attribute=True))
        parents = [run for run in runs if TAG_PARENT not in run.data.tags]
        if not parents:
            raise UserError(f"no sweep run named {sweep!r} in experiment {experiment!r}")
        return parents[0].info.run_id

    def require_run(self, run_id: str, flag: str) -> None:
        """A UserError naming `flag` unless run `run_id` is in this store."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(run_id)
        except MlflowException:
            raise UserError(f"{flag}: no MLflow run {run_id!r} in {self.tracking_uri}") from None

    def reopen_run(self, run_id: str) -> None:
        """Mark an interrupted run RUNNING again so that a resumed training continues it."""
        self.client.update_run(run_id, status="RUNNING")
        tags = self.tags(run_id)
        if TAG_ERROR in tags:
            self.client.set_tag(run_id, TAG_PREVIOUS_ERROR, tags[TAG_ERROR])
        for tag in (TAG_ERROR, TAG_NON_FINITE):
            if tag in tags:
                self.client.delete_tag(run_id, tag)

    def end_run(self, run_id: str, error: BaseException | None = None) -> None:
        """End a run: FINISHED, or FAILED (KILLED for an interrupt) with the error as a tag and its
        traceback as `errors/<time>.txt`. A run the scheduler stopped stays KILLED: its trial's
        error is then its workers being torn down by that stop (Ray's ActorDiedError)."""
        stopped = TAG_STOPPED_AT in self.tags(run_id)
        if stopped or error is None:
            self.client.set_terminated(run_id, KILLED if stopped else FINISHED)
            return
        self.client.set_tag(run_id, TAG_ERROR, describe_error(error))
        text = "".join(traceback.format_exception(error))
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        try:
            self.client.log_text(run_id, text, f"errors/{stamp}.txt")
        finally:
            status = KILLED if isinstance(error, KeyboardInterrupt) else FAILED
            self.client.set_terminated(run_id, status)

    def tags(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.tags)

    def params(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.params)

    def latest_metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) pairs of one metric in logging order."""
        return [(m.step, m.value) for m in self.client.get_metric_history(run_id, key)]

    def last_step(self, run_id: str, key: str) -> int:
        """The largest step logged for metric `key`, or -1 when none is."""
        return max((step for step, _ in self.metric_history(run_id, key)), default=-1)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        batch = [RunTag(key, str(value)[:MAX_TAG_LENGTH]) for key, value in tags.items()]
        self.client.log_batch(run_id, tags=batch)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log parameters; unset ones (None) are left out (`pipeline.tracking_ui.param_values`)."""
        from mlflow.entities import Param

        batch = [Param(key, value) for key, value in param_values(params).items()]
        self.client.log_batch(run_id, params=batch)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        """Log finite numbers at `step` in one batch; NaN and inf are skipped (MLflow's charts
        cannot draw them, and a non-finite loss ends the run with its own error)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(k, float(v), now, int(step)) for k, v in metrics.items() if is_finite_number(v)
        ]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    def log_config(self, run_id: str, config: Mapping[str, Any]) -> None:
        """The effective configuration as `config.yaml`, loadable with `TrainConfig.from_yaml`."""
        self.client.log_dict(run_id, dict(config), CONFIG_ARTIFACT)

    def logged_config(self, run_id: str) -> dict[str, Any] | None:
        """The flat keys of the run's `config.yaml`, or None when it logged none (it failed
        first). Cached: a logged configuration never changes, and a report pools many sweeps."""
        from mlflow.exceptions import MlflowException

        if run_id not in self._configs:
            with tempfile.TemporaryDirectory(prefix="tcwae-config-") as folder:
                try:
                    path = self.download_artifact(run_id, CONFIG_ARTIFACT, folder)
                except MlflowException:
                    return None
                self._configs[run_id] = yaml.safe_load(path.read_text()) or {}
        return dict(self._configs[run_id])

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def artifact_paths(self, run_id: str, folder: str | None = None) -> list[str]:
        """Every artifact file of a run (under `folder`), relative to its artifact root."""
        found = [
            self.artifact_paths(run_id, info.path) if info.is_dir else [info.path]
            for info in self.client.list_artifacts(run_id, folder)
        ]
        return sorted(path for paths in found for path in paths)

    def download_artifact(self, run_id: str, path: str, destination: str | Path) -> Path:
        return Path(self.client.download_artifacts(run_id, path, str(destination)))

    def stop_run(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """End a run the scheduler stopped: KILLED, `tags` and the description saying where and why;
        the error its trial may have logged (its workers torn down by the stop) goes."""
        reason = tags.get(TAG_STOP_REASON)
        described = {TAG_DESCRIPTION: f"Stopped by successive halving: {reason}"} if reason else {}
        self.set_tags(run_id, {**tags, **described})
        if TAG_ERROR in self.tags(run_id):
            self.client.delete_tag(run_id, TAG_ERROR)
        self.client.set_terminated(run_id, KILLED)

    def logged_encoder(self, run_id: str) -> Any | None:
        """The READY model that `model_registry.log_encoder` logged for the run, or None."""
        from mlflow.entities import LoggedModelStatus

        models = self.client.search_logged_models(
            experiment_ids=[self._experiment_of(run_id)],
            filter_string=f"source_run_id = '{_quoted(run_id)}'",
        )
        return next((m for m in models if m.status == LoggedModelStatus.READY), None)

    def has_registered_model(self, name: str) -> bool:
        return bool(self.client.search_registered_models(f"name = '{_quoted(name)}'"))

    def _experiment_of(self, run_id: str) -> str:
        return self.client.get_run(run_id).info.experiment_id

    def _search(self, experiment_id: str, filter_string: str) -> list[Any]:
        runs: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs(
                [experiment_id], filter_string, page_token=token, order_by=NEWEST
            )
            runs += page
            if not (token := page.token):
                return runs


def _equals(key: str, value: str, attribute: bool = False) -> str:
    """A search filter on tag (or attribute) `key`, the value quoted."""
    field = f"attributes.{key}" if attribute else f"tags.`{key}`"
    return f"{field} = '{_quoted(value)}'"


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")

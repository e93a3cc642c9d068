"""All MLflow in one place: where runs are stored, how they start, what they record, how they end.

Every call goes through `MlflowClient` with an explicit run id, never through MLflow's fluent
active-run stack: a run is started on the driver, written to by a Ray Train worker in another
process, and ended on the driver again, so no process may rely on its own notion of "the active
run". The experiment is created once with an absolute artifact location next to the database,
because a `ray job submit` runs the driver in a temporary copy of the working directory. Every
search filter is written here, by `_tag_equals` / `_attribute_equals`, which quote the values.
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

from pipeline.tracking_store import (
    artifact_location_for,
    sqlite_path,
    store_lock,
)
from pipeline.tracking_ui import (
    MODEL_TRAINING_KIND,
    TAG_DESCRIPTION,
    TAG_EXPERIMENT_KIND,
    param_values,
    run_address,
)
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
TAG_RUN_NAME_MLFLOW = "mlflow.runName"

FINISHED = "FINISHED"
FAILED = "FAILED"
KILLED = "KILLED"
RUNNING = "RUNNING"

MAX_TAG_LENGTH = 5000
REPO_ROOT = Path(__file__).resolve().parent.parent
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)(\(.*\))?: ")


def runtime_tags() -> dict[str, str]:
    """Tags that say which code and which libraries produced a run."""
    import mlflow
    import ray
    import torch

    return {
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "ray_version": ray.__version__,
        "mlflow_version": mlflow.__version__,
        "python_version": platform.python_version(),
        "host": platform.node(),
    }


def git_commit() -> str:
    """The commit of the code being run, with '-dirty' for local changes; 'unknown' outside git
    (e.g. in the working-directory copy that `ray job submit` makes)."""
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()


def describe_error(error: BaseException) -> str:
    """One line for a tag or a terminal: the root cause, not the wrapper around it.

    Ray Train raises `WorkerGroupError` whose `worker_failures` map ranks to what they raised;
    those messages often carry a whole traceback, whose last `SomeError: message` line is the
    cause.
    """
    failures = getattr(error, "worker_failures", None)
    if isinstance(failures, dict) and failures:
        rank = min(failures)
        line = f"{type(error).__name__} on rank {rank}: {describe_error(failures[rank])}"
        return line[:MAX_TAG_LENGTH]
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    causes = [line for line in lines if _EXCEPTION_LINE.match(line)]
    if causes:
        return causes[-1][:MAX_TAG_LENGTH]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:MAX_TAG_LENGTH]


class Tracking:
    """One tracking store (a sqlite file or an MLflow server) and the runs in it.

    Use `Tracking.at(uri)`: opening a sqlite store checks its schema, which takes seconds, so a
    process keeps one instance per URI. A new sqlite store is created and migrated once, under a
    file lock, however many processes open it at the same moment.
    """

    def __init__(self, tracking_uri: str) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self._configs: dict[str, dict[str, Any]] = {}
        database = sqlite_path(tracking_uri)
        lock = store_lock(database) if database is not None else contextlib.nullcontext()
        with lock:
            self.client = MlflowClient(tracking_uri)  # a new store's schema is made here

    @classmethod
    @functools.cache
    def at(cls, tracking_uri: str) -> Tracking:
        return cls(tracking_uri)

    # Experiments ---------------------------------------------------------------------------

    def experiment_id(self, name: str) -> str:
        """The id of experiment `name`, created on first use with an absolute artifact root and
        marked (also when made earlier) a model-training experiment: see `pipeline.tracking_ui`."""
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            if TAG_EXPERIMENT_KIND not in experiment.tags:
                self.client.set_experiment_tag(experiment.experiment_id, *MODEL_TRAINING_KIND)
            return experiment.experiment_id
        try:
            return self.client.create_experiment(
                name,
                artifact_location=artifact_location_for(self.tracking_uri),
                tags=dict([MODEL_TRAINING_KIND]),
            )
        except MlflowException:
            # Another process created it between our lookup and our create.
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def run_page(self, run_id: str) -> str:
        """The address of a run's own page in the MLflow UI's Model training view (for a sqlite
        store, that of `mlflow ui --backend-store-uri <uri>` on its default port)."""
        database = sqlite_path(self.tracking_uri)
        base = LOCAL_UI if database is not None else self.tracking_uri
        return run_address(base, self._experiment_of(run_id), run_id)

    # Runs ----------------------------------------------------------------------------------

    def start_run(
        self,
        experiment_id: str,
        name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> str:
        """Create a RUNNING run and return its id; with `parent_run_id` it is a child run."""
        all_tags = {TAG_RUN_NAME_MLFLOW: name, **(tags or {})}
        if parent_run_id:
            all_tags[TAG_PARENT] = parent_run_id
        run = self.client.create_run(experiment_id, run_name=name, tags=all_tags)
        run_id = run.info.run_id
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
        return self.start_run(
            experiment_id, name, params, {TAG_KIND: "sweep", **runtime_tags(), **(tags or {})}
        )

    def child_runs(self, parent_run_id: str) -> list[Any]:
        """Every run whose parent is `parent_run_id`, newest first, every status."""
        return self._search(
            self._experiment_of(parent_run_id), _tag_equals(TAG_PARENT, parent_run_id), NEWEST
        )

    def find_run(self, experiment_id: str, storage: str, name: str) -> Any | None:
        """The newest run that trained `name` in Ray storage `storage`, or None."""
        return self._newest(
            experiment_id,
            f"{_tag_equals(TAG_STORAGE, storage)} and {_tag_equals(TAG_RUN_NAME, name)}",
        )

    def find_sweep_run(self, experiment_id: str, sweep: str, storage: str) -> str | None:
        """The newest parent run of sweep `sweep` with Ray storage `storage`, or None."""
        run = self._newest(
            experiment_id,
            f"{_tag_equals(TAG_SWEEP, sweep)} and {_tag_equals(TAG_SWEEP_STORAGE, storage)}",
        )
        return None if run is None else run.info.run_id

    def find_sweep_by_name(self, experiment: str, sweep: str) -> str:
        """The newest top-level run named `sweep` in experiment `experiment`; a UserError naming
        what is missing otherwise."""
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            raise UserError(f"no MLflow experiment named {experiment!r} in {self.tracking_uri}")
        runs = self._search(found.experiment_id, _attribute_equals("run_name", sweep), NEWEST)
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
        self.client.update_run(run_id, status=RUNNING)
        tags = self.tags(run_id)
        if TAG_ERROR in tags:
            self.client.set_tag(run_id, TAG_PREVIOUS_ERROR, tags[TAG_ERROR])
            self.client.delete_tag(run_id, TAG_ERROR)
        if TAG_NON_FINITE in tags:
            self.client.delete_tag(run_id, TAG_NON_FINITE)

    def end_run(self, run_id: str, error: BaseException | None = None) -> None:
        """End a run: FINISHED, or FAILED with the error as a tag and its traceback as an artifact
        `errors/<time>.txt` (one per failed attempt; KILLED for an interrupt). A run the sweep's
        scheduler stopped stays KILLED: the error its trial may still raise is its workers being
        torn down by that stop (Ray's ActorDiedError), not a failure of the run."""
        if TAG_STOPPED_AT in self.tags(run_id):
            self.client.set_terminated(run_id, KILLED)
            return
        if error is None:
            self.client.set_terminated(run_id, FINISHED)
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
        """The latest value of every metric of a run."""
        return dict(self.client.get_run(run_id).data.metrics)

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) pairs of one metric in logging order."""
        return [(m.step, m.value) for m in self.client.get_metric_history(run_id, key)]

    def last_step(self, run_id: str, key: str) -> int:
        """The largest step logged for metric `key`, or -1 when none is."""
        return max((step for step, _ in self.metric_history(run_id, key)), default=-1)

    # Logging -------------------------------------------------------------------------------

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(
            run_id, tags=[RunTag(k, str(v)[:MAX_TAG_LENGTH]) for k, v in tags.items()]
        )

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log parameters; unset ones (None) are left out (`pipeline.tracking_ui.param_values`)."""
        from mlflow.entities import Param

        values = param_values(params)
        self.client.log_batch(run_id, params=[Param(k, v) for k, v in values.items()])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        """Log finite numbers at `step` in one batch; NaN and inf are skipped (MLflow's charts
        cannot draw them, and a non-finite loss ends the run with its own error)."""
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        batch = [
            Metric(key, float(value), timestamp, int(step))
            for key, value in metrics.items()
            if is_finite_number(value)
        ]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    def log_config(self, run_id: str, config: Mapping[str, Any]) -> None:
        """The effective configuration as `config.yaml`, loadable with `TrainConfig.from_yaml`."""
        self.client.log_dict(run_id, dict(config), CONFIG_ARTIFACT)

    def logged_config(self, run_id: str) -> dict[str, Any] | None:
        """The flat keys of the run's `config.yaml`, or None when it logged none (it failed
        first). Kept per run: a logged configuration never changes, and a report reads each one
        once however many sweeps it pools."""
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

    def artifact_paths(self, run_id: str) -> list[str]:
        """Every artifact file of a run, as paths relative to its artifact root."""
        found: list[str] = []
        pending = [None]
        while pending:
            folder = pending.pop()
            for info in self.client.list_artifacts(run_id, folder):
                (pending if info.is_dir else found).append(info.path)
        return sorted(found)

    def download_artifact(self, run_id: str, path: str, destination: str | Path) -> Path:
        return Path(self.client.download_artifacts(run_id, path, str(destination)))

    def stop_run(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """End a run that the sweep's scheduler stopped: KILLED, `tags` saying where and why, the
        reason also its description. Its trial may already have ended it with the error of its
        workers being torn down by that stop (Ray's ActorDiedError): that tag goes."""
        reason = tags.get(TAG_STOP_REASON)
        described = {TAG_DESCRIPTION: f"Stopped by successive halving: {reason}"} if reason else {}
        self.set_tags(run_id, {**tags, **described})
        if TAG_ERROR in self.tags(run_id):
            self.client.delete_tag(run_id, TAG_ERROR)
        self.client.set_terminated(run_id, KILLED)

    def logged_encoder(self, run_id: str) -> Any | None:
        """The READY model that `log_encoder` logged for the run, or None."""
        from mlflow.entities import LoggedModelStatus

        models = self.client.search_logged_models(
            experiment_ids=[self._experiment_of(run_id)],
            filter_string=f"source_run_id = '{_quoted(run_id)}'",
        )
        ready = [model for model in models if model.status == LoggedModelStatus.READY]
        return ready[0] if ready else None

    def has_registered_model(self, name: str) -> bool:
        return bool(self.client.search_registered_models(f"name = '{_quoted(name)}'"))

    # Internals -----------------------------------------------------------------------------

    def _experiment_of(self, run_id: str) -> str:
        return self.client.get_run(run_id).info.experiment_id

    def _newest(self, experiment_id: str, filter_string: str) -> Any | None:
        runs = self._search(experiment_id, filter_string, NEWEST)
        return runs[0] if runs else None

    def _search(self, experiment_id: str, filter_string: str, order_by: list[str]) -> list[Any]:
        from mlflow.entities import ViewType

        runs: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs(
                [experiment_id],
                filter_string=filter_string,
                run_view_type=ViewType.ACTIVE_ONLY,
                order_by=order_by,
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs


def _tag_equals(tag: str, value: str) -> str:
    return f"tags.`{tag}` = '{_quoted(value)}'"


def _attribute_equals(attribute: str, value: str) -> str:
    return f"attributes.{attribute} = '{_quoted(value)}'"


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")

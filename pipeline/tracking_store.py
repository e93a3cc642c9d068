"""Where runs are stored: the tracking URI (flag, environment or ./mlflow.db), whether MLflow can
use it, and where a sqlite store keeps its artifacts. Nothing here opens a run; checking creates
nothing, so a bad URI is one line before any work starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from pipeline.cli import require_writable
from tcwae.errors import UserError

DEFAULT_DB_NAME = "mlflow.db"
ARTIFACTS_DIR_NAME = "mlartifacts"
# MLflow's tracking stores, by URI scheme (a driver may follow a '+', as in postgresql+psycopg2).
TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
SERVER_TIMEOUT_S = 2.0
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


class TrackingError(UserError):
    """The tracking URI or its store cannot be used; the message says what to pass instead."""


def resolve_tracking_uri(flag: str | None = None) -> str:
    """The tracking URI: the flag, else $MLFLOW_TRACKING_URI, else ./mlflow.db as absolute sqlite.

    A relative sqlite path is made absolute against the current directory, because Ray workers
    (and `ray job submit` drivers) run elsewhere.
    """
    uri = flag or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri:
        return f"sqlite:///{Path.cwd().resolve() / DEFAULT_DB_NAME}"
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        if not path.startswith("/"):
            return f"sqlite:///{(Path.cwd() / path).resolve()}"
        return uri
    if "://" not in uri and uri not in ("databricks",):
        raise TrackingError(
            f"tracking URI {uri!r} has no scheme; use sqlite:///ABSOLUTE/PATH/mlflow.db or the "
            "http(s):// address of an MLflow server"
        )
    return uri


def check_tracking_uri(tracking_uri: str, must_exist: bool = False) -> None:
    """Raise TrackingError unless MLflow can use the store: a known kind of URI, a sqlite file
    that is a SQLite database (or none yet, unless `must_exist`: a report reads a store, it does
    not create one) in a folder that can be written, a server that answers within
    SERVER_TIMEOUT_S. Creates nothing."""
    scheme = tracking_uri.split("://", 1)[0].split("+", 1)[0]
    if scheme not in TRACKING_SCHEMES:
        raise TrackingError(
            f"tracking URI {tracking_uri!r}: MLflow has no store for {scheme!r} URIs; use "
            "sqlite:///ABSOLUTE/PATH/mlflow.db or the http(s):// address of an MLflow server"
        )
    database = sqlite_path(tracking_uri)
    if database is not None:
        _require_sqlite_file(database, must_exist)
        require_writable(database.parent, "MLflow database folder", "--tracking-uri")
    if scheme in ("http", "https"):
        _require_server(tracking_uri)


def _require_sqlite_file(database: Path, must_exist: bool) -> None:
    """A folder, or a file that is not a SQLite database, fails deep inside SQLAlchemy (a folder
    only after MLflow's retries, about two minutes); an empty file is what sqlite itself makes."""
    fix = "pass --tracking-uri sqlite:///ABSOLUTE/PATH/mlflow.db naming an MLflow database"
    if database.is_dir():
        raise TrackingError(f"tracking store {database} is a folder, not a database file; {fix}")
    if not database.exists():
        if must_exist:
            raise TrackingError(f"no MLflow database at {database}; {fix}")
        return
    try:
        with open(database, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        raise TrackingError(
            f"cannot read tracking store {database} ({error.strerror}); {fix}"
        ) from None
    if header and header != SQLITE_HEADER:
        raise TrackingError(f"tracking store {database} is not a SQLite database; {fix}")


def _require_server(tracking_uri: str) -> None:
    """Any HTTP answer counts (authentication is the server's business); no answer is an error."""
    health = f"{tracking_uri.rstrip('/')}/health"
    try:
        with urllib.request.urlopen(health, timeout=SERVER_TIMEOUT_S):
            return
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingError(
            f"no MLflow server answers at {tracking_uri} ({reason}); start one (mlflow server "
            "--backend-store-uri ...) or pass --tracking-uri sqlite:///ABSOLUTE/PATH/mlflow.db"
        ) from None


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a sqlite tracking URI, or None for any other kind of store."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri[len("sqlite:///") :])
    return None


def artifact_location_for(tracking_uri: str) -> str | None:
    """Absolute artifact root for a new experiment: `mlartifacts/` beside a sqlite database.

    For a tracking server the server decides (its `--artifacts-destination`), so None.
    """
    database = sqlite_path(tracking_uri)
    if database is None:
        return None
    return str(database.parent / ARTIFACTS_DIR_NAME)


@contextlib.contextmanager
def store_lock(database: Path) -> Iterator[None]:
    """An exclusive lock beside a sqlite database: the first processes to open a new store
    would otherwise create and migrate its schema at the same time, and all but one fail."""
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(f"{database.name}.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

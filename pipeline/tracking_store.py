"""Where runs are stored: the tracking URI (flag, environment or ./mlflow.db), whether MLflow can
use it, and where a sqlite store keeps its artifacts. Checking creates nothing, so a bad URI is
one line before any work starts.
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
ARTIFACTS_DIR_NAME = "mlartifacts"  # beside a sqlite database; a server decides for itself
# MLflow's tracking stores, by URI scheme (a driver may follow a '+', as in postgresql+psycopg2).
TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
SERVER_TIMEOUT_S = 2.0
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
SQLITE = "sqlite:///"
USE_INSTEAD = "use sqlite:///ABSOLUTE/PATH/mlflow.db or the http(s):// address of an MLflow server"


class TrackingError(UserError):
    """The tracking URI or its store cannot be used; the message says what to pass instead."""


def resolve_tracking_uri(flag: str | None = None) -> str:
    """The flag, else $MLFLOW_TRACKING_URI, else ./mlflow.db; a sqlite path made absolute, because
    Ray workers (and `ray job submit` drivers) run elsewhere."""
    uri = flag or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"{SQLITE}{Path.cwd().resolve() / DEFAULT_DB_NAME}"
    if uri.startswith(SQLITE) and not uri.startswith(f"{SQLITE}/"):
        return f"{SQLITE}{(Path.cwd() / uri[len(SQLITE) :]).resolve()}"
    if "://" not in uri and uri != "databricks":
        raise TrackingError(f"tracking URI {uri!r} has no scheme; {USE_INSTEAD}")
    return uri


def check_tracking_uri(tracking_uri: str, must_exist: bool = False) -> None:
    """Raise TrackingError unless MLflow can use the store: a known kind of URI, a server that
    answers within SERVER_TIMEOUT_S, or a SQLite file (or none yet, unless `must_exist`: a report
    reads a store, it does not create one) in a folder that can be written. Creates nothing."""
    scheme = tracking_uri.split("://", 1)[0].split("+", 1)[0]
    if scheme not in TRACKING_SCHEMES:
        raise TrackingError(
            f"tracking URI {tracking_uri!r}: MLflow has no store for {scheme!r} URIs; {USE_INSTEAD}"
        )
    if scheme in ("http", "https"):
        _require_server(tracking_uri)
    if (database := sqlite_path(tracking_uri)) is None:
        return
    # A folder or a non-SQLite file fails deep inside SQLAlchemy (a folder only after MLflow's
    # retries, minutes later); an empty file is what sqlite itself makes.
    fix = "pass --tracking-uri sqlite:///ABSOLUTE/PATH/mlflow.db naming an MLflow database"
    if database.is_dir():
        raise TrackingError(f"tracking store {database} is a folder, not a database file; {fix}")
    if database.exists():
        try:
            with open(database, "rb") as handle:
                header = handle.read(len(SQLITE_HEADER))
        except OSError as error:
            raise TrackingError(
                f"cannot read tracking store {database} ({error.strerror}); {fix}"
            ) from None
        if header and header != SQLITE_HEADER:
            raise TrackingError(f"tracking store {database} is not a SQLite database; {fix}")
    elif must_exist:
        raise TrackingError(f"no MLflow database at {database}; {fix}")
    require_writable(database.parent, "MLflow database folder", "--tracking-uri")


def _require_server(tracking_uri: str) -> None:
    """Any HTTP answer counts (authentication is the server's business); no answer is an error."""
    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=SERVER_TIMEOUT_S):
            return
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as error:
        raise TrackingError(
            f"no MLflow server answers at {tracking_uri} ({getattr(error, 'reason', error)}); "
            "start one (mlflow server --backend-store-uri ...) or pass --tracking-uri "
            "sqlite:///ABSOLUTE/PATH/mlflow.db"
        ) from None


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a sqlite tracking URI, or None for any other kind of store."""
    return Path(tracking_uri[len(SQLITE) :]) if tracking_uri.startswith(SQLITE) else None


@contextlib.contextmanager
def store_lock(database: Path) -> Iterator[None]:
    """An exclusive lock beside a sqlite database: the first processes to open a new store would
    otherwise create and migrate its schema at the same time, and all but one fail."""
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(f"{database.name}.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

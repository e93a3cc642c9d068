"""What the commands share: a `UserError` before the work starts is one line on stderr,
`<command>: <message>`, and exit code 2; the location flags (same names and help everywhere),
their defaults and checks."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from tcwae.atomic import unwritable_reason
from tcwae.errors import UserError

DEFAULT_STORAGE = "runs"
STORAGE_VARIABLE = "TCWAE_STORAGE"
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

LOCATION_FLAGS = {
    "--tracking-uri": "MLflow tracking URI: sqlite:///ABSOLUTE/PATH/mlflow.db or the http(s):// "
    "address of an MLflow server (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)",
    "--experiment": "MLflow experiment (default: the data set)",
    "--storage": "where checkpoints and Tune state go: a directory or a URI such as s3://... "
    f"(default: ${STORAGE_VARIABLE}, else ./{DEFAULT_STORAGE})",
    "--name": "name of the run (train.py) or sweep (sweep.py): its folder in --storage and its "
    "MLflow run name; the same name resumes it (default: made from the configuration)",
    "--data-root": "data folder (default: $TCWAE_DATA, else ~/.cache/tcwae)",
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises a UserError instead of printing its usage: one line per mistake."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see --help)")


def add_location_flags(parser: argparse.ArgumentParser, *flags: str) -> None:
    """Add the named location flags (keys of LOCATION_FLAGS) with their shared help."""
    for flag in flags:
        parser.add_argument(flag, help=LOCATION_FLAGS[flag])


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    help = "also show Ray's own log lines from its workers and actors (hidden by default)"
    parser.add_argument("--verbose", action="store_true", help=help)


def run_command(prog: str, command: Callable[[], int]) -> int:
    """Run a command's body: a UserError is one line and exit code 2; Ctrl-C or SIGTERM (handled
    as Ctrl-C, so that runs end KILLED, not RUNNING) 130; `--help` argparse's code."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        return command()
    except SystemExit as exit_request:
        return int(exit_request.code or 0)
    except UserError as error:
        print(f"{prog}: {one_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as interrupt:
        print(f"{prog}: {one_line(interrupt) or 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"interrupted by {signal.Signals(signum).name}")


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def resolve_storage(flag: str | None) -> str:
    """The flag, else $TCWAE_STORAGE, else ./runs; local paths made absolute, because Ray workers
    and `ray job submit` drivers run in other folders."""
    storage = flag or os.environ.get(STORAGE_VARIABLE) or DEFAULT_STORAGE
    local = local_path(storage)
    return storage if local is None else str(local.expanduser().resolve())


def resolve_data_root(flag: str | None) -> str | None:
    """An absolute data root, or None for the library's default ($TCWAE_DATA, ~/.cache/tcwae)."""
    return str(Path(flag).expanduser().resolve()) if flag else None


def local_path(storage: str) -> Path | None:
    """The local directory of a storage location, or None for a remote URI."""
    if "://" in storage and not storage.startswith("file://"):
        return None
    return Path(storage.removeprefix("file://"))


def require_in_range(flag: str, value: float, low: float, high: float) -> None:
    """A numeric flag must be finite and within [low, high]: argparse's float() accepts nan and
    inf, and its int() any number of digits, which would otherwise fail only after Ray starts."""
    if not math.isfinite(value) or not low <= value <= high:
        shown = [f"{v:,}" if isinstance(v, int) else f"{v:g}" for v in (low, high, value)]
        raise UserError(f"{flag} must be a number from {shown[0]} to {shown[1]}, got {shown[2]}")


LOCK_FILE = ".tcwae-driver.lock"


@contextlib.contextmanager
def exclusive_folder(storage: str, name: str, what: str) -> Iterator[None]:
    """Lock the folder `name` of a local `storage` for the block: two identical commands would
    otherwise share one MLflow run. The lock dies with its process: nothing to clean up."""
    local = local_path(storage)
    if local is None:
        yield
        return
    folder = local / name
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UserError(
                f"{what} is already running in {holder} (lock {folder / LOCK_FILE}); wait for it "
                "to end or pass another --name"
            ) from None
        handle.truncate(0)
        handle.write(f"process {os.getpid()} on {os.uname().nodename}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_folder_name(name: str, flag: str = "--name") -> str:
    if not name or "/" in name or name in (".", ".."):
        raise UserError(f"{flag} must be a non-empty folder name without '/', got {name!r}")
    return name


def require_writable(path: Path, what: str, flag: str) -> None:
    """Raise UserError naming `flag` unless files can be created in `path`."""
    reason = unwritable_reason(path)
    if reason is None:
        return
    if reason.endswith("is not a directory"):
        raise UserError(
            f"{what} {path} cannot be created because {reason}; pass {flag} a writable directory"
        )
    raise UserError(f"{what} {path} is not writable ({reason}); pass {flag} a writable directory")

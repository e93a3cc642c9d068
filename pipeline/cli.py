"""What the three commands (`train.py`, `sweep.py`, `report.py`) share: one-line errors with exit
code 2, the flags that say where things are (the same names and help everywhere), and the checks
and defaults of those locations.

A `UserError` anywhere before the work starts (a flag, a file, the environment) becomes one line
on stderr, `<command>: <message>`, and exit code 2; nothing is created before the checks pass.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
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
VERBOSE_HELP = "also show Ray's own log lines from its workers and actors (hidden by default)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises a UserError instead of printing its usage, so every mistake in a
    command line is one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see --help)")


def add_location_flags(parser: argparse.ArgumentParser, *flags: str) -> None:
    """Add the named location flags (keys of LOCATION_FLAGS) with their shared help."""
    for flag in flags:
        parser.add_argument(flag, help=LOCATION_FLAGS[flag])


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)


def run_command(prog: str, command: Callable[[], int]) -> int:
    """Run a command's body: a UserError is one line on stderr and exit code 2, Ctrl-C is 130,
    `--help` returns argparse's code."""
    try:
        return command()
    except SystemExit as exit_request:
        return int(exit_request.code or 0)
    except UserError as error:
        print(f"{prog}: {one_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def resolve_storage(flag: str | None) -> str:
    """The storage: the flag, else $TCWAE_STORAGE, else ./runs; local paths made absolute,
    because Ray workers and `ray job submit` drivers run in other folders."""
    storage = flag or os.environ.get(STORAGE_VARIABLE) or DEFAULT_STORAGE
    if "://" in storage and not storage.startswith("file://"):
        return storage
    path = storage.removeprefix("file://")
    return str(Path(path).expanduser().resolve())


def resolve_data_root(flag: str | None) -> str | None:
    """An absolute data root, or None for the library's default ($TCWAE_DATA, ~/.cache/tcwae)."""
    return str(Path(flag).expanduser().resolve()) if flag else None


def local_path(storage: str) -> Path | None:
    """The local directory of a storage location, or None for a remote URI."""
    if storage.startswith("file://"):
        return Path(storage.removeprefix("file://"))
    if "://" in storage:
        return None
    return Path(storage)


def require_in_range(flag: str, value: float, low: float, high: float) -> None:
    """A numeric flag must be finite and within [low, high]: argparse's float() accepts nan and
    inf, and its int() any number of digits, which would otherwise fail only after Ray starts."""
    if not math.isfinite(value) or not low <= value <= high:
        raise UserError(
            f"{flag} must be a number from {_number(low)} to {_number(high)}, got {_number(value)}"
        )


def _number(value: float) -> str:
    return f"{int(value):,}" if isinstance(value, int) else f"{value:g}"


def check_folder_name(name: str, flag: str = "--name") -> str:
    if not name or "/" in name or name in (".", ".."):
        raise UserError(f"{flag} must be a non-empty folder name without '/', got {name!r}")
    return name


def require_writable(path: Path, what: str, flag: str) -> None:
    """Raise UserError naming `flag` unless files can be created in `path` (see
    `tcwae.atomic.unwritable_reason`)."""
    reason = unwritable_reason(path)
    if reason is None:
        return
    if reason.endswith("is not a directory"):
        raise UserError(
            f"{what} {path} cannot be created because {reason}; pass {flag} a writable directory"
        )
    raise UserError(f"{what} {path} is not writable ({reason}); pass {flag} a writable directory")

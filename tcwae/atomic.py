"""Writing files so that no reader ever sees half of one: write a temporary file beside the target,
then rename it into place (a rename within one folder is atomic). A failed write leaves the old
file, or none, and no temporary behind."""

from __future__ import annotations

import errno
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tcwae.errors import DiskFullError

NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` or an error it came from is a write that found no space: an OSError with
    ENOSPC/EDQUOT, or one whose text says so (pyarrow's file system, which Ray Train copies
    checkpoints with, puts the errno in its message only)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and (
            seen.errno in NO_SPACE_ERRNOS or "No space left on device" in str(seen)
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextmanager
def atomic_path(path: str | Path, mode: int | None = None) -> Iterator[Path]:
    """A fresh path beside `path` for the block to create and write; renamed onto `path` when the
    block ends without an error, removed otherwise. `mode` sets the file's permission bits."""
    path = Path(path)
    created = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield temporary
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        if created and not any(path.parent.iterdir()):
            path.parent.rmdir()  # a folder made for this file alone (a checkpoint's) goes too
        raise
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes_atomically(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through `atomic_path`; a full disk is a DiskFullError that says
    so and where (torch.save reports it as an 'unexpected pos' in its zip writer)."""
    path = Path(path)
    try:
        with atomic_path(path) as temporary:
            temporary.write_bytes(data)
    except OSError as error:
        if error.errno not in NO_SPACE_ERRNOS:
            raise
        raise DiskFullError(
            error.errno,
            f"the disk is full: no space left to write {path} ({len(data) / 2**20:.1f} MB) on "
            f"the disk of {path.parent}; free space there or pass --storage a folder on another "
            "disk",
        ) from error


def write_text_atomically(path: str | Path, text: str, mode: int | None = None) -> None:
    """Write `text` to `path` through `atomic_path`."""
    with atomic_path(path, mode) as temporary:
        temporary.write_text(text)


def unwritable_reason(path: str | Path) -> str | None:
    """Why files cannot be created in folder `path` (or where it would be created: its nearest
    existing ancestor), or None when they can. Probes with a temporary file, because root passes
    permission bits and a read-only mount is not a permission, so asking os.access is not enough."""
    path = Path(path)
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        handle, probe = tempfile.mkstemp(prefix=".tcwae-write-test-", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        return f"{error.strerror} in {existing}"
    return None

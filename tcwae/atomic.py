"""Writing files so that no reader ever sees half of one: write a temporary file beside the target,
then rename it into place (a rename within one folder is atomic). A failed write leaves the old
file, or none, and no temporary behind."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, mode: int | None = None) -> Iterator[Path]:
    """A fresh path beside `path` for the block to create and write; renamed onto `path` when the
    block ends without an error, removed otherwise. `mode` sets the file's permission bits."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield temporary
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


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

"""Resuming from the newest checkpoint that can be read: one cut short (a killed process, a failed
copy) must not end a run whose older checkpoint is intact, so the newest is tried first, falling
back with one line that says which file was skipped and why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tcwae.errors import CheckpointError
from tcwae.trainer import read_checkpoint

CHECKPOINT_FILE = "trainer.pt"
CHECKPOINT_PREFIX = "checkpoint_"


def checkpoint_files(folder: Path) -> list[Path]:
    """The trainer files of the `checkpoint_*` folders in `folder`, newest first (both writers
    name them by step or by time)."""
    return sorted(folder.glob(f"{CHECKPOINT_PREFIX}*/{CHECKPOINT_FILE}"), reverse=True)


def older_checkpoint_files(checkpoint_folder: Path) -> list[Path]:
    """The checkpoints older than `checkpoint_folder` beside it, newest first: where Ray Train
    keeps a trial's earlier checkpoints on local storage."""
    beside = checkpoint_files(checkpoint_folder.parent)
    return [path for path in beside if path.parent.name < checkpoint_folder.name]


def restore_newest_intact(
    trainer: Any, files: Sequence[Path], show: Callable[[str], None]
) -> Path | None:
    """Load the first of `files` (newest first) that reads into `trainer` and return it; None
    when there are no files; a `CheckpointError` naming the newest when none reads."""
    for path in files:
        try:
            state = read_checkpoint(path)
        except CheckpointError as error:
            show(f"{error}; trying the checkpoint before it")
            continue
        trainer.load_state_dict(state)
        return path
    if files:
        raise CheckpointError(
            f"none of the {len(files)} checkpoints from {files[0]} back can be read; "
            "delete the run's storage folder (or pass another --name) to start it again"
        )
    return None

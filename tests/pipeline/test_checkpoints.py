"""Resuming from the newest intact checkpoint (issue 34): a checkpoint cut short is skipped with
one line, the one before it is loaded, and a run with no readable checkpoint says what to do."""

from __future__ import annotations

import pytest
from science_helpers import tiny_dsprites

from pipeline.checkpoints import (
    CHECKPOINT_FILE,
    checkpoint_files,
    older_checkpoint_files,
    restore_newest_intact,
)
from pipeline.worker import _InProcessSession
from tcwae.config import TrainConfig
from tcwae.errors import CheckpointError
from tcwae.trainer import Trainer


def trainer() -> Trainer:
    config = TrainConfig(method="wae_mmd", steps=4, batch_size=8, precision="float32")
    return Trainer(config, tiny_dsprites())


def save_at(folder, name: str, steps: int):
    model = trainer()
    for _ in range(steps):
        model.train_step()
    path = folder / name / CHECKPOINT_FILE
    model.save(path)
    return path


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    older = save_at(tmp_path, "checkpoint_000000002", 2)
    newest = save_at(tmp_path, "checkpoint_000000003", 3)
    truncate(newest)
    assert checkpoint_files(tmp_path) == [newest, older]
    lines: list[str] = []
    session = _InProcessSession(tmp_path, trainer().device, "")
    session.show = lines.append
    resumed = trainer()
    assert session.restore(resumed)
    assert resumed.step == 2
    [line] = lines
    assert str(newest) in line and "cannot be read" in line and "before it" in line


def test_no_readable_checkpoint_is_one_error_naming_the_newest_and_the_fix(tmp_path):
    for step in (2, 3):
        truncate(save_at(tmp_path, f"checkpoint_00000000{step}", step))
    files = checkpoint_files(tmp_path)
    with pytest.raises(CheckpointError, match="none of the 2 checkpoints") as error:
        restore_newest_intact(trainer(), files, lambda line: None)
    assert str(files[0]) in str(error.value) and "start it again" in str(error.value)
    assert restore_newest_intact(trainer(), [], lambda line: None) is None


def test_a_file_that_is_no_checkpoint_is_a_checkpoint_error(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    path.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        trainer().load(path)


def test_ray_checkpoints_older_than_the_given_one_are_its_fallbacks(tmp_path):
    names = [f"checkpoint_2026-12-07_19-5{second}-00.000000" for second in range(3)]
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / CHECKPOINT_FILE).write_bytes(b"")
    (tmp_path / "checkpoint_manager_snapshot.json").write_text("{}")
    assert older_checkpoint_files(tmp_path / names[2]) == [
        tmp_path / names[1] / CHECKPOINT_FILE,
        tmp_path / names[0] / CHECKPOINT_FILE,
    ]
    assert older_checkpoint_files(tmp_path / names[0]) == []

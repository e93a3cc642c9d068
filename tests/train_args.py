"""The command line of a small in-process `train.py` run, shared by the fault tests."""

from __future__ import annotations

from pathlib import Path


def in_process_train_argv(
    data_root: Path, tracking_db: Path, storage: Path, *extra: str
) -> list[str]:
    """`train.py` arguments: procedural dSprites from `data_root`, `--workers 0`, the smoke
    metric sizes, an sqlite store at `tracking_db`, checkpoints under `storage`; `extra` last,
    so it can override any of them."""
    return [
        "dsprites",
        "--workers",
        "0",
        "--data-source",
        "procedural",
        "--eval-profile",
        "smoke",
        "--data-root",
        str(data_root),
        "--tracking-uri",
        f"sqlite:///{tracking_db}",
        "--storage",
        str(storage),
        *extra,
    ]

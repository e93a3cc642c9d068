"""The experiment scripts under experiments/ run end to end on tiny data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_wae_plateau_prints_one_curve_per_seed_and_arm(tiny_data_root: Path) -> None:
    command = [sys.executable, str(REPO_ROOT / "experiments" / "wae_plateau.py"), "--seeds", "0,1"]
    command += ["--arms", "authors,softplus", "--steps", "2", "--report-every", "1"]
    done = subprocess.run(
        [*command, "--data-root", str(tiny_data_root)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [
        line.split(" | ")
        for line in done.stdout.splitlines()
        if line.startswith("| 0 ") or line.startswith("| 1 ")
    ]
    assert [(row[0], row[1]) for row in rows] == [
        ("| 0", "authors"),
        ("| 0", "softplus"),
        ("| 1", "authors"),
        ("| 1", "softplus"),
    ]
    for row in rows:
        steps = [point.split(": ") for point in row[2].split(", ")]
        assert [int(step) for step, _ in steps] == [1, 2]
        assert all(0 < float(rec) < 1e5 for _, rec in steps)

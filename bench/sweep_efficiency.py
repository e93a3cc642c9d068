"""Sweep efficiency: how much of the machine `make sweep` turns into training steps.

Runs the sweep that `make sweep` runs (`pipeline/sweep.py dsprites --profile cpu`) into a fresh
MLflow store and storage folder, then measures, in the same run:

- the sweep's wall time (its whole process, Ray's start-up included) and the CPU seconds of its
  whole process tree (sampled from /proc every 0.5 s, each process's last value kept);
- each trial's trained steps (the last step of its `train/loss` curve) and each start's
  `startup_s` (one per start: a trial resumed at a rung starts again);
- each method's single-process step time: `Trainer.train_step` on one thread with the profile's
  training configuration (batch, precision, memory layout), after a warm-up;

and reports the training core-seconds (trained steps x step time, summed over trials) over
wall x cores (the efficiency), and 1 - tree CPU seconds / (wall x cores) (the idle share), with
the console's line count and the winner's scores. Replaces the "## Sweep efficiency" section of
BENCHMARKS.md.

Usage: python bench/sweep_efficiency.py [--keep DIR] [--output BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from benchmarks_md import BENCHMARKS, cpu_model, replace_section
from trial_startup import process_tree

from pipeline.search.loader import load_search_space
from pipeline.search.types import grid_points, trial_train_config
from tcwae.data.dsprites import small_dsprites
from tcwae.trainer import Trainer, bf16_supported, resolve_precision

ROOT = Path(__file__).resolve().parent.parent
HEADING = "## Sweep efficiency"
SPACE, PROFILE = "dsprites", "cpu"
WARMUP_STEPS, TIMED_STEPS = 5, 40
SCORES = ("rec", "mig", "factor_vae", "sap")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of one process, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def run_sweep(folder: Path) -> dict:
    """`make sweep`'s command into `folder`: wall seconds, tree CPU seconds, console lines."""
    command = [
        sys.executable, str(ROOT / "pipeline" / "sweep.py"), SPACE, "--profile", PROFILE,
        "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}", "--storage", str(folder / "runs"),
    ]  # fmt: skip
    console = folder / "console.txt"
    last_cpu: dict[int, float] = {}
    started = time.perf_counter()
    with (
        console.open("w") as out,
        subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        ) as sweep,
    ):
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                for pid in process_tree(sweep.pid):
                    seconds = cpu_seconds(pid)
                    if seconds is not None:
                        last_cpu[pid] = seconds

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = sweep.wait()
        done.set()
        sampler.join()
    wall = time.perf_counter() - started
    text = console.read_text()
    if code != 0:
        raise SystemExit(f"sweep_efficiency: the sweep failed (exit {code}):\n{text[-3000:]}")
    return {"wall_s": wall, "cpu_s": sum(last_cpu.values()), "console": text}


def trials(store: Path) -> list[dict]:
    """Each child run's method, trained steps, start-up seconds (one per start) and scores."""
    with sqlite3.connect(store) as db:
        children = db.execute(
            "select run_uuid, name from runs where run_uuid in "
            "(select run_uuid from tags where key = 'mlflow.parentRunId')"
        ).fetchall()
        rows = []
        for run, name in children:
            (method,) = db.execute(
                "select value from params where run_uuid = ? and key = 'method'", (run,)
            ).fetchone()
            (steps,) = db.execute(
                "select max(step) from metrics where run_uuid = ? and key = 'train/loss'", (run,)
            ).fetchone()
            startups = [
                value
                for (value,) in db.execute(
                    "select value from metrics where run_uuid = ? and key = 'startup_s' "
                    "order by timestamp",
                    (run,),
                )
            ]
            scores = dict(
                db.execute(
                    "select key, value from latest_metrics where run_uuid = ? and key in "
                    f"({','.join('?' * len(SCORES))})",
                    (run, *SCORES),
                ).fetchall()
            )
            rows.append(
                {"name": name, "method": method, "steps": steps or 0, "startups": startups}
                | {"scores": scores}
            )
    return rows


def step_seconds() -> dict[str, float]:
    """Single-process seconds a training step of each of the profile's methods, one thread."""
    profile = load_search_space(SPACE).profile(PROFILE)
    dataset = small_dsprites((3, 6, 10, 8, 8))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    seconds: dict[str, float] = {}
    try:
        for point in grid_points(profile):
            if point["method"] in seconds:
                continue
            trainer = Trainer(trial_train_config(profile, point), dataset)
            for _ in range(WARMUP_STEPS):
                trainer.train_step()
            started = time.perf_counter()
            for _ in range(TIMED_STEPS):
                trainer.train_step()
            seconds[point["method"]] = (time.perf_counter() - started) / TIMED_STEPS
    finally:
        torch.set_num_threads(threads)
    return seconds


def section(sweep: dict, rows: list[dict], step_s: dict[str, float]) -> str:
    cores = os.cpu_count() or 1
    capacity = sweep["wall_s"] * cores
    training = sum(row["steps"] * step_s[row["method"]] for row in rows)
    startups = [value for row in rows for value in row["startups"]]
    flags = "AVX512-BF16" if bf16_supported(torch.device("cpu")) else "AVX2 only (no native bf16)"
    precision = resolve_precision("auto", torch.device("cpu"))
    winner = max(rows, key=lambda row: row["steps"])
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {cpu_model()} ({cores} cores, "
        f"{flags}; precision auto = {precision}), torch {torch.__version__}, with "
        "`.venv/bin/python bench/sweep_efficiency.py`: the `make sweep` command "
        f"(`pipeline/sweep.py {SPACE} --profile {PROFILE}`) into a fresh store, nothing else "
        "running.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| sweep wall time (Ray start-up included) | {sweep['wall_s'] / 60:.1f} min |",
        f"| training core-seconds (trained steps x single-process step time) | {training:.0f} s |",
        f"| **efficiency**: training core-seconds / (wall x {cores} cores) | "
        f"**{training / capacity:.0%}** |",
        f"| idle share: 1 - CPU seconds of the sweep's processes / (wall x {cores} cores) | "
        f"{1 - sweep['cpu_s'] / capacity:.0%} |",
        f"| trial starts | {len(startups)}: median {statistics.median(startups):.1f} s, "
        f"{min(startups):.1f}-{max(startups):.1f} s, "
        f"{sum(startups):.0f} s in all |",
        f"| console lines | {len(sweep['console'].splitlines())} |",
        "",
        "| trial | method | trained steps | starts (s) | step time (s, one core) |",
        "|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda row: -row["steps"]):
        starts = ", ".join(f"{value:.1f}" for value in row["startups"])
        lines.append(
            f"| {row['name']} | {row['method']} | {row['steps']} | {starts} | "
            f"{step_s[row['method']]:.3f} |"
        )
    scores = ", ".join(f"{key} {winner['scores'][key]:.3f}" for key in SCORES)
    lines += ["", f"The winner ({winner['name']}, {winner['steps']} steps): {scores}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in this new folder and keep it")
    parser.add_argument("--output", type=Path, default=BENCHMARKS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sweep-efficiency-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=False if args.keep else True)
        sweep = run_sweep(folder)
        rows = trials(folder / "mlflow.db")
        step_s = step_seconds()
    body = section(sweep, rows, step_s)
    print(body)
    replace_section(args.output, HEADING, body)


if __name__ == "__main__":
    main()

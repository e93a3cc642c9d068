"""Trial start-up and node memory with the data set shared through Ray's object store or loaded
by every worker: two concurrent trials of a short sweep on the full procedural dSprites
(737,280 images), each arm in turn, in one run.

Start-up is each trial's `startup_s` (its TorchTrainer starting to its first training step:
worker start, data loading, model building). Memory is the sweep's whole process tree (driver,
Ray's head processes, trial and Train worker processes) summed as proportional set size (PSS,
/proc/PID/smaps_rollup) every 0.5 s; its median (the trials train for most of the sweep) and peak
are reported. A page shared by several processes (the object store's) counts once in total, and
other work on the machine does not count. Replaces the "## Trial start-up" section of
BENCHMARKS.md.

Usage: python bench/trial_startup.py [--rounds 1] [--steps 20] [--output BENCHMARKS.md]
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

import yaml
from benchmarks_md import BENCHMARKS, cpu_model, replace_section

ROOT = Path(__file__).resolve().parent.parent
HEADING = "## Trial start-up"
ARMS = {"shared": [], "per worker": ["--data-per-worker"]}


def space(steps: int) -> dict:
    """Two WAE-MMD configurations, one seed: two trials at once on two CPUs."""
    return {
        "dataset": "dsprites",
        "description": "trial start-up benchmark",
        "rank_by": {"rec": "min", "mig": "max"},
        "methods": {
            "wae_mmd": {
                "cost": "xent",
                "params": {"lam": {"grid": [10, 100], "range": {"low": 1, "high": 1000}}},
            }
        },
        "profiles": {
            "bench": {
                "budget": "bench/trial_startup.py",
                "train": {
                    "data_source": "procedural",
                    "steps": steps,
                    "batch_size": 64,
                    "report_every": steps,
                    "checkpoint_every": steps,
                    "eval_profile": "smoke",
                },
                "seeds": [0],
                "num_samples": 2,
                "resources": {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0},
            }
        },
    }


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def tree_pss_bytes(root: int) -> int:
    total = 0
    for pid in process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def run_arm(flags: list[str], steps: int, folder: Path) -> dict[str, float]:
    """One sweep: the peak node memory above its start, and each trial's start-up."""
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(space(steps)))
    command = [
        sys.executable, str(ROOT / "pipeline" / "sweep.py"), str(path), "--profile", "bench",
        "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}", "--storage", str(folder / "runs"),
        "--max-concurrent", "2", *flags,
    ]  # fmt: skip
    env = dict(os.environ, RAY_TMPDIR=str(folder / "ray"), PYTHONPATH=str(ROOT))
    (folder / "ray").mkdir()
    samples: list[int] = []
    started = time.perf_counter()
    with subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as sweep:
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                samples.append(tree_pss_bytes(sweep.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        errors = sweep.stderr.read()
        code = sweep.wait()
        done.set()
        sampler.join()
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"trial_startup: the sweep failed:\n{errors[-3000:]}")
    with sqlite3.connect(folder / "mlflow.db") as db:
        startups = [row[0] for row in db.execute("select value from metrics where key='startup_s'")]
    if len(startups) != 2:
        raise SystemExit(f"trial_startup: expected 2 trials' startup_s, found {len(startups)}")
    return {
        "peak_gib": max(samples) / 2**30,
        "median_gib": statistics.median(samples) / 2**30,
        "startup_s": startups,
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="each arm this many times, in turn")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--output", default=str(BENCHMARKS))
    args = parser.parse_args(argv)
    results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for _ in range(args.rounds):
        for arm, flags in ARMS.items():
            with tempfile.TemporaryDirectory(prefix="tcwae-startup-") as folder:
                results[arm].append(run_arm(flags, args.steps, Path(folder)))
                print(arm, results[arm][-1], flush=True)
    rows = ["| Data set reaches the workers | trials | start-up s (median, range) | "
            "sweep's memory (PSS) GiB: median / peak | sweep wall s |",
            "|---|---|---|---|---|"]  # fmt: skip
    for arm, runs in results.items():
        startups = [s for run in runs for s in run["startup_s"]]
        peak = statistics.median(run["peak_gib"] for run in runs)
        steady = statistics.median(run["median_gib"] for run in runs)
        wall = statistics.median(run["wall_s"] for run in runs)
        rows.append(
            f"| {arm} | {len(startups)} | {statistics.median(startups):.1f} "
            f"({min(startups):.1f}-{max(startups):.1f}) | {steady:.2f} / {peak:.2f} | {wall:.0f} |"
        )
    load = os.getloadavg()[0]
    body = "\n".join(
        [
            f"Measured {datetime.now(UTC):%Y-%m-%d} on {cpu_model()}, {os.cpu_count()} cores, "
            f"load average {load:.1f} at the end; `python bench/trial_startup.py "
            f"--rounds {args.rounds} --steps {args.steps}`: a sweep of two WAE-MMD trials at once "
            "(1 worker each) on the full procedural dSprites, each arm in turn. Start-up is a "
            "trial's TorchTrainer starting to its first step; memory is the sweep's process tree "
            "summed as PSS (shared pages count once), sampled every 0.5 s: its median and its "
            "peak.",
            "",
            *rows,
        ]
    )
    print(body)
    replace_section(Path(args.output), HEADING, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Judged scores of R-WAE(MMD), R-WAE(GAN) and DSVAE against training steps (issue 32, item 5).

Trains one sequence model of the `sprite_videos` search space's `cpu` profile in process (no
Ray, no MLflow, one intra-op thread) and judges it on the 360 held-out sequences every
`--every` steps (`rung` generation sizes, 288 a direction) and at the last step (`quick`, 1,440
a direction), with the same code a sweep's trial runs at its end
(`tcwae.sequence_eval.evaluate_sequence_model`). Each judged point is appended to `--out` as one
JSON line, so runs can be spread over processes and the curves read while they grow:

    python experiments/sequence_curves.py run --method dsvae --seed 0 --steps 4000 --out C.jsonl
    python experiments/sequence_curves.py table C.jsonl   # mean +- std over seeds, every step

The budget of the `cpu` profile is chosen from these curves (RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.search.loader import load_search_space
from pipeline.search.types import trial_train_config
from tcwae.data import load_dataset
from tcwae.data.dataset import data_root
from tcwae.data.sprite_videos import held_out_part
from tcwae.metrics.sequence_judge import load_or_train_judge
from tcwae.sequence_eval import JUDGE_STEPS, SEQUENCE_EVAL_SIZES, evaluate_sequence_model
from tcwae.trainer import Trainer

SPACE, PROFILE = "sprite_videos", "cpu"
# Seed stream of the evaluation's generations, apart from training's.
EVAL_STREAM = 7
# Scores the table shows, in order: (key, short header).
COLUMNS = (
    ("rec", "Rec"),
    ("kept_static_acc", "static kept: acc"),
    ("kept_static_resampled_acc", "resampled acc"),
    ("kept_static_is", "IS"),
    ("kept_dynamics_acc", "dynamics kept: acc"),
    ("kept_dynamics_resampled_acc", "resampled acc"),
    ("kept_dynamics_is", "IS"),
)

# Per-factor accuracies: each kept factor, and each redrawn one against its source's label.
FACTOR_COLUMNS = tuple(
    (
        f"kept_{keep}_{kind}_{factor}",
        f"{factor} ({keep} kept{'' if kind == 'acc' else ', redrawn'})",
    )
    for keep, kept, redrawn in (
        ("static", ("shape", "colour", "scale"), ("motion", "rotation")),
        ("dynamics", ("motion", "rotation"), ("shape", "colour", "scale")),
    )
    for kind, factors in (("acc", kept), ("resampled_acc", redrawn))
    for factor in factors
)


@dataclass(frozen=True)
class Run:
    """One run of the `cpu` profile's trial, as the command line sets it."""

    method: str
    seed: int
    steps: int
    every: int  # a checkpoint, and a judged point, every this many steps
    batch_size: int
    root: Path  # checkpoint folders
    dz: int | None  # the per-frame code size, when a probe sets it apart from the profile's

    @property
    def folder(self) -> Path:
        dz = "" if self.dz is None else f"-dz{self.dz}"
        return self.root / f"{self.method}{dz}-seed{self.seed}"

    def config(self):
        """The profile's trial config of this method and seed, with this run's settings."""
        profile = load_search_space(SPACE).profiles[PROFILE]
        grid = profile.methods[self.method].params
        point = {
            "method": self.method,
            "seed": self.seed,
            **{name: space.grid[0] for name, space in grid.items()},
        }
        changes = {"steps": self.steps, "report_every": self.every, "batch_size": self.batch_size}
        if self.dz is not None:
            changes["dz"] = self.dz
        config = trial_train_config(profile, point)
        return type(config).from_dict({**config.to_dict(), **changes})


def train(run: Run) -> None:
    """Train the run's model, writing a checkpoint every `run.every` steps."""
    torch.set_num_threads(1)
    method, seed = run.method, run.seed
    config = run.config()
    dataset = load_dataset(SPACE, source=config.data_source)
    trainer = Trainer(config, dataset, "cpu")
    folder = run.folder
    folder.mkdir(parents=True, exist_ok=True)
    started = time.process_time()
    timings: dict[str, float] = {}

    def save(step: int, losses: dict[str, float]) -> None:
        trainer.save(folder / f"step{step:06d}.pt")
        timings[str(step)] = time.process_time() - started
        (folder / "train_cpu_s.json").write_text(json.dumps(timings))
        print(f"{method} seed {seed} step {step}: train rec {losses['rec']:.0f}", flush=True)

    trainer.train(on_report=save)


def judge(run: Run, out: Path) -> None:
    """Judge every checkpoint of one run on the held-out sequences; append one line each."""
    torch.set_num_threads(1)
    method, seed, steps = run.method, run.seed, run.steps
    config = run.config()
    dataset = load_dataset(SPACE, source=config.data_source)
    held_out = held_out_part(dataset)
    classifier, record = load_or_train_judge(dataset, held_out, data_root(), JUDGE_STEPS["quick"])
    trainer = Trainer(config, dataset, "cpu")
    folder = run.folder
    timings = json.loads((folder / "train_cpu_s.json").read_text())
    for path in sorted(folder.glob("step*.pt")):
        trainer.load(path)
        size = "quick" if trainer.step == steps else "rung"
        rng = np.random.default_rng([seed, EVAL_STREAM, trainer.step])
        scores = evaluate_sequence_model(
            trainer.autoencoder, held_out, classifier, rng, SEQUENCE_EVAL_SIZES[size], config.cost
        )
        point = {
            "method": method,
            "seed": seed,
            "step": trainer.step,
            "batch_size": config.batch_size,
            "precision": trainer.precision,
            "dz": config.dz,
            "eval": size,
            "train_cpu_s": timings.get(str(trainer.step)),
            **config.hyperparameters,
            **record.scores(),
            **scores,
        }
        with open(out, "a") as handle:
            handle.write(json.dumps(point) + "\n")
        print(
            f"{method} seed {seed} step {trainer.step}: rec {scores['rec']:.0f} static acc "
            f"{scores['kept_static_acc']:.3f} dynamics acc {scores['kept_dynamics_acc']:.3f}",
            flush=True,
        )


def table(path: Path, steps: set[int] | None = None, columns=COLUMNS) -> str:
    """Markdown: mean +- std over seeds of each column, a row per (method, step) (`steps`: only
    these)."""
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for line in Path(path).read_text().splitlines():
        point = json.loads(line)
        if steps is None or point["step"] in steps:
            groups[(point["method"], point["step"])].append(point)
    header = ["method", "step", "n", *(name for _, name in columns)]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (method, step), points in sorted(groups.items()):
        cells = [method, str(step), str(len(points))]
        for key, _ in columns:
            values = np.array([point[key] for point in points], dtype=float)
            digits = 0 if key == "rec" else 3
            spread = values.std(ddof=1) if len(values) > 1 else 0.0
            cells.append(f"{values.mean():.{digits}f} ± {spread:.{digits}f}")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("train", "train one model, checkpoints every --every steps"),
        ("judge", "judge every checkpoint of one model, append to --out"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--method", required=True, choices=("rwae_mmd", "rwae_gan", "dsvae"))
        command.add_argument("--seed", type=int, default=0)
        command.add_argument("--steps", type=int, default=4000)
        command.add_argument("--every", type=int, default=500)
        command.add_argument("--batch-size", type=int, default=16)
        command.add_argument("--root", type=Path, required=True, help="checkpoint folder")
        command.add_argument("--dz", type=int, help="per-frame code size (default: the profile's)")
    commands.choices["judge"].add_argument("--out", type=Path, required=True, help="JSON lines")
    show = commands.add_parser("table", help="mean +- std over seeds of a curves file")
    show.add_argument("path", type=Path)
    show.add_argument("--steps", help="comma-separated steps to show (default: all)")
    show.add_argument("--factors", action="store_true", help="per-factor accuracies instead")
    args = parser.parse_args()
    if args.command == "table":
        steps = {int(step) for step in args.steps.split(",")} if args.steps else None
        print(table(args.path, steps, FACTOR_COLUMNS if args.factors else COLUMNS))
        return
    run = Run(args.method, args.seed, args.steps, args.every, args.batch_size, args.root, args.dz)
    if args.command == "train":
        train(run)
    else:
        judge(run, args.out)


if __name__ == "__main__":
    main()

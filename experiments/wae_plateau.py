"""Which setting keeps WAE-MMD on dSprites stuck at the mean-image plateau?

With the authors' Adam (lr 8e-4, epsilon 1e-8), WAE-MMD seed 1 reaches a reconstruction of about
675 nats by step 200 (the decoder draws the data set's mean image, the code carries nothing) and
stays there for all 4,000 steps of the optimizer ablation. This trains each arm in process (no
Ray, no MLflow) for a few hundred steps and prints the training reconstruction at every report,
so that the arms can be told apart by when, or whether, they leave the plateau.

    python experiments/wae_plateau.py --seeds 0,1,2 --arms authors,softplus --steps 400
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from pipeline.search.loader import load_search_space
from pipeline.search.types import trial_train_config
from tcwae.config import TrainConfig
from tcwae.data import FactorDataset, load_dataset
from tcwae.trainer import Trainer

# The sweep whose WAE-MMD trial this probes (lam 200, cross-entropy, batch 64, authors' Adam).
SPACE, PROFILE = "dsprites_table1a", "cpu_baselines_long"
# Each arm's changes to that trial.
ARMS: dict[str, dict[str, float | str]] = {
    "authors": {},
    "lr4e-4": {"lr": 4e-4},
    "eps8e-4": {"adam_eps": 8e-4},
    "paper": {"optimizer": "paper"},
    "softplus": {"variance": "softplus"},
}


def arm_config(arm: str, seed: int, steps: int, report_every: int) -> TrainConfig:
    """The profile's WAE-MMD trial for `seed`, shortened to `steps`, with `arm`'s changes."""
    profile = load_search_space(SPACE).profiles[PROFILE]
    trial = trial_train_config(profile, {"method": "wae_mmd", "seed": seed})
    config = dataclasses.replace(
        trial, data_source="procedural", steps=steps, report_every=report_every, **ARMS[arm]
    )
    config.validate(f"{SPACE}: {PROFILE}: arm {arm}")
    return config


def reconstruction_curve(config: TrainConfig, dataset: FactorDataset) -> list[tuple[int, float]]:
    """(step, training reconstruction averaged since the previous report) over one run."""
    curve: list[tuple[int, float]] = []
    Trainer(config, dataset, "cpu").train(
        on_report=lambda step, losses: curve.append((step, losses["rec"]))
    )
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1", help="comma-separated training seeds")
    parser.add_argument(
        "--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}"
    )
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--report-every", type=int, default=100)
    parser.add_argument("--data-root", default=None, help="data root (default: tcwae's)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = load_dataset("dsprites", args.data_root, source="procedural")
    print("| seed | arm | Rec at steps ... | s |\n|---|---|---|---|")
    for seed in (int(s) for s in args.seeds.split(",")):
        for arm in args.arms.split(","):
            config = arm_config(arm, seed, args.steps, args.report_every)
            started = time.monotonic()
            curve = reconstruction_curve(config, dataset)
            values = ", ".join(f"{step}: {rec:.1f}" for step, rec in curve)
            print(f"| {seed} | {arm} | {values} | {time.monotonic() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()

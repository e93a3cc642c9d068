"""CPU seconds a step of each sequence model and of the judge, to size a sprite-video comparison.

Times `Trainer.train_step` of R-WAE(MMD), R-WAE(GAN) and DSVAE on the full sprite-video grid, and
one judge training step, with `time.process_time` on one intra-op thread: the CPU time a trial
spends, which a loaded machine inflates far less than wall time. Prints one line each.
Run: `PYTHONPATH=. .venv/bin/python bench/sequence_cost.py [--batch-size 32] [--steps 3]`.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from tcwae.config import TrainConfig
from tcwae.data import load_dataset
from tcwae.methods import SEQUENCE_METHODS
from tcwae.metrics.sequence_judge import BATCH_SIZE, LEARNING_RATE, Judge
from tcwae.trainer import Trainer


def cpu_seconds_per_call(step, calls: int) -> float:
    """Process CPU seconds per call of `step`, after one untimed warm-up call."""
    step()
    start = time.process_time()
    for _ in range(calls):
        step()
    return (time.process_time() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = load_dataset("sprite_videos")
    for method in SEQUENCE_METHODS:
        cfg = TrainConfig.from_dict(
            {"dataset": "sprite_videos", "method": method, "batch_size": args.batch_size}
        )
        trainer = Trainer(cfg, dataset)
        seconds = cpu_seconds_per_call(trainer.train_step, args.steps)
        print(f"{method}: {seconds:.2f} CPU s a step (batch {args.batch_size})", flush=True)

    judge = Judge(dataset.num_frames, dataset.num_channels, dataset.factor_sizes)
    optimizer = torch.optim.Adam(judge.parameters(), lr=LEARNING_RATE)
    targets = torch.from_numpy(dataset.factor_classes)
    generator = torch.Generator().manual_seed(0)

    def judge_step() -> None:
        pick = torch.randint(len(dataset), (BATCH_SIZE,), generator=generator)
        logits = judge(dataset.float_batch(pick))
        loss = sum(F.cross_entropy(head, targets[pick, k]) for k, head in enumerate(logits))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds = cpu_seconds_per_call(judge_step, args.steps)
    print(f"judge: {seconds:.2f} CPU s a step (batch {BATCH_SIZE})", flush=True)


if __name__ == "__main__":
    main()

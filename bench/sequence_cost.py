"""CPU seconds a step of each sequence model and of the judge, to size a sprite-video comparison.

Times `Trainer.train_step` of R-WAE(MMD), R-WAE(GAN) and DSVAE on the full sprite-video grid, and
one judge training step, with `time.process_time` on one intra-op thread: the CPU time a trial
spends, which a loaded machine inflates far less than wall time. Prints one line each and
writes BENCHMARKS.md's "Sequence models" section (`--no-write`: print only).
Run: `.venv/bin/python bench/sequence_cost.py [--batch-sizes 16,32] [--steps 3]`.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F
from benchmarks_md import BENCHMARKS, cpu_model, replace_section

from tcwae.config import TrainConfig
from tcwae.data import load_dataset
from tcwae.methods import SEQUENCE_METHODS
from tcwae.metrics.sequence_judge import BATCH_SIZE, LEARNING_RATE, Judge
from tcwae.trainer import Trainer, bf16_supported, resolve_precision

SECTION = "## Sequence models (sprite videos)"


def cpu_seconds_per_call(step, calls: int) -> float:
    """Process CPU seconds per call of `step`, after one untimed warm-up call."""
    step()
    start = time.process_time()
    for _ in range(calls):
        step()
    return (time.process_time() - start) / calls


def model_step_seconds(dataset, method: str, batch_size: int, steps: int) -> float:
    """CPU seconds of one training step of a sequence method at `batch_size`."""
    config = TrainConfig.from_dict(
        {"dataset": "sprite_videos", "method": method, "batch_size": batch_size}
    )
    return cpu_seconds_per_call(Trainer(config, dataset).train_step, steps)


def judge_step_seconds(dataset, steps: int) -> float:
    """CPU seconds of one training step of the judge (its own batch size)."""
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

    return cpu_seconds_per_call(judge_step, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="16,32", help="comma-separated batch sizes")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = load_dataset("sprite_videos")
    batch_sizes = [int(value) for value in args.batch_sizes.split(",")]
    rows = []
    for method in SEQUENCE_METHODS:
        seconds = [model_step_seconds(dataset, method, b, args.steps) for b in batch_sizes]
        rows.append(f"| `{method}` | " + " | ".join(f"{value:.2f}" for value in seconds) + " |")
        print(rows[-1], flush=True)
    judge = judge_step_seconds(dataset, args.steps)
    print(f"judge: {judge:.2f} CPU s a step (batch {BATCH_SIZE})", flush=True)
    bf16 = bf16_supported(torch.device("cpu"))
    text = "\n".join(
        [
            f"`python bench/sequence_cost.py` ({time.strftime('%Y-%m-%d')}; {cpu_model()}, "
            f"{os.cpu_count()} cores, native bf16 {'yes' if bf16 else 'no'}, so precision auto "
            f"ran {resolve_precision('auto', torch.device('cpu'))}; torch {torch.__version__}, "
            "one intra-op thread): process "
            f"CPU seconds of one training step on the full sprite-video grid (default sizes), "
            f"mean of {args.steps} steps after one untimed step.",
            "",
            "| method | " + " | ".join(f"batch {b}" for b in batch_sizes) + " |",
            "|---|" + "---|" * len(batch_sizes),
            *rows,
            "",
            f"The judge: {judge:.2f} CPU s a step at batch {BATCH_SIZE}. A sweep's trial also "
            "pays Ray's start-up and the evaluation; the measured `cpu` sweep of "
            "`sprite_videos` (docs/sweeps.md, *What the profiles cost*) is the whole-sweep figure.",
        ]
    )
    if not args.no_write:
        replace_section(BENCHMARKS, SECTION, text)
        print(f"wrote {BENCHMARKS}")


if __name__ == "__main__":
    main()

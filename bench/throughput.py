"""Training throughput: `tcwae.trainer.Trainer` against a plain reference loop, every method.

The reference is the step most public implementations write: the same networks, objective and
optimisers, fed by a `torch.utils.data.DataLoader` over a per-item `Dataset` of float images
(shuffled, `drop_last`, default collate, no worker processes: on two cores a worker only takes
time from the step), every term logged with `.item()`. The trainer draws random indices into the
uint8 images held on the training device and converts only the batch. On the CPU the trainer runs
twice: with the default config (float32, NCHW) and with `channels_last: true`.

Variants of one configuration run interleaved in rounds (a few steps each in turn), so load from
other processes falls on all of them alike; warm-up steps are not timed. On a CUDA machine the
trainer also runs with the data on the GPU, bf16 autocast, channels_last and torch.compile.

Prints a markdown table and writes (or replaces) the "## Training throughput" section of
BENCHMARKS.md. Run: `.venv/bin/python bench/throughput.py` (about 5-10 minutes on 2 idle cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from benchmarks_md import BENCHMARKS, cpu_model, replace_section
from torch.utils.data import DataLoader, Dataset

from tcwae.config import TrainConfig
from tcwae.data.dsprites import small_dsprites
from tcwae.methods import METHODS, StepRandomness, build_method
from tcwae.trainer import Trainer

SECTION = "## Training throughput"
BATCH_SIZES = (64, 256)
DSPRITES_GRID = (3, 6, 10, 8, 8)


class FloatImages(Dataset):
    """The usual per-item dataset: float images in [0, 1], one tensor per `__getitem__`."""

    def __init__(self, images_uint8: torch.Tensor) -> None:
        self.images = images_uint8.float() / 255.0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


class ReferenceLoop:
    """Same objective and optimisers as the trainer, fed the way most public code feeds them."""

    def __init__(self, cfg: TrainConfig, dataset, device: torch.device) -> None:
        self.device = device
        self.objective = build_method(cfg, dataset.num_channels, len(dataset)).to(device)
        generator = torch.Generator(device=device).manual_seed(cfg.seed)
        self.objective.randomness = StepRandomness(generator)
        self.optimizer = torch.optim.Adam(
            self.objective.autoencoder.parameters(),
            lr=cfg.lr,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            eps=cfg.adam_eps,
        )
        self.disc_optimizer = (
            torch.optim.Adam(
                self.objective.discriminators.parameters(),
                lr=cfg.disc_lr,
                betas=(cfg.disc_beta1, cfg.disc_beta2),
                eps=cfg.disc_eps,
            )
            if self.objective.adversarial
            else None
        )
        self.loader = DataLoader(
            FloatImages(dataset.images),
            batch_size=cfg.batch_size,
            shuffle=True,
            drop_last=True,
            pin_memory=device.type == "cuda",
        )
        self.batches = iter(self.loader)

    def _next_batch(self) -> torch.Tensor:
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)

    def step(self) -> dict[str, float]:
        x = self._next_batch().to(self.device, non_blocking=True)
        output = self.objective(x)
        terms = output.terms
        self.optimizer.zero_grad()
        terms["loss"].backward()
        self.optimizer.step()
        if self.disc_optimizer is not None:
            terms["disc_loss"] = self.objective.discriminator_loss(output.codes)
            self.disc_optimizer.zero_grad()
            terms["disc_loss"].backward()
            self.disc_optimizer.step()
        return {name: value.item() for name, value in terms.items()}


@dataclass
class Variant:
    name: str
    step: Callable[[], object]
    images: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    variants: list[Variant],
    batch_size: int,
    device: torch.device,
    warmup: int,
    rounds: int,
    steps_per_round: int,
) -> None:
    """Warm every variant up, then time them in interleaved rounds (rotating who goes first)."""
    for variant in variants:
        for _ in range(warmup):
            variant.step()
    synchronise(device)
    for round_index in range(rounds):
        shift = round_index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            start = time.perf_counter()
            for _ in range(steps_per_round):
                variant.step()
            synchronise(device)
            variant.seconds += time.perf_counter() - start
            variant.images += steps_per_round * batch_size


def trainer_variant(name: str, cfg: TrainConfig, dataset, device: torch.device) -> Variant:
    trainer = Trainer(cfg, dataset, device=device)
    trainer.autoencoder.train()
    trainer.objective.discriminators.train()
    return Variant(name, trainer.train_step)


def run_configuration(
    method: str, batch_size: int, dataset, device: torch.device, timed_images: int, rounds: int
) -> dict[str, float]:
    cfg = TrainConfig(
        method=method,
        batch_size=batch_size,
        steps=10**9,
        report_every=10**9,
        checkpoint_every=10**9,
        seed=0,
    )
    steps_per_round = max(1, round(timed_images / (rounds * batch_size)))
    reference = ReferenceLoop(cfg, dataset, device)
    variants = [Variant("reference", reference.step)]
    if device.type == "cuda":
        fast = cfg.replace(bf16=True, channels_last=True, compile=True)
        variants.append(trainer_variant("trainer", fast, dataset, device))
        warmup = 5
    else:
        variants.append(trainer_variant("trainer", cfg, dataset, device))
        cl_cfg = cfg.replace(channels_last=True)
        variants.append(trainer_variant("trainer_channels_last", cl_cfg, dataset, device))
        warmup = 2
    measure(variants, batch_size, device, warmup, rounds, steps_per_round)
    return {variant.name: variant.rate for variant in variants}


def feeding_milliseconds(dataset, batch_size: int, batches: int = 40) -> dict[str, float]:
    """Milliseconds to produce one float CPU batch: the reference's DataLoader against the
    trainer's index gather into uint8 images (what `Trainer._batch` does), interleaved."""
    loader = DataLoader(FloatImages(dataset.images), batch_size, shuffle=True, drop_last=True)
    generator = torch.Generator().manual_seed(0)
    batches_left = iter(loader)

    def reference() -> torch.Tensor:
        nonlocal batches_left
        try:
            return next(batches_left)
        except StopIteration:
            batches_left = iter(loader)
            return next(batches_left)

    def gather() -> torch.Tensor:
        indices = torch.randint(len(dataset), (batch_size,), generator=generator)
        return dataset.images[indices].float().div_(255.0)

    seconds = {"dataloader": 0.0, "index_gather": 0.0}
    for _ in range(4):
        for name, feed in (("dataloader", reference), ("index_gather", gather)):
            start = time.perf_counter()
            for _ in range(batches // 4):
                feed()
            seconds[name] += time.perf_counter() - start
    return {name: 1000 * total / batches for name, total in seconds.items()}


def format_table(rows: list[dict[str, object]], cuda: bool) -> str:
    header = (
        "| method | batch | device | reference img/s | trainer img/s | trainer / reference "
        "| trainer channels_last img/s | channels_last / reference |"
    )
    lines = [header, "|" + " --- |" * 8]
    for row in rows:
        rates = row["rates"]
        reference = rates["reference"]
        cells = [row["method"], row["batch"], row["device"], f"{reference:.1f}"]
        cells += [f"{rates['trainer']:.1f}", f"{rates['trainer'] / reference:.2f}x"]
        if "trainer_channels_last" in rates:
            channels_last = rates["trainer_channels_last"]
            cells += [f"{channels_last:.1f}", f"{channels_last / reference:.2f}x"]
        else:
            cells += ["(in trainer column)", "-"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if not cuda:
        lines.append("| all | 64, 256 | cuda | not measured (no CUDA device) | - | - | - | - |")
    return "\n".join(lines)


def summarise(rows: list[dict[str, object]], target: float = 1.3) -> list[str]:
    """One line per trainer variant on the CPU: median and range of its speed-up, and whether
    the median meets the target."""
    lines = []
    for variant in ("trainer", "trainer_channels_last"):
        ratios = sorted(
            row["rates"][variant] / row["rates"]["reference"]
            for row in rows
            if row["device"] == "cpu" and variant in row["rates"]
        )
        if not ratios:
            continue
        median = statistics.median(ratios)
        verdict = "meets" if median >= target else "does not meet"
        lines.append(
            f"- CPU, {variant} / reference: median {median:.2f}x (range {ratios[0]:.2f}x to "
            f"{ratios[-1]:.2f}x over {len(ratios)} configurations); {verdict} the "
            f"{target:.1f}x target."
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--timed-images", type=int, default=512, help="per variant and config")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    methods = args.methods.split(",")

    torch.manual_seed(0)
    load_before = os.getloadavg()
    started = time.perf_counter()
    dataset = small_dsprites(DSPRITES_GRID)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    rows = []
    for device in devices:
        for method in methods:
            for batch_size in BATCH_SIZES:
                rates = run_configuration(
                    method, batch_size, dataset, device, args.timed_images, args.rounds
                )
                rows.append(
                    {"method": method, "batch": batch_size, "device": device.type, "rates": rates}
                )
                print(method, batch_size, device.type, {k: round(v, 1) for k, v in rates.items()})
    feeding = {batch_size: feeding_milliseconds(dataset, batch_size) for batch_size in BATCH_SIZES}
    elapsed = time.perf_counter() - started
    load_after = os.getloadavg()

    cuda = torch.cuda.is_available()
    table = format_table(rows, cuda)
    busy = max(load_before[0], load_after[0]) > (os.cpu_count() or 1)
    grid = "x".join(map(str, DSPRITES_GRID))
    body = "\n".join(
        [
            f"Command: `.venv/bin/python bench/throughput.py` ({elapsed / 60:.1f} min).",
            f"Machine: {cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch "
            f"threads, torch {torch.__version__}, "
            f"GPU: {torch.cuda.get_device_name() if cuda else 'none'}.",
            f"Load average (1 min): {load_before[0]:.1f} at the start, {load_after[0]:.1f} at "
            "the end"
            + (
                "; other jobs shared the cores, so absolute figures are low and "
                "noisy, ratios less so (variants are interleaved)."
                if busy
                else "."
            ),
            "",
            f"Training images per second on procedural dSprites (grid {grid}, {len(dataset)} "
            "images), paper networks (Table 3), d_z = 10. Each figure is "
            f"{args.timed_images} images per variant, timed in {args.rounds} interleaved "
            "rounds after warm-up steps.",
            "*reference*: the same objective and optimisers fed by a DataLoader over a per-item "
            "float Dataset, every term logged with `.item()`. *trainer*: "
            "`tcwae.trainer.Trainer.train_step` with the default config (float32, NCHW); on GPU "
            "with the data on the device, bf16, channels_last and torch.compile. *trainer "
            "channels_last*: the same as *trainer* with `channels_last: true`.",
            "",
            table,
            "",
            *summarise(rows),
            "",
            "Producing one float batch on the CPU, the only work that differs between the two "
            "loops (milliseconds per batch):",
            "",
            "| batch | DataLoader over per-item Dataset | index gather + convert (trainer) |",
            "| --- | --- | --- |",
            *(
                f"| {b} | {ms['dataloader']:.2f} | {ms['index_gather']:.2f} |"
                for b, ms in feeding.items()
            ),
        ]
    )
    print(table)
    print("\n".join(summarise(rows)))
    if not args.no_write:
        replace_section(BENCHMARKS, SECTION, body)
        print(f"wrote {BENCHMARKS}")


if __name__ == "__main__":
    main()

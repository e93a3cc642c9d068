"""Training throughput against the machine's ceiling: every lever of the step, every method.

For each method and batch size the variants below run interleaved in rounds (a few steps each
in turn, rotating who goes first), so load from other processes falls on all of them alike:

- *reference*: a plain PyTorch loop: the same networks, objective and optimisers fed by a
  `DataLoader` over a per-item float `Dataset`, every term read with `.item()` each step;
- *trainer*: `tcwae.trainer.Trainer.train_step` with the default config (`precision: auto`,
  which is bf16 only where the device runs it natively);
- *float32*, *channels_last*, *compile* (torch.compile, default mode), *bf16*: one lever each
  on top of float32 in NCHW order (the default config is channels_last since it measured
  faster on CPU); where bf16 is native also *bf16_compile*, and on a GPU *cuda_graphs*
  (bf16, torch.compile mode reduce-overhead).

The ceiling is measured in the same run: a large GEMM (the step's dominant work) in float32 and
in bfloat16 at the same thread count gives GFLOP/s, and the step's FLOP per image (torch's FLOP
counter over one float32 step) turns each variant's images/s into a fraction of the ceiling of
its own precision. `--threads` sets torch's intra-op threads (a trial's CPU share); `threads` in
the table is per run, and images/s per core is images/s / threads.

Prints a markdown table and writes (or replaces) the "## Training throughput" section of
BENCHMARKS.md. Run: `.venv/bin/python bench/throughput.py` (about 15 minutes on 2 idle cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from benchmarks_md import BENCHMARKS, cpu_model, replace_section
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from tcwae.config import TrainConfig
from tcwae.data.dsprites import small_dsprites
from tcwae.methods import StepRandomness, build_method, methods_for
from tcwae.trainer import Trainer, bf16_supported

SECTION = "## Training throughput"
BATCH_SIZES = (64, 256)
DSPRITES_GRID = (3, 6, 10, 8, 8)
GEMM_SIDE = 1024
NCHW = {"channels_last": False}
LEVERS = {
    "float32": {"precision": "float32", **NCHW},
    "channels_last": {"precision": "float32", "channels_last": True},
    "compile": {"precision": "float32", "compile": True, **NCHW},
    "bf16": {"precision": "bf16", **NCHW},
    "bf16_compile": {"precision": "bf16", "compile": True, **NCHW},
    "cuda_graphs": {
        "precision": "bf16",
        "compile": True,
        "compile_mode": "reduce-overhead",
        **NCHW,
    },
}


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
        model_adam, disc_adam = cfg.adam()
        self.optimizer = torch.optim.Adam(
            self.objective.autoencoder.parameters(),
            lr=model_adam.lr,
            betas=model_adam.betas,
            eps=model_adam.eps,
        )
        self.disc_optimizer = (
            torch.optim.Adam(
                self.objective.discriminators.parameters(),
                lr=disc_adam.lr,
                betas=disc_adam.betas,
                eps=disc_adam.eps,
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
        self.diagnostics = StepRandomness(torch.Generator(device=device).manual_seed(1))

    def _next_batch(self) -> torch.Tensor:
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)

    def step(self) -> dict[str, float]:
        x = self._next_batch().to(self.device, non_blocking=True)
        output = self.objective(x, diagnostics=self.diagnostics)
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
    precision: str
    step: Callable[[], object]
    rates: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_gflops(dtype: torch.dtype, device: torch.device, seconds: float = 1.5) -> float:
    """GFLOP/s of a square GEMM of side GEMM_SIDE: the ceiling the step's products can reach."""
    a = torch.randn(GEMM_SIDE, GEMM_SIDE, device=device, dtype=dtype)
    b = torch.randn(GEMM_SIDE, GEMM_SIDE, device=device, dtype=dtype)
    a @ b
    synchronise(device)
    rates = []
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            a @ b
            count += 1
        synchronise(device)
        rates.append(2 * GEMM_SIDE**3 * count / (time.perf_counter() - start) / 1e9)
    return max(rates)


def flop_per_image(method: str, batch_size: int, dataset, device: torch.device) -> float:
    """FLOP of one float32 training step per image (forward, backward, discriminator step)."""
    cfg = TrainConfig(method=method, batch_size=batch_size, steps=10**9, precision="float32")
    trainer = Trainer(cfg, dataset, device=device)
    trainer.train_step()
    with FlopCounterMode(display=False) as counter:
        trainer.train_step()
    return counter.get_total_flops() / batch_size


def measure(
    variants: list[Variant], batch_size: int, device: torch.device, rounds: int, steps: int
):
    """Warm every variant up (compiling where asked), then time them in interleaved rounds."""
    for variant in variants:
        for _ in range(3):
            variant.step()
    synchronise(device)
    for round_index in range(rounds):
        shift = round_index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            start = time.perf_counter()
            for _ in range(steps):
                variant.step()
            synchronise(device)
            variant.rates.append(steps * batch_size / (time.perf_counter() - start))


def trainer_variant(name: str, cfg: TrainConfig, dataset, device: torch.device) -> Variant:
    trainer = Trainer(cfg, dataset, device=device)
    return Variant(name, trainer.precision, trainer.train_step)


def levers_for(method: str, batch_size: int, device: torch.device, args) -> list[str]:
    """Which levers to time: bf16 only where the device runs it natively (elsewhere once, to
    show the emulated path), compile at batch 64 (its compile time is minutes on a CPU)."""
    native_bf16 = bf16_supported(device)
    chosen = ["float32", "channels_last"]
    if batch_size == BATCH_SIZES[0] and not args.no_compile:
        chosen.append("compile")
    if native_bf16 or (method == args.emulated_bf16_method and batch_size == BATCH_SIZES[0]):
        chosen.append("bf16")
    if native_bf16 and not args.no_compile:
        chosen.append("bf16_compile")
    if device.type == "cuda" and not args.no_compile:
        chosen.append("cuda_graphs")
    return chosen


def run_configuration(method: str, batch_size: int, dataset, device: torch.device, args):
    base = TrainConfig(
        method=method, batch_size=batch_size, steps=10**9, report_every=10**9, seed=0
    )
    steps = max(1, round(args.timed_images / (args.rounds * batch_size)))
    variants = [
        Variant(
            "reference",
            "float32",
            ReferenceLoop(base.replace(precision="float32"), dataset, device).step,
        ),
        trainer_variant("trainer", base, dataset, device),
    ]
    for lever in levers_for(method, batch_size, device, args):
        variants.append(trainer_variant(lever, base.replace(**LEVERS[lever]), dataset, device))
    measure(variants, batch_size, device, args.rounds, steps)
    return variants


def format_rows(rows: list[dict], ceilings: dict[str, float], threads: int) -> list[str]:
    lines = [
        "| method | batch | variant | precision | img/s | img/s per core | % of ceiling "
        "| / reference |",
        "|" + " --- |" * 8,
    ]
    for row in rows:
        reference = next(v.rate for v in row["variants"] if v.name == "reference")
        for variant in row["variants"]:
            ceiling_images = ceilings[variant.precision] * 1e9 / row["flop"]
            lines.append(
                f"| {row['method']} | {row['batch']} | {variant.name} | {variant.precision} "
                f"| {variant.rate:.0f} | {variant.rate / threads:.0f} "
                f"| {100 * variant.rate / ceiling_images:.0f}% | {variant.rate / reference:.2f}x |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(methods_for(sequences=False)))
    parser.add_argument("--timed-images", type=int, default=768, help="per variant and config")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument(
        "--emulated-bf16-method",
        default="beta_tcvae",
        help="where bf16 is not native, time it once, for this method at batch 64",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    load_before = os.getloadavg()
    started = time.perf_counter()
    dataset = small_dsprites(DSPRITES_GRID)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ceilings = {
        "float32": gemm_gflops(torch.float32, device),
        "bf16": gemm_gflops(torch.bfloat16, device),
    }
    rows = []
    for method in args.methods.split(","):
        for batch_size in BATCH_SIZES:
            flop = flop_per_image(method, batch_size, dataset, device)
            variants = run_configuration(method, batch_size, dataset, device, args)
            rows.append({"method": method, "batch": batch_size, "flop": flop, "variants": variants})
            print(
                method,
                batch_size,
                f"{flop / 1e9:.4f} GFLOP/img",
                {v.name: round(v.rate) for v in variants},
                flush=True,
            )
    elapsed = time.perf_counter() - started
    load_after = os.getloadavg()

    busy = max(load_before[0], load_after[0]) > (os.cpu_count() or 1)
    flops = "; ".join(f"{r['method']} b{r['batch']} {r['flop'] / 1e9:.4f}" for r in rows)
    body = "\n".join(
        [
            f"Command: `.venv/bin/python bench/throughput.py --threads {args.threads}` "
            f"({elapsed / 60:.1f} min, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
            f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{args.threads} torch thread(s), device {device.type}"
            f"{' (' + torch.cuda.get_device_name() + ')' if device.type == 'cuda' else ''}; "
            f"native bf16: {'yes' if bf16_supported(device) else 'no'}.",
            f"Load average (1 min): {load_before[0]:.1f} at the start, {load_after[0]:.1f} at "
            "the end"
            + (
                "; other jobs shared the cores: absolute figures are low and noisy, ratios "
                "within a row group less so (variants interleaved)."
                if busy
                else "."
            ),
            "",
            f"GEMM ceiling ({GEMM_SIDE}x{GEMM_SIDE}, same threads, same run): float32 "
            f"{ceilings['float32']:.0f} GFLOP/s, bf16 {ceilings['bf16']:.0f} GFLOP/s.",
            f"FLOP per image of one float32 step (GFLOP): {flops}.",
            "",
            "Images per second on procedural dSprites (grid "
            f"{'x'.join(map(str, DSPRITES_GRID))}), Table-3 networks, d_z = 10, median of "
            f"{args.rounds} interleaved rounds ({args.timed_images} images per variant). "
            "*% of ceiling*: images/s x FLOP per image / the GEMM ceiling of the variant's "
            "precision. *trainer* is the default config; the other rows add one lever to "
            "float32; *reference* is a DataLoader-fed loop reading every term each step.",
            "",
            *format_rows(rows, ceilings, args.threads),
        ]
    )
    print(body)
    if not args.no_write:
        replace_section(BENCHMARKS, SECTION, body)
        print(f"wrote {BENCHMARKS}")


if __name__ == "__main__":
    main()

"""Data-layer benchmark: dSprites and Shapes3D render times, cache sizes and load times, and batch
throughput.

Throughput compares what the trainer does (index the in-memory uint8 tensor with a batch of random
indices, then `.float() / 255`) with the pipeline most peer projects use (a per-item
`torch.utils.data.Dataset` behind a shuffling `DataLoader`, batch 256), side by side in one run on
the same images. Prints a markdown table and replaces the "## Data" section of BENCHMARKS.md.

OpenMP threads that spin while they wait make every parallel torch op 10-30x slower when other
processes share the cores (measured on the 2-core machines here), so unless the caller chose a
policy this script runs with OMP_WAIT_POLICY=PASSIVE; it must be set before torch is imported.

Usage: python bench/data.py [--output BENCHMARKS.md] [--seconds 1.5] [--rounds 5]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import gc  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TypeVar  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from benchmarks_md import cpu_model, replace_section  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from tcwae.data import FactorDataset, load_dataset, procedural_dsprites  # noqa: E402
from tcwae.data.cache import cache_path, write_cache  # noqa: E402
from tcwae.data.shapes3d import CACHE_COMPRESSION, render_shapes3d  # noqa: E402

BATCH = 256
T = TypeVar("T")
SECTION = "## Data"


class PerItemDataset(Dataset):
    """The usual peer pipeline: one image at a time, converted to float, collated by the loader."""

    def __init__(self, images: np.ndarray, factors: np.ndarray) -> None:
        self.images = images
        self.factors = factors

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(self.images[index]).float() / 255.0
        return image, torch.from_numpy(self.factors[index])


class FactorDatasetStream:
    """Random float batches drawn straight from the uint8 tensor, as the trainer draws them.

    `naive` uses advanced indexing (`images[indices]`) instead of `FactorDataset.float_batch`;
    `threads` pins torch's intra-op threads while this stream is measured.
    """

    def __init__(self, dataset: FactorDataset, naive: bool = False, threads: int = 0) -> None:
        self.dataset, self.naive, self.threads = dataset, naive, threads
        self.factors = torch.from_numpy(dataset.factor_classes)
        self.generator = torch.Generator().manual_seed(0)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        indices = torch.randint(len(self.dataset), (BATCH,), generator=self.generator)
        if self.naive:
            images = self.dataset.images[indices].float().div_(255.0)
        else:
            images = self.dataset.float_batch(indices)
        return images, self.factors[indices]


class LoaderStream:
    """A shuffling DataLoader over the per-item Dataset; its start-up is not timed."""

    threads = 0

    def __init__(self, dataset: FactorDataset, workers: int) -> None:
        self.loader = DataLoader(
            PerItemDataset(dataset.images.numpy(), dataset.factor_classes),
            batch_size=BATCH,
            shuffle=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            drop_last=True,
            generator=torch.Generator().manual_seed(0),
        )
        self.iterator = iter(self.loader)
        self.next_batch()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            return next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.loader)
            return next(self.iterator)


def images_per_second(stream: FactorDatasetStream | LoaderStream, seconds: float) -> float:
    default_threads = torch.get_num_threads()
    if stream.threads:
        torch.set_num_threads(stream.threads)
    batches = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        images, labels = stream.next_batch()
        batches += 1
    elapsed = time.perf_counter() - started
    torch.set_num_threads(default_threads)
    assert images.shape == (BATCH, 1, 64, 64) and images.dtype == torch.float32
    assert labels.shape == (BATCH, 5)
    return batches * BATCH / elapsed


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), numpy {np.__version__}, Python "
        f"{platform.python_version()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; "
        f"1-minute load average at start {load:.1f}"
    )


def timed(work: Callable[[], T]) -> tuple[T, str]:
    """Run `work`; its result and "W s (C s CPU)": wall seconds, and this process's CPU seconds
    over all threads, which other jobs on a shared machine inflate far less than wall time."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, f"{time.perf_counter() - wall:.1f} s ({time.process_time() - cpu:.1f} s CPU)"


def measure_shapes3d() -> list[str]:
    """Render the full procedural Shapes3D, cache it and load it back; the table rows."""
    rendered, render_time = timed(render_shapes3d)
    raw_mb = rendered.images.numel() / 1e6
    print(f"rendered {len(rendered)} Shapes3D images in {render_time}", flush=True)
    with tempfile.TemporaryDirectory(prefix="tcwae-bench-") as root:
        path = cache_path(Path(root), "shapes3d", "procedural")
        _, write_time = timed(
            partial(write_cache, rendered, path, origin="bench", compression=CACHE_COMPRESSION)
        )
        cache_mb = path.stat().st_size / 1e6
        del rendered
        gc.collect()
        dataset, load_time = timed(lambda: load_dataset("shapes3d", root=root, source="procedural"))
        del dataset
        gc.collect()
    print(f"Shapes3D cache {cache_mb:.0f} MB, loaded in {load_time}", flush=True)
    return [
        f"| render all 480,000 Shapes3D images (procedural, to FactorDataset) | {render_time} |",
        f"| write the Shapes3D HDF5 cache ({CACHE_COMPRESSION} chunks; {raw_mb:,.0f} MB in "
        f"memory) | {write_time}, {cache_mb:.0f} MB |",
        f"| load Shapes3D from the cache | {load_time} |",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).parents[1] / "BENCHMARKS.md")
    parser.add_argument("--seconds", type=float, default=1.5, help="time per throughput run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved throughput rounds")
    args = parser.parse_args(argv)
    where = machine()
    print(where, flush=True)
    shapes3d_rows = measure_shapes3d()

    started = time.perf_counter()
    small = procedural_dsprites(num_orientations=10, num_positions=8)
    small_seconds = time.perf_counter() - started
    started = time.perf_counter()
    rendered = procedural_dsprites()
    render_seconds = time.perf_counter() - started
    print(f"rendered {len(rendered)} images in {render_seconds:.1f} s", flush=True)

    with tempfile.TemporaryDirectory(prefix="tcwae-bench-") as root:
        path = cache_path(Path(root), "dsprites", "procedural")
        started = time.perf_counter()
        write_cache(rendered, path, binary=True, origin="bench")
        write_seconds = time.perf_counter() - started
        cache_mb = path.stat().st_size / 1e6
        del rendered
        gc.collect()
        load_seconds = []
        for _ in range(3):
            started = time.perf_counter()
            dataset = load_dataset("dsprites", root=root, source="procedural")
            load_seconds.append(time.perf_counter() - started)
            if len(load_seconds) < 3:
                del dataset
                gc.collect()
        print(f"cache loads: {', '.join(f'{s:.1f}' for s in load_seconds)} s", flush=True)

    ours_name = "FactorDataset.float_batch (index_select, .float() / 255)"
    streams = {
        ours_name: FactorDatasetStream(dataset),
        "FactorDataset via advanced indexing, images[idx].float() / 255": FactorDatasetStream(
            dataset, naive=True
        ),
        "FactorDataset.float_batch, torch pinned to 1 thread": FactorDatasetStream(
            dataset, threads=1
        ),
        **{
            f"DataLoader over a per-item Dataset, num_workers={workers}": LoaderStream(
                dataset, workers
            )
            for workers in (0, 2)
        },
    }
    # Rounds interleave the candidates so that a change in machine load hits all of them.
    samples: dict[str, list[float]] = {name: [] for name in streams}
    for _ in range(args.rounds):
        for name, stream in streams.items():
            samples[name].append(images_per_second(stream, args.seconds))
    rates = {name: statistics.median(values) for name, values in samples.items()}
    for name, rate in rates.items():
        print(f"{name}: {rate:,.0f} images/s", flush=True)
    ours = rates[ours_name]
    fastest_loader = max(rate for name, rate in rates.items() if name.startswith("DataLoader"))

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = [
        "| measurement | value |",
        "|---|---|",
        f"| render all 737,280 dSprites images (procedural, to FactorDataset) | "
        f"{render_seconds:.1f} s |",
        f"| render the reduced test grid (3, 6, 10, 8, 8) | {small_seconds:.2f} s |",
        f"| write the HDF5 cache (bit-packed) | {write_seconds:.1f} s, {cache_mb:.0f} MB |",
        f"| load dSprites from the cache (median of 3; runs "
        f"{', '.join(f'{s:.1f}' for s in load_seconds)} s) | "
        f"{statistics.median(load_seconds):.1f} s |",
        *shapes3d_rows,
    ]
    rows += [
        f"| batches of {BATCH}: {name} | {rate:,.0f} images/s "
        f"({min(samples[name]):,.0f} to {max(samples[name]):,.0f}) |"
        for name, rate in rates.items()
    ]
    rows.append(
        f"| FactorDataset speed-up over the fastest DataLoader | {ours / fastest_loader:.1f}x |"
    )
    section = "\n".join(
        [
            f"`python bench/data.py` ({stamp}; {len(small)} images in the reduced grid). "
            f"Machine: {where}.",
            "",
            *rows,
            "",
            "Throughput: random float batches of 256 images with their factor classes; median "
            f"(range) of {args.rounds} interleaved rounds of {args.seconds:g} s per candidate; "
            "DataLoader start-up not timed. Render and "
            "cache-load times on this machine are dominated by the first touch of 3 GB (dSprites) "
            "and 5.9 GB (Shapes3D) of fresh memory, which is slow here and varies with the "
            "machine's load; the Shapes3D rows also give this process's CPU seconds, which other "
            "jobs inflate far less.",
        ]
    )
    print()
    print(SECTION, section, sep="\n\n")
    replace_section(args.output, SECTION, section)
    print(f"\nwrote the {SECTION!r} section of {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()

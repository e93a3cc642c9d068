"""A training run as one typed object: `RunSpec`, from a command line (`parse_args`) or from
values (`make_spec`), every default and location resolved; the object `pipeline/train.py`'s
driver and `pipeline/sweep.py`'s trials hand on."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from pipeline.cli import (
    ArgumentParser,
    add_location_flags,
    add_verbose_flag,
    check_folder_name,
    require_in_range,
    resolve_data_root,
    resolve_storage,
)
from pipeline.rungs import RungCheck
from pipeline.shared_data import SharedData
from pipeline.tracking_store import resolve_tracking_uri
from tcwae.config import COSTS, DATA_SOURCES, EVAL_PROFILES, TrainConfig, load_yaml_mapping
from tcwae.errors import UserError
from tcwae.methods import METHODS, all_hyperparameters

DEFAULT_WORKERS = 1
DEFAULT_MAX_FAILURES = 3
# Bounds of the numeric flags, far above any real run (the cluster check refuses what it lacks).
MAX_WORKERS = 1024
MAX_RESTARTS = 1000


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run: what to train (`config`, parsed once) and where and how to run and
    record it, every location already resolved (absolute, or a URI).

    `storage` is the Ray Train storage and `name` the run's folder in it; together they identify
    the run for resuming. `parent_run_id` makes the MLflow run a sweep's child run;
    `rung_check` (a successive-halving sweep's) has rank 0 add rung scores at its rung steps.
    `shared_data`: the data sets a sweep put in Ray's object store once for all its trials (a run
    with several workers and none given puts its own).
    """

    config: TrainConfig
    tracking_uri: str
    experiment: str
    storage: str
    name: str
    workers: int = DEFAULT_WORKERS
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    data_root: str | None = None
    max_failures: int = DEFAULT_MAX_FAILURES
    parent_run_id: str | None = None
    verbose: bool = False
    rung_check: RungCheck | None = None
    shared_data: SharedData | None = None

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0


@dataclasses.dataclass(frozen=True)
class RunResult:
    """A finished run: its MLflow run id and its final metrics (scores, last losses, step)."""

    run_id: str
    metrics: dict[str, float]


def default_run_name(config: TrainConfig) -> str:
    """`<dataset>-<method>-<hash of the config>`: the same command names the same run, so
    re-running it resumes an interrupted run instead of starting another."""
    digest = hashlib.sha1(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()
    return f"{config.dataset}-{config.method}-{digest[:10]}"


def make_spec(
    config: TrainConfig,
    *,
    workers: int = DEFAULT_WORKERS,
    use_gpu: bool = False,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    storage: str | None = None,
    name: str | None = None,
    data_root: str | None = None,
    max_failures: int = DEFAULT_MAX_FAILURES,
    verbose: bool = False,
    rung_check: RungCheck | None = None,
) -> RunSpec:
    """A RunSpec from command-line values, defaults resolved: tracking URI (see
    `tracking_store.resolve_tracking_uri`), experiment = data set, storage (`cli.resolve_storage`),
    name = `default_run_name`."""
    require_in_range("--workers", workers, 0, MAX_WORKERS)
    require_in_range("--max-failures", max_failures, -1, MAX_RESTARTS)
    from tcwae.data import DATASETS, SEQUENCE_DATASETS
    from tcwae.methods import method_card, methods_for

    if config.dataset not in DATASETS:
        raise UserError(f"unknown data set {config.dataset!r}; choose one of {', '.join(DATASETS)}")
    sequences = config.dataset in SEQUENCE_DATASETS
    if method_card(config.method).sequences != sequences:
        raise UserError(
            f"--method {config.method} does not train on {config.dataset}; choose one of "
            f"{', '.join(methods_for(sequences))}"
        )
    return RunSpec(
        config=config,
        tracking_uri=resolve_tracking_uri(tracking_uri),
        experiment=experiment or config.dataset,
        storage=resolve_storage(storage),
        name=default_run_name(config) if name is None else check_folder_name(name),
        workers=workers,
        gpus_per_worker=1.0 if use_gpu else 0.0,
        data_root=resolve_data_root(data_root),
        max_failures=max_failures,
        verbose=verbose,
        rung_check=rung_check,
    )


# Command line ---------------------------------------------------------------------------------


def _hyperparameter_flags() -> dict[str, tuple[str, str]]:
    """One flag per hyper-parameter the methods declare; its help says what each method that
    reads it means by it. A method given one it does not read is refused (exit 2)."""
    return {
        name: (
            f"--{name.replace('_', '-')}",
            "; ".join(f"{m}: {p.meaning} (default {p.default:g})" for m, p in declarations),
        )
        for name, declarations in all_hyperparameters().items()
    }


_CONFIG_FLAGS = {
    "method": ("--method", f"one of {', '.join(METHODS)}"),
    **_hyperparameter_flags(),
    "cost": ("--cost", f"reconstruction cost, one of {', '.join(COSTS)}"),
    "steps": ("--steps", "training iterations"),
    "batch_size": ("--batch-size", "global batch size (split over workers)"),
    "dz": ("--dz", "latent dimensions (default: the method's; 2 per factor for (factor_)qvae)"),
    "seed": ("--seed", "random seed"),
    "eval_profile": ("--eval-profile", f"metric sizes, one of {', '.join(EVAL_PROFILES)}"),
    "mig_every": ("--mig-every", "log MIG every this many steps (0 = only at the end)"),
    "data_source": ("--data-source", f"one of {', '.join(DATA_SOURCES)}"),
}


def build_parser() -> ArgumentParser:
    from tcwae.data import DATASETS

    parser = ArgumentParser(
        prog="train.py",
        description="Train one TCWAE (or baseline) model with Ray Train and record it in MLflow.",
    )
    parser.add_argument("dataset", help=f"data set: {', '.join(DATASETS)}")
    for key, (flag, text) in _CONFIG_FLAGS.items():
        parser.add_argument(flag, dest=key, metavar=key.upper(), help=text)
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="Ray Train workers (DDP ranks); 0 trains in this process without Ray",
    )
    parser.add_argument("--use-gpu", action="store_true", help="one GPU per worker (NCCL)")
    add_location_flags(parser, "--tracking-uri", "--experiment", "--storage", "--name")
    parser.add_argument("--config", help="YAML file of config keys; flags override it")
    add_location_flags(parser, "--data-root")
    parser.add_argument(
        "--max-failures",
        type=int,
        default=DEFAULT_MAX_FAILURES,
        help="worker-group restarts from the last checkpoint before the run fails",
    )
    add_verbose_flag(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> RunSpec:
    """Parse and validate a command line into a RunSpec; raises UserError."""
    args = build_parser().parse_args(argv)
    values: dict[str, Any] = {}
    if args.config:
        values = load_yaml_mapping(args.config)
        TrainConfig.from_dict(values, where=args.config)
    flags = {key: getattr(args, key) for key in _CONFIG_FLAGS if getattr(args, key) is not None}
    values.update(flags)
    values["dataset"] = args.dataset
    config = TrainConfig.from_dict(values, where="command line")
    return make_spec(
        config,
        workers=args.workers,
        use_gpu=args.use_gpu,
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        storage=args.storage,
        name=args.name,
        data_root=args.data_root,
        max_failures=args.max_failures,
        verbose=args.verbose,
    )

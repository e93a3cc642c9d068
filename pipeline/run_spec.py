"""The one spec a run carries from the sweep to the driver to the workers: what to train (the
`TrainConfig`), where (`Locations`), on what (`Resources`) and which run it is (`Identity`);
`parse_args` builds it from train.py's command line."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pipeline.cli import (
    ArgumentParser,
    add_location_flags,
    add_verbose_flag,
    check_folder_name,
    require_in_range,
    resolve_data_root,
    resolve_storage,
)
from pipeline.search.successive_halving import RungCheck
from pipeline.tracking_store import resolve_tracking_uri
from tcwae.config import COSTS, DATA_SOURCES, EVAL_PROFILES, TrainConfig, load_yaml_mapping
from tcwae.errors import UserError
from tcwae.methods import METHODS, all_hyperparameters

if TYPE_CHECKING:
    from pipeline.worker import SigkillOnce
    from tcwae.data import FactorDataset

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 1
DEFAULT_MAX_FAILURES = 3
# Bounds of the numeric flags, far above any real run (the cluster check refuses what it lacks).
MAX_WORKERS = 1024
MAX_RESTARTS = 1000
# The MLflow tag `data_loading` of every run: how its workers got their data.
LOADED_BY_WORKER = "loaded by each worker"
FROM_OBJECT_STORE = "shared through Ray's object store"


@dataclasses.dataclass(frozen=True)
class SharedData:
    """Data sets a driver put in Ray's object store once, by (data set, source), so that workers
    do not each load a copy (3 GB of dSprites a worker). Holding the references inside an object
    makes Ray pass them, not the data, which every worker of a node maps read-only."""

    refs: dict[tuple[str, str], Any]


def share_datasets(configs: Iterable[TrainConfig], data_root: str | None) -> SharedData:
    """Put each distinct (data set, source) of `configs` in Ray's object store. One that cannot
    be loaded is left out: its runs load it themselves and fail with its error in MLflow."""
    import ray

    from tcwae.data import load_dataset

    refs = {}
    for key in dict.fromkeys((config.dataset, config.data_source) for config in configs):
        try:
            loaded = load_dataset(key[0], root=data_root, source=key[1])
        except UserError as error:
            log.warning("%s (%s) is not shared: %s", key[0], key[1], error)
            continue
        refs[key] = ray.put(loaded)
    return SharedData(refs)


def worker_dataset(
    config: TrainConfig, shared: SharedData | None, data_root: str | None
) -> tuple[FactorDataset, str]:
    """The data set of `config` (the shared copy if any, else loaded here) and the run's
    `data_loading` tag saying which."""
    ref = shared.refs.get((config.dataset, config.data_source)) if shared is not None else None
    if ref is None:
        from tcwae.data import load_dataset

        dataset = load_dataset(config.dataset, root=data_root, source=config.data_source)
        return dataset, LOADED_BY_WORKER
    import ray

    return ray.get(ref), FROM_OBJECT_STORE


@dataclasses.dataclass(frozen=True)
class Locations:
    """Where a run reads and records, absolute paths or URIs so that workers in other folders
    and on other nodes find the same places; `storage` is Ray Train's (a sweep's: Tune's)."""

    tracking_uri: str
    experiment: str
    storage: str
    data_root: str | None = None
    shared_data: SharedData | None = None

    @classmethod
    def resolve(
        cls, tracking_uri: str | None, experiment: str, storage: str | None, data_root: str | None
    ) -> Locations:
        """The location flags with their defaults."""
        return cls(
            resolve_tracking_uri(tracking_uri),
            experiment,
            resolve_storage(storage),
            resolve_data_root(data_root),
        )


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one run asks the cluster for: `workers` DDP ranks (0: this process, no Ray)."""

    workers: int = DEFAULT_WORKERS
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0


@dataclasses.dataclass(frozen=True)
class Identity:
    """Which run: `name` (its storage folder and MLflow run name, which find it to resume), the
    sweep's `parent_run_id`, and once the driver opened it, its `run_id` and launch time."""

    name: str
    parent_run_id: str | None = None
    run_id: str | None = None
    launched_at: float | None = None


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run, handed on whole. `rung_check` (a successive-halving sweep's) has rank 0
    score at its rung steps; `progress` is the Ray queue of rank 0's progress lines for the
    driver's console (None in a sweep, which prints Tune's results); `fault` is for tests."""

    config: TrainConfig
    where: Locations
    identity: Identity
    resources: Resources = Resources()
    rung_check: RungCheck | None = None
    max_failures: int = DEFAULT_MAX_FAILURES
    verbose: bool = False
    progress: Any = None
    fault: SigkillOnce | None = None


@dataclasses.dataclass(frozen=True)
class RunResult:
    """A finished run: its MLflow run id and final metrics (scores, last losses, step)."""

    run_id: str
    metrics: dict[str, float]


def default_run_name(config: TrainConfig) -> str:
    """`<dataset>-<method>-<config hash>`: the same command names (so resumes) the same run."""
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
    """A RunSpec from command-line values, with their defaults."""
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
        where=Locations.resolve(tracking_uri, experiment or config.dataset, storage, data_root),
        identity=Identity(default_run_name(config) if name is None else check_folder_name(name)),
        resources=Resources(workers=workers, gpus_per_worker=1.0 if use_gpu else 0.0),
        rung_check=rung_check,
        max_failures=max_failures,
        verbose=verbose,
    )


# Command line ---------------------------------------------------------------------------------


# One flag per config key; a hyper-parameter's help says what each method that reads it means.
_CONFIG_FLAGS = {
    "method": ("--method", f"one of {', '.join(METHODS)}"),
    **{
        name: (
            f"--{name.replace('_', '-')}",
            "; ".join(f"{m}: {p.meaning} (default {p.default:g})" for m, p in declarations),
        )
        for name, declarations in all_hyperparameters().items()
    },
    "cost": ("--cost", f"reconstruction cost, one of {', '.join(COSTS)}"),
    "steps": ("--steps", "training iterations"),
    "batch_size": ("--batch-size", "global batch size (split over workers)"),
    "dz": ("--dz", "latent dimensions (default: the method's; 2 per factor for (factor_)qvae)"),
    "seed": ("--seed", "random seed"),
    "eval_profile": ("--eval-profile", f"metric sizes, one of {', '.join(EVAL_PROFILES)}"),
    "mig_every": ("--mig-every", "log MIG every this many steps (0 = only at the end)"),
    "data_source": ("--data-source", f"one of {', '.join(DATA_SOURCES)}"),
}


# The flags that say where and how to run (make_spec's keywords), not what to train.
_RUN_FLAGS = "workers use_gpu tracking_uri experiment storage name data_root max_failures verbose"


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
    values.update(
        {key: getattr(args, key) for key in _CONFIG_FLAGS if getattr(args, key) is not None}
    )
    values["dataset"] = args.dataset
    config = TrainConfig.from_dict(values, where="command line")
    return make_spec(config, **{key: getattr(args, key) for key in _RUN_FLAGS.split()})

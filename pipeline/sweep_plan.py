"""A sweep decided before Ray or MLflow is touched: `SweepPlan` and how sweep.py's command line
and the search-space file become one (`plan_from_args`), and how many of its trials fit at once on
a cluster (`concurrent_trials`)."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any

from pipeline import cli
from pipeline.run_spec import RunSpec
from pipeline.rungs import SchedulerSpec
from pipeline.search_space import Profile, grid_points, load_search_space, trial_train_config
from pipeline.shared_data import SharedData
from pipeline.tracking_store import check_tracking_uri, resolve_tracking_uri
from tcwae.config import MAX_SEED, TrainConfig
from tcwae.errors import UserError

DEFAULT_MODE = "grid"  # left out of a sweep's default name
MODES = (DEFAULT_MODE, "optuna")
TRIALS_DIR = "trials"
# Bounds of the numeric flags: far above any real sweep, far below what breaks Ray or Optuna.
MAX_TRIALS = 100_000
MAX_WORKERS_PER_TRIAL = 1024
MAX_GPUS_PER_TRIAL = 1024


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: everything decided before Ray or MLflow is touched, every location
    resolved (absolute, or a URI)."""

    profile: Profile
    space_name: str
    mode: str
    points: tuple[dict[str, Any], ...]
    num_samples: int
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    max_concurrent: int | None
    tracking_uri: str
    experiment: str
    storage: str
    name: str
    resume: bool
    data_root: str | None
    seed: int
    results_md: str | None = None
    verbose: bool = False
    share_data: bool = True  # False: every worker loads its own copy of the data set
    scheduler: SchedulerSpec | None = None  # None: FIFO, every trial trains its full budget

    @property
    def experiment_path(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"

    @property
    def trial_storage(self) -> str:
        """The trials' Ray Train storage: a folder of their own beside the sweep's Tune state."""
        return f"{self.storage.rstrip('/')}/{self.name}-{TRIALS_DIR}"

    def trial_name(self, trial_id: str) -> str:
        """A trial's Train run and MLflow child run are named after the Tune trial."""
        return f"{self.name}-{trial_id}"

    def trial_spec(
        self,
        config: TrainConfig,
        trial_id: str,
        parent_run_id: str,
        shared_data: SharedData,
    ) -> RunSpec:
        """The RunSpec of one trial."""
        return RunSpec(
            config=config,
            tracking_uri=self.tracking_uri,
            experiment=self.experiment,
            storage=self.trial_storage,
            name=self.trial_name(trial_id),
            workers=self.workers,
            cpus_per_worker=self.cpus_per_worker,
            gpus_per_worker=self.gpus_per_worker,
            data_root=self.data_root,
            parent_run_id=parent_run_id,
            rung_check=self.scheduler.rung_check(config.steps) if self.scheduler else None,
            shared_data=shared_data,
        )

    def trial_configs(self) -> list[TrainConfig]:
        """The training configuration of every grid point (in optuna mode: every method's data
        set and source appear among them)."""
        return [trial_train_config(self.profile, point) for point in self.points]


def parse_seeds(text: str | None) -> list[int] | None:
    """The --seeds flag as integers (None when absent); a malformed list is one UserError."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got {text!r}") from None


def plan_from_args(args: argparse.Namespace) -> SweepPlan:
    """Validate sweep.py's parsed command line, the search space and the locations (storage and
    results folders writable, tracking store usable); raise one UserError."""
    if args.mode not in MODES:
        raise UserError(f"--mode must be one of {', '.join(MODES)}, got {args.mode!r}")
    space = load_search_space(args.dataset)
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    profile = space.profile(args.profile).select(methods).with_seeds(parse_seeds(args.seeds))
    resources = profile.resources
    workers = resources.workers if args.workers_per_trial is None else args.workers_per_trial
    cli.require_in_range("--workers-per-trial", workers, 1, MAX_WORKERS_PER_TRIAL)
    gpus_per_worker = resources.gpus_per_worker
    if args.gpus_per_trial is not None:
        cli.require_in_range("--gpus-per-trial", args.gpus_per_trial, 0, MAX_GPUS_PER_TRIAL)
        gpus_per_worker = args.gpus_per_trial / workers
    if args.max_concurrent is not None:
        cli.require_in_range("--max-concurrent", args.max_concurrent, 1, MAX_TRIALS)
    cli.require_in_range("--seed", args.seed, 0, MAX_SEED)
    points = tuple(grid_points(profile))
    if args.mode == "grid":
        num_samples = len(points)
        if args.num_samples is not None:
            raise UserError("--num-samples is for --mode optuna; grid mode runs every grid point")
    else:
        if not profile.searched:
            raise UserError(
                f"{profile.source}: profile {profile.name!r} searches no parameter; use --mode grid"
            )
        num_samples = profile.num_samples if args.num_samples is None else args.num_samples
        cli.require_in_range("--num-samples", num_samples, 1, MAX_TRIALS)
    storage = cli.resolve_storage(args.storage)
    local = cli.local_path(storage)
    if local is not None:
        cli.require_writable(local, "Ray storage", "--storage")
    space_name = Path(space.source).stem
    subset = f"-{'_'.join(profile.methods)}" if methods else ""
    subset += f"-seeds{'_'.join(map(str, profile.seeds))}" if args.seeds else ""
    mode = "" if args.mode == DEFAULT_MODE else f"-{args.mode}"
    name = cli.check_folder_name(args.name or f"{space_name}-{profile.name}{mode}{subset}")
    results_md = None
    if args.results_md:
        results_path = Path(args.results_md).expanduser().resolve()
        cli.require_writable(results_path.parent, "the folder of --results-md", "--results-md")
        results_md = str(results_path)
    tracking_uri = resolve_tracking_uri(args.tracking_uri)
    check_tracking_uri(tracking_uri)
    return SweepPlan(
        profile=profile,
        space_name=space_name,
        mode=args.mode,
        points=points,
        num_samples=num_samples,
        workers=workers,
        cpus_per_worker=resources.cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        max_concurrent=args.max_concurrent,
        tracking_uri=tracking_uri,
        experiment=args.experiment or profile.dataset,
        storage=storage,
        name=name,
        resume=args.resume,
        data_root=cli.resolve_data_root(args.data_root),
        seed=args.seed,
        results_md=results_md,
        verbose=args.verbose,
        share_data=not args.data_per_worker,
        scheduler=chosen_scheduler(profile, args.scheduler),
    )


def chosen_scheduler(profile: Profile, flag: str | None) -> SchedulerSpec | None:
    """The successive-halving spec the sweep runs, or None for FIFO: `--scheduler` picks
    between FIFO and the profile's `scheduler:` block, which holds the rungs."""
    block = profile.scheduler if profile.scheduler and profile.scheduler.type == "mo-asha" else None
    if flag is None:
        return block
    if flag == "fifo":
        return None
    if flag != "mo-asha":
        raise UserError(f"--scheduler must be fifo or mo-asha, got {flag!r}")
    if block is None:
        raise UserError(
            f"--scheduler mo-asha: {profile.source}: profile {profile.name!r} has no "
            "`scheduler: {type: mo-asha, grace: ...}` block; add one or drop --scheduler"
        )
    return block


def concurrent_trials(plan: SweepPlan, capacity: dict[str, float], may_grow: bool = False) -> int:
    """How many trials fit at once; an impossible request is a UserError naming the numbers.
    On a cluster that `may_grow`, a trial that does not fit yet waits for the autoscaler, so
    every trial may start (up to --max-concurrent) and its workers wait for their nodes."""
    cpus = plan.workers * plan.cpus_per_worker
    gpus = plan.workers * plan.gpus_per_worker
    if cpus > capacity["CPU"] or gpus > capacity["GPU"]:
        if may_grow:
            return min(plan.num_samples, plan.max_concurrent or plan.num_samples)
        raise UserError(
            f"a trial needs {cpus:g} CPUs and {gpus:g} GPUs ({plan.workers} workers) but the "
            f"cluster has at most {capacity['CPU']:g} CPUs and {capacity['GPU']:g} GPUs; "
            "lower --workers-per-trial / --gpus-per-trial or use a bigger cluster"
        )
    fits = math.floor(capacity["CPU"] / cpus) if cpus else plan.num_samples
    if gpus:
        fits = min(fits, math.floor(capacity["GPU"] / gpus))
    fits = max(1, min(fits, plan.num_samples))
    return fits if plan.max_concurrent is None else min(fits, plan.max_concurrent)

"""A sweep decided before Ray or MLflow is touched: sweep.py's command line and search-space file
become one `SweepPlan`, checked before Ray starts (a sweep to resume or none to overwrite, the
resumed sweep's arguments, the trials' data). Each failure is one `UserError` line."""

from __future__ import annotations

import dataclasses
import math
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline import cli
from pipeline.run_spec import Locations, Resources
from pipeline.search.loader import load_search_space
from pipeline.search.successive_halving import SchedulerSpec
from pipeline.search.types import Profile, grid_points, trial_train_config
from pipeline.tracking import Tracking
from pipeline.tracking_store import check_tracking_uri
from pipeline.train import check_batch_size
from tcwae.config import MAX_SEED, TrainConfig
from tcwae.errors import UserError

PROG = "sweep"
DEFAULT_MODE = "grid"  # left out of a sweep's default name
SWEEP_MODES = (DEFAULT_MODE, "optuna")
TRIALS_DIR = "trials"
TUNER_STATE_FILE = "tuner.pkl"  # what Tuner.restore reads first
# Bounds of the numeric flags: far above any real sweep, far below what breaks Ray or Optuna.
MAX_TRIALS = 100_000
MAX_WORKERS_PER_TRIAL = 1024
MAX_GPUS_PER_TRIAL = 1024


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: `where` holds its Tune state (a trial's differ in storage and shared
    data), `resources` are every trial's."""

    profile: Profile
    space_name: str
    mode: str
    points: tuple[dict[str, Any], ...]
    num_samples: int
    where: Locations
    resources: Resources
    name: str
    resume: bool
    seed: int
    max_concurrent: int | None = None
    results_md: str | None = None
    verbose: bool = False
    share_data: bool = True  # False: every worker loads its own copy of the data set
    scheduler: SchedulerSpec | None = None  # None: FIFO, every trial trains its full budget

    @property
    def experiment_path(self) -> str:
        return f"{self.where.storage.rstrip('/')}/{self.name}"

    @property
    def trial_storage(self) -> str:
        """The trials' Ray Train storage: a folder of their own beside the sweep's Tune state."""
        return f"{self.where.storage.rstrip('/')}/{self.name}-{TRIALS_DIR}"

    @property
    def full_trial_steps(self) -> int:
        """The training steps of a trial that is never stopped (the profile's `steps`)."""
        return self.trial_configs()[0].steps

    def trial_name(self, trial_id: str) -> str:
        """A trial's Train run and MLflow child run are named after the Tune trial."""
        return f"{self.name}-{trial_id}"

    def trial_configs(self) -> list[TrainConfig]:
        """Every grid point's config (in optuna mode they cover every data set and source)."""
        return [trial_train_config(self.profile, point) for point in self.points]


def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="sweep.py",
        description="The main job: a Ray Tune search, driven by Optuna, over a data set's "
        "search space.",
    )
    parser.add_argument("dataset", help="a search space: search_spaces/<DATASET>.yaml, or a path")
    parser.add_argument("--profile", default="cpu", help="profile of the search space (cpu)")
    parser.add_argument("--methods", help="comma-separated subset of the profile's methods")
    parser.add_argument(
        "--seeds", help="comma-separated seeds in place of the profile's (e.g. 2 or 3,4)"
    )
    parser.add_argument("--mode", default=DEFAULT_MODE, help="grid (the file's grids) or optuna")
    parser.add_argument("--num-samples", type=int, help="optuna mode: trials (profile's default)")
    parser.add_argument("--max-concurrent", type=int, help="trials at once (from the cluster)")
    parser.add_argument("--workers-per-trial", type=int, help="DDP workers per trial (profile)")
    parser.add_argument("--gpus-per-trial", type=float, help="GPUs per trial (profile)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    cli.add_location_flags(
        parser, "--tracking-uri", "--experiment", "--storage", "--name", "--data-root"
    )
    parser.add_argument("--seed", type=int, default=0, help="the Optuna sampler's seed")
    parser.add_argument(
        "--scheduler",
        help="fifo (every trial trains its full budget) or mo-asha (the profile's scheduler "
        "block: multi-objective successive halving); default: the profile's block, else fifo",
    )
    parser.add_argument(
        "--results-md",
        help="also write the sweep's section of RESULTS.md here (paper Table 1a beside ours, or "
        "the sequence models'); the page's other sections are kept",
    )
    parser.add_argument(
        "--data-per-worker",
        action="store_true",
        help="every training worker loads its own copy of the data set instead of reading the "
        "one the driver puts in Ray's object store (for a head node too small to hold it)",
    )
    cli.add_verbose_flag(parser)
    return parser


def plan_sweep(argv: Sequence[str] | None) -> SweepPlan:
    """Validate sweep.py's command line, the search space and the locations (storage and results
    folders writable, tracking store usable); raise one UserError."""
    args = build_parser().parse_args(argv)
    if args.mode not in SWEEP_MODES:
        raise UserError(f"--mode must be one of {', '.join(SWEEP_MODES)}, got {args.mode!r}")
    space = load_search_space(args.dataset)
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    seeds = None
    if args.seeds is not None:
        try:
            seeds = [int(part) for part in args.seeds.split(",")]
        except ValueError:
            raise UserError(
                f"--seeds must be comma-separated integers, got {args.seeds!r}"
            ) from None
    profile = space.profile(args.profile).select(methods).with_seeds(seeds)
    asked = profile.resources
    workers = asked.workers if args.workers_per_trial is None else args.workers_per_trial
    cli.require_in_range("--workers-per-trial", workers, 1, MAX_WORKERS_PER_TRIAL)
    gpus_per_worker = asked.gpus_per_worker
    if args.gpus_per_trial is not None:
        cli.require_in_range("--gpus-per-trial", args.gpus_per_trial, 0, MAX_GPUS_PER_TRIAL)
        gpus_per_worker = args.gpus_per_trial / workers
    if args.max_concurrent is not None:
        cli.require_in_range("--max-concurrent", args.max_concurrent, 1, MAX_TRIALS)
    cli.require_in_range("--seed", args.seed, 0, MAX_SEED)
    points = tuple(grid_points(profile))
    if args.mode == DEFAULT_MODE:
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
    where = Locations.resolve(
        args.tracking_uri, args.experiment or profile.dataset, args.storage, args.data_root
    )
    local = cli.local_path(where.storage)
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
    check_tracking_uri(where.tracking_uri)
    return SweepPlan(
        profile=profile,
        space_name=space_name,
        mode=args.mode,
        points=points,
        num_samples=num_samples,
        where=where,
        resources=Resources(workers, asked.cpus_per_worker, gpus_per_worker),
        name=name,
        resume=args.resume,
        seed=args.seed,
        max_concurrent=args.max_concurrent,
        results_md=results_md,
        verbose=args.verbose,
        share_data=not args.data_per_worker,
        scheduler=chosen_scheduler(profile, args.scheduler),
    )


def chosen_scheduler(profile: Profile, flag: str | None) -> SchedulerSpec | None:
    """The successive-halving spec to run (the profile's `scheduler:` block), or None: FIFO."""
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
    """How many trials fit at once; an impossible request is a UserError naming the numbers. On
    a cluster that `may_grow`, a trial that does not fit yet waits for the autoscaler."""
    asked = plan.resources
    cpus = asked.workers * asked.cpus_per_worker
    gpus = asked.workers * asked.gpus_per_worker
    if cpus > capacity["CPU"] or gpus > capacity["GPU"]:
        if may_grow:
            return min(plan.num_samples, plan.max_concurrent or plan.num_samples)
        raise UserError(
            f"a trial needs {cpus:g} CPUs and {gpus:g} GPUs ({asked.workers} workers) but the "
            f"cluster has at most {capacity['CPU']:g} CPUs and {capacity['GPU']:g} GPUs; "
            "lower --workers-per-trial / --gpus-per-trial or use a bigger cluster"
        )
    fits = math.floor(capacity["CPU"] / cpus) if cpus else plan.num_samples
    if gpus:
        fits = min(fits, math.floor(capacity["GPU"] / gpus))
    fits = max(1, min(fits, plan.num_samples))
    return fits if plan.max_concurrent is None else min(fits, plan.max_concurrent)


def parent_params(plan: SweepPlan) -> dict[str, Any]:
    """The sweep's parameters as its parent run records them (and --resume compares them)."""
    return {
        "space": plan.space_name,
        "profile": plan.profile.name,
        "mode": plan.mode,
        "methods": ",".join(plan.profile.methods),
        "num_samples": plan.num_samples,
        "workers_per_trial": plan.resources.workers,
        "gpus_per_worker": plan.resources.gpus_per_worker,
        "seeds": ",".join(str(s) for s in plan.profile.seeds),
        **{f"train.{key}": value for key, value in plan.profile.train.items()},
    }


def check_restorable(plan: SweepPlan) -> None:
    """--resume needs an earlier sweep of that name whose state reads; a new one must not
    overwrite it."""
    from ray import tune

    exists = tune.Tuner.can_restore(plan.experiment_path)
    storage = plan.where.storage
    if plan.resume and not exists:
        raise UserError(
            f"--resume: no sweep {plan.name!r} to continue in {storage}; drop --resume to start it"
        )
    if not plan.resume and exists:
        raise UserError(
            f"sweep {plan.name!r} already exists in {storage}; pass --resume to continue it "
            "or --name to start another"
        )
    local = cli.local_path(plan.experiment_path)
    if plan.resume and local is not None:
        try:
            pickle.loads((local / TUNER_STATE_FILE).read_bytes())
        except Exception as error:  # any damage: truncated, overwritten, from another version
            raise UserError(
                f"--resume: the saved state of sweep {plan.name!r} ({local / TUNER_STATE_FILE}) "
                f"cannot be read ({type(error).__name__}); start the sweep again under another "
                "--name"
            ) from None


def check_resume_arguments(plan: SweepPlan) -> None:
    """--resume with changed arguments would fail every trial: refused before anything runs."""
    if not plan.resume:
        return
    tracking = Tracking.at(plan.where.tracking_uri)
    experiment_id = tracking.experiment_id(plan.where.experiment)
    parent = tracking.find_sweep_run(experiment_id, plan.name, plan.where.storage)
    if parent is None:
        return
    logged = tracking.params(parent)
    for key, value in parent_params(plan).items():
        if value is not None and key in logged and logged[key] != str(value):
            raise UserError(
                f"--resume: sweep {plan.name!r} was started with {key}={logged[key]} but this "
                f"command has {key}={value}; resume it with its original arguments, or drop "
                "--resume and pass another --name to start a new sweep"
            )


def check_sweep_data(plan: SweepPlan) -> None:
    """The trials' data sets load and hold their batches. When none can, that is one line (not a
    FAILED parent run); when some cannot, a notice (those fail as FAILED child runs)."""
    from tcwae.data import check_dataset

    problems: dict[tuple[str, str, int], str | None] = {}
    for config in plan.trial_configs():
        key = (config.dataset, config.data_source, config.batch_size)
        if key not in problems:
            try:
                examples = check_dataset(config.dataset, plan.where.data_root, config.data_source)
                check_batch_size(config.batch_size, examples, plan.resources.workers)
                problems[key] = None
            except UserError as error:
                problems[key] = cli.one_line(error)
    failing = [problem for problem in problems.values() if problem is not None]
    if failing and len(failing) == len(problems):
        raise UserError(failing[0])
    if failing:
        print(
            f"{PROG}: the trials of {len(failing)} of {len(problems)} data choices will fail: "
            f"{failing[0]}",
            flush=True,
        )

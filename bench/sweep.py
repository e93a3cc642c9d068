"""Search efficiency of the sweep: trials until the grid's best configuration has been run.

On a fixed small grid whose every configuration was trained and scored once (the `cpu_grid`
profile of search_spaces/dsprites.yaml, cached in bench/sweep_grid_scores.json from a finished grid
sweep's MLflow record), count how many trials each way of searching needs before it has run the
configuration that `rank_configurations` puts first over the whole grid (the paper's mean rank on
Rec, MIG, FactorVAE score and SAP):

- grid order: the grid as the file lists it (deterministic);
- random order: Optuna's `GridSampler`, which `--mode grid` uses: a random permutation;
- random search: Optuna's `RandomSampler` over the file's ranges;
- optuna mode: the sweep's own space (`OptunaDefineByRun`) and multi-objective `TPESampler`.

Samplers over ranges propose values between grid points. A proposal stands for the grid
configuration of its method nearest to it (distance in log space where the range is log, in units
of the range) and gets that configuration's cached scores: the landscape is the grid's, so every
strategy is judged on the same known answers. Repeats vary the sampler's seed.

    python bench/sweep.py --from-mlflow sqlite:////abs/mlflow.db --sweep dsprites-cpu-grid
    python bench/sweep.py            # from the cache; writes the "## Sweep search" section
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from benchmarks_md import BENCHMARKS, cpu_model, replace_section
from sweep_replay import (
    RUNG_CACHES,
    Recording,
    grid_sampler_permutation,
    later_grace,
    replay_heading,
    replay_section,
    replay_table,
)

from pipeline.report import collect_rows
from pipeline.report_ranking import aggregate
from pipeline.search.grid import config_id
from pipeline.search.loader import load_search_space
from pipeline.search.optuna_search import OptunaDefineByRun
from pipeline.search.types import Profile, grid_points
from pipeline.tracking import Tracking
from tcwae.atomic import write_text_atomically
from tcwae.methods import hyperparameter_names
from tcwae.metrics import PAPER_SCORES, rank_configurations

SECTION = "## Sweep search"
CACHE = Path(__file__).resolve().parent / "sweep_grid_scores.json"
DEFAULT_SPACE, DEFAULT_PROFILE = "dsprites", "cpu_grid"
MAX_TRIALS = 60  # a strategy that has not found the best by then counts as MAX_TRIALS
TPE_STARTUP_TRIALS = (
    inspect.signature(optuna.samplers.TPESampler).parameters["n_startup_trials"].default
)

Scores = dict[str, float]


# ---- the cached grid ---------------------------------------------------------------------------


def cache_from_mlflow(tracking_uri: str, experiment: str, sweep: str, path: Path) -> None:
    """Write the cache: the space, profile and each configuration's mean scores over its seeds."""
    tracking = Tracking.at(tracking_uri)
    parent = tracking.find_sweep_by_name(experiment, sweep)
    rows = [row for row in collect_rows(tracking, parent) if row["status"] == "FINISHED"]
    params = tracking.params(parent)
    table = aggregate(rows)
    cache = {
        "space": params.get("space", DEFAULT_SPACE),
        "profile": params.get("profile", DEFAULT_PROFILE),
        "source": f"MLflow sweep {sweep!r} (parent run {parent}) in {tracking_uri}",
        "configurations": [
            {
                "method": row["method"],
                **_hyperparameters(row),
                **{score: row[score] for score in PAPER_SCORES},
            }
            for row in table
        ],
    }
    write_text_atomically(path, json.dumps(cache, indent=1))


def _hyperparameters(row: Mapping[str, Any]) -> dict[str, float]:
    return {name: row[name] for name in hyperparameter_names(row["method"]) if name in row}


class Grid:
    """The grid's configurations at the profile's first seed (ids as `--mode grid` names them),
    their cached scores, and the best one."""

    def __init__(self, profile: Profile, cache: Mapping[str, Any]) -> None:
        self.profile = profile
        self.points = [p for p in grid_points(profile) if p["seed"] == profile.seeds[0]]
        self.ids = [config_id(point) for point in self.points]
        known = {self._searched(entry): entry for entry in cache["configurations"]}
        missing = [
            i for i, p in zip(self.ids, self.points, strict=True) if self._searched(p) not in known
        ]
        if missing:
            raise SystemExit(
                f"sweep bench: the cache has no scores for {', '.join(missing)}; rebuild it with "
                "--from-mlflow from a finished grid sweep of this profile"
            )
        self.rank_by = list(profile.rank_by)
        self.scores = {
            i: {score: float(known[self._searched(p)][score]) for score, _ in self.rank_by}
            for i, p in zip(self.ids, self.points, strict=True)
        }
        table = [{"id": i, **self.scores[i]} for i in self.ids]
        self.ranked = rank_configurations(table, self.rank_by)
        self.best = self.ranked[0]["id"]

    def _searched(self, entry: Mapping[str, Any]) -> tuple:
        """What tells configurations apart: the method and the values of its searched params."""
        method = entry["method"]
        if method not in self.profile.methods:
            return (method,)
        names = self.profile.methods[method].params
        return (method, *(float(entry[name]) for name in names))

    def nearest(self, proposal: Mapping[str, Any]) -> str:
        """The grid configuration of the proposal's method nearest to it, in units of each range
        (log where the range is log)."""
        spec = self.profile.methods[proposal["method"]]
        candidates = [p for p in self.points if p["method"] == proposal["method"]]

        def distance(point: Mapping[str, Any]) -> float:
            total = 0.0
            for param in spec.params.values():
                scale = math.log if param.log else float
                width = scale(param.high) - scale(param.low) or 1.0
                total += ((scale(proposal[param.name]) - scale(point[param.name])) / width) ** 2
            return total

        return config_id(min(candidates, key=distance))

    def values(self, grid_id: str) -> list[float]:
        return [self.scores[grid_id][score] for score, _ in self.rank_by]


# ---- strategies ----------------------------------------------------------------------------------


def trials_to_best(propose: Callable[[], str], best: str) -> int:
    """1-based index of the first proposal that is `best`, or MAX_TRIALS if none is."""
    for trial in range(1, MAX_TRIALS + 1):
        if propose() == best:
            return trial
    return MAX_TRIALS


def grid_order(grid: Grid, seed: int) -> int:
    del seed  # deterministic
    return grid.ids.index(grid.best) + 1


def grid_sampler_order(grid: Grid, seed: int) -> int:
    """`--mode grid`: where the best configuration comes in GridSampler's random order."""
    return grid_sampler_permutation(grid.points, seed).index(grid.best) + 1


def sampler_over_ranges(make_sampler: Callable[[int], optuna.samplers.BaseSampler]):
    """A strategy that asks `make_sampler(seed)` for points of the sweep's optuna-mode space and
    tells it the nearest grid configuration's scores (multi-objective, as the sweep does)."""

    def strategy(grid: Grid, seed: int) -> int:
        space = OptunaDefineByRun.from_profile(grid.profile)
        directions = ["minimize" if mode == "min" else "maximize" for _, mode in grid.rank_by]
        study = optuna.create_study(directions=directions, sampler=make_sampler(seed))

        def propose() -> str:
            trial = study.ask()
            chosen = grid.nearest(space(trial))
            study.tell(trial, grid.values(chosen))
            return chosen

        return trials_to_best(propose, grid.best)

    return strategy


STRATEGIES: dict[str, tuple[str, Callable[[Grid, int], int]]] = {
    "grid order": ("the file's order", grid_order),
    "random order": ("`--mode grid` (GridSampler)", grid_sampler_order),
    "random search": (
        "RandomSampler over the ranges",
        sampler_over_ranges(lambda seed: optuna.samplers.RandomSampler(seed=seed)),
    ),
    "optuna mode": (
        "`--mode optuna` (multi-objective TPESampler)",
        sampler_over_ranges(lambda seed: optuna.samplers.TPESampler(seed=seed)),
    ),
}


# ---- measurement ---------------------------------------------------------------------------------


def measure(grid: Grid, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for name, (how, strategy) in STRATEGIES.items():
        seeds = range(1 if strategy is grid_order else repeats)
        started = time.perf_counter()
        counts = np.array([strategy(grid, seed) for seed in seeds])
        rows.append(
            {
                "strategy": name,
                "how": how,
                "repeats": len(counts),
                "median": float(np.median(counts)),
                "mean": float(counts.mean()),
                "p90": float(np.percentile(counts, 90)),
                "within_grid": float(np.mean(counts <= len(grid.ids))),
                "never": int(np.sum(counts >= MAX_TRIALS)),
                "seconds": time.perf_counter() - started,
            }
        )
        print(_row_text(rows[-1]), flush=True)
    return rows


def _row_text(row: Mapping[str, Any]) -> str:
    return (
        f"| {row['strategy']}: {row['how']} | {row['repeats']} | {row['median']:g} | "
        f"{row['mean']:.1f} | {row['p90']:g} | {100 * row['within_grid']:.0f}% | {row['never']} |"
    )


def section(grid: Grid, cache: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    ranking = ", ".join(f"{entry['id']} ({entry['mean_rank']:.2f})" for entry in grid.ranked[:3])
    lines = [
        f"`python bench/sweep.py` ({time.strftime('%Y-%m-%d')}; {cpu_model()}, "
        f"{os.cpu_count()} cores; Optuna {optuna.__version__}). Known scores: {cache['source']}, "
        f"profile `{grid.profile.name}` of `{cache['space']}`: {len(grid.ids)} configurations, "
        f"one seed each. Best by mean rank on {', '.join(s for s, _ in grid.rank_by)}: "
        f"{ranking} (first three).",
        "",
        "Trials until the best configuration has been run (lower is better; a search that has not "
        f"found it after {MAX_TRIALS} trials counts {MAX_TRIALS}):",
        "",
        "| strategy | repeats (seeds) | median | mean | 90th percentile | found within "
        f"{len(grid.ids)} trials | not found in {MAX_TRIALS} |",
        "|---|---|---|---|---|---|---|",
        *(_row_text(row) for row in rows),
        "",
        "Samplers over ranges may propose the same configuration twice; each proposal is a trial "
        "the cluster would pay for. A proposal between grid points stands for the nearest grid "
        "configuration of its method, so the landscape is the grid's. TPESampler's first "
        f"{TPE_STARTUP_TRIALS} trials are random (its `n_startup_trials`), so on a grid of "
        f"{len(grid.ids)} its model has barely started when the best configuration is found: "
        "this grid cannot show what optuna mode gains on the paper's 91 configurations.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-mlflow", metavar="URI", help="rebuild the cache from this store")
    parser.add_argument("--experiment", default="dsprites", help="with --from-mlflow")
    parser.add_argument("--sweep", default="dsprites-cpu-grid", help="with --from-mlflow")
    parser.add_argument("--repeats", type=int, default=100, help="seeds per random strategy")
    parser.add_argument("--cache", type=Path, default=CACHE, help="the known scores (JSON)")
    parser.add_argument(
        "--rung-cache",
        type=Path,
        action="append",
        help="a recording of rung scores, repeated (default: the committed ones)",
    )
    parser.add_argument("--replays", type=int, default=200, help="orders per replayed rule")
    parser.add_argument("--workers", default="1,2,4", help="trials at a time in the replays")
    parser.add_argument(
        "--grace",
        type=int,
        action="append",
        default=[],
        help="also replay from this later first rung, among the recorded ones (repeatable)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.from_mlflow:
        cache_from_mlflow(args.from_mlflow, args.experiment, args.sweep, args.cache)
        print(f"wrote {args.cache}")
    if not args.cache.exists():
        print(f"sweep bench: no {args.cache}; build it with --from-mlflow", file=sys.stderr)
        return 2
    cache = json.loads(args.cache.read_text())
    grid = Grid(profile_of(cache), cache)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = measure(grid, args.repeats)
    text = section(grid, cache, rows)
    print(text)
    if not args.no_write:
        replace_section(BENCHMARKS, SECTION, text)
        print(f"wrote {BENCHMARKS}")
    workers = [int(value) for value in args.workers.split(",")]
    for path in args.rung_cache or RUNG_CACHES:
        if not path.exists():
            print(f"sweep bench: no {path}; record one with bench/record_rungs.py")
            continue
        rung_cache = json.loads(path.read_text())
        recording = Recording(rung_cache, profile_of(rung_cache).rank_by)
        later = [grace for grace in args.grace if later_grace(recording.rungs, grace)]
        for grace in (None, *later):
            rows = replay_table(recording, args.replays, workers, grace)
            text = replay_section(recording, rows, path, grace)
            print(text)
            if not args.no_write:
                replace_section(BENCHMARKS, replay_heading(rung_cache, grace), text)
                print(f"wrote {BENCHMARKS}")
    return 0


def profile_of(cache: Mapping[str, Any]) -> Profile:
    return load_search_space(cache["space"]).profile(cache["profile"])


if __name__ == "__main__":
    sys.exit(main())

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
import heapq
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

from pipeline.report import collect_rows
from pipeline.report_ranking import aggregate
from pipeline.rungs import SchedulerSpec, SuccessiveHalving
from pipeline.search_space import (
    GRID_PARAMETER,
    OptunaDefineByRun,
    Profile,
    config_id,
    grid_points,
    grid_sampler_space,
    load_search_space,
)
from pipeline.tracking import Tracking
from tcwae.atomic import write_text_atomically
from tcwae.methods import hyperparameter_names
from tcwae.metrics import PAPER_SCORES, rank_configurations

SECTION = "## Sweep search"
REPLAY_SECTION = "## Successive halving (replay)"
CACHE = Path(__file__).resolve().parent / "sweep_grid_scores.json"
RUNG_CACHE = Path(__file__).resolve().parent / "sweep_rung_scores.json"
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


def grid_sampler_permutation(points: Sequence[Mapping[str, Any]], seed: int) -> list[str]:
    """The order in which `--mode grid` runs the grid: Optuna's GridSampler over one `config_id`
    categorical, run inside `optimize` (which is where the sampler stops the study once the grid
    is exhausted)."""
    ids = [config_id(point) for point in points]
    study = optuna.create_study(
        sampler=optuna.samplers.GridSampler(grid_sampler_space(points), seed=seed)
    )
    order: list[str] = []

    def objective(trial: optuna.Trial) -> float:
        order.append(trial.suggest_categorical(GRID_PARAMETER, ids))
        return 0.0

    study.optimize(objective, n_trials=len(ids))
    return order


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


# ---- successive halving, replayed on recorded rung scores ---------------------------------------


class Recording:
    """A grid recorded by bench/record_rungs.py: every point's rung scores at the rung steps and
    final scores at the full budget, and the whole grid ranked on its final scores (mean over
    seeds, the paper's mean rank): the answer a full grid sweep gives."""

    def __init__(self, cache: Mapping[str, Any], rank_by: Sequence[tuple[str, str]]) -> None:
        self.cache = cache
        self.rank_by = tuple(rank_by)
        self.budget = int(cache["steps"])
        self.rungs = tuple(cache["rungs"])
        self.points = dict(cache["points"])
        self.configuration = {name: _configuration(entry) for name, entry in self.points.items()}
        self.ranked = self.rank(list(self.points))
        self.mean_rank = {row["id"]: row["mean_rank"] for row in self.ranked}
        self.best = self.ranked[0]["id"]

    def rank(self, names: Sequence[str]) -> list[dict[str, Any]]:
        """Configurations of these points ranked on their mean final scores over seeds."""
        members: dict[str, list[str]] = {}
        for name in names:
            members.setdefault(self.configuration[name], []).append(name)
        table = [
            {
                "id": configuration,
                **{
                    score: float(np.mean([self.points[n]["final"][score] for n in points]))
                    for score, _ in self.rank_by
                },
            }
            for configuration, points in members.items()
        ]
        return rank_configurations(table, self.rank_by)

    def scores_at(self, name: str, step: int) -> dict[str, float]:
        return self.points[name]["rungs"][str(step)]


def _configuration(entry: Mapping[str, Any]) -> str:
    point = {key: value for key, value in entry["point"].items() if key != "seed"}
    return config_id({**point, "seed": "*"})


def replay(
    recording: Recording, spec: SchedulerSpec, order: Sequence[str], workers: int
) -> dict[str, Any]:
    """One asynchronous successive-halving sweep over the recorded grid: `workers` trials train
    at a time at one speed (time counts training steps), taken in `order`; a trial that reaches
    a rung is judged there by `pipeline.rungs.SuccessiveHalving` against the trials that reached
    it before, as MultiObjectiveAsha judges it in a sweep. Returns the steps trained, the points
    trained to the full budget and the configuration the sweep's report would rank first."""
    halving = SuccessiveHalving(spec, recording.budget)
    missing = sorted(set(halving.rungs) - set(recording.rungs))
    if missing:
        raise SystemExit(f"sweep bench: rung steps {missing} were not recorded")
    milestones = (*halving.rungs, recording.budget)
    waiting = list(order)
    events: list[tuple[int, int, str, int]] = []  # (time, start order, point, milestone index)
    started = 0

    def start(now: int) -> None:
        nonlocal started
        name = waiting.pop(0)
        heapq.heappush(events, (now + milestones[0], started, name, 0))
        started += 1

    for _ in range(min(workers, len(waiting))):
        start(0)
    used, finished = 0, []
    while events:
        now, rank_in_start, name, index = heapq.heappop(events)
        step = milestones[index]
        decision = None
        if step < recording.budget:
            scores = recording.scores_at(name, step)
            decision = halving.judge(name, step, {k: scores[k] for k, _ in spec.rank_by})
        if decision is not None and decision.proceed:
            following = milestones[index + 1]
            heapq.heappush(events, (now + following - step, rank_in_start, name, index + 1))
            continue
        used += step
        if step == recording.budget:
            finished.append(name)
        if waiting:
            start(now)
    chosen = recording.rank(finished)[0]["id"]
    return {
        "fraction": used / (recording.budget * len(order)),
        "finished": len({recording.configuration[name] for name in finished}),
        "hit": chosen == recording.best,
        "regret": recording.mean_rank[chosen] - recording.mean_rank[recording.best],
    }


def replay_synchronous(
    recording: Recording, spec: SchedulerSpec, order: Sequence[str]
) -> dict[str, Any]:
    """One synchronous successive-halving sweep over the recorded grid: every point trains to
    the first rung, the rung keeps the best ceil(n / eta) of them, and so on up the rungs, as
    MultiObjectiveAsha with `synchronous` does. Neither the order nor the number of trials at
    a time changes what it decides (only the order among exact ties); it returns what `replay`
    returns."""
    halving = SuccessiveHalving(spec, recording.budget, trials=len(order))
    missing = sorted(set(halving.rungs) - set(recording.rungs))
    if missing:
        raise SystemExit(f"sweep bench: rung steps {missing} were not recorded")
    alive, used, reached = list(order), 0, 0
    for step in halving.rungs:
        used += (step - reached) * len(alive)
        decisions: list[Any] = []
        for name in alive:
            scores = recording.scores_at(name, step)
            decisions += halving.arrive(name, step, {k: scores[k] for k, _ in spec.rank_by})
        kept = {d.trial_id for d in decisions if d.proceed}
        alive, reached = [name for name in alive if name in kept], step
    used += (recording.budget - reached) * len(alive)
    chosen = recording.rank(alive)[0]["id"]
    return {
        "fraction": used / (recording.budget * len(order)),
        "finished": len({recording.configuration[name] for name in alive}),
        "hit": chosen == recording.best,
        "regret": recording.mean_rank[chosen] - recording.mean_rank[recording.best],
    }


def replay_table(
    recording: Recording, replays: int, workers: Sequence[int]
) -> list[dict[str, Any]]:
    """Every selection rule of `pipeline.rungs` at the recorded grace and eta, replayed in
    GridSampler's orders for seeds 0 .. replays-1: asynchronous at each number of concurrent
    trials, and synchronous (where concurrency does not matter, reported as 'any')."""
    grace = recording.rungs[0]
    eta = recording.rungs[1] // grace if len(recording.rungs) > 1 else SchedulerSpec.eta
    points = [recording.points[name]["point"] for name in recording.points]
    orders = [grid_sampler_permutation(points, seed) for seed in range(replays)]
    rules = [("pareto", "mean_rank"), ("pareto", "crowding"), ("mean_rank", "mean_rank")]
    rows = []
    for synchronous in (False, True):
        for selection, tie_break in rules:
            spec = SchedulerSpec(
                "mo-asha",
                grace,
                eta,
                recording.rank_by,
                selection,
                tie_break,
                recording.cache["rung_profile"],
                synchronous,
            )
            for concurrent in ["any"] if synchronous else workers:
                if synchronous:
                    runs = [replay_synchronous(recording, spec, order) for order in orders]
                else:
                    runs = [replay(recording, spec, order, concurrent) for order in orders]
                rows.append(_replay_summary(spec, concurrent, runs))
                print(_replay_row(rows[-1]), flush=True)
    return rows


def _replay_summary(
    spec: SchedulerSpec, concurrent: int | str, runs: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    misses = [run["regret"] for run in runs if not run["hit"]]
    return {
        "rule": ("synchronous, " if spec.synchronous else "") + spec.describe_order(),
        "workers": concurrent,
        "replays": len(runs),
        "fraction": float(np.mean([run["fraction"] for run in runs])),
        "fraction_max": float(np.max([run["fraction"] for run in runs])),
        "finished": float(np.mean([run["finished"] for run in runs])),
        "hits": float(np.mean([run["hit"] for run in runs])),
        "regret": float(np.mean(misses)) if misses else 0.0,
        "regret_max": float(np.max(misses)) if misses else 0.0,
    }


def _replay_row(row: Mapping[str, Any]) -> str:
    return (
        f"| {row['rule']} | {row['workers']} | {row['replays']} | "
        f"{100 * row['fraction']:.0f}% ({100 * row['fraction_max']:.0f}%) | "
        f"{row['finished']:.1f} | {100 * row['hits']:.0f}% | "
        f"{row['regret']:.2f} ({row['regret_max']:.2f}) |"
    )


def replay_section(recording: Recording, rows: Sequence[Mapping[str, Any]]) -> str:
    cache = recording.cache
    seconds = [entry["seconds"] for entry in recording.points.values()]
    rung_seconds = [value for entry in seconds for value in entry["rung_evaluations"]]
    train_per_step = np.mean([entry["train"] for entry in seconds]) / recording.budget
    ranking = ", ".join(f"{row['id']} ({row['mean_rank']:.2f})" for row in recording.ranked[:3])
    configurations = len(recording.ranked)
    lines = [
        f"`python bench/sweep.py` ({time.strftime('%Y-%m-%d')}; {cpu_model()}, "
        f"{os.cpu_count()} cores) on the recording `{RUNG_CACHE.name}`, made on "
        f"{cache['date']} ({cache['machine']}) by `{cache['command']}`: profile "
        f"`{cache['profile']}` of `{cache['space']}` ({', '.join(cache['methods'])}), "
        f"{len(recording.points)} points ({configurations} configurations), "
        f"{recording.budget} steps each, rung scores at steps {list(recording.rungs)} with the "
        f"`{cache['rung_profile']}` metric profile, final scores with `{cache['eval_profile']}`. "
        f"Best by mean rank on {', '.join(s for s, _ in recording.rank_by)} over the whole grid: "
        f"{ranking} (first three).",
        "",
        f"Cost of one rung evaluation (`{cache['rung_profile']}`: Rec, MIG, FactorVAE score, SAP) "
        f"in this recording: {np.mean(rung_seconds):.1f} s on average "
        f"({np.min(rung_seconds):.1f}-{np.max(rung_seconds):.1f} s, {len(rung_seconds)} "
        f"evaluations), against {train_per_step:.2f} s per training step.",
        "",
        "Each replay runs the grid in GridSampler's order for one seed (what `--mode grid` does), "
        "the given number of trials at a time, all at one speed; the scheduler judges each trial "
        "at each rung with the recorded scores (asynchronous: against the trials that reached "
        "the rung before it; synchronous: once every trial has reached it, so that neither the "
        "order nor the concurrency matters). Steps used: the fraction of the full grid's "
        "training steps (mean, and the largest in brackets). Finds the best: the configuration "
        "the report ranks first among those trained to the full budget is the grid's best. "
        "Regret: its mean rank in the whole grid's ranking minus the best's, over the replays "
        "that missed (mean, largest in brackets).",
        "",
        "| order at a rung | trials at a time | replays | steps used | configurations finished "
        f"(of {configurations}) | finds the best | regret when not |",
        "|---|---|---|---|---|---|---|",
        *(_replay_row(row) for row in rows),
    ]
    if len(recording.rungs) < 3 or configurations < 12:
        lines += [
            "",
            f"A grid of {configurations} configurations with {len(recording.rungs)} rung(s) "
            "and one seed says whether these rungs keep this grid's best configuration, not "
            "what successive halving saves on a grid the size of the paper's (91 "
            "configurations, 5 seeds); a larger recording (`python bench/record_rungs.py "
            "--profile cpu_grid --grace 100 --eta 3`, see its docstring) would.",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-mlflow", metavar="URI", help="rebuild the cache from this store")
    parser.add_argument("--experiment", default="dsprites", help="with --from-mlflow")
    parser.add_argument("--sweep", default="dsprites-cpu-grid", help="with --from-mlflow")
    parser.add_argument("--repeats", type=int, default=100, help="seeds per random strategy")
    parser.add_argument("--cache", type=Path, default=CACHE, help="the known scores (JSON)")
    parser.add_argument("--rung-cache", type=Path, default=RUNG_CACHE, help="recorded rungs")
    parser.add_argument("--replays", type=int, default=200, help="orders per replayed rule")
    parser.add_argument("--workers", default="1,2,4", help="trials at a time in the replays")
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
    if not args.rung_cache.exists():
        print(f"sweep bench: no {args.rung_cache}; record one with bench/record_rungs.py")
        return 0
    rung_cache = json.loads(args.rung_cache.read_text())
    recording = Recording(rung_cache, profile_of(rung_cache).rank_by)
    workers = [int(value) for value in args.workers.split(",")]
    text = replay_section(recording, replay_table(recording, args.replays, workers))
    print(text)
    if not args.no_write:
        replace_section(BENCHMARKS, REPLAY_SECTION, text)
        print(f"wrote {BENCHMARKS}")
    return 0


def profile_of(cache: Mapping[str, Any]) -> Profile:
    return load_search_space(cache["space"]).profile(cache["profile"])


if __name__ == "__main__":
    sys.exit(main())

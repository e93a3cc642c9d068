"""Successive halving replayed on a recorded grid (the replay half of `bench/sweep.py`).

`bench/record_rungs.py` trains every point of a profile's grid once and records its rung scores
at every rung step and its final scores; `replay` (asynchronous, as Ray Tune runs MO-ASHA) and
`replay_synchronous` run `SuccessiveHalving` (pipeline/search/successive_halving.py) over those
recorded scores in many trial orders, which says what fraction of the grid's training steps a
sweep would use and whether it would end with the grid's best configuration, without training
anything again.
"""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from benchmarks_md import cpu_model

from pipeline.search.grid import config_id, grid_sampler_space
from pipeline.search.successive_halving import SchedulerSpec, SuccessiveHalving
from pipeline.search.types import GRID_PARAMETER
from tcwae.metrics import rank_configurations

RUNG_CACHE = Path(__file__).resolve().parent / "sweep_rung_scores.json"
# The committed recordings bench/sweep.py replays: `cpu` (make sweep's 6 configurations) and
# `cpu_grid` (the 12-configuration grid) at its own 1,000 steps and at 3,000.
RUNG_CACHES = (
    RUNG_CACHE,
    RUNG_CACHE.with_name("sweep_rung_scores_cpu_grid.json"),
    RUNG_CACHE.with_name("sweep_rung_scores_cpu_grid_3000.json"),
)


def later_grace(rungs: Sequence[int], grace: int | None) -> int | None:
    """`grace` when it moves the first rung from the recording's first (`rungs[0]`), else None."""
    return grace if grace and grace != rungs[0] else None


def replay_heading(cache: Mapping[str, Any], grace: int | None = None) -> str:
    """BENCHMARKS.md's section for one recording, named by its profile and budget (and by the
    first rung when the replay starts later than the recording's first rung)."""
    later = f", first rung at step {grace}" if later_grace(cache["rungs"], grace) else ""
    return (
        f"## Successive halving (replay of the `{cache['profile']}` grid, "
        f"{cache['steps']:,} steps{later})"
    )


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

    def rung_scores(self, name: str, step: int, spec: SchedulerSpec) -> dict[str, float]:
        """The recorded rung scores of point `name` at `step` that `spec` orders by."""
        scores = self.points[name]["rungs"][str(step)]
        return {score: scores[score] for score, _ in spec.rank_by}

    def check_rungs(self, rungs: Sequence[int]) -> None:
        missing = sorted(set(rungs) - set(self.rungs))
        if missing:
            raise SystemExit(f"sweep bench: rung steps {missing} were not recorded")

    def outcome(self, finished: Sequence[str], used: int, points: int) -> dict[str, Any]:
        """What a replay that trained `used` steps of `points` points, `finished` of them to
        the budget, ends with: the fraction of the grid's steps, the configurations finished,
        whether the report's first is the grid's best, and the mean-rank regret if not."""
        chosen = self.rank(finished)[0]["id"]
        return {
            "fraction": used / (self.budget * points),
            "finished": len({self.configuration[name] for name in finished}),
            "hit": chosen == self.best,
            "regret": self.mean_rank[chosen] - self.mean_rank[self.best],
        }


def _configuration(entry: Mapping[str, Any]) -> str:
    point = {key: value for key, value in entry["point"].items() if key != "seed"}
    return config_id({**point, "seed": "*"})


def replay(
    recording: Recording, spec: SchedulerSpec, order: Sequence[str], workers: int
) -> dict[str, Any]:
    """One asynchronous successive-halving sweep over the recorded grid: `workers` trials train at a
    time at one speed (time counts training steps), taken in `order`; a trial that reaches a
    rung is judged there by `SuccessiveHalving` against the trials that reached it before, as
    MultiObjectiveAsha judges it in a sweep. Returns the steps trained, the points trained to
    the full budget and the configuration the sweep's report would rank first."""
    halving = SuccessiveHalving(spec, recording.budget)
    recording.check_rungs(halving.rungs)
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
            decision = halving.judge(name, step, recording.rung_scores(name, step, spec))
        if decision is not None and decision.proceed:
            following = milestones[index + 1]
            heapq.heappush(events, (now + following - step, rank_in_start, name, index + 1))
            continue
        used += step
        if step == recording.budget:
            finished.append(name)
        if waiting:
            start(now)
    return recording.outcome(finished, used, len(order))


def replay_synchronous(
    recording: Recording, spec: SchedulerSpec, order: Sequence[str]
) -> dict[str, Any]:
    """One synchronous successive-halving sweep over the recorded grid: every point trains to
    the first rung, the rung keeps the best ceil(n / eta) of them, and so on up the rungs, as
    MultiObjectiveAsha with `synchronous` does. Neither the order nor the number of trials at
    a time changes what it decides (only the order among exact ties); it returns what `replay`
    returns."""
    halving = SuccessiveHalving(spec, recording.budget, trials=len(order))
    recording.check_rungs(halving.rungs)
    alive, used, reached = list(order), 0, 0
    for step in halving.rungs:
        used += (step - reached) * len(alive)
        decisions: list[Any] = []
        for name in alive:
            decisions += halving.arrive(name, step, recording.rung_scores(name, step, spec))
        kept = {d.trial_id for d in decisions if d.proceed}
        alive, reached = [name for name in alive if name in kept], step
    used += (recording.budget - reached) * len(alive)
    return recording.outcome(alive, used, len(order))


def recorded_eta(recording: Recording) -> int:
    """The rung factor the recording was made with."""
    rungs = recording.rungs
    return rungs[1] // rungs[0] if len(rungs) > 1 else SchedulerSpec.eta


def replay_table(
    recording: Recording, replays: int, workers: Sequence[int], grace: int | None = None
) -> list[dict[str, Any]]:
    """Every selection rule of successive halving at the recorded eta and grace (or a later
    `grace` whose rungs were all recorded), replayed in GridSampler's orders for seeds
    0 .. replays-1: asynchronous at each number of concurrent trials, and synchronous (where
    concurrency does not matter, reported as 'any')."""
    eta = recorded_eta(recording)
    grace = grace or recording.rungs[0]
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


def replay_section(
    recording: Recording,
    rows: Sequence[Mapping[str, Any]],
    path: Path = RUNG_CACHE,
    grace: int | None = None,
) -> str:
    cache = recording.cache
    seconds = [entry["seconds"] for entry in recording.points.values()]
    rung_seconds = [value for entry in seconds for value in entry["rung_evaluations"]]
    train_per_step = np.mean([entry["train"] for entry in seconds]) / recording.budget
    ranking = ", ".join(f"{row['id']} ({row['mean_rank']:.2f})" for row in recording.ranked[:3])
    configurations = len(recording.ranked)
    lines = [
        f"`python bench/sweep.py` ({time.strftime('%Y-%m-%d')}; {cpu_model()}, "
        f"{os.cpu_count()} cores) on the recording `{path.name}`, made on "
        f"{cache['date']} ({cache['machine']}) by `{cache['command']}`: profile "
        f"`{cache['profile']}` of `{cache['space']}` ({', '.join(cache['methods'])}), "
        f"{len(recording.points)} points ({configurations} configurations), "
        f"{recording.budget} steps each, rung scores at steps {list(recording.rungs)} with the "
        f"`{cache['rung_profile']}` metric profile, final scores with `{cache['eval_profile']}`. "
        f"Best by mean rank on {', '.join(s for s, _ in recording.rank_by)} over the whole grid: "
        f"{ranking} (first three)."
        + (
            f" **Replayed with the first rung at step {grace}** (rungs "
            f"{SchedulerSpec('mo-asha', grace, recorded_eta(recording)).rungs(recording.budget)}), "
            "not at the recording's first."
            if later_grace(recording.rungs, grace)
            else ""
        ),
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

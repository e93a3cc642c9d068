"""Record what successive halving sees on a grid, once, for bench/sweep.py to replay.

Every point of a profile's grid trains in this process (`tcwae.trainer.Trainer` on the sweep's
own configuration of that point) and is scored as a sweep trial is:
`pipeline.evaluation.score_at_rung` (Rec, MIG, FactorVAE score, SAP with the rung profile's sizes)
at every rung step, and `pipeline.evaluation.model_scores` with the trial's evaluation profile at
the end of its budget. The cache is rewritten (atomically) after each point, and a recording
that was interrupted continues with the points it lacks.

    python bench/record_rungs.py --profile cpu --grace 100 --eta 3          # the profile's grid
    python bench/record_rungs.py --profile cpu --methods tcwae_mws,wae_mmd --steps 90 \\
        --grace 10 --eval-profile rung --out /tmp/small.json                # a quick check

The rungs come from the profile's `scheduler:` block, or from --grace / --eta / --rung-profile.
One process trains one point at a time; to use two cores, record two method subsets at once
(`--methods A --out a.json`, `--methods B --out b.json`) and join them with
`--merge a.json b.json --out whole.json`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from benchmarks_md import cpu_model
from sweep_replay import RUNG_CACHE

from pipeline.evaluation import EVAL_SEED_STREAM, model_scores, score_at_rung
from pipeline.search.grid import config_id
from pipeline.search.loader import load_search_space
from pipeline.search.successive_halving import RUNG_SCORES, SchedulerSpec
from pipeline.search.types import Profile, grid_points, trial_train_config
from tcwae.atomic import write_text_atomically
from tcwae.config import TrainConfig
from tcwae.methods import hyperparameter_names


def scheduler_spec(profile: Profile, args: argparse.Namespace) -> SchedulerSpec:
    """The profile's mo-asha block with the command line's overrides."""
    base = profile.scheduler if profile.scheduler and profile.scheduler.type == "mo-asha" else None
    grace = args.grace or (base.grace if base else None)
    if grace is None:
        raise SystemExit(
            f"record_rungs: profile {profile.name!r} has no mo-asha scheduler block; pass --grace"
        )
    return SchedulerSpec(
        "mo-asha",
        grace,
        args.eta or (base.eta if base else SchedulerSpec.eta),
        rank_by=tuple((score, "min" if score == "rec" else "max") for score in RUNG_SCORES),
        rung_profile=args.rung_profile or (base.rung_profile if base else "rung"),
    )


def point_config(
    profile: Profile, point: Mapping[str, Any], args: argparse.Namespace
) -> TrainConfig:
    config = trial_train_config(profile, point)
    changes = {"steps": args.steps, "eval_profile": args.eval_profile}
    return config.replace(**{key: value for key, value in changes.items() if value is not None})


def record_point(
    config: TrainConfig, dataset: Any, spec: SchedulerSpec, steps: Sequence[int]
) -> dict[str, Any]:
    """Train one configuration; its rung scores at `steps`, final scores and timings."""
    from tcwae.trainer import Trainer

    check = spec.rung_check(config.steps)
    trainer = Trainer(config, dataset)
    rungs: dict[str, dict[str, float]] = {}
    rung_seconds = []

    def on_report(step: int, losses: dict[str, float]) -> None:
        if step in steps:
            started = time.perf_counter()
            scores = score_at_rung(trainer, check)
            rung_seconds.append(time.perf_counter() - started)
            rungs[str(step)] = {key.split("/", 1)[1]: value for key, value in scores.items()}

    started = time.perf_counter()
    trainer.train(on_report=on_report)
    trained = time.perf_counter() - started - sum(rung_seconds)
    started = time.perf_counter()
    rng = np.random.default_rng([config.seed, EVAL_SEED_STREAM])
    final = model_scores(trainer, rng, config.eval_profile, RUNG_SCORES)
    return {
        "rungs": rungs,
        "final": {score: final[score] for score in RUNG_SCORES if score in final},
        "seconds": {
            "train": trained,
            "rung_evaluations": rung_seconds,
            "final_evaluation": time.perf_counter() - started,
        },
    }


def merge_recordings(recordings: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One recording from several made with the same settings on disjoint sets of methods."""
    shared = ("space", "profile", "steps", "rungs", "rung_profile", "eval_profile")
    first = recordings[0]
    for other in recordings[1:]:
        differing = [key for key in shared if other.get(key) != first.get(key)]
        if differing:
            raise ValueError(
                f"recordings differ in {', '.join(differing)}; only methods may differ"
            )
    points: dict[str, Any] = {}
    for recording in recordings:
        overlap = points.keys() & recording["points"].keys()
        if overlap:
            raise ValueError(f"points recorded twice: {', '.join(sorted(overlap))}")
        points.update(recording["points"])
    return {
        **{key: first[key] for key in shared},
        "methods": [method for recording in recordings for method in recording["methods"]],
        "points": points,
        "command": " and, at the same time, ".join(r["command"] for r in recordings),
        "machine": first["machine"],
        "date": max(recording["date"] for recording in recordings),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="dsprites", help="search space (dsprites)")
    parser.add_argument("--profile", default="cpu", help="profile whose grid is recorded (cpu)")
    parser.add_argument("--methods", help="comma-separated subset of the profile's methods")
    parser.add_argument("--steps", type=int, help="budget per point (default: the profile's)")
    parser.add_argument("--eval-profile", help="final metric sizes (default: the profile's)")
    parser.add_argument("--grace", type=int, help="first rung (default: the profile's block)")
    parser.add_argument("--eta", type=int, help="rung factor (default: the block's, else 3)")
    parser.add_argument("--rung-profile", help="rung metric sizes (default: the block's, rung)")
    parser.add_argument("--data-root", help="data folder (default: $TCWAE_DATA)")
    parser.add_argument("--out", type=Path, default=RUNG_CACHE, help="the cache (JSON)")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="RECORDING",
        help="join these recordings into --out",
    )
    args = parser.parse_args(argv)
    if args.merge:
        try:
            merged = merge_recordings([json.loads(path.read_text()) for path in args.merge])
        except (OSError, ValueError, KeyError) as error:
            print(f"record_rungs: cannot merge: {error}", file=sys.stderr)
            return 2
        write_text_atomically(args.out, json.dumps(merged, indent=1))
        print(f"wrote {args.out}: {len(merged['points'])} points")
        return 0

    from tcwae.data import load_dataset

    space = load_search_space(args.space)
    methods = args.methods.split(",") if args.methods else None
    profile = space.profile(args.profile).select(methods)
    spec = scheduler_spec(profile, args)
    points = grid_points(profile)
    configs = [point_config(profile, point, args) for point in points]
    budget = configs[0].steps
    steps = spec.rungs(budget)
    settings = {
        "space": args.space,
        "profile": profile.name,
        "methods": list(profile.methods),
        "steps": budget,
        "rungs": list(steps),
        "rung_profile": spec.rung_profile,
        "eval_profile": configs[0].eval_profile,
    }
    cache = json.loads(args.out.read_text()) if args.out.exists() else {}
    if {key: cache.get(key) for key in settings} != settings:
        cache = {**settings, "points": {}}
    cache.update(
        command="python bench/record_rungs.py "
        + shlex.join(sys.argv[1:] if argv is None else argv),
        machine=cpu_model(),
    )
    dataset = load_dataset(configs[0].dataset, root=args.data_root, source=configs[0].data_source)
    for point, config in zip(points, configs, strict=True):
        name = config_id(point)
        if name in cache["points"]:
            continue
        entry = record_point(config, dataset, spec, steps)
        entry["point"] = {
            "method": point["method"],
            **{key: point[key] for key in hyperparameter_names(point["method"]) if key in point},
            "seed": point["seed"],
        }
        cache["points"][name] = entry
        cache["date"] = time.strftime("%Y-%m-%d")
        write_text_atomically(args.out, json.dumps(cache, indent=1))
        seconds = entry["seconds"]
        print(
            f"{name}: trained {seconds['train']:.0f} s, rungs "
            + ", ".join(f"{s:.1f}" for s in seconds["rung_evaluations"])
            + f" s, final {seconds['final_evaluation']:.0f} s",
            flush=True,
        )
    print(f"wrote {args.out}: {len(cache['points'])} of {len(points)} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())

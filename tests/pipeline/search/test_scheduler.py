"""MultiObjectiveAsha in a real Ray Tune run with a real Optuna study (no training: each trial
reports made-up rung scores that its configuration decides)."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest
from ray.tune import Callback

from pipeline.search.successive_halving import SchedulerSpec, rung_metric
from pipeline.search.tune_scheduler import (
    MultiObjectiveAsha,
    PruningOptunaSearch,
    SchedulerCallback,
)

STEPS = 40
SPEC = SchedulerSpec("mo-asha", grace=10, eta=2, rank_by=(("rec", "min"), ("mig", "max")))
QUALITIES = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def scores(quality: float) -> dict[str, float]:
    """Higher quality is better on both scores, so the order is total."""
    return {"rec": 10.0 - quality, "mig": 0.1 * quality}


def trainable(config: dict) -> None:
    from ray import tune

    for step in range(5, STEPS + 1, 5):
        report = {"step": step, "train/loss": 1.0 / step}
        if step in SPEC.rungs(STEPS):
            report.update({rung_metric(k): v for k, v in scores(config["quality"]).items()})
        if step == STEPS:
            report.update(scores(config["quality"]))
        tune.report(report)


def define_by_run(trial: optuna.Trial) -> None:
    trial.suggest_categorical("quality", QUALITIES)


def run_sweep(storage: Path, stopped: list) -> tuple:
    from ray import tune

    scheduler = MultiObjectiveAsha(SPEC, STEPS)
    sampler = optuna.samplers.GridSampler({"quality": QUALITIES}, seed=1)
    searcher = PruningOptunaSearch(
        space=define_by_run, metric=["rec", "mig"], mode=["min", "max"], sampler=sampler
    )
    callback = SchedulerCallback(scheduler, lambda trial_id, decision: stopped.append(decision))
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=len(QUALITIES),
            max_concurrent_trials=1,
        ),
        run_config=tune.RunConfig(
            name="asha", storage_path=str(storage), callbacks=[callback], verbose=0
        ),
    )
    return tuner.fit(), scheduler, searcher


@pytest.mark.ray
def test_trials_stop_at_rungs_optuna_learns_which_and_tune_restores_the_rungs(
    ray_session, tmp_path, monkeypatch
):
    from ray import cloudpickle, tune

    monkeypatch.setenv("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    # Ray's workers cannot import this test module: send the trainable by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    stopped: list = []
    results, scheduler, searcher = run_sweep(tmp_path, stopped)
    assert len(results) == len(QUALITIES) and not results.errors

    finished = {r.metrics["trial_id"] for r in results if r.metrics["step"] == STEPS}
    halted = {r.metrics["trial_id"] for r in results if r.metrics["step"] < STEPS}
    assert finished and halted
    assert {d.trial_id for d in stopped} == halted
    for result in results:
        trial_id, step = result.metrics["trial_id"], result.metrics["step"]
        decision = scheduler.halving.stopped(trial_id)
        if trial_id in halted:
            assert decision.step == step and "rec" not in result.metrics
        else:
            assert decision is None and result.metrics["rec"] == 10.0 - result.config["quality"]
    # The best configuration is never stopped: nothing at any rung beats it.
    best = max(results, key=lambda r: r.config["quality"])
    assert best.metrics["trial_id"] in finished

    study = searcher._ot_study
    states = [trial.state for trial in study.trials]
    assert len(states) == len(QUALITIES)
    assert states.count(optuna.trial.TrialState.PRUNED) == len(halted)
    assert states.count(optuna.trial.TrialState.COMPLETE) == len(finished)

    # Tune saves the callback's state with the experiment; a restored Tuner's scheduler holds
    # every rung and decision again (all trials are done, so nothing runs twice).
    restored = tune.Tuner.restore(str(tmp_path / "asha"), trainable, resume_unfinished=True)
    again = restored.fit()
    assert len(again) == len(QUALITIES)
    [restored_callback] = [
        c
        for c in restored._local_tuner.get_run_config().callbacks
        if isinstance(c, SchedulerCallback)
    ]
    assert restored_callback.scheduler.halving.state() == scheduler.halving.state()


def test_scheduler_save_and_restore_round_trip(tmp_path):
    scheduler = MultiObjectiveAsha(SPEC, STEPS)

    class Trial:
        trial_id = "t1"

    result = {"step": 10, **{rung_metric(k): v for k, v in scores(1.0).items()}}
    assert scheduler.on_trial_result(None, Trial(), result) == "CONTINUE"
    assert scheduler.on_trial_result(None, Trial(), {"step": 10}) == "CONTINUE"
    scheduler.save(str(tmp_path / "state.pkl"))
    other = MultiObjectiveAsha(SPEC, STEPS)
    other.restore(str(tmp_path / "state.pkl"))
    assert other.halving.state() == scheduler.halving.state()
    assert "1 stopped" not in other.debug_string() and "10: 1" in other.debug_string()


SYNC_SPEC = SchedulerSpec(
    "mo-asha", grace=10, eta=2, rank_by=(("rec", "min"), ("mig", "max")), synchronous=True
)
SYNC_LIMIT = 2


def sync_trainable(config: dict, arrivals: str) -> None:
    """`trainable` with a pause between reports (a paused trial that Tune resumes runs again
    from step 5: these trials keep no checkpoint). On its first start a trial leaves a mark in
    `arrivals`, and the first two wait (up to a minute) for each other: how long an actor takes
    to start must not decide whether the test sees two trials at once."""
    import time

    from ray import tune

    mark = Path(arrivals) / str(config["quality"])
    if not mark.exists():
        mark.touch()
        deadline = time.monotonic() + 60.0
        while len(list(Path(arrivals).iterdir())) < SYNC_LIMIT and time.monotonic() < deadline:
            time.sleep(0.1)
    for step in range(5, STEPS + 1, 5):
        time.sleep(0.2)
        report = {"step": step}
        if step in SYNC_SPEC.rungs(STEPS):
            report.update({rung_metric(k): v for k, v in scores(config["quality"]).items()})
        if step == STEPS:
            report.update(scores(config["quality"]))
        tune.report(report)


class RunningCounts(Callback):
    """Appends to `counts` how many trials Tune has RUNNING at the end of each step of its loop
    (a list the test keeps, in case Tune works on a copy of the callback)."""

    def __init__(self, counts: list[int]) -> None:
        self.counts = counts

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        self.counts.append(sum(trial.status == "RUNNING" for trial in trials))


@pytest.mark.ray
def test_synchronous_rungs_wait_for_every_trial_and_keep_the_best_within_the_limit(
    ray_session, tmp_path, monkeypatch
):
    """Six trials, two at a time: no trial passes rung 10 before all six reach it, the best
    three continue whatever their order, the best two of those finish; paused trials free their
    slot (the sweep ends); two trials do run at once, never more."""
    from ray import cloudpickle, tune

    from pipeline.search.tune_scheduler import RungConcurrencyLimiter

    monkeypatch.setenv("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    scheduler = MultiObjectiveAsha(SYNC_SPEC, STEPS, len(QUALITIES), SYNC_LIMIT)
    stopped: list = []
    running: list[int] = []
    searcher = PruningOptunaSearch(
        space=define_by_run,
        metric=["rec", "mig"],
        mode=["min", "max"],
        sampler=optuna.samplers.GridSampler({"quality": QUALITIES}, seed=3),
    )
    on_stop = SchedulerCallback(scheduler, lambda trial_id, decision: stopped.append(decision))
    callbacks = [on_stop, RunningCounts(running)]
    arrivals = tmp_path / "arrivals"
    arrivals.mkdir()
    tuner = tune.Tuner(
        tune.with_parameters(sync_trainable, arrivals=str(arrivals)),
        tune_config=tune.TuneConfig(
            search_alg=RungConcurrencyLimiter(searcher, SYNC_LIMIT),
            scheduler=scheduler,
            num_samples=len(QUALITIES),
        ),
        run_config=tune.RunConfig(
            name="sync", storage_path=str(tmp_path), verbose=0, callbacks=callbacks
        ),
    )
    results = tuner.fit()
    assert len(results) == len(QUALITIES) and not results.errors
    final = {r.config["quality"]: r.metrics["step"] for r in results}
    assert final == {0.0: 10, 1.0: 10, 2.0: 10, 3.0: 20, 4.0: STEPS, 5.0: STEPS}
    assert sorted((d.step, d.arrived) for d in stopped) == [(10, 6)] * 3 + [(20, 3)]
    assert sorted(d.position for d in stopped if d.step == 10) == [4, 5, 6]

    assert max(running) == SYNC_LIMIT


class Controller:
    """The part of Tune's controller a scheduler may call (`get_trials`, `stop_trial`,
    `search_alg`), holding trials whose status a test sets; used where a real Tune run cannot
    be stopped at the moment under test (the driver killed while trials wait at a rung)."""

    class Search:
        searcher = None

        def is_finished(self) -> bool:
            return False

    def __init__(self, trial_ids: list[str]) -> None:
        from ray.tune.experiment import Trial

        self.trials = [Trial("trainable", trial_id=trial_id, stub=True) for trial_id in trial_ids]
        self.search_alg = self.Search()
        self.stopped: list[str] = []

    def get_trials(self) -> list:
        return self.trials

    def stop_trial(self, trial) -> None:
        self.stopped.append(trial.trial_id)
        trial.set_status("TERMINATED")


def rung_report(quality: float, step: int = 10) -> dict:
    return {"step": step, **{rung_metric(k): v for k, v in scores(quality).items()}}


def test_a_trial_restarted_while_its_rung_waits_pauses_again_and_the_rung_decides_once():
    from ray.tune.schedulers import TrialScheduler

    controller = Controller(["t0", "t1", "t2"])
    first, second, third = controller.trials
    scheduler = MultiObjectiveAsha(SYNC_SPEC, STEPS, trials=3, max_concurrent=1)
    assert scheduler.on_trial_result(controller, first, rung_report(2.0)) == TrialScheduler.PAUSE
    first.set_status("PAUSED")
    # The driver dies here; --resume restores the rungs from the callback's state, and Tune
    # restarts the waiting trial, which resumes from its rung checkpoint and reports step 15.
    state = SchedulerCallback(scheduler).get_state()
    restored = MultiObjectiveAsha(SYNC_SPEC, STEPS, trials=3, max_concurrent=1)
    SchedulerCallback(restored).set_state(state)
    first.set_status("RUNNING")
    assert restored.on_trial_result(controller, first, {"step": 15}) == TrialScheduler.PAUSE
    first.set_status("PAUSED")
    second.set_status("RUNNING")
    assert restored.on_trial_result(controller, second, rung_report(0.0)) == TrialScheduler.PAUSE
    second.set_status("PAUSED")
    third.set_status("RUNNING")
    # ceil(3 / 2) = 2 continue: the last arrival (best) and the first; the second is stopped.
    assert restored.on_trial_result(controller, third, rung_report(5.0)) == "CONTINUE"
    assert controller.stopped == ["t1"]
    assert restored.on_trial_result(controller, second, {"step": 15}) == TrialScheduler.STOP
    # With one trial running and a limit of one, the promoted paused trial waits its turn.
    assert restored.choose_trial_to_run(controller) is None
    third.set_status("TERMINATED")
    assert restored.choose_trial_to_run(controller) is first


def test_a_stopped_trial_stays_killed_when_its_torn_down_workers_raise(tmp_path):
    """The scheduler's stop marks the run KILLED; the trial's driver may then see its workers die
    (ActorDiedError) and end the run with that error, which must not turn it into FAILED."""
    from pipeline.tracking import KILLED, TAG_ERROR, TAG_STOPPED_AT, Tracking

    tracking = Tracking.at(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = tracking.start_run(tracking.experiment_id("halving"), "stopped-trial")
    tracking.stop_run(run_id, {TAG_STOPPED_AT: 2, "tcwae.stop_reason": "2nd of 3"})
    tracking.end_run(run_id, RuntimeError("The actor died unexpectedly"))
    run = tracking.client.get_run(run_id)
    assert run.info.status == KILLED
    assert run.data.tags[TAG_STOPPED_AT] == "2" and TAG_ERROR not in run.data.tags


def test_a_stopped_trial_is_killed_without_error_when_its_workers_raised_first(tmp_path):
    """The other order: the trial's driver sees its workers torn down and ends the run FAILED
    with that error before the scheduler's stop reaches MLflow; the stop still leaves a KILLED
    run with its reason as description and no error tag."""
    from pipeline.tracking import KILLED, TAG_ERROR, TAG_STOP_REASON, TAG_STOPPED_AT, Tracking
    from pipeline.tracking_ui import TAG_DESCRIPTION

    tracking = Tracking.at(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = tracking.start_run(tracking.experiment_id("halving"), "stopped-trial")
    tracking.end_run(run_id, RuntimeError("ActorDiedError: The actor died unexpectedly"))
    assert TAG_ERROR in tracking.tags(run_id)
    tracking.stop_run(run_id, {TAG_STOPPED_AT: 2, TAG_STOP_REASON: "stopped at rung 1 of 1"})
    run = tracking.client.get_run(run_id)
    assert run.info.status == KILLED and TAG_ERROR not in run.data.tags
    assert run.data.tags[TAG_DESCRIPTION] == "Stopped by successive halving: stopped at rung 1 of 1"


def test_rung_decisions_are_printed_best_first_and_once(capsys):
    """Each decision is one console line naming the trial and the reason, best first; a trial
    restarted at a rung that already decided gets its decision again, which is not reprinted."""
    from pipeline.sweep_console import RungLines

    controller = Controller(["t0", "t1", "t2"])
    for trial, quality in zip(controller.trials, (2.0, 0.0, 5.0), strict=True):
        trial.config = {"method": "wae_mmd", "lam": 10 * quality, "seed": 0}
    scheduler = MultiObjectiveAsha(SYNC_SPEC, STEPS, 3, 1, RungLines("sweep"))
    for trial, quality in zip(controller.trials, (2.0, 0.0, 5.0), strict=True):
        trial.set_status("RUNNING")
        scheduler.on_trial_result(controller, trial, rung_report(quality))
        trial.set_status("PAUSED")
    # A resumed trial reports the rung again: the scheduler hands back its earlier decision.
    scheduler._settle(controller, scheduler.halving.arrive("t0", 10, scores(2.0)))
    lines = capsys.readouterr().out.splitlines()
    expected = [
        ("t2 wae_mmd lam=50", "continues", "1st"),
        ("t0 wae_mmd lam=20", "continues", "2nd"),
        ("t1 wae_mmd lam=0", "stopped", "3rd"),
    ]
    assert len(lines) == len(expected), lines
    for line, (trial, verdict, position) in zip(lines, expected, strict=True):
        assert line.startswith(
            f"sweep: {trial} seed=0: {verdict} at rung 1 of 2 (step 10): {position} of 3 trials"
        ), line
        assert line.endswith("the best 2 continue"), line
